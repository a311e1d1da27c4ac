"""The primitives TIN insertion and removal share: exact predicates, the half-edge link, and the
scan of a triangle for its worst grid sample.

Coordinates are int64 grid indices, so orientation and in-circle tests are exact. Half-edges
are stored as in :mod:`cim.kernels.tin.insert`: ``he[e]`` is the opposite half-edge of ``e``, -1
on the border.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels import JitOptions

__all__ = ["JIT", "orient", "incircle", "worst_sample", "worst_sample_until", "link"]

#: numba options of every TIN kernel: ``nogil``, so tiles mesh in parallel threads; cached
JIT: JitOptions = {"nogil": True, "cache": True}


@njit(**JIT)
def orient(ax, ay, bx, by, cx, cy):  # pragma: no cover - compiled
    """Twice the signed area of triangle (a, b, c): > 0 when counter-clockwise, 0 when collinear."""
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@njit(**JIT)
def incircle(ax, ay, bx, by, cx, cy, dx, dy):  # pragma: no cover - compiled
    """> 0 when d lies strictly inside the circle through the counter-clockwise a, b, c."""
    adx, ady = ax - dx, ay - dy
    bdx, bdy = bx - dx, by - dy
    cdx, cdy = cx - dx, cy - dy
    ad = adx * adx + ady * ady
    bd = bdx * bdx + bdy * bdy
    cd = cdx * cdx + cdy * cdy
    return adx * (bdy * cd - bd * cdy) - ady * (bdx * cd - bd * cdx) + ad * (bdx * cdy - bdy * cdx)


@njit(**JIT)
def worst_sample(grid, ax, ay, bx, by, cx, cy):  # pragma: no cover - compiled
    """Worst sample of triangle (a, b, c): ``(error, x, y)``, over every grid point inside or on it."""
    return worst_sample_until(grid, ax, ay, bx, by, cx, cy, np.inf)


@njit(**JIT)
def worst_sample_until(grid, ax, ay, bx, by, cx, cy, stop):  # pragma: no cover - compiled
    """:func:`worst_sample`, returning early (with an error above ``stop``, not the worst) once a row
    holds a sample farther than ``stop``: a removal that fails needs no more than that."""
    za, zb, zc = grid[ay, ax], grid[by, bx], grid[cy, cx]
    ux, uy, vx, vy = bx - ax, by - ay, cx - ax, cy - ay
    nz = ux * vy - uy * vx
    best, bxo, byo = -1.0, ax, ay
    if nz <= 0:
        return best, bxo, byo
    uz, vz = zb - za, zc - za
    dzdx = -(uy * vz - uz * vy) / nz
    dzdy = -(uz * vx - ux * vz) / nz
    # edge functions A*x + B*y + C >= 0 inside, for a->b, b->c, c->a
    a0, b0 = -(by - ay), bx - ax
    c0 = -(a0 * ax + b0 * ay)
    a1, b1 = -(cy - by), cx - bx
    c1 = -(a1 * bx + b1 * by)
    a2, b2 = -(ay - cy), ax - cx
    c2 = -(a2 * cx + b2 * cy)
    xmin, xmax = min(ax, bx, cx), max(ax, bx, cx)
    for y in range(min(ay, by, cy), max(ay, by, cy) + 1):
        lo, hi = xmin, xmax
        for k in range(3):
            if k == 0:
                A, R = a0, -(b0 * y + c0)
            elif k == 1:
                A, R = a1, -(b1 * y + c1)
            else:
                A, R = a2, -(b2 * y + c2)
            # ceil/floor of R / A through a float division: exact while |R|, |A| < 2**26 (a
            # non-integer quotient lies at least 1/|A| from an integer, far more than the rounding),
            # and three int64 divisions a row were a third of the time of a scan
            if A > 0:
                lo = max(lo, int(np.ceil(R / A)))
            elif A < 0:
                hi = min(hi, int(np.floor(R / A)))
            elif R > 0:
                hi = lo - 1
        if lo > hi:
            continue
        row = grid[y]
        z0 = za + (y - ay) * dzdy + (lo - ax) * dzdx
        # one pass keeping the first sample of the largest error (numba does not vectorise a
        # max-reduction here, so a separate one only added a second pass over the best rows)
        m, xm = best, -1
        for x in range(lo, hi + 1):
            d = abs(row[x] - (z0 + (x - lo) * dzdx))
            if d > m:
                m, xm = d, x
        if xm >= 0:
            best, bxo, byo = m, xm, y
            if best > stop:
                break
    return best, bxo, byo


@njit(**JIT)
def link(he, a, b):  # pragma: no cover - compiled
    """Make half-edges ``a`` and ``b`` opposite each other (``b`` may be -1: ``a`` is on the border)."""
    he[a] = b
    if b >= 0:
        he[b] = a
