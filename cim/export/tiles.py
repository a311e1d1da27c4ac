"""Read a built 3D Tiles layer of GLB meshes back into arrays: its tile tree, and each tile's
triangles in ECEF with normals, colours, texture coordinates, feature ids and property tables.

Generic over what cim writes (buildings, BIM, a reality mesh) and what 3D Tiles 1.1 allows
around it: nested transforms, external tilesets (a content that is a ``.json``), implicit
quadtrees (3D Tiles 1.1 implicit tiling: the subtrees' availability walked into the same tree,
each tile's box and geometric error from the subtrees' ``TILE_BOUNDING_BOX`` and
``TILE_GEOMETRIC_ERROR`` metadata when they carry it, else subdivided), glTF node
hierarchies with matrices or TRS, indexed or plain triangles, ``KHR_mesh_quantization``
(normalized integer attributes), ``EXT_mesh_features`` feature ids by attribute and
``EXT_structural_metadata`` property tables. glTF content is y-up: the 3D Tiles y-up to z-up
rotation is applied before the tile transforms.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim.errors import CimInputError
from cim.formats.glb import read_accessor, read_glb, read_property_table
from cim.formats.subtree import decode_subtree, decode_tile_metadata

__all__ = ["Primitive", "Table", "Tile", "read_tileset", "read_tile_content", "walk"]

#: glTF y-up to 3D Tiles z-up: (x, y, z) → (x, -z, y)
Y_UP_TO_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])


@dataclass
class Table:
    """One property table: its class, the class's property definitions and the values
    (``{property id: [value or None] * count}``)."""

    class_name: str
    properties: dict[str, dict[str, Any]]
    values: dict[str, list[Any]]
    count: int


@dataclass
class Primitive:
    """One triangle primitive, its vertices in ECEF.

    Attributes
    ----------
    positions : (v, 3) float64 ECEF metres
    normals : (v, 3) float64 unit ECEF vectors, or None
    colors : (v, 4) float64 linear RGB and alpha in [0, 1] (``COLOR_0`` times the base colour)
    triangles : (t, 3) int64 vertex indices
    feature_ids : (v,) int64 rows of ``table`` (-1: no feature), or None
    table : index into the tile's tables, or None
    uv : (v, 2) float64 ``TEXCOORD`` of the base colour texture, or None
    image : the base colour texture's encoded bytes and MIME type, or None
    alpha_mode : the material's ``alphaMode``
    """

    positions: np.ndarray
    normals: np.ndarray | None
    colors: np.ndarray
    triangles: np.ndarray
    feature_ids: np.ndarray | None = None
    table: int | None = None
    uv: np.ndarray | None = None
    image: tuple[bytes, str] | None = None
    alpha_mode: str = "OPAQUE"


@dataclass
class Tile:
    """A tile of the tree: its geometric error, refinement, transform to ECEF (row-major 4×4),
    bounding volume, content file (None when it has none) and children."""

    geometric_error: float
    refine: str
    transform: np.ndarray
    bounding_volume: dict[str, Any]
    content: Path | None
    children: list[Tile] = field(default_factory=list)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CimInputError(f"{path}: no such file (the tileset names it)") from None
    except (OSError, ValueError) as exc:
        raise CimInputError(f"{path}: not a readable tileset ({exc})") from None


def read_tileset(path: Path) -> tuple[Tile, float]:
    """The tile tree of ``tileset.json`` (external tilesets grafted in) and its geometric error."""
    doc = _read_json(path)
    if "root" not in doc:
        raise CimInputError(f"{path}: not a 3D Tiles tileset (no root)")
    try:
        root = _tile(doc["root"], path.parent, np.eye(4), "REPLACE", path)
    except (KeyError, TypeError, ValueError, struct.error) as exc:
        raise CimInputError(f"{path}: a malformed tile ({type(exc).__name__}: {exc})") from None
    return root, float(doc.get("geometricError", root.geometric_error))


def _tile(node: dict[str, Any], base: Path, parent: np.ndarray, refine: str, source: Path) -> Tile:
    transform = parent
    if "transform" in node:
        transform = parent @ np.asarray(node["transform"], dtype=np.float64).reshape(4, 4).T
    refine = node.get("refine", refine)
    if "implicitTiling" in node:
        return _implicit_tile(node, base, transform, refine, source)
    content = None
    children: list[Tile] = []
    uri = (node.get("content") or {}).get("uri")
    if uri is None and node.get("contents"):
        raise CimInputError(f"{source}: tiles with several contents are not read by the I3S export")
    if uri is not None:
        target = (base / uri).resolve()
        if target.suffix == ".json":
            # an external tileset: its root stands in for this tile's content
            sub = _read_json(target)
            if "root" not in sub:
                raise CimInputError(f"{target}: not a 3D Tiles tileset (no root)")
            children.append(_tile(sub["root"], target.parent, transform, refine, target))
        else:
            content = target
    children += [_tile(child, base, transform, refine, source) for child in node.get("children", [])]
    return Tile(float(node.get("geometricError", 0.0)), refine, transform, node.get("boundingVolume", {}), content, children)


def _deinterleave(code: int, level: int) -> tuple[int, int]:
    """(x, y) of a quadtree tile from its Morton index within its level (x in the lower bits)."""
    x = y = 0
    for i in range(level):
        x |= ((code >> (2 * i)) & 1) << i
        y |= ((code >> (2 * i + 1)) & 1) << i
    return x, y


def _split_box(box: list[float], x: int, y: int, level: int) -> list[float]:
    """The box of tile (x, y) ``level`` levels below a quadtree root's oriented box (halved along
    its first two axes per level, as implicit tiling subdivides)."""
    b = np.asarray(box, dtype=np.float64)
    centre, u, v, w = b[:3], b[3:6], b[6:9], b[9:12]
    n = 2**level
    centre = centre + u * ((2 * x + 1) / n - 1) + v * ((2 * y + 1) / n - 1)
    return [*centre.tolist(), *(u / n).tolist(), *(v / n).tolist(), *w.tolist()]


def _implicit_tile(node: dict[str, Any], base: Path, transform: np.ndarray, refine: str, source: Path) -> Tile:
    """The explicit tree of an implicit quadtree tile: its subtrees' availability walked from the
    root subtree down (see the module notes)."""
    tiling = node["implicitTiling"]
    if tiling.get("subdivisionScheme") != "QUADTREE":
        raise CimInputError(f"{source}: implicit {str(tiling.get('subdivisionScheme')).lower()} tiling is not read by the I3S export")
    levels, available = int(tiling["subtreeLevels"]), int(tiling["availableLevels"])
    subtree_uri = tiling["subtrees"]["uri"]
    content_uri = (node.get("content") or {}).get("uri")
    root_box = node["boundingVolume"].get("box")
    if root_box is None:
        raise CimInputError(f"{source}: an implicit tile without a box volume is not read by the I3S export")
    root_error = float(node.get("geometricError", 0.0))
    n_tiles, n_children = (4**levels - 1) // 3, 4**levels

    def subtree(level: int, x: int, y: int) -> Tile:
        path = base / subtree_uri.format(level=level, x=x, y=y)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CimInputError(f"{path}: no such file (the implicit tileset {source.name} names it)") from None
        tiles, contents, kids = decode_subtree(data, n_tiles, n_children)
        try:  # the boxes and errors cim's writer measured (cim.tiling.implicit_tree)
            meta = decode_tile_metadata(data, {"boundingBox": 12, "geometricError": 1})
        except KeyError:  # other tile metadata: the tiles' volumes as implicit tiling subdivides
            meta = {}
        rows = np.cumsum(tiles) - 1  # a tile's row in the metadata table: its rank among the available
        depth = min(levels, available - level)

        def tile(r: int, code: int) -> Tile:
            bit = (4**r - 1) // 3 + code
            lx, ly = _deinterleave(code, r)
            gl, gx, gy = level + r, (x << r) | lx, (y << r) | ly
            if meta:
                box = meta["boundingBox"][rows[bit]].tolist()
                error = float(meta["geometricError"][rows[bit], 0])
            else:
                box, error = _split_box(root_box, gx, gy, gl), root_error / 2**gl
            children = []
            for k in range(4):
                child = code * 4 + k
                if r + 1 < depth and tiles[(4 ** (r + 1) - 1) // 3 + child]:
                    children.append(tile(r + 1, child))
                elif r + 1 == levels and level + levels < available and kids[child]:
                    cx, cy = _deinterleave(child, levels)
                    children.append(subtree(level + levels, (x << levels) | cx, (y << levels) | cy))
            target = (base / content_uri.format(level=gl, x=gx, y=gy)).resolve() if content_uri and contents[bit] else None
            return Tile(error, refine, transform, {"box": box}, target, children)

        if not tiles[0]:
            raise CimInputError(f"{path}: the subtree's root tile is not available")
        return tile(0, 0)

    return subtree(0, 0, 0)


def walk(tile: Tile) -> Iterator[Tile]:
    """The tiles of a tree, breadth first."""
    queue = [tile]
    while queue:
        t = queue.pop(0)
        yield t
        queue.extend(t.children)


def read_tile_content(path: Path, transform: np.ndarray) -> tuple[list[Primitive], list[Table]]:
    """The triangle primitives (in ECEF, by the tile's ``transform``) and property tables of a GLB.

    Raises
    ------
    CimInputError
        Not a GLB, point or line primitives, compressed buffers (meshopt, Draco).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CimInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return _decode(data, transform, path)
    except CimInputError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
        raise CimInputError(f"{path}: not a GLB the I3S export can read ({type(exc).__name__}: {exc})") from None


def _decode(data: bytes, transform: np.ndarray, path: Path) -> tuple[list[Primitive], list[Table]]:
    doc, binary = read_glb(data)
    for ext in ("EXT_meshopt_compression", "KHR_draco_mesh_compression"):
        if ext in doc.get("extensionsUsed", []):
            raise CimInputError(f"{path}: {ext} content is not read by the I3S export")
    tables = _tables(doc, binary)
    primitives: list[Primitive] = []
    scene = doc.get("scenes", [{}])[doc.get("scene", 0)] if doc.get("scenes") else {"nodes": list(range(len(doc.get("nodes", []))))}
    base = transform @ Y_UP_TO_Z_UP
    for index in scene.get("nodes", []):
        _node(doc, binary, index, base, primitives, path)
    return primitives, tables


def _tables(doc: dict[str, Any], binary: bytes) -> list[Table]:
    ext = doc.get("extensions", {}).get("EXT_structural_metadata")
    if not ext:
        return []
    classes = ext.get("schema", {}).get("classes", {})
    out = []
    for i, table in enumerate(ext.get("propertyTables", [])):
        props = classes.get(table["class"], {}).get("properties", {})
        values = read_property_table(doc, binary, i)
        out.append(Table(table["class"], {pid: props[pid] for pid in values}, values, int(table["count"])))
    return out


def _local_matrix(node: dict[str, Any]) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T
    m = np.eye(4)
    x, y, z, w = node.get("rotation", [0.0, 0.0, 0.0, 1.0])
    r = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    m[:3, :3] = r * np.asarray(node.get("scale", [1.0, 1.0, 1.0]))[None, :]
    m[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
    return m


def _node(doc: dict[str, Any], binary: bytes, index: int, parent: np.ndarray, out: list[Primitive], path: Path) -> None:
    node = doc["nodes"][index]
    matrix = parent @ _local_matrix(node)
    if "mesh" in node:
        for prim in doc["meshes"][node["mesh"]]["primitives"]:
            out.append(_primitive(doc, binary, prim, matrix, path))
    for child in node.get("children", []):
        _node(doc, binary, child, matrix, out, path)


def _primitive(doc: dict[str, Any], binary: bytes, prim: dict[str, Any], matrix: np.ndarray, path: Path) -> Primitive:
    mode = prim.get("mode", 4)
    if mode != 4:
        raise CimInputError(f"{path}: primitive mode {mode} (only triangles become I3S meshes)")
    attrs = prim["attributes"]
    local = read_accessor(doc, binary, attrs["POSITION"]).astype(np.float64)
    positions = local @ matrix[:3, :3].T + matrix[:3, 3]
    n = len(positions)
    normals = None
    if "NORMAL" in attrs:
        normal_matrix = np.linalg.inv(matrix[:3, :3]).T
        nrm = read_accessor(doc, binary, attrs["NORMAL"]).astype(np.float64)[:, :3] @ normal_matrix.T
        normals = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    if "indices" in prim:
        triangles = read_accessor(doc, binary, prim["indices"]).astype(np.int64).reshape(-1, 3)
    else:
        triangles = np.arange(n, dtype=np.int64).reshape(-1, 3)
    material = doc.get("materials", [{}])[prim["material"]] if "material" in prim else {}
    pbr = material.get("pbrMetallicRoughness", {})
    base = np.asarray(pbr.get("baseColorFactor", [1.0, 1.0, 1.0, 1.0]), dtype=np.float64)
    colors = np.tile(base, (n, 1))
    if "COLOR_0" in attrs:
        c = read_accessor(doc, binary, attrs["COLOR_0"]).astype(np.float64)
        if c.shape[1] == 3:
            c = np.hstack([c, np.ones((n, 1))])
        colors = colors * c
    uv = image = None
    texture = pbr.get("baseColorTexture")
    if texture is not None:
        key = f"TEXCOORD_{texture.get('texCoord', 0)}"
        if key in attrs:
            uv = read_accessor(doc, binary, attrs[key]).astype(np.float64)
            image = _image(doc, binary, texture["index"], path)
    feature_ids = table = None
    fids = prim.get("extensions", {}).get("EXT_mesh_features", {}).get("featureIds", [])
    if fids:
        first = fids[0]
        if "attribute" in first:
            feature_ids = np.rint(read_accessor(doc, binary, attrs[f"_FEATURE_ID_{first['attribute']}"])).astype(np.int64)
        elif "texture" not in first:
            feature_ids = np.arange(n, dtype=np.int64)  # implicit ids: the vertex index
        if feature_ids is not None:
            if "nullFeatureId" in first:
                feature_ids[feature_ids == first["nullFeatureId"]] = -1
            table = first.get("propertyTable")
    return Primitive(positions, normals, colors, triangles, feature_ids, table, uv, image, material.get("alphaMode", "OPAQUE"))


def _image(doc: dict[str, Any], binary: bytes, texture_index: int, path: Path) -> tuple[bytes, str]:
    source = doc["textures"][texture_index].get("source")
    if source is None:
        raise CimInputError(f"{path}: texture {texture_index} has no source image (KTX2/WebP extensions are not read)")
    img = doc["images"][source]
    if "bufferView" not in img:
        raise CimInputError(f"{path}: image {source} is not embedded in the GLB")
    view = doc["bufferViews"][img["bufferView"]]
    start = view.get("byteOffset", 0)
    return binary[start : start + view["byteLength"]], img.get("mimeType", "image/jpeg")
