"""Export a built mesh layer (buildings, BIM, a reality mesh: GLB tiles) as an I3S scene layer
package (``.slpk``), the OGC community standard ArcGIS reads.

What is written (I3S 1.8, readable by 1.7 clients; see the README's table):

- layer type **3DObject** for layers of features (buildings, BIM, any kind whose GLBs carry
  ``EXT_mesh_features``), **IntegratedMesh** for a ``mesh`` layer (textured, no attributes);
- one I3S node per tile, the tileset's tree kept: each node's children are its tile's children.
  I3S requires an empty root, so when the tileset's root tile has content an empty node 0 is
  put above it. External tilesets (BIM models) are followed;
- ``lodThreshold`` as ``maxScreenThresholdSQ``, converted from each tile's geometric error so
  that a node switches to its children at the distance a 3D Tiles client with a maximum
  screen-space error of 16 px would refine the tile
  (:func:`cim.formats.i3s.resources.lod_threshold_sq`); leaves carry none;
- geometry in EPSG:4326 (WGS84 longitude, latitude, ellipsoidal height): each node's oriented
  bounding box is aligned with east-north-up at a point of the node, contains the node's
  vertices and its children's boxes; vertex positions are offsets from the box centre (degrees,
  degrees, metres), normals east-north-up at the centre, colours sRGB bytes;
- every property of the layer's property tables as an attribute field (with its statistics),
  after ``OBJECTID``: a feature keeps one id in every node it appears in (a building in a
  parent tile and in its leaf), known by its identity property (see :class:`_Features`).

Not written: 3DNodeIndexDocument and sharedResource (for pre-1.7 clients), Draco geometry,
point-cloud layers (I3S point clouds are a different profile; see the README). Implicitly tiled
layers are read through :func:`cim.export.tiles.read_tileset`, which walks their subtrees.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim._version import __version__
from cim.errors import CimInputError
from cim.export.tiles import Primitive, Table, Tile, read_tile_content, read_tileset
from cim.formats.glb import BOOLEAN_ENUM
from cim.formats.i3s import resources as r
from cim.formats.i3s.slpk import encode_slpk, gzip_bytes
from cim.kernels.color import linear_to_srgb
from cim.kernels.frames import ecef_to_geodetic, enu_rotation, geodetic_to_ecef
from cim.store import atomic_write_bytes

__all__ = ["I3SExport", "layer_kind", "export_i3s", "MESH_KINDS", "NODES_PER_PAGE"]

#: layer kinds whose GLB tiles are triangle meshes; ``mesh`` becomes an IntegratedMesh
MESH_KINDS = ("buildings", "bim", "mesh")
#: kinds that cannot be exported, and why
_REFUSED = {
    "terrain": "a terrain layer is quantized-mesh tiles, not GLB meshes: I3S has no terrain layer type",
    "imagery": "an imagery layer is image tiles: I3S has no imagery layer type",
    "pointcloud": "point-cloud layers are not exported to I3S (the PointCloud profile is not written; see the README)",
}
NODES_PER_PAGE = 64
_WGS84 = {"wkid": 4326, "latestWkid": 4326, "vcsWkid": 115700, "latestVcsWkid": 115700}
_CRS_URL = "http://www.opengis.net/def/crs/EPSG/0/4326"
#: material definitions: opaque, alpha-blended, textured (JPEG), textured (PNG)
_MATERIALS = [
    {"doubleSided": True, "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0, "roughnessFactor": 1}},
    {
        "doubleSided": True,
        "alphaMode": "blend",
        "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0, "roughnessFactor": 1},
    },
    {
        "doubleSided": True,
        "pbrMetallicRoughness": {"baseColorTexture": {"textureSetDefinitionId": 0}, "metallicFactor": 0, "roughnessFactor": 1},
    },
    {
        "doubleSided": True,
        "pbrMetallicRoughness": {"baseColorTexture": {"textureSetDefinitionId": 1}, "metallicFactor": 0, "roughnessFactor": 1},
    },
]
_TEXTURE_SETS = [{"formats": [{"name": "0", "format": "jpg"}]}, {"formats": [{"name": "0", "format": "png"}]}]
_IMAGE_FORMATS = {"image/jpeg": ("jpg", 2), "image/png": ("png", 3)}


@dataclass
class I3SExport:
    """What :func:`export_i3s` wrote."""

    path: Path
    layer_type: str
    kind: str
    nodes: int
    features: int
    triangles: int
    bytes: int
    seconds: float

    def summary(self) -> str:
        return (
            f"i3s {self.layer_type} ({self.kind}): {self.nodes} nodes, {self.features:,} features, "
            f"{self.triangles:,} triangles, {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s → {self.path}"
        )


def _read_layers(manifest: Path) -> list[dict[str, Any]]:
    if not manifest.is_file():
        return []
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [layer for layer in layers if isinstance(layer, dict) and "kind" in layer]


def _manifest_entry(layer_dir: Path) -> dict[str, Any] | None:
    """The layer's entry in a ``city.json``: the one beside its folder that lists the folder, or
    the one inside it whose layer lies in the folder itself (``cim convert`` writes a one-layer
    city whose tileset is at its top)."""
    for layer in _read_layers(layer_dir.parent / "city.json"):
        if str(layer.get("url", "")).split("/")[0] == layer_dir.name:
            return layer
    for layer in _read_layers(layer_dir / "city.json"):
        url = str(layer.get("url", ""))
        if url and "/" not in url and (layer_dir / url).is_file():
            return layer
    return None


def layer_kind(layer_dir: Path) -> str:
    """The kind of a built layer folder: from a ``city.json`` that lists it, else from its files
    (``layer.json``: terrain, ``imagery.json``: imagery, ``tileset.json``: ``"3dtiles"``, a
    tileset whose content decides: features make a 3DObject, none an IntegratedMesh).

    Raises
    ------
    CimInputError
        The folder is not a built layer.
    """
    layer_dir = Path(layer_dir)
    if not layer_dir.is_dir():
        raise CimInputError(f"{layer_dir}: not a folder (expected a built layer, e.g. tiles/city/buildings)")
    entry = _manifest_entry(layer_dir)
    if entry is not None:
        return str(entry["kind"])
    if (layer_dir / "layer.json").is_file():
        return "terrain"
    if (layer_dir / "imagery.json").is_file():
        return "imagery"
    if (layer_dir / "tileset.json").is_file():
        return "3dtiles"  # a tileset of unknown kind: its content decides (see export_i3s)
    layers = [str(layer.get("id", "?")) for layer in _read_layers(layer_dir / "city.json")]
    if layers:
        raise CimInputError(f"{layer_dir}: a built city, not a layer: give one of its layers ({', '.join(layers)})")
    raise CimInputError(f"{layer_dir}: not a built layer (no tileset.json, layer.json or imagery.json)")


@dataclass
class _Node:
    index: int
    parent: int | None
    tile: Tile | None
    error: float
    children: list[int] = field(default_factory=list)
    #: ADD-refined ancestors whose content this node draws too (I3S nodes replace their parent)
    added: tuple[Tile, ...] = ()
    # geometry, filled from the tile's content
    positions: np.ndarray | None = None  # (3t, 3) ECEF
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None  # (3t, 4) uint8
    uv: np.ndarray | None = None
    image: tuple[bytes, str] | None = None
    blend: bool = False
    oids: np.ndarray | None = None  # (f,) features in face order
    face_ranges: np.ndarray | None = None
    # bounding box
    center: np.ndarray | None = None  # ECEF
    axes: np.ndarray | None = None  # (3, 3) rows east, north, up at the box's reference
    half: np.ndarray | None = None
    extent: tuple[np.ndarray, np.ndarray] | None = None  # (lon, lat, h) min and max of the vertices


#: property names taken as a feature's identity when the layer names none (``id_property``)
ID_PROPERTIES = ("id", "GlobalId", "globalId", "gml_id", "uuid", "guid")


class _Features:
    """The layer's features: one OBJECTID (from 1) per distinct feature.

    A feature is known by its identity property (the layer's ``id_property`` in ``city.json``,
    else the first of :data:`ID_PROPERTIES` its table has), else by its class and all its
    non-empty values; its attributes are the first non-empty value of each property among the
    tiles it appears in (a tile leaves out columns empty in all its rows).
    """

    def __init__(self, id_property: str | None = None) -> None:
        self.id_property = id_property
        self.ids: dict[Any, int] = {}
        self.rows: list[dict[str, Any]] = []
        #: property id → (its source name, I3S value type), widened when tables disagree
        self.fields: dict[str, tuple[str, str]] = {}

    def table_ids(self, table: Table) -> np.ndarray:
        for pid, definition in table.properties.items():
            name, value_type = str(definition.get("name", pid)), _value_type(definition)
            known = self.fields.get(pid)
            self.fields[pid] = (name, value_type) if known is None else (known[0], _wider(known[1], value_type))
        pids = sorted(table.values)
        names = [self.id_property] if self.id_property else []
        identity = next((n for n in [*names, *ID_PROPERTIES] if n in table.values), None)
        out = np.empty(table.count, dtype=np.int64)
        for row in range(table.count):
            values = {pid: table.values[pid][row] for pid in pids if table.values[pid][row] not in (None, "")}
            if identity is not None and identity in values:
                key: Any = (table.class_name, identity, values[identity])
            else:
                key = (table.class_name, tuple(values.items()))
            out[row] = self._id(key, values)
        return out

    def none_id(self) -> int:
        return self._id(None, {})

    def _id(self, key: Any, values: dict[str, Any]) -> int:
        oid = self.ids.get(key)
        if oid is None:
            oid = self.ids[key] = len(self.rows) + 1
            self.rows.append(dict(values))
        else:
            row = self.rows[oid - 1]
            for k, v in values.items():
                row.setdefault(k, v)
        return oid


def export_i3s(layer_dir: str | Path, out: str | Path, *, name: str | None = None) -> I3SExport:
    """Write the built layer ``layer_dir`` as an I3S scene layer package ``out`` (see the module
    notes); the same layer gives the same bytes.

    Raises
    ------
    CimInputError
        ``layer_dir`` is not a built layer, or a kind that cannot be exported (terrain,
        imagery, point clouds), or tiles the export does not read.
    """
    start = time.perf_counter()
    layer_dir, out = Path(layer_dir), Path(out)
    kind = layer_kind(layer_dir)
    if kind in _REFUSED:
        raise CimInputError(f"{layer_dir}: {_REFUSED[kind]}")
    tileset_path = layer_dir / "tileset.json"
    if not tileset_path.is_file():
        raise CimInputError(f"{layer_dir}: a {kind} layer without tileset.json cannot be exported to I3S")
    if out.is_dir():
        raise CimInputError(f"{out}: is a folder; give the package's file name (e.g. {out / layer_dir.name}.slpk)")
    root, tileset_error = read_tileset(tileset_path)
    nodes = _plan_nodes(root, tileset_error, layer_dir)
    integrated = kind == "mesh" or (kind == "3dtiles" and not _has_features(nodes))
    layer_type = "IntegratedMesh" if integrated else "3DObject"
    entry = _manifest_entry(layer_dir) or {}
    features = _Features(entry.get("id_property") if isinstance(entry.get("id_property"), str) else None)
    triangles = 0
    for node in nodes:
        if node.tile is not None and node.tile.content is not None:
            primitives: list[Primitive] = []
            tables: list[Table] = []
            for tile in (*node.added, node.tile):
                assert tile.content is not None
                prims, tabs = read_tile_content(tile.content, tile.transform)
                primitives += [p if p.table is None else dataclasses.replace(p, table=p.table + len(tables)) for p in prims]
                tables += tabs
            triangles += _fill(node, primitives, tables, features, integrated)
    if not any(n.positions is not None for n in nodes):
        raise CimInputError(f"{layer_dir}: the layer has no triangles to export")
    for node in reversed(nodes):  # children before parents: a box holds its children's
        _bound(node, nodes)
    entries = _resources(nodes, features, integrated)
    entries["3dSceneLayer.json.gz"] = gzip_bytes(_dumps(_layer_document(nodes, features, layer_type, name or layer_dir.name, integrated)))
    entries["metadata.json"] = _dumps(
        {
            "folderPattern": "1",
            "ArchiveCompressionType": "Store",
            "ResourceCompressionType": "GZIP",
            "I3SVersion": "1.8",
            "nodeCount": len(nodes),
        }
    )
    data = encode_slpk(entries)
    atomic_write_bytes(out, data)
    n_features = 0 if integrated else len(features.rows)
    return I3SExport(out, layer_type, kind, len(nodes), n_features, triangles, len(data), time.perf_counter() - start)


def _has_features(nodes: list[_Node]) -> bool:
    """Whether the first tile with content has feature ids into a property table."""
    first = next((n.tile for n in nodes if n.tile is not None and n.tile.content is not None), None)
    if first is None or first.content is None:
        return False
    primitives, tables = read_tile_content(first.content, first.transform)
    return bool(tables) and any(p.feature_ids is not None and p.table is not None for p in primitives)


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _plan_nodes(root: Tile, tileset_error: float, layer_dir: Path) -> list[_Node]:
    """The I3S nodes, breadth first: an empty node 0 above the root tile when it has content."""
    nodes: list[_Node] = []
    if root.content is None:
        queue: list[tuple[Tile, int | None]] = [(root, None)]
    else:
        nodes.append(_Node(0, None, None, max(tileset_error, root.geometric_error)))
        queue = [(root, 0)]
    # I3S nodes replace their parent's content; a 3D Tiles tile that refines by ADD hands its
    # content down, so each of its descendants' nodes also draws it (``added``)
    added: dict[int, tuple[Tile, ...]] = {}
    while queue:
        tile, parent = queue.pop(0)
        node = _Node(len(nodes), parent, tile, tile.geometric_error)
        node.added = added.get(parent, ()) if parent is not None else ()
        nodes.append(node)
        if parent is not None:
            nodes[parent].children.append(node.index)
        if tile.refine == "ADD" and tile.content is not None and tile.children:
            added[node.index] = (*node.added, tile)
        elif node.added:
            added[node.index] = node.added
        queue.extend((child, node.index) for child in tile.children)
    return nodes


def _fill(node: _Node, primitives: list[Primitive], tables: list[Table], features: _Features, integrated: bool) -> int:
    """Put a tile's triangles into ``node``: unindexed, grouped by feature; returns their count."""
    oid_tables = [] if integrated else [features.table_ids(t) for t in tables]
    pos, nrm, col, uvs, oids = [], [], [], [], []
    images = set()
    for prim in primitives:
        if len(prim.triangles) == 0:
            continue
        idx = prim.triangles.reshape(-1)
        pos.append(prim.positions[idx])
        nrm.append(prim.normals[idx] if prim.normals is not None else _face_normals(prim.positions, prim.triangles))
        col.append(prim.colors[idx])
        if prim.alpha_mode == "BLEND" or bool((prim.colors[:, 3] < 1.0).any()):
            node.blend = True
        if integrated:
            if prim.image is not None and prim.uv is not None:
                images.add(prim.image)
                uvs.append(prim.uv[idx])
            else:
                uvs.append(np.zeros((len(idx), 2)))
            continue
        first = prim.triangles[:, 0]
        if prim.feature_ids is not None and prim.table is not None and prim.table < len(oid_tables):
            rows = prim.feature_ids[first]
            face_oids = np.where(rows >= 0, oid_tables[prim.table][np.maximum(rows, 0)], -1)
        else:
            face_oids = np.full(len(first), -1, dtype=np.int64)
        if (face_oids < 0).any():
            face_oids = np.where(face_oids < 0, features.none_id(), face_oids)
        oids.append(face_oids)
    if not pos:
        return 0
    positions, normals, colors = np.concatenate(pos), np.concatenate(nrm), np.concatenate(col)
    if integrated:
        if len(images) > 1:
            raise CimInputError(
                f"{node.tile.content if node.tile else 'a tile'}: several textures in one tile (I3S nodes hold one; atlases are not made)"
            )
        if images:
            node.image = images.pop()
            node.uv = np.concatenate(uvs)
    else:
        face_oids = np.concatenate(oids)
        order = np.argsort(face_oids, kind="stable")
        vertex_order = (order[:, None] * 3 + np.arange(3)[None, :]).reshape(-1)
        positions, normals, colors = positions[vertex_order], normals[vertex_order], colors[vertex_order]
        sorted_oids = face_oids[order]
        node.oids, first = np.unique(sorted_oids, return_index=True)
        last = np.append(first[1:], len(sorted_oids)) - 1
        node.face_ranges = np.stack([first, last], axis=1)
    srgb = np.clip(np.rint(linear_to_srgb(np.clip(colors[:, :3], 0.0, 1.0)) * 255.0), 0, 255)
    alpha = np.clip(np.rint(colors[:, 3:4] * 255.0), 0, 255)
    node.positions, node.normals = positions, normals
    node.colors = np.hstack([srgb, alpha]).astype(np.uint8)
    return len(positions) // 3


