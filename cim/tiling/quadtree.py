"""Quadtree partition of features with levels of detail measured from what each level drops.

Leaves hold every feature, at most ``max_features`` of them. A parent holds the
``max_features`` largest features of its subtree (the small ones dropped), and its geometric
error is the size of the largest feature it dropped: the most that rendering the parent instead
of its children can misplace on screen. Refinement is REPLACE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["TileNode", "quadtree_plan"]


@dataclass
class TileNode:
    """One tile of a quadtree plan.

    Attributes
    ----------
    level, x, y : the tile's quadtree key (level 0 is the root)
    features : (m,) int64, indices of the features in this tile's content, largest first in parents
    geometric_error : metres; 0 for leaves
    children : sub-tiles (empty for leaves)
    """

    level: int
    x: int
    y: int
    features: np.ndarray
    geometric_error: float = 0.0
    children: list[TileNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.level}-{self.x}-{self.y}"

    def walk(self):
        """Depth-first iteration over this node and its descendants (parents first)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def quadtree_plan(
    centres: np.ndarray,
    sizes: np.ndarray,
    max_features: int = 2000,
    max_level: int = 16,
) -> TileNode:
    """Plan a quadtree over feature centres.

    Parameters
    ----------
    centres : (n, 2) float, feature centres in a metric frame
    sizes : (n,) float, each feature's size in metres (its largest dimension)
    max_features : most features in one tile's content
    max_level : depth limit (a tile at this level is a leaf whatever its count)

    Returns
    -------
    The root TileNode.
    """
    centres = np.asarray(centres, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if len(centres) == 0:
        raise ValueError("no features to tile")
    lo = centres.min(axis=0)
    hi = centres.max(axis=0)
    side = float(max(hi - lo)) * 1.0001 + 1e-6
    return _plan(np.arange(len(centres)), centres, sizes, 0, 0, 0, lo[0], lo[1], side, max_features, max_level)


def _plan(
    idx: np.ndarray,
    centres: np.ndarray,
    sizes: np.ndarray,
    level: int,
    x: int,
    y: int,
    x0: float,
    y0: float,
    side: float,
    max_features: int,
    max_level: int,
) -> TileNode:
    if len(idx) <= max_features or level >= max_level:
        return TileNode(level, x, y, idx)
    half = side / 2.0
    east = centres[idx, 0] >= x0 + half
    north = centres[idx, 1] >= y0 + half
    children = []
    for qx in (0, 1):
        for qy in (0, 1):
            sel = idx[(east == bool(qx)) & (north == bool(qy))]
            if len(sel):
                children.append(
                    _plan(
                        sel,
                        centres,
                        sizes,
                        level + 1,
                        2 * x + qx,
                        2 * y + qy,
                        x0 + qx * half,
                        y0 + qy * half,
                        half,
                        max_features,
                        max_level,
                    )
                )
    if len(children) == 1:  # all in one quadrant: no level of detail to gain, go straight down
        only = children[0]
        return TileNode(level, x, y, only.features, only.geometric_error, only.children)
    order = idx[np.argsort(-sizes[idx], kind="stable")]
    keep, dropped = order[:max_features], order[max_features:]
    child_error = max(c.geometric_error for c in children)
    error = float(sizes[dropped].max()) if len(dropped) else 0.0
    # a parent's error must exceed its children's, or clients would never refine
    error = max(error, child_error * 1.25, 1.0)
    return TileNode(level, x, y, np.sort(keep), error, children)
