"""Ragged digests: one digest an item, equal items equal wherever they lie, any change seen."""

from __future__ import annotations

import numpy as np
import pytest

from cim.formats.glb import FeatureColumns
from cim.kernels.digest import as_words, ragged_digests, row_digests
from cim.kernels.extrude import BuildingMesh
from cim.tiling.feature_tiles import FeatureInputs, feature_digests


def digests(items: list[list[float]]) -> np.ndarray:
    offsets = np.cumsum([0] + [len(i) for i in items])
    words = as_words(np.array([v for i in items for v in i], dtype=np.float64))
    return ragged_digests(words, offsets)


def test_an_item_digest_depends_on_its_words_only():
    d = digests([[1.0, 2.0, 3.0], [], [5.0], [1.0, 2.0, 3.0], []])
    assert d.shape == (5, 2) and d.dtype == np.uint64
    assert (d[0] == d[3]).all() and (d[1] == d[4]).all()
    assert len({tuple(r) for r in d.tolist()}) == 3


@pytest.mark.parametrize(
    "other",
    [
        [1.0, 2.0, 3.5],  # one word
        [2.0, 1.0, 3.0],  # two words swapped
        [1.0, 2.0, 3.0, 0.0],  # a zero word more
        [1.0, 2.0],  # one word fewer
        [1.0, -0.0 + 2.0, 3.0 + 2**-50],  # the last bit of a float
    ],
)
def test_any_change_changes_both_lanes(other):
    a, b = digests([[1.0, 2.0, 3.0], other])
    assert a[0] != b[0] and a[1] != b[1]


def test_signed_zero_and_widths_are_told_apart():
    zero, minus = digests([[0.0], [-0.0]])
    assert (zero != minus).all()
    # the same numbers in another dtype are other bit patterns
    f32 = ragged_digests(as_words(np.array([1.0, 2.0], dtype=np.float32)), np.array([0, 2]))
    f64 = ragged_digests(as_words(np.array([1.0, 2.0])), np.array([0, 2]))
    assert (f32 != f64).all()
    with pytest.raises(TypeError):
        as_words(np.array(["a"], dtype=object))


def test_no_collision_among_many_near_items():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**20, size=(20_000, 4)).astype(np.uint64)
    base[1:, 1:] = base[0, 1:]  # rows that differ in one word only
    d = row_digests(base)
    assert len(np.unique(d, axis=0)) == len(np.unique(base, axis=0))


def test_row_digests_follow_every_column():
    a = np.arange(6, dtype=np.uint64).reshape(3, 2)
    b = np.array([7, 8, 9], dtype=np.uint64)
    d = row_digests(a, b)
    b2 = b.copy()
    b2[1] = 0
    d2 = row_digests(a, b2)
    assert (d[[0, 2]] == d2[[0, 2]]).all() and (d[1] != d2[1]).all()


def mesh_of(boxes: list[float]) -> tuple[BuildingMesh, FeatureColumns]:
    """One triangle a feature, at height ``h`` for each ``h`` of ``boxes``."""
    n = len(boxes)
    positions = np.array([[0.0, h, 0.0] for h in boxes for _ in range(3)]) + np.tile([[0, 0, 0], [1, 0, 0], [0, 0, 1]], (n, 1))
    normals = np.tile(np.array([[0, 1, 0]], dtype=np.float32), (3 * n, 1))
    triangles = np.arange(3 * n, dtype=np.uint32).reshape(n, 3)
    mesh = BuildingMesh(positions, normals, triangles, np.arange(n + 1) * 3, np.arange(n + 1))
    names = np.array([f"b{h}" for h in boxes], dtype=object)
    columns = FeatureColumns.encode({"name": names, "height": np.array(boxes)}, {"name": "STRING", "height": "FLOAT64"})
    return mesh, columns


def test_a_feature_digest_ignores_features_before_it():
    """Removing a feature shifts the global vertex indices of those after it, not their digests."""
    full = feature_digests(*mesh_of([10.0, 20.0, 30.0]))
    fewer = feature_digests(*mesh_of([20.0, 30.0]))
    assert full.shape == (3, 16) and (full[1:] == fewer).all()
    renamed_mesh, columns = mesh_of([10.0, 20.0, 30.0])
    columns.columns[0] = FeatureColumns.encode({"name": np.array(["b10.0", "x", "b30.0"], dtype=object)}, {"name": "STRING"}).columns[0]
    renamed = feature_digests(renamed_mesh, columns)
    assert (renamed[[0, 2]] == full[[0, 2]]).all() and (renamed[1] != full[1]).any()


def test_a_tile_hash_follows_its_features_their_order_and_the_salt():
    mesh, columns = mesh_of([10.0, 20.0, 30.0])
    inputs = FeatureInputs.of("buildings", mesh, columns, "building", "")
    h = inputs.tile_hash(np.array([0, 2]))
    assert h == inputs.tile_hash(np.array([0, 2])) and len(h) == 40
    assert h != inputs.tile_hash(np.array([2, 0])) and h != inputs.tile_hash(np.array([0, 1, 2]))
    assert h != FeatureInputs.of("buildings", mesh, columns, "house", "").tile_hash(np.array([0, 2]))
