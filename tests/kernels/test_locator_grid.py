"""The compiled grid searches of :class:`cim.kernels.simplify.TriangleLocator` against brute
force: the exact search must pick the very piece (same row, same weights, same distance to the
bit) that trying every piece picks, and the k-nearest-centroid search the very candidates a k-d
tree gives, ties included."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from cim.kernels.closest_jit import nearest_of_candidates
from cim.kernels.grid_jit import nearest_centroids
from cim.kernels.simplify import TriangleLocator
from tests.kernels.test_simplify_atlas import grid


def scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A wavy 12 × 12 grid, a random soup of small triangles above it and two large ones (cut
    into many pieces) standing across it."""
    rng = np.random.default_rng(seed)
    pos, tri = grid(12, 24.0, lambda x, y: np.sin(x / 3.0) + 0.2 * y)
    centres = rng.uniform([0, 0, 2], [24, 24, 8], (60, 3))
    soup = (centres[:, None, :] + rng.normal(0.0, 0.8, (60, 3, 3))).reshape(-1, 3)
    big = np.array([[-5, 3, -2], [30, 5, 12], [10, 28, 0], [2, -4, 9], [26, 20, -3], [12, 12, 15]], dtype=float)
    positions = np.concatenate([pos, soup, big])
    n0, n1 = len(pos), len(pos) + len(soup)
    triangles = np.concatenate([tri, n0 + np.arange(len(soup)).reshape(-1, 3), n1 + np.arange(6).reshape(-1, 3)])
    return positions, triangles


def brute(locate: TriangleLocator, points: np.ndarray, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each point's nearest of its candidate pieces ((p, c) rows, default every piece), as
    :meth:`TriangleLocator.nearest` reports it: triangle, barycentric weights, distance."""
    n, m = len(points), len(locate.pieces)
    if candidates is None:
        candidates = np.tile(np.arange(m), (n, 1))
    piece, w, d = np.full(n, -1, dtype=np.int64), np.zeros((n, 3)), np.zeros(n)
    c = candidates.shape[1]
    nearest_of_candidates(locate.pieces, np.ascontiguousarray(points), np.arange(0, n * c + 1, c), candidates.reshape(-1), piece, w, d)
    return locate.owner[piece], np.einsum("pk,pkc->pc", w, locate.weights[piece]), d


def numpy_distance(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest of the triangles, (p,), by plain numpy: the
    plane when the projection falls inside, else the nearest of the three edges."""
    p = points[:, None, :]
    a, b, c = (corners[None, :, k, :] for k in range(3))
    normal = np.cross(b - a, c - a)
    unit = normal / np.linalg.norm(normal, axis=2, keepdims=True)
    h = np.einsum("ptk,ptk->pt", p - a, unit)
    foot = p - h[..., None] * unit
    inside = np.ones(h.shape, dtype=bool)
    for u, v in ((a, b), (b, c), (c, a)):
        inside &= np.einsum("ptk,ptk->pt", np.cross(v - u, foot - u), normal) >= 0.0
    best = np.where(inside, np.abs(h), np.inf)
    for u, v in ((a, b), (b, c), (c, a)):
        e = v - u
        s = np.clip(np.einsum("ptk,ptk->pt", p - u, e) / np.einsum("ptk,ptk->pt", e, e), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(p - (u + s[..., None] * e), axis=2))
    return best.min(axis=1)


def test_exact_search_is_brute_force_to_the_bit():
    positions, triangles = scene(3)
    locate = TriangleLocator(positions, triangles)
    assert len(locate.pieces) > len(triangles)  # the large triangles were cut
    rng = np.random.default_rng(4)
    near = positions[triangles[rng.integers(len(triangles), size=300)]].mean(axis=1) + rng.normal(0.0, 0.3, (300, 3))
    around = rng.uniform([-10, -10, -5], [35, 35, 20], (300, 3))
    far = rng.uniform(-1.0, 1.0, (20, 3)) * 400.0  # well off the grid's box: clamped cells
    points = np.concatenate([near, around, far, positions[:50]])  # vertices: ties between pieces
    got = locate.nearest(points, chunk=257)  # several chunks
    want = brute(locate, points)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # and brute force is right: an independent numpy distance
    np.testing.assert_allclose(got[2], numpy_distance(points, positions[triangles]), rtol=0, atol=1e-9)
    # the weights are those of the closest point of the reported triangle
    closest = np.einsum("pk,pkd->pd", got[1], positions[triangles[got[0]]])
    np.testing.assert_allclose(np.linalg.norm(closest - points, axis=1), got[2], atol=1e-9)


def test_k_nearest_candidates_are_the_k_d_trees_ties_included():
    # a flat regular grid: centroids on a lattice, so points on it have many centroids at the
    # same distance, and which of them is the k-th is the tree's choice
    pos, tri = grid(16, 16.0)
    locate = TriangleLocator(pos, tri)
    rng = np.random.default_rng(5)
    lattice = np.column_stack([rng.integers(0, 17, 200) * 1.0, rng.integers(0, 17, 200) * 1.0, np.zeros(200)])
    loose = np.column_stack([rng.uniform(-2, 18, (300, 2)), rng.normal(0.0, 0.5, 300)])
    points = np.concatenate([lattice, loose])
    k = 12
    lo, cell, dims, starts, order, tol = locate.grid()
    idx, tied = np.empty((len(points), k), dtype=np.int64), np.zeros(len(points), dtype=bool)
    nearest_centroids(locate._sorted, lo, cell, dims, starts, order, points, k, tol, idx, tied)
    tree_d, tree_i = cKDTree(locate.centres).query(points, k=k + 1)
    # the sets agree wherever the k-th and the next are apart; elsewhere the flag is up
    apart = tree_d[:, k - 1] < tree_d[:, k] * (1 - 1e-6)
    assert tied.any() and apart.any()
    assert not (tied & apart).any()
    assert all(set(a) == set(b) for a, b in zip(idx[apart], tree_i[apart, :k]))
    # and the search as a whole: exactly the nearest of the tree's k candidates
    got = locate.nearest(points, k=k, exact=False)
    want = brute(locate, points, np.asarray(cKDTree(locate.centres).query(points, k=k)[1], dtype=np.int64))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
