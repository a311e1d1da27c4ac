"""3D Tiles 1.1 subtree files (``.subtree``): the availability of one subtree of an implicit tileset.

A subtree file is a 24-byte header (magic ``subt``, version 1, the JSON and binary chunks'
lengths as uint64), a JSON chunk padded with spaces to 8 bytes and a binary chunk padded with
zeros to 8 bytes. The JSON says, for the subtree's tiles (level by level, each level in Morton
order) which exist (``tileAvailability``) and which have content (``contentAvailability``), and
for the subtrees one level below its last which exist (``childSubtreeAvailability``). Each is a
constant (all or none) or a bitstream: one bit a tile, least significant bit first, in a buffer
view of the binary chunk (views start on 8-byte boundaries).

A subtree may also carry tile metadata: one property table (``propertyTables``, pointed at by
``tileMetadata``) with a row for each available tile, in the order of their availability bits,
each property a FLOAT64 column (12 numbers a row for a box) in its own buffer view. The class
and its semantics (``TILE_BOUNDING_BOX``, ``TILE_GEOMETRIC_ERROR``) are in the tileset's
``schema``.

Reading (:func:`decode_subtree`, :func:`decode_tile_metadata`) is for tests and tools.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

__all__ = ["SUBTREE_MAGIC", "encode_subtree", "decode_subtree", "decode_tile_metadata"]

SUBTREE_MAGIC = b"subt"
_HEADER = struct.Struct("<4sIQQ")


def _pad(data: bytes | bytearray, fill: bytes) -> bytes:
    return bytes(data) + fill * (-len(data) % 8)


def encode_subtree(
    tiles: np.ndarray,
    content: np.ndarray,
    children: np.ndarray,
    metadata_class: str | None = None,
    properties: dict[str, np.ndarray] | None = None,
) -> bytes:
    """A subtree file from its three availabilities (and its tiles' metadata).

    Parameters
    ----------
    tiles : (t,) bool, the subtree's tiles, level by level, Morton order within a level
        (``t = (b**levels - 1) / (b - 1)``, ``b`` 4 or 8)
    content : (t,) bool, the tiles with content (a subset of ``tiles``)
    children : (b**levels,) bool, the child subtrees (roots one level below the last)
    metadata_class : the schema class of the tile metadata (with ``properties``)
    properties : property name → (a,) or (a, k) float values, one row for each available tile
        in the order of ``tiles``' bits (``a = tiles.sum()``); None: no tile metadata
    """
    binary = bytearray()
    views: list[dict[str, int]] = []

    def availability(bits: np.ndarray) -> dict[str, int]:
        bits = np.asarray(bits, dtype=bool)
        count = int(bits.sum())
        if count == 0:
            return {"constant": 0}
        if count == len(bits):
            return {"constant": 1}
        packed = np.packbits(bits, bitorder="little").tobytes()
        binary.extend(b"\0" * (-len(binary) % 8))
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(packed)})
        binary.extend(packed)
        return {"bitstream": len(views) - 1, "availableCount": count}

    doc: dict[str, Any] = {
        "tileAvailability": availability(tiles),
        "contentAvailability": [availability(content)],
        "childSubtreeAvailability": availability(children),
    }
    if properties is not None:
        count = int(np.count_nonzero(tiles))
        columns: dict[str, dict[str, int]] = {}
        for name, values in properties.items():
            data = np.ascontiguousarray(values, dtype="<f8")
            if len(data) != count:
                raise ValueError(f"tile property {name!r} has {len(data)} rows for {count} available tiles")
            binary.extend(b"\0" * (-len(binary) % 8))
            raw = data.tobytes()
            views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(raw)})
            binary.extend(raw)
            columns[name] = {"values": len(views) - 1}
        doc["propertyTables"] = [{"class": metadata_class, "count": count, "properties": columns}]
        doc["tileMetadata"] = 0
    blob = _pad(binary, b"\0")
    if views:
        doc = {"buffers": [{"byteLength": len(blob)}], "bufferViews": views, **doc}
    text = _pad(json.dumps(doc, separators=(",", ":")).encode(), b" ")
    return _HEADER.pack(SUBTREE_MAGIC, 1, len(text), len(blob)) + text + blob


def decode_subtree(data: bytes, n_tiles: int, n_children: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three availabilities (tiles, content, child subtrees) of a subtree file written by
    :func:`encode_subtree` (internal buffer only)."""
    magic, version, n_json, n_bin = _HEADER.unpack_from(data)
    if magic != SUBTREE_MAGIC or version != 1:
        raise ValueError(f"not a version 1 subtree file (magic {magic!r}, version {version})")
    doc = json.loads(data[_HEADER.size : _HEADER.size + n_json])
    blob = data[_HEADER.size + n_json : _HEADER.size + n_json + n_bin]

    def bits(a: dict[str, int], n: int) -> np.ndarray:
        if "constant" in a:
            return np.full(n, bool(a["constant"]))
        view = doc["bufferViews"][a["bitstream"]]
        raw = np.frombuffer(blob, np.uint8, view["byteLength"], view["byteOffset"])
        return np.unpackbits(raw, bitorder="little")[:n].astype(bool)

    return (
        bits(doc["tileAvailability"], n_tiles),
        bits(doc["contentAvailability"][0], n_tiles),
        bits(doc["childSubtreeAvailability"], n_children),
    )


def decode_tile_metadata(data: bytes, widths: dict[str, int]) -> dict[str, np.ndarray]:
    """The tile metadata of a subtree file written by :func:`encode_subtree`: property name →
    (a, width) float64, one row an available tile (empty when the subtree has none).

    Parameters
    ----------
    data : the subtree file
    widths : the properties to read and their numbers a row (12 for a box, 1 for a scalar)
    """
    _, _, n_json, n_bin = _HEADER.unpack_from(data)
    doc = json.loads(data[_HEADER.size : _HEADER.size + n_json])
    if "tileMetadata" not in doc:
        return {}
    blob = data[_HEADER.size + n_json : _HEADER.size + n_json + n_bin]
    table = doc["propertyTables"][doc["tileMetadata"]]
    out = {}
    for name, width in widths.items():
        view = doc["bufferViews"][table["properties"][name]["values"]]
        values = np.frombuffer(blob, "<f8", view["byteLength"] // 8, view["byteOffset"])
        out[name] = values.reshape(table["count"], width)
    return out
