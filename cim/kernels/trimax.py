"""Rasterising triangle meshes into a height grid: the highest surface over each cell centre."""

from __future__ import annotations

import numpy as np

__all__ = ["rasterise_triangles_max"]

#: cell–triangle pairs tested at once (bounds the temporaries to a few hundred MB)
_CHUNK = 4_000_000


def rasterise_triangles_max(triangles: np.ndarray, x0: float, y0: float, res: float, shape: tuple[int, int]) -> np.ndarray:
    """The highest triangle above each cell centre of a north-up grid.

    Parameters
    ----------
    triangles : (m, 3, 3) float, triangle corners (x, y, z) in the grid's CRS
    x0, y0 : the grid's west and north edges
    res : cell size
    shape : (rows, cols)

    Returns
    -------
    (rows, cols) float32, the highest z of the triangles whose plan (x, y) covers the cell
    centre (edges included), NaN where none does.

    Notes
    -----
    Each triangle is tested against the cell centres of its bounding box, all pairs at once
    (in chunks of about 4 M pairs): barycentric coordinates of the centre give the inside test
    and the height on the triangle's plane; the maximum per cell is a sort and
    ``np.maximum.reduceat``. Triangles seen edge-on from above (walls) cover no cell centre and
    are skipped; a closed mesh's roofs and the tops of its walls' neighbours cover the cells.
    """
    rows, cols = int(shape[0]), int(shape[1])
    out = np.full(rows * cols, -np.inf, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
    if len(tri) == 0 or rows == 0 or cols == 0:
        return np.full((rows, cols), np.nan, dtype=np.float32)
    ax, ay = tri[:, 0, 0], tri[:, 0, 1]
    e1 = tri[:, 1, :2] - tri[:, 0, :2]
    e2 = tri[:, 2, :2] - tri[:, 0, :2]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    # the cells whose centre lies in each triangle's box: c + 0.5 in [(xmin - x0)/res, (xmax - x0)/res]
    xs, ys = tri[:, :, 0], tri[:, :, 1]
    c0 = np.maximum(np.ceil((xs.min(1) - x0) / res - 0.5), 0)
    c1 = np.minimum(np.floor((xs.max(1) - x0) / res - 0.5), cols - 1)
    r0 = np.maximum(np.ceil((y0 - ys.max(1)) / res - 0.5), 0)
    r1 = np.minimum(np.floor((y0 - ys.min(1)) / res - 0.5), rows - 1)
    keep = (np.abs(det) > 1e-12 * res * res) & (c1 >= c0) & (r1 >= r0) & np.isfinite(tri).all(axis=(1, 2))
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return np.full((rows, cols), np.nan, dtype=np.float32)
    width = (c1[idx] - c0[idx] + 1).astype(np.int64)
    count = width * (r1[idx] - r0[idx] + 1).astype(np.int64)
    ends = np.cumsum(count)
    start = 0
    while start < len(idx):
        # as many whole triangles as fit the chunk (at least one)
        stop = int(np.searchsorted(ends, (ends[start - 1] if start else 0) + _CHUNK, side="right"))
        stop = max(stop, start + 1)
        sel = idx[start:stop]
        n = count[start:stop]
        w = width[start:stop]
        which = np.repeat(np.arange(len(sel)), n)
        offset = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
        r = r0[sel][which].astype(np.int64) + offset // w[which]
        c = c0[sel][which].astype(np.int64) + offset % w[which]
        t = sel[which]
        px = x0 + (c + 0.5) * res - ax[t]
        py = y0 - (r + 0.5) * res - ay[t]
        d = det[t]
        u = (px * e2[t, 1] - py * e2[t, 0]) / d
        v = (py * e1[t, 0] - px * e1[t, 1]) / d
        eps = -1e-9
        inside = (u >= eps) & (v >= eps) & (u + v <= 1 - eps)
        t, u, v = t[inside], u[inside], v[inside]
        z = tri[t, 0, 2] + u * (tri[t, 1, 2] - tri[t, 0, 2]) + v * (tri[t, 2, 2] - tri[t, 0, 2])
        flat = r[inside] * cols + c[inside]
        if len(flat):
            order = np.argsort(flat, kind="stable")
            flat, z = flat[order], z[order]
            first = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
            cells = flat[first]
            out[cells] = np.maximum(out[cells], np.maximum.reduceat(z, first))
        start = stop
    out[~np.isfinite(out)] = np.nan
    return out.reshape(rows, cols).astype(np.float32)
