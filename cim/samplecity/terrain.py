"""The sample city's ground: a deterministic function of position, so every preset is a window
of the same city and agrees with every other at the same place.

An east-west valley (the Ji river joining the Wei) with a sinuous floor at about 1,100 m falling
gently eastward, loess hills rising to about 1,700 m north and south, fine gullies on the slopes.

The river is defined here once, for every layer that shows it: a smooth channel
``CHANNEL_HALF_WIDTH`` (45 m) either side of :func:`valley_centre`, ``CHANNEL_DEPTH`` (3.5 m)
deep at the centreline and filled ``WATER_DEPTH`` (2.5 m) deep to a flat :func:`water_level`, so
that its shore lies where the channel's banks rise through the water, ``RIVER_HALF_WIDTH`` (about
32.1 m) from the centreline. The DEM (:func:`ground_height`), the orthophoto's water and the
lidar's water class (9) all come from these, through :func:`in_river`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = [
    "FLOOR_HEIGHT",
    "HILL_HEIGHT",
    "CHANNEL_HALF_WIDTH",
    "CHANNEL_DEPTH",
    "WATER_DEPTH",
    "RIVER_HALF_WIDTH",
    "BANK_FADE",
    "lattice_uniform",
    "value_noise",
    "valley_centre",
    "valley_half_width",
    "river_distance",
    "in_river",
    "water_level",
    "ground_height",
    "dem_grid",
]

#: the city centre in EPSG:4544 (105.72 E, 34.58 N)
CENTRE_E, CENTRE_N = 566062.0, 3828235.0
FLOOR_HEIGHT = 1100.0
HILL_HEIGHT = 1700.0
#: the river's channel: half-width (m) either side of the centreline, depth (m) at the
#: centreline, and depth of its water (m)
CHANNEL_HALF_WIDTH = 45.0
CHANNEL_DEPTH = 3.5
WATER_DEPTH = 2.5
#: the river's half-width (m, about 32.1): where the channel's banks meet the water surface
RIVER_HALF_WIDTH = CHANNEL_HALF_WIDTH * WATER_DEPTH / CHANNEL_DEPTH
#: the floor's gentle undulation fades in over this distance (m) beyond the channel, so that the
#: channel is smooth (its shore exactly at RIVER_HALF_WIDTH) and its banks stay above the water
#: (at least 0.2 m for seeds 0-2, measured along the whole city)
BANK_FADE = 60.0


def lattice_uniform(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) values from integer lattice coordinates (a 64-bit mix, splitmix style)."""
    h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= np.full(1, seed, dtype=np.uint64) * np.uint64(0x165667B19E3779F9)  # array math wraps silently
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def value_noise(x: np.ndarray, y: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] with feature size ``scale`` metres."""
    gx, gy = x / scale, y / scale
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = gx - ix, gy - iy
    fx = fx * fx * (3 - 2 * fx)
    fy = fy * fy * (3 - 2 * fy)
    ix = ix.astype(np.int64) + (1 << 40)
    iy = iy.astype(np.int64) + (1 << 40)
    corners = _lattice_corners(ix, iy, seed)
    if corners is None:
        corners = (
            lattice_uniform(ix, iy, seed),
            lattice_uniform(ix + 1, iy, seed),
            lattice_uniform(ix, iy + 1, seed),
            lattice_uniform(ix + 1, iy + 1, seed),
        )
    v00, v10, v01, v11 = corners
    v = (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy
    return 2.0 * v - 1.0


def _lattice_corners(ix: np.ndarray, iy: np.ndarray, seed: int) -> tuple[np.ndarray, ...] | None:
    """The four lattice values around every point of a grid given by broadcasting a row of
    column indices ``ix (1, w)`` against a column of row indices ``iy (h, 1)``: hashed once per
    lattice node and gathered, the same values as hashing every point four times. None when
    the inputs are not such a grid or its nodes are sparser than its points."""
    if ix.ndim != 2 or iy.ndim != 2 or ix.shape[0] != 1 or iy.shape[1] != 1 or ix.size == 0 or iy.size == 0:
        return None
    x0, y0 = int(ix.min()), int(iy.min())
    nx, ny = int(ix.max()) - x0 + 2, int(iy.max()) - y0 + 2
    if nx > 2 * ix.size + 2 or ny > 2 * iy.size + 2:
        return None
    table = lattice_uniform(np.arange(x0, x0 + nx, dtype=np.int64)[None, :], np.arange(y0, y0 + ny, dtype=np.int64)[:, None], seed)
    jx, jy = ix - x0, iy - y0
    return table[jy, jx], table[jy, jx + 1], table[jy + 1, jx], table[jy + 1, jx + 1]


def valley_centre(x: np.ndarray) -> np.ndarray:
    """Northing of the river's centreline at easting ``x``."""
    dx = np.asarray(x, dtype=np.float64) - CENTRE_E
    return CENTRE_N + 450.0 * np.sin(2 * np.pi * dx / 9000.0) + 180.0 * np.sin(2 * np.pi * dx / 3100.0 + 1.0)


