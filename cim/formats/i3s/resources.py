"""The resources of an I3S 1.8 mesh scene layer (3DObject or IntegratedMesh), as bytes and dicts.

Written to the specification's 1.7+ layout (node pages, geometry definitions), with the
uncompressed geometry buffer every 1.7+ layer must carry first (``geometryBuffers[0]``), in the
fixed order the spec gives::

    vertexCount UInt32 · featureCount UInt32 · position Float32[3n] · normal Float32[3n]
    · uv0 Float32[2n] · color UInt8[4n] · featureId UInt64[f] · faceRange UInt32[2f]

Triangles are not indexed (three vertices a face) and each feature's faces are contiguous,
``faceRange`` giving the first and last face of each (inclusive). Positions are offsets from the
node's oriented bounding box centre: degrees of longitude and latitude and metres of height for
the geographic (EPSG:4326) layers written here. Draco-compressed buffers are not written.

Attribute buffers follow ``attributeStorageInfo``: a UInt32 count, then the values (Double
values after 4 bytes of padding, to keep them 8-byte aligned; strings as a total byte count,
one UInt32 size a string, then the UTF-8 strings each ended by a NUL; a null string is size 0).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "FIELD_TYPES",
    "OBJECTID",
    "encode_geometry",
    "geometry_definition",
    "default_geometry_schema",
    "AttributeColumn",
    "encode_attribute",
    "attribute_storage_info",
    "field_definition",
    "attribute_statistics",
    "lod_threshold_sq",
    "quaternion_from_rotation",
    "INT32_NULL",
]

#: the field that carries each feature's id (the geometry's ``featureId``)
OBJECTID = "OBJECTID"

#: EXT_structural_metadata type → (I3S field type, attribute value type)
FIELD_TYPES: dict[str, tuple[str, str]] = {
    "STRING": ("esriFieldTypeString", "String"),
    "INT8": ("esriFieldTypeSmallInteger", "Int16"),
    "UINT8": ("esriFieldTypeSmallInteger", "Int16"),
    "INT16": ("esriFieldTypeSmallInteger", "Int16"),
    "BOOLEAN": ("esriFieldTypeSmallInteger", "Int16"),
    "UINT16": ("esriFieldTypeInteger", "Int32"),
    "INT32": ("esriFieldTypeInteger", "Int32"),
    # I3S 1.8 has no 64-bit integer attribute: a double holds them exactly up to 2**53
    "UINT32": ("esriFieldTypeDouble", "Float64"),
    "INT64": ("esriFieldTypeDouble", "Float64"),
    "UINT64": ("esriFieldTypeDouble", "Float64"),
    "FLOAT32": ("esriFieldTypeDouble", "Float64"),
    "FLOAT64": ("esriFieldTypeDouble", "Float64"),
}

#: how a null integer is written (I3S 1.8 attribute buffers have no null mask); null doubles
#: are NaN, null strings have size 0
INT32_NULL = -(2**31)
INT16_NULL = -(2**15)

_POSITION = {"type": "Float32", "component": 3}
_NORMAL = {"type": "Float32", "component": 3}
_UV0 = {"type": "Float32", "component": 2}
_COLOR = {"type": "UInt8", "component": 4}
_FEATURE_ID = {"type": "UInt64", "component": 1, "binding": "per-feature"}
_FACE_RANGE = {"type": "UInt32", "component": 2, "binding": "per-feature"}


def encode_geometry(
    positions: np.ndarray,
    normals: np.ndarray,
    colors: np.ndarray,
    uv: np.ndarray | None = None,
    feature_ids: np.ndarray | None = None,
    face_ranges: np.ndarray | None = None,
) -> bytes:
    """The uncompressed geometry buffer of one node (see the module notes).

    Parameters
    ----------
    positions : (n, 3) float, offsets from the node's OBB centre (n a multiple of 3)
    normals : (n, 3) float, unit, in the node's east-north-up frame
    colors : (n, 4) uint8, sRGB and alpha
    uv : (n, 2) float texture coordinates, or None (written as zeros: the layout is fixed)
    feature_ids : (f,) uint64, the features in face order (None for a mesh without features)
    face_ranges : (f, 2) uint32, first and last face of each feature
    """
    n = len(positions)
    if n % 3:
        raise ValueError("encode_geometry: non-indexed triangles need a multiple of 3 vertices")
    f = 0 if feature_ids is None else len(feature_ids)
    parts = [
        np.array([n, f], dtype="<u4").tobytes(),
        np.ascontiguousarray(positions, dtype="<f4").tobytes(),
        np.ascontiguousarray(normals, dtype="<f4").tobytes(),
        (np.zeros((n, 2), dtype="<f4") if uv is None else np.ascontiguousarray(uv, dtype="<f4")).tobytes(),
        np.ascontiguousarray(colors, dtype=np.uint8).tobytes(),
    ]
    if f:
        assert feature_ids is not None and face_ranges is not None
        parts.append(np.ascontiguousarray(feature_ids, dtype="<u8").tobytes())
        parts.append(np.ascontiguousarray(face_ranges, dtype="<u4").tobytes())
    return b"".join(parts)


def geometry_definition(features: bool = True) -> dict[str, Any]:
    """The layer's one ``geometryDefinitions`` entry: the uncompressed buffer of
    :func:`encode_geometry` (with ``featureId``/``faceRange`` when the mesh has features)."""
    buffer: dict[str, Any] = {"offset": 8, "position": _POSITION, "normal": _NORMAL, "uv0": _UV0, "color": _COLOR}
    if features:
        buffer.update(featureId=_FEATURE_ID, faceRange=_FACE_RANGE)
    return {"topology": "triangle", "geometryBuffers": [buffer]}


def default_geometry_schema() -> dict[str, Any]:
    """``store.defaultGeometrySchema``: the same buffer in the 1.6 vocabulary (required by
    the spec for mesh pyramids; clients that predate geometry definitions read this one)."""
    return {
        "geometryType": "triangles",
        "header": [{"property": "vertexCount", "type": "UInt32"}, {"property": "featureCount", "type": "UInt32"}],
        "topology": "PerAttributeArray",
        "ordering": ["position", "normal", "uv0", "color"],
        "vertexAttributes": {
            "position": {"valueType": "Float32", "valuesPerElement": 3},
            "normal": {"valueType": "Float32", "valuesPerElement": 3},
            "uv0": {"valueType": "Float32", "valuesPerElement": 2},
            "color": {"valueType": "UInt8", "valuesPerElement": 4},
        },
        "featureAttributeOrder": ["id", "faceRange"],
        "featureAttributes": {
            "id": {"valueType": "UInt64", "valuesPerElement": 1},
            "faceRange": {"valueType": "UInt32", "valuesPerElement": 2},
        },
    }


class AttributeColumn:
    """One field's values for all the layer's features, encoded once: a node's attribute buffer
    is then a gather (:meth:`take`), not a pass over Python values.

    Parameters
    ----------
    value_type : "Oid32", "Int16", "Int32", "Float64" or "String"
    values : one value a feature; None for null (see :data:`INT32_NULL`)
    """

    def __init__(self, value_type: str, values: Sequence[Any]) -> None:
        self.value_type = value_type
        if value_type == "String":
            encoded = [b"" if v is None else str(v).encode("utf-8") + b"\0" for v in values]
            self.sizes = np.fromiter(map(len, encoded), dtype="<u4", count=len(encoded))
            self.starts = np.zeros(len(encoded) + 1, dtype=np.int64)
            np.cumsum(self.sizes, out=self.starts[1:])
            self.data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        elif value_type == "Float64":
            self.data = np.array([math.nan if v is None else float(v) for v in values], dtype="<f8")
        elif value_type == "Oid32":
            self.data = np.array([0 if v is None else int(v) for v in values], dtype="<u4")
        elif value_type == "Int32":
            self.data = np.array([INT32_NULL if v is None else int(v) for v in values], dtype="<i4")
        elif value_type == "Int16":
            self.data = np.array([INT16_NULL if v is None else int(v) for v in values], dtype="<i2")
        else:
            raise ValueError(f"AttributeColumn: unsupported value type {value_type!r}")

    def take(self, rows: np.ndarray) -> bytes:
        """The attribute buffer of the features ``rows`` (indices into the values), in order."""
        rows = np.asarray(rows, dtype=np.int64)
        count = np.array([len(rows)], dtype="<u4").tobytes()
        if self.value_type == "String":
            sizes = self.sizes[rows]
            total = int(sizes.sum())
            if total:
                offsets = np.zeros(len(rows), dtype=np.int64)
                np.cumsum(sizes[:-1], out=offsets[1:])
                index = np.repeat(self.starts[rows] - offsets, sizes) + np.arange(total)
                data = self.data[index].tobytes()
            else:
                data = b""
            return count + np.array([total], dtype="<u4").tobytes() + sizes.tobytes() + data
        padding = b"\0\0\0\0" if self.value_type == "Float64" else b""
        return count + padding + self.data[rows].tobytes()


def encode_attribute(value_type: str, values: Sequence[Any]) -> bytes:
    """One node's attribute buffer of one field.

    Parameters
    ----------
    value_type : "Oid32", "Int16", "Int32", "Float64" or "String"
    values : one value a feature, in the order of the node's ``featureId``; None for null
    """
    return AttributeColumn(value_type, values).take(np.arange(len(values)))


def attribute_storage_info(key: str, name: str, value_type: str) -> dict[str, Any]:
    """The ``attributeStorageInfo`` entry of a field whose buffers :func:`encode_attribute` wrote."""
    if value_type == "Oid32":
        return {
            "key": key,
            "name": name,
            "header": [{"property": "count", "valueType": "UInt32"}],
            "ordering": ["ObjectIds"],
            "objectIds": {"valueType": "Oid32", "valuesPerElement": 1},
        }
    if value_type == "String":
        return {
            "key": key,
            "name": name,
            "header": [{"property": "count", "valueType": "UInt32"}, {"property": "attributeValuesByteCount", "valueType": "UInt32"}],
            "ordering": ["attributeByteCounts", "attributeValues"],
            "attributeByteCounts": {"valueType": "UInt32", "valuesPerElement": 1},
            "attributeValues": {"valueType": "String", "encoding": "UTF-8", "valuesPerElement": 1},
        }
    return {
        "key": key,
        "name": name,
        "header": [{"property": "count", "valueType": "UInt32"}],
        "ordering": ["attributeValues"],
        "attributeValues": {"valueType": value_type, "valuesPerElement": 1},
    }


def field_definition(name: str, field_type: str, alias: str | None = None) -> dict[str, Any]:
    """A ``fields`` entry."""
    return {"name": name, "type": field_type, "alias": alias if alias is not None else name}


def attribute_statistics(value_type: str, values: Sequence[Any], most_frequent: int = 256) -> dict[str, Any]:
    """``statistics/f_k/0``: the field's statistics over the layer's features (nulls left out).

    Numbers get count, sum, min, max, avg and stddev; every field its most frequent values
    (at most ``most_frequent``, by count then value).
    """
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    stats: dict[str, Any] = {"totalValuesCount": len(values), "count": len(present)}
    if value_type != "String" and present:
        arr = np.asarray(present, dtype=np.float64)
        stats.update(sum=float(arr.sum()), min=float(arr.min()), max=float(arr.max()), avg=float(arr.mean()), stddev=float(arr.std()))
    counts = Counter(present)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:most_frequent]
    stats["mostFrequentValues"] = [{"value": v, "count": c} for v, c in top]
    return {"stats": stats}


def lod_threshold_sq(radius: float, geometric_error: float, max_screen_space_error: float = 16.0) -> float:
    """``lodThreshold`` (maxScreenThresholdSQ) equivalent to a 3D Tiles geometric error.

    A 3D Tiles client refines a tile when its screen-space error ``e · H / (2 d tan(fov/2))``
    passes ``max_screen_space_error`` (16 px in CesiumJS); an I3S client switches a node when the
    projected diameter of its bounding sphere, ``2 r · H / (2 d tan(fov/2))``, passes
    ``maxScreenThreshold``. Both switch at the same distance when
    ``maxScreenThreshold = 2 r · max_screen_space_error / e``; the SQ metric is the projected
    disc's area, ``π/4 · maxScreenThreshold²``.

    Parameters
    ----------
    radius : the node's bounding sphere radius, metres
    geometric_error : the tile's geometric error, metres (> 0)
    """
    threshold = 2.0 * radius * max_screen_space_error / geometric_error
    return math.pi * 0.25 * threshold * threshold


def quaternion_from_rotation(m: np.ndarray) -> list[float]:
    """The unit quaternion ``[x, y, z, w]`` of a (3, 3) rotation matrix (the OBB's axes as
    columns), w ≥ 0."""
    m = np.asarray(m, dtype=np.float64)
    t = m[0, 0] + m[1, 1] + m[2, 2]
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    norm = math.sqrt(sum(c * c for c in q))
    sign = -1.0 if q[3] < 0 else 1.0
    return [sign * c / norm for c in q]
