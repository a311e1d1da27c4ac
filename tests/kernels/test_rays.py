"""Ray kernels against known geometry and brute force."""

from __future__ import annotations

import numpy as np
import pytest

from cim.kernels.rays import block_max, march_heightfield, points_in_polygons, radial_samples, segment_prism_hits, shadow_heights

# one 10 × 10 m box from z 0 to 20, and an L-shaped prism (with a notch) from 0 to 5
BOX = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)
ELL = np.array([[20, 0], [30, 0], [30, 4], [24, 4], [24, 10], [20, 10]], dtype=float)


def _edges(*rings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.concatenate(rings)
    b = np.concatenate([np.roll(r, -1, axis=0) for r in rings])
    prism = np.concatenate([np.full(len(r), i) for i, r in enumerate(rings)])
    return a, b, prism


EA, EB, EP = _edges(BOX, ELL)
BASE = np.array([0.0, 0.0])
TOP = np.array([20.0, 5.0])


def test_segments_against_prisms_known_answers() -> None:
    p = np.array(
        [
            [-10, 5, 1],  # through the box's west wall at x = 0
            [-10, 5, 25],  # above the box
            [5, 5, 30],  # straight down onto the roof
            [5, 5, 10],  # starts inside the box
            [27, 8, 2],  # in the L's notch, going east: misses
            [27, 8, 2],  # in the notch, going south into the L's foot (y = 4)
            [15, -5, 1],  # between the two, going north: misses both
        ],
        dtype=float,
    )
    q = np.array([[20, 5, 1], [20, 5, 25], [5, 5, -10], [5, 5, 0], [40, 8, 2], [27, -8, 2], [15, 20, 1]], dtype=float)
    t, prism = segment_prism_hits(p, q, EA, EB, EP, BASE, TOP)
    assert prism.tolist() == [0, -1, 0, 0, -1, 1, -1]
    np.testing.assert_allclose(t[[0, 2, 3, 5]], [10 / 30, 10 / 40, 0.0, 4 / 16])
    assert np.isnan(t[[1, 4, 6]]).all()


def test_nearest_of_several_prisms_wins() -> None:
    t, prism = segment_prism_hits(np.array([[40, 2, 1.0]]), np.array([[-20, 2, 1.0]]), EA, EB, EP, BASE, TOP)
    assert prism[0] == 1 and t[0] == pytest.approx(10 / 60)  # the L's east wall at x = 30


def test_points_in_polygons_even_odd() -> None:
    px = np.array([5.0, 27.0, 22.0, 50.0])
    py = np.array([5.0, 8.0, 8.0, 5.0])
    polys = np.array([0, 1, 1, 0])
    rows = np.concatenate([np.flatnonzero(np.equal(EP, k)) for k in polys])
    pair = np.repeat(np.arange(4), [np.count_nonzero(np.equal(EP, k)) for k in polys])
    inside = points_in_polygons(px[pair], py[pair], EA[rows], EB[rows], pair, 4)
    assert inside.tolist() == [True, False, True, False]


def _brute_march(grid, x0, y0, res, o, d, max_dist, step):
    ts = np.arange(0, max_dist + 1e-9, step)
    for t in ts:
        x, y, z = o + t * d
        c, r = int(np.floor((x - x0) / res)), int(np.floor((y0 - y) / res))
        if not (0 <= r < grid.shape[0] and 0 <= c < grid.shape[1]):
            return np.nan
        if z < grid[r, c]:
            return t
    return np.nan


@pytest.mark.parametrize("blocks", [False, True])
def test_march_heightfield_matches_brute_force(blocks: bool) -> None:
    rng = np.random.default_rng(3)
    grid = rng.uniform(0, 3, (64, 64))
    grid[20:26, 30:50] = 25.0  # a block
    grid[40:60, 5:9] = 12.0
    n = 300
    o = np.column_stack([rng.uniform(1, 63, n), rng.uniform(1, 63, n), rng.uniform(3, 10, n)])
    az = rng.uniform(0, 2 * np.pi, n)
    alt = rng.uniform(-0.1, 0.5, n)
    d = np.column_stack([np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)])
    t, r, c = march_heightfield(grid, 0.0, 64.0, 1.0, o, d, 80.0, step=0.5, blocks=(8, block_max(grid, 8)) if blocks else None)
    ref = np.array([_brute_march(grid, 0.0, 64.0, 1.0, o[i], d[i], 80.0, 0.5) for i in range(n)])
    hit = ~np.isnan(ref)
    assert 50 < hit.sum() < n  # the scene tests both outcomes
    np.testing.assert_array_equal(np.isnan(t), ~hit)
    # skipping tiles may land between the fixed samples: within one sample of the reference
    np.testing.assert_allclose(t[hit], ref[hit], atol=0.5 if blocks else 1e-9)
    assert (grid[r[hit], c[hit]] > (o[hit, 2] + t[hit] * d[hit, 2])).all()


