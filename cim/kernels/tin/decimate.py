"""Removing redundant vertices from an error-bounded TIN (the second half of :func:`cim.kernels.tin.error_bounded_tins`).

Greedy insertion picks each vertex for the coarse surface of its moment; after later insertions
many of the early ones carry no weight. Each vertex in turn (corners excepted) is taken out, the
hole left by its star is triangulated again by ear clipping with Delaunay ears, and the removal
is kept when every new triangle still lies within the error bound of the grid samples it covers.
What two passes remove at the same error is measured by ``benchmarks/bench_terrain.py`` (see
``benchmarks/README.md``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels.tin.primitives import JIT, incircle, link, orient, worst_sample_until

__all__ = ["remove_vertices"]

#: most triangles around one vertex that a removal considers
_STAR_CAP = 64


@njit(**JIT)
def _triangulate_ring(vx, vy, ring, m, out):  # pragma: no cover - compiled
    """Ear-clip the counter-clockwise polygon ``ring[:m]``, preferring Delaunay ears.

    Writes triangles as positions in ``ring`` to ``out`` and returns their number (``m - 2``),
    or -1 when the polygon has no valid ear.
    """
    idx = np.empty(m, np.int64)
    for i in range(m):
        idx[i] = i
    n = m
    nt = 0
    while n > 3:
        best = -1
        for j in range(n):
            jp, jn = (j - 1) % n, (j + 1) % n
            a, b, c = ring[idx[jp]], ring[idx[j]], ring[idx[jn]]
            if orient(vx[a], vy[a], vx[b], vy[b], vx[c], vy[c]) <= 0:
                continue
            empty = True  # no other polygon vertex inside or on the ear
            for q in range(n):
                if q in (jp, j, jn):
                    continue
                d = ring[idx[q]]
                if (
                    orient(vx[a], vy[a], vx[b], vy[b], vx[d], vy[d]) >= 0
                    and orient(vx[b], vy[b], vx[c], vy[c], vx[d], vy[d]) >= 0
                    and orient(vx[c], vy[c], vx[a], vy[a], vx[d], vy[d]) >= 0
                ):
                    empty = False
                    break
            if not empty:
                continue
            if best < 0:
                best = j
            delaunay = True
            for q in range(n):
                if q in (jp, j, jn):
                    continue
                d = ring[idx[q]]
                if incircle(vx[a], vy[a], vx[b], vy[b], vx[c], vy[c], vx[d], vy[d]) > 0:
                    delaunay = False
                    break
            if delaunay:
                best = j
                break
        if best < 0:
            return -1
        j = best
        out[nt, 0], out[nt, 1], out[nt, 2] = idx[(j - 1) % n], idx[j], idx[(j + 1) % n]
        nt += 1
        for q in range(j, n - 1):
            idx[q] = idx[q + 1]
        n -= 1
    a, b, c = ring[idx[0]], ring[idx[1]], ring[idx[2]]
    if orient(vx[a], vy[a], vx[b], vy[b], vx[c], vy[c]) <= 0:
        return -1
    out[nt, 0], out[nt, 1], out[nt, 2] = idx[0], idx[1], idx[2]
    return nt + 1


@njit(**JIT)
def _holds_at(grid, vx, vy, ring, tris, nnew, px, py, z, threshold):  # pragma: no cover - compiled
    """Whether the new triangles pass within ``threshold`` of height ``z`` at the point ``(px, py)``."""
    for i in range(nnew):
        a, b, c = ring[tris[i, 0]], ring[tris[i, 1]], ring[tris[i, 2]]
        w0 = orient(vx[b], vy[b], vx[c], vy[c], px, py)
        w1 = orient(vx[c], vy[c], vx[a], vy[a], px, py)
        w2 = orient(vx[a], vy[a], vx[b], vy[b], px, py)
        if w0 >= 0 and w1 >= 0 and w2 >= 0:
            total = w0 + w1 + w2
            h = (w0 * grid[vy[a], vx[a]] + w1 * grid[vy[b], vx[b]] + w2 * grid[vy[c], vx[c]]) / total
            return abs(h - z) <= threshold
    return True  # on the ring itself (a border vertex): the scans decide


@njit(**JIT)
def remove_vertices(grid, threshold, vx, vy, tv, he, passes, terr):  # pragma: no cover - compiled
    """Remove redundant vertices of a TIN that meets ``threshold`` on ``grid`` (``tv``/``he`` change in place).

    ``vx, vy`` are the vertices, ``tv, he`` the half-edges as :mod:`cim.kernels.tin.insert` builds
    them, ``terr`` each triangle's error as :func:`cim.kernels.tin.primitives.worst_sample` gives
    it (kept up to date here). Returns the remaining vertices (in their original order), the triangles,
    ``(l, 3)``, and the largest error among them: the scan of every new triangle is already done
    when its removal is accepted, so no final pass over the TIN is needed (it was a tenth of the
    time of meshing a tile of the sample city).
    """
    nv, nt = len(vx), len(tv) // 3
    alive = np.ones(nt, np.bool_)
    valive = np.ones(nv, np.bool_)
    vhe = np.full(nv, -1, np.int64)  # one outgoing half-edge of each vertex
    for e in range(3 * nt):
        vhe[tv[e]] = e
    ring = np.empty(_STAR_CAP + 1, np.int64)
    outer = np.empty(_STAR_CAP + 1, np.int64)  # the twin of each ring edge, outside the star
    star = np.empty(_STAR_CAP, np.int64)
    tris = np.empty((_STAR_CAP, 3), np.int64)
    tris_err = np.empty(_STAR_CAP)
    for _ in range(passes):
        changed = 0
        for v in range(4, nv):
            if not valive[v]:
                continue
            # turn clockwise to the first outgoing half-edge (a border vertex's border edge)
            e = start = vhe[v]
            while True:
                if he[e] < 0:
                    break
                f = he[e]
                e = 3 * (f // 3) + (f % 3 + 1) % 3
                if e == start:
                    break
            start = e
            # then counter-clockwise, collecting the star's triangles and its outer ring
            k = m = 0
            too_big = False
            while True:
                if k >= _STAR_CAP - 1:
                    too_big = True
                    break
                T, s = e // 3, e % 3
                nxt, prv = 3 * T + (s + 1) % 3, 3 * T + (s + 2) % 3
                star[k] = T
                ring[m] = tv[nxt]
                outer[m] = he[nxt]
                k += 1
                m += 1
                g = he[prv]
                if g < 0:  # the border again: close the ring along it
                    ring[m] = tv[prv]
                    outer[m] = -1
                    m += 1
                    break
                e = g
                if e == start:
                    break
            if too_big or m < 3:
                continue
            # cheap refusals first: the new surface at v's own sample lies between the ring's heights
            zv = grid[vy[v], vx[v]]
            z_lo, z_hi = np.inf, -np.inf
            for i in range(m):
                zr = grid[vy[ring[i]], vx[ring[i]]]
                z_lo, z_hi = min(z_lo, zr), max(z_hi, zr)
            if zv > z_hi + threshold or zv < z_lo - threshold:
                continue
            nnew = _triangulate_ring(vx, vy, ring, m, tris)
            if nnew < 0:
                continue
            if not _holds_at(grid, vx, vy, ring, tris, nnew, vx[v], vy[v], zv, threshold):
                continue
            ok = True
            for i in range(nnew):
                a, b, c = ring[tris[i, 0]], ring[tris[i, 1]], ring[tris[i, 2]]
                err, _, _ = worst_sample_until(grid, vx[a], vy[a], vx[b], vy[b], vx[c], vy[c], threshold)
                tris_err[i] = err
                if err > threshold:
                    ok = False
                    break
            if not ok:
                continue
            # commit: the new triangles take the first star slots, the others die
            for i in range(nnew):
                T = star[i]
                terr[T] = tris_err[i]
                for s in range(3):
                    tv[3 * T + s] = ring[tris[i, s]]
            for i in range(nnew, k):
                alive[star[i]] = False
            for i in range(nnew):
                T = star[i]
                for s in range(3):
                    p, q = tris[i, s], tris[i, (s + 1) % 3]
                    e2 = 3 * T + s
                    if (p + 1) % m == q:
                        link(he, e2, outer[p])  # a ring edge keeps its outer twin
                    else:
                        for i2 in range(nnew):  # a diagonal: its reverse is in another new triangle
                            for s2 in range(3):
                                if tris[i2, s2] == q and tris[i2, (s2 + 1) % 3] == p:
                                    he[e2] = 3 * star[i2] + s2
                    vhe[tv[e2]] = e2
            valive[v] = False
            changed += 1
        if changed == 0:
            break
    remap = np.full(nv, -1, np.int64)
    n_out = 0
    for v in range(nv):
        if valive[v]:
            remap[v] = n_out
            n_out += 1
    ox = np.empty(n_out, np.int64)
    oy = np.empty(n_out, np.int64)
    for v in range(nv):
        if valive[v]:
            ox[remap[v]] = vx[v]
            oy[remap[v]] = vy[v]
    n_t = 0
    for t in range(nt):
        if alive[t]:
            n_t += 1
    tri = np.empty((n_t, 3), np.int64)
    worst = 0.0
    j = 0
    for t in range(nt):
        if alive[t]:
            for s in range(3):
                tri[j, s] = remap[tv[3 * t + s]]
            worst = max(worst, terr[t])
            j += 1
    return ox, oy, tri, worst
