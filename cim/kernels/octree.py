"""Octree kernels: Morton codes on integer grids, staging, grid subsampling levels.

No I/O. Points live on an integer grid (offsets from the cube's corner in grid units); a Morton
code interleaves one bit of x, y and z per level, most significant level first, as a 3-bit digit
``x << 2 | y << 1 | z'``. ``z'`` is z flipped (``top - z``): inside every cell the highest points
come first, so the coarse levels of detail, which keep the first point of each cell, show roofs and
canopy (what is seen from above) rather than the ground under them.

Grid subsampling without a pass per level: sort the points by code; the first point of a cell of
depth ``D`` is the point whose code first differs from its predecessor's at a depth ``<= D``.
A node of depth ``d`` samples its cube on a ``2**k`` grid (cells of depth ``d + k``), so point
``i`` belongs to level ``max(0, D_i - k)``, ``D_i`` the depth of the first digit in which it
differs from its predecessor. Levels nest: the points of levels ``<= d`` hold exactly one point
per occupied cell of depth ``d + k``, a spatially even subsample whose spacing halves at each level
(Potree's spacing, without its Poisson test). One XOR and a bit scan per point.

A staged point is five little-endian uint32 words: x, y, z (int32 grid units, ENU), then
``r | g << 8 | b << 16 | class << 24``, then ``intensity | return_number << 16``.

The per-point loops are compiled with numba (``nogil``, cached): the numpy formulations of the
same passes make several temporaries a pass, access fields with a stride and gather by fancy
index (``benchmarks/bench_pointcloud.py --kernels`` compares them). Sorting stays numpy's
``np.sort``, on keys that pack the code above the point's index, rather than an ``argsort`` of
the codes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels import JitOptions

__all__ = [
    "MAX_LEVELS",
    "WORDS",
    "morton_code",
    "cell_corner",
    "index_bits",
    "code_levels",
    "stage_points",
    "gather_sorted",
    "chunk_keys",
    "node_order",
    "leaf_ranges",
    "node_is_leaf",
    "common_depth",
]

_JIT: JitOptions = {"nogil": True, "cache": True}

#: most digits of a code (21 bits an axis fill a uint64)
MAX_LEVELS = 21
WORDS = 5  # uint32 words of a staged point


@njit(inline="always", **_JIT)
def _spread(v):  # pragma: no cover - compiled
    """The low 21 bits of ``v`` moved to bits 0, 3, 6, ... (magic-number interleave)."""
    x = np.uint64(v) & np.uint64(0x1FFFFF)
    x = (x | (x << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x << np.uint64(2))) & np.uint64(0x1249249249249249)
    return x


def morton_code(ix: int, iy: int, iz: int, levels: int) -> int:
    """Morton code of one grid cell (z not yet flipped), for tests and small tools."""
    top = (1 << levels) - 1
    z = top - iz
    code = 0
    for i in range(levels - 1, -1, -1):
        code = code << 3 | ((ix >> i) & 1) << 2 | ((iy >> i) & 1) << 1 | ((z >> i) & 1)
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


def index_bits(n: int) -> int:
    """Bits that hold a point index below ``n`` in a packed sort key."""
    return max(1, int(n - 1).bit_length())


def code_levels(n: int, max_levels: int = 14) -> int:
    """Digits a chunk of ``n`` points can sort by in a packed key (code above the index)."""
    return max(1, min(max_levels, (64 - index_bits(n)) // 3))


@njit(**_JIT)
def stage_points(
    X,
    Y,
    Z,
    a,
    b,
    coef,
    inv_unit,
    origin,
    cube_bits,
    levels,
    R,
    G,
    B,
    rgb_shift,
    intensity,
    cls,
    cls_mask,
    bit_fields,
    ret_mask,
    idx_bits,
    words,
    keys,
    lohi,
    classes,
):  # pragma: no cover - compiled
    """Reproject, quantize and pack a batch of LAS points; key each by its Morton code.

    Parameters
    ----------
    X, Y, Z : (n,) raw LAS integers (any stride) or ENU metres (with ``a = 1``, ``b = 0`` and an
        identity ``coef``)
    a, b : (3,) ``u = X * a + b`` normalises each axis to the fitted box
    coef : (3, 9) quadratic in (1, u, v, w, u², uv, v², uw, vw) giving ENU metres
    inv_unit : grid units per metre
    origin : (3,) int64 cube corner, grid units; ``cube_bits``: the cube is ``2**cube_bits``
    levels : digits of the codes (``3 * levels + idx_bits <= 64``)
    R, G, B : (n,) uint16 colours, or empty arrays; ``rgb_shift`` takes them to 8 bits
    intensity : (n,) uint16; ``cls & cls_mask`` the class; ``bit_fields & ret_mask`` the return
    idx_bits : bits of the point index in the keys

    Outputs
    -------
    words : (n, 5) uint32 staged points, in input order
    keys : (n,) uint64 ``code << idx_bits | i``, ``code`` of depth ``levels`` in the cube
    lohi : (2, 3) int64 running min and max of the grid positions (updated in place)
    classes : (256,) int64 running count of each class (updated in place)

    Returns
    -------
    (points outside the cube, clamped into its border cells; points outside the fitted box,
    ``|u| > 1`` or ``|v| > 1``, where the quadratic extrapolates)
    """
    n = X.shape[0]
    top = (1 << levels) - 1
    shift = cube_bits - levels
    size = np.int64(1) << cube_bits
    has_rgb = R.shape[0] == n
    outside = 0
    off_box = 0
    for i in range(n):
        u = X[i] * a[0] + b[0]
        v = Y[i] * a[1] + b[1]
        w = Z[i] * a[2] + b[2]
        if u < -1.0 or u > 1.0 or v < -1.0 or v > 1.0:
            off_box += 1
        uu = u * u
        uv = u * v
        vv = v * v
        uw = u * w
        vw = v * w
        cell = np.uint64(0)
        for k in range(3):
            e = (
                coef[k, 0]
                + coef[k, 1] * u
                + coef[k, 2] * v
                + coef[k, 3] * w
                + coef[k, 4] * uu
                + coef[k, 5] * uv
                + coef[k, 6] * vv
                + coef[k, 7] * uw
                + coef[k, 8] * vw
            )
            q = np.int64(np.floor(e * inv_unit + 0.5))
            words[i, k] = np.uint32(q & 0xFFFFFFFF)
            if q < lohi[0, k]:
                lohi[0, k] = q
            if q > lohi[1, k]:
                lohi[1, k] = q
            off = q - origin[k]
            if off < 0:
                off = 0
                outside += 1
            elif off >= size:
                off = size - 1
                outside += 1
            g = off >> shift
            if k == 2:
                g = top - g
            cell |= _spread(g) << np.uint64(2 - k)
        keys[i] = (cell << np.uint64(idx_bits)) | np.uint64(i)
        c = np.uint32(cls[i] & cls_mask)
        classes[c] += 1
        if has_rgb:
            words[i, 3] = (
                (np.uint32(R[i] >> rgb_shift) & 0xFF)
                | ((np.uint32(G[i] >> rgb_shift) & 0xFF) << 8)
                | ((np.uint32(B[i] >> rgb_shift) & 0xFF) << 16)
                | (c << 24)
            )
        else:
            words[i, 3] = c << 24
        words[i, 4] = np.uint32(intensity[i]) | (np.uint32(bit_fields[i] & ret_mask) << 16)
    return outside, off_box


@njit(**_JIT)
def gather_sorted(src, keys, idx_bits, shift, out, cells, counts):  # pragma: no cover - compiled
    """Gather staged points into key order and count the points of each cell.

    ``out[j] = src[keys[j] & mask]`` for (n, 5) uint32 staged points (numpy's ``take`` of 20-byte
    rows ran several times slower, and masking the keys first cost two temporaries), while
    ``keys[j] >> shift`` names the cell; ``cells[:m]``, ``counts[:m]`` receive each distinct cell
    (keys sorted: in ascending order) and its number of points. Returns ``m``.
    """
    mask = (np.uint64(1) << np.uint64(idx_bits)) - np.uint64(1)
    sh = np.uint64(shift)
    n = keys.shape[0]
    m = 0
    for j in range(n):
        key = keys[j]
        i = np.int64(key & mask)
        for k in range(WORDS):
            out[j, k] = src[i, k]
        cell = key >> sh
        if m == 0 or cells[m - 1] != cell:
            cells[m] = cell
            counts[m] = 0
            m += 1
        counts[m - 1] += 1
    return m


@njit(**_JIT)
def chunk_keys(words, corner, shift, levels, idx_bits, keys):  # pragma: no cover - compiled
    """Keys ``code << idx_bits | i`` of a chunk's points.

    ``code`` has ``levels`` digits below the chunk's cell, whose lower corner is ``corner``
    (grid units); ``shift`` takes grid units to the finest cells. Points a rounding outside the
    cell are clamped into it.
    """
    n = words.shape[0]
    top = (np.int64(1) << levels) - 1
    for i in range(n):
        code = np.uint64(0)
        for k in range(3):
            off = np.int64(np.int32(words[i, k])) - corner[k]
            if off < 0:
                off = 0
            g = off >> shift
            if g > top:
                g = top
            if k == 2:
                g = top - g
            code |= _spread(g) << np.uint64(2 - k)
        keys[i] = (code << np.uint64(idx_bits)) | np.uint64(i)


@njit(**_JIT)
def node_order(keys, idx_bits, levels, first_diff, k, root_depth, leaf_start, leaf_depth, words, out, rank):  # pragma: no cover
    """Assign each point of a sorted chunk to its node and order the points node by node.

    Parameters
    ----------
    keys : (n,) uint64 sorted packed keys (:func:`chunk_keys`, then ``np.sort``)
    idx_bits, levels : as in the keys
    first_diff : the chunk's first point's first-difference depth, relative to the chunk
        (``<= 0``: it differs from the chunk before it above the chunk's cell)
    k : node sampling grid bits
    root_depth : the chunk's depth in the whole tree
    leaf_start : (m + 1,) sorted code-order start of each leaf, then ``n``
    leaf_depth : (m,) relative depth of each leaf

    words : (n, 5) uint32 the chunk's staged points (unsorted, the keys' indices)

    Outputs
    -------
    out : (n, 5) uint32 the points grouped by node depth, each group in code order
    rank : (n,) int64 the code-order position of each row of ``out``

    Returns
    -------
    (levels + root_depth + 2,) int64 start of each depth's group in ``out``, then ``n``.
    """
    n = keys.shape[0]
    mask = (np.uint64(1) << np.uint64(idx_bits)) - np.uint64(1)
    ndepth = np.empty(n, dtype=np.uint8)
    counts = np.zeros(levels + root_depth + 2, dtype=np.int64)
    j = 0
    prev = np.uint64(0)
    for i in range(n):
        code = keys[i] >> np.uint64(idx_bits)
        while leaf_start[j + 1] <= i:
            j += 1
        if i == 0:
            r = first_diff
        else:
            x = code ^ prev
            if x == 0:
                r = levels + 1
            else:
                digit = 0
                while (x >> np.uint64(3 * (digit + 1))) != 0:
                    digit += 1
                r = levels - digit
        prev = code
        level = root_depth + r - k
        if level < 0:
            level = 0
        leaf = root_depth + leaf_depth[j]
        if level > leaf:
            level = leaf
        ndepth[i] = level
        counts[level] += 1
    starts = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    for d in range(counts.shape[0]):
        starts[d + 1] = starts[d] + counts[d]
    fill = starts[:-1].copy()
    for i in range(n):
        d = ndepth[i]
        dst = fill[d]
        src = np.int64(keys[i] & mask)
        for t in range(WORDS):
            out[dst, t] = words[src, t]
        rank[dst] = i
        fill[d] += 1
    return starts


def leaf_ranges(
    codes_sorted: np.ndarray, levels: int, leaf_max: int, max_depth: int, idx_bits: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The octree of a sorted chunk down to its leaves, by binary search on the codes.

    A node whose range holds more than ``leaf_max`` points and is shallower than ``max_depth``
    is split into its occupied children; the rest are leaves. Cost: one ``searchsorted`` of nine
    bounds per internal node, nothing per point.

    Parameters
    ----------
    codes_sorted : (n,) uint64 ascending codes of ``levels`` digits, shifted up by ``idx_bits``
        (packed sort keys ``code << idx_bits | index`` do: no shifted copy needed)
    levels : digits per code
    leaf_max : most points of a leaf (unless at ``max_depth``)
    max_depth : deepest node depth (relative to the chunk's root), ``<= levels``

    Returns
    -------
    depth (m,) int64, prefix (m,) int64 (the node's code prefix at its depth), start (m,) int64,
    stop (m,) int64 (its range in ``codes_sorted``), for every node, internal ones included,
    ordered by depth then code.
    """
    n = len(codes_sorted)
    depth = [np.zeros(1, np.int64)]
    prefix = [np.zeros(1, np.int64)]
    start = [np.zeros(1, np.int64)]
    stop = [np.full(1, n, np.int64)]
    cur_p, cur_a, cur_b = prefix[0], start[0], stop[0]
    r = 0
    while r < max_depth:
        split = (cur_b - cur_a) > leaf_max
        if not split.any():
            break
        p, a, b = cur_p[split], cur_a[split], cur_b[split]
        sh = np.uint64(3 * (levels - r - 1) + idx_bits)
        # numpy's stubs take uint64 << then + uint64 for float64; it stays uint64
        bounds = ((p[:, None].astype(np.uint64) << np.uint64(3)) + np.arange(9, dtype=np.uint64)) << sh  # type: ignore[operator]
        pos = np.searchsorted(codes_sorted, bounds.ravel()).reshape(-1, 9).astype(np.int64)
        pos[:, 0] = a
        pos[:, 8] = b
        ca, cb = pos[:, :8].ravel(), pos[:, 1:].ravel()
        cp = ((p[:, None] << 3) + np.arange(8)).ravel()
        keep = cb > ca
        cur_p, cur_a, cur_b = cp[keep], ca[keep], cb[keep]
        r += 1
        depth.append(np.full(len(cur_p), r, np.int64))
        prefix.append(cur_p)
        start.append(cur_a)
        stop.append(cur_b)
    return np.concatenate(depth), np.concatenate(prefix), np.concatenate(start), np.concatenate(stop)


def node_is_leaf(depth: np.ndarray, prefix: np.ndarray) -> np.ndarray:
    """(m,) bool: nodes of :func:`leaf_ranges` that have no child."""
    parents = set(zip((depth[depth > 0] - 1).tolist(), (prefix[depth > 0] >> 3).tolist()))
    return np.array([(d, p) not in parents for d, p in zip(depth.tolist(), prefix.tolist())], dtype=bool)


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
