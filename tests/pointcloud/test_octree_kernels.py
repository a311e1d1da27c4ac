"""Octree kernels and the chunked hierarchy, against brute-force definitions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cim.kernels.octree import (
    cell_corner,
    chunk_keys,
    code_levels,
    common_depth,
    index_bits,
    leaf_ranges,
    morton_code,
    node_is_leaf,
)
from cim.tiling.octree import (
    IDENTITY,
    STAGE_DTYPE,
    Chunk,
    OctreeGrid,
    ancestors,
    index_chunk,
    merge_counts,
    plan_chunks,
    stage_batch,
)


def _stage(xyz_units: np.ndarray, grid: OctreeGrid, ids: np.ndarray | None = None):
    """Stage points given in grid units (as ENU metres through the identity quadratic)."""
    n = len(xyz_units)
    enu = xyz_units.T.astype(np.float64) * grid.unit
    ids = np.arange(n) if ids is None else ids
    r = (ids & 255).astype(np.uint16)
    g = ((ids >> 8) & 255).astype(np.uint16)
    b = ((ids >> 16) & 255).astype(np.uint16)
    z8 = np.zeros(n, np.uint8)
    return stage_batch(
        enu[0], enu[1], enu[2], np.ones(3), np.zeros(3), IDENTITY, (r, g, b), 0, np.zeros(n, np.uint16), z8, 0xFF, z8, 0x0F, grid
    )


def _ids(records: np.ndarray) -> np.ndarray:
    rgb = records["rgb"].astype(np.int64)
    return rgb[:, 0] | rgb[:, 1] << 8 | rgb[:, 2] << 16


def test_morton_code_and_cell_corner_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        levels = int(rng.integers(1, 15))
        ix, iy, iz = (int(v) for v in rng.integers(0, 2**levels, 3))
        code = morton_code(ix, iy, iz, levels)
        assert cell_corner(code, levels) == (ix, iy, iz)
        # the top digit of the code is the octant of the first split, z flipped (high first)
        top = code >> (3 * (levels - 1))
        assert top == ((ix >> (levels - 1)) << 2 | (iy >> (levels - 1)) << 1 | (1 - (iz >> (levels - 1))))


def test_chunk_keys_match_morton_codes():
    rng = np.random.default_rng(1)
    n = 500
    words = np.zeros((n, 5), np.uint32)
    q = rng.integers(0, 2**20, (n, 3))
    words[:, :3] = q.astype(np.uint32)
    keys = np.empty(n, np.uint64)
    levels, shift = 12, 8
    chunk_keys(words, np.zeros(3, np.int64), shift, levels, index_bits(n), keys)
    ib = index_bits(n)
    for i in range(n):
        g = q[i] >> shift
        assert int(keys[i]) >> ib == morton_code(int(g[0]), int(g[1]), int(g[2]), levels)
        assert int(keys[i]) & ((1 << ib) - 1) == i


def test_stage_batch_sorts_by_counting_cell_and_keeps_attributes():
    grid = OctreeGrid((0, 0, 0), 21, 1e-3)
    rng = np.random.default_rng(2)
    q = rng.integers(0, 2**21, (3000, 3))
    st = _stage(q, grid)
    assert st.outside == 0
    ids = _ids(st.records)
    assert sorted(ids.tolist()) == list(range(3000))  # a permutation: nothing lost, nothing doubled
    np.testing.assert_array_equal(st.records["xyz"], q[ids])
    cells = np.array([morton_code(*(int(v) for v in row >> (21 - 7)), 7) for row in st.records["xyz"]])
    assert (np.diff(cells) >= 0).all()
    assert st.counts.sum() == 3000 and (np.diff(st.cells.astype(np.int64)) > 0).all()
    np.testing.assert_array_equal(st.lo, q.min(axis=0))
    np.testing.assert_array_equal(st.hi, q.max(axis=0))


def test_stage_batch_flags_points_outside_the_cube():
    grid = OctreeGrid((0, 0, 0), 21, 1e-3)
    st = _stage(np.array([[0, 0, 0], [2**21 + 5, 0, 0]]), grid)
    assert st.outside == 1


def _reference_depths(q: np.ndarray, bits: int, k: int, leaf_max: int) -> np.ndarray:
    """Node depth of every point by the definitions, level by level, in pure Python.

    Level of a point: the shallowest ``d`` such that it is the first point (in Morton order,
    ties by index) of its cell of depth ``d + k``. Leaf: the shallowest cell holding at most
    ``leaf_max`` points. A point is stored at ``min(level, leaf depth)``."""
    n = len(q)
    codes = [morton_code(*(int(v) for v in row), bits) for row in q]
    order = sorted(range(n), key=lambda i: (codes[i], i))
    out = np.empty(n, dtype=np.int64)
    for rank, i in enumerate(order):
        depth_leaf = next(
            d
            for d in range(bits + 1)
            if d == bits - k or sum(1 for c in codes if c >> 3 * (bits - d) == codes[i] >> 3 * (bits - d)) <= leaf_max
        )
        level = bits + 1
        for d in range(bits - k + 1):
            shift = 3 * (bits - d - k)
            prev = order[rank - 1] if rank else None
            if prev is None or codes[prev] >> shift != codes[i] >> shift:
                level = d
                break
        out[i] = min(level, depth_leaf)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_chunk_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    bits, k, leaf_max = 9, 3, 40
    grid = OctreeGrid((0, 0, 0), bits, 1.0, node_bits=k, count_depth=3)
    n = 400
    # clustered points: a dense blob and a sparse field, plus exact duplicates
    q = np.concatenate([rng.integers(0, 2**bits, (n // 2, 3)), rng.integers(200, 232, (n // 2 - 10, 3))])
    q = np.concatenate([q, q[:10]])
    st = _stage(q, grid)
    ix = index_chunk(st.records, Chunk(0, 0, n, 0, 1 << 9), grid, leaf_max)
    expect = _reference_depths(q, bits, k, leaf_max)
    ids = _ids(ix.records)
    assert sorted(ids.tolist()) == list(range(n))
    got = np.empty(n, dtype=np.int64)
    for d, a, b, leaf in zip(ix.depth, ix.start, ix.stop, ix.leaf):
        got[ids[a:b]] = d
        if leaf and d < bits - k:
            assert b - a <= leaf_max
    np.testing.assert_array_equal(got, expect)
    # every point's node is the cell of that depth that holds it
    for d, p, a, b in zip(ix.depth, ix.prefix, ix.start, ix.stop):
        for row in ix.records["xyz"][a:b]:
            assert morton_code(*(int(v) >> (bits - int(d)) for v in row), int(d)) == p


def test_chunks_give_the_same_tree_as_one_chunk():
    """Cutting the cube into chunks changes nothing: each point lands in the same node."""
    rng = np.random.default_rng(5)
    bits = 14
    grid = OctreeGrid((0, 0, 0), bits, 1.0, node_bits=4, count_depth=5)
    n = 6000
    q = np.concatenate([rng.integers(0, 2**bits, (n // 2, 3)), 4000 + rng.integers(0, 900, (n // 2, 3))])
    st = _stage(q, grid)
    whole = index_chunk(st.records, Chunk(0, 0, n, 0, 1 << 15), grid, 300)

    def nodes_of(ix, up_parent=None):
        out = {}
        ids = _ids(ix.records)
        for d, p, a, b in zip(ix.depth, ix.prefix, ix.start, ix.stop):
            for i in ids[a:b]:
                out[int(i)] = (int(d), int(p))
        return out

    expect = nodes_of(whole)
    cells, counts = merge_counts([st.cells], [st.counts])
    chunks = plan_chunks(cells, counts, grid.count_depth, 700)
    assert len(chunks) > 4 and max(c.depth for c in chunks) >= 2
    got = {}
    cum = np.concatenate([[0], np.cumsum(st.counts)])
    for c in chunks:
        i0, i1 = np.searchsorted(st.cells, [c.cell_lo, c.cell_hi])
        ix = index_chunk(st.records[cum[i0] : cum[i1]], c, grid, 300)
        got.update(nodes_of(ix))
        ids = _ids(ix.records)
        a = 0
        for d, m in enumerate(ix.up_counts.tolist()):
            for i in ids[a : a + m]:
                got[int(i)] = (d, c.prefix >> (3 * (c.depth - d)))
            a += m
        assert {(d, c.prefix >> (3 * (c.depth - d))) for d in range(c.depth)} <= ancestors(chunks)
    assert got == expect


def test_leaf_ranges_partition_the_chunk():
    rng = np.random.default_rng(3)
    levels = 10
    codes = np.sort(rng.integers(0, 2 ** (3 * levels), 5000).astype(np.uint64))
    depth, prefix, start, stop = leaf_ranges(codes, levels, 100, 6)
    leaf = node_is_leaf(depth, prefix)
    ls = np.argsort(start[leaf])
    a, b = start[leaf][ls], stop[leaf][ls]
    assert a[0] == 0 and b[-1] == 5000 and (a[1:] == b[:-1]).all()
    assert ((b - a <= 100) | (depth[leaf][ls] == 6)).all()
    for d, p, s, e in zip(depth, prefix, start, stop):
        sh = 3 * (levels - d)
        assert ((codes[s:e] >> np.uint64(sh)) == p).all()


def test_plan_chunks_and_common_depth():
    cells = np.array([0, 1, 8, 9, 64 * 7], dtype=np.uint64)
    counts = np.array([50, 50, 50, 50, 10])
    chunks = plan_chunks(cells, counts, 3, 120)
    assert sum(c.count for c in chunks) == 210
    assert all(c.count <= 120 for c in chunks)
    assert chunks[0].first_diff == 0
    for prev, cur in itertools.pairwise(chunks):
        assert cur.first_diff == common_depth(prev.prefix, prev.depth, cur.prefix, cur.depth) + 1
    assert common_depth(0o12, 2, 0o13, 2) == 1
    assert common_depth(0o1, 1, 0o123, 3) == 1
    assert code_levels(2**21) == 14 and code_levels(2**30) == 11


def test_records_are_twenty_bytes():
    assert STAGE_DTYPE.itemsize == 20