def _face_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Flat normals (one a face, repeated on its three vertices) for a primitive without any."""
    a, b, c = (positions[triangles[:, i]] for i in range(3))
    n = np.cross(b - a, c - a)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return np.repeat(n, 3, axis=0)


def _box_corners(center: np.ndarray, axes: np.ndarray, half: np.ndarray) -> np.ndarray:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return center + (signs * half) @ axes


def _bound(node: _Node, nodes: list[_Node]) -> None:
    """The node's box: east-north-up axes at the centre of its points' ECEF box (its vertices,
    its children's box corners, else its tile's bounding volume), holding all of them."""
    points = []
    if node.positions is not None:
        points.append(node.positions)
    for child in node.children:
        c = nodes[child]
        if c.center is not None and c.axes is not None and c.half is not None:
            points.append(_box_corners(c.center, c.axes, c.half))
    if not points and node.tile is not None:
        points.append(_volume_points(node.tile))
    if not points:
        return
    pts = np.concatenate(points) if len(points) > 1 else points[0]
    ref = (pts.min(axis=0) + pts.max(axis=0)) / 2.0
    lon, lat, _ = ecef_to_geodetic(ref[None, :])
    axes = enu_rotation(float(lon[0]), float(lat[0]))
    local = (pts - ref) @ axes.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    node.center = ref + ((lo + hi) / 2.0) @ axes
    node.axes = axes
    node.half = np.maximum((hi - lo) / 2.0, 0.005) + 0.005


def _volume_points(tile: Tile) -> np.ndarray:
    """Corners of a tile's bounding volume in ECEF (box, region or sphere)."""
    bv = tile.bounding_volume
    m = tile.transform
    if "box" in bv:
        b = np.asarray(bv["box"], dtype=np.float64)
        axes = b[3:12].reshape(3, 3)
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
        local = b[:3] + signs @ axes
        return local @ m[:3, :3].T + m[:3, 3]
    if "region" in bv:
        w, s, e, n, lo, hi = bv["region"]
        lons, lats, hs = np.meshgrid(np.degrees([w, e]), np.degrees([s, n]), [lo, hi])
        return geodetic_to_ecef(lons.ravel(), lats.ravel(), hs.ravel())
    if "sphere" in bv:
        cx, cy, cz, radius = bv["sphere"]
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
        return (np.array([cx, cy, cz]) + signs * radius) @ m[:3, :3].T + m[:3, 3]
    raise CimInputError("a tile without a bounding volume and without content")


