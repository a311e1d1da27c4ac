"""EXT_meshopt_compression's attribute codec (mode 0, ATTRIBUTES; bitstream version 0) and its
EXPONENTIAL filter's decoding.

Written here from the specification (Appendix A of the extension): the encoder compiled with
numba (a per-group choice and variable-length output that numpy vectorises badly), and a plain
reference decoder for tests and tools, checked against meshoptimizer's own decoder in the tests.
Split from :mod:`cim.formats.points`, the point tiles that use it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels import JitOptions

__all__ = ["meshopt_encode_attributes", "meshopt_decode_attributes", "exponential_filter"]

_JIT: JitOptions = {"nogil": True, "cache": True}

_HEADER = 0xA0
_TAIL = 32


def _block_elements(stride: int) -> int:
    return min((8192 // stride) & ~15, 256)


def meshopt_encode_attributes(data: np.ndarray) -> bytes:
    """Encode ``(n, stride)`` uint8 vertex data with the meshopt attribute codec.

    Byte deltas between consecutive elements, zigzagged, stored per byte position in groups of
    16 as 0, 2, 4 or 8 bits each (2- and 4-bit codes escape larger values to trailing bytes),
    each group in its smallest form. A compiled loop: the choice and the variable-length output
    of each group do not vectorise well in numpy.
    """
    data = np.ascontiguousarray(data, dtype=np.uint8)
    n, stride = data.shape
    if stride % 4 or stride > 256:
        raise ValueError("meshopt attributes need a stride divisible by 4 and at most 256")
    if n == 0:
        raise ValueError("nothing to encode")
    be = _block_elements(stride)
    blocks = -(-n // be)
    capacity = 1 + n * stride + blocks * stride * (4 + 16) + max(_TAIL, stride)
    out = np.empty(capacity, dtype=np.uint8)
    size = _meshopt_encode(data, be, max(_TAIL, stride), out)
    return out[:size].tobytes()


@njit(**_JIT)
def _meshopt_encode(data, be, tail, out):  # pragma: no cover - compiled
    n, stride = data.shape
    p = 0
    out[p] = 0xA0
    p += 1
    zz = np.zeros((256, stride), dtype=np.uint8)  # a block's zigzagged deltas, row-major
    used = np.zeros(stride, dtype=np.uint8)  # OR of each byte position's deltas in the block
    for start in range(0, n, be):
        ne = min(be, n - start)
        ng = (ne + 15) // 16
        hb = (ng + 3) // 4
        used[:] = 0
        for j in range(ne):
            i = start + j
            q = i - 1 if i > 0 else 0  # the first element's baseline is itself (in the tail)
            for k in range(stride):
                d = (data[i, k] - data[q, k]) & 0xFF
                x = ((d << 1) ^ (0xFF if d & 0x80 else 0)) & 0xFF
                zz[j, k] = x
                used[k] |= x
        for j in range(ne, ng * 16):
            for k in range(stride):
                zz[j, k] = 0
        for k in range(stride):
            hp = p
            for h in range(hb):
                out[p + h] = 0
            p += hb
            if used[k] == 0:
                continue  # a constant byte (padding, a constant attribute): every group mode 0
            for g in range(ng):
                o = g * 16
                c3 = 0
                c15 = 0
                nz = 0
                for t in range(16):
                    x = zz[o + t, k]
                    nz |= x
                    c3 += x >= 3
                    c15 += x >= 15
                if nz == 0:
                    continue  # mode 0: nothing stored
                s1 = 4 + c3
                s2 = 8 + c15
                if s1 <= s2 and s1 <= 16:
                    for t in range(4):
                        byte = 0
                        for u in range(4):
                            x = zz[o + 4 * t + u, k]
                            byte = (byte << 2) | (3 if x >= 3 else x)
                        out[p + t] = byte
                    p += 4
                    if c3:
                        p = _put_escapes(zz, o, k, 3, out, p)
                    out[hp + g // 4] |= 1 << ((g % 4) * 2)
                elif s2 <= 16:
                    for t in range(8):
                        x0 = zz[o + 2 * t, k]
                        x1 = zz[o + 2 * t + 1, k]
                        out[p + t] = ((15 if x0 >= 15 else x0) << 4) | (15 if x1 >= 15 else x1)
                    p += 8
                    if c15:
                        p = _put_escapes(zz, o, k, 15, out, p)
                    out[hp + g // 4] |= 2 << ((g % 4) * 2)
                else:
                    for t in range(16):
                        out[p + t] = zz[o + t, k]
                    p += 16
                    out[hp + g // 4] |= 3 << ((g % 4) * 2)
    for t in range(tail - stride):
        out[p + t] = 0
    for t in range(stride):
        out[p + tail - stride + t] = data[0, t]
    return p + tail


@njit(inline="always", **_JIT)  # inlined into the encoder's loop: no call per group
def _put_escapes(zz, o, k, limit, out, p):  # pragma: no cover - compiled
    """After a group of 2- or 4-bit codes: the group's values that did not fit (``>= limit``,
    coded as the sentinel), one byte each, from ``out[p]``; returns the new end."""
    for t in range(16):
        x = zz[o + t, k]
        if x >= limit:
            out[p] = x
            p += 1
    return p


def meshopt_decode_attributes(src: bytes, count: int, stride: int) -> np.ndarray:
    """Decode meshopt attribute data to ``(count, stride)`` uint8 (a plain reference decoder)."""
    buf = np.frombuffer(src, dtype=np.uint8)
    if len(buf) < 1 + max(_TAIL, stride) or buf[0] != _HEADER:
        raise ValueError("not meshopt attribute data (version 0)")
    be = _block_elements(stride)
    last = buf[len(buf) - stride :].copy()
    out = np.empty((count, stride), dtype=np.uint8)
    p = 1
    for start in range(0, count, be):
        ne = min(be, count - start)
        ng = -(-ne // 16)
        block = np.empty((stride, ng * 16), dtype=np.uint8)
        for k in range(stride):
            hb = buf[p : p + -(-ng // 4)]
            p += len(hb)
            for gi in range(ng):
                m = (int(hb[gi // 4]) >> ((gi % 4) * 2)) & 3
                dst = block[k, gi * 16 : gi * 16 + 16]
                if m == 0:
                    dst[:] = 0
                elif m == 3:
                    dst[:] = buf[p : p + 16]
                    p += 16
                else:
                    bits, nb = (2, 4) if m == 1 else (4, 8)
                    packed = buf[p : p + nb]
                    p += nb
                    if bits == 2:
                        v = np.stack([(packed >> 6) & 3, (packed >> 4) & 3, (packed >> 2) & 3, packed & 3], axis=1).ravel()
                        sentinel = 3
                    else:
                        v = np.stack([packed >> 4, packed & 15], axis=1).ravel()
                        sentinel = 15
                    esc = np.flatnonzero(v == sentinel)
                    v = v.astype(np.uint8)
                    v[esc] = buf[p : p + len(esc)]
                    p += len(esc)
                    dst[:] = v
        zz = block[:, :ne].T
        d = (zz >> 1) ^ (np.uint8(0) - (zz & 1))
        vals = np.cumsum(np.concatenate([last[None, :], d]).astype(np.uint64), axis=0)[1:] & 0xFF
        out[start : start + ne] = vals.astype(np.uint8)
        last = out[start + ne - 1].copy()
    if p != len(buf) - max(_TAIL, stride):
        raise ValueError("meshopt attribute data has trailing or missing bytes")
    return out


def exponential_filter(data: np.ndarray) -> np.ndarray:
    """The meshopt EXPONENTIAL filter's decoding of ``(count, stride)`` uint8 rows: every
    little-endian int32 ``m | e << 24`` becomes the float32 ``m * 2**e`` (``m`` a signed 24-bit
    mantissa, ``e`` a signed 8-bit exponent)."""
    v = np.ascontiguousarray(data).view("<i4")
    m = (v << 8) >> 8
    e = v >> 24
    return np.ldexp(m.astype(np.float64), e).astype("<f4").view(np.uint8).reshape(data.shape)
