"""3D Tiles 1.1 ``tileset.json`` pieces: bounding boxes, transforms, tiles.

Boxes are axis-aligned in the tileset's local frame (ENU, z up, after the root transform):
``[cx, cy, cz, hx, 0, 0, 0, hy, 0, 0, 0, hz]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np

from cim._version import __version__

__all__ = [
    "Asset",
    "box_from_bounds",
    "box_bounds",
    "transform_list",
    "replace_tree",
    "tileset_document",
    "enu_to_gltf",
]


class Asset(TypedDict, total=False):
    version: str
    generator: str


def box_from_bounds(lo: np.ndarray, hi: np.ndarray, pad: float = 0.01) -> list[float]:
    """A 3D Tiles box containing ``[lo, hi]`` (ENU), padded by ``pad`` metres against rounding."""
    lo = np.asarray(lo, dtype=np.float64) - pad
    hi = np.asarray(hi, dtype=np.float64) + pad
    c = (lo + hi) / 2.0
    h = np.maximum((hi - lo) / 2.0, 1e-3)
    return [float(c[0]), float(c[1]), float(c[2]), float(h[0]), 0.0, 0.0, 0.0, float(h[1]), 0.0, 0.0, 0.0, float(h[2])]


def box_bounds(box: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) corners of an axis-aligned 3D Tiles box."""
    c = np.array(box[:3])
    h = np.array(
        [abs(box[3]) + abs(box[6]) + abs(box[9]), abs(box[4]) + abs(box[7]) + abs(box[10]), abs(box[5]) + abs(box[8]) + abs(box[11])]
    )
    return c - h, c + h


def transform_list(matrix: np.ndarray) -> list[float]:
    """A row-major (4, 4) matrix as 3D Tiles' column-major list of 16 numbers."""
    return [float(v) for v in np.asarray(matrix, dtype=np.float64).T.ravel()]


def replace_tree(
    node: Any, bounds: dict[str, tuple[np.ndarray, np.ndarray]], error: Callable[[Any], float]
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The tileset JSON of a tree of tiles, REPLACE-refined unless a node's ``refine`` attribute
    says ``"ADD"``, with the tree's (lo, hi) box.

    ``node`` has ``name`` and ``children``; its content is ``tiles/<name>.glb``, whose box is
    ``bounds[name]``; ``error(node)`` is its geometric error. Each tile's bounding volume grows
    to hold its children's (a client culls a tile and everything under it by that box).
    """
    lo, hi = bounds[node.name]
    kids = []
    for child in node.children:
        cj, clo, chi = replace_tree(child, bounds, error)
        kids.append(cj)
        lo, hi = np.minimum(lo, clo), np.maximum(hi, chi)
    tile: dict[str, Any] = {
        "boundingVolume": {"box": box_from_bounds(lo, hi)},
        "geometricError": round(float(error(node)), 3),
        "refine": getattr(node, "refine", "REPLACE"),
        "content": {"uri": f"tiles/{node.name}.glb"},
    }
    if kids:
        tile["children"] = kids
    return tile, lo, hi


def tileset_document(root: dict[str, Any], geometric_error: float, **extra: Any) -> dict[str, Any]:
    """A 3D Tiles 1.1 tileset with ``root`` and the tileset-wide geometric error."""
    doc: dict[str, Any] = {
        "asset": {"version": "1.1", "generator": f"cim {__version__}"},
        "geometricError": float(geometric_error),
        "root": root,
    }
    doc.update(extra)
    return doc


def enu_to_gltf(v: np.ndarray) -> np.ndarray:
    """ENU (z up) vectors to glTF axes (y up): ``(e, n, u) → (e, u, -n)``.

    3D Tiles clients rotate glTF content from y-up to z-up (the spec's y-up to z-up transform),
    so a tile's GLB stores positions in this order.
    """
    v = np.asarray(v)
    out = np.empty_like(v)
    out[..., 0] = v[..., 0]
    out[..., 1] = v[..., 2]
    out[..., 2] = -v[..., 1]
    return out
