"""Content digests of many small items at once (ragged arrays), for per-tile input hashes.

A layer whose tiles are made from thousands of features wants one digest a feature (its
geometry and attributes), computed in a few numpy passes rather than one ``hashlib`` call a
feature; a tile's input hash is then a cryptographic hash of its features' digests (see
:mod:`cim.tiling.feature_tiles`).

Each item is a run of 64-bit words (every element of the input widened to a word: its bit
pattern, so ``-0.0`` and ``0.0`` differ, and NaNs keep their payload). An item's digest is two
independent 64-bit lanes, each a chain over the item's words started from the item's length:
``a = mix(a ^ w)`` and ``b = mix(b + w * K)`` with the SplitMix64 finaliser as ``mix`` (a
bijection that spreads every bit), finished by one more mix. A change to one word always
changes both lanes; any other change to the words or the length, except with a chance of about
2**-64 a lane. Not a defence against someone crafting collisions: a city folder's inputs are its
owner's own files. A compiled loop (numba): a numpy formulation needs a dozen passes over the
words per lane and cost more than the tiles it saved encoding.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["as_words", "ragged_digests", "row_digests"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K = np.uint64(0x9E3779B97F4A7C15)
_SEED_A = np.uint64(0xD1B54A32D192ED03)
_SEED_B = np.uint64(0x8CB92BA72F3D8DD7)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


@njit(cache=True, nogil=True, inline="always")
def _mix(x):  # pragma: no cover - compiled
    """SplitMix64's finaliser on one uint64."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@njit(cache=True, nogil=True)
def _digests(words, offsets, out):  # pragma: no cover - compiled
    for i in range(len(offsets) - 1):
        n = np.uint64(offsets[i + 1] - offsets[i])
        a = _mix(_SEED_A ^ n)
        b = _mix(_SEED_B + n)
        for j in range(offsets[i], offsets[i + 1]):
            w = words[j]
            a = _mix(a ^ w)
            b = _mix(b + w * _K)
        out[i, 0] = _mix(a ^ _SEED_B)
        out[i, 1] = _mix(b ^ _SEED_A)


def as_words(values: np.ndarray) -> np.ndarray:
    """Every element of ``values`` (any shape, numeric or boolean) as one uint64 word, its bit
    pattern widened: ``(values.size,) uint64`` in C order."""
    flat = np.ascontiguousarray(values).reshape(-1)
    if flat.dtype == np.bool_:
        flat = flat.view(np.uint8)
    if flat.dtype.kind not in "biuf":
        raise TypeError(f"as_words: numeric values expected, got {flat.dtype}")
    return flat.view(f"u{flat.dtype.itemsize}").astype(np.uint64)


def ragged_digests(words: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Digest of each item of a ragged array of words.

    Parameters
    ----------
    words : (w,) uint64, the items' words one after another (see :func:`as_words`)
    offsets : (n + 1,) int, item ``i`` is ``words[offsets[i]:offsets[i + 1]]`` (empty items allowed)

    Returns
    -------
    (n, 2) uint64, two independent 64-bit lanes per item.
    """
    words = np.ascontiguousarray(words, dtype=np.uint64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    out = np.empty((len(offsets) - 1, 2), dtype=np.uint64)
    _digests(words, offsets, out)
    return out


def row_digests(*columns: np.ndarray) -> np.ndarray:
    """One digest a row from several per-row digests or words: ``columns`` are ``(n, k_j)`` or
    ``(n,)`` uint64 arrays of one length; returns ``(n, 2) uint64``."""
    n = len(columns[0])
    table = np.column_stack([np.asarray(c, dtype=np.uint64).reshape(n, -1) for c in columns])
    width = table.shape[1]
    return ragged_digests(table.reshape(-1), np.arange(n + 1, dtype=np.int64) * width)
