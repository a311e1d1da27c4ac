"""Rasterising triangles into a height grid: the highest surface over each cell centre."""

from __future__ import annotations

import numpy as np
import trimesh

from cim.kernels.trimax import rasterise_triangles_max


def test_a_pyramid_gives_its_known_heights() -> None:
    """A square pyramid (base 20 × 20 m at z = 0, apex 10 m): z = 10 (1 − max(|x|, |y|) / 10)
    at every cell centre inside, NaN outside; its hidden base does not lower the roof."""
    apex = np.array([0.0, 0.0, 10.0])
    corners = np.array([[-10, -10, 0], [10, -10, 0], [10, 10, 0], [-10, 10, 0]], dtype=float)
    sides = np.array([[corners[i], corners[(i + 1) % 4], apex] for i in range(4)])
    base = np.array([[corners[0], corners[2], corners[1]], [corners[0], corners[3], corners[2]]])
    tri = np.concatenate([sides, base])
    z = rasterise_triangles_max(tri, -16.0, 16.0, 1.0, (32, 32))
    cx = -16.0 + np.arange(32) + 0.5
    cy = 16.0 - np.arange(32) - 0.5
    gx, gy = np.meshgrid(cx, cy)
    inside = (np.abs(gx) <= 10) & (np.abs(gy) <= 10)
    expected = 10 * (1 - np.maximum(np.abs(gx), np.abs(gy)) / 10)
    np.testing.assert_allclose(z[inside], expected[inside], atol=1e-5)
    assert np.isnan(z[~inside]).all()


def test_the_highest_of_overlapping_triangles_wins_and_walls_cover_nothing() -> None:
    box = trimesh.creation.box(extents=(6.0, 4.0, 12.0))
    box.apply_translation((3.0, 2.0, 6.0))  # x 0..6, y 0..4, z 0..12
    slab = np.array([[[-2, -2, 3.0], [8, -2, 3.0], [8, 6, 3.0]], [[-2, -2, 3.0], [8, 6, 3.0], [-2, 6, 3.0]]])
    wall = np.array([[[20, 0, 0.0], [20, 4, 0.0], [20, 4, 50.0]]])  # vertical: seen edge-on
    tri = np.concatenate([box.triangles, slab, wall])
    z = rasterise_triangles_max(tri, -4.0, 8.0, 0.5, (24, 56))
    rows, cols = np.indices(z.shape)
    x, y = -4.0 + (cols + 0.5) * 0.5, 8.0 - (rows + 0.5) * 0.5
    in_box = (x >= 0) & (x <= 6) & (y >= 0) & (y <= 4)
    in_slab = (x >= -2) & (x <= 8) & (y >= -2) & (y <= 6)
    assert (z[in_box] == 12.0).all()
    assert (z[in_slab & ~in_box] == 3.0).all()
    assert np.isnan(z[~in_slab]).all()


def test_chunks_give_the_same_grid(monkeypatch) -> None:
    """Many triangles split over chunks give the grid one pass gives."""
    import cim.kernels.trimax as trimax

    rng = np.random.default_rng(3)
    tri = rng.uniform(0, 50, (300, 3, 3))
    whole = rasterise_triangles_max(tri, 0.0, 50.0, 1.0, (50, 50))
    monkeypatch.setattr(trimax, "_CHUNK", 500)
    np.testing.assert_array_equal(rasterise_triangles_max(tri, 0.0, 50.0, 1.0, (50, 50)), whole)
    # brute force on a few cells: the max over the triangles covering the centre
    for r, c in [(10, 10), (25, 30), (40, 5)]:
        px, py = c + 0.5, 50.0 - r - 0.5
        zs = []
        for t in tri:
            a, b, d = t[:, :2]
            m = np.array([b - a, d - a]).T
            if abs(np.linalg.det(m)) < 1e-12:
                continue
            u, v = np.linalg.solve(m, np.array([px, py]) - a)
            if u >= 0 and v >= 0 and u + v <= 1:
                zs.append(t[0, 2] + u * (t[1, 2] - t[0, 2]) + v * (t[2, 2] - t[0, 2]))
        if zs:
            assert whole[r, c] == np.float32(max(zs))
        else:
            assert np.isnan(whole[r, c])
