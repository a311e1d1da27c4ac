"""Pure kernels of the BIM layer: map conversions and element meshes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cim.kernels.mapconv import dms_to_degrees, enu_rotation_about_up, helmert_2d, rotation_from_axis, rotation_from_true_north
from cim.kernels.mesh import chunk_by_budget, range_index, split_vertices_by_material, unit_vectors, vertex_normals


def test_helmert_rotates_scales_and_shifts():
    xyz = np.array([[1000.0, 0.0, 500.0], [0.0, 1000.0, 0.0]])
    out = helmert_2d(xyz, (100.0, 200.0, 10.0), math.radians(90.0), (0.001, 0.001, 0.001))
    np.testing.assert_allclose(out, [[100.0, 201.0, 10.5], [99.0, 200.0, 10.0]], atol=1e-12)


def test_rotation_from_axis_and_true_north():
    assert rotation_from_axis(None, None) == 0.0
    assert rotation_from_axis(0.0, 0.0) == 0.0
    assert rotation_from_axis(math.cos(0.3), math.sin(0.3)) == pytest.approx(0.3)
    # north along local +Y: local +X is east
    assert rotation_from_true_north(0.0, 1.0) == pytest.approx(0.0)
    # north along local +X: local +X points north, 90° counter-clockwise from east
    assert rotation_from_true_north(1.0, 0.0) == pytest.approx(math.pi / 2)
    # north along local (-1, 1): local +Y points north-east, local +X south-east (-45°)
    assert rotation_from_true_north(-1.0, 1.0) == pytest.approx(-math.pi / 4)
    r = enu_rotation_about_up(math.pi / 2)
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_dms_to_degrees():
    assert dms_to_degrees((42, 21, 29, 879999)) == pytest.approx(42 + 21 / 60 + 29.879999 / 3600)
    assert dms_to_degrees((-71, -3, -37, -80000)) == pytest.approx(-(71 + 3 / 60 + 37.08 / 3600))
    assert dms_to_degrees(None) is None
    assert dms_to_degrees((10, 30)) == pytest.approx(10.5)


def test_unit_vectors_fix_zero_rows():
    out = unit_vectors(np.array([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.0, 0.8], [0.0, 0.0, 1.0]], atol=1e-7)


def test_split_vertices_by_material_duplicates_shared_vertices():
    # two triangles share the edge 1-2 but carry different materials
    tri = np.array([[0, 1, 2], [2, 1, 3]])
    src, new_tri, vmat = split_vertices_by_material(tri, np.array([0, 1]), 4)
    assert len(src) == 6
    for t, m in zip(new_tri, (0, 1)):
        assert (vmat[t] == m).all()
    np.testing.assert_array_equal(src[new_tri], tri)
    # one material: vertices kept as they are
    src, new_tri, vmat = split_vertices_by_material(tri, np.array([0, 0]), 4)
    np.testing.assert_array_equal(src, np.arange(4))
    np.testing.assert_array_equal(new_tri, tri)


def test_range_index():
    np.testing.assert_array_equal(range_index(np.array([5, 0, 10]), np.array([2, 0, 3])), [5, 6, 10, 11, 12])
    assert len(range_index(np.array([], dtype=int), np.array([], dtype=int))) == 0


def test_chunk_by_budget_covers_every_item_once_under_the_budget():
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 100, size=(500, 3))
    weights = rng.integers(1, 200, size=500)
    groups = chunk_by_budget(centres, weights, 5000)
    joined = np.sort(np.concatenate(groups))
    np.testing.assert_array_equal(joined, np.arange(500))
    for g in groups:
        assert weights[g].sum() <= 5000 or len(g) == 1
    # one heavy item stands alone
    groups = chunk_by_budget(np.zeros((3, 3)), np.array([10, 10_000, 10]), 100)
    assert any(len(g) == 1 and g[0] == 1 for g in groups)


def test_vertex_normals_point_out_of_a_counter_clockwise_face():
    pos = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
    n = vertex_normals(pos, np.array([[0, 1, 2]]))
    np.testing.assert_allclose(unit_vectors(n)[:3], [[0, 0, 1]] * 3, atol=1e-7)
    np.testing.assert_allclose(n[3], 0.0)
