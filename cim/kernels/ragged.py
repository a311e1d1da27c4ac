"""Ragged arrays (values + offsets, as Arrow and glTF string columns store them): compiled gathers."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["take_ragged"]


def take_ragged(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The items ``rows`` of a ragged array, in that order: (values, offsets (len(rows) + 1,) int64).

    The same result as the numpy gather (``np.repeat`` of item starts plus an ``arange``), in
    one compiled pass without the GIL and without index arrays the size of the output: the
    buildings layer cuts its string columns for every tile, and numpy's gather holds the GIL
    that the other tile threads want.
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    out_offsets = np.empty(len(rows) + 1, dtype=np.int64)
    total = _ragged_offsets(offsets, rows, out_offsets)
    out = np.empty(total, dtype=values.dtype)
    _ragged_copy(values, offsets, rows, out_offsets, out)
    return out, out_offsets


@njit(cache=True, nogil=True)
def _ragged_offsets(offsets, rows, out_offsets):
    out_offsets[0] = 0
    for i in range(len(rows)):
        r = rows[i]
        out_offsets[i + 1] = out_offsets[i] + offsets[r + 1] - offsets[r]
    return out_offsets[len(rows)]


@njit(cache=True, nogil=True)
def _ragged_copy(values, offsets, rows, out_offsets, out):
    for i in range(len(rows)):
        a = offsets[rows[i]]
        o = out_offsets[i]
        for k in range(out_offsets[i + 1] - o):
            out[o + k] = values[a + k]