def _numpy_march(
    grid: np.ndarray,
    x0: float,
    y0: float,
    res: float,
    origins: np.ndarray,
    dirs: np.ndarray,
    max_dist: float | np.ndarray,
    *,
    t_start: float | np.ndarray = 0.0,
    step: float | None = None,
    blocks: tuple[int, np.ndarray] | list[tuple[int, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The numpy march the compiled loop replaced (every ray one step at a time), kept as the
    reference the loop must equal bit for bit."""
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    n = len(origins)
    step = float(step or res / 2.0)
    rows, cols = grid.shape
    t_hit = np.full(n, np.nan)
    row_hit = np.full(n, -1, dtype=np.int64)
    col_hit = np.full(n, -1, dtype=np.int64)
    if n == 0 or grid.size == 0:
        return t_hit, row_hit, col_hit
    top = float(np.nanmax(grid)) if np.isfinite(grid).any() else -np.inf
    flat = np.where(np.isnan(grid), -np.inf, grid).ravel()
    limit = np.broadcast_to(np.asarray(max_dist, dtype=np.float64), (n,))
    active = np.arange(n)
    t = np.broadcast_to(np.asarray(t_start, dtype=np.float64), (n,)).copy()
    levels = [] if blocks is None else [blocks] if isinstance(blocks, tuple) else list(blocks)
    levels = sorted(levels, key=lambda level: -level[0])  # coarse first
    while len(active):
        o, d, ta = origins[active], dirs[active], t[active]
        x = o[:, 0] + ta * d[:, 0]
        y = o[:, 1] + ta * d[:, 1]
        z = o[:, 2] + ta * d[:, 2]
        c = np.floor((x - x0) / res).astype(np.int64)
        r = np.floor((y0 - y) / res).astype(np.int64)
        inside = (c >= 0) & (c < cols) & (r >= 0) & (r < rows) & (ta <= limit[active]) & ~((z > top) & (d[:, 2] >= 0))
        cell = np.where(inside, r * cols + c, 0)
        below = inside & (z < flat[cell])
        hit = active[below]
        t_hit[hit], row_hit[hit], col_hit[hit] = ta[below], r[below], c[below]
        going = inside & ~below
        advance = np.full(len(active), step)
        if levels and going.any():
            # inside a tile whose highest cell lies below the ray all the way across: jump out
            # of the largest such tile
            todo = going.copy()
            for bsize, bmax in levels:
                if not todo.any():
                    break
                br, bc = r // bsize, c // bsize
                bx0 = x0 + bc * bsize * res
                by1 = y0 - br * bsize * res
                with np.errstate(divide="ignore", invalid="ignore"):
                    tx = np.where(d[:, 0] > 0, (bx0 + bsize * res - x) / d[:, 0], np.where(d[:, 0] < 0, (bx0 - x) / d[:, 0], np.inf))
                    ty = np.where(d[:, 1] > 0, (by1 - y) / d[:, 1], np.where(d[:, 1] < 0, (by1 - bsize * res - y) / d[:, 1], np.inf))
                exit_t = np.minimum(tx, ty)
                low = np.minimum(z, z + exit_t * d[:, 2])
                flat_max = bmax.ravel()
                clear = todo & np.isfinite(exit_t) & (low > flat_max[np.where(todo, br * bmax.shape[1] + bc, 0)])
                advance = np.where(clear, np.maximum(exit_t + 1e-6, step), advance)
                todo &= ~clear
        t[active] = ta + advance
        active = active[going]
    return t_hit, row_hit, col_hit


def test_the_compiled_march_is_the_numpy_march_bit_for_bit() -> None:
    """Every ray's distance and cell as the numpy version gives them: two tile levels, NaN cells,
    rays along the axes, rays starting below the surface, varying limits and starts."""
    rng = np.random.default_rng(11)
    grid = rng.uniform(0, 4, (96, 80))
    grid[30:40, 10:60] = 30.0
    grid[60:90, 50:55] = 18.0
    grid[5:9, 5:9] = np.nan
    n = 4000
    o = np.column_stack([rng.uniform(-5, 85, n), rng.uniform(-5, 101, n), rng.uniform(-1, 25, n)])
    az = rng.uniform(0, 2 * np.pi, n)
    az[:200] = rng.choice([0.0, np.pi / 2, np.pi, 3 * np.pi / 2], 200)  # dx or dy exactly 0
    alt = rng.uniform(-0.2, 0.8, n)
    d = np.column_stack([np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)])
    d[:200, :2] = np.round(d[:200, :2])
    d[:200] /= np.linalg.norm(d[:200], axis=1)[:, None]
    limit = rng.uniform(10, 150, n)
    start = rng.uniform(0, 2, n)
    o += np.array([100.0, 80.0, 0.0])
    for blocks in (None, (8, block_max(grid, 8)), [(4, block_max(grid, 4)), (16, block_max(grid, 16))]):
        got = march_heightfield(grid, 100.0, 200.0, 1.25, o, d, limit, t_start=start, blocks=blocks)
        want = _numpy_march(grid, 100.0, 200.0, 1.25, o, d, limit, t_start=start, blocks=blocks)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        assert 0.2 * n < np.isfinite(got[0]).sum() < 0.9 * n  # both outcomes, many times


def test_block_max_and_radial_samples() -> None:
    g = np.arange(30.0).reshape(5, 6)
    g[0, 0] = np.nan
    np.testing.assert_array_equal(block_max(g, 4), [[21, 23], [27, 29]])
    x, y, dist = radial_samples((10.0, 20.0), np.array([0.0, 90.0]), 3.0, 1.0)
    np.testing.assert_allclose(dist, [1, 2, 3])
    np.testing.assert_allclose(x, [[10, 10, 10], [11, 12, 13]], atol=1e-12)
    np.testing.assert_allclose(y, [[21, 22, 23], [20, 20, 20]], atol=1e-12)


def _brute_shadow(grid: np.ndarray, u: tuple[float, float], tan_alt: float, step: float = 0.05) -> np.ndarray:
    """S(p) by marching from every cell centre towards the sun (nearest cell, every ``step``)."""
    rows, cols = grid.shape
    r, c = np.mgrid[0:rows, 0:cols]
    x, y = c + 0.5, -(r + 0.5)
    ux, uy = np.array(u) / np.hypot(*u)
    out = np.full(grid.shape, -np.inf)
    for k in np.arange(1, int(np.hypot(rows, cols) / step)) * step:
        cc, rr = np.floor(x + k * ux).astype(int), np.floor(-(y + k * uy)).astype(int)
        ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols) & ((rr != r) | (cc != c))
        h = np.where(ok, grid[np.clip(rr, 0, rows - 1), np.clip(cc, 0, cols - 1)] - k * tan_alt, -np.inf)
        out = np.maximum(out, h)
    return out


@pytest.mark.parametrize("u", [(1.0, 0.0), (0.0, -1.0), (0.6, -0.8), (-0.9, 0.3)])
def test_shadow_heights_of_a_box(u: tuple[float, float]) -> None:
    grid = np.zeros((40, 40))
    grid[15:25, 15:25] = 10.0
    tan_alt = 0.5
    s = shadow_heights(grid, u, tan_alt)
    shadowed = grid < s - 1e-9
    ref = _brute_shadow(grid, u, tan_alt) > grid + 1e-9
    # the box's shadow: 10 / 0.5 = 20 m long away from the sun; the sweep agrees with brute
    # force except along the shadow's edges (interpolation)
    assert abs(int(shadowed.sum()) - int(ref.sum())) <= 0.1 * ref.sum()
    assert (shadowed == ref).mean() > 0.97
    # straight away from the sun, the shadow ends 20 m from the box
    if u == (1.0, 0.0):
        row = shadowed[20]
        assert row[:15].sum() == pytest.approx(15, abs=1) and not row[25:].any()
    if u == (0.0, -1.0):  # sun to the south: shadow to the north (smaller rows)
        col = shadowed[:, 20]
        assert col[:15].sum() == pytest.approx(15, abs=1) and not col[25:].any()
