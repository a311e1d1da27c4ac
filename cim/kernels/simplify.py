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
pieces of about the median size, k-d trees over the pieces' centroids prune those that cannot be
nearer than a bound, every other one is tried).
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


#: centroids a point asks each class's tree for at once in an exact search (see ``nearest``)
WIDE = 48


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
        # a large triangle is searched as the pieces of its regular subdivision (exact parts of
        # it, each about the median size), so that no search radius grows with it
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
        pc = self.pieces.mean(axis=1)
        pr = np.linalg.norm(self.pieces - pc[:, None, :], axis=2).max(axis=1)
        level = np.clip(np.ceil(np.log2(np.maximum(pr, unit) / unit)), 0, 40).astype(np.int64)
        self.tree = cKDTree(pc)
        self.classes = []
        for c in np.unique(level):
            rows = np.flatnonzero(level == c)
            self.classes.append((rows, cKDTree(pc[rows]), float(pr[rows].max())))

    def nearest(
        self, points: np.ndarray, k: int = 12, chunk: int = 16_384, exact: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest triangle of each point, the barycentric weights of the closest point on
        it and the distance to it. ``exact=False`` tries only the pieces of the ``k`` nearest
        centroids (an upper bound, and the nearest triangle for points on or near the surface:
        fast enough to sample a texture at every texel).

        Returns
        -------
        triangle : (p,) int64, the triangle's row
        weights : (p, 3) float64, barycentric weights of the closest point
        distance : (p,) float64
        """
        from cim.kernels.closest_jit import nearest_of_candidates  # numba: compiled on first use

        points = np.ascontiguousarray(points, dtype=np.float64)
        k = int(min(k, len(self.pieces)))
        tri = np.zeros(len(points), dtype=np.int64)
        bary = np.zeros((len(points), 3))
        dist = np.zeros(len(points))
        for s in range(0, len(points), chunk):
            q = points[s : s + chunk]
            n = len(q)
            _, idx = self.tree.query(q, k=k)
            piece = np.full(n, -1, dtype=np.int64)
            w = np.zeros((n, 3))
            d = np.zeros(n)
            # the k nearest centroids' pieces bound each point's distance from above; then every
            # piece that could be nearer (its centroid within the bound plus its class's radius)
            # is tried, the bound's own piece among them
            nearest_of_candidates(self.pieces, q, np.arange(0, n * k + 1, k), np.asarray(idx, dtype=np.int64).reshape(-1), piece, w, d)
            for rows, tree, rmax in self.classes if exact else []:
                radius = d + rmax + 1e-9
                # the nearest `wide` centroids in fixed-size arrays (a ball query builds a Python
                # list a point); only points with `wide` centroids inside their radius may have
                # more, and only those are asked again with a ball
                wide = int(min(WIDE, len(rows)))
                dd, ii = tree.query(q, k=wide, distance_upper_bound=float(radius.max()))
                dd, ii = dd.reshape(n, wide), ii.reshape(n, wide)
                inside = dd <= radius[:, None]
                more = np.flatnonzero(inside[:, -1]) if wide < len(rows) else np.zeros(0, dtype=np.int64)
                inside[more] = False
                _try(self.pieces, q, inside.sum(axis=1), rows[ii[inside]], piece, w, d)
                if len(more):
                    found = tree.query_ball_point(q[more], radius[more])
                    counts = np.fromiter(map(len, found), dtype=np.int64, count=len(more))
                    cand = rows[np.fromiter(itertools.chain.from_iterable(found), dtype=np.int64, count=int(counts.sum()))]
                    sub_piece, sub_w, sub_d = piece[more], w[more], d[more]
                    _try(self.pieces, q[more], counts, cand, sub_piece, sub_w, sub_d)
                    piece[more], w[more], d[more] = sub_piece, sub_w, sub_d
            tri[s : s + n] = self.owner[piece]
            bary[s : s + n] = np.einsum("pk,pkc->pc", w, self.weights[piece])
            dist[s : s + n] = d
        return tri, bary, dist


def _try(
    pieces: np.ndarray, points: np.ndarray, counts: np.ndarray, cand: np.ndarray, piece: np.ndarray, w: np.ndarray, d: np.ndarray
) -> None:
    """Keep each point's nearest of its ``counts[i]`` candidates (``cand``, grouped by point)."""
    from cim.kernels.closest_jit import nearest_of_candidates

    if counts.sum() == 0:
        return
    starts = np.zeros(len(points) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    nearest_of_candidates(pieces, np.ascontiguousarray(points), starts, cand, piece, w, d)


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
