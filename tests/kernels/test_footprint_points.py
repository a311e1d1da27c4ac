"""Points against footprints (cim.kernels.footprint_points): the compiled matching agrees with
shapely pair for pair, and the percentiles with numpy.

The rule for a point on a footprint's boundary: a footprint is closed (``shapely.covers``); a
point on an edge two footprints share belongs to both; the ground ring is
``dwithin(buffer) & ~covers``.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from cim.kernels.footprint_points import (
    FootprintGrid,
    assign_points,
    decode_keys,
    feature_rings,
    group_percentiles,
    height_keys,
    select_points,
)
from cim.sources.footprints import footprint_rings, read_footprints

BUFFER = 3.0


def _match(geoms: np.ndarray, x: np.ndarray, y: np.ndarray, kind: np.ndarray, buffer: float = BUFFER, cell: float | None = None):
    xy, ro, po, pf = footprint_rings(geoms)
    rings_of = feature_rings(ro, po, pf, len(geoms))
    grid = FootprintGrid.build(xy, ro, rings_of, buffer, cell=cell)
    rp, rf, gp, gf = assign_points(grid, xy, ro, rings_of, x, y, kind)
    return set(zip(rp.tolist(), rf.tolist())), set(zip(gp.tolist(), gf.tolist()))


def _shapely(geoms: np.ndarray, x: np.ndarray, y: np.ndarray, kind: np.ndarray, buffer: float = BUFFER):
    pts = shapely.points(x, y)
    tree = shapely.STRtree(geoms)
    pi, fi = tree.query(pts, predicate="intersects")  # intersects a point == covers it
    roof = {(int(p), int(f)) for p, f in zip(pi, fi) if kind[p] == 1}
    pi, fi = tree.query(pts, predicate="dwithin", distance=buffer)
    outside = ~shapely.covers(geoms[fi], pts[pi])
    ground = {(int(p), int(f)) for p, f, o in zip(pi, fi, outside) if kind[p] == 2 and o}
    return roof, ground


def _probe_points(geoms: np.ndarray, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points over the footprints' extent, plus every vertex and the midpoint of every
    axis-parallel edge (points exactly on the boundary)."""
    b = shapely.total_bounds(geoms)
    x = rng.uniform(b[0] - 5, b[2] + 5, n)
    y = rng.uniform(b[1] - 5, b[3] + 5, n)
    xy = shapely.get_coordinates(geoms)
    a, c = xy[:-1], xy[1:]
    axis = (a[:, 0] == c[:, 0]) | (a[:, 1] == c[:, 1])
    mid = (a[axis] + c[axis]) / 2.0
    return np.concatenate([x, xy[:, 0], mid[:, 0]]), np.concatenate([y, xy[:, 1], mid[:, 1]])


def test_matches_shapely_on_the_sample_footprints(tiny_sources):
    table = read_footprints(tiny_sources.buildings)
    geoms = table.geometries
    assert (shapely.get_num_interior_rings(geoms) > 0).any() or (shapely.get_type_id(geoms) == 6).any(), (
        "the sample has holes or multipolygons"
    )
    rng = np.random.default_rng(1)
    x, y = _probe_points(geoms, rng, 100_000)
    kind = rng.integers(1, 3, len(x)).astype(np.uint8)
    roof, ground = _match(geoms, x, y, kind)
    ref_roof, ref_ground = _shapely(geoms, x, y, kind)
    assert len(ref_roof) > 1000 and len(ref_ground) > 1000
    assert roof == ref_roof
    assert ground == ref_ground


@pytest.mark.parametrize("cell", [None, 0.7, 50.0])
def test_holes_multipolygons_shared_edges(cell):
    """A square with a hole (a courtyard), a two-part multipolygon, and two squares sharing an
    edge; every point of a 0.5 m lattice (exact in binary), so many lie on edges and vertices."""
    geoms = np.array(
        [
            shapely.Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(3, 3), (7, 3), (7, 7), (3, 7)]]),
            shapely.MultiPolygon([shapely.box(20, 0, 24, 4), shapely.box(26, 0, 30, 4)]),
            shapely.box(40, 0, 45, 5),
            shapely.box(45, 0, 50, 5),  # shares the edge x = 45 with the one before
            shapely.Polygon([(60, 0), (66, 1), (63, 7)]),  # slanted edges
        ],
        dtype=object,
    )
    gx, gy = np.meshgrid(np.arange(-5, 71, 0.5), np.arange(-5, 16, 0.5))
    x, y = gx.ravel(), gy.ravel()
    for k in (1, 2):
        kind = np.full(len(x), k, dtype=np.uint8)
        roof, ground = _match(geoms, x, y, kind, cell=cell)
        ref_roof, ref_ground = _shapely(geoms, x, y, kind)
        assert roof == ref_roof
        assert ground == ref_ground
    # the rule, spelled out on a few points
    kind = np.ones(4, dtype=np.uint8)
    roof, _ = _match(geoms, np.array([45.0, 5.0, 3.0, 22.0]), np.array([2.0, 5.0, 5.0, 4.0]), kind, cell=cell)
    assert roof == {(0, 2), (0, 3), (2, 0), (3, 1)}  # shared edge: both; courtyard: none; hole's edge: the footprint


