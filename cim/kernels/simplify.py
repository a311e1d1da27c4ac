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
exact distance to the nearest of a set of candidate triangles, found through a k-d tree over
anchor points spread on every triangle (at most ``spacing`` apart, so a large flat triangle is
found as readily as a small one), and every triangle longer than 16 spacings (too few anchors
for its size) is tried for every point. A min over candidates is never below the true distance
to the surface: the result is an upper bound, exact whenever the nearest triangle is a candidate.
"""

from __future__ import annotations

import numpy as np

__all__ = ["weld_vertices", "simplify_mesh", "TriangleLocator", "distance_to_surface", "surface_samples"]


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
    """Nearest triangles of a mesh to query points (see the module notes).

    Parameters
    ----------
    positions : (n, 3) float
    triangles : (m, 3) int
    spacing : the most distance between two anchors of one triangle [default: twice the
        median edge length]
    """

    def __init__(self, positions: np.ndarray, triangles: np.ndarray, spacing: float | None = None) -> None:
        from scipy.spatial import cKDTree

        self.corners = np.ascontiguousarray(np.asarray(positions, dtype=np.float64)[np.asarray(triangles, dtype=np.int64)])  # (m, 3, 3)
        edges = np.linalg.norm(self.corners - np.roll(self.corners, -1, axis=1), axis=2)  # (m, 3)
        longest = edges.max(axis=1)
        if spacing is None:
            spacing = 2.0 * float(np.median(edges)) if len(edges) else 1.0
        spacing = max(spacing, 1e-6)
        steps = np.clip(np.ceil(longest / spacing), 1, 16).astype(np.int64)
        #: triangles too large for their anchors to stand for them: tried for every point
        self.large = np.flatnonzero(longest > 16 * spacing)
        anchors, owner = [], []
        for m in np.unique(steps):
            rows = np.flatnonzero(steps == m)
            i, j = np.meshgrid(np.arange(m + 1), np.arange(m + 1), indexing="ij")
            ok = i + j <= m
            # barycentric grid points pulled a third of a step towards the centroid
            b = np.column_stack([i[ok], j[ok], m - i[ok] - j[ok]]).astype(np.float64) / m
            b = (b * 2.0 + 1.0 / 3.0) / 3.0
            pts = np.einsum("kc,tcd->tkd", b, self.corners[rows])
            anchors.append(pts.reshape(-1, 3))
            owner.append(np.repeat(rows, len(b)))
        self.anchors = np.concatenate(anchors)
        self.owner = np.concatenate(owner)
        order = np.argsort(self.owner, kind="stable")
        self.anchors, self.owner = self.anchors[order], self.owner[order]
        self.tree = cKDTree(self.anchors)

    def nearest(self, points: np.ndarray, k: int = 8, chunk: int = 262_144) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest candidate triangle of each point, the barycentric weights of the closest
        point on it and the distance to it.

        Returns
        -------
        triangle : (p,) int64, the triangle's row
        weights : (p, 3) float64, barycentric weights of the closest point
        distance : (p,) float64
        """
        from cim.kernels.closest_jit import closest_in_set, closest_on_candidates  # numba: compiled on first use

        points = np.ascontiguousarray(points, dtype=np.float64)
        k = int(min(k, len(self.anchors)))
        tri = np.zeros(len(points), dtype=np.int64)
        bary = np.zeros((len(points), 3))
        dist = np.zeros(len(points))
        for s in range(0, len(points), chunk):
            q = points[s : s + chunk]
            _, idx = self.tree.query(q, k=k)
            cand = np.ascontiguousarray(self.owner[np.asarray(idx).reshape(len(q), k)])
            cand.sort(axis=1)  # repeated owners side by side: each triangle tried once
            closest_on_candidates(self.corners, q, cand, tri[s : s + chunk], bary[s : s + chunk], dist[s : s + chunk])
            if len(self.large):
                closest_in_set(self.corners, q, self.large, tri[s : s + chunk], bary[s : s + chunk], dist[s : s + chunk])
        return tri, bary, dist


def distance_to_surface(points: np.ndarray, positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Distance from each point to a triangle surface, (p,) float64 (an upper bound: see the
    module notes)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return np.zeros(0)
    return TriangleLocator(positions, triangles).nearest(points)[2]
