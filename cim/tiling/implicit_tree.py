"""A REPLACE-refined quadtree of feature tiles written with 3D Tiles 1.1 implicit tiling.

The buildings quadtree (:func:`cim.tiling.quadtree.quadtree_plan`) is not the uniform
subdivision implicit tiling assumes, in three ways, and the subtrees' tile metadata says what
differs:

- a node whose features all fall in one quadrant goes straight down to that quadrant's
  children: the tiles of the levels it skips are available without content, with the node's
  box and geometric error, so a client refines through them exactly when it would refine the
  node;
- a feature's geometry extends past its quadtree cell: every tile's real box (its content's and
  its descendants', as in the explicit tileset) is its ``TILE_BOUNDING_BOX``;
- each tile's geometric error is measured, not halved per level: it is its
  ``TILE_GEOMETRIC_ERROR``.

So a client that reads these semantics (CesiumJS does) culls and refines the implicit tree as it
would the explicit one. A tile ``(level, x, y)`` keeps its quadtree plan's key (x eastwards, y
northwards) and its content the explicit tileset's name (``tiles/{level}-{x}-{y}.glb``); the
root's volume is the explicit root's box, so that a client culls the whole tree as it would
(the plan's square over feature centres would leave out the parts of edge buildings beyond it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cim.formats.tileset import box_from_bounds
from cim.tiling.implicit import implicit_tiling, subtree_files

__all__ = ["IMPLICIT_CONTENT_URI", "TILE_CLASS", "tile_metadata_schema", "implicit_replace_tree"]

#: the content template of an implicit quadtree of feature tiles (the explicit tiles' names)
IMPLICIT_CONTENT_URI = "tiles/{level}-{x}-{y}.glb"
#: the schema class of the subtrees' tile metadata
TILE_CLASS = "tile"


def tile_metadata_schema() -> dict[str, Any]:
    """The tileset ``schema`` whose class :data:`TILE_CLASS` the subtrees' tile metadata uses."""
    return {
        "id": "cim_implicit",
        "classes": {
            TILE_CLASS: {
                "properties": {
                    "boundingBox": {
                        "type": "SCALAR",
                        "componentType": "FLOAT64",
                        "array": True,
                        "count": 12,
                        "semantic": "TILE_BOUNDING_BOX",
                    },
                    "geometricError": {"type": "SCALAR", "componentType": "FLOAT64", "semantic": "TILE_GEOMETRIC_ERROR"},
                }
            }
        },
    }


def implicit_replace_tree(
    root: Any,
    bounds: dict[str, tuple[np.ndarray, np.ndarray]],
    error: Callable[[Any], float],
    subtree_levels: int,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, dict[str, bytes]]:
    """The implicit root tile of a quadtree of tiles, its (lo, hi) box and its subtree files.

    Parameters
    ----------
    root : the quadtree's root (level 0), with ``level``, ``x``, ``y``, ``name`` and
        ``children`` (a child may be more than one level below its parent)
    bounds : each node's content box (lo, hi), ENU, by name
    error : a node's geometric error
    subtree_levels : levels of each subtree file (fewer when the tree is shallower)

    Returns
    -------
    The root tile (no transform), the tree's box (lo, hi) and the subtree files by path.
    Boxes and errors are those :func:`cim.formats.tileset.replace_tree` gives the same tree.
    """
    if root.level != 0 or root.x != 0 or root.y != 0:
        raise ValueError(f"an implicit quadtree starts at tile 0-0-0, not {root.name}")
    tiles: dict[tuple[int, int, int], tuple[list[float], float, bool]] = {}

    def visit(node: Any) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = bounds[node.name]
        for child in node.children:
            clo, chi = visit(child)
            lo, hi = np.minimum(lo, clo), np.maximum(hi, chi)
        box = box_from_bounds(lo, hi)
        err = round(float(error(node)), 3)
        tiles[(node.level, node.x, node.y)] = (box, err, True)
        for child in node.children:
            if child.level <= node.level:
                raise ValueError(f"tile {child.name} is not below its parent {node.name}")
            for level in range(node.level + 1, child.level):
                shift = child.level - level
                tiles[(level, child.x >> shift, child.y >> shift)] = (box, err, False)
        return lo, hi

    lo, hi = visit(root)
    keys = sorted(tiles)
    level = np.array([k[0] for k in keys], dtype=np.int64)
    x = np.array([k[1] for k in keys], dtype=np.int64)
    y = np.array([k[2] for k in keys], dtype=np.int64)
    content = np.array([tiles[k][2] for k in keys], dtype=bool)
    boxes = np.array([tiles[k][0] for k in keys], dtype=np.float64).reshape(-1, 12)
    errors = np.array([tiles[k][1] for k in keys], dtype=np.float64)
    levels = int(level.max()) + 1
    per = min(int(subtree_levels), levels)
    files = subtree_files(level, x, y, None, content, per, TILE_CLASS, {"boundingBox": boxes, "geometricError": errors})
    top = tiles[(0, 0, 0)]
    tile = {
        "boundingVolume": {"box": top[0]},
        "geometricError": top[1],
        "refine": "REPLACE",
        "content": {"uri": IMPLICIT_CONTENT_URI},
        "implicitTiling": implicit_tiling(False, per, levels),
    }
    return tile, lo, hi, files
