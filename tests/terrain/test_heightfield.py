"""Height-field kernels of the terrain layer, checked against plain (slow) numpy/Python references."""

from __future__ import annotations

import numpy as np
import pytest

from cim.kernels.heightfield import FILL_REACH, FILL_SWEEPS, fill_nodata, lattice_bilinear, lattice_coverage, raster_heights


def _reference_fill(grid: np.ndarray) -> np.ndarray:
    """fill_nodata's algorithm as first written: whole-grid passes along rows and columns."""
    g = np.array(grid, dtype=np.float64)
    finite = np.isfinite(g)
    g[~finite] = np.nan

    def line_estimates(a):
        est, dist = np.zeros_like(a), np.zeros_like(a)
        for y in range(a.shape[0]):
            last = -1
            for x in range(a.shape[1] + 1):
                if x < a.shape[1] and np.isnan(a[y, x]):
                    continue
                for k in range(last + 1, x):
                    if last >= 0 and x < a.shape[1]:
                        lo, hi = a[y, last], a[y, x]
                        est[y, k], dist[y, k] = lo + (hi - lo) * (k - last) / (x - last), min(k - last, x - k)
                    elif last >= 0:
                        est[y, k], dist[y, k] = a[y, last], k - last
                    elif x < a.shape[1]:
                        est[y, k], dist[y, k] = a[y, x], x - k
                last = x
        return est, dist

    reach = float(FILL_REACH)
    while np.isnan(g).any():
        er, dr = line_estimates(g)
        ec, dc = (t.T for t in line_estimates(np.ascontiguousarray(g.T)))
        for y, x in zip(*np.nonzero(np.isnan(g))):
            w_r = 1.0 / dr[y, x] if 0 < dr[y, x] <= reach else 0.0
            w_c = 1.0 / dc[y, x] if 0 < dc[y, x] <= reach else 0.0
            if w_r + w_c > 0:
                g[y, x] = (w_r * (er[y, x] if w_r > 0 else 0.0) + w_c * (ec[y, x] if w_c > 0 else 0.0)) / (w_r + w_c)
        reach *= 2.0
    rows, cols = g.shape
    for _ in range(FILL_SWEEPS):
        for y, x in zip(*np.nonzero(~finite)):
            around = [g[y + dy, x + dx] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)) if 0 <= y + dy < rows and 0 <= x + dx < cols]
            total = 0.0
            for v in around:
                total += v
            g[y, x] = total / len(around)
    return g


def _holey(rng: np.random.Generator, h: int, w: int, kind: int) -> np.ndarray:
    g = rng.normal(size=(h, w)).cumsum(0).cumsum(1) + 1000.0
    yy, xx = np.mgrid[:h, :w]
    if kind == 0:
        g[rng.random((h, w)) < 0.4] = np.nan
    elif kind == 1:  # a slanting edge of the data, as a DEM's rotated outline
        g[xx * 0.3 + yy * 0.7 > 0.5 * (h + w) * 0.5] = np.nan
    elif kind == 2:  # whole empty rows and columns, and infinities
        g[h // 2 :, :] = np.nan
        g[:, : w // 3] = np.inf
    else:
        g[h // 4 : h // 2, w // 5 : w // 2] = np.nan
    if not np.isfinite(g).any():
        g[0, 0] = 1000.0
    return g


@pytest.mark.parametrize("kind", range(4))
@pytest.mark.parametrize("shape", [(1, 40), (37, 1), (23, 61), (70, 45)])
def test_fill_equals_the_full_grid_algorithm(kind, shape):
    g = _holey(np.random.default_rng(kind * 100 + shape[0]), *shape, kind)
    got = fill_nodata(g)
    assert np.array_equal(got, _reference_fill(g))  # the same arithmetic in the same order
    assert np.isfinite(got).all()
    data = g[np.isfinite(g)]
    assert data.min() <= got.min() and got.max() <= data.max()
    out = np.full(shape, -1.0)
    assert fill_nodata(g, out=out) is out and np.array_equal(out, got)


def test_fill_refuses_empty_grids():
    with pytest.raises(ValueError, match="no valid sample"):
        fill_nodata(np.full((4, 5), np.nan))
    with pytest.raises(ValueError):
        fill_nodata(np.zeros((3, 3)), out=np.zeros((3, 4)))


def test_lattice_coverage():
    rng = np.random.default_rng(5)
    k, n, margin = 4, 8, 3
    size = k * n + 1 + 2 * margin
    for trial in range(30):
        g = np.full((size, size), np.nan)
        for _ in range(trial % 5):
            y, x = rng.integers(0, size, 2)
            g[y, x] = rng.normal()
        if trial % 7 == 0:
            g[margin + n, margin : margin + 2 * n] = 1.0  # along a shared edge
        have, lo, hi = lattice_coverage(g, margin, k, n)
        inner = np.isfinite(g[margin : margin + k * n + 1, margin : margin + k * n + 1])
        want = np.array([[inner[ty * n : (ty + 1) * n + 1, tx * n : (tx + 1) * n + 1].any() for tx in range(k)] for ty in range(k)])
        assert np.array_equal(have, want)
        finite = g[np.isfinite(g)]
        assert (lo, hi) == ((finite.min(), finite.max()) if finite.size else (np.inf, -np.inf))


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float32, np.float64])
def test_raster_heights(dtype):
    data = (np.arange(-50, 50).reshape(10, 10) * 3).astype(dtype)
    if np.dtype(dtype).kind == "f":
        data[0, :3] = [np.inf, -np.inf, np.nan]
    nodata = float(data[4, 4])
    for use in (True, False):
        want = data.astype(np.float32)
        if use:
            want[data == nodata] = np.nan
        want[~np.isfinite(want)] = np.nan
        got = raster_heights(data, nodata, use, np.empty(data.shape, np.float32))
        assert got.dtype == np.float32 and np.array_equal(got, want, equal_nan=True)
    in_place = data.astype(np.float32)
    assert raster_heights(in_place, nodata, True, in_place) is in_place


def test_lattice_bilinear_into_a_larger_grid():
    rng = np.random.default_rng(2)
    grid = (rng.normal(size=(60, 70)).cumsum(0) + 500).astype(np.float32)
    grid[10:13, 20:25] = np.nan
    ki, kj = np.meshgrid(np.arange(5), np.arange(4))
    col = -3.0 + 16 * 1.1 * ki + 0.3 * kj
    row = 2.0 + 16 * 0.9 * kj - 0.2 * ki
    alone = lattice_bilinear(grid, col, row, 16, (49, 60))
    big = np.full((57, 66), 7.0)
    view = lattice_bilinear(grid, col, row, 16, (49, 60), out=big, at=(4, 3))
    assert np.array_equal(view, alone, equal_nan=True) and np.array_equal(big[4:53, 3:63], alone, equal_nan=True)
    rest = big.copy()
    rest[4:53, 3:63] = 7.0
    assert (rest == 7.0).all()
    assert np.isnan(alone[:, 0]).all() and np.isfinite(alone[5:30, 5:40]).any()  # the west edge lies off the raster
    with pytest.raises(ValueError):
        lattice_bilinear(grid, col, row, 16, (49, 60), out=big, at=(10, 3))
