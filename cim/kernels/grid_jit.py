"""Compiled uniform-grid searches over triangle pieces (numba), for
:class:`cim.kernels.simplify.TriangleLocator`.

The pieces' centroids are bucketed in a dense 3D grid (a counting sort: ``order`` lists the
pieces cell by cell, ``starts`` where each cell's run begins). A query walks the cells around its
point in shells of growing Chebyshev radius; everything outside the shells walked so far is at
least as far as the nearest open face of their block, which says when to stop. Two searches:

- :func:`nearest_exact`: the nearest piece, exactly (of all pieces at the least distance, the
  lowest row), the distance computed as :func:`cim.kernels.closest_jit.distance_to_piece` does;
- :func:`nearest_centroids`: the ``k`` nearest centroids, with a flag where the k-th and the
  next are too close to tell apart (then which of them a k-d tree returns is its own choice, and
  the caller asks one).

Imported when first used.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels import JitOptions
from cim.kernels.closest_jit import distance_to_piece

__all__ = ["build_grid", "by_cell", "nearest_exact", "nearest_centroids"]

JIT: JitOptions = {"nogil": True, "cache": True}

#: relative gap below which the k-th and (k+1)-th nearest centroids' squared distances count as
#: a tie (a k-d tree's rounding could order them either way)
TIE = 1e-9


@njit(**JIT)
def build_grid(
    centres: np.ndarray, origin: np.ndarray, cell: float, dims: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Bucket ``centres`` (n, 3) in the grid of ``dims`` cells of side ``cell`` from ``origin``.

    Returns
    -------
    starts : (cells + 1,) int64, where each cell's run in ``order`` begins (cells numbered x
        fastest, then y, then z)
    order : (n,) int64, the centres' rows cell by cell, in row order within a cell
    """
    n = centres.shape[0]
    key = np.empty(n, dtype=np.int64)
    for i in range(n):
        cx = _clamp(int(np.floor((centres[i, 0] - origin[0]) / cell)), dims[0])
        cy = _clamp(int(np.floor((centres[i, 1] - origin[1]) / cell)), dims[1])
        cz = _clamp(int(np.floor((centres[i, 2] - origin[2]) / cell)), dims[2])
        key[i] = (cz * dims[1] + cy) * dims[0] + cx
    total = dims[0] * dims[1] * dims[2]
    starts = np.zeros(total + 1, dtype=np.int64)
    for i in range(n):
        starts[key[i] + 1] += 1
    for c in range(total):
        starts[c + 1] += starts[c]
    fill = starts[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[fill[key[i]]] = i
        fill[key[i]] += 1
    return starts, order


@njit(**JIT)
def _clamp(c: int, n: int) -> int:  # pragma: no cover - compiled
    return 0 if c < 0 else (n - 1 if c >= n else c)


@njit(**JIT)
def by_cell(points: np.ndarray, origin: np.ndarray, cell: float, dims: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """The points' rows grouped by their cell: the order to query them in (neighbours one after
    the other find what they read in the processor's caches, and start from each other's
    answers); each point's answer is its own, whatever the order."""
    key = np.empty(points.shape[0], dtype=np.int64)
    for i in range(points.shape[0]):
        cx = _clamp(int(np.floor((points[i, 0] - origin[0]) / cell)), dims[0])
        cy = _clamp(int(np.floor((points[i, 1] - origin[1]) / cell)), dims[1])
        cz = _clamp(int(np.floor((points[i, 2] - origin[2]) / cell)), dims[2])
        key[i] = (cz * dims[1] + cy) * dims[0] + cx
    return np.argsort(key, kind="mergesort")


@njit(**JIT)
def _bound(
    q: np.ndarray, origin: np.ndarray, cell: float, dims: np.ndarray, centre: np.ndarray, r: int
) -> float:  # pragma: no cover - compiled
    """Least distance from ``q`` to a point of the grid outside the block of cells within
    Chebyshev radius ``r`` of ``centre`` (infinite when the block covers the grid)."""
    b = np.inf
    for a in range(3):
        lo = centre[a] - r
        hi = centre[a] + r
        if lo > 0:
            b = min(b, q[a] - (origin[a] + lo * cell))
        if hi < dims[a] - 1:
            b = min(b, origin[a] + (hi + 1) * cell - q[a])
    return max(b, 0.0)


@njit(**JIT)
def _shell(centre: np.ndarray, dims: np.ndarray, r: int, out: np.ndarray) -> tuple[np.ndarray, int]:  # pragma: no cover - compiled
    """The cells at Chebyshev distance exactly ``r`` from ``centre`` (within the grid) into
    ``out``, a buffer replaced by a larger one when shorter than (2r + 1)³; returns the buffer
    and how many cells it holds."""
    if out.shape[0] < (2 * r + 1) ** 3:
        out = np.empty((2 * r + 1) ** 3, dtype=np.int64)
    m = 0
    x0, x1 = max(centre[0] - r, 0), min(centre[0] + r, dims[0] - 1)
    y0, y1 = max(centre[1] - r, 0), min(centre[1] + r, dims[1] - 1)
    z0, z1 = max(centre[2] - r, 0), min(centre[2] + r, dims[2] - 1)
    for z in range(z0, z1 + 1):
        zface = abs(z - centre[2]) == r
        for y in range(y0, y1 + 1):
            if zface or abs(y - centre[1]) == r:  # the whole row is on the shell
                for x in range(x0, x1 + 1):
                    out[m] = (z * dims[1] + y) * dims[0] + x
                    m += 1
            else:  # only the row's two ends (r > 0 here: at r = 0 every row is on the shell)
                for x in (centre[0] - r, centre[0] + r):
                    if 0 <= x < dims[0]:
                        out[m] = (z * dims[1] + y) * dims[0] + x
                        m += 1
    return out, m


@njit(**JIT)
def nearest_exact(
    pieces: np.ndarray,
    centres: np.ndarray,
    rmax: float,
    origin: np.ndarray,
    cell: float,
    dims: np.ndarray,
    starts: np.ndarray,
    order: np.ndarray,
    points: np.ndarray,
    tol: float,
    best_t: np.ndarray,
    best_w: np.ndarray,
    best_d: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The nearest piece of each point, exactly: into ``best_t`` (its row; of pieces at the same
    distance the lowest), ``best_w`` (barycentric weights of the closest point) and ``best_d``.

    Parameters
    ----------
    pieces : (m, 3, 3) float64, each piece's corners
    centres : (m, 3) float64, their centroids in the grid's ``order`` (``centroids[order]``)
    rmax : no piece's corner is farther than this from its centroid
    tol : slack for rounding (metres) in the pruning tests: a piece is skipped only when it is
        farther than the best so far by more than this
    """
    cells = np.empty(1024, dtype=np.int64)
    centre = np.empty(3, dtype=np.int64)
    last = -1
    for i in range(points.shape[0]):
        q = points[i]
        px, py, pz = q[0], q[1], q[2]
        for a in range(3):
            centre[a] = _clamp(int(np.floor((q[a] - origin[a]) / cell)), dims[a])
        bt, bd, bu, bv, bw = -1, np.inf, 0.0, 0.0, 0.0
        if last >= 0:  # the previous point's nearest piece: a real one, so a bound to start from
            bd, bu, bv, bw = distance_to_piece(pieces, last, px, py, pz)
            bt = last
        r = 0
        while True:
            cells, m = _shell(centre, dims, r, cells)
            for s in range(m):
                c = cells[s]
                for n in range(starts[c], starts[c + 1]):
                    # a piece nearer than the best so far has its centroid within best + rmax
                    reach = bd + rmax + tol
                    ex, ey, ez = centres[n, 0] - px, centres[n, 1] - py, centres[n, 2] - pz
                    if ex * ex + ey * ey + ez * ez > reach * reach:
                        continue
                    t = order[n]
                    d, u, v, w = distance_to_piece(pieces, t, px, py, pz)
                    if bt < 0 or d < bd or (d == bd and t < bt):
                        bt, bd, bu, bv, bw = t, d, u, v, w
            b = _bound(q, origin, cell, dims, centre, r)
            if b == np.inf or (bt >= 0 and bd + rmax + tol < b - tol):
                break
            r += 1
        last = bt
        best_t[i], best_d[i] = bt, bd
        best_w[i, 0], best_w[i, 1], best_w[i, 2] = bu, bv, bw


@njit(**JIT)
def nearest_centroids(
    centres: np.ndarray,
    origin: np.ndarray,
    cell: float,
    dims: np.ndarray,
    starts: np.ndarray,
    order: np.ndarray,
    points: np.ndarray,
    k: int,
    tol: float,
    idx: np.ndarray,
    tied: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The ``k`` nearest centroids of each point, into ``idx`` (p, k) (nearest first), and
    ``tied`` (p,) True where the k-th and the (k + 1)-th are at distances too close to tell apart
    (see :data:`TIE`): there the set is a matter of rounding and tie-breaking. ``k`` at most the
    number of centroids; ``centres`` in the grid's ``order`` (``centroids[order]``)."""
    total = centres.shape[0]
    want = min(k + 1, total)
    kd = np.empty(want)
    ki = np.empty(want, dtype=np.int64)
    cells = np.empty(1024, dtype=np.int64)
    centre = np.empty(3, dtype=np.int64)
    lx, ly, lz, reach = 0.0, 0.0, 0.0, np.inf
    for i in range(points.shape[0]):
        q = points[i]
        px, py, pz = q[0], q[1], q[2]
        for a in range(3):
            centre[a] = _clamp(int(np.floor((q[a] - origin[a]) / cell)), dims[a])
        # the previous point's (k + 1) nearest are within its reach plus the step from it: no
        # nearer ones of this point lie beyond (slack for rounding)
        if reach < np.inf:
            step = np.sqrt((px - lx) ** 2 + (py - ly) ** 2 + (pz - lz) ** 2)
            limit = (reach + step + tol) * (1.0 + TIE)
            limit2 = limit * limit
        else:
            limit2 = np.inf
        count = 0
        r = 0
        while True:
            cells, m = _shell(centre, dims, r, cells)
            for s in range(m):
                c = cells[s]
                for n in range(starts[c], starts[c + 1]):
                    ex, ey, ez = centres[n, 0] - px, centres[n, 1] - py, centres[n, 2] - pz
                    d2 = ex * ex + ey * ey + ez * ez
                    if d2 > limit2 or (count == want and d2 >= kd[want - 1]):
                        continue
                    t = order[n]
                    j = count if count < want else want - 1  # insertion: nearest first
                    while j > 0 and kd[j - 1] > d2:
                        kd[j] = kd[j - 1]
                        ki[j] = ki[j - 1]
                        j -= 1
                    kd[j] = d2
                    ki[j] = t
                    if count < want:
                        count += 1
            b = _bound(q, origin, cell, dims, centre, r) - tol
            if b == np.inf or (count == want and b > 0.0 and kd[want - 1] < b * b):
                break
            r += 1
        lx, ly, lz = px, py, pz
        reach = np.sqrt(kd[want - 1])
        for j in range(k):
            idx[i, j] = ki[j]
        tied[i] = want > k and not (kd[k - 1] < kd[k] * (1.0 - TIE))
