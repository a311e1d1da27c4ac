"""Groups of boxes that lie together: connected components of boxes closer than a gap."""

from __future__ import annotations

import numpy as np

__all__ = ["box_groups"]


def box_groups(lo: np.ndarray, hi: np.ndarray, gap: float) -> np.ndarray:
    """Label 2D boxes by place: two boxes belong together when less than ``gap`` apart (in x and
    y both), and so do their neighbours' neighbours (single linkage).

    Parameters
    ----------
    lo, hi : (n, 2) float arrays, the boxes' corners
    gap : the largest distance between boxes of one place

    Returns
    -------
    (n,) int64 labels, 0 for the group of the first box, numbered in order of first appearance.

    A sweep along x: each box is compared only with those whose x range reaches within ``gap`` of
    its own, so a survey's grid of tiles costs about n·k comparisons (k: tiles across a gap).
    """
    lo = np.asarray(lo, dtype=np.float64).reshape(-1, 2)
    hi = np.asarray(hi, dtype=np.float64).reshape(-1, 2)
    n = len(lo)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    order = np.argsort(lo[:, 0], kind="stable")
    xs = lo[order, 0]
    for a, i in enumerate(order):
        reach = hi[i, 0] + gap
        stop = int(np.searchsorted(xs, reach, side="right"))
        if stop <= a + 1:
            continue
        js = order[a + 1 : stop]
        near = (lo[js, 1] <= hi[i, 1] + gap) & (hi[js, 1] >= lo[i, 1] - gap)
        for j in js[near]:
            ri, rj = find(int(i)), find(int(j))
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    _, first, labels = np.unique(roots, return_index=True, return_inverse=True)
    # renumber by first appearance
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[labels]
