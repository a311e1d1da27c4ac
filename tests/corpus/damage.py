"""Byte-level damage: the ways a file breaks on its way to a user (a copy cut short, a bit flipped,
a disk block of garbage, a file that is not what its name says). Pure functions of bytes and a seed."""

from __future__ import annotations

import numpy as np

__all__ = ["truncation_offsets", "flip_offsets", "flipped", "with_garbage_block", "with_tail", "random_bytes"]


def truncation_offsets(size: int, header: int) -> list[int]:
    """Where to cut a file of ``size`` bytes whose header is ``header`` bytes: inside the header,
    just past it, and at fractions of the body, sorted and distinct (never 0 or ``size``)."""
    cuts = {1, 7, header // 2, header, header + 1}
    cuts |= {int(size * f) for f in (0.1, 0.33, 0.5, 0.75, 0.9, 0.99)}
    cuts.add(size - 1)
    return sorted(c for c in cuts if 0 < c < size)


def flip_offsets(size: int, header: int, count: int, seed: int) -> list[int]:
    """``count`` distinct seeded offsets inside the header (or the file, when smaller)."""
    rng = np.random.default_rng(seed)
    n = max(1, min(size, header))
    return sorted(int(v) for v in rng.choice(n, size=min(count, n), replace=False))


def flipped(data: bytes, offset: int) -> bytes:
    """``data`` with every bit of one byte inverted."""
    b = bytearray(data)
    b[offset] ^= 0xFF
    return bytes(b)


def with_garbage_block(data: bytes, start: int, length: int, seed: int) -> bytes:
    """``data`` with ``length`` bytes from ``start`` overwritten by seeded random bytes (a bad
    disk block)."""
    b = bytearray(data)
    end = min(len(b), start + length)
    b[start:end] = random_bytes(end - start, seed)
    return bytes(b)


def with_tail(data: bytes, seed: int, length: int = 4096) -> bytes:
    """``data`` followed by ``length`` seeded random bytes (a copy that ran on)."""
    return data + random_bytes(length, seed)


def random_bytes(length: int, seed: int) -> bytes:
    """``length`` bytes of seeded noise."""
    return np.random.default_rng(seed).integers(0, 256, size=length, dtype=np.uint8).tobytes()
