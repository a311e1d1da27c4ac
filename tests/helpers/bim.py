"""BIM test helpers: sample positions in EPSG:4544, readers of a BIM layer's tiles (ECEF
positions, feature tables), and edits that make an IFC file hard for the geometry kernel."""

from __future__ import annotations

import json
import math
from pathlib import Path

import ifcopenshell
import ifcopenshell.guid
import numpy as np
from pyproj import Transformer

from cim.formats.glb import read_accessor, read_glb, read_property_table
from cim.kernels.frames import LocalFrame

#: the city frame's origin of the BIM tests (EPSG:4544 and ellipsoidal height)
CITY = dict(easting=566050.0, northing=3827000.0, height=1100.0)
#: a one-storey 10 × 8 m sample building (``write_sample_ifc(path, **SMALL_SPEC)``)
SMALL_SPEC = dict(
    easting=566000.0, northing=3827000.0, base_height=1150.0, rotation_deg=0.0, width=10.0, depth=8.0, storeys=1, name="Robust", seed=2
)


# -- where things are, and what a layer holds ------------------------------------------------


def city_frame(easting: float = CITY["easting"], northing: float = CITY["northing"], height: float = CITY["height"]) -> LocalFrame:
    """The BIM tests' city frame: a point in EPSG:4544 at an ellipsoidal height."""
    lon, lat = Transformer.from_crs("EPSG:4544", "EPSG:4326", always_xy=True).transform(easting, northing)
    return LocalFrame(lon, lat, height)


def map_to_ecef(e: np.ndarray, n: np.ndarray, h: np.ndarray) -> np.ndarray:
    """EPSG:4544 easting/northing and ellipsoidal height → ECEF, by pyproj alone."""
    lon, lat = Transformer.from_crs("EPSG:4544", "EPSG:4326", always_xy=True).transform(e, n)
    x, y, z = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, h)
    return np.stack([np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(z)], axis=1)


def geodetic_enu_to_ecef(lon: float, lat: float, h: float, enu: np.ndarray) -> np.ndarray:
    """ENU metres at a geodetic point → ECEF: pyproj for the point, the textbook basis for the axes."""
    x, y, z = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, h)
    lam, phi = math.radians(lon), math.radians(lat)
    east = np.array([-math.sin(lam), math.cos(lam), 0.0])
    north = np.array([-math.sin(phi) * math.cos(lam), -math.sin(phi) * math.sin(lam), math.cos(phi)])
    up = np.array([math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)])
    enu = np.atleast_2d(enu)
    return np.array([x, y, z]) + enu[:, :1] * east + enu[:, 1:2] * north + enu[:, 2:3] * up


def _matrix(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(4, 4).T


def walk_layer(layer: Path):
    """Every tile of a layer across its external tilesets: (tile, tileset folder, transform, depth, parent)."""
    out = []

    def walk(tile, base: Path, transform: np.ndarray, depth: int, parent):
        if "transform" in tile:
            transform = transform @ _matrix(tile["transform"])
        out.append((tile, base, transform, depth, parent))
        uri = tile.get("content", {}).get("uri", "")
        if uri.endswith(".json"):
            sub = base / uri
            walk(json.loads(sub.read_text())["root"], sub.parent, transform, depth + 1, tile)
        for child in tile.get("children", []):
            walk(child, base, transform, depth + 1, tile)

    walk(json.loads((layer / "tileset.json").read_text())["root"], layer, np.eye(4), 0, None)
    return out


def read_tile(path: Path) -> dict:
    """A tile's primitives in its tileset's frame (ENU, z up) with feature rows, and its table."""
    doc, binary = read_glb(path.read_bytes())
    node = doc["nodes"][0]
    t = np.array(node.get("translation", [0.0, 0.0, 0.0]))
    prims = []
    for prim in doc["meshes"][0]["primitives"]:
        p = read_accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64) + t
        enu = np.stack([p[:, 0], -p[:, 2], p[:, 1]], axis=1)  # glTF y-up → z-up
        material = doc["materials"][prim["material"]]
        prims.append(
            {
                "enu": enu,
                "rows": read_accessor(doc, binary, prim["attributes"]["_FEATURE_ID_0"]).astype(int),
                "alpha": _alpha(doc, binary, prim["attributes"]["COLOR_0"]),
                "alpha_mode": material.get("alphaMode", "OPAQUE"),
                "indices": read_accessor(doc, binary, prim["indices"]),
            }
        )
    table = read_property_table(doc, binary)
    schema = doc["extensions"]["EXT_structural_metadata"]["schema"]["classes"]["element"]["properties"]
    return {"prims": prims, "table": table, "schema": schema, "doc": doc}


def _alpha(doc: dict, binary: bytes, index: int) -> np.ndarray:
    """Alpha of a normalized RGBA COLOR_0 accessor, in [0, 1]."""
    acc = doc["accessors"][index]
    assert acc["componentType"] == 5123 and acc["type"] == "VEC4" and acc.get("normalized")
    c = np.asarray(read_accessor(doc, binary, index), dtype=np.float64)
    return c[:, 3] / 65535.0 if c.max() > 1.0 else c[:, 3]