def _obb(node: _Node) -> tuple[dict[str, Any], np.ndarray]:
    assert node.center is not None and node.axes is not None and node.half is not None
    lon, lat, h = ecef_to_geodetic(node.center[None, :])
    center = np.array([lon[0], lat[0], h[0]])
    obb = {
        "center": [float(center[0]), float(center[1]), float(center[2])],
        "halfSize": [round(float(v), 4) for v in node.half],
        "quaternion": r.quaternion_from_rotation(node.axes.T),
    }
    return obb, center


def _resources(nodes: list[_Node], features: _Features, integrated: bool) -> dict[str, bytes]:
    """Node pages, geometry, attribute and texture resources, and statistics."""
    entries: dict[str, bytes] = {}
    fields = _fields(features) if not integrated else []
    columns = []
    for key, (pid, _field, _alias, value_type) in enumerate(fields):
        values = list(range(1, len(features.rows) + 1)) if key == 0 else [_value(row.get(pid), value_type) for row in features.rows]
        columns.append(r.AttributeColumn(value_type, values))
        if key:  # OBJECTID has no statistics
            entries[f"statistics/f_{key}/0.json.gz"] = gzip_bytes(_dumps(r.attribute_statistics(value_type, values)))
    page: list[dict[str, Any]] = []
    for node in nodes:
        obb, center = _obb(node)
        entry: dict[str, Any] = {"index": node.index, "obb": obb}
        if node.parent is not None:
            entry["parentIndex"] = node.parent
        if node.children:
            entry["children"] = node.children
            radius = float(np.linalg.norm(obb["halfSize"]))
            entry["lodThreshold"] = round(r.lod_threshold_sq(radius, max(node.error, 1e-6)), 4)
        if node.positions is not None:
            entry["mesh"] = _node_resources(node, center, columns, entries)
        page.append(entry)
    for i in range(0, len(page), NODES_PER_PAGE):
        entries[f"nodepages/{i // NODES_PER_PAGE}.json.gz"] = gzip_bytes(_dumps({"nodes": page[i : i + NODES_PER_PAGE]}))
    return entries


