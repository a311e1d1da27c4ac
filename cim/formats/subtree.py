"""3D Tiles 1.1 subtree files (``.subtree``): the availability of one subtree of an implicit tileset.

A subtree file is a 24-byte header (magic ``subt``, version 1, the JSON and binary chunks'
lengths as uint64), a JSON chunk padded with spaces to 8 bytes and a binary chunk padded with
zeros to 8 bytes. The JSON says, for the subtree's tiles (level by level, each level in Morton
order) which exist (``tileAvailability``) and which have content (``contentAvailability``), and
for the subtrees one level below its last which exist (``childSubtreeAvailability``). Each is a
constant (all or none) or a bitstream: one bit a tile, least significant bit first, in a buffer
view of the binary chunk (views start on 8-byte boundaries).

Reading (:func:`decode_subtree`) is for tests and tools.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

__all__ = ["SUBTREE_MAGIC", "encode_subtree", "decode_subtree"]

SUBTREE_MAGIC = b"subt"
_HEADER = struct.Struct("<4sIQQ")


def _pad(data: bytes | bytearray, fill: bytes) -> bytes:
    return bytes(data) + fill * (-len(data) % 8)


def encode_subtree(tiles: np.ndarray, content: np.ndarray, children: np.ndarray) -> bytes:
    """A subtree file from its three availabilities.

    Parameters
    ----------
    tiles : (t,) bool, the subtree's tiles, level by level, Morton order within a level
        (``t = (b**levels - 1) / (b - 1)``, ``b`` 4 or 8)
    content : (t,) bool, the tiles with content (a subset of ``tiles``)
    children : (b**levels,) bool, the child subtrees (roots one level below the last)
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
