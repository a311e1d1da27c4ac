"""Height-field kernels for terrain: sampling a raster on a lattice, filling no-data, surface normals.

The sampling and filling loops are compiled with numba (the numpy version of the sampling made
temporaries the size of the lattice; the fill's passes are sequential scans). Kernels that make a
block's worth of samples can write into a caller's buffer (``out``), so a block reuses memory
already touched rather than fresh pages the kernel must zero.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels import JitOptions
from cim.kernels.ellipsoid import WGS84_A, WGS84_E2

__all__ = [
    "raster_heights",
    "lattice_bilinear",
    "FILL_REACH",
    "FILL_SWEEPS",
    "fill_nodata",
    "lattice_coverage",
    "lattice_normals",
]

_JIT: JitOptions = {"nogil": True, "cache": True}


@njit(**_JIT)
def _lattice_bilinear(grid, ctl_col, ctl_row, step, out, oj, oi, nj, ni):  # pragma: no cover - compiled
    rows, cols = grid.shape
    cmax, rmax = max(cols - 2, 0), max(rows - 2, 0)
    inv = 1.0 / step
    for j in range(nj):
        kj = min(j // step, ctl_col.shape[0] - 2)
        fj = (j - kj * step) * inv
        for ki in range(ctl_col.shape[1] - 1):
            # the pixel position is linear in i between two control columns
            c_a = ctl_col[kj, ki] * (1 - fj) + ctl_col[kj + 1, ki] * fj
            c_b = ctl_col[kj, ki + 1] * (1 - fj) + ctl_col[kj + 1, ki + 1] * fj
            r_a = ctl_row[kj, ki] * (1 - fj) + ctl_row[kj + 1, ki] * fj
            r_b = ctl_row[kj, ki + 1] * (1 - fj) + ctl_row[kj + 1, ki + 1] * fj
            i0 = ki * step
            i_end = min(ni, (ki + 1) * step) if ki < ctl_col.shape[1] - 2 else ni
            # a segment well inside the raster (by half a pixel, more than any rounding) needs none
            # of the edge tests and clamps below, which then change nothing: the same arithmetic
            # without them runs about twice as fast
            f_end = (i_end - 1 - i0) * inv
            c_lo, c_hi = min(c_a, c_a + (c_b - c_a) * f_end) - 0.5, max(c_a, c_a + (c_b - c_a) * f_end) - 0.5
            r_lo, r_hi = min(r_a, r_a + (r_b - r_a) * f_end) - 0.5, max(r_a, r_a + (r_b - r_a) * f_end) - 0.5
            if c_lo >= 0.5 and c_hi <= cols - 2.5 and r_lo >= 0.5 and r_hi <= rows - 2.5:
                for i in range(i0, i_end):
                    f = (i - i0) * inv
                    c = c_a + (c_b - c_a) * f - 0.5
                    r = r_a + (r_b - r_a) * f - 0.5
                    c0 = int(c)
                    r0 = int(r)
                    fc, fr = c - c0, r - r0
                    top = grid[r0, c0] * (1 - fc) + grid[r0, c0 + 1] * fc
                    bottom = grid[r0 + 1, c0] * (1 - fc) + grid[r0 + 1, c0 + 1] * fc
                    out[oj + j, oi + i] = top * (1 - fr) + bottom * fr
                continue
            for i in range(i0, i_end):
                f = (i - i0) * inv
                c = c_a + (c_b - c_a) * f - 0.5
                r = r_a + (r_b - r_a) * f - 0.5
                if not (c > -0.5 and c < cols - 0.5 and r > -0.5 and r < rows - 0.5):
                    out[oj + j, oi + i] = np.nan
                    continue
                c = min(max(c, 0.0), cols - 1.0)
                r = min(max(r, 0.0), rows - 1.0)
                c0 = min(int(c), cmax)
                r0 = min(int(r), rmax)
                c1 = min(c0 + 1, cols - 1)
                r1 = min(r0 + 1, rows - 1)
                fc, fr = c - c0, r - r0
                top = grid[r0, c0] * (1 - fc) + grid[r0, c1] * fc
                bottom = grid[r1, c0] * (1 - fc) + grid[r1, c1] * fc
                out[oj + j, oi + i] = top * (1 - fr) + bottom * fr  # NaN when a contributing cell is no-data


@njit(**_JIT)
def _raster_heights(data, nodata, use_nodata, out):  # pragma: no cover - compiled
    rows, cols = data.shape
    for y in range(rows):
        for x in range(cols):
            v = data[y, x]
            h = np.float32(v)
            if (use_nodata and v == nodata) or not (abs(h) < np.inf):
                h = np.float32(np.nan)
            out[y, x] = h


def raster_heights(data: np.ndarray, nodata: float, use_nodata: bool, out: np.ndarray) -> np.ndarray:
    """Raster values as float32 heights, NaN where they equal ``nodata`` (when ``use_nodata``) or are
    not finite, in one pass (numpy's masks took four over the window).

    Parameters
    ----------
    data : (rows, cols) int or float
    out : (rows, cols) float32, may be ``data`` itself

    Returns
    -------
    ``out``.
    """
    _raster_heights(data, float(nodata), bool(use_nodata), out)
    return out


def lattice_bilinear(
    grid: np.ndarray,
    ctl_col: np.ndarray,
    ctl_row: np.ndarray,
    step: int,
    shape: tuple[int, int],
    out: np.ndarray | None = None,
    at: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Sample a raster bilinearly on a lattice whose pixel coordinates are known at control points.

    The lattice's pixel coordinates are interpolated bilinearly between control points every
    ``step`` samples (a map projection is smooth: over a few dozen metres the interpolation is off
    by well under a millimetre), then the raster is sampled as
    :func:`cim.kernels.raster.bilinear_sample` does: NaN outside the raster's outer edges or where
    a contributing cell is NaN.

    Parameters
    ----------
    grid : (rows, cols) float32/64, NaN for no data
    ctl_col, ctl_row : (cj, ci) float, pixel coordinates (0 at the raster's outer edge, pixel
        centres at +0.5) of lattice samples ``(k·step, l·step)``; at least 2 × 2, covering ``shape``
    step : lattice samples between control points
    shape : ``(nj, ni)`` samples to produce
    out, at : a C-contiguous float64 grid to write sample ``(j, i)`` to at ``out[at[0] + j, at[1] + i]``
        (a block's lattice, say); default a new ``shape`` array. (The whole grid and an offset,
        not a view: numba compiles once for C-contiguous arrays, and again for every other layout.)

    Returns
    -------
    (nj, ni) float64: the samples (a view of ``out`` when given).
    """
    nj, ni = shape
    oj, oi = (int(a) for a in at)
    if out is None:
        out, oj, oi = np.empty(shape, dtype=np.float64), 0, 0
    elif out.dtype != np.float64 or not out.flags.c_contiguous or oj < 0 or oi < 0 or oj + nj > out.shape[0] or oi + ni > out.shape[1]:
        raise ValueError(f"out must be C-contiguous float64 holding {tuple(shape)} samples at {at}, got {out.dtype} {out.shape}")
    col = np.ascontiguousarray(ctl_col, np.float64)
    row = np.ascontiguousarray(ctl_row, np.float64)
    if col.shape != row.shape or col.shape[0] < 2 or col.shape[1] < 2:
        raise ValueError("control grids must match and be at least 2 x 2")
    if (col.shape[0] - 1) * step < shape[0] - 1 or (col.shape[1] - 1) * step < shape[1] - 1:
        raise ValueError("control points do not cover the lattice")
    _lattice_bilinear(grid, col, row, int(step), out, oj, oi, int(nj), int(ni))
    return out[oj : oj + nj, oi : oi + ni]


@njit(**_JIT)
def _line_estimates(runs, lo, hi, n, est, dist, at):  # pragma: no cover - compiled
    """Each run's estimates along its line: linear between the valid samples just outside it (values
    ``lo``/``hi``, -1 or ``n`` when there is none), or the one there is; and the distance to the
    nearer, 0 when the whole line is empty (no estimate). Written to ``est[at[p]]`` for the run's
    ``p``-th sample in the line order of the runs."""
    for r in range(runs.shape[0]):
        first, last_empty, p = runs[r, 1], runs[r, 2], runs[r, 3]
        last, x = first - 1, last_empty + 1
        a, b = lo[r], hi[r]
        for k in range(first, last_empty + 1):
            i = at[p + k - first]
            if last >= 0 and x < n:
                est[i] = a + (b - a) * (k - last) / (x - last)
                dist[i] = min(k - last, x - k)
            elif last >= 0:
                est[i] = a
                dist[i] = k - last
            elif x < n:
                est[i] = b
                dist[i] = x - k
            else:
                dist[i] = 0.0


@njit(**_JIT)
def _split(runs, filled, at):  # pragma: no cover - compiled
    """The runs of still-empty samples inside ``runs`` (``filled`` by sample index, ``at`` as in
    :func:`_line_estimates`)."""
    out = np.empty((max(runs.shape[0] + int(filled.sum()), 1), 4), np.int64)
    m = 0
    for r in range(runs.shape[0]):
        line, first, end, p = runs[r, 0], runs[r, 1], runs[r, 2], runs[r, 3]
        k = first
        while k <= end:
            if not filled[at[p + k - first]]:
                start = k
                while k <= end and not filled[at[p + k - first]]:
                    k += 1
                out[m, 0], out[m, 1], out[m, 2], out[m, 3] = line, start, k - 1, p + start - first
                m += 1
            else:
                k += 1
    return out[:m]


@njit(**_JIT)
def _fill(g, reach, sweeps):  # pragma: no cover - compiled
    """Fill the NaN of ``g`` in place (the algorithm of :func:`fill_nodata`); False when there is no data.

    Works on the runs of empty samples along rows and along columns, with estimates kept in compact
    arrays indexed by the empty samples' row-major rank, so a pass costs in proportion to what is
    still empty, not to the grid (full-grid passes over transposed copies touched fresh pages and
    strode across rows). The arithmetic and its order are the full-grid version's: the result is the same.
    """
    rows, cols = g.shape
    n_empty = 0
    for y in range(rows):
        for x in range(cols):
            v = g[y, x]
            if not (abs(v) < np.inf):  # NaN or infinite
                g[y, x] = np.nan
                n_empty += 1
    if n_empty == 0:
        return True
    if n_empty == rows * cols:
        return False
    # runs along rows: (y, first x, last x, rank of the first sample); ranks are row-major
    row_runs = np.empty((n_empty, 4), np.int64)
    ey = np.empty(n_empty, np.int64)
    ex = np.empty(n_empty, np.int64)
    col_count = np.zeros(cols + 1, np.int64)
    n_rr = i = 0
    for y in range(rows):
        x = 0
        while x < cols:
            if g[y, x] != g[y, x]:
                row_runs[n_rr, 0], row_runs[n_rr, 1], row_runs[n_rr, 3] = y, x, i
                while x < cols and g[y, x] != g[y, x]:
                    ey[i], ex[i] = y, x
                    col_count[x + 1] += 1
                    i += 1
                    x += 1
                row_runs[n_rr, 2] = x - 1
                n_rr += 1
            else:
                x += 1
    row_runs = row_runs[:n_rr]
    first_runs = row_runs  # kept for the smoothing sweeps (the passes replace row_runs)
    # column-major order of the same samples (a counting sort: rows come in increasing y)
    for x in range(cols):
        col_count[x + 1] += col_count[x]
    c2r = np.empty(n_empty, np.int64)
    for i in range(n_empty):
        c2r[col_count[ex[i]]] = i
        col_count[ex[i]] += 1
    col_runs = np.empty((n_empty, 4), np.int64)
    n_cr = 0
    for j in range(n_empty):
        i = c2r[j]
        if j > 0 and ex[c2r[j - 1]] == ex[i] and ey[c2r[j - 1]] == ey[i] - 1:
            col_runs[n_cr - 1, 2] = ey[i]
        else:
            col_runs[n_cr, 0], col_runs[n_cr, 1], col_runs[n_cr, 2], col_runs[n_cr, 3] = ex[i], ey[i], ey[i], j
            n_cr += 1
    col_runs = col_runs[:n_cr]
    ident = np.arange(n_empty)
    er, dr = np.empty(n_empty), np.empty(n_empty)
    ec, dc = np.empty(n_empty), np.empty(n_empty)
    filled = np.zeros(n_empty, np.bool_)
    while True:
        # the valid samples just outside each run (the data, or what earlier passes filled)
        lo, hi = np.empty(row_runs.shape[0]), np.empty(row_runs.shape[0])
        for r in range(row_runs.shape[0]):
            y, a, b = row_runs[r, 0], row_runs[r, 1], row_runs[r, 2]
            lo[r] = g[y, a - 1] if a > 0 else 0.0
            hi[r] = g[y, b + 1] if b < cols - 1 else 0.0
        _line_estimates(row_runs, lo, hi, cols, er, dr, ident)
        lo, hi = np.empty(col_runs.shape[0]), np.empty(col_runs.shape[0])
        for r in range(col_runs.shape[0]):
            x, a, b = col_runs[r, 0], col_runs[r, 1], col_runs[r, 2]
            lo[r] = g[a - 1, x] if a > 0 else 0.0
            hi[r] = g[b + 1, x] if b < rows - 1 else 0.0
        _line_estimates(col_runs, lo, hi, rows, ec, dc, c2r)
        for r in range(row_runs.shape[0]):
            y, a, b, p = row_runs[r, 0], row_runs[r, 1], row_runs[r, 2], row_runs[r, 3]
            for x in range(a, b + 1):
                i = p + x - a
                w_r = 1.0 / dr[i] if 0 < dr[i] <= reach else 0.0
                w_c = 1.0 / dc[i] if 0 < dc[i] <= reach else 0.0
                if w_r + w_c > 0.0:
                    g[y, x] = (w_r * (er[i] if w_r > 0 else 0.0) + w_c * (ec[i] if w_c > 0 else 0.0)) / (w_r + w_c)
                    filled[i] = True
        row_runs = _split(row_runs, filled, ident)
        if row_runs.shape[0] == 0:
            break
        col_runs = _split(col_runs, filled, c2r)
        filled[:] = False  # _split only needs this pass's fills: earlier ones are outside the runs
        reach *= 2.0
    # Gauss-Seidel sweeps of the 4-neighbour mean over the filled samples, row-major (the data
    # stays), run by run along the rows as first found; inside the grid a sample has four
    # neighbours and the mean is a multiplication by 0.25, exactly the division by 4
    for _ in range(sweeps):
        for r in range(n_rr):
            y, a, b = first_runs[r, 0], first_runs[r, 1], first_runs[r, 2]
            if 0 < y < rows - 1:
                up, down = g[y - 1], g[y + 1]
                here = g[y]
                x = a
                if x == 0:
                    here[0] = (up[0] + down[0] + here[1]) / 3 if cols > 1 else (up[0] + down[0]) / 2
                    x = 1
                end = min(b, cols - 2)
                while x <= end:
                    here[x] = (((up[x] + down[x]) + here[x - 1]) + here[x + 1]) * 0.25
                    x += 1
                if b == cols - 1 and cols > 1:
                    here[b] = (up[b] + down[b] + here[b - 1]) / 3
                continue
            for x in range(a, b + 1):
                total, n = 0.0, 0
                if y > 0:
                    total += g[y - 1, x]
                    n += 1
                if y < rows - 1:
                    total += g[y + 1, x]
                    n += 1
                if x > 0:
                    total += g[y, x - 1]
                    n += 1
                if x < cols - 1:
                    total += g[y, x + 1]
                    n += 1
                g[y, x] = total / n
    return True


#: how far (samples) along a row or column the first fill pass reaches; each further pass doubles it
FILL_REACH = 16
#: smoothing sweeps over the filled samples, to round off the creases where passes meet
FILL_SWEEPS = 16


def fill_nodata(grid: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Fill NaN samples of a height grid from the nearest data along rows and columns, in widening bands.

    A pass fills the empty samples within ``reach`` samples of data along their row or column: each
    takes the row's estimate (linear between the nearest valid samples left and right, or the value
    of the one there is) and the column's, weighted by the inverse of their distances, so the
    nearest data dominates. The next pass treats what is filled as data and doubles the reach
    (16, 32, 64, … samples) until nothing is empty; sixteen sweeps of neighbour averaging over the
    filled samples then round off the creases where passes meet. The surface is continuous with the
    data at the rim of every hole and along the edge of the data, even a slanting one, beyond its
    corners too, and every filled value lies within the range of the data. (A pull-push fill was
    tried first: it made V-shaped folds along the edge of the data, slopes of 70° in the test hills.)

    Parameters
    ----------
    grid : (rows, cols) float, NaN (or ±inf) where there is no data; at least one valid sample
    out : (rows, cols) C-contiguous float64 to fill (a reused buffer); default a new array

    Returns
    -------
    (rows, cols) float64 without NaN: ``out``, or a new array.
    """
    grid = np.asarray(grid)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"need a non-empty 2-D grid, got shape {grid.shape}")
    if out is None:
        g = np.array(grid, dtype=np.float64)
    else:
        if out.shape != grid.shape or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous float64 of shape {grid.shape}")
        g = out
        np.copyto(g, grid)
    if not _fill(g, float(FILL_REACH), FILL_SWEEPS):
        raise ValueError("the grid has no valid sample to fill from")
    return g


@njit(**_JIT)
def _lattice_coverage(grid, margin, k, n, have):  # pragma: no cover - compiled
    rows, cols = grid.shape
    lo, hi = np.inf, -np.inf
    for y in range(rows):
        for x in range(cols):
            h = grid[y, x]
            if abs(h) < np.inf:
                lo, hi = min(lo, h), max(hi, h)
    if not (lo <= hi):
        return lo, hi
    for ty in range(k):
        for tx in range(k):
            found = False
            for y in range(margin + ty * n, margin + (ty + 1) * n + 1):
                for x in range(margin + tx * n, margin + (tx + 1) * n + 1):
                    if abs(grid[y, x]) < np.inf:
                        found = True
                        break
                if found:
                    break
            have[ty, tx] = found
    return lo, hi


def lattice_coverage(grid: np.ndarray, margin: int, k: int, n: int) -> tuple[np.ndarray, float, float]:
    """Which tiles of a lattice block hold a finite sample, and the finite samples' range.

    Parameters
    ----------
    grid : (rows, cols) float, NaN for no data: ``k × k`` tiles of ``n`` intervals (``k·n + 1``
        samples a side) starting at ``grid[margin, margin]``, and a margin around them
    margin, k, n : as above

    Returns
    -------
    have : (k, k) bool ``[ty, tx]``, a tile has a finite sample on or inside its outline (the
        edges it shares count for both tiles)
    lo, hi : the smallest and largest finite sample of the whole grid, margin included (inf, -inf
        when there is none)

    One pass, where numpy's masks, reshapes and boolean gather made several, with temporaries.
    """
    have = np.zeros((k, k), dtype=np.bool_)
    lo, hi = _lattice_coverage(grid, int(margin), int(k), int(n), have)
    return have, float(lo), float(hi)


def lattice_normals(grid: np.ndarray, col: np.ndarray, row: np.ndarray, lat: np.ndarray, lon: np.ndarray, step_deg: float) -> np.ndarray:
    """Unit surface normals in ECEF at lattice samples, by central differences of the heights.

    Parameters
    ----------
    grid : (rows, cols) float, a geographic lattice, row index growing northwards
    col, row : (n,) int, samples with a neighbour on every side in ``grid``
    lat, lon : (n,) float degrees of those samples
    step_deg : the lattice spacing in degrees (both axes)

    Returns
    -------
    (n, 3) float64 unit vectors.
    """
    phi = np.radians(lat)
    lam = np.radians(lon)
    sp, cp = np.sin(phi), np.cos(phi)
    sl, cl = np.sin(lam), np.cos(lam)
    w = np.sqrt(1.0 - WGS84_E2 * sp * sp)
    step = np.radians(step_deg)
    dx = 2.0 * step * (WGS84_A / w) * cp  # metres between the two east-west neighbours
    dy = 2.0 * step * WGS84_A * (1.0 - WGS84_E2) / w**3
    # at a pole the east-west neighbours coincide: no east-west slope there
    gx = np.where(dx > 1e-6 * dy, (grid[row, col + 1] - grid[row, col - 1]) / np.maximum(dx, 1e-6 * dy), 0.0)
    gy = (grid[row + 1, col] - grid[row - 1, col]) / dy
    inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    e, n, u = -gx * inv, -gy * inv, inv  # east, north, up components
    out = np.empty((len(phi), 3))
    out[:, 0] = -sl * e - sp * cl * n + cp * cl * u
    out[:, 1] = cl * e - sp * sl * n + cp * sl * u
    out[:, 2] = cp * n + sp * u
    return out
