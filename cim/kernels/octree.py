"""Octree kernels: Morton codes on integer grids, packed-key sorting, grid subsampling levels.

Pure numpy, no I/O. Points live on an integer grid (``(n, 3)`` offsets from the cube's corner);
a Morton code interleaves one bit of x, y and z per level, most significant level first, as a
3-bit digit ``x << 2 | y << 1 | z'``. ``z'`` is z flipped (``top - z``): inside every cell the
highest points come first, so the coarse levels of detail, which keep the first point of each
cell, show roofs and canopy (what is seen from above) rather than the ground under them.

Grid subsampling without a per-level pass: sort the points by code; the first point of a cell of
depth ``D`` is the point whose code first differs from its predecessor's at a depth ``<= D``.
A node of depth ``d`` samples its cube on a ``2**k`` grid (cells of depth ``d + k``), so point
``i`` belongs to level ``max(0, D_i - k)`` where ``D_i`` is the depth of the first digit in
which it differs from its predecessor. Levels nest: all points of levels ``<= d`` hold exactly
one point per occupied cell of depth ``d + k``, a spatially even subsample whose spacing halves
at each level (Potree's "spacing" without its Poisson test). One XOR and a bit scan per point.
"""

from __future__ import annotations

import numpy as np

#: bits of an interleave table: grid coordinates up to 2**TABLE_BITS - 1 spread in one lookup
TABLE_BITS = 14


def _spread_table(bits: int) -> np.ndarray:
    """``(2**bits,) uint64``: value ``v`` with bit ``i`` moved to bit ``3 * i``."""
    v = np.arange(1 << bits, dtype=np.uint64)
    out = np.zeros(1 << bits, dtype=np.uint64)
    for i in range(bits):
        out |= ((v >> np.uint64(i)) & np.uint64(1)) << np.uint64(3 * i)
    return out


_SPREAD = _spread_table(TABLE_BITS)
#: one table per axis, pre-shifted to its place in the digit (x high, z' low)
_SPREAD_X = _SPREAD << np.uint64(2)
_SPREAD_Y = _SPREAD << np.uint64(1)
_SPREAD_Z = _SPREAD


def morton_codes(offsets: np.ndarray, shift: int, levels: int) -> np.ndarray:
    """Morton codes of grid points (see :func:`cell_codes`).

    Parameters
    ----------
    offsets : (n, 3) int, non-negative grid offsets from the cube's corner in the finest units
    shift : right shift taking finest units to cells of the wanted depth
    levels : digits per code, at most ``TABLE_BITS`` (14)

    Returns
    -------
    (n,) uint64 codes of ``3 * levels`` bits.
    """
    off = np.asarray(offsets)
    return cell_codes((off[:, 0], off[:, 1], off[:, 2]), shift, levels)


def cell_codes(offsets_cols: tuple[np.ndarray, np.ndarray, np.ndarray], shift: int, levels: int) -> np.ndarray:
    """Morton codes from three (n,) columns of non-negative grid offsets.

    ``offsets >> shift`` is the cell at the wanted depth, clipped to ``2**levels - 1`` (points a
    rounding outside the cube fall in its border cells). Digit: ``x << 2 | y << 1 | (top - z)``.

    Returns
    -------
    (n,) uint64 codes of ``3 * levels`` bits.
    """
    if not 0 < levels <= TABLE_BITS:
        raise ValueError(f"levels must be in 1..{TABLE_BITS}, got {levels}")
    top = (1 << levels) - 1
    gx, gy, gz = (np.minimum(np.asarray(c, dtype=np.int64) >> shift, top) for c in offsets_cols)
    code = _SPREAD_X[gx]
    code |= _SPREAD_Y[gy]
    code |= _SPREAD_Z[top - gz]
    return code


