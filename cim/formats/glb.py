"""GLB writer with EXT_mesh_features and EXT_structural_metadata.

A small builder, not a general glTF library: it writes what cim's tiles need (one mesh of
triangles or points, feature ids, one property table) and nothing it cannot validate. Every buffer
view starts on an 8-byte boundary, as EXT_structural_metadata requires.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cim.kernels.color import srgb_to_linear

__all__ = [
    "GLB_MAGIC",
    "CHUNK_JSON",
    "CHUNK_BIN",
    "BOOLEAN_ENUM",
    "BOOLEAN_ENUM_DEFINITION",
    "BOOLEAN_ENUM_NO_DATA",
    "NO_DATA",
    "RaggedTake",
    "property_id",
    "EncodedColumn",
    "encode_column",
    "FeatureColumns",
    "PropertyTable",
    "GltfBuilder",
    "RawJSON",
    "column_definition",
    "add_property_table",
    "attach_property_table",
    "quantize_normals",
    "add_normals",
    "PropertyAttribute",
    "add_property_attribute",
    "encode_feature_mesh",
    "base_color_factor",
    "read_glb",
    "read_accessor",
    "read_property_table",
]

GLB_MAGIC = 0x46546C67
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942

FLOAT, UNSIGNED_SHORT, UNSIGNED_INT, UNSIGNED_BYTE, BYTE = 5126, 5123, 5125, 5121, 5120
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TRIANGLES, POINTS = 4, 0

_IDENT = re.compile(r"[^A-Za-z0-9_]")

#: the enum of a boolean attribute that some features do not have (an IFC property set that does
#: not apply to an element): EXT_structural_metadata's BOOLEAN cannot carry noData, so such a
#: column is an ENUM of this type, whose ``unknown`` value is its noData (a reader gets no value)
BOOLEAN_ENUM = "cim_boolean"
BOOLEAN_ENUM_NO_DATA = "unknown"
BOOLEAN_ENUM_DEFINITION: dict = {
    "description": "A boolean; unknown where the feature has no value.",
    "valueType": "UINT8",
    "values": [{"name": "false", "value": 0}, {"name": "true", "value": 1}, {"name": BOOLEAN_ENUM_NO_DATA, "value": 255}],
}

#: noData sentinels per metadata type, used only for columns that hold nulls
NO_DATA: dict[str, int | float | str] = {"INT32": -(2**31), "INT64": -(2**63), "FLOAT64": -1.7976931348623157e308, "STRING": ""}


#: ``(values, offsets, rows) -> (values, offsets)``: a gather of ragged items (string columns)
RaggedTake = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def property_id(name: str) -> str:
    """A schema-safe identifier for an attribute name (``[A-Za-z_][A-Za-z0-9_]*``)."""
    ident = _IDENT.sub("_", name.strip()) or "_"
    return ident if not ident[0].isdigit() else "_" + ident


@dataclass
class EncodedColumn:
    """One attribute column, encoded once for the whole layer in its binary metadata form.

    ``values`` is the binary payload per row: for STRING a flat uint8 array with ``offsets``
    (n + 1, int64); for numbers a typed array with nulls already replaced by ``no_data``; for
    BOOLEAN a bool array (bit-packed when written).
    """

    name: str
    kind: str
    values: np.ndarray
    offsets: np.ndarray | None = None
    no_data: object = None

    def take(self, rows: np.ndarray, ragged: RaggedTake | None = None) -> EncodedColumn:
        """The rows ``rows`` of this column (a numpy gather, no Python loop; a string column
        through ``ragged`` when given, such as :func:`cim.kernels.ragged.take_ragged`)."""
        if self.offsets is None:
            return EncodedColumn(self.name, self.kind, self.values[rows], None, self.no_data)
        if ragged is not None:
            values, offsets = ragged(self.values, self.offsets, rows)
            return EncodedColumn(self.name, self.kind, values, offsets, self.no_data)
        start = self.offsets[rows]
        length = self.offsets[rows + 1] - start
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(length, out=offsets[1:])
        index = np.repeat(start - offsets[:-1], length) + np.arange(offsets[-1])
        return EncodedColumn(self.name, self.kind, self.values[index], offsets, self.no_data)


def encode_column(name: str, column: np.ndarray, kind: str) -> EncodedColumn:
    """Encode one attribute column (STRING: object array with None for null; numbers: float
    with NaN for null, or int; BOOLEAN: bool) for property tables."""
    if kind == "STRING":
        values, offsets, has_null = _utf8_column(column)
        return EncodedColumn(name, kind, values, offsets, NO_DATA["STRING"] if has_null else None)
    if kind == "BOOLEAN":
        return EncodedColumn(name, kind, np.asarray(column, dtype=bool))
    if kind in ("INT32", "INT64"):
        col = np.asarray(column)
        dtype = np.int32 if kind == "INT32" else np.int64
        if col.dtype.kind == "f":
            null = np.isnan(col)
            data = np.where(null, NO_DATA[kind], np.nan_to_num(col)).astype(dtype)
            return EncodedColumn(name, kind, data, None, NO_DATA[kind] if null.any() else None)
        return EncodedColumn(name, kind, col.astype(dtype))
    if kind == "FLOAT64":
        col = np.asarray(column, dtype=np.float64)
        null = ~np.isfinite(col)
        data = np.where(null, NO_DATA[kind], col)
        return EncodedColumn(name, kind, data, None, NO_DATA[kind] if null.any() else None)
    raise ValueError(f"unsupported metadata type {kind!r} for {name!r}")


def _utf8_column(column: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(UTF-8 bytes, int64 offsets, any null) of a string column; null encodes as "".

    Arrow builds the buffers in C, far faster than a Python loop over the names; a column Arrow
    refuses (values that are not all str) takes the Python path.
    """
    try:
        import pyarrow as pa

        arr = pa.array(column, type=pa.large_string(), from_pandas=False)
    except (ImportError, TypeError, ValueError):  # pyarrow missing, or a column it refuses
        arr = None
    if arr is not None and arr.offset == 0:
        _, off_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(off_buf, dtype=np.int64, count=len(arr) + 1).copy()
        data = np.frombuffer(data_buf, dtype=np.uint8, count=int(offsets[-1])).copy() if data_buf is not None else np.zeros(0, np.uint8)
        return data, offsets, arr.null_count > 0
    strings = [b"" if v is None else str(v).encode("utf-8") for v in column]
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, strings), dtype=np.int64, count=len(strings)), out=offsets[1:])
    return np.frombuffer(b"".join(strings), dtype=np.uint8), offsets, any(v is None for v in column)


