"""3D Tiles 1.1 implicit tiling: a whole quadtree or octree named by one tile and its subtree files.

A layer of many thousand tiles written explicitly has a ``tileset.json`` that grows with it (about
300 bytes a tile): a client downloads and parses all of it before the first tile. With implicit
tiling the tree is the uniform subdivision of one root volume: a tile is ``(level, x, y, z)``,
its volume the root's cut in ``2**level`` along each axis, its geometric error the root's halved
at each level, its content at a URI template (``tiles/{level}/{x}/{y}/{z}.glb``). Which tiles
exist is said by subtree files of ``subtree_levels`` levels each (:mod:`cim.formats.subtree`),
fetched as the client descends, so ``tileset.json`` keeps a few KB at any size.

Conventions of the specification followed here: within a level, tiles are in Morton order with
x in the lowest bit (then y, then z); a subtree's bits run level by level from its root; its
child subtrees are the tiles one level below its last level, in Morton order relative to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cim.formats.subtree import encode_subtree

__all__ = ["morton_index", "subtree_files", "implicit_tiling", "CONTENT_URI", "SUBTREE_URI"]

#: where an implicit layer's tiles and subtree files go (relative to its tileset.json)
CONTENT_URI = "tiles/{level}/{x}/{y}/{z}.glb"
SUBTREE_URI = "subtrees/{level}/{x}/{y}/{z}.subtree"


def morton_index(x: np.ndarray, y: np.ndarray, z: np.ndarray | None, bits: int) -> np.ndarray:
    """Morton indices of tiles within their level: one bit of x, y (and z) per level, x lowest.

    Parameters
    ----------
    x, y, z : (n,) int, tile coordinates below ``2**bits`` (``z`` None for a quadtree)
    bits : levels to interleave
    """
    axes = [np.asarray(a, dtype=np.uint64) for a in ((x, y) if z is None else (x, y, z))]
    dims = len(axes)
    out = np.zeros(len(axes[0]), dtype=np.uint64)
    for i in range(bits):
        for k, a in enumerate(axes):
            out |= ((a >> np.uint64(i)) & np.uint64(1)) << np.uint64(dims * i + k)
    return out


def subtree_files(
    level: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray | None,
    content: np.ndarray,
    subtree_levels: int,
    metadata_class: str | None = None,
    properties: dict[str, np.ndarray] | None = None,
) -> dict[str, bytes]:
    """The subtree files of a tree of available tiles, by their path (:data:`SUBTREE_URI`).

    Parameters
    ----------
    level, x, y, z : (n,) int, the available tiles (``z`` None for a quadtree); every tile's
        parent must be among them
    content : (n,) bool, the tiles that have content
    subtree_levels : levels of each subtree
    metadata_class, properties : the tiles' metadata (see :func:`cim.formats.subtree.encode_subtree`),
        ``properties`` one row for each of the tiles given (any order)
    """
    level = np.asarray(level, dtype=np.int64)
    if len(level) == 0:
        return {}
    quad = z is None
    dims = 2 if quad else 3
    b = 1 << dims
    s = int(subtree_levels)
    xs = np.asarray(x, dtype=np.uint64)
    ys = np.asarray(y, dtype=np.uint64)
    zs = np.zeros_like(xs) if z is None else np.asarray(z, dtype=np.uint64)
    content = np.asarray(content, dtype=bool)
    code = morton_index(xs, ys, None if quad else zs, int(level.max()))
    top = (level // s) * s  # each tile's subtree: the one whose root is at level ``top``
    rel = (level - top).astype(np.uint64)
    root = np.stack([top, xs >> rel, ys >> rel, zs >> rel], axis=1).astype(np.int64)
    offsets = (np.uint64(b) ** rel - np.uint64(1)) // np.uint64(b - 1)
    bit = offsets + (code & ((np.uint64(1) << (np.uint64(dims) * rel)) - np.uint64(1)))
    # subtree roots below the first: each is a child of the subtree above it
    child = (level > 0) & (level % s == 0)
    parent = np.stack([level[child] - s, xs[child] >> np.uint64(s), ys[child] >> np.uint64(s), zs[child] >> np.uint64(s)], axis=1)
    child_bit = code[child] & np.uint64((1 << (dims * s)) - 1)

    keys, inverse = np.unique(root, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_tiles = (b**s - 1) // (b - 1)
    tiles = np.zeros((len(keys), n_tiles), dtype=bool)
    has = np.zeros((len(keys), n_tiles), dtype=bool)
    kids = np.zeros((len(keys), b**s), dtype=bool)
    tiles[inverse, bit.astype(np.int64)] = True
    has[inverse[content], bit[content].astype(np.int64)] = True
    if len(parent):
        where = {tuple(k): i for i, k in enumerate(keys.tolist())}
        rows = np.array([where[tuple(p)] for p in parent.astype(np.int64).tolist()], dtype=np.int64)
        kids[rows, child_bit.astype(np.int64)] = True
    template = SUBTREE_URI.replace("/{z}", "") if quad else SUBTREE_URI
    tables: list[dict[str, np.ndarray] | None] = [None] * len(keys)
    if properties is not None:
        # each subtree's rows in the order of its availability bits
        order = np.lexsort((bit, inverse))
        starts = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
        for i in range(len(keys)):
            sel = order[starts[i] : starts[i + 1]]
            tables[i] = {name: np.asarray(v)[sel] for name, v in properties.items()}
    return {
        template.format(level=lv, x=kx, y=ky, z=kz): encode_subtree(tiles[i], has[i], kids[i], metadata_class, tables[i])
        for i, (lv, kx, ky, kz) in enumerate(keys.tolist())
    }


def implicit_tiling(octree: bool, subtree_levels: int, available_levels: int) -> dict[str, Any]:
    """The ``implicitTiling`` object of an implicit root tile whose subtrees are at
    :data:`SUBTREE_URI` (without ``{z}`` for a quadtree)."""
    uri = SUBTREE_URI if octree else SUBTREE_URI.replace("/{z}", "")
    return {
        "subdivisionScheme": "OCTREE" if octree else "QUADTREE",
        "subtreeLevels": int(subtree_levels),
        "availableLevels": int(available_levels),
        "subtrees": {"uri": uri},
    }
