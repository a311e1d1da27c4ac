"""Mesh simplification kernels for levels of detail: weld, decimate, measure.

Decimation is quadric error metric edge collapse (Garland & Heckbert) through
`fast-simplification <https://github.com/pyvista/fast-simplification>`_, pyvista's wrapper of
Sp4cerat's Fast-Quadric-Mesh-Simplification: maintained by the pyvista project, numpy in and
out, wheels for every platform, only numpy as a dependency, deterministic (one thread, no
randomness: the same mesh gives the same result), and about a million triangles a second. It is
what trimesh's own ``simplify_quadric_decimation`` calls. The alternatives weighed: the PyPI
``meshoptimizer`` wrapper is an alpha whose decoder has corrupted the heap here (FIELD-NOTES);
open3d and pymeshlab are hundreds of megabytes (pymeshlab GPL); pyfqmr wraps the same C++ code
with less upkeep.

Distances are measured, not estimated: :func:`distance_to_surface` gives, for each point, the
exact distance to the nearest triangle (:class:`TriangleLocator`: large triangles are cut into
pieces of about the median size, a uniform grid of the pieces' centroids prunes those that
cannot be nearer than a bound, every other one is tried: :mod:`cim.kernels.grid_jit`).
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["weld_vertices", "simplify_mesh", "TriangleLocator", "distance_to_surface", "surface_samples"]

#: fast-simplification holds the mesh being simplified in process-wide C++ globals (loaded, then
#: simplified, then read back in three calls): two threads at once would mix their meshes
_SIMPLIFY_LOCK = threading.Lock()

#: cells of a locator's grid a piece, at most: the grid is dense (most cells, off the surface, are
#: empty), so its index costs up to 64 bytes a piece, less than the piece's corners (72); finer
#: grids measured no faster on the sample mesh (4 to 64 a piece within 20 %)
PER = 8.0


def weld_vertices(positions: np.ndarray, triangles: np.ndarray, tolerance: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices within ``tolerance`` (on a grid of that size) and drop triangles that collapse.

    Parameters
    ----------
    positions : (n, 3) float
    triangles : (m, 3) int

    Returns
    -------
    positions : (n', 3) float64, the first vertex of each merged group (in input order)
    triangles : (m', 3) int64
    """
    p = np.asarray(positions, dtype=np.float64)
    q = np.round(p / tolerance).astype(np.int64)
    keyed = np.ascontiguousarray(q).view(np.dtype((np.void, 24))).ravel()
    _, first, inverse = np.unique(keyed, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # number the merged vertices in input order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    tri = rank[inverse.reshape(-1)][np.asarray(triangles, dtype=np.int64)]
    keep = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
    return p[first[order]], tri[keep]


def simplify_mesh(positions: np.ndarray, triangles: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Decimate to about ``target`` triangles by quadric edge collapse (see the module notes).

    Parameters
    ----------
    positions : (n, 3) float, best centred near 0 (the library works in double precision)
    triangles : (m, 3) int
    target : triangles wanted (a mesh already at or below it is returned as it is); the open
        border is kept as it is (no edge touching it collapses), so neighbouring tiles of any
        levels meet without cracks, at the price of the border's triangles, which the target
        does not reach below

    Returns
    -------
    positions : (n', 3) float64; triangles : (m', 3) int64, no unreferenced vertex
    """
    import fast_simplification

    p = np.ascontiguousarray(positions, dtype=np.float64)
    t = np.ascontiguousarray(triangles, dtype=np.int64)
    if len(t) <= target or len(t) < 4:
        return p, t
    with _SIMPLIFY_LOCK:  # the library keeps its mesh in C++ globals between its load, simplify and return calls
        out_p, out_t = fast_simplification.simplify(p, t, target_count=max(int(target), 1), agg=7.0, preserve_border=True)
    out_t = np.asarray(out_t, dtype=np.int64).reshape(-1, 3)
    out_p = np.asarray(out_p, dtype=np.float64).reshape(-1, 3)
    used = np.zeros(len(out_p), dtype=bool)
    used[out_t.ravel()] = True
    if not used.all():
        remap = np.cumsum(used) - 1
        out_p, out_t = out_p[used], remap[out_t]
    return out_p, out_t


def surface_samples(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Points that stand for a surface when its distance to another is measured: every vertex,
    every triangle's centroid and every edge's midpoint, (k, 3) float64."""
    p = np.asarray(positions, dtype=np.float64)
    tri = p[np.asarray(triangles, dtype=np.int64)]
    mids = (tri + np.roll(tri, -1, axis=1)) / 2.0
    return np.concatenate([p, tri.mean(axis=1), mids.reshape(-1, 3)])


class TriangleLocator:
    """Nearest triangles of a mesh to query points, exactly (see the module notes).

    Triangles are cut into pieces of about the median size (a large triangle is searched as the
    pieces of its regular subdivision, exact parts of it, so that no search radius grows with
    it), and the pieces' centroids are bucketed in a uniform grid (:mod:`cim.kernels.grid_jit`,
    built on the first query). An exact query walks the grid's cells outwards from its point
    and tries every piece whose centroid lies within the best distance so far plus the largest
    piece radius, until no cell left can hold a nearer one: of the pieces at the least distance
    it keeps the lowest row, so the answer is the same whatever the search's order.

    Parameters
    ----------
    positions : (n, 3) float
    triangles : (m, 3) int
    """

    def __init__(self, positions: np.ndarray, triangles: np.ndarray) -> None:
        self.corners = np.ascontiguousarray(np.asarray(positions, dtype=np.float64)[np.asarray(triangles, dtype=np.int64)])  # (m, 3, 3)
        centroids = self.corners.mean(axis=1)
        radius = np.linalg.norm(self.corners - centroids[:, None, :], axis=2).max(axis=1)
        unit = max(float(np.median(radius)) if len(radius) else 1.0, 1e-9)
        steps = np.clip(np.ceil(radius / unit), 1, 32).astype(np.int64)
        owner, weights = [], []
        for m in np.unique(steps):
            rows = np.flatnonzero(steps == m)
            b = _subdivision(int(m))  # (k, 3, 3): each piece's corners as weights of the triangle's
            owner.append(np.repeat(rows, len(b)))
            weights.append(np.tile(b, (len(rows), 1, 1)))
        self.owner = np.concatenate(owner)
        self.weights = np.concatenate(weights)  # (pieces, 3 piece corners, 3 triangle corners)
        self.pieces = np.ascontiguousarray(np.einsum("pkc,pcd->pkd", self.weights, self.corners[self.owner]))
        self.centres = np.ascontiguousarray(self.pieces.mean(axis=1))
        self.rmax = float(np.linalg.norm(self.pieces - self.centres[:, None, :], axis=2).max())
        self._grid: tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, float] | None = None
        self._tree: object | None = None
        self._sorted = self.centres

    @property
    def tree(self) -> object:
        """A k-d tree (scipy's ``cKDTree``) of the pieces' centroids, built when first asked for:
        the tie-breaker of :meth:`nearest` with ``exact=False``."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.centres)
        return self._tree

    def grid(self) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, float]:
        """The centroids' grid (built on first use): origin, cell side, cells along each axis,
        each cell's start in the order, the order, and the rounding slack of the searches."""
        if self._grid is None:
            from cim.kernels.grid_jit import build_grid

            lo = self.centres.min(axis=0)
            extent = np.maximum(self.centres.max(axis=0) - lo, 1e-9)
            # cells about the size that holds a few centroids on the surface, at most 2 a centroid
            n = len(self.centres)
            cell = max(float(np.prod(extent) / (PER * n)) ** (1.0 / 3.0), 1e-9)
            while np.prod(np.ceil(extent / cell)) > PER * n + 8:
                cell *= 1.25
            dims = np.maximum(np.ceil(extent / cell), 1).astype(np.int64)
            starts, order = build_grid(self.centres, lo, cell, dims)
            self._sorted = np.ascontiguousarray(self.centres[order])
            scale = float(np.abs(self.pieces).max()) if n else 1.0
            self._grid = (lo, cell, dims, starts, order, 1e-9 + 1e-12 * scale)
        return self._grid

    def nearest(
        self, points: np.ndarray, k: int = 12, chunk: int = 16_384, exact: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest triangle of each point, the barycentric weights of the closest point on
        it and the distance to it. ``exact=False`` tries only the pieces of the ``k`` nearest
        centroids (an upper bound, and the nearest triangle for points on or near the surface:
        fast enough to sample a texture at every texel); where the k-th and the next centroid
        are at the same distance, the k-d tree (:attr:`tree`) says which ones.

        Returns
        -------
        triangle : (p,) int64, the triangle's row
        weights : (p, 3) float64, barycentric weights of the closest point
        distance : (p,) float64
        """
        from cim.kernels.closest_jit import nearest_of_candidates  # numba: compiled on first use
        from cim.kernels.grid_jit import by_cell, nearest_centroids, nearest_exact

        points = np.ascontiguousarray(points, dtype=np.float64)
        k = int(min(k, len(self.pieces)))
        tri = np.zeros(len(points), dtype=np.int64)
        bary = np.zeros((len(points), 3))
        dist = np.zeros(len(points))
        lo, cell, dims, starts, order, tol = self.grid()
        # queried grouped by cell (see grid_jit.by_cell); each point's answer is its own
        perm = by_cell(points, lo, cell, dims)
        for s in range(0, len(points), chunk):
            rows = perm[s : s + chunk]
            q = np.ascontiguousarray(points[rows])
            n = len(q)
            piece = np.full(n, -1, dtype=np.int64)
            w = np.zeros((n, 3))
            d = np.zeros(n)
            if exact:
                nearest_exact(self.pieces, self._sorted, self.rmax, lo, cell, dims, starts, order, q, tol, piece, w, d)
            else:
                idx = np.empty((n, k), dtype=np.int64)
                tied = np.zeros(n, dtype=bool)
                nearest_centroids(self._sorted, lo, cell, dims, starts, order, q, k, tol, idx, tied)
                if tied.any():
                    idx[tied] = np.asarray(self.tree.query(q[tied], k=k)[1], dtype=np.int64).reshape(-1, k)  # type: ignore[attr-defined]
                nearest_of_candidates(self.pieces, q, np.arange(0, n * k + 1, k), idx.reshape(-1), piece, w, d)
            tri[rows] = self.owner[piece]
            bary[rows] = np.einsum("pk,pkc->pc", w, self.weights[piece])
            dist[rows] = d
        return tri, bary, dist


def _subdivision(m: int) -> np.ndarray:
    """The m² pieces of a triangle's regular subdivision, (m², 3, 3): each piece's corners as
    barycentric weights of the triangle's corners."""
    out = []
    for i in range(m):
        for j in range(m - i):
            out.append([(i, j), (i + 1, j), (i, j + 1)])
            if i + j <= m - 2:
                out.append([(i + 1, j), (i + 1, j + 1), (i, j + 1)])
    g = np.asarray(out, dtype=np.float64) / m  # (k, 3, 2): (i, j) / m of each piece corner
    return np.stack([1.0 - g[..., 0] - g[..., 1], g[..., 0], g[..., 1]], axis=-1)


def distance_to_surface(points: np.ndarray, positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Distance from each point to a triangle surface, (p,) float64 (an upper bound: see the
    module notes)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return np.zeros(0)
    return TriangleLocator(positions, triangles).nearest(points)[2]