def test_percentiles_are_numpys():
    rng = np.random.default_rng(2)
    n = 500
    counts = rng.integers(0, 40, n)
    counts[:5] = [0, 1, 2, 3, 1000]
    feature = np.repeat(np.arange(n), counts)
    z = rng.normal(1200.0, 30.0, len(feature)).round(3)
    order = np.lexsort((z, feature))
    q = np.array([0.0, 10.0, 25.0, 50.0, 90.0, 97.5, 100.0])
    values, count = group_percentiles(feature[order], z[order], n, q)
    assert np.array_equal(count, counts)
    for f in range(n):
        if counts[f] == 0:
            assert np.isnan(values[f]).all()
        else:
            np.testing.assert_array_equal(values[f], np.percentile(z[feature == f], q))


def test_height_keys_sort_by_feature_then_height_within_the_float32_bound():
    rng = np.random.default_rng(3)
    z_ref = 1100.0
    z = np.concatenate([rng.uniform(900.0, 2000.0, 100_000), [z_ref, z_ref - 1e-9, -0.0 + z_ref, 1100.001]])
    feature = rng.integers(0, 70_000, len(z))
    keys = height_keys(feature, z, z_ref)
    f, back = decode_keys(keys, z_ref)
    assert np.array_equal(f, feature)
    # float32 rounding: relative error at most 2**-24 of |z - z_ref|
    assert np.all(np.abs(back - z) <= 2.0**-24 * np.abs(z - z_ref) + 1e-12)
    order = np.argsort(keys)
    ref = np.lexsort((back, feature))
    assert np.array_equal(feature[order], feature[ref])
    assert np.array_equal(back[order], back[ref])


def test_select_points_on_packed_records():
    """Raw LAS records are packed (34 bytes in point format 3: unaligned int32 fields)."""
    rng = np.random.default_rng(4)
    n = 10_000
    rec = np.zeros(
        n, dtype=np.dtype({"names": ["X", "Y", "Z", "c"], "formats": ["<i4", "<i4", "<i4", "u1"], "offsets": [0, 4, 8, 15], "itemsize": 34})
    )
    rec["X"], rec["Y"], rec["Z"] = rng.integers(-(10**6), 10**6, (3, n))
    rec["c"] = rng.integers(0, 256, n)
    scales, offsets, box = (0.01, 0.01, 0.001), (1000.0, 2000.0, 0.0), (-5000.0, -6000.0, 8000.0, 9000.0)
    classes = np.zeros(256, dtype=np.int64)
    x, y, z, kind = select_points(rec["X"], rec["Y"], rec["Z"], rec["c"], 0x1F, scales, offsets, 0.3048, box, classes)
    cls = rec["c"] & 0x1F
    rx, ry = rec["X"] * 0.01 + 1000.0, rec["Y"] * 0.01 + 2000.0
    keep = np.isin(cls, [2, 6]) & (rx >= box[0]) & (rx <= box[2]) & (ry >= box[1]) & (ry <= box[3])
    assert keep.sum() > 100
    assert np.array_equal(x, rx[keep]) and np.array_equal(y, ry[keep])
    assert np.array_equal(z, (rec["Z"][keep] * 0.001) * 0.3048)
    assert np.array_equal(kind, np.where(cls[keep] == 6, 1, 2))
    assert np.array_equal(classes, np.bincount(cls, minlength=256))
    _, _, _, roofs_only = select_points(rec["X"], rec["Y"], rec["Z"], rec["c"], 0x1F, scales, offsets, 1.0, box, classes, ground_class=None)
    assert np.all(roofs_only == 1) and len(roofs_only) == (keep & (cls == 6)).sum()
