"""The surface model the analyses run on: a DSM raster and the buildings as prisms.

Built with the city (``cim build`` runs :func:`cim.analysis.files.build_model` after the
layers) into ``CITY/analysis/``, or later from the recipe with ``cim analyse model``; loaded by
:func:`cim.analysis.files.load_model`. Everything is in the city's projected CRS, in metres.

- **Rasters** on one north-up grid: ``dem`` (terrain), ``dsm`` (terrain, and each building's
  roof over the cells whose centre its footprint covers) and ``owner`` (the building whose roof
  a cell holds, -1 for ground). The grid is the DEM's own where the DEM is in the city's CRS and
  its cells are 1–2 m (the sample city's are 2 m), so the terrain is not resampled; otherwise
  cells of 2 m (1 m for finer DEMs). 2 m puts three cells across the narrowest house of the
  sample (about 6 m) and keeps a 120 km² city at 30 M cells, 12 bytes each; exact answers where
  a metre matters (line of sight) come from the prisms.
- **Prisms**: each building's footprint rings (exterior counter-clockwise, holes clockwise),
  its base (the lowest ground under the footprint, as the buildings layer stands it) and top,
  its id and use. A footprint that a BIM model replaces in the tiles keeps its prism here: it
  stands for the model (its footprint and height attribute), in place of the model's mesh.

This module holds the model in memory and makes one from footprints and a terrain grid
(:func:`model_from_polygons`, what the build and the tests share); :mod:`cim.analysis.files`
builds it from a recipe, writes and loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import shapely
from pyproj import CRS

from cim.crs import from_lonlat, parse_crs, to_lonlat
from cim.kernels.raster import bilinear_sample, nan_median
from cim.kernels.rays import block_max

__all__ = ["BLOCK", "BURN_CELLS", "Prisms", "SurfaceModel", "burn_strips", "model_from_polygons", "prisms_from_polygons"]

#: cells a side of the tiles whose highest point lets rays skip them
BLOCK = 16
#: cells of the grid the footprints are burnt into at a time (a strip of rows; 16 MB of int32)
BURN_CELLS = 1 << 22


@dataclass
class Prisms:
    """Buildings as extruded footprints.

    Attributes
    ----------
    xy : (k, 2) float64, closed rings one after another (exterior CCW, holes CW)
    ring_offsets : (r + 1,) int64, coordinates of each ring
    polygon_offsets : (p + 1,) int64, rings of each polygon
    polygon_feature : (p,) int64, the building each polygon belongs to
    base, top : (n,) float64, floor and roof heights
    ids, uses : (n,) object, str ids and uses (None when unknown)
    """

    xy: np.ndarray
    ring_offsets: np.ndarray
    polygon_offsets: np.ndarray
    polygon_feature: np.ndarray
    base: np.ndarray
    top: np.ndarray
    ids: np.ndarray
    uses: np.ndarray

    def __len__(self) -> int:
        return len(self.base)

    @cached_property
    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Walls: ``(a, b, prism)``, (e, 2), (e, 2), (e,) non-decreasing prism index."""
        ring_of_coord = np.repeat(np.arange(len(self.ring_offsets) - 1), np.diff(self.ring_offsets))
        last = np.zeros(len(self.xy), dtype=bool)
        last[self.ring_offsets[1:] - 1] = True  # a ring's closing coordinate starts no edge
        start = np.flatnonzero(~last)
        poly_of_ring = np.repeat(np.arange(len(self.polygon_offsets) - 1), np.diff(self.polygon_offsets))
        prism = self.polygon_feature[poly_of_ring[ring_of_coord[start]]]
        order = np.argsort(prism, kind="stable")
        start = start[order]
        return self.xy[start], self.xy[start + 1], prism[order]

    @cached_property
    def footprints(self) -> np.ndarray:
        """(n,) shapely Polygon/MultiPolygon of each building."""
        polys = shapely.from_ragged_array(shapely.GeometryType.POLYGON, self.xy, (self.ring_offsets, self.polygon_offsets))
        out = np.empty(len(self), dtype=object)
        counts = np.bincount(self.polygon_feature, minlength=len(self))
        first = np.searchsorted(self.polygon_feature, np.arange(len(self)))
        single = np.flatnonzero(counts == 1)
        out[single] = polys[first[single]]
        for i in np.flatnonzero(counts > 1):
            out[i] = shapely.multipolygons(polys[self.polygon_feature == i])
        return out

    @cached_property
    def tree(self) -> shapely.STRtree:
        """A spatial index of :attr:`footprints`."""
        return shapely.STRtree(self.footprints)

    def covered_by(self, plan: shapely.Geometry) -> np.ndarray:
        """The buildings (sorted rows) more than half of whose footprint ``plan`` covers: the ones
        a proposal or a BIM model standing there replaces."""
        near = self.tree.query(plan, predicate="intersects")
        area = shapely.area(self.footprints[near])
        shared = shapely.area(shapely.intersection(self.footprints[near], plan))
        return np.sort(near[shared > 0.5 * area]).astype(np.int64)

    def take(self, rows: np.ndarray) -> Prisms:
        """The buildings ``rows`` (in that order)."""
        return prisms_from_polygons(self.footprints[rows], self.base[rows], self.top[rows], self.ids[rows], self.uses[rows])


