"""Ray kernels for the planning analyses: segments against prisms, rays over a height field.

Two geometries of one city: **prisms** (each building's footprint polygon extruded from its
base to its top; walls given as 2-D edges) for exact tests of a few segments, and a **height
field** (a north-up raster of surface heights, the DSM) for the many rays of sunlight,
viewshed and skyline. Arrays in, arrays out: numpy, and one compiled loop (the height-field march).

Grids follow :func:`cim.kernels.raster.bilinear_sample`: ``x0, y0`` the west and north edges,
square cells of ``res``; cell ``(r, c)`` covers ``x0 + c·res .. x0 + (c+1)·res`` and
``y0 - (r+1)·res .. y0 - r·res``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels import JitOptions

_JIT: JitOptions = {"nogil": True, "cache": True}

__all__ = ["block_max", "march_heightfield", "points_in_polygons", "radial_samples", "segment_prism_hits", "shadow_heights"]


def _cross(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    return ax * by - ay * bx


def points_in_polygons(
    px: np.ndarray, py: np.ndarray, edge_a: np.ndarray, edge_b: np.ndarray, pair_of_edge: np.ndarray, n_pairs: int
) -> np.ndarray:
    """Even-odd point-in-polygon for (point, polygon) pairs given as (pair, edge) rows.

    Parameters
    ----------
    px, py : (m,) float, each row's point (repeated for every edge of its polygon)
    edge_a, edge_b : (m, 2) float, each row's edge
    pair_of_edge : (m,) int, the pair each row belongs to
    n_pairs : the number of pairs

    Returns
    -------
    (n_pairs,) bool, the point of the pair lies inside its polygon (holes excluded)
    """
    ay, by = edge_a[:, 1], edge_b[:, 1]
    straddles = (ay > py) != (by > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = edge_a[:, 0] + (py - ay) * (edge_b[:, 0] - edge_a[:, 0]) / (by - ay)
    crossing = straddles & (px < x_at)
    counts = np.bincount(pair_of_edge[crossing], minlength=n_pairs)
    return (counts % 2) == 1


def segment_prism_hits(
    p: np.ndarray,
    q: np.ndarray,
    edge_a: np.ndarray,
    edge_b: np.ndarray,
    edge_prism: np.ndarray,
    base: np.ndarray,
    top: np.ndarray,
    *,
    chunk: int = 2_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """First prism each segment ``p → q`` enters: through a wall, the roof or the floor.

    Parameters
    ----------
    p, q : (n, 3) float, segment ends
    edge_a, edge_b : (e, 2) float, the walls' ends (every ring of every footprint)
    edge_prism : (e,) int, the prism of each edge, non-decreasing (edges of a prism are contiguous)
    base, top : (b,) float, each prism's floor and roof heights
    chunk : most (segment, edge) rows handled at once (memory)

    Returns
    -------
    t : (n,) float64, the fraction of the segment where it first meets a prism (NaN: none)
    prism : (n,) int64, that prism (-1: none)

    Notes
    -----
    Candidates are the (segment, prism) pairs whose 2-D boxes overlap; a segment that starts
    inside a prism meets it at ``t = 0``.
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(q, dtype=np.float64).reshape(-1, 3)
    n = len(p)
    t_best = np.full(n, np.inf)
    prism_best = np.full(n, -1, dtype=np.int64)
    nb = len(base)
    if n == 0 or nb == 0:
        return np.where(np.isfinite(t_best), t_best, np.nan), prism_best
    starts = np.searchsorted(edge_prism, np.arange(nb + 1))
    lo = np.minimum(np.minimum.reduceat(edge_a, starts[:-1]), np.minimum.reduceat(edge_b, starts[:-1]))
    hi = np.maximum(np.maximum.reduceat(edge_a, starts[:-1]), np.maximum.reduceat(edge_b, starts[:-1]))
    seg_lo = np.minimum(p[:, :2], q[:, :2])
    seg_hi = np.maximum(p[:, :2], q[:, :2])
    seg_zlo = np.minimum(p[:, 2], q[:, 2])
    seg_zhi = np.maximum(p[:, 2], q[:, 2])
    counts = np.diff(starts)
    # (segment, prism) candidates, in blocks of segments so the box matrix stays small
    block = max(1, chunk // max(nb, 1))
    for s0 in range(0, n, block):
        s1 = min(n, s0 + block)
        overlap = (
            (seg_lo[s0:s1, None, 0] <= hi[None, :, 0])
            & (seg_hi[s0:s1, None, 0] >= lo[None, :, 0])
            & (seg_lo[s0:s1, None, 1] <= hi[None, :, 1])
            & (seg_hi[s0:s1, None, 1] >= lo[None, :, 1])
            & (seg_zlo[s0:s1, None] <= top[None, :])
            & (seg_zhi[s0:s1, None] >= base[None, :])
        )
        seg, prism = np.nonzero(overlap)
        if not len(seg):
            continue
        seg = seg + s0
        _pairs_hits(p, q, seg, prism, starts, counts, edge_a, edge_b, base, top, t_best, prism_best)
    return np.where(np.isfinite(t_best), t_best, np.nan), prism_best


def _pairs_hits(
    p: np.ndarray,
    q: np.ndarray,
    seg: np.ndarray,
    prism: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    edge_a: np.ndarray,
    edge_b: np.ndarray,
    base: np.ndarray,
    top: np.ndarray,
    t_best: np.ndarray,
    prism_best: np.ndarray,
) -> None:
    npairs = len(seg)
    per = counts[prism]
    pair_of_row = np.repeat(np.arange(npairs), per)
    offs = np.cumsum(per) - per
    edge = starts[prism][pair_of_row] + (np.arange(len(pair_of_row)) - offs[pair_of_row])
    s = seg[pair_of_row]
    ps, qs = p[s], q[s]
    a, b = edge_a[edge], edge_b[edge]
    d = qs - ps
    e = b - a
    w = a - ps[:, :2]
    denom = _cross(d[:, 0], d[:, 1], e[:, 0], e[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = _cross(w[:, 0], w[:, 1], e[:, 0], e[:, 1]) / denom
        u = _cross(w[:, 0], w[:, 1], d[:, 0], d[:, 1]) / denom
        z = ps[:, 2] + t * d[:, 2]
    pr = prism[pair_of_row]
    wall = (denom != 0) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1) & (z >= base[pr]) & (z <= top[pr])
    t_wall = np.full(npairs, np.inf)
    np.minimum.at(t_wall, pair_of_row[wall], t[wall])
    # roof and floor: where the segment crosses their planes, inside the footprint; and t = 0
    # when the segment starts inside the solid
    t_pair = t_wall
    pp, qp = p[seg], q[seg]
    dz = qp[:, 2] - pp[:, 2]
    for level in (top[prism], base[prism], None):
        if level is None:
            tc = np.zeros(npairs)
            ok = (pp[:, 2] > base[prism]) & (pp[:, 2] < top[prism])
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                tc = (level - pp[:, 2]) / dz
            ok = (dz != 0) & (tc >= 0) & (tc <= 1)
        if not ok.any():
            continue
        with np.errstate(invalid="ignore"):
            xy = pp[:, :2] + np.where(ok, tc, 0.0)[:, None] * (qp[:, :2] - pp[:, :2])
        inside = points_in_polygons(xy[pair_of_row, 0], xy[pair_of_row, 1], a, b, pair_of_row, npairs)
        hit = ok & inside
        t_pair = np.where(hit & (tc < t_pair), tc, t_pair)
    np.minimum.at(t_best, seg, t_pair)
    won = np.isfinite(t_pair) & (t_pair == t_best[seg])
    prism_best[seg[won]] = prism[won]  # equal distances: the one written last, deterministically


def block_max(grid: np.ndarray, block: int) -> np.ndarray:
    """The maximum of each ``block × block`` tile of a grid (edge tiles may be partial).

    Parameters
    ----------
    grid : (rows, cols) float
    block : cells a side

    Returns
    -------
    (ceil(rows / block), ceil(cols / block)) float, NaN cells ignored (-inf where all are NaN)
    """
    rows, cols = grid.shape
    br, bc = -(-rows // block), -(-cols // block)
    padded = np.full((br * block, bc * block), -np.inf, dtype=np.float64)
    padded[:rows, :cols] = np.where(np.isnan(grid), -np.inf, grid)
    return padded.reshape(br, block, bc, block).max(axis=(1, 3))


def march_heightfield(
    grid: np.ndarray,
    x0: float,
    y0: float,
    res: float,
    origins: np.ndarray,
    dirs: np.ndarray,
    max_dist: float | np.ndarray,
    *,
    t_start: float | np.ndarray = 0.0,
    step: float | None = None,
    blocks: tuple[int, np.ndarray] | list[tuple[int, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First place where each ray passes below the height field.

    Parameters
    ----------
    grid : (rows, cols) float, surface heights (NaN: no data, never an obstacle)
    x0, y0, res : the grid's west and north edges and cell size
    origins : (n, 3) float, ray starts
    dirs : (n, 3) float, unit directions
    max_dist : float or (n,) float, the longest distance to march (along the ray)
    t_start : float or (n,), where marching starts (skips the start's own cell)
    step : distance between samples (default ``res / 2``)
    blocks : ``(block, block_max(grid, block))``, or a list of them (any sizes), to skip the
        tiles a ray passes above: the largest clear tile is skipped at once

    Returns
    -------
    t : (n,) float64, distance to the first sample below the surface (NaN: none)
    row, col : (n,) int64, its cell (-1: none)

    Notes
    -----
    Samples every ``step`` along the ray at the nearest cell; a ray leaves when it is outside
    the grid, past ``max_dist``, or climbing above the highest cell. Each ray is marched to its
    end by a compiled loop (:func:`_march`): the numpy version marched every ray one step at a
    time with a dozen temporaries a step, and made sunlight over a km² take 1.4 s of CPU; the
    loop gives the same answers, bit for bit (``tests/kernels/test_rays.py`` keeps the numpy
    version as its reference).
    """
    origins = np.ascontiguousarray(origins, dtype=np.float64).reshape(-1, 3)
    dirs = np.ascontiguousarray(dirs, dtype=np.float64).reshape(-1, 3)
    n = len(origins)
    step = float(step or res / 2.0)
    rows, cols = grid.shape
    t_hit = np.full(n, np.nan)
    row_hit = np.full(n, -1, dtype=np.int64)
    col_hit = np.full(n, -1, dtype=np.int64)
    if n == 0 or grid.size == 0:
        return t_hit, row_hit, col_hit
    top = float(np.nanmax(grid)) if np.isfinite(grid).any() else -np.inf
    flat = np.where(np.isnan(grid), -np.inf, grid).ravel()
    limit = np.ascontiguousarray(np.broadcast_to(np.asarray(max_dist, dtype=np.float64), (n,)))
    start = np.ascontiguousarray(np.broadcast_to(np.asarray(t_start, dtype=np.float64), (n,)))
    levels = [] if blocks is None else [blocks] if isinstance(blocks, tuple) else list(blocks)
    levels = sorted(levels, key=lambda level: -level[0])  # coarse first
    sizes = np.array([size for size, _ in levels], dtype=np.int64)
    widths = np.array([bmax.shape[1] for _, bmax in levels], dtype=np.int64)
    offsets = np.cumsum([0] + [bmax.size for _, bmax in levels[:-1]]).astype(np.int64)
    tiles = np.concatenate([np.asarray(bmax, dtype=np.float64).ravel() for _, bmax in levels]) if levels else np.zeros(0)
    _march(
        flat,
        rows,
        cols,
        top,
        float(x0),
        float(y0),
        float(res),
        origins,
        dirs,
        limit,
        start,
        step,
        sizes,
        widths,
        offsets,
        tiles,
        t_hit,
        row_hit,
        col_hit,
    )
    return t_hit, row_hit, col_hit


@njit(**_JIT)
def _march(
    flat: np.ndarray,
    rows: int,
    cols: int,
    top: float,
    x0: float,
    y0: float,
    res: float,
    origins: np.ndarray,
    dirs: np.ndarray,
    limit: np.ndarray,
    start: np.ndarray,
    step: float,
    sizes: np.ndarray,
    widths: np.ndarray,
    offsets: np.ndarray,
    tiles: np.ndarray,
    t_hit: np.ndarray,
    row_hit: np.ndarray,
    col_hit: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """March each ray to its end (see :func:`march_heightfield`; the same arithmetic, in the
    same order, as the numpy version kept in the tests). ``tiles``: every level's tile maxima,
    flattened one after another (``offsets``, row ``widths``), coarse first."""
    for i in range(origins.shape[0]):
        ox, oy, oz = origins[i, 0], origins[i, 1], origins[i, 2]
        dx, dy, dz = dirs[i, 0], dirs[i, 1], dirs[i, 2]
        ta = start[i]
        while True:
            x = ox + ta * dx
            y = oy + ta * dy
            z = oz + ta * dz
            c = np.int64(np.floor((x - x0) / res))
            r = np.int64(np.floor((y0 - y) / res))
            if not (c >= 0 and c < cols and r >= 0 and r < rows and ta <= limit[i] and not (z > top and dz >= 0)):
                break
            if z < flat[r * cols + c]:
                t_hit[i] = ta
                row_hit[i] = r
                col_hit[i] = c
                break
            advance = step
            for k in range(sizes.shape[0]):
                # inside a tile whose highest cell lies below the ray all the way across: jump out
                # of the largest such tile
                size = sizes[k]
                br = r // size
                bc = c // size
                bx0 = x0 + bc * size * res
                by1 = y0 - br * size * res
                if dx > 0:
                    tx = (bx0 + size * res - x) / dx
                elif dx < 0:
                    tx = (bx0 - x) / dx
                else:
                    tx = np.inf
                if dy > 0:
                    ty = (by1 - y) / dy
                elif dy < 0:
                    ty = (by1 - size * res - y) / dy
                else:
                    ty = np.inf
                exit_t = tx if tx < ty else ty
                if not np.isfinite(exit_t):
                    continue
                far = z + exit_t * dz
                low = z if z < far else far
                if low > tiles[offsets[k] + br * widths[k] + bc]:
                    lead = exit_t + 1e-6
                    advance = lead if lead > step else step
                    break
            ta = ta + advance


def radial_samples(
    centre: tuple[float, float], azimuths: np.ndarray, radius: float, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample positions along rays from a centre, one ray per azimuth.

    Parameters
    ----------
    centre : (x, y)
    azimuths : (a,) float, degrees clockwise from grid north
    radius : metres
    step : metres between samples (the first at ``step``)

    Returns
    -------
    x, y : (a, s) float64, sample positions
    dist : (s,) float64, their distance from the centre
    """
    dist = np.arange(1, int(np.floor(radius / step)) + 1, dtype=np.float64) * step
    az = np.radians(np.asarray(azimuths, dtype=np.float64))
    x = centre[0] + np.sin(az)[:, None] * dist[None, :]
    y = centre[1] + np.cos(az)[:, None] * dist[None, :]
    return x, y, dist


def shadow_heights(grid: np.ndarray, toward_sun: tuple[float, float], tan_altitude: float) -> np.ndarray:
    """The height below which each cell lies in the shadow of the cells towards the sun.

    ``S(p) = max over k ≥ 1 of grid(p + k·s·u) - k·s·tan(alt)``: a sweep along the sun's
    direction ``u``, one column (or row) at a time, with ``s`` the step that moves one column
    (row) and a linear interpolation across rows (columns). Cells beyond the grid cast nothing.

    Parameters
    ----------
    grid : (rows, cols) float, surface heights (NaN: nothing), cells of one unit of length
    toward_sun : (east, north), the sun's horizontal direction (need not be unit)
    tan_altitude : tan of the sun's altitude, per unit of horizontal length

    Returns
    -------
    (rows, cols) float64, ``-inf`` where nothing towards the sun rises above the sun's rays
    """
    ux, uy = float(toward_sun[0]), float(toward_sun[1])
    norm = np.hypot(ux, uy)
    if norm == 0:
        raise ValueError("the sun's horizontal direction is zero (sun at the zenith)")
    ux, uy = ux / norm, uy / norm
    g = np.where(np.isnan(grid), -np.inf, np.asarray(grid, dtype=np.float64))
    # sweep along columns when the sun moves more east–west than north–south, else along rows
    # (work on the transpose: its columns are the rows; "east" is then south, rows run east)
    if abs(ux) >= abs(uy):
        along, across, work = ux, -uy, g
    else:
        along, across, work = -uy, ux, g.T
    step = 1.0 / abs(along)  # horizontal length of one column's move
    shift = across * step  # rows moved per column (rows run the other way from north)
    drop = step * tan_altitude
    n_rows, n_cols = work.shape
    out = np.full(work.shape, -np.inf)
    order = range(n_cols - 2, -1, -1) if along > 0 else range(1, n_cols)
    prev = n_cols - 1 if along > 0 else 0
    rows = np.arange(n_rows, dtype=np.float64)
    lo_frac = shift - np.floor(shift)
    base = int(np.floor(shift))
    for c in order:
        upstream = np.maximum(work[:, prev], out[:, prev])  # what stands, or already shades, one column sunwards
        r0 = rows.astype(np.int64) + base
        r1 = r0 + 1
        v0 = np.where((r0 >= 0) & (r0 < n_rows), upstream[np.clip(r0, 0, n_rows - 1)], -np.inf)
        v1 = np.where((r1 >= 0) & (r1 < n_rows), upstream[np.clip(r1, 0, n_rows - 1)], -np.inf)
        # between the two rows; a neighbour beyond the grid (-inf) leaves -inf
        value = v0 if lo_frac == 0.0 else (1 - lo_frac) * v0 + lo_frac * v1
        out[:, c] = value - drop
        prev = c
    return out if work is g else out.T
