"""Kernels of the mesh layer's levels of detail: welding, decimation, surface distance, atlas
layout and baking, linear-light downsampling."""

from __future__ import annotations

import numpy as np

from cim.kernels.atlas import atlas_layout, bake_atlas, downsample_linear, sample_bilinear, to_linear
from cim.kernels.simplify import TriangleLocator, distance_to_surface, simplify_mesh, weld_vertices


def grid(n: int, size: float, z=None) -> tuple[np.ndarray, np.ndarray]:
    """An n × n-cell grid over [0, size]², two triangles a cell, heights z(x, y) (default 0)."""
    xs = np.linspace(0.0, size, n + 1)
    gx, gy = np.meshgrid(xs, xs)
    gz = np.zeros_like(gx) if z is None else z(gx, gy)
    pos = np.column_stack([gx.ravel(), gy.ravel(), gz.ravel()])
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    return pos, np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, d])])


def test_weld_merges_coincident_vertices_and_drops_collapsed_triangles():
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1.0000001, 0, 0], [1, 1, 0]], dtype=float)
    tri = np.array([[0, 1, 2], [3, 4, 2], [1, 3, 4]])
    p, t = weld_vertices(pos, tri, tolerance=1e-3)
    assert len(p) == 4 and p.tolist()[:3] == pos[:3].tolist()
    assert t.tolist() == [[0, 1, 2], [1, 3, 2]]


def test_simplify_a_plane_keeps_it_flat_with_far_fewer_triangles():
    pos, tri = grid(40, 100.0)
    p, t = simplify_mesh(pos, tri, 200)
    assert len(t) < len(tri) / 5
    assert np.abs(p[:, 2]).max() < 1e-9
    # the border stays where it was (neighbouring tiles meet without cracks): the area is whole
    area = 0.5 * np.linalg.norm(np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]]), axis=1).sum()
    assert abs(area - 100.0 * 100.0) < 1e-6
    on_border = (pos[:, 0] % 100 == 0) | (pos[:, 1] % 100 == 0)
    assert {tuple(v) for v in pos[on_border]} <= {tuple(v) for v in p}


def test_distance_to_surface_is_exact_over_large_and_small_triangles():
    # one big square (two triangles) beside a fine grid: points over the big one find it
    big = np.array([[0, 0, 0], [100, 0, 0], [100, 100, 0], [0, 100, 0]], dtype=float)
    fine, ftri = grid(50, 10.0)
    pos = np.concatenate([big, fine + np.array([100.0, 0.0, 0.0])])
    tri = np.concatenate([[[0, 1, 2], [0, 2, 3]], ftri + 4])
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(1, 109, 500), rng.uniform(1, 9, 500), rng.uniform(-5, 5, 500)])
    d = distance_to_surface(pts, pos, tri)
    assert np.allclose(d, np.abs(pts[:, 2]), atol=1e-9)
    # and beside the surface: the distance to its edge
    assert np.isclose(distance_to_surface(np.array([[-3.0, 50.0, 4.0]]), pos, tri)[0], 5.0)


def test_atlas_cells_do_not_overlap_and_lie_in_the_atlas():
    pos, tri = grid(6, 30.0, lambda x, y: 0.1 * x * y)
    corners = pos[tri]
    layout = atlas_layout(corners, 0.25, max_size=256)
    cover = np.zeros((layout.height, layout.width), dtype=np.int64)
    for (x, y), (w, h) in zip(layout.cell, layout.size):
        cover[y : y + h, x : x + w] += 1
    assert cover.max() == 1
    assert (layout.uv >= 0).all() and (layout.uv <= 1).all()
    # a triangle keeps its shape: edge lengths in texels × texel size = metres
    uv_px = layout.uv.astype(np.float64) * [layout.width, layout.height]
    e_uv = np.linalg.norm(uv_px[:, 1] - uv_px[:, 0], axis=1) * layout.texel
    e_3d = np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1)
    assert np.allclose(e_uv, e_3d, rtol=1e-3)
    # too fine for the budget: coarser texels, never a larger atlas
    small = atlas_layout(corners, 0.01, max_size=128)
    assert small.texel > 0.01 and small.width <= 128 and small.height <= 128


def test_bake_puts_each_colour_where_the_source_has_it():
    # source: a 20 m square, textured red on its west half and blue on its east half
    pos, tri = grid(20, 20.0)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[:, :32] = (200, 30, 30)
    image[:, 32:] = (30, 30, 200)
    uv = np.column_stack([pos[:, 0] / 20.0, 1.0 - pos[:, 1] / 20.0])  # glTF: v down, north up
    simple_p, simple_t = simplify_mesh(pos, tri, 8)
    corners = simple_p[simple_t]
    layout = atlas_layout(corners, 0.2)
    locate = TriangleLocator(pos, tri)
    atlas = bake_atlas(layout, corners, locate, uv[tri], np.zeros(len(tri), dtype=np.int64), [to_linear(image)], np.ones((1, 3)))
    # sample the atlas at points of the simplified surface away from the colour edge
    rng = np.random.default_rng(2)
    for _ in range(200):
        k = rng.integers(len(simple_t))
        w = rng.dirichlet([2, 2, 2])
        x = float(w @ corners[k][:, 0])
        if abs(x - 10.0) < 1.0:
            continue
        got = sample_bilinear(to_linear(atlas), (w @ layout.uv[k].astype(np.float64))[None], wrap=False)[0]
        want = to_linear(np.array([[200, 30, 30] if x < 10.0 else [30, 30, 200]], dtype=np.uint8))[0]
        assert np.allclose(got, want, atol=0.02), (x, got, want)


def test_downsampling_averages_in_linear_light():
    # a 1-pixel black/white checkerboard is half the light: sRGB 188, not 128
    check = ((np.indices((8, 8)).sum(axis=0) % 2) * 255).astype(np.uint8)
    image = np.repeat(check[..., None], 3, axis=2)
    half = downsample_linear(image, 4)
    assert half.shape == (4, 4, 3) and (half == 188).all()
    assert downsample_linear(image, 8) is not None and downsample_linear(image, 8).shape == (8, 8, 3)


def test_simplifications_on_threads_do_not_mix():
    """The library keeps its mesh in process-wide globals: tile jobs on threads must take turns."""
    from concurrent.futures import ThreadPoolExecutor

    meshes = [grid(40, 50.0, lambda x, y, k=k: 2.0 * np.sin(x / (3.0 + k)) + np.cos(y / 5.0)) for k in range(6)]
    alone = [simplify_mesh(p, t, 400) for p, t in meshes]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda m: simplify_mesh(m[0], m[1], 400), meshes * 4))
    for i, (p, t) in enumerate(together):
        ap, at = alone[i % len(meshes)]
        assert np.array_equal(p, ap) and np.array_equal(t, at), i