def layer_tiles(layer: Path) -> list[tuple[dict, Path, np.ndarray, dict]]:
    """(tile json, glb path, transform, decoded tile) for every GLB of a layer."""
    out = []
    for tile, base, transform, _, _ in walk_layer(layer):
        uri = tile.get("content", {}).get("uri", "")
        if uri.endswith(".glb"):
            out.append((tile, base / uri, transform, read_tile(base / uri)))
    return out


def to_ecef(transform: np.ndarray, enu: np.ndarray) -> np.ndarray:
    """(n, 3) positions in a tileset's frame → ECEF, by its (4, 4) transform."""
    return enu @ transform[:3, :3].T + transform[:3, 3]


def nearest(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Distance from each target to the nearest of ``points``."""
    out = np.empty(len(targets))
    for i, t in enumerate(targets):
        out[i] = np.sqrt(((points - t) ** 2).sum(axis=1)).min()
    return out


def all_ecef(layer: Path, model: str | None = None) -> np.ndarray:
    """Every vertex of a layer's tiles (of one model's, given its name) in ECEF."""
    pts = [
        to_ecef(tr, p["enu"])
        for _, path, tr, t in layer_tiles(layer)
        if model is None or f"/{model}/" in path.as_posix()
        for p in t["prims"]
    ]
    return np.concatenate(pts)


def elements_of(layer: Path) -> dict[str, dict]:
    """GlobalId → a row of attributes, over every tile of a layer."""
    out: dict[str, dict] = {}
    for _, _, _, t in layer_tiles(layer):
        table = t["table"]
        for i, gid in enumerate(table["GlobalId"]):
            out[gid] = {k: v[i] for k, v in table.items()}
    return out


# -- edits of an IFC file ------------------------------------------------------------------


def body(f: ifcopenshell.file, solid) -> object:
    """A product shape of one Body representation holding ``solid``."""
    ctx = next(c for c in f.by_type("IfcGeometricRepresentationSubContext") if c.ContextIdentifier == "Body")
    return f.createIfcProductDefinitionShape(None, None, [f.createIfcShapeRepresentation(ctx, "Body", "SweptSolid", [solid])])


def placement(f: ifcopenshell.file, x: float, y: float, z: float, rel=None):
    """A local placement at ``(x, y, z)`` (project units), relative to ``rel``."""
    return f.createIfcLocalPlacement(rel, f.createIfcAxis2Placement3D(f.createIfcCartesianPoint((x, y, z)), None, None))


def storey(f: ifcopenshell.file):
    """The model's first storey."""
    return f.by_type("IfcBuildingStorey")[0]


def add_broken_proxy(f: ifcopenshell.file) -> str:
    """A proxy whose extrusion has zero depth: the kernel refuses it."""
    profile = f.createIfcRectangleProfileDef("AREA", None, None, 1000.0, 1000.0)
    solid = f.createIfcExtrudedAreaSolid(profile, None, f.createIfcDirection((0.0, 0.0, 1.0)), 1.0)
    solid.Depth = 0.0
    proxy = f.createIfcBuildingElementProxy(
        ifcopenshell.guid.new(), None, "broken", None, None, placement(f, 0, 0, 0), body(f, solid), None
    )
    f.createIfcRelContainedInSpatialStructure(ifcopenshell.guid.new(), None, None, None, [proxy], storey(f))
    return proxy.GlobalId


def add_swiss_cheese_wall(f: ifcopenshell.file, openings: int = 1600) -> str:
    """A 20 m wall with ``openings`` small openings: OpenCASCADE's subtraction takes about 24 s
    here (400 openings: 3 s), far beyond the timeout the test gives it."""
    profile = f.createIfcRectangleProfileDef(
        "AREA", None, f.createIfcAxis2Placement2D(f.createIfcCartesianPoint((10000.0, 150.0)), None), 20000.0, 300.0
    )
    solid = f.createIfcExtrudedAreaSolid(profile, None, f.createIfcDirection((0.0, 0.0, 1.0)), 5000.0)
    wall = f.createIfcWall(ifcopenshell.guid.new(), None, "swiss cheese", None, None, placement(f, 30000, 0, 0), body(f, solid), None, None)
    f.createIfcRelContainedInSpatialStructure(ifcopenshell.guid.new(), None, None, None, [wall], storey(f))
    hole = f.createIfcExtrudedAreaSolid(
        f.createIfcRectangleProfileDef("AREA", None, None, 60.0, 60.0), None, f.createIfcDirection((0.0, 1.0, 0.0)), 500.0
    )
    shape = body(f, hole)
    per_row = 80
    for i in range(openings):
        x, z = 100.0 + (i % per_row) * 240.0, 100.0 + (i // per_row) * 240.0
        opening = f.createIfcOpeningElement(
            ifcopenshell.guid.new(), None, None, None, None, placement(f, x, -100.0, z, wall.ObjectPlacement), shape, None
        )
        f.createIfcRelVoidsElement(ifcopenshell.guid.new(), None, None, None, wall, opening)
    return wall.GlobalId


def variant(base: Path, tmp_path: Path, *edits) -> tuple[Path, list[str]]:
    """``base`` with ``edits`` applied (each ``edit(file) -> GlobalId``), written as ``tmp_path / "variant.ifc"``."""
    f = ifcopenshell.open(str(base))
    ids = [edit(f) for edit in edits]
    path = tmp_path / "variant.ifc"
    f.write(str(path))
    return path, ids
