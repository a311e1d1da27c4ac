"""Height-field kernels for terrain: sampling a raster on a lattice, filling no-data, surface normals.

The sampling and filling loops are compiled with numba (per million samples the numpy version of
the sampling took 0.13 s, the compiled one about 10 ms; the fill's passes are sequential scans).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels.frames import WGS84_A, WGS84_E2

_JIT = {"nogil": True, "cache": True}


@njit(**_JIT)
def _lattice_bilinear(grid, ctl_col, ctl_row, step, out):  # pragma: no cover - compiled
    rows, cols = grid.shape
    nj, ni = out.shape
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
            i_end = min(ni, (ki + 1) * step) if ki < ctl_col.shape[1] - 2 else ni
            for i in range(ki * step, i_end):
                f = (i - ki * step) * inv
                c = c_a + (c_b - c_a) * f - 0.5
                r = r_a + (r_b - r_a) * f - 0.5
                if not (c > -0.5 and c < cols - 0.5 and r > -0.5 and r < rows - 0.5):
                    out[j, i] = np.nan
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
                out[j, i] = top * (1 - fr) + bottom * fr  # NaN when a contributing cell is no-data


def lattice_bilinear(grid: np.ndarray, ctl_col: np.ndarray, ctl_row: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
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

    Returns
    -------
    (nj, ni) float64.
    """
    out = np.empty(shape, dtype=np.float64)
    col = np.ascontiguousarray(ctl_col, np.float64)
    row = np.ascontiguousarray(ctl_row, np.float64)
    if col.shape != row.shape or col.shape[0] < 2 or col.shape[1] < 2:
        raise ValueError("control grids must match and be at least 2 x 2")
    if (col.shape[0] - 1) * step < shape[0] - 1 or (col.shape[1] - 1) * step < shape[1] - 1:
        raise ValueError("control points do not cover the lattice")
    _lattice_bilinear(grid, col, row, int(step), out)
    return out


@njit(**_JIT)
def _line_estimates(grid, est, dist):  # pragma: no cover - compiled
    """For every empty sample, the estimate from its row: linear between the nearest valid samples
    left and right, or the one there is; and its distance to the nearer."""
    rows, cols = grid.shape
    for y in range(rows):
        last = -1
        for x in range(cols + 1):
            if x < cols and grid[y, x] != grid[y, x]:
                continue
            for k in range(last + 1, x):
                if last >= 0 and x < cols:
                    a, b = grid[y, last], grid[y, x]
                    est[y, k] = a + (b - a) * (k - last) / (x - last)
                    dist[y, k] = min(k - last, x - k)
                elif last >= 0:
                    est[y, k] = grid[y, last]
                    dist[y, k] = k - last
                elif x < cols:
                    est[y, k] = grid[y, x]
                    dist[y, k] = x - k
                else:
                    dist[y, k] = 0.0  # an empty row: no estimate
            last = x


@njit(**_JIT)
def _fill_near(grid, er, dr, ec, dc, reach):  # pragma: no cover - compiled
    """Fill the empty samples within ``reach`` of a valid one along their row or column: the row's
    and the column's estimates weighted by the inverse of their distances."""
    rows, cols = grid.shape
    for y in range(rows):
        for x in range(cols):
            if grid[y, x] == grid[y, x]:
                continue
            w_r = 1.0 / dr[y, x] if 0 < dr[y, x] <= reach else 0.0
            w_c = 1.0 / dc[x, y] if 0 < dc[x, y] <= reach else 0.0
            if w_r + w_c > 0.0:
                grid[y, x] = (w_r * (er[y, x] if w_r > 0 else 0.0) + w_c * (ec[x, y] if w_c > 0 else 0.0)) / (w_r + w_c)


@njit(**_JIT)
def _relax(grid, empty, sweeps):  # pragma: no cover - compiled
    """Gauss-Seidel sweeps of the 4-neighbour mean over the filled samples (the data stays)."""
    rows, cols = grid.shape
    for _ in range(sweeps):
        for y in range(rows):
            for x in range(cols):
                if not empty[y, x]:
                    continue
                total, n = 0.0, 0
                if y > 0:
                    total += grid[y - 1, x]
                    n += 1
                if y < rows - 1:
                    total += grid[y + 1, x]
                    n += 1
                if x > 0:
                    total += grid[y, x - 1]
                    n += 1
                if x < cols - 1:
                    total += grid[y, x + 1]
                    n += 1
                grid[y, x] = total / n


#: how far (samples) along a row or column the first fill pass reaches; each further pass doubles it
FILL_REACH = 16
#: smoothing sweeps over the filled samples, to round off the creases where passes meet
FILL_SWEEPS = 16


def fill_nodata(grid: np.ndarray) -> np.ndarray:
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

    Returns
    -------
    (rows, cols) float64 without NaN (a new array).
    """
    g = np.array(grid, dtype=np.float64)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"need a non-empty 2-D grid, got shape {g.shape}")
    finite = np.isfinite(g)
    if finite.all():
        return g
    if not finite.any():
        raise ValueError("the grid has no valid sample to fill from")
    g[~finite] = np.nan
    er, dr = np.empty_like(g), np.empty_like(g)
    ec, dc = np.empty((g.shape[1], g.shape[0])), np.empty((g.shape[1], g.shape[0]))
    reach = float(FILL_REACH)
    while True:
        t = np.ascontiguousarray(g.T)  # the columns as rows: a copy reads faster than a strided view
        _line_estimates(g, er, dr)
        _line_estimates(t, ec, dc)
        _fill_near(g, er, dr, ec, dc, reach)
        if not np.isnan(g).any():
            break
        reach *= 2.0
    _relax(g, ~finite, FILL_SWEEPS)
    return g


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
