"""Error-bounded TINs: valid triangulations within the bound, and fewer vertices than Delatin's."""

from __future__ import annotations

import numpy as np
import pytest

from cim.kernels.tin import error_bounded_tin, error_bounded_tins, tin_error
from cim.samplecity.terrain import CENTRE_E, CENTRE_N, dem_grid


def _rough(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(np.cumsum(rng.normal(size=(n, n)), 0), 1) * 0.05 + rng.normal(size=(n, n)) * 0.05


def _interpolated_error(grid, v, t):
    """Independent of the kernel: interpolate the TIN at every sample by barycentric coordinates."""
    ys, xs = np.mgrid[0 : grid.shape[0], 0 : grid.shape[1]]
    worst = 0.0
    z = grid[v[:, 1], v[:, 0]]
    for a, b, c in t:
        (x0, y0), (x1, y1), (x2, y2) = v[a], v[b], v[c]
        det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        l1 = ((xs - x0) * (y2 - y0) - (x2 - x0) * (ys - y0)) / det
        l2 = ((x1 - x0) * (ys - y0) - (xs - x0) * (y1 - y0)) / det
        inside = (l1 >= 0) & (l2 >= 0) & (l1 + l2 <= 1)
        h = z[a] * (1 - l1 - l2) + z[b] * l1 + z[c] * l2
        if inside.any():
            worst = max(worst, float(np.abs(h - grid)[inside].max()))
    return worst


def _check_triangulation(v, t, n):
    p = v.astype(np.int64)
    a, b, c = p[t[:, 0]], p[t[:, 1]], p[t[:, 2]]
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    assert (area2 > 0).all()
    assert area2.sum() == 2 * (n - 1) ** 2  # the triangles tile the square exactly
    assert len({tuple(x) for x in v.tolist()}) == len(v)
    assert {(0, 0), (n - 1, 0), (n - 1, n - 1), (0, n - 1)} <= {tuple(x) for x in v.tolist()}
    # every edge is shared by two triangles, or lies on the border
    edges = {}
    for tri in t.tolist():
        for i in range(3):
            e = (tri[i], tri[(i + 1) % 3])
            assert e not in edges
            edges[e] = True
    for i, j in edges:
        if (j, i) not in edges:
            (x0, y0), (x1, y1) = v[i], v[j]
            assert (x0 == x1 and x0 in (0, n - 1)) or (y0 == y1 and y0 in (0, n - 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_error", [0.05, 0.3])
def test_tin_within_the_bound(seed, max_error):
    g = _rough(65, seed)
    v, t, err = error_bounded_tin(g, max_error)
    _check_triangulation(v, t, 65)
    assert err <= max_error
    assert tin_error(g, v, t) == pytest.approx(err)
    assert _interpolated_error(g, v, t) <= max_error + 1e-9
    assert 4 < len(v) < g.size


def test_flat_and_planar_grids_need_two_triangles():
    for g in (np.full((65, 65), 1234.5), 3.0 * np.arange(65)[None, :] - 0.5 * np.arange(65)[:, None]):
        v, t, err = error_bounded_tin(g, 0.01)
        assert len(v) == 4 and len(t) == 2 and err < 1e-9


def test_zero_error_reproduces_the_grid():
    g = _rough(17, 5)
    v, t, err = error_bounded_tin(g, 0.0)
    assert err < 1e-9 and _interpolated_error(g, v, t) < 1e-9


def test_removal_keeps_the_bound_with_fewer_vertices():
    g = _rough(65, 9)
    full, _, _ = error_bounded_tin(g, 0.2, decimate=False)
    v, t, err = error_bounded_tin(g, 0.2)
    assert len(v) < len(full)
    assert _interpolated_error(g, v, t) <= 0.2 + 1e-9


def test_batch_of_windows_equals_one_by_one():
    g = _rough(200, 4)
    rows, cols = [0, 30, 135], [10, 135, 64]
    v, t, voff, toff, err, ranges = error_bounded_tins(g, rows, cols, 65, 0.1)
    for s, (r, c) in enumerate(zip(rows, cols)):
        one_v, one_t, one_err = error_bounded_tin(g[r : r + 65, c : c + 65], 0.1)
        np.testing.assert_array_equal(v[voff[s] : voff[s + 1]], one_v)
        np.testing.assert_array_equal(t[toff[s] : toff[s + 1]], one_t)
        assert err[s] == one_err
        assert tuple(ranges[s]) == (g[r : r + 65, c : c + 65].min(), g[r : r + 65, c : c + 65].max())
    with pytest.raises(ValueError):
        error_bounded_tins(g, [190], [0], 65, 0.1)


def test_no_data_is_refused():
    g = _rough(9, 1)
    g[3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        error_bounded_tin(g, 0.1)


def test_fewer_vertices_than_pydelatin_at_the_same_error():
    """The reference method is Delatin's greedy insertion; on the city's hills we need fewer vertices."""
    pydelatin = pytest.importorskip("pydelatin", reason="pydelatin is a benchmark-only tool (pip install pydelatin)")
    x0, y0 = CENTRE_E - 1500.0, CENTRE_N + 2200.0
    dem = dem_grid(x0, y0, x0 + 1300.0, y0 + 1300.0, 2.0).astype(np.float64)
    ours = theirs = 0
    for r in range(0, 520, 130):
        for c in range(0, 520, 130):
            g = np.ascontiguousarray(dem[r : r + 129, c : c + 129])
            v, t, err = error_bounded_tin(g, 0.5)
            d = pydelatin.Delatin(g, max_error=0.5)
            assert err <= 0.5 and d.error <= 0.5
            ours += len(v)
            theirs += len(d.vertices)
    assert ours < theirs
