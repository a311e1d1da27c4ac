"""Small CityJSON documents made in the tests, and readers of the CityJSON layer's tiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cim.formats.glb import read_accessor, read_glb, read_property_table

#: Tianshui, EPSG:4544 metres (the sample city's CRS): where the synthetic objects stand
ORIGIN = (566000.0, 3827000.0, 1150.0)
SCALE = 0.001


def box(x0: float, y0: float, z0: float, w: float, d: float, h: float, vertices: list[list[int]]) -> list:
    """A box as one Solid shell (outer rings counter-clockwise seen from outside), its eight
    corners appended to ``vertices`` (integers of :data:`SCALE` relative to :data:`ORIGIN`);
    the surfaces in order ground, roof, 4 walls."""
    base = len(vertices)
    for z in (z0, z0 + h):
        for x, y in ((x0, y0), (x0 + w, y0), (x0 + w, y0 + d), (x0, y0 + d)):
            vertices.append([round(x / SCALE), round(y / SCALE), round(z / SCALE)])
    b = base
    return [
        [[b + 0, b + 3, b + 2, b + 1]],
        [[b + 4, b + 5, b + 6, b + 7]],
        [[b + 0, b + 1, b + 5, b + 4]],
        [[b + 1, b + 2, b + 6, b + 5]],
        [[b + 2, b + 3, b + 7, b + 6]],
        [[b + 3, b + 0, b + 4, b + 7]],
    ]


BOX_SEMANTICS = {
    "surfaces": [{"type": "GroundSurface"}, {"type": "RoofSurface"}, {"type": "WallSurface"}],
    "values": [[0, 1, 2, 2, 2, 2]],
}


def solid(shell: list, lod: str, semantics: bool = True) -> dict:
    g: dict = {"type": "Solid", "lod": lod, "boundaries": [shell]}
    if semantics:
        g["semantics"] = json.loads(json.dumps(BOX_SEMANTICS))
    return g


def document(
    objects: dict, vertices: list, *, version: str = "2.0", crs: str | None = "https://www.opengis.net/def/crs/EPSG/0/4544"
) -> dict:
    doc: dict = {
        "type": "CityJSON",
        "version": version,
        "transform": {"scale": [SCALE] * 3, "translate": list(ORIGIN)},
        "CityObjects": objects,
        "vertices": vertices,
    }
    if crs is not None:
        doc["metadata"] = {"referenceSystem": crs}
    return doc


def write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def two_lod_city() -> dict:
    """Three buildings: A with LoD 1.2 (10 m) and 2.2 (12 m), B with LoD 1.2 only, C with 2.2
    only; A has a BuildingPart with LoD 2.2."""
    v: list = []
    objects = {
        "A": {
            "type": "Building",
            "attributes": {"name": "Alpha", "floors": 4, "height": 12.0, "listed": True, "tags": ["a", "b"]},
            "children": ["A-1"],
            "geometry": [solid(box(0, 0, 0, 10, 10, 10, v), "1.2"), solid(box(0, 0, 0, 10, 10, 12, v), "2.2")],
        },
        "A-1": {
            "type": "BuildingPart",
            "parents": ["A"],
            "attributes": {"floors": 2},
            "geometry": [solid(box(10, 0, 0, 5, 5, 6, v), "2.2")],
        },
        "B": {"type": "Building", "attributes": {"name": "Beta", "listed": False}, "geometry": [solid(box(40, 0, 0, 8, 8, 9, v), "1.2")]},
        "C": {"type": "Building", "attributes": {"floors": 7}, "geometry": [solid(box(80, 0, 0, 8, 8, 20, v), "2.2")]},
    }
    return document(objects, v)


def to_seq(doc: dict) -> str:
    """A CityJSONSeq of a CityJSON document: its header, then one CityJSONFeature per top-level
    object (with its descendants and their vertices, renumbered from 0)."""
    header = {k: v for k, v in doc.items() if k not in ("CityObjects", "vertices", "appearance")}
    header["CityObjects"] = {}
    header["vertices"] = []
    lines = [json.dumps(header)]
    objects = doc["CityObjects"]
    for oid in sorted(o for o, obj in objects.items() if not obj.get("parents")):
        members, todo = {}, [oid]
        while todo:
            o = todo.pop(0)
            members[o] = objects[o]
            todo += objects[o].get("children", [])
        used: dict[int, int] = {}

        def renumber(b, used=used):
            if isinstance(b, list):
                return [renumber(x) for x in b]
            return used.setdefault(b, len(used))

        feature_objects = {}
        for o, obj in members.items():
            obj = dict(obj)
            obj["geometry"] = [
                {**{k: val for k, val in g.items() if k not in ("texture", "material")}, "boundaries": renumber(g["boundaries"])}
                for g in obj.get("geometry", [])
            ]
            feature_objects[o] = obj
        vertices = [doc["vertices"][i] for i in sorted(used, key=used.get)]
        lines.append(json.dumps({"type": "CityJSONFeature", "id": oid, "CityObjects": feature_objects, "vertices": vertices}))
    return "\n".join(lines) + "\n"


def read_tile(path: Path) -> dict:
    """A CityJSON tile's arrays: positions (tile-relative, glTF axes), translation, normals,
    triangles, feature ids, surface codes, and its property table."""
    doc, bin_chunk = read_glb(path.read_bytes())
    prim = doc["meshes"][0]["primitives"][0]
    attrs = prim["attributes"]
    return {
        "doc": doc,
        "positions": read_accessor(doc, bin_chunk, attrs["POSITION"]).astype(np.float64),
        "translation": np.array(doc["nodes"][0]["translation"]),
        "normals": read_accessor(doc, bin_chunk, attrs["NORMAL"]),
        "triangles": read_accessor(doc, bin_chunk, prim["indices"]).reshape(-1, 3).astype(np.int64),
        "feature_ids": read_accessor(doc, bin_chunk, attrs["_FEATURE_ID_0"]).astype(np.int64),
        "codes": read_accessor(doc, bin_chunk, attrs["_SURFACE"]).astype(np.int64),
        "table": read_property_table(doc, bin_chunk, 0),
    }


def tile_ecef(tile: dict, root_transform: list[float]) -> np.ndarray:
    """ECEF of a tile's vertices: glTF y-up → z-up, the node translation, the root's transform."""
    p = tile["positions"] + tile["translation"]
    enu = np.stack([p[:, 0], -p[:, 2], p[:, 1]], axis=1)
    m = np.array(root_transform, dtype=np.float64).reshape(4, 4).T
    return enu @ m[:3, :3].T + m[:3, 3]
