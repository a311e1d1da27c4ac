"""Raster kernels: sampling a grid at points, the median of a large grid."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numba import njit

__all__ = ["bilinear_sample", "nan_median"]


def bilinear_sample(grid: np.ndarray, x0: float, y0: float, dx: float, dy: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample a north-up grid bilinearly at points; NaN where the grid has no data.

    Parameters
    ----------
    grid : (rows, cols) float, NaN for no data
    x0, y0 : the outer corner of cell (0, 0) (west and north edges)
    dx, dy : cell size, both positive (rows go south)
    x, y : (n,) float, point coordinates in the grid's CRS

    Returns
    -------
    (n,) float64; NaN outside the grid or where a contributing cell is NaN.

    Notes
    -----
    Cell centres lie at ``x0 + (c + 0.5) dx``; a point between the outermost centres and the
    grid's edge takes the edge cells' values (clamped weights). A compiled loop (numba, without
    the GIL), where the numpy formulation made a dozen temporaries the size of the point count.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    out = np.empty(len(x), dtype=np.float64)
    if grid.ndim != 2 or grid.shape[0] == 0 or grid.shape[1] == 0:
        out[:] = np.nan
        return out
    _bilinear(np.ascontiguousarray(grid), float(x0), float(y0), float(dx), float(dy), x, y, out)
    return out


@njit(cache=True, nogil=True)
def _bilinear(grid, x0, y0, dx, dy, x, y, out):
    rows, cols = grid.shape
    cmax, rmax = max(cols - 2, 0), max(rows - 2, 0)
    for i in range(len(x)):
        col = (x[i] - x0) / dx - 0.5
        row = (y0 - y[i]) / dy - 0.5
        if not (col > -0.5 and col < cols - 0.5 and row > -0.5 and row < rows - 0.5):
            out[i] = np.nan
            continue
        col = min(max(col, 0.0), cols - 1.0)
        row = min(max(row, 0.0), rows - 1.0)
        c0 = min(int(np.floor(col)), cmax)
        r0 = min(int(np.floor(row)), rmax)
        c1 = min(c0 + 1, cols - 1)
        r1 = min(r0 + 1, rows - 1)
        fc = col - c0
        fr = row - r0
        top = np.float64(grid[r0, c0]) * (1 - fc) + np.float64(grid[r0, c1]) * fc
        bottom = np.float64(grid[r1, c0]) * (1 - fc) + np.float64(grid[r1, c1]) * fc
        out[i] = top * (1 - fr) + bottom * fr


def nan_median(grid: np.ndarray, block_cells: int = 1 << 22) -> float:
    """The median of a grid's values, NaN left out: ``float(np.nanmedian(grid))`` without its
    full-size copies.

    Parameters
    ----------
    grid : (rows, cols) float (a memory map will do)
    block_cells : cells looked at a time (a strip of rows): the working set

    Returns
    -------
    the median (of float32 grids, exactly numpy's; the mean of the two middle values when
    their count is even); NaN when every value is NaN

    Notes
    -----
    A float32 grid is never copied whole: its values are mapped to unsigned integer keys that
    sort as the floats do, and the middle ranks are found by two counting passes over the
    strips, one on the keys' high 16 bits and one on the low 16 bits of the bins that hold
    them (a radix selection). Other grids go to ``np.nanmedian``. -0.0 sorts before 0.0 here,
    where numpy takes them as equal.
    """
    g = np.asarray(grid)
    if g.dtype != np.float32 or g.ndim != 2:
        values = g[~np.isnan(g)]
        return float(np.median(values, overwrite_input=True)) if values.size else float("nan")
    step = max(1, int(block_cells) // max(g.shape[1], 1))

    def keys() -> Iterator[np.ndarray]:
        for r0 in range(0, g.shape[0], step):
            strip = g[r0 : r0 + step]
            bits = np.ascontiguousarray(strip[~np.isnan(strip)]).view(np.uint32)
            yield np.where(bits >= 0x80000000, ~bits, bits | np.uint32(0x80000000))

    high = np.zeros(1 << 16, dtype=np.int64)
    for k in keys():
        high += np.bincount(k >> 16, minlength=1 << 16)
    n = int(high.sum())
    if n == 0:
        return float("nan")
    ranks = (n // 2,) if n % 2 else (n // 2 - 1, n // 2)
    above = np.cumsum(high)
    wanted = [(int(np.searchsorted(above, r, side="right")), r) for r in ranks]
    wanted = [(b, r - int(above[b] - high[b])) for b, r in wanted]  # rank within the bin
    low = {b: np.zeros(1 << 16, dtype=np.int64) for b, _ in wanted}
    for k in keys():
        top = k >> 16
        for b, counts in low.items():
            counts += np.bincount(k[top == b] & 0xFFFF, minlength=1 << 16)
    found = []
    for b, r in wanted:
        key = (b << 16) | int(np.searchsorted(np.cumsum(low[b]), r, side="right"))
        bits = key ^ 0x80000000 if key >= 0x80000000 else ~key & 0xFFFFFFFF
        found.append(np.array([bits], dtype=np.uint32).view(np.float32)[0])
    return float(np.mean(np.array(found, dtype=np.float32)))
