"""Greedy insertion for error-bounded TINs (Garland & Heckbert 1995, algorithm III; the method of Delatin).

Start from the grid's two corner triangles, then repeatedly insert the grid sample that lies
farthest, vertically, from the current surface, keeping the triangulation Delaunay by edge flips,
until no sample is farther than the bound. Each triangle remembers its worst sample; a max-heap over
triangles picks the next insertion, and only the triangles an insertion creates or flips are
scanned again. Triangles are stored as half-edges: triangle ``t`` owns half-edges ``3t, 3t+1, 3t+2``,
``tv[e]`` is the vertex a half-edge starts from and ``he[e]`` the opposite half-edge (-1 on the
border). Orientation and in-circle tests run on exact int64 arithmetic.

The loop is sequential by nature (each insertion depends on the last), so numpy cannot vectorise
it: it is compiled with numba (``nogil``, so tiles mesh in parallel threads).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cim.kernels.tin.primitives import JIT, incircle, link, orient, worst_sample

__all__ = ["workspace", "greedy_insert"]


@njit(**JIT)
def _sift_up(heap, hpos, err, i):  # pragma: no cover - compiled
    t = heap[i]
    while i > 0:
        p = (i - 1) >> 1
        q = heap[p]
        if err[q] >= err[t]:
            break
        heap[i] = q
        hpos[q] = i
        i = p
    heap[i] = t
    hpos[t] = i


@njit(**JIT)
def _sift_down(heap, hpos, err, i, n):  # pragma: no cover - compiled
    t = heap[i]
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and err[heap[c + 1]] > err[heap[c]]:
            c += 1
        if err[heap[c]] <= err[t]:
            break
        heap[i] = heap[c]
        hpos[heap[i]] = i
        i = c
    heap[i] = t
    hpos[t] = i


@njit(**JIT)
def workspace(n):  # pragma: no cover - compiled
    """Work arrays for :func:`greedy_insert` on grids of up to ``n`` samples.

    Allocated once per batch of tiles and reused: per 65 × 65 tile they are about 1 MB, which
    malloc takes from fresh mmap'ed pages that the kernel zeroes, while a nearly flat tile meshes
    in a few scans of its samples. ``np.empty`` leaves them untouched: every slot is written before it is read.
    """
    max_t = 2 * n + 2
    return (
        np.empty(n, np.int64),  # vx
        np.empty(n, np.int64),  # vy
        np.empty(3 * max_t, np.int64),  # tv: start vertex of each half-edge; triangle t owns 3t..3t+2
        np.empty(3 * max_t, np.int64),  # he: the opposite half-edge, -1 on the grid's border
        np.empty(max_t),  # err
        np.empty(max_t, np.int64),  # cand_x
        np.empty(max_t, np.int64),  # cand_y
        np.empty(max_t, np.int64),  # heap
        np.empty(max_t, np.int64),  # hpos: a triangle's place in the heap, -1 when not in it
        np.empty(max_t, np.int64),  # stamp: the insertion that last touched a triangle
        np.empty(max_t, np.int64),  # touched
        np.empty(3 * max_t, np.int64),  # stack
    )


@njit(**JIT)
def _greedy(grid, threshold, max_vertices):  # pragma: no cover - compiled
    rows, cols = grid.shape
    return greedy_insert(grid, threshold, max_vertices, workspace(rows * cols))


@njit(**JIT)
def greedy_insert(grid, threshold, max_vertices, work):  # pragma: no cover - compiled
    """Greedy insertion on ``grid`` using ``work`` (from :func:`workspace`); the returned vertex and
    half-edge arrays are views into it, valid until its next use."""
    rows, cols = grid.shape
    vx, vy, tv, he, err, cand_x, cand_y, heap, hpos, stamp, touched, stack = work
    top = 0.0
    for y in range(rows):
        for x in range(cols):
            a = abs(grid[y, x])
            if not a < np.inf:  # NaN or infinite
                return vx[:0], vy[:0], tv[:0], he[:0], np.nan, threshold
            top = max(top, a)
    # a sample on the surface shows a rounding error of ~1e-13 of the height: never insert for that
    threshold = max(threshold, 1e-9 * (1.0 + top))

    w, h = cols - 1, rows - 1
    vx[0], vy[0] = 0, 0
    vx[1], vy[1] = w, 0
    vx[2], vy[2] = w, h
    vx[3], vy[3] = 0, h
    nv = 4
    tv[0], tv[1], tv[2] = 0, 1, 2
    tv[3], tv[4], tv[5] = 0, 2, 3
    he[:6] = -1
    hpos[:2] = -1
    stamp[:2] = -1
    link(he, 2, 3)  # the diagonal: 2->0 in the first triangle, 0->2 in the second
    nt = 2
    n_heap = 0
    n_touch = 2
    touched[0], touched[1] = 0, 1
    it = 0
    while True:
        # rescan the triangles the last insertion created or changed
        for i in range(n_touch):
            t = touched[i]
            e0 = 3 * t
            a, b, c = tv[e0], tv[e0 + 1], tv[e0 + 2]
            e, x, y = worst_sample(grid, vx[a], vy[a], vx[b], vy[b], vx[c], vy[c])
            err[t], cand_x[t], cand_y[t] = e, x, y
            if e > threshold:
                if hpos[t] < 0:
                    heap[n_heap] = t
                    n_heap += 1
                    _sift_up(heap, hpos, err, n_heap - 1)
                else:
                    _sift_up(heap, hpos, err, hpos[t])
                    _sift_down(heap, hpos, err, hpos[t], n_heap)
            elif hpos[t] >= 0:
                j = hpos[t]
                hpos[t] = -1
                n_heap -= 1
                if j < n_heap:
                    moved = heap[n_heap]
                    heap[j] = moved
                    hpos[moved] = j
                    _sift_down(heap, hpos, err, j, n_heap)
                    _sift_up(heap, hpos, err, hpos[moved])
        if n_heap == 0 or nv >= max_vertices:
            break
        it += 1
        t = heap[0]
        px, py = cand_x[t], cand_y[t]
        v = nv
        vx[v], vy[v] = px, py
        nv += 1
        n_touch = 0
        e0 = 3 * t
        a, b, c = tv[e0], tv[e0 + 1], tv[e0 + 2]
        o0 = orient(vx[a], vy[a], vx[b], vy[b], px, py)
        o1 = orient(vx[b], vy[b], vx[c], vy[c], px, py)
        o2 = orient(vx[c], vy[c], vx[a], vy[a], px, py)
        n_stack = 0
        if o0 != 0 and o1 != 0 and o2 != 0:
            # inside: split into (a, b, v), (b, c, v), (c, a, v)
            t1, t2 = nt, nt + 1
            nt += 2
            hpos[t1] = hpos[t2] = -1
            h_bc, h_ca = he[e0 + 1], he[e0 + 2]
            tv[e0 + 1], tv[e0 + 2] = b, v
            tv[3 * t1], tv[3 * t1 + 1], tv[3 * t1 + 2] = b, c, v
            tv[3 * t2], tv[3 * t2 + 1], tv[3 * t2 + 2] = c, a, v
            link(he, 3 * t1, h_bc)
            link(he, 3 * t2, h_ca)
            link(he, e0 + 1, 3 * t1 + 2)
            link(he, 3 * t1 + 1, 3 * t2 + 2)
            link(he, 3 * t2 + 1, e0 + 2)
            for tt in (t, t1, t2):
                stamp[tt] = it
                touched[n_touch] = tt
                n_touch += 1
                stack[n_stack] = 3 * tt
                n_stack += 1
        else:
            k = 0 if o0 == 0 else (1 if o1 == 0 else 2)
            e = e0 + k
            en, ep = e0 + (k + 1) % 3, e0 + (k + 2) % 3
            x, y, wv = tv[e], tv[en], tv[ep]
            h_yw, h_wx, f = he[en], he[ep], he[e]
            # t becomes (x, v, w), t1 = (v, y, w)
            t1 = nt
            nt += 1
            hpos[t1] = -1
            tv[e0], tv[e0 + 1], tv[e0 + 2] = x, v, wv
            tv[3 * t1], tv[3 * t1 + 1], tv[3 * t1 + 2] = v, y, wv
            link(he, e0 + 1, 3 * t1 + 2)
            link(he, e0 + 2, h_wx)
            link(he, 3 * t1 + 1, h_yw)
            he[e0] = -1
            he[3 * t1] = -1
            for tt, s in ((t, 2), (t1, 1)):
                stamp[tt] = it
                touched[n_touch] = tt
                n_touch += 1
                stack[n_stack] = 3 * tt + s
                n_stack += 1
            if f >= 0:
                # the neighbour across the split edge: t' becomes (y, v, w'), t3 = (v, x, w')
                tp = f // 3
                kf = f % 3
                f0 = 3 * tp
                fn, fp = f0 + (kf + 1) % 3, f0 + (kf + 2) % 3
                wp = tv[fp]
                h_xwp, h_wpy = he[fn], he[fp]
                t3 = nt
                nt += 1
                hpos[t3] = -1
                tv[f0], tv[f0 + 1], tv[f0 + 2] = y, v, wp
                tv[3 * t3], tv[3 * t3 + 1], tv[3 * t3 + 2] = v, x, wp
                link(he, f0, 3 * t1)
                link(he, 3 * t3, e0)
                link(he, f0 + 1, 3 * t3 + 2)
                link(he, f0 + 2, h_wpy)
                link(he, 3 * t3 + 1, h_xwp)
                for tt, s in ((tp, 2), (t3, 1)):
                    stamp[tt] = it
                    touched[n_touch] = tt
                    n_touch += 1
                    stack[n_stack] = 3 * tt + s
                    n_stack += 1
        # restore the Delaunay property around v by flipping the edges opposite it
        while n_stack > 0:
            n_stack -= 1
            e = stack[n_stack]
            f = he[e]
            if f < 0:
                continue
            T, k = e // 3, e % 3
            A, B, V = tv[e], tv[3 * T + (k + 1) % 3], tv[3 * T + (k + 2) % 3]
            T2, kf = f // 3, f % 3
            W = tv[3 * T2 + (kf + 2) % 3]
            if incircle(vx[A], vy[A], vx[B], vy[B], vx[V], vy[V], vx[W], vy[W]) <= 0:
                continue
            h_bv, h_va = he[3 * T + (k + 1) % 3], he[3 * T + (k + 2) % 3]
            h_aw, h_wb = he[3 * T2 + (kf + 1) % 3], he[3 * T2 + (kf + 2) % 3]
            tv[3 * T], tv[3 * T + 1], tv[3 * T + 2] = A, W, V
            tv[3 * T2], tv[3 * T2 + 1], tv[3 * T2 + 2] = W, B, V
            link(he, 3 * T, h_aw)
            link(he, 3 * T + 1, 3 * T2 + 2)
            link(he, 3 * T + 2, h_va)
            link(he, 3 * T2, h_wb)
            link(he, 3 * T2 + 1, h_bv)
            for tt in (T, T2):
                if stamp[tt] != it:
                    stamp[tt] = it
                    touched[n_touch] = tt
                    n_touch += 1
            stack[n_stack] = 3 * T
            stack[n_stack + 1] = 3 * T2
            n_stack += 2
    worst = err[heap[0]] if n_heap > 0 else 0.0
    if n_heap == 0:
        for t in range(nt):
            worst = max(worst, err[t])
    return vx[:nv], vy[:nv], tv[: 3 * nt], he[: 3 * nt], worst, threshold
