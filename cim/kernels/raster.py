"""Raster kernels: sampling a grid at points."""

from __future__ import annotations

import numpy as np


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
    """
    col = (np.asarray(x, dtype=np.float64) - x0) / dx - 0.5
    row = (y0 - np.asarray(y, dtype=np.float64)) / dy - 0.5
    rows, cols = grid.shape
    inside = (col > -0.5) & (col < cols - 0.5) & (row > -0.5) & (row < rows - 0.5)
    col = np.clip(col, 0.0, cols - 1.0)
    row = np.clip(row, 0.0, rows - 1.0)
    c0 = np.minimum(np.floor(col).astype(np.int64), max(cols - 2, 0))
    r0 = np.minimum(np.floor(row).astype(np.int64), max(rows - 2, 0))
    c1 = np.minimum(c0 + 1, cols - 1)
    r1 = np.minimum(r0 + 1, rows - 1)
    fc = col - c0
    fr = row - r0
    g = grid  # gather in the grid's dtype, compute in float64
    top = g[r0, c0] * (1 - fc) + g[r0, c1] * fc
    bottom = g[r1, c0] * (1 - fc) + g[r1, c1] * fc
    out = top * (1 - fr) + bottom * fr
    out[~inside] = np.nan
    return out
