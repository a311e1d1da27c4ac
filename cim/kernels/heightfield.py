"""Height-field kernels for terrain: sampling a raster on a lattice, filling no-data, surface normals."""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels.frames import WGS84_A, WGS84_E2


def _pool(a: np.ndarray) -> np.ndarray:
    """Sum 2 × 2 blocks (the last row/column alone when the size is odd)."""
    r, c = a.shape
    if r % 2:
        a = np.concatenate([a, np.zeros((1, c), a.dtype)], axis=0)
    if c % 2:
        a = np.concatenate([a, np.zeros((a.shape[0], 1), a.dtype)], axis=1)
    return a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]


def _expand(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Double a cell-centred grid by linear interpolation (weights 3/4, 1/4), cropped to ``shape``."""

    def axis0(x: np.ndarray) -> np.ndarray:
        prev = np.concatenate([x[:1], x[:-1]], axis=0)
        nxt = np.concatenate([x[1:], x[-1:]], axis=0)
        out = np.empty((2 * x.shape[0],) + x.shape[1:], x.dtype)
        out[0::2] = 0.75 * x + 0.25 * prev
        out[1::2] = 0.75 * x + 0.25 * nxt
        return out

    return axis0(axis0(a).T).T[: shape[0], : shape[1]]


def fill_nodata(grid: np.ndarray) -> np.ndarray:
    """Fill NaN samples of a height grid smoothly from the valid ones (pull-push).

    Pull: average the valid samples into ever coarser 2 × 2 levels until one cell remains. Push:
    from the coarsest level down, every cell without valid samples takes the value interpolated
    from the level above. Holes get a smooth surface that meets their rim, and samples beyond the
    data extrapolate its nearby heights; valid samples are returned unchanged.

    Parameters
    ----------
    grid : (rows, cols) float, NaN where there is no data; at least one valid sample

    Returns
    -------
    (rows, cols) float64 without NaN.
    """
    g = np.asarray(grid, dtype=np.float64)
    valid = np.isfinite(g)
    if valid.all():
        return g
    if not valid.any():
        raise ValueError("the grid has no valid sample to fill from")
    total = np.where(valid, g, 0.0)
    weight = valid.astype(np.float64)
    levels = []
    while True:
        levels.append((total, weight))
        if total.shape[0] == 1 and total.shape[1] == 1:
            break
        total, weight = _pool(total), _pool(weight)
    value = total / weight  # the coarsest cell holds every valid sample: weight > 0
    for total, weight in reversed(levels[:-1]):
        up = _expand(value, total.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(weight > 0, total / weight, up)
    return np.where(valid, g, value)


def lattice_normals(
    padded: np.ndarray, ix: np.ndarray, iy: np.ndarray, lon: np.ndarray, lat: np.ndarray, step_deg: float
) -> np.ndarray:
    """Unit surface normals in ECEF at lattice samples, by central differences of the heights.

    Parameters
    ----------
    padded : (rows + 2, cols + 2) float, a geographic lattice with one sample of margin all round,
        row index growing northwards
    ix, iy : (n,) int, sample indices in the unpadded lattice
    lon, lat : (n,) float degrees of those samples
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
    cx, cy = ix + 1, iy + 1
    gx = (padded[cy, cx + 1] - padded[cy, cx - 1]) / np.maximum(dx, 1e-9)
    gy = (padded[cy + 1, cx] - padded[cy - 1, cx]) / dy
    inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    e, n, u = -gx * inv, -gy * inv, inv  # east, north, up components
    out = np.empty((len(phi), 3))
    out[:, 0] = -sl * e - sp * cl * n + cp * cl * u
    out[:, 1] = cl * e - sp * sl * n + cp * sl * u
    out[:, 2] = cp * n + sp * u
    return out


@njit(nogil=True, cache=True)
def _lattice_bilinear(grid, ctl_col, ctl_row, step, nj, ni, out):  # pragma: no cover - compiled
    rows, cols = grid.shape
    cmax, rmax = max(cols - 2, 0), max(rows - 2, 0)
    cj, ci = ctl_col.shape
    for j in range(nj):
        kj = min(j // step, cj - 2)
        fj = (j - kj * step) / step
        for i in range(ni):
            ki = min(i // step, ci - 2)
            fi = (i - ki * step) / step
            w00, w01, w10, w11 = (1 - fj) * (1 - fi), (1 - fj) * fi, fj * (1 - fi), fj * fi
            c = (w00 * ctl_col[kj, ki] + w01 * ctl_col[kj, ki + 1] + w10 * ctl_col[kj + 1, ki] + w11 * ctl_col[kj + 1, ki + 1]) - 0.5
            r = (w00 * ctl_row[kj, ki] + w01 * ctl_row[kj, ki + 1] + w10 * ctl_row[kj + 1, ki] + w11 * ctl_row[kj + 1, ki + 1]) - 0.5
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
    by well under a millimetre), then the raster is sampled as :func:`cim.kernels.raster.
    bilinear_sample` does: NaN outside the raster's outer edges or where a contributing cell is NaN.
    Compiled with numba: the numpy version took 0.13 s per million samples, this one ~10 ms.

    Parameters
    ----------
    grid : (rows, cols) float32/64, NaN for no data
    ctl_col, ctl_row : (cj, ci) float, pixel coordinates (0 at the raster's outer edge, pixel
        centres at +0.5) of lattice samples ``(k·step, l·step)``; at least 2 × 2, covering the shape
    step : lattice samples between control points
    shape : ``(nj, ni)`` samples to produce

    Returns
    -------
    (nj, ni) float64.
    """
    out = np.empty(shape, dtype=np.float64)
    _lattice_bilinear(grid, np.ascontiguousarray(ctl_col, np.float64), np.ascontiguousarray(ctl_row, np.float64), int(step), shape[0], shape[1], out)
    return out