def cell_corner(code: int, depth: int) -> tuple[int, int, int]:
    """Grid cell ``(ix, iy, iz)`` (z not flipped) of a Morton prefix at ``depth``."""
    ix = iy = iz = 0
    for i in range(depth):
        digit = (code >> (3 * (depth - 1 - i))) & 7
        ix = ix << 1 | (digit >> 2) & 1
        iy = iy << 1 | (digit >> 1) & 1
        iz = iz << 1 | digit & 1
    return ix, iy, ((1 << depth) - 1) - iz


def sort_by_code(codes: np.ndarray, code_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort ``codes`` and return ``(sorted codes, order)``.

    numpy's ``argsort`` of 64-bit keys runs at a tenth of the speed of its SIMD ``sort``; when the
    code and the point index fit in one uint64, the index rides in the low bits of a packed key
    and a plain ``np.sort`` gives both. Equal codes keep their input order (stable).

    Parameters
    ----------
    codes : (n,) uint64 with at most ``code_bits`` significant bits
    code_bits : bits of the codes

    Returns
    -------
    sorted codes (n,) uint64, order (n,) int64 with ``codes[order] == sorted codes``
    """
    n = len(codes)
    idx_bits = max(1, int(n - 1).bit_length())
    if code_bits + idx_bits <= 64:
        key = codes << np.uint64(idx_bits)
        key |= np.arange(n, dtype=np.uint64)
        key.sort()
        order = (key & np.uint64((1 << idx_bits) - 1)).astype(np.int64)
        key >>= np.uint64(idx_bits)
        return key, order
    order = np.argsort(codes, kind="stable")
    return codes[order], order


def code_levels(n: int, max_levels: int = TABLE_BITS) -> int:
    """Digits a chunk of ``n`` points can sort by with the packed key of :func:`sort_by_code`."""
    idx_bits = max(1, int(n - 1).bit_length())
    return max(1, min(max_levels, (64 - idx_bits) // 3))


def _digit_mask(levels: int) -> np.uint64:
    m = 0
    for j in range(levels):
        m |= 1 << (3 * j + 2)
    return np.uint64(m)


def first_difference(codes_sorted: np.ndarray, levels: int) -> np.ndarray:
    """Depth of the first digit in which each code differs from its predecessor.

    Parameters
    ----------
    codes_sorted : (n,) uint64, ascending, ``levels`` digits
    levels : digits per code

    Returns
    -------
    (n,) int16: ``1..levels`` (1 = the top digit differs), ``levels + 1`` for a duplicate of
    its predecessor; element 0 (no predecessor) is 0.
    """
    n = len(codes_sorted)
    out = np.zeros(n, dtype=np.int16)
    if n < 2:
        return out
    x = codes_sorted[1:] ^ codes_sorted[:-1]
    # fold each digit's three bits onto its top bit, then read the top set bit from the float
    # exponent: the folded value has isolated bits, so its float rounding never crosses a power
    # of two and the exponent is exact
    f = x | (x << np.uint64(1))
    f |= x << np.uint64(2)
    f &= _digit_mask(levels)
    exp = (f.astype(np.float64).view(np.uint64) >> np.uint64(52)).astype(np.int16)
    exp -= 1025  # top bit position minus 2 (0 for digit 0); zero gives a large negative
    digit = exp // 3
    r = levels - digit
    np.minimum(r, levels + 1, out=r)
    out[1:] = r
    return out


def leaf_ranges(
    codes_sorted: np.ndarray, levels: int, leaf_max: int, max_depth: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The octree of a sorted chunk down to its leaves, by binary search on the codes.

    A node whose range holds more than ``leaf_max`` points and is shallower than ``max_depth``
    is split into its occupied children; the rest are leaves. Cost: one ``searchsorted`` of
    nine bounds per internal node, nothing per point.

    Parameters
    ----------
    codes_sorted : (n,) uint64 ascending codes of ``levels`` digits
    levels : digits per code
    leaf_max : most points of a leaf (unless at ``max_depth``)
    max_depth : deepest node depth (relative to the chunk's root), ``<= levels``

    Returns
    -------
    depth (m,) int16, prefix (m,) int64 (the node's code prefix at its depth), start (m,) int64,
    stop (m,) int64 (its range in ``codes_sorted``), for every node (internal nodes included),
    ordered by depth then code; ``leaf`` is implied by the absence of children (see
    :func:`node_is_leaf`).
    """
    n = len(codes_sorted)
    depth = [np.zeros(1, np.int16)]
    prefix = [np.zeros(1, np.int64)]
    start = [np.zeros(1, np.int64)]
    stop = [np.full(1, n, np.int64)]
    cur_p, cur_a, cur_b = prefix[0], start[0], stop[0]
    r = 0
    while r < max_depth:
        split = (cur_b - cur_a) > leaf_max
        if not split.any():
            break
        p = cur_p[split]
        a = cur_a[split]
        b = cur_b[split]
        sh = np.uint64(3 * (levels - r - 1))
        bounds = ((p[:, None].astype(np.uint64) << np.uint64(3)) + np.arange(9, dtype=np.uint64)) << sh
        pos = np.searchsorted(codes_sorted, bounds.ravel()).reshape(-1, 9)
        pos[:, 0] = a
        pos[:, 8] = b
        ca, cb = pos[:, :8].ravel(), pos[:, 1:].ravel()
        cp = ((p[:, None] << 3) + np.arange(8)).ravel()
        keep = cb > ca
        cur_p, cur_a, cur_b = cp[keep], ca[keep].astype(np.int64), cb[keep].astype(np.int64)
        r += 1
        depth.append(np.full(len(cur_p), r, np.int16))
        prefix.append(cur_p)
        start.append(cur_a)
        stop.append(cur_b)
    return np.concatenate(depth), np.concatenate(prefix), np.concatenate(start), np.concatenate(stop)


def node_is_leaf(depth: np.ndarray, prefix: np.ndarray) -> np.ndarray:
    """(m,) bool: nodes of :func:`leaf_ranges` that have no child."""
    parent_keys = set(zip((depth[depth > 0] - 1).tolist(), (prefix[depth > 0] >> 3).tolist()))
    return np.array([(int(d), int(p)) not in parent_keys for d, p in zip(depth, prefix)], dtype=bool)


def node_depths(
    first_diff: np.ndarray,
    leaf_depth: np.ndarray,
    k: int,
    root_depth: int,
) -> np.ndarray:
    """Depth (global) of the node that stores each point.

    Parameters
    ----------
    first_diff : (n,) int, relative depth of each point's first differing digit
        (:func:`first_difference`; element 0 already replaced by the chunk's own value, which
        may be ``<= 0``)
    leaf_depth : (n,) int, relative depth of the leaf holding each point
    k : the sampling grid of a node has ``2**k`` cells a side
    root_depth : the chunk's depth in the whole tree

    Returns
    -------
    (n,) uint8 global depth: ``min(level, leaf)`` where ``level = max(0, D - k)``; values below
    ``root_depth`` name the chunk's ancestors.
    """
    level = first_diff.astype(np.int16) + np.int16(root_depth - k)
    np.maximum(level, 0, out=level)
    np.minimum(level, leaf_depth.astype(np.int16) + np.int16(root_depth), out=level)
    return level.astype(np.uint8)


def group_by_depth(depths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable grouping by a small-integer key: ``(order, offsets)``.

    ``order`` lists indices with key 0 first, then 1, ... each in input order; ``offsets``
    (max + 2,) gives each key's slice. numpy's stable sort of uint8 is a radix sort.
    """
    order = np.argsort(depths, kind="stable")
    counts = np.bincount(depths, minlength=1)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return order, offsets


def common_depth(code_a: int, depth_a: int, code_b: int, depth_b: int) -> int:
    """Depth of the deepest common ancestor of two octree cells given as Morton prefixes."""
    d = min(depth_a, depth_b)
    a = code_a >> (3 * (depth_a - d))
    b = code_b >> (3 * (depth_b - d))
    while d > 0 and a != b:
        a >>= 3
        b >>= 3
        d -= 1
    return d