def prisms_from_polygons(
    polygons: np.ndarray, base: np.ndarray, top: np.ndarray, ids: np.ndarray, uses: np.ndarray | None = None
) -> Prisms:
    """Prisms from footprint polygons (valid Polygon/MultiPolygon) and their heights."""
    from cim.sources.footprints import footprint_rings

    polygons = np.asarray(polygons, dtype=object)
    n = len(polygons)
    if n:
        xy, ring_offsets, polygon_offsets, polygon_feature = footprint_rings(polygons)
    else:
        xy, ring_offsets, polygon_offsets, polygon_feature = (
            np.zeros((0, 2)),
            np.zeros(1, np.int64),
            np.zeros(1, np.int64),
            np.zeros(0, np.int64),
        )
    return Prisms(
        np.asarray(xy, dtype=np.float64),
        np.asarray(ring_offsets, dtype=np.int64),
        np.asarray(polygon_offsets, dtype=np.int64),
        np.asarray(polygon_feature, dtype=np.int64),
        np.asarray(base, dtype=np.float64),
        np.asarray(top, dtype=np.float64),
        np.asarray(ids, dtype=object),
        np.asarray(uses if uses is not None else [None] * n, dtype=object),
    )


@dataclass
class SurfaceModel:
    """A city's surface: rasters on one grid, and the buildings as prisms.

    Attributes
    ----------
    crs : the projected CRS of every coordinate
    x0, y0 : west and north edges of the grid
    res : cell size (metres)
    dem, dsm : (rows, cols) float32, terrain and surface heights (NaN: no data)
    owner : (rows, cols) int32, the building whose roof a cell holds (-1: ground)
    prisms : the buildings
    true_north : the grid azimuth of true north at the grid's centre (degrees)
    meshed : (k,) int64, sorted rows of the prisms that stand in the DSM by their meshes (BIM
        models, model proposals): a line of sight meets their DSM cells, not their prism
    """

    crs: CRS
    x0: float
    y0: float
    res: float
    dem: np.ndarray
    dsm: np.ndarray
    owner: np.ndarray
    prisms: Prisms
    true_north: float = 0.0
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    meshed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.dem.shape
        return int(rows), int(cols)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the grid."""
        rows, cols = self.shape
        return self.x0, self.y0 - rows * self.res, self.x0 + cols * self.res, self.y0

    @cached_property
    def centre_lonlat(self) -> tuple[float, float]:
        xmin, ymin, xmax, ymax = self.bounds
        lon, lat = to_lonlat(np.array([(xmin + xmax) / 2]), np.array([(ymin + ymax) / 2]), self.crs)
        return float(lon[0]), float(lat[0])

    @cached_property
    def median_ground(self) -> float:
        """The median height of the terrain (no-data cells left out; 0 on an empty grid; NaN
        when it has no data at all), counted strip by strip rather than copied."""
        return nan_median(self.dem) if self.dem.size else 0.0

    @cached_property
    def blocks(self) -> list[tuple[int, np.ndarray]]:
        """``(n, the highest DSM cell of each n × n tile)`` for n = BLOCK and 8 × BLOCK, for
        rays to skip what they pass above."""
        fine = block_max(self.dsm, BLOCK)
        return [(BLOCK, fine), (8 * BLOCK, block_max(fine, 8))]

    @cached_property
    def sight_surface(self) -> np.ndarray:
        """(rows, cols) float32, the heightfield a line of sight is marched over: the terrain,
        and the DSM over the cells of the :attr:`meshed` buildings (their real shape)."""
        if not len(self.meshed):
            return np.asarray(self.dem)
        return np.where(np.isin(np.asarray(self.owner), self.meshed), np.asarray(self.dsm), np.asarray(self.dem)).astype(np.float32)

    def to_xy(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        """Longitude/latitude degrees → grid CRS metres."""
        return from_lonlat(np.atleast_1d(np.asarray(lon, dtype=np.float64)), np.atleast_1d(np.asarray(lat, dtype=np.float64)), self.crs)

    def to_lonlat(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Grid CRS metres → longitude/latitude degrees."""
        return to_lonlat(np.atleast_1d(np.asarray(x, dtype=np.float64)), np.atleast_1d(np.asarray(y, dtype=np.float64)), self.crs)

    def cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and whether each point lies on the grid."""
        c = np.floor((np.asarray(x) - self.x0) / self.res).astype(np.int64)
        r = np.floor((self.y0 - np.asarray(y)) / self.res).astype(np.int64)
        rows, cols = self.shape
        inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        return r, c, inside

    def ground(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Terrain height (bilinear) at points; NaN off the grid."""
        return bilinear_sample(np.asarray(self.dem, dtype=np.float32), self.x0, self.y0, self.res, self.res, np.asarray(x), np.asarray(y))

    def cell_centres(self, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.x0 + (np.asarray(c) + 0.5) * self.res, self.y0 - (np.asarray(r) + 0.5) * self.res

    def window(self, bounds: tuple[float, float, float, float]) -> tuple[slice, slice]:
        """Rows and columns of the cells under ``bounds`` (clipped to the grid)."""
        xmin, ymin, xmax, ymax = bounds
        rows, cols = self.shape
        c0 = int(np.clip(np.floor((xmin - self.x0) / self.res), 0, cols))
        c1 = int(np.clip(np.ceil((xmax - self.x0) / self.res), 0, cols))
        r0 = int(np.clip(np.floor((self.y0 - ymax) / self.res), 0, rows))
        r1 = int(np.clip(np.ceil((self.y0 - ymin) / self.res), 0, rows))
        return slice(r0, r1), slice(c0, c1)

    def mask(self, geometry: shapely.Geometry, window: tuple[slice, slice]) -> np.ndarray:
        """Cells of ``window`` whose centre lies in ``geometry`` (bool, the window's shape)."""
        from rasterio.features import geometry_mask
        from rasterio.transform import from_origin

        rs, cs = window
        shape = (rs.stop - rs.start, cs.stop - cs.start)
        if shape[0] <= 0 or shape[1] <= 0:
            return np.zeros((max(shape[0], 0), max(shape[1], 0)), dtype=bool)
        transform = from_origin(self.x0 + cs.start * self.res, self.y0 - rs.start * self.res, self.res, self.res)
        return ~geometry_mask([shapely.geometry.mapping(geometry)], out_shape=shape, transform=transform)

    def with_prisms(self, prisms: Prisms, changed: tuple[float, float, float, float] | None = None) -> SurfaceModel:
        """A copy with other buildings: the DSM and owners are burnt again under ``changed``
        (the box of every footprint added or removed; default the whole grid)."""
        dsm, owner = self.dsm, self.owner
        win = self.window(changed) if changed is not None else (slice(0, self.shape[0]), slice(0, self.shape[1]))
        dsm = np.array(dsm, copy=True)
        owner = np.array(owner, copy=True)
        sub_dsm, sub_owner = _burn(self.dem[win], prisms, self.x0 + win[1].start * self.res, self.y0 - win[0].start * self.res, self.res)
        dsm[win], owner[win] = sub_dsm, sub_owner
        return replace(self, dsm=dsm, owner=owner, prisms=prisms, meta=dict(self.meta))


def _burn(
    dem: np.ndarray, prisms: Prisms, x0: float, y0: float, res: float, *, block_cells: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """DSM and owner rasters of ``prisms`` over a terrain grid (tallest roof wins a cell): the
    strips of :func:`burn_strips` put together."""
    dsm = np.empty(dem.shape, dtype=np.float32)
    owner = np.empty(dem.shape, dtype=np.int32)
    for r0, dsm_strip, owner_strip in burn_strips(dem, prisms, x0, y0, res, block_cells=block_cells):
        dsm[r0 : r0 + len(dsm_strip)] = dsm_strip
        owner[r0 : r0 + len(owner_strip)] = owner_strip
    return dsm, owner


def burn_strips(
    dem: np.ndarray, prisms: Prisms, x0: float, y0: float, res: float, *, block_cells: int | None = None
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """The DSM and owner rasters of ``prisms`` over a terrain grid, a strip of rows at a time
    (tallest roof wins a cell; owner -1: ground).

    Each strip's footprints are rasterised on their own, burnt in the order the whole grid
    burns them (lowest roof first, the tallest last), so the strips put together are the
    whole grid's rasters, cell for cell, whatever the strips' size; the working set is a
    strip's, however large the grid.

    Parameters
    ----------
    dem : (rows, cols) float, the terrain (NaN: no data)
    prisms : the buildings
    x0, y0, res : the grid's west and north edges and cell size
    block_cells : cells a strip (default :data:`BURN_CELLS`)

    Yields
    ------
    (first row, (h, cols) float32 DSM, (h, cols) int32 owners), top to bottom
    """
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    rows, cols = dem.shape
    rank = None
    if len(prisms) and dem.size:
        near = prisms.tree.query(shapely.box(x0, y0 - rows * res, x0 + cols * res, y0), predicate="intersects")
        near = near[np.argsort(prisms.top[near], kind="stable")]  # later shapes overwrite: tallest last
        rank = np.full(len(prisms), -1, dtype=np.int64)
        rank[near] = np.arange(len(near))
    step = max(1, int(block_cells or BURN_CELLS) // max(cols, 1))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        dsm = np.array(dem[r0:r1], dtype=np.float32, copy=True)
        owner = np.full(dsm.shape, -1, dtype=np.int32)
        if rank is not None:
            strip = prisms.tree.query(shapely.box(x0, y0 - r1 * res, x0 + cols * res, y0 - r0 * res), predicate="intersects")
            strip = strip[rank[strip] >= 0]
            if len(strip):
                strip = strip[np.argsort(rank[strip])]
                rasterize(
                    ((shapely.geometry.mapping(prisms.footprints[i]), int(i)) for i in strip),
                    out=owner,
                    transform=from_origin(x0, y0 - r0 * res, res, res),
                )
                built = owner >= 0
                dsm[built] = np.fmax(dsm[built], prisms.top[owner[built]].astype(np.float32))
        yield r0, dsm, owner


def _true_north(crs: CRS, x: float, y: float) -> float:
    """Grid azimuth of true north at (x, y): the direction a small step north moves in the grid."""
    lon, lat = to_lonlat(np.array([x]), np.array([y]), crs)
    gx, gy = from_lonlat(np.array([lon[0], lon[0]]), np.array([lat[0], lat[0] + 1e-4]), crs)
    return float(np.degrees(np.arctan2(gx[1] - gx[0], gy[1] - gy[0])))


def model_from_polygons(
    polygons: np.ndarray,
    heights: np.ndarray,
    ids: np.ndarray,
    uses: np.ndarray | None,
    dem: np.ndarray,
    x0: float,
    y0: float,
    res: float,
    crs: object = "EPSG:4544",
    *,
    bases: np.ndarray | None = None,
    name: str = "",
    block_cells: int | None = None,
    rasters: Callable[[Iterator[tuple[int, np.ndarray, np.ndarray]]], tuple[np.ndarray, np.ndarray]] | None = None,
) -> SurfaceModel:
    """A surface model from footprints and a terrain grid (the one way both the build and the
    tests make one).

    Parameters
    ----------
    polygons : (n,) shapely Polygon/MultiPolygon, in ``crs``
    heights : (n,) float, building heights (metres above the base)
    ids, uses : (n,) str ids and uses (uses may be None)
    dem : (rows, cols) float, terrain on the grid (NaN: no data)
    x0, y0, res : the grid's west and north edges and cell size
    bases : (n,) float, floor heights (default: the lowest terrain under each footprint's
        vertices, bilinear, as the buildings layer stands them)
    block_cells : cells of the grid burnt at a time (default :data:`BURN_CELLS`; the result
        does not depend on it)
    rasters : what makes the DSM and owner rasters of the strips of :func:`burn_strips`
        (default: two arrays in memory; the build writes them to files as they come)
    """
    crs = parse_crs(crs)
    dem = np.asarray(dem, dtype=np.float32)
    polygons = np.asarray(polygons, dtype=object)
    heights = np.asarray(heights, dtype=np.float64)
    if bases is None:
        bases = _lowest_ground(polygons, dem, x0, y0, res)
    bases = np.asarray(bases, dtype=np.float64)
    prisms = prisms_from_polygons(polygons, bases, bases + heights, np.asarray(ids, dtype=object), uses)
    if rasters is None:
        dsm, owner = _burn(dem, prisms, x0, y0, res, block_cells=block_cells)
    else:
        dsm, owner = rasters(burn_strips(dem, prisms, x0, y0, res, block_cells=block_cells))
    rows, cols = dem.shape
    return SurfaceModel(
        crs, float(x0), float(y0), float(res), dem, dsm, owner, prisms, _true_north(crs, x0 + cols * res / 2, y0 - rows * res / 2), name
    )


def _lowest_ground(polygons: np.ndarray, dem: np.ndarray, x0: float, y0: float, res: float) -> np.ndarray:
    n = len(polygons)
    if n == 0:
        return np.zeros(0)
    xy, index = shapely.get_coordinates(polygons, return_index=True)
    z = bilinear_sample(dem, x0, y0, res, res, xy[:, 0], xy[:, 1])
    base = np.full(n, np.inf)
    np.fmin.at(base, index, z)
    off = ~np.isfinite(base)
    if off.any():
        base[off] = _median_ground(dem)  # off the terrain: the median ground
    return base


def _median_ground(dem: np.ndarray) -> float:
    """The median of the terrain's heights (NaN: no data), 0 when it has none."""
    return nan_median(dem) if np.isfinite(dem).any() else 0.0