@dataclass
class FeatureColumns:
    """A layer's attribute columns, encoded once; :meth:`take` cuts a tile's property table."""

    columns: list[EncodedColumn]

    @classmethod
    def encode(cls, columns: dict[str, np.ndarray], types: dict[str, str]) -> FeatureColumns:
        return cls([encode_column(name, col, types[name]) for name, col in columns.items()])

    def take(self, rows: np.ndarray, class_name: str, description: str = "", ragged: RaggedTake | None = None) -> PropertyTable:
        """The property table of ``rows`` (string columns cut by ``ragged`` when given: see
        :meth:`EncodedColumn.take`)."""
        rows = np.asarray(rows, dtype=np.int64)
        return PropertyTable(class_name, [c.take(rows, ragged) for c in self.columns], len(rows), description)


@dataclass
class PropertyTable:
    """One feature table of ``count`` rows: encoded columns and the class they belong to.

    Build one with ``FeatureColumns.encode(columns, types).take(rows, class_name)``, or
    :meth:`from_columns` for a one-off table.
    """

    class_name: str
    columns: list[EncodedColumn]
    count: int
    class_description: str = ""

    def add_to(self, builder: GltfBuilder, schema_id: str = "cim") -> int:
        """Write this table into ``builder`` (see :func:`add_property_table`); returns its index."""
        return add_property_table(builder, self, schema_id)

    @classmethod
    def from_columns(cls, class_name: str, columns: dict[str, np.ndarray], types: dict[str, str], description: str = "") -> PropertyTable:
        count = len(next(iter(columns.values()))) if columns else 0
        return FeatureColumns.encode(columns, types).take(np.arange(count), class_name, description)


