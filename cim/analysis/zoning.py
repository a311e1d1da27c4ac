"""Height limits (控高分析) and flooding (淹没分析) over a surface model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import shapely

from cim.analysis.model import SurfaceModel
from cim.errors import CimInputError

__all__ = ["Flood", "HeightLimit", "flood", "height_limit"]


@dataclass
class HeightLimit:
    """Buildings of a zone above its height limit.

    Attributes
    ----------
    buildings : (k,) int64, buildings whose footprint meets the zone, sorted
    limit : (k,) float, each one's limit as an absolute height (metres)
    excess : (k,) float, metres above it (≤ 0: within the limit)
    """

    buildings: np.ndarray
    limit: np.ndarray
    excess: np.ndarray

    @property
    def exceeding(self) -> np.ndarray:
        """(k,) bool."""
        return self.excess > 1e-9


def height_limit(
    model: SurfaceModel, zone: shapely.Geometry, limit: float, mode: Literal["absolute", "above_ground"] = "above_ground"
) -> HeightLimit:
    """Check every building whose footprint meets ``zone`` (a polygon in the model's CRS)
    against ``limit``: an absolute height, or metres above the building's ground (its base)."""
    if mode not in ("absolute", "above_ground"):
        raise CimInputError(f"mode must be absolute or above_ground, not {mode!r}")
    if not isinstance(zone, shapely.Geometry) or zone.is_empty:
        raise CimInputError("the zone must be a polygon")
    rows = np.sort(model.prisms.tree.query(zone, predicate="intersects")).astype(np.int64)
    base, top = model.prisms.base[rows], model.prisms.top[rows]
    absolute = np.full(len(rows), float(limit)) if mode == "absolute" else base + float(limit)
    return HeightLimit(rows, absolute, top - absolute)


@dataclass
class Flood:
    """Ground under a water level.

    Attributes
    ----------
    window : the grid rows and columns of the region's box
    depth : (h, w) float32, water depth (0: dry; NaN outside the region)
    buildings : (k,) int64, buildings standing in the water, sorted
    building_depth : (k,) float, the water's depth at each one's lowest ground
    """

    window: tuple[slice, slice]
    depth: np.ndarray
    buildings: np.ndarray
    building_depth: np.ndarray

    def area(self, res: float) -> float:
        """Flooded square metres."""
        return float((self.depth > 0).sum() * res * res)

    def volume(self, res: float) -> float:
        """Cubic metres of water."""
        return float(np.nansum(self.depth) * res * res)


def flood(model: SurfaceModel, level: float, region: shapely.Geometry, *, seed: tuple[float, float] | None = None) -> Flood:
    """The region's ground below ``level`` (metres, the DEM's datum): every cell whose terrain
    lies below it, or with a ``seed`` point (x, y) only the cells connected to it (water
    spreading from a river, not filling every hollow), 4-connected."""
    if not isinstance(region, shapely.Geometry) or region.is_empty:
        raise CimInputError("the flood region must be a polygon")
    window = model.window(tuple(shapely.bounds(region)))
    inside = model.mask(region, window)
    dem = np.asarray(model.dem[window], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        wet = inside & (dem < level)
    if seed is not None:
        from scipy.ndimage import label

        labels, _ = label(wet)
        r, c, ok = model.cells(np.array([seed[0]]), np.array([seed[1]]))
        rw, cw = int(r[0]) - window[0].start, int(c[0]) - window[1].start
        if not ok[0] or not (0 <= rw < wet.shape[0] and 0 <= cw < wet.shape[1]) or not inside[rw, cw]:
            raise CimInputError("the flood seed lies outside the region")
        wet = (labels == labels[rw, cw]) & wet[rw, cw]
    depth = np.where(wet, level - dem, 0.0).astype(np.float32)
    depth[~inside] = np.nan
    owners = np.asarray(model.owner[window])[wet]
    rows = np.unique(owners[owners >= 0]).astype(np.int64)
    return Flood(window, depth, rows, level - model.prisms.base[rows])
