"""Raster kernels: sampling a grid at points."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["bilinear_sample"]


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
