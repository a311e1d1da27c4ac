"""Error-bounded TINs of square windows of a height grid, many windows in one compiled call.

Each window is meshed by greedy insertion (:mod:`cim.kernels.tin.insert`), then redundant
vertices are removed (:mod:`cim.kernels.tin.decimate`); :func:`tin_error` measures a TIN against
its grid. See :mod:`cim.kernels.tin` for the method and its costs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from cim.kernels.tin.decimate import remove_vertices
from cim.kernels.tin.insert import greedy_insert, workspace
from cim.kernels.tin.primitives import JIT, worst_sample

__all__ = ["REMOVAL_PASSES", "error_bounded_tins", "error_bounded_tin", "tin_error"]

#: removal sweeps over a TIN's vertices (a removal can free a neighbour swept earlier; each sweep
#: finds fewer: benchmarks/README.md)
REMOVAL_PASSES = 2


@lru_cache(maxsize=8)
def _identity_frame(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((1, size, size)), np.ones((1, size, size))


@njit(**JIT)
def _tins(grid, rows0, cols0, size, max_error, decimate, max_vertices, offset, scale, frame):  # pragma: no cover - compiled
    k = len(rows0)
    cap_v = k * size * size
    out_x = np.empty(cap_v, np.int32)
    out_y = np.empty(cap_v, np.int32)
    out_t = np.empty((2 * cap_v + 2 * k, 3), np.int32)
    voff = np.zeros(k + 1, np.int64)
    toff = np.zeros(k + 1, np.int64)
    worst = np.zeros(k)
    lo = np.zeros(k)
    hi = np.zeros(k)
    tile = np.empty((size, size))
    work = workspace(size * size)
    nv = nt = 0
    for s in range(k):
        r0, c0, f = rows0[s], cols0[s], frame[s]
        h_lo, h_hi = np.inf, -np.inf
        for y in range(size):
            for x in range(size):
                h = grid[r0 + y, c0 + x]
                h_lo, h_hi = min(h_lo, h), max(h_hi, h)
                tile[y, x] = offset[f, y, x] + h * scale[f, y, x]
        vx, vy, tv, he, err, threshold = greedy_insert(tile, max_error, max_vertices, work)
        if err != err:
            worst[s] = np.nan
            voff[s + 1], toff[s + 1] = nv, nt
            continue
        if decimate and err <= threshold:
            vx, vy, tri, err = remove_vertices(tile, threshold, vx, vy, tv, he, REMOVAL_PASSES, work[4])
        else:
            tri = tv.reshape(-1, 3)
        n, m = len(vx), tri.shape[0]
        out_x[nv : nv + n] = vx
        out_y[nv : nv + n] = vy
        out_t[nt : nt + m] = tri
        nv += n
        nt += m
        voff[s + 1], toff[s + 1] = nv, nt
        worst[s] = err
        lo[s], hi[s] = h_lo, h_hi
    return out_x[:nv].copy(), out_y[:nv].copy(), out_t[:nt].copy(), voff, toff, worst, lo, hi


def error_bounded_tins(
    grid: np.ndarray,
    rows0: np.ndarray,
    cols0: np.ndarray,
    size: int,
    max_error: float,
    *,
    decimate: bool = True,
    max_vertices: int | None = None,
    frames: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Error-bounded TINs of square windows of one grid (ragged results, shapely-2 style).

    Parameters
    ----------
    grid : (rows, cols) float, finite heights under every window
    rows0, cols0 : (k,) int, the first row and column of each window
    size : samples per window edge (at least 2)
    max_error : metres; every TIN passes within this vertical distance of every sample of its window
    decimate : remove redundant vertices after insertion (fewer vertices at the same error)
    max_vertices : stop inserting at this many vertices a window (the bound then does not hold)
    frames : ``(offset, scale, frame)`` to measure a window's error in another direction than its
        values: window ``s`` is triangulated on ``offset[f] + values * scale[f]`` with
        ``f = frame[s]`` (offset and scale ``(nf, size, size)``). Terrain uses it to measure the
        distance from each sample to the flat triangles a client draws in ECEF, along the tile's up
        direction, curvature of the Earth included.

    Returns
    -------
    vertices : (N, 2) int32, ``(x, y)`` indices within their window, window after window; each
        window's first four vertices are its corners
    triangles : (M, 3) int32, indices into their window's vertices, counter-clockwise
    vertex_offsets, triangle_offsets : (k + 1,) int64, window ``s`` owns ``[off[s], off[s+1])``
    errors : (k,) float64, each TIN's largest vertical distance to its window's samples (in the
        frames' measure when given)
    ranges : (k, 2) float64, each window's lowest and highest value
    """
    g = np.ascontiguousarray(grid, dtype=np.float64)
    rows0 = np.ascontiguousarray(rows0, dtype=np.int64)
    cols0 = np.ascontiguousarray(cols0, dtype=np.int64)
    size = int(size)
    if g.ndim != 2 or size < 2:
        raise ValueError(f"need a 2-D grid and windows of at least 2 x 2, got {g.shape} and {size}")
    if len(rows0) != len(cols0):
        raise ValueError("rows0 and cols0 differ in length")
    if len(rows0) and (rows0.min() < 0 or cols0.min() < 0 or rows0.max() + size > g.shape[0] or cols0.max() + size > g.shape[1]):
        raise ValueError("a window reaches outside the grid")
    limit = size * size if max_vertices is None else max(4, int(max_vertices))
    if frames is None:
        offset, scale = _identity_frame(size)
        frame: np.ndarray = np.zeros(len(rows0), np.int64)
    else:
        offset, scale, frame = (np.ascontiguousarray(a, dtype=d) for a, d in zip(frames, (np.float64, np.float64, np.int64)))
        if offset.shape != scale.shape or offset.shape[1:] != (size, size) or frame.shape != rows0.shape:
            raise ValueError("frames do not match the windows")
        if len(frame) and (frame.min() < 0 or frame.max() >= len(offset)):
            raise ValueError("a window names a frame that does not exist")
    vx, vy, tri, voff, toff, worst, lo, hi = _tins(g, rows0, cols0, size, float(max_error), bool(decimate), limit, offset, scale, frame)
    if np.isnan(worst).any():
        raise ValueError("a window has non-finite heights: fill no-data first")
    vertices = np.empty((len(vx), 2), np.int32)
    vertices[:, 0] = vx
    vertices[:, 1] = vy
    return vertices, tri, voff, toff, worst, np.stack([lo, hi], axis=1)