_NUMBERS = ("Int16", "Int32", "Float64")


def _value_type(definition: dict[str, Any]) -> str:
    """The I3S value type of an EXT_structural_metadata property (arrays, vectors and enums: text)."""
    kind = definition.get("type")
    if kind == "ENUM" and definition.get("enumType") == BOOLEAN_ENUM:  # a boolean with absent values
        kind = "BOOLEAN"
    if definition.get("array") or kind not in ("STRING", "BOOLEAN", "SCALAR"):
        return "String"
    key = kind if kind in ("STRING", "BOOLEAN") else str(definition.get("componentType"))
    return r.FIELD_TYPES.get(key, r.FIELD_TYPES["STRING"])[1]


def _wider(a: str, b: str) -> str:
    """A value type that holds both (a property typed differently in two tiles)."""
    if a == b:
        return a
    if a in _NUMBERS and b in _NUMBERS:
        return max(a, b, key=_NUMBERS.index)
    return "String"


def _fields(features: _Features) -> list[tuple[str, str, str, str]]:
    """(property id, field name, alias, I3S value type) of each attribute field, OBJECTID first;
    a source property named like OBJECTID gets another field name."""
    out = [(r.OBJECTID, r.OBJECTID, r.OBJECTID, "Oid32")]
    taken = {r.OBJECTID.lower()}
    for pid, (name, value_type) in features.fields.items():
        field_name, n = pid, 1
        while field_name.lower() in taken:
            field_name, n = f"{pid}_{n}", n + 1
        taken.add(field_name.lower())
        out.append((pid, field_name, name, value_type))
    return out


