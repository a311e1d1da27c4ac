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
exact distance to the nearest triangle (:class:`TriangleLocator`: k-d trees over the triangles'
centroids, by size class, prune the triangles that cannot be nearer than a bound; every other
one is tried).
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

__all__ = ["weld_vertices", "simplify_mesh", "TriangleLocator", "distance_to_surface", "surface_samples"]

#: fast-simplification holds the mesh being simplified in process-wide C++ globals (loaded, then
#: simplified, then read back in three calls): two threads at once would mix their meshes
_SIMPLIFY_LOCK = threading.Lock()


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

    Triangles are put in classes by the radius of their bounding sphere (about its centroid,
    classes a power of two apart), each class with a k-d tree of its centroids. A point's
    distance to its nearest triangle is first bounded from above by a few triangles of nearby
    centroids; then in each class every triangle whose centroid lies within that bound plus the
    class's largest radius is tried, which includes every triangle that could be nearer.

    Parameters
    ----------
    positions : (n, 3) float
    triangles : (m, 3) int
    """

    def __init__(self, positions: np.ndarray, triangles: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        self.corners = np.ascontiguousarray(np.asarray(positions, dtype=np.float64)[np.asarray(triangles, dtype=np.int64)])  # (m, 3, 3)
        centroids = self.corners.mean(axis=1)
        radius = np.linalg.norm(self.corners - centroids[:, None, :], axis=2).max(axis=1)
        unit = max(float(np.median(radius)) if len(radius) else 1.0, 1e-9)
        level = np.clip(np.ceil(np.log2(np.maximum(radius, unit) / unit)), 0, 40).astype(np.int64)
        self.tree = cKDTree(centroids)
        self.classes = []
        for c in np.unique(level):
            rows = np.flatnonzero(level == c)
            self.classes.append((rows, cKDTree(centroids[rows]), float(radius[rows].max())))

    def nearest(self, points: np.ndarray, k: int = 4, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest triangle of each point, the barycentric weights of the closest point on
        it and the distance to it.

        Returns
        -------
        triangle : (p,) int64, the triangle's row
        weights : (p, 3) float64, barycentric weights of the closest point
        distance : (p,) float64
        """
        from cim.kernels.closest_jit import closest_pairs  # numba: compiled on first use

        points = np.ascontiguousarray(points, dtype=np.float64)
        k = int(min(k, len(self.corners)))
        tri = np.zeros(len(points), dtype=np.int64)
        bary = np.zeros((len(points), 3))
        dist = np.zeros(len(points))
        for s in range(0, len(points), chunk):
            q = points[s : s + chunk]
            n = len(q)
            _, idx = self.tree.query(q, k=k)
            pi = np.repeat(np.arange(n), k)
            ti = np.asarray(idx, dtype=np.int64).reshape(-1)
            w = np.zeros((len(pi), 3))
            d = np.zeros(len(pi))
            closest_pairs(self.corners, q, pi, ti, w, d)
            bound = d.reshape(n, k).min(axis=1)
            pis, tis = [pi], [ti]
            for rows, tree, rmax in self.classes:
                found = tree.query_ball_point(q, bound + rmax + 1e-9)
                counts = np.fromiter(map(len, found), dtype=np.int64, count=n)
                if counts.sum() == 0:
                    continue
                pis.append(np.repeat(np.arange(n), counts))
                tis.append(rows[np.fromiter(itertools.chain.from_iterable(found), dtype=np.int64, count=int(counts.sum()))])
            pi, ti = np.concatenate(pis), np.concatenate(tis)
            w = np.zeros((len(pi), 3))
            d = np.zeros(len(pi))
            closest_pairs(self.corners, q, pi, ti, w, d)
            order = np.lexsort((ti, d, pi))  # per point: the nearest, ties to the lowest row
            first = order[np.r_[True, pi[order][1:] != pi[order][:-1]]]
            tri[s : s + n], bary[s : s + n], dist[s : s + n] = ti[first], w[first], d[first]
        return tri, bary, dist


def distance_to_surface(points: np.ndarray, positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Distance from each point to a triangle surface, (p,) float64 (an upper bound: see the
    module notes)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return np.zeros(0)
    return TriangleLocator(positions, triangles).nearest(points)[2]