def error_bounded_tin(
    grid: np.ndarray, max_error: float, *, decimate: bool = True, max_vertices: int | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """An error-bounded TIN of a whole grid (see :func:`error_bounded_tins`).

    Parameters
    ----------
    grid : (n, n) float, square, finite; at least 2 × 2
    max_error : metres; the TIN passes within this vertical distance of every grid sample

    Returns
    -------
    vertices : (n, 2) int32 ``(x = column, y = row)``; the first four are the corners
    triangles : (m, 3) int32, counter-clockwise in ``(x, y)``
    error : the largest vertical distance from the TIN to a grid sample
    """
    g = np.asarray(grid)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"grid must be square, got shape {g.shape}")
    row0, col0 = np.zeros(1, np.int64), np.zeros(1, np.int64)  # the one window's corner
    v, t, _, _, err, _ = error_bounded_tins(g, row0, col0, g.shape[0], max_error, decimate=decimate, max_vertices=max_vertices)
    return v, t, float(err[0])


@njit(**JIT)
def _tin_error(grid, vx, vy, tri):  # pragma: no cover - compiled
    worst = 0.0
    for i in range(tri.shape[0]):
        a, b, c = tri[i, 0], tri[i, 1], tri[i, 2]
        e, _, _ = worst_sample(grid, vx[a], vy[a], vx[b], vy[b], vx[c], vy[c])
        worst = max(worst, e)
    return worst


def tin_error(grid: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Largest vertical distance between a TIN on grid samples and the grid, over every sample.

    Parameters
    ----------
    grid : (rows, cols) float
    vertices : (n, 2) int, ``(x, y)`` grid indices; heights are the grid's at those samples
    triangles : (m, 3) int, counter-clockwise in ``(x, y)``
    """
    v = np.asarray(vertices, dtype=np.int64)
    tri = np.ascontiguousarray(triangles, dtype=np.int64)
    return float(_tin_error(np.ascontiguousarray(grid, dtype=np.float64), v[:, 0].copy(), v[:, 1].copy(), tri))