def _value(v: Any, value_type: str) -> Any:
    if v is None:
        return None
    if value_type == "String":
        return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    if value_type == "Float64":
        return float(v)
    return int(v)


def _node_resources(node: _Node, center: np.ndarray, columns: list[r.AttributeColumn], entries: dict[str, bytes]) -> dict[str, Any]:
    assert node.positions is not None and node.normals is not None and node.colors is not None
    lon, lat, h = ecef_to_geodetic(node.positions)
    node.extent = (np.array([lon.min(), lat.min(), h.min()]), np.array([lon.max(), lat.max(), h.max()]))
    offsets = np.stack([lon - center[0], lat - center[1], h - center[2]], axis=1)
    enu = enu_rotation(float(center[0]), float(center[1]))
    normals = node.normals @ enu.T
    geometry = r.encode_geometry(offsets, normals, node.colors, node.uv, node.oids, node.face_ranges)
    i = node.index
    entries[f"nodes/{i}/geometries/0.bin.gz"] = gzip_bytes(geometry)
    n_features = 0 if node.oids is None else len(node.oids)
    material = 1 if node.blend else 0
    if node.image is not None:
        ext, material = _IMAGE_FORMATS.get(node.image[1], (None, 0))
        if ext is None:
            raise CimInputError(f"{node.tile.content if node.tile else 'a tile'}: texture type {node.image[1]} (JPEG or PNG are written)")
        entries[f"nodes/{i}/textures/0.{ext}"] = node.image[0]
    mesh: dict[str, Any] = {
        "material": {"definition": material, "resource": i},
        "geometry": {"definition": 0, "resource": i, "vertexCount": len(node.positions), "featureCount": n_features},
    }
    if columns and node.oids is not None:
        rows = node.oids - 1
        for key, column in enumerate(columns):
            entries[f"nodes/{i}/attributes/f_{key}/0.bin.gz"] = gzip_bytes(column.take(rows))
        mesh["attribute"] = {"resource": i}
    return mesh