def valley_half_width(x: np.ndarray) -> np.ndarray:
    """Half-width (m) of the flat valley floor at easting ``x``."""
    dx = np.asarray(x, dtype=np.float64) - CENTRE_E
    return 1500.0 + 350.0 * np.sin(2 * np.pi * dx / 7000.0 + 0.4)


def river_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance (m) north or south of the river's centreline at ``(x, y)``; float64."""
    return np.abs(np.asarray(y, dtype=np.float64) - valley_centre(x))


def in_river(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """bool, same shape as the inputs: whether ``(x, y)`` is under the river's water. The one
    test behind the orthophoto's water colour and the lidar's water class."""
    return river_distance(x, y) < RIVER_HALF_WIDTH


def _floor_height(x: np.ndarray) -> np.ndarray:
    """The valley floor's mean height (m) at easting ``x``: it falls gently eastward."""
    return FLOOR_HEIGHT + 12.0 - 0.0016 * (np.asarray(x, dtype=np.float64) - CENTRE_E)


def water_level(x: np.ndarray) -> np.ndarray:
    """Height (m) of the river's flat water surface at easting ``x``: ``WATER_DEPTH`` above the
    channel's bed, and the ground's height at the shore."""
    return _floor_height(x) - (CHANNEL_DEPTH - WATER_DEPTH)


def ground_height(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Terrain height (m) at EPSG:4544 ``(x, y)``; float64, same shape as the inputs."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    floor = _floor_height(x)
    dr = river_distance(x, y)
    d = dr - valley_half_width(x)
    t = np.clip(d / 2200.0, 0.0, 1.0)
    rise = t * t * (3 - 2 * t)
    hills = (HILL_HEIGHT - FLOOR_HEIGHT - 60.0) * rise
    rough = (
        60.0 * value_noise(x, y, 1400.0, seed + 1) + 25.0 * value_noise(x, y, 520.0, seed + 2) + 8.0 * value_noise(x, y, 160.0, seed + 3)
    ) * np.clip(rise * 1.5, 0.0, 1.0)
    gentle = 1.2 * value_noise(x, y, 300.0, seed + 4) + 0.4 * value_noise(x, y, 60.0, seed + 5)
    gentle *= np.clip((dr - CHANNEL_HALF_WIDTH) / BANK_FADE, 0.0, 1.0)
    channel = -CHANNEL_DEPTH * np.clip(1.0 - dr / CHANNEL_HALF_WIDTH, 0.0, 1.0)
    terrace = 4.0 * np.clip((dr - 60.0) / 300.0, 0.0, 1.0)
    return floor + hills + rough + gentle + channel + terrace


def dem_grid(xmin: float, ymin: float, xmax: float, ymax: float, res: float, seed: int = 0, rows_per_strip: int = 512) -> np.ndarray:
    """Rows-north-first float32 DEM grid over the box at ``res`` metres (cell centres).

    The same values as :func:`ground_height` at every cell centre, computed strip by strip in
    threads on a row of eastings against a column of northings (CPU s on 2 shared cores:
    ``district``, 4 M cells, 2.2 -> 0.8-1.0; ``city``, 30 M cells, 16.9 -> 7.4)."""
    width = int(round((xmax - xmin) / res))
    height = int(round((ymax - ymin) / res))
    out = np.empty((height, width), dtype=np.float32)
    xs = xmin + (np.arange(width) + 0.5) * res

    def strip(r0: int) -> None:
        r1 = min(height, r0 + rows_per_strip)
        ys = ymax - (np.arange(r0, r1) + 0.5) * res
        # a row of eastings against a column of northings: what varies along one axis only is
        # computed once per column or row, and the noise lattice is hashed once per node
        out[r0:r1] = ground_height(xs[None, :], ys[:, None], seed)

    starts = range(0, height, rows_per_strip)
    if len(starts) > 1 and (os.cpu_count() or 1) > 1:
        # numpy's array passes release the GIL: strips in threads use the cores
        with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
            list(pool.map(strip, starts))
    else:
        for r0 in starts:
            strip(r0)
    return out
