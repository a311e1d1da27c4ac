"""Compiled closest point on triangles (numba), for :class:`cim.kernels.simplify.TriangleLocator`.

numpy needs a dozen temporary arrays a (point, triangle) pair (trimesh's vectorised version
spent about 1 µs a pair here); the loop below takes a few tens of nanoseconds. Imported when
first used.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels import JitOptions

__all__ = ["distance_to_piece", "nearest_of_candidates"]

JIT: JitOptions = {"nogil": True, "cache": True}


@njit(**JIT)
def _closest(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Barycentric weights (of a, b, c) of the point of triangle abc closest to p, into ``out``
    (Ericson, Real-Time Collision Detection, 5.1.5)."""
    abx, aby, abz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    acx, acy, acz = c[0] - a[0], c[1] - a[1], c[2] - a[2]
    apx, apy, apz = p[0] - a[0], p[1] - a[1], p[2] - a[2]
    d1 = abx * apx + aby * apy + abz * apz
    d2 = acx * apx + acy * apy + acz * apz
    if d1 <= 0.0 and d2 <= 0.0:
        out[0], out[1], out[2] = 1.0, 0.0, 0.0
        return
    bpx, bpy, bpz = p[0] - b[0], p[1] - b[1], p[2] - b[2]
    d3 = abx * bpx + aby * bpy + abz * bpz
    d4 = acx * bpx + acy * bpy + acz * bpz
    if d3 >= 0.0 and d4 <= d3:
        out[0], out[1], out[2] = 0.0, 1.0, 0.0
        return
    vc = d1 * d4 - d3 * d2
    if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        v = d1 / (d1 - d3) if d1 != d3 else 0.0
        out[0], out[1], out[2] = 1.0 - v, v, 0.0
        return
    cpx, cpy, cpz = p[0] - c[0], p[1] - c[1], p[2] - c[2]
    d5 = abx * cpx + aby * cpy + abz * cpz
    d6 = acx * cpx + acy * cpy + acz * cpz
    if d6 >= 0.0 and d5 <= d6:
        out[0], out[1], out[2] = 0.0, 0.0, 1.0
        return
    vb = d5 * d2 - d1 * d6
    if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        w = d2 / (d2 - d6) if d2 != d6 else 0.0
        out[0], out[1], out[2] = 1.0 - w, 0.0, w
        return
    va = d3 * d6 - d5 * d4
    if va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0:
        den = (d4 - d3) + (d5 - d6)
        w = (d4 - d3) / den if den != 0.0 else 0.0
        out[0], out[1], out[2] = 0.0, 1.0 - w, w
        return
    den = va + vb + vc
    if den == 0.0:  # a degenerate triangle: its first corner
        out[0], out[1], out[2] = 1.0, 0.0, 0.0
        return
    v = vb / den
    w = vc / den
    out[0], out[1], out[2] = 1.0 - v - w, v, w


@njit(**JIT)
def _closest_scalar(
    px: float, py: float, pz: float, ax: float, ay: float, az: float, bx: float, by: float, bz: float, cx: float, cy: float, cz: float
) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """:func:`_closest` on scalars, returning the weights: no array view a call (a view costs
    reference counting in numba), the same operations in the same order, so the same bits."""
    abx, aby, abz = bx - ax, by - ay, bz - az
    acx, acy, acz = cx - ax, cy - ay, cz - az
    apx, apy, apz = px - ax, py - ay, pz - az
    d1 = abx * apx + aby * apy + abz * apz
    d2 = acx * apx + acy * apy + acz * apz
    if d1 <= 0.0 and d2 <= 0.0:
        return 1.0, 0.0, 0.0
    bpx, bpy, bpz = px - bx, py - by, pz - bz
    d3 = abx * bpx + aby * bpy + abz * bpz
    d4 = acx * bpx + acy * bpy + acz * bpz
    if d3 >= 0.0 and d4 <= d3:
        return 0.0, 1.0, 0.0
    vc = d1 * d4 - d3 * d2
    if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        v = d1 / (d1 - d3) if d1 != d3 else 0.0
        return 1.0 - v, v, 0.0
    cpx, cpy, cpz = px - cx, py - cy, pz - cz
    d5 = abx * cpx + aby * cpy + abz * cpz
    d6 = acx * cpx + acy * cpy + acz * cpz
    if d6 >= 0.0 and d5 <= d6:
        return 0.0, 0.0, 1.0
    vb = d5 * d2 - d1 * d6
    if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        w = d2 / (d2 - d6) if d2 != d6 else 0.0
        return 1.0 - w, 0.0, w
    va = d3 * d6 - d5 * d4
    if va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0:
        den = (d4 - d3) + (d5 - d6)
        w = (d4 - d3) / den if den != 0.0 else 0.0
        return 0.0, 1.0 - w, w
    den = va + vb + vc
    if den == 0.0:  # a degenerate triangle: its first corner
        return 1.0, 0.0, 0.0
    v = vb / den
    w = vc / den
    return 1.0 - v - w, v, w


@njit(**JIT)
def distance_to_piece(
    corners: np.ndarray, t: int, px: float, py: float, pz: float
) -> tuple[float, float, float, float]:  # pragma: no cover - compiled
    """Distance from (px, py, pz) to triangle ``corners[t]`` and the barycentric weights of its
    closest point: the one computation every search here shares (so they agree to the bit)."""
    ax, ay, az = corners[t, 0, 0], corners[t, 0, 1], corners[t, 0, 2]
    bx, by, bz = corners[t, 1, 0], corners[t, 1, 1], corners[t, 1, 2]
    cx, cy, cz = corners[t, 2, 0], corners[t, 2, 1], corners[t, 2, 2]
    u, v, w = _closest_scalar(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz)
    dx = u * ax + v * bx + w * cx - px
    dy = u * ay + v * by + w * cy - py
    dz = u * az + v * bz + w * cz - pz
    return np.sqrt(dx * dx + dy * dy + dz * dz), u, v, w


@njit(**JIT)
def nearest_of_candidates(
    corners: np.ndarray,
    points: np.ndarray,
    starts: np.ndarray,
    ti: np.ndarray,
    best_t: np.ndarray,
    best_w: np.ndarray,
    best_d: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """For each point i, the nearest of its candidate triangles ``ti[starts[i]:starts[i + 1]]``,
    kept in ``best_t``/``best_w``/``best_d`` when nearer than what they hold (ties go to the
    lowest triangle row; ``best_t`` -1 holds nothing yet). One pass, no (pair) arrays: the
    reduction :class:`cim.kernels.simplify.TriangleLocator` did with a sort of every pair."""
    for i in range(points.shape[0]):
        px, py, pz = points[i, 0], points[i, 1], points[i, 2]
        bt, bd = best_t[i], best_d[i]
        bu, bv, bw = best_w[i, 0], best_w[i, 1], best_w[i, 2]
        for n in range(starts[i], starts[i + 1]):
            t = ti[n]
            d, u, v, w = distance_to_piece(corners, t, px, py, pz)
            if bt < 0 or d < bd or (d == bd and t < bt):
                bt, bd, bu, bv, bw = t, d, u, v, w
        best_t[i], best_d[i] = bt, bd
        best_w[i, 0], best_w[i, 1], best_w[i, 2] = bu, bv, bw