@dataclass
class GltfBuilder:
    """Accumulates buffer views and accessors, then writes one GLB."""

    json: dict = field(default_factory=lambda: {"asset": {"version": "2.0", "generator": "cim"}})
    chunks: list[bytes] = field(default_factory=list)
    offset: int = 0

    def _align(self) -> None:
        """Pad the binary chunk to an 8-byte boundary (where every buffer view starts)."""
        pad = (-self.offset) % 8
        if pad:
            self.chunks.append(b"\0" * pad)
            self.offset += pad

    def buffer_view(self, data: bytes, target: int | None = None, byte_stride: int | None = None) -> int:
        self._align()
        view = {"buffer": 0, "byteOffset": self.offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        if byte_stride is not None:
            view["byteStride"] = byte_stride
        self.chunks.append(data)
        self.offset += len(data)
        views = self.json.setdefault("bufferViews", [])
        views.append(view)
        return len(views) - 1

    def buffer_views(self, blob: bytes, starts: np.ndarray, lengths: np.ndarray) -> list[int]:
        """Views of ``blob`` (written once, 8-byte aligned): view i is ``lengths[i]`` bytes from
        ``starts[i]`` (multiples of 8 where the views hold metadata); returns their indices."""
        self._align()
        base = self.offset
        self.chunks.append(blob)
        self.offset += len(blob)
        views = self.json.setdefault("bufferViews", [])
        first = len(views)
        views.extend(
            {"buffer": 0, "byteOffset": base + s, "byteLength": n}
            for s, n in zip(np.asarray(starts).tolist(), np.asarray(lengths).tolist())
        )
        return list(range(first, len(views)))

    def accessor(
        self,
        array: np.ndarray,
        component_type: int,
        type_: str,
        target: int | None = ARRAY_BUFFER,
        min_max: bool = False,
        normalized: bool = False,
    ) -> int:
        array = np.ascontiguousarray(array)
        view = self.buffer_view(array.tobytes(), target)
        acc: dict = {
            "bufferView": view,
            "componentType": component_type,
            "count": int(array.shape[0]),
            "type": type_,
        }
        if normalized:
            acc["normalized"] = True
        if min_max:
            flat = array.reshape(array.shape[0], -1)
            acc["min"] = [float(x) for x in flat.min(axis=0)]
            acc["max"] = [float(x) for x in flat.max(axis=0)]
        accessors = self.json.setdefault("accessors", [])
        accessors.append(acc)
        return len(accessors) - 1

    def use_extension(self, name: str, required: bool = False) -> None:
        used = self.json.setdefault("extensionsUsed", [])
        if name not in used:
            used.append(name)
        if required:
            req = self.json.setdefault("extensionsRequired", [])
            if name not in req:
                req.append(name)

    def to_glb(self) -> bytes:
        body = b"".join(self.chunks)
        body += b"\0" * ((-len(body)) % 4)
        if body:
            self.json["buffers"] = [{"byteLength": len(body)}]
        js = _dumps(self.json).encode()
        js += b" " * ((-len(js)) % 4)
        total = 12 + 8 + len(js) + (8 + len(body) if body else 0)
        out = [struct.pack("<III", GLB_MAGIC, 2, total), struct.pack("<II", len(js), CHUNK_JSON), js]
        if body:
            out += [struct.pack("<II", len(body), CHUNK_BIN), body]
        return b"".join(out)


class RawJSON:
    """JSON text encoded beforehand, to stand as a value in a glTF JSON tree (:func:`_dumps`
    splices it in): a layer's schema definitions are the same for all its tiles, and encoding
    them again for each tile would format hundreds of properties, and their float noData values,
    in every BIM tile."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _dumps(tree: dict) -> str:
    """Compact JSON of ``tree`` with its :class:`RawJSON` values spliced in verbatim.

    Each is first written as a placeholder string with a random tag, then replaced; a tag that
    occurs more than once in the text (an attribute named like it) is drawn again."""
    while True:
        tag = os.urandom(6).hex()
        texts: list[str] = []

        def default(obj, tag=tag, texts=texts):
            if isinstance(obj, RawJSON):
                texts.append(obj.text)
                return f"cim-raw-{tag}-{len(texts) - 1}"
            raise TypeError(f"{type(obj).__name__} is not JSON serializable")

        js = json.dumps(tree, separators=(",", ":"), allow_nan=False, default=default)
        marks = [f'"cim-raw-{tag}-{i}"' for i in range(len(texts))]
        if all(js.count(m) == 1 for m in marks):
            for m, text in zip(marks, texts):
                js = js.replace(m, text, 1)
            return js


def column_definition(name: str, kind: str, no_data: object = None) -> dict:
    """The schema's class property for a column (its name, metadata type and noData, if any)."""
    definition: dict = {"name": name}
    if kind == "BOOLEAN_ENUM":  # a boolean with absent values (see BOOLEAN_ENUM)
        definition.update(type="ENUM", enumType=BOOLEAN_ENUM, noData=BOOLEAN_ENUM_NO_DATA)
        return definition
    if kind in ("STRING", "BOOLEAN"):
        definition["type"] = kind
    else:
        definition.update(type="SCALAR", componentType=kind)
    if no_data is not None:
        definition["noData"] = no_data
    return definition


def add_property_table(builder: GltfBuilder, table: PropertyTable, schema_id: str = "cim") -> int:
    """Write ``table`` as EXT_structural_metadata (schema + property table); returns its index."""
    props: dict[str, dict] = {}
    values: dict[str, dict] = {}
    for col in table.columns:
        pid = property_id(col.name)
        props[pid] = column_definition(col.name, col.kind, col.no_data)
        entry: dict = {}
        if col.kind == "STRING":
            if not col.values.nbytes:
                # every string of the tile is empty: a buffer view cannot be empty, and padding it
                # would contradict the string offsets, so the (optional) property is left out of
                # this tile's table; readers see no value, as for noData
                continue
            assert col.offsets is not None  # a STRING column has its offsets
            entry["values"] = builder.buffer_view(col.values.tobytes())
            entry["stringOffsets"] = builder.buffer_view(col.offsets.astype(np.uint32).tobytes())
            entry["stringOffsetType"] = "UINT32"
        elif col.kind == "BOOLEAN":
            entry["values"] = builder.buffer_view(np.packbits(col.values, bitorder="little").tobytes())
        else:
            entry["values"] = builder.buffer_view(col.values.tobytes())
        values[pid] = entry
    return attach_property_table(builder, table.class_name, table.class_description, props, values, table.count, schema_id)


def attach_property_table(
    builder: GltfBuilder,
    class_name: str,
    description: str,
    props: dict[str, dict] | RawJSON,
    values: dict[str, dict],
    count: int,
    schema_id: str = "cim",
    enums: dict[str, dict] | None = None,
) -> int:
    """Add a class (``props``: its properties' definitions, or their JSON text) and its property
    table (``values``: each property's buffer views) to the builder's EXT_structural_metadata,
    with the ``enums`` its properties use; returns the table's index."""
    cls: dict = {"properties": props}
    if description:
        cls["description"] = description
    ext = builder.json.setdefault("extensions", {}).setdefault(
        "EXT_structural_metadata", {"schema": {"id": schema_id, "classes": {}}, "propertyTables": []}
    )
    if enums:
        ext["schema"].setdefault("enums", {}).update(enums)
    ext["schema"]["classes"][class_name] = cls
    ext["propertyTables"].append({"class": class_name, "count": int(count), "properties": values})
    builder.use_extension("EXT_structural_metadata")
    return len(ext["propertyTables"]) - 1


def quantize_normals(normals: np.ndarray) -> np.ndarray:
    """(v, 3) float unit normals → (v, 4) int8 as :func:`add_normals` writes them (4th byte 0).

    An (v, 4) int8 array passes through unchanged, so a layer can quantize once for all tiles.
    """
    normals = np.asarray(normals)
    if normals.dtype == np.int8 and normals.ndim == 2 and normals.shape[1] == 4:
        return normals
    q = np.zeros((len(normals), 4), dtype=np.int8)
    q[:, :3] = np.clip(np.round(normals.astype(np.float32, copy=False) * 127.0), -127, 127)
    return q


def add_normals(builder: GltfBuilder, normals: np.ndarray) -> int:
    """Unit normals as normalized BYTE VEC3 on a 4-byte stride (KHR_mesh_quantization).

    4 bytes a vertex instead of 12; each component is off by at most 1/254, far below what
    shading shows. The fourth byte is padding, as glTF's 4-byte vertex alignment requires.
    ``normals`` is (v, 3) float, or (v, 4) int8 already quantized by :func:`quantize_normals`.
    """
    q = quantize_normals(normals)
    view = builder.buffer_view(q.tobytes(), ARRAY_BUFFER, byte_stride=4)
    accessors = builder.json.setdefault("accessors", [])
    accessors.append({"bufferView": view, "componentType": BYTE, "normalized": True, "count": len(normals), "type": "VEC3"})
    builder.use_extension("KHR_mesh_quantization", required=True)
    return len(accessors) - 1


@dataclass
class PropertyAttribute:
    """Per-vertex properties of one class, written as an EXT_structural_metadata property
    attribute: each property is read from a vertex attribute, so that a viewer's shader styles
    by it (CesiumJS: ``fsInput.metadata.<property>``) without a texture or a feature table.

    Attributes
    ----------
    class_name : the schema class
    properties : property id → (attribute semantic such as ``"_SURFACE"``, (v,) uint8 or uint16
        values, description)
    description : the class's description
    """

    class_name: str
    properties: dict[str, tuple[str, np.ndarray, str]]
    description: str = ""


_ATTRIBUTE_TYPES = {np.dtype(np.uint8): (UNSIGNED_BYTE, "UINT8"), np.dtype(np.uint16): (UNSIGNED_SHORT, "UINT16")}


def add_property_attribute(builder: GltfBuilder, attribute: PropertyAttribute, schema_id: str = "cim") -> tuple[int, dict[str, int]]:
    """Write ``attribute``'s vertex attributes (each value padded to 4 bytes, as glTF aligns
    vertex attributes) and its class and property attribute; returns the property attribute's
    index and each attribute semantic's accessor."""
    props: dict[str, dict] = {}
    values: dict[str, dict] = {}
    accessors: dict[str, int] = {}
    for pid, (semantic, data, description) in attribute.properties.items():
        data = np.asarray(data)
        ctype, ktype = _ATTRIBUTE_TYPES[data.dtype]
        padded = np.zeros((len(data), 4 // data.itemsize), dtype=data.dtype)
        padded[:, 0] = data
        view = builder.buffer_view(padded.tobytes(), ARRAY_BUFFER, byte_stride=4)
        acc = builder.json.setdefault("accessors", [])
        acc.append({"bufferView": view, "componentType": ctype, "count": len(data), "type": "SCALAR"})
        accessors[semantic] = len(acc) - 1
        props[pid] = {"type": "SCALAR", "componentType": ktype}
        if description:
            props[pid]["description"] = description
        values[pid] = {"attribute": semantic}
    ext = builder.json.setdefault("extensions", {}).setdefault(
        "EXT_structural_metadata", {"schema": {"id": schema_id, "classes": {}}, "propertyTables": []}
    )
    cls: dict = {"properties": props}
    if attribute.description:
        cls["description"] = attribute.description
    ext["schema"]["classes"][attribute.class_name] = cls
    ext.setdefault("propertyAttributes", []).append({"class": attribute.class_name, "properties": values})
    builder.use_extension("EXT_structural_metadata")
    return len(ext["propertyAttributes"]) - 1, accessors


def encode_feature_mesh(
    positions: np.ndarray,
    normals: np.ndarray,
    triangles: np.ndarray,
    feature_ids: np.ndarray,
    table: PropertyTable,
    translation: np.ndarray,
    color: tuple[float, float, float, float] = (0.86, 0.84, 0.80, 1.0),
    position_bounds: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    vertex_properties: PropertyAttribute | None = None,
    double_sided: bool = False,
) -> bytes:
    """A GLB of one triangle mesh whose vertices carry feature ids into a property table.

    Parameters
    ----------
    positions : (v, 3) float32, glTF axes (y up), relative to ``translation``
    normals : (v, 3) float32, unit, glTF axes (or (v, 4) int8 from :func:`quantize_normals`)
    triangles : (t, 3) uint32
    feature_ids : (v,) int, row of ``table`` for each vertex
    table : the features' attributes
    translation : (3,) float64, node translation (the tile centre in glTF axes)
    color : the material's display colour, sRGB and alpha in [0, 1]; written as glTF's
        ``baseColorFactor``, which is linear (alpha as given)
    position_bounds : the exact float32 (min, max) of ``positions`` when the caller knows them
        (saves two passes over the vertices)
    vertex_properties : per-vertex properties written as a property attribute (see
        :class:`PropertyAttribute`)
    double_sided : the material draws back faces too (sources whose faces are not all wound
        outwards)
    """
    b = GltfBuilder()
    n_vertices = len(positions)
    index_type = UNSIGNED_SHORT if n_vertices < 65536 else UNSIGNED_INT
    idx = triangles.astype(np.uint16 if index_type == UNSIGNED_SHORT else np.uint32).reshape(-1)
    a_idx = b.accessor(idx, index_type, "SCALAR", target=ELEMENT_ARRAY_BUFFER)
    a_pos = b.accessor(np.asarray(positions, dtype=np.float32), FLOAT, "VEC3", min_max=position_bounds is None)
    if position_bounds is not None:
        acc = b.json["accessors"][a_pos]
        acc["min"] = [float(v) for v in np.asarray(position_bounds[0], dtype=np.float32)]
        acc["max"] = [float(v) for v in np.asarray(position_bounds[1], dtype=np.float32)]
    a_nrm = add_normals(b, normals)
    a_fid = b.accessor(np.asarray(feature_ids, dtype=np.float32), FLOAT, "SCALAR")
    pt = add_property_table(b, table)
    b.use_extension("EXT_mesh_features")
    material: dict = {
        "name": table.class_name,
        "pbrMetallicRoughness": {"baseColorFactor": base_color_factor(color), "metallicFactor": 0.0, "roughnessFactor": 0.9},
    }
    if double_sided:
        material["doubleSided"] = True
    b.json["materials"] = [material]
    attributes = {"POSITION": a_pos, "NORMAL": a_nrm, "_FEATURE_ID_0": a_fid}
    extensions: dict = {"EXT_mesh_features": {"featureIds": [{"featureCount": int(table.count), "attribute": 0, "propertyTable": pt}]}}
    if vertex_properties is not None:
        pa, semantics = add_property_attribute(b, vertex_properties)
        attributes.update(semantics)
        extensions["EXT_structural_metadata"] = {"propertyAttributes": [pa]}
    b.json["meshes"] = [
        {"primitives": [{"attributes": attributes, "indices": a_idx, "material": 0, "mode": TRIANGLES, "extensions": extensions}]}
    ]
    b.json["nodes"] = [{"mesh": 0, "translation": [float(x) for x in translation]}]
    b.json["scenes"] = [{"nodes": [0]}]
    b.json["scene"] = 0
    return b.to_glb()


def base_color_factor(color: tuple[float, float, float, float]) -> list[float]:
    """glTF's ``baseColorFactor`` (linear RGB, alpha) of an sRGB display colour and its alpha."""
    rgb = srgb_to_linear(np.asarray(color[:3], dtype=np.float64))
    return [round(float(c), 6) for c in rgb] + [float(color[3])]


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """Split a GLB into its JSON and binary chunk (for tests and tools)."""
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2:
        raise ValueError("not a glTF 2.0 GLB")
    jlen, _ = struct.unpack_from("<II", data, 12)
    doc = json.loads(data[20 : 20 + jlen])
    bin_chunk = b""
    off = 20 + jlen
    if off < length:
        blen, _ = struct.unpack_from("<II", data, off)
        bin_chunk = data[off + 8 : off + 8 + blen]
    return doc, bin_chunk


_DTYPES = {FLOAT: np.float32, UNSIGNED_SHORT: np.uint16, UNSIGNED_INT: np.uint32, UNSIGNED_BYTE: np.uint8, 5120: np.int8, 5122: np.int16}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_accessor(doc: dict, bin_chunk: bytes, index: int) -> np.ndarray:
    """Decode one accessor of a GLB into a numpy array (normalized integers → float32)."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype: np.dtype = np.dtype(_DTYPES[acc["componentType"]])
    width = _WIDTH[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride", dtype.itemsize * width)
    if stride != dtype.itemsize * width:
        # an interleaved accessor past the view's first byte ends before its last full stride
        size = dtype.itemsize * width
        raw = np.frombuffer(bin_chunk, dtype=np.uint8, count=(acc["count"] - 1) * stride + size, offset=start)
        rows = np.lib.stride_tricks.as_strided(raw, shape=(acc["count"], size), strides=(stride, 1), writeable=False)
        arr = np.ascontiguousarray(rows).view(dtype).reshape(acc["count"], width)
    else:
        arr = np.frombuffer(bin_chunk, dtype=dtype, count=acc["count"] * width, offset=start)
    if acc.get("normalized"):
        info = np.iinfo(dtype)
        arr = np.maximum(arr.astype(np.float32) / info.max, -1.0) if info.min < 0 else arr.astype(np.float32) / info.max
    return arr.reshape(acc["count"], width) if width > 1 else arr.reshape(acc["count"])


_ENUM_DTYPES = {"UINT8": np.uint8, "INT8": np.int8, "UINT16": np.uint16, "INT16": np.int16, "UINT32": np.uint32, "INT32": np.int32}


def read_property_table(doc: dict, bin_chunk: bytes, index: int = 0) -> dict[str, list]:
    """Decode one EXT_structural_metadata property table into ``{property id: values}``.

    Nulls (``noData``) come back as None. Handles the types :func:`add_property_table` writes.
    """
    ext = doc["extensions"]["EXT_structural_metadata"]
    table = ext["propertyTables"][index]
    cls = ext["schema"]["classes"][table["class"]]["properties"]
    count = table["count"]
    views = doc["bufferViews"]

    def view_bytes(i: int) -> bytes:
        v = views[i]
        return bin_chunk[v.get("byteOffset", 0) : v.get("byteOffset", 0) + v["byteLength"]]

    out: dict[str, list] = {}
    for pid, entry in table["properties"].items():
        d = cls[pid]
        raw = view_bytes(entry["values"])
        if d["type"] == "STRING":
            offs = np.frombuffer(view_bytes(entry["stringOffsets"]), dtype=np.uint32)
            vals: list = [raw[offs[i] : offs[i + 1]].decode("utf-8") for i in range(count)]
        elif d["type"] == "BOOLEAN":
            vals = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:count].astype(bool).tolist()
        elif d["type"] == "ENUM":
            enum = ext["schema"]["enums"][d["enumType"]]
            codes = np.frombuffer(raw, dtype=_ENUM_DTYPES[enum.get("valueType", "UINT16")], count=count).tolist()
            names = {v["value"]: v["name"] for v in enum["values"]}
            # the boolean enum reads back as booleans; noData as None
            as_value: dict = {"true": True, "false": False} if d["enumType"] == BOOLEAN_ENUM else {}
            out[pid] = [None if names[c] == d.get("noData") else as_value.get(names[c], names[c]) for c in codes]
            continue
        else:
            dtype = {"INT32": np.int32, "INT64": np.int64, "FLOAT64": np.float64, "FLOAT32": np.float32}[d["componentType"]]
            vals = np.frombuffer(raw, dtype=dtype, count=count).tolist()
        if "noData" in d:
            vals = [None if v == d["noData"] else v for v in vals]
        out[pid] = vals
    return out