def _layer_document(nodes: list[_Node], features: _Features, layer_type: str, name: str, integrated: bool) -> dict[str, Any]:
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for node in nodes:
        if node.extent is not None:
            lo, hi = np.minimum(lo, node.extent[0]), np.maximum(hi, node.extent[1])
    identity = uuid.uuid5(uuid.NAMESPACE_URL, f"cim:{name}:{layer_type}:{len(nodes)}:{len(features.rows)}:{lo.tolist()}:{hi.tolist()}")
    textured = any(n.image is not None for n in nodes)
    doc: dict[str, Any] = {
        "id": 0,
        "layerType": layer_type,
        "name": name,
        "alias": name,
        "description": f"Exported by cim {__version__} from a 3D Tiles layer",
        "version": str(identity).upper(),
        "capabilities": ["View", "Query"],
        "spatialReference": _WGS84,
        "heightModelInfo": {"heightModel": "ellipsoidal", "vertCRS": "WGS_84", "heightUnit": "meter"},
        "store": {
            "id": str(identity),
            "profile": "meshpyramids",
            "resourcePattern": ["Geometry", "Attributes", "Texture"]
            if textured
            else (["Geometry"] if integrated else ["Geometry", "Attributes"]),
            "version": "1.8",
            "extent": [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])],
            "indexCRS": _CRS_URL,
            "vertexCRS": _CRS_URL,
            "normalReferenceFrame": "east-north-up",
            "lodType": "MeshPyramid",
            "lodModel": "node-switching",
            "defaultGeometrySchema": r.default_geometry_schema(),
        },
        "nodePages": {"nodesPerPage": NODES_PER_PAGE, "rootIndex": 0, "lodSelectionMetricType": "maxScreenThresholdSQ"},
        "materialDefinitions": _MATERIALS,
        "geometryDefinitions": [r.geometry_definition(features=not integrated)],
        "fullExtent": {
            "xmin": float(lo[0]),
            "ymin": float(lo[1]),
            "xmax": float(hi[0]),
            "ymax": float(hi[1]),
            "zmin": float(lo[2]),
            "zmax": float(hi[2]),
            "spatialReference": _WGS84,
        },
    }
    if textured:
        doc["textureSetDefinitions"] = _TEXTURE_SETS
    if not integrated:
        fields = _fields(features)
        doc["fields"] = [
            r.field_definition(name, "esriFieldTypeOID" if key == 0 else _field_type(vt), alias)
            for key, (_pid, name, alias, vt) in enumerate(fields)
        ]
        doc["attributeStorageInfo"] = [r.attribute_storage_info(f"f_{key}", name, vt) for key, (_p, name, _a, vt) in enumerate(fields)]
        doc["statisticsInfo"] = [
            {"key": f"f_{key}", "name": name, "href": f"./statistics/f_{key}/0"} for key, (_p, name, _a, _vt) in enumerate(fields) if key
        ]
    return doc


def _field_type(value_type: str) -> str:
    return {"String": "esriFieldTypeString", "Int16": "esriFieldTypeSmallInteger", "Int32": "esriFieldTypeInteger"}.get(
        value_type, "esriFieldTypeDouble"
    )
