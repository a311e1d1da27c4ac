"""Terrain tiles from lattice windows: gzip-compressed quantized-mesh tiles (pure: no I/O).

:func:`encode_terrain_tiles` meshes each tile of a level within the level's error bound (:func:`level_error`), measured
from the surface a client draws (flat triangles between ECEF vertices) along the tile's up
direction, so the Earth's curvature counts; levels 0–5 are regular grids instead. Normals come
from the lattice itself (central differences), so neighbouring tiles of a level shade alike. Every
tile of a job is then encoded in one batch (:func:`cim.formats.quantized_mesh.encode_quantized_meshes`,
compiled: the numpy version spent as long packing tiles as meshing the flat ones) and gzipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cim.formats.quantized_mesh import QMAX, encode_quantized_meshes, gzip_tile
from cim.kernels.frames import geodetic_to_ecef, up_vectors
from cim.kernels.heightfield import lattice_normals
from cim.kernels.tin import error_bounded_tins
from cim.tiling.geographic import INTERVALS, SAMPLES, level_max_error, sample_degrees, tile_bounds, tile_degrees

__all__ = ["GRID_LEVELS", "GRID_STRIDE", "LevelTiles", "encode_terrain_tiles", "level_error"]

#: levels up to this one (tiles of 5.6° and more) are regular grids on every GRID_STRIDE-th sample
GRID_LEVELS = 5
GRID_STRIDE = 4


def level_error(z: int, error_factor: float = 1.0) -> float:
    """The TIN error bound of a level-``z`` tile, in metres (see the module's error rule)."""
    return error_factor * level_max_error(z)


@dataclass
class LevelTiles:
    """Tiles of one level that lie in one lattice grid."""

    grid: np.ndarray  # (rows, cols) level-z lattice without NaN, row index growing northwards
    z: int
    tiles: list[tuple[int, int]]  # (x, y), TMS rows
    rows0: np.ndarray  # (k,) grid row and column of each tile's south-west sample; every tile
    cols0: np.ndarray  # needs one sample of margin all round in the grid (for normals)


def encode_terrain_tiles(parts: list[LevelTiles], error_factor: float = 1.0) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Lattice windows → gzip-compressed quantized-mesh tiles.

    Each level's tiles are meshed within :func:`level_error` of their samples, then every tile of
    every part is encoded in one batch.

    Returns
    -------
    tiles : one gzip-compressed tile per tile of the parts, in order
    errors : (k,) each TIN's largest vertical distance to its lattice samples
    counts : (k, 2) vertices and triangles of each tile
    """
    cols: dict[str, list[np.ndarray]] = {name: [] for name in ("bounds", "u", "v", "h", "tri", "nv", "nt", "normals", "ranges", "errors")}
    parts = [p for p in parts if len(p.tiles)]
    for p in parts:
        rows0 = np.asarray(p.rows0, dtype=np.int64)
        cols0 = np.asarray(p.cols0, dtype=np.int64)
        if p.z <= GRID_LEVELS:
            verts, tri, voff, toff, errors, ranges = _grid_meshes(p.grid, rows0, cols0)
        else:
            verts, tri, voff, toff, errors, ranges = error_bounded_tins(
                p.grid, rows0, cols0, SAMPLES, level_error(p.z, error_factor), frames=_up_frames(p.z, [y for _, y in p.tiles])
            )
        seg = np.repeat(np.arange(len(p.tiles)), np.diff(voff))
        ix, iy = verts[:, 0].astype(np.int64), verts[:, 1].astype(np.int64)
        bounds = np.array([tile_bounds(p.z, x, y) for x, y in p.tiles]).reshape(-1, 4)
        step = sample_degrees(p.z)
        col, row = cols0[seg] + ix, rows0[seg] + iy
        cols["bounds"].append(bounds)
        cols["u"].append((ix * QMAX + INTERVALS // 2) // INTERVALS)
        cols["v"].append((iy * QMAX + INTERVALS // 2) // INTERVALS)
        cols["h"].append(p.grid[row, col])
        cols["tri"].append(tri)
        cols["nv"].append(np.diff(voff))
        cols["nt"].append(np.diff(toff))
        cols["normals"].append(lattice_normals(p.grid, col, row, bounds[seg, 1] + iy * step, bounds[seg, 0] + ix * step, step))
        cols["ranges"].append(ranges)
        cols["errors"].append(errors)
    if not parts:
        return [], np.zeros(0), np.zeros((0, 2), dtype=np.int64)
    cat = {name: np.concatenate(v) for name, v in cols.items()}
    nv, nt = cat["nv"], cat["nt"]
    raw = encode_quantized_meshes(
        cat["bounds"],
        cat["u"],
        cat["v"],
        cat["h"],
        cat["tri"],
        np.concatenate([[0], np.cumsum(nv)]),
        np.concatenate([[0], np.cumsum(nt)]),
        normals=cat["normals"],
        height_ranges=cat["ranges"],
    )
    return [gzip_tile(t) for t in raw], cat["errors"], np.column_stack([nv, nt])


@lru_cache(maxsize=1024)
def _row_frame(z: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """``(offset, scale)`` of one tile row (see :func:`_up_frames`)."""
    d, step = tile_degrees(z), sample_degrees(z)
    rel_lon = -d / 2 + np.arange(SAMPLES) * step
    south = -90.0 + y * d
    glon, glat = np.meshgrid(rel_lon, south + np.arange(SAMPLES) * step)
    n = up_vectors(np.array(0.0), np.array(south + d / 2))
    centre = geodetic_to_ecef(np.array(0.0), np.array(south + d / 2), np.array(0.0))
    return (geodetic_to_ecef(glon, glat, np.zeros_like(glon)) - centre) @ n, up_vectors(glon, glat) @ n


def _up_frames(z: int, rows: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tile row, the lattice's ECEF position along the tile centre's up direction: ``offset + h·scale``.

    A client draws flat triangles between ECEF vertices; measured along the tile's up direction
    ``n``, the drawn surface at a sample is exactly the TIN of ``n · ECEF(lon, lat, h)``, so meshing
    that (rather than ``h``) bounds the error of what is drawn, the Earth's curvature included
    (a chord across a level-6 tile sags 2 km below the ellipsoid). ``ECEF = E0(lon, lat) +
    h·up(lon, lat)``, and by symmetry about the axis both terms depend on the row only.
    """
    distinct = sorted(set(rows))
    index = {y: k for k, y in enumerate(distinct)}
    frames = [_row_frame(z, y) for y in distinct]
    offset = np.stack([f[0] for f in frames])
    scale = np.stack([f[1] for f in frames])
    return offset, scale, np.array([index[y] for y in rows], dtype=np.int64)


def _grid_meshes(grid: np.ndarray, rows0: np.ndarray, cols0: np.ndarray):
    """Regular meshes on every ``GRID_STRIDE``-th sample, for the coarsest levels (as error_bounded_tins returns).

    A level-0 tile spans a hemisphere: what matters there is the curvature, not the heights, and a
    17 × 17 grid follows it (as CesiumJS's own ellipsoid tiles do with 16 × 16).
    """
    k = len(rows0)
    ticks = np.arange(0, SAMPLES, GRID_STRIDE)
    m = len(ticks)
    gx, gy = np.meshgrid(ticks, ticks)
    verts = np.tile(np.column_stack([gx.ravel(), gy.ravel()]), (k, 1)).astype(np.int32)
    idx = np.arange(m * m).reshape(m, m)
    a, b, c, e = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    cell = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, e], 1)])
    tri = np.tile(cell, (k, 1)).astype(np.int32)
    windows = [grid[r : r + SAMPLES, c0 : c0 + SAMPLES] for r, c0 in zip(rows0, cols0)]
    ranges = np.array([(w.min(), w.max()) for w in windows]).reshape(-1, 2)
    return verts, tri, np.arange(k + 1) * m * m, np.arange(k + 1) * len(cell), np.full(k, np.nan), ranges
