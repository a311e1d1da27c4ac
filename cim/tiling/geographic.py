"""The geographic tiling scheme of quantized-mesh terrain, as CesiumJS's CesiumTerrainProvider reads it.

Plate carrée over WGS84 longitude/latitude: two tiles at level 0 (west and east hemispheres), each
tile split in four at the next level, so every tile is ``180 / 2**z`` degrees square. Rows count
from the south (TMS): tile ``(z, x, y)`` spans longitudes ``-180 + x·d … -180 + (x+1)·d`` and
latitudes ``-90 + y·d … -90 + (y+1)·d`` with ``d = 180 / 2**z``.

Every level carries a lattice of 65 samples per tile edge (64 intervals, the size CesiumJS assumes
for its own height maps); neighbouring tiles share their edge samples and a level's samples are
every other sample of the next level's, so one global index ``(i, j)`` per level names a sample:
``lon = -180 + i·s``, ``lat = -90 + j·s`` with ``s = d / 64``.

Pure functions: no I/O.
"""

from __future__ import annotations

import math

import numpy as np

from cim.kernels.ellipsoid import WGS84_A, WGS84_E2

__all__ = [
    "SAMPLES",
    "INTERVALS",
    "LEVEL_ZERO_ERROR",
    "MAX_LEVEL",
    "tile_degrees",
    "sample_degrees",
    "tile_count",
    "tile_bounds",
    "tiles_covering",
    "level_max_error",
    "radii_of_curvature",
    "sample_metres",
    "level_for_resolution",
    "availability",
]

#: samples per tile edge (CesiumJS's height-map width) and the intervals between them
SAMPLES = 65
INTERVALS = SAMPLES - 1
#: CesiumJS's geometric error of a level-0 tile: ``a · 2π · 0.25 / (65 · 2)`` (TerrainProvider.
#: getEstimatedLevelZeroGeometricErrorForAHeightmap with the WGS84 maximum radius, a 65-sample
#: height map and two level-0 tiles); each level halves it
LEVEL_ZERO_ERROR = WGS84_A * 2.0 * math.pi * 0.25 / (SAMPLES * 2)
#: deepest level this module plans (2·2^28·64 samples still fit an int64 index comfortably)
MAX_LEVEL = 28


def tile_degrees(z: int) -> float:
    """Width and height of a level-``z`` tile, in degrees."""
    return 180.0 / (1 << z)


def sample_degrees(z: int) -> float:
    """Spacing of the level-``z`` lattice, in degrees."""
    return tile_degrees(z) / INTERVALS


def tile_count(z: int) -> tuple[int, int]:
    """Columns and rows of tiles at level ``z``: ``(2·2^z, 2^z)``."""
    return 2 << z, 1 << z


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` degrees of tile ``(z, x, y)``, ``y`` counted from the south."""
    d = tile_degrees(z)
    return -180.0 + x * d, -90.0 + y * d, -180.0 + (x + 1) * d, -90.0 + (y + 1) * d


def tiles_covering(bounds: tuple[float, float, float, float], z: int) -> tuple[int, int, int, int]:
    """Inclusive tile range ``(x0, y0, x1, y1)`` at level ``z`` that covers ``(west, south, east, north)``.

    A box edge that falls on a tile edge does not pull in the tile beyond it.
    """
    west, south, east, north = bounds
    d = tile_degrees(z)
    nx, ny = tile_count(z)
    x0 = int(math.floor((west + 180.0) / d))
    y0 = int(math.floor((south + 90.0) / d))
    x1 = int(math.ceil((east + 180.0) / d)) - 1
    y1 = int(math.ceil((north + 90.0) / d)) - 1
    clamp = lambda v, hi: min(max(v, 0), hi - 1)  # noqa: E731
    x0, x1 = clamp(x0, nx), clamp(max(x1, x0), nx)
    y0, y1 = clamp(y0, ny), clamp(max(y1, y0), ny)
    return x0, y0, x1, y1


def level_max_error(z: int) -> float:
    """CesiumJS's maximum geometric error of a level-``z`` terrain tile, in metres.

    ``LEVEL_ZERO_ERROR / 2**z``: 77,067 m at level 0, 0.59 m at level 17. CesiumTerrainProvider
    refines a tile when this error, projected on the screen, exceeds ``maximumScreenSpaceError``;
    it also hangs skirts five times this long from each tile's edges.
    """
    return LEVEL_ZERO_ERROR / (1 << z)


def radii_of_curvature(lat: float | np.ndarray) -> tuple:
    """Meridian (M) and prime-vertical (N) radii of curvature of WGS84 at latitude degrees."""
    s = np.sin(np.radians(lat))
    w = np.sqrt(1.0 - WGS84_E2 * s * s)
    return WGS84_A * (1.0 - WGS84_E2) / w**3, WGS84_A / w


def sample_metres(z: int, lat: float) -> tuple[float, float]:
    """Ground spacing ``(east-west, north-south)`` in metres of the level-``z`` lattice at a latitude."""
    m, n = radii_of_curvature(lat)
    step = math.radians(sample_degrees(z))
    return float(step * n * math.cos(math.radians(lat))), float(step * m)


def level_for_resolution(cell_size: float, lat: float) -> int:
    """The level whose lattice spacing best matches a DEM cell size (metres) at a latitude.

    The spacing compared is the geometric mean of the lattice's east-west and north-south
    spacings, and "best" is nearest in log scale: the chosen level's spacing lies within a factor
    √2 of the cell size (the deepest level that does not throw away more than half the DEM's
    detail nor invent more than twice its samples).
    """
    if not (cell_size > 0 and math.isfinite(cell_size)):
        raise ValueError(f"cell size must be a positive number of metres, got {cell_size!r}")
    ew, ns = sample_metres(0, lat)
    level0 = math.sqrt(ew * ns)
    return int(min(MAX_LEVEL, max(0, round(math.log2(level0 / cell_size)))))


def availability(tiles: np.ndarray) -> list[dict[str, int]]:
    """Cover a set of tiles of one level with rectangles, for ``layer.json``'s ``available``.

    Parameters
    ----------
    tiles : (n, 2) int, ``(x, y)`` TMS tile indices

    Returns
    -------
    ``[{"startX", "startY", "endX", "endY"}, ...]``, inclusive ranges: runs of consecutive ``x`` in
    each row, merged with the identical runs of the rows above.
    """
    tiles = np.asarray(tiles, dtype=np.int64).reshape(-1, 2)
    if len(tiles) == 0:
        return []
    order = np.lexsort((tiles[:, 0], tiles[:, 1]))
    xs, ys = tiles[order, 0], tiles[order, 1]
    new_run = np.ones(len(xs), dtype=bool)
    new_run[1:] = (ys[1:] != ys[:-1]) | (xs[1:] != xs[:-1] + 1)
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], len(xs)) - 1
    runs = sorted(zip(xs[starts].tolist(), xs[ends].tolist(), ys[starts].tolist()))  # by (x0, x1, y)
    rects: list[dict[str, int]] = []
    for x0, x1, y in runs:
        last = rects[-1] if rects else None
        if last and last["startX"] == x0 and last["endX"] == x1 and last["endY"] == y - 1:
            last["endY"] = y
        else:
            rects.append({"startX": x0, "startY": y, "endX": x1, "endY": y})
    return sorted(rects, key=lambda r: (r["startY"], r["startX"]))
