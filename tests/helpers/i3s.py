"""I3S test helpers: loaders.gl reading a scene layer package back (tests/tools/loadersgl), and
an independent reading of the source 3D Tiles layer to compare it with.

The source side is read here from the tileset JSON and the GLBs' own accessors (with the glTF
helpers of :mod:`cim.formats.glb`), not through :mod:`cim.export.tiles`, so that a mistake in the
exporter's reader does not cancel out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from cim.formats.glb import read_accessor, read_glb, read_property_table
from tests.helpers import REPO

LOADERSGL = REPO / "tests" / "tools" / "loadersgl"


def read_slpk(path: Path) -> dict:
    """What loaders.gl (``read_slpk.mjs``) reads from a package: layer, fields, nodes breadth
    first with their tree, features, vertices (ECEF) and attributes. Skips when Node or the npm
    packages are missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the I3S tests read packages back with loaders.gl in Node")
    if not (LOADERSGL / "node_modules" / "@loaders.gl" / "i3s").is_dir():
        pytest.skip("loaders.gl is not installed (make test-deps runs `npm ci` in tests/tools/loadersgl)")
    proc = subprocess.run([node, str(LOADERSGL / "read_slpk.mjs"), str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@dataclass
class SourceTile:
    """A tile of the source layer: its content (GLB or None), geometric error, children."""

    glb: Path | None
    error: float
    transform: np.ndarray
    children: list[SourceTile] = field(default_factory=list)
    #: (GLB, transform) of the ADD-refined ancestors whose content the tile's I3S node draws too
    added: list[tuple[Path, np.ndarray]] = field(default_factory=list)


def source_tree(tileset: Path, parent: np.ndarray | None = None) -> SourceTile:
    """The source layer's tile tree; an external tileset's root stands as its tile's child."""
    doc = json.loads(tileset.read_text())
    return _tile(doc["root"], tileset.parent, np.eye(4) if parent is None else parent)


def _tile(node: dict, base: Path, parent: np.ndarray, added: tuple = ()) -> SourceTile:
    m = parent @ np.array(node["transform"]).reshape(4, 4).T if "transform" in node else parent
    tile = SourceTile(None, node["geometricError"], m, added=list(added))
    uri = node.get("content", {}).get("uri")
    if uri and uri.endswith(".json"):
        sub = json.loads((base / uri).read_text())
        tile.children.append(_tile(sub["root"], (base / uri).parent, m, added))
    elif uri:
        tile.glb = base / uri
    handed = (*added, (tile.glb, m)) if node.get("refine") == "ADD" and tile.glb is not None else added
    tile.children += [_tile(c, base, m, handed) for c in node.get("children", [])]
    return tile


def breadth_first(tile: SourceTile) -> list[SourceTile]:
    out, queue = [], [tile]
    while queue:
        t = queue.pop(0)
        out.append(t)
        queue.extend(t.children)
    return out


def tile_features(tile: SourceTile, id_property: str) -> dict[str, tuple[dict, np.ndarray, np.ndarray]]:
    """``{feature id: (attributes, (3t, 3) ECEF vertices of its triangles in order, (3t, 3) their
    ECEF unit normals)}`` of a GLB tile written by cim (one node with a translation, primitives
    with indices, normals and feature ids), with those of the ADD-refined tiles it adds to."""
    assert tile.glb is not None
    out: dict[str, tuple[dict, list, list]] = {}
    for glb, transform in (*tile.added, (tile.glb, tile.transform)):
        _glb_features(glb, transform, id_property, out)
    return {k: (a, np.concatenate(v), np.concatenate(n)) for k, (a, v, n) in out.items()}


def _glb_features(glb: Path, transform: np.ndarray, id_property: str, out: dict) -> None:
    doc, binary = read_glb(glb.read_bytes())
    table = read_property_table(doc, binary, 0)
    node = doc["nodes"][0]
    translation = np.array(node.get("translation", [0.0, 0.0, 0.0]))
    for prim in doc["meshes"][node["mesh"]]["primitives"]:
        pos = read_accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64) + translation
        zup = np.stack([pos[:, 0], -pos[:, 2], pos[:, 1]], axis=1)  # glTF y-up → 3D Tiles z-up
        ecef = zup @ transform[:3, :3].T + transform[:3, 3]
        nrm = read_accessor(doc, binary, prim["attributes"]["NORMAL"]).astype(np.float64)[:, :3]
        nrm = np.stack([nrm[:, 0], -nrm[:, 2], nrm[:, 1]], axis=1) @ transform[:3, :3].T
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        fid = np.rint(read_accessor(doc, binary, prim["attributes"]["_FEATURE_ID_0"])).astype(int)
        tri = read_accessor(doc, binary, prim["indices"]).astype(int).reshape(-1, 3)
        for t in tri:
            row = fid[t[0]]
            key = table[id_property][row]
            attrs = {k: v[row] for k, v in table.items()}
            entry = out.setdefault(key, (attrs, [], []))
            entry[1].append(ecef[t])
            entry[2].append(nrm[t])


def tile_property_names(tile: SourceTile) -> set[str]:
    """The (source) names of the properties in a GLB tile's property tables."""
    assert tile.glb is not None
    doc, _ = read_glb(tile.glb.read_bytes())
    ext = doc["extensions"]["EXT_structural_metadata"]
    classes = ext["schema"]["classes"]
    return {classes[t["class"]]["properties"][pid].get("name", pid) for t in ext["propertyTables"] for pid in t["properties"]}


def quaternion_matrix(q: list[float]) -> np.ndarray:
    """(3, 3) rotation of a unit quaternion [x, y, z, w]."""
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
