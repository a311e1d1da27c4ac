"""Content digests of many small items at once (ragged arrays), for per-tile input hashes.

A layer whose tiles are made from thousands of features wants one digest a feature (its
geometry and attributes), computed in a few numpy passes rather than one ``hashlib`` call a
feature; a tile's input hash is then a cryptographic hash of its features' digests (see
:mod:`cim.tiling.feature_tiles`).

Each item is a run of 64-bit words (every element of the input widened to a word: its bit
pattern, so ``-0.0`` and ``0.0`` differ, and NaNs keep their payload). An item's digest is two
independent 64-bit lanes; each lane sums, modulo 2**64, a strong mix (the SplitMix64
finaliser) of every word combined with a mix of its position in the item, then mixes the sum
with the item's length. A change to any word, its position or the item's length changes a
lane except with a chance of about 2**-64, independently in the two lanes. Not a defence
against someone crafting collisions: a city folder's inputs are its owner's own files.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_words", "ragged_digests", "row_digests"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SEEDS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03))
_LENGTH_SEEDS = (np.uint64(0x8CB92BA72F3D8DD7), np.uint64(0xABC98388FB8FAC03))


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, element-wise on uint64 (a bijection that spreads every bit)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


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
    words = np.asarray(words, dtype=np.uint64)
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    position = (np.arange(offsets[-1] - offsets[0], dtype=np.int64) - np.repeat(offsets[:-1] - offsets[0], lengths)).astype(np.uint64)
    body = words[offsets[0] : offsets[-1]]
    out = np.empty((len(lengths), 2), dtype=np.uint64)
    for lane, (seed, length_seed) in enumerate(zip(_SEEDS, _LENGTH_SEEDS)):
        term = _mix(body ^ _mix(position ^ seed))
        sums = np.zeros(len(term) + 1, dtype=np.uint64)
        np.cumsum(term, out=sums[1:])  # wraps modulo 2**64, as the sum is meant to
        start = offsets[:-1] - offsets[0]
        total = sums[start + lengths] - sums[start]
        out[:, lane] = _mix(total ^ _mix(lengths.astype(np.uint64) ^ length_seed))
    return out


def row_digests(*columns: np.ndarray) -> np.ndarray:
    """One digest a row from several per-row digests or words: ``columns`` are ``(n, k_j)`` or
    ``(n,)`` uint64 arrays of one length; returns ``(n, 2) uint64``."""
    n = len(columns[0])
    table = np.column_stack([np.asarray(c, dtype=np.uint64).reshape(n, -1) for c in columns])
    width = table.shape[1]
    return ragged_digests(table.reshape(-1), np.arange(n + 1, dtype=np.int64) * width)
