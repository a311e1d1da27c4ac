"""GLB point-cloud tiles: one POINTS primitive, quantized positions, per-point metadata.

Layout of a tile (glTF 2.0, y up, as 3D Tiles 1.1 expects):

- one interleaved vertex buffer view, every attribute on a 4-byte boundary as glTF requires:
  ``POSITION`` (UNSIGNED_SHORT normalized VEC3 + 2 pad bytes, with the node's translation and
  scale undoing the quantization: ``KHR_mesh_quantization``; FLOAT VEC3 for the few coarse
  nodes where 16 bits would step more than ``max_step``), ``COLOR_0`` (UNSIGNED_BYTE normalized
  VEC3 + 1 pad byte), ``_INTENSITY`` (UNSIGNED_SHORT + 2 pad), ``_CLASSIFICATION`` and
  ``_RETURN_NUMBER`` (UNSIGNED_BYTE + 3 pad each): 24 bytes a point;
- ``EXT_structural_metadata`` property attributes of class ``point`` (``intensity`` UINT16,
  ``classification`` UINT8, ``return_number`` UINT8) so that a viewer styles by them;
- an explicit unlit material (``KHR_materials_unlit``, with ``metallicFactor`` 0 as fallback);
- optionally ``EXT_meshopt_compression`` (mode ATTRIBUTES) on the vertex buffer: the pad bytes,
  classes and return numbers cost almost nothing once delta-coded in Morton order.

The meshopt attribute codec (bitstream version 0, Appendix A of the extension) is implemented here
in numpy, encoder and decoder, from the specification.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from cim.formats.glb import ARRAY_BUFFER, FLOAT, POINTS, UNSIGNED_BYTE, UNSIGNED_SHORT, GltfBuilder, read_glb

POINT_CLASS = "point"
#: property id → (attribute semantic, metadata component type, numpy dtype)
POINT_PROPERTIES: dict[str, tuple[str, str, type]] = {
    "intensity": ("_INTENSITY", "UINT16", np.uint16),
    "classification": ("_CLASSIFICATION", "UINT8", np.uint8),
    "return_number": ("_RETURN_NUMBER", "UINT8", np.uint8),
}
POINT_DESCRIPTIONS = {
    "intensity": "Return strength as recorded by the scanner (LAS intensity)",
    "classification": "ASPRS LAS class: 2 ground, 3-5 low/medium/high vegetation, 6 building, 9 water, ...",
    "return_number": "Return number of the pulse (1 = first return)",
}
SHORT_MAX = 65535


@dataclass(frozen=True)
class PointLayout:
    """Byte layout of one interleaved vertex: offsets of each attribute and the stride."""

    float_positions: bool
    colors: bool

    @property
    def dtype(self) -> np.dtype:
        fields: list[tuple] = [("pos", "<f4", (3,))] if self.float_positions else [("pos", "<u2", (4,))]
        if self.colors:
            fields.append(("rgb", "u1", (4,)))
        fields += [("intensity", "<u2", (2,)), ("classification", "u1", (4,)), ("return_number", "u1", (4,))]
        return np.dtype(fields)


def encode_points_glb(
    positions: np.ndarray,
    unit: float,
    colors: np.ndarray | None,
    intensity: np.ndarray,
    classification: np.ndarray,
    return_number: np.ndarray,
    *,
    max_step: float = 0.005,
    meshopt: bool = False,
) -> bytes:
    """Encode one point tile as a GLB.

    Parameters
    ----------
    positions : (n, 3) int32/int64, ENU (east, north, up) in multiples of ``unit`` metres, in the
        tileset's frame
    unit : metres per position unit
    colors : (n, 3) uint8 RGB, or None for a tile without colour
    intensity : (n,) uint16
    classification, return_number : (n,) uint8
    max_step : largest quantization step (m) accepted for 16-bit positions; coarser nodes
        store float32 positions
    meshopt : compress the vertex buffer with ``EXT_meshopt_compression``

    Returns
    -------
    GLB bytes. Positions are stored in glTF axes ``(e, u, -n)``; the node's translation (and
    scale, when quantized) places them in the tileset frame.
    """
    n = len(positions)
    if n == 0:
        raise ValueError("a point tile needs at least one point")
    p = np.asarray(positions)
    lo = p.min(axis=0).astype(np.int64)
    hi = p.max(axis=0).astype(np.int64)
    ext = np.maximum(hi - lo, 1)
    quantized = float(ext.max()) * unit / SHORT_MAX <= max_step
    layout = PointLayout(not quantized, colors is not None)
    v = np.zeros(n, dtype=layout.dtype)
    # glTF axes: x = east, y = up, z = -north
    if quantized:
        pos = v["pos"]
        for col, axis, flip in ((0, 0, False), (1, 2, False), (2, 1, True)):
            rel = (hi[axis] - p[:, axis]) if flip else (p[:, axis] - lo[axis])
            pos[:, col] = np.rint(rel * (SHORT_MAX / ext[axis]))
        translation = [float(lo[0] * unit), float(lo[2] * unit), float(-hi[1] * unit)]
        scale = [float(ext[0] * unit), float(ext[2] * unit), float(ext[1] * unit)]  # of the normalized [0, 1] values
        qmin = pos[:, :3].min(axis=0)
        qmax = pos[:, :3].max(axis=0)
        pmin, pmax = [int(x) for x in qmin], [int(x) for x in qmax]
    else:
        centre = (lo + hi) // 2
        pos = v["pos"]
        pos[:, 0] = (p[:, 0] - centre[0]) * unit
        pos[:, 1] = (p[:, 2] - centre[2]) * unit
        pos[:, 2] = (centre[1] - p[:, 1]) * unit
        translation = [float(centre[0] * unit), float(centre[2] * unit), float(-centre[1] * unit)]
        scale = None
        pmin = [float(x) for x in pos.min(axis=0)]
        pmax = [float(x) for x in pos.max(axis=0)]
    if colors is not None:
        v["rgb"][:, :3] = colors
    v["intensity"][:, 0] = intensity
    v["classification"][:, 0] = classification
    v["return_number"][:, 0] = return_number

    b = GltfBuilder()
    stride = layout.dtype.itemsize
    raw = v.tobytes()
    if meshopt:
        encoded = meshopt_encode_attributes(v.view(np.uint8).reshape(n, stride))
        view = b.buffer_view(encoded)
        b.json["bufferViews"][view] = {
            "buffer": 1,
            "byteOffset": 0,
            "byteLength": len(raw),
            "byteStride": stride,
            "target": ARRAY_BUFFER,
            "extensions": {
                "EXT_meshopt_compression": {
                    "buffer": 0,
                    "byteOffset": b.json["bufferViews"][view]["byteOffset"],
                    "byteLength": len(encoded),
                    "byteStride": stride,
                    "mode": "ATTRIBUTES",
                    "count": n,
                }
            },
        }
        b.use_extension("EXT_meshopt_compression", required=True)
    else:
        view = b.buffer_view(raw, ARRAY_BUFFER, stride)
    accessors = b.json.setdefault("accessors", [])
    names = layout.dtype.names

    def add(name: str, ctype: int, type_: str, normalized: bool = False, **extra) -> int:
        acc = {"bufferView": view, "byteOffset": layout.dtype.fields[name][1], "componentType": ctype, "count": n, "type": type_}
        if normalized:
            acc["normalized"] = True
        acc.update(extra)
        accessors.append(acc)
        return len(accessors) - 1

    attributes = {"POSITION": add("pos", FLOAT if not quantized else UNSIGNED_SHORT, "VEC3", quantized, min=pmin, max=pmax)}
    if "rgb" in names:
        attributes["COLOR_0"] = add("rgb", UNSIGNED_BYTE, "VEC3", True)
    for pid, (semantic, _, _) in POINT_PROPERTIES.items():
        attributes[semantic] = add(pid, UNSIGNED_SHORT if pid == "intensity" else UNSIGNED_BYTE, "SCALAR")
    if quantized:
        b.use_extension("KHR_mesh_quantization", required=True)
    b.use_extension("KHR_materials_unlit")
    b.use_extension("EXT_structural_metadata")
    b.json["extensions"] = {
        "EXT_structural_metadata": {
            "schema": {
                "id": "cim_pointcloud",
                "classes": {
                    POINT_CLASS: {
                        "name": "Point",
                        "description": "One lidar return",
                        "properties": {
                            pid: {"name": pid, "description": POINT_DESCRIPTIONS[pid], "type": "SCALAR", "componentType": ctype}
                            for pid, (_, ctype, _) in POINT_PROPERTIES.items()
                        },
                    }
                },
            },
            "propertyAttributes": [
                {"class": POINT_CLASS, "properties": {pid: {"attribute": sem} for pid, (sem, _, _) in POINT_PROPERTIES.items()}}
            ],
        }
    }
    b.json["materials"] = [
        {
            "name": "points",
            "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 1.0},
            "extensions": {"KHR_materials_unlit": {}},
        }
    ]
    b.json["meshes"] = [
        {
            "primitives": [
                {
                    "attributes": attributes,
                    "mode": POINTS,
                    "material": 0,
                    "extensions": {"EXT_structural_metadata": {"propertyAttributes": [0]}},
                }
            ]
        }
    ]
    node: dict = {"mesh": 0, "translation": translation}
    if scale is not None:
        node["scale"] = scale
    b.json["nodes"] = [node]
    b.json["scenes"] = [{"nodes": [0]}]
    b.json["scene"] = 0
    if meshopt:
        glb = b.to_glb()
        # the placeholder buffer 1 holds the decoded bytes in loaders; it has no data of its own
        doc, binary = read_glb(glb)
        doc["buffers"].append({"byteLength": len(raw), "extensions": {"EXT_meshopt_compression": {"fallback": True}}})
        return _pack_glb(doc, binary)
    return b.to_glb()


def _pack_glb(doc: dict, binary: bytes) -> bytes:
    import json

    js = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    js += b" " * ((-len(js)) % 4)
    binary += b"\0" * ((-len(binary)) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return b"".join(
        [struct.pack("<III", 0x46546C67, 2, total), struct.pack("<II", len(js), 0x4E4F534A), js, struct.pack("<II", len(binary), 0x004E4942), binary]
    )


def decode_points_glb(data: bytes) -> dict[str, np.ndarray]:
    """Decode a point tile written by :func:`encode_points_glb` (for tests and tools).

    Returns
    -------
    ``positions`` (n, 3) float64 ENU metres in the tileset frame (node transform applied, y-up
    turned back to z-up), ``colors`` (n, 3) uint8 or absent, ``intensity``, ``classification``,
    ``return_number`` (n,).
    """
    doc, binary = read_glb(data)
    prim = doc["meshes"][0]["primitives"][0]
    node = doc["nodes"][0]
    views: dict[int, bytes] = {}

    def view_bytes(i: int) -> bytes:
        if i not in views:
            bv = doc["bufferViews"][i]
            ext = bv.get("extensions", {}).get("EXT_meshopt_compression")
            if ext is not None:
                src = binary[ext.get("byteOffset", 0) : ext.get("byteOffset", 0) + ext["byteLength"]]
                views[i] = meshopt_decode_attributes(src, ext["count"], ext["byteStride"]).tobytes()
            else:
                views[i] = binary[bv.get("byteOffset", 0) : bv.get("byteOffset", 0) + bv["byteLength"]]
        return views[i]

    dtypes = {FLOAT: np.float32, UNSIGNED_SHORT: np.uint16, UNSIGNED_BYTE: np.uint8}
    widths = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}

    def accessor(i: int) -> np.ndarray:
        acc = doc["accessors"][i]
        bv = doc["bufferViews"][acc["bufferView"]]
        dt = np.dtype(dtypes[acc["componentType"]])
        width = widths[acc["type"]]
        stride = bv.get("byteStride", dt.itemsize * width)
        raw = np.frombuffer(view_bytes(acc["bufferView"]), dtype=np.uint8)
        count = acc["count"]
        rows = np.lib.stride_tricks.as_strided(raw[acc.get("byteOffset", 0) :], shape=(count, dt.itemsize * width), strides=(stride, 1))
        return np.ascontiguousarray(rows).view(dt).reshape(count, width)

    attrs = prim["attributes"]
    pos = accessor(attrs["POSITION"]).astype(np.float64)
    if doc["accessors"][attrs["POSITION"]].get("normalized"):
        pos /= SHORT_MAX
    pos *= np.array(node.get("scale", [1.0, 1.0, 1.0]))
    pos += np.array(node.get("translation", [0.0, 0.0, 0.0]))
    out: dict[str, np.ndarray] = {"positions": np.stack([pos[:, 0], -pos[:, 2], pos[:, 1]], axis=1)}
    if "COLOR_0" in attrs:
        out["colors"] = accessor(attrs["COLOR_0"])[:, :3]
    for pid, (semantic, _, dtype) in POINT_PROPERTIES.items():
        out[pid] = accessor(attrs[semantic])[:, 0].astype(dtype)
    return out


# --- EXT_meshopt_compression, mode 0 (attributes), bitstream version 0 -------------------------

_HEADER = 0xA0
_TAIL = 32


def _block_elements(stride: int) -> int:
    return min((8192 // stride) & ~15, 256)


def meshopt_encode_attributes(data: np.ndarray) -> bytes:
    """Encode ``(n, stride)`` uint8 vertex data with the meshopt attribute codec.

    Byte deltas between consecutive elements, zigzagged, stored per byte position in groups of
    16 as 0, 2, 4 or 8 bits each (2- and 4-bit codes escape large values to a trailing byte).
    Vectorised over every group of every block at once.
    """
    data = np.ascontiguousarray(data, dtype=np.uint8)
    n, stride = data.shape
    if stride % 4 or stride > 256:
        raise ValueError("meshopt attributes need a stride divisible by 4 and at most 256")
    be = _block_elements(stride)
    prev = np.empty_like(data)
    prev[0] = data[0]  # the first element's baseline is itself (stored in the tail)
    prev[1:] = data[:-1]
    d = data - prev
    zz = (d << 1) ^ ((d >> 7) * np.uint8(0xFF))
    nblocks = -(-n // be)
    groups_full = be // 16
    pad_n = nblocks * be
    if pad_n != n:
        zz = np.concatenate([zz, np.zeros((pad_n - n, stride), np.uint8)])
    # (block, element, byte) → (block, byte, element): each data block is one byte position
    zz = zz.reshape(nblocks, be, stride).transpose(0, 2, 1)
    last_elems = n - (nblocks - 1) * be
    last_groups = -(-last_elems // 16)
    groups = zz.reshape(nblocks, stride, groups_full, 16)
    # every block holds groups_full groups except the last, which holds last_groups
    keep = np.ones((nblocks, stride, groups_full), dtype=bool)
    keep[-1, :, last_groups:] = False
    g = groups[keep]  # (G, 16) in stream order: block, byte, group
    big2 = (g >= 3).sum(axis=1)
    big4 = (g >= 15).sum(axis=1)
    size = np.stack([np.full(len(g), 10_000), 4 + big2, 8 + big4, np.full(len(g), 16)], axis=1)
    mode = np.argmin(size, axis=1)
    zero = ~g.any(axis=1)
    mode[zero] = 0
    size[zero, 0] = 0
    gsize = size[np.arange(len(g)), mode]
    units = np.zeros((len(g), 24), dtype=np.uint8)
    m1, m2, m3 = mode == 1, mode == 2, mode == 3
    if m1.any():
        v = np.minimum(g[m1], 3).reshape(-1, 4, 4)
        units[m1, :4] = (v[:, :, 0] << 6) | (v[:, :, 1] << 4) | (v[:, :, 2] << 2) | v[:, :, 3]
        _place_escapes(units, np.flatnonzero(m1), g[m1], 3, 4)
    if m2.any():
        v = np.minimum(g[m2], 15).reshape(-1, 8, 2)
        units[m2, :8] = (v[:, :, 0] << 4) | v[:, :, 1]
        _place_escapes(units, np.flatnonzero(m2), g[m2], 15, 8)
    if m3.any():
        units[m3, :16] = g[m3]
    # header bytes: 2 bits per group, 4 groups per byte, one header per (block, byte)
    counts = np.full(nblocks, groups_full)
    counts[-1] = last_groups
    seg_groups = np.repeat(counts, stride)  # groups in each (block, byte) segment
    seg_start = np.zeros(len(seg_groups) + 1, dtype=np.int64)
    np.cumsum(seg_groups, out=seg_start[1:])
    hbytes = -(-seg_groups // 4)
    seg_of_group = np.repeat(np.arange(len(seg_groups)), seg_groups)
    pos_in_seg = np.arange(len(g)) - seg_start[seg_of_group]
    header = np.zeros((len(seg_groups), 4), dtype=np.uint8)
    np.bitwise_or.at(header, (seg_of_group, pos_in_seg // 4), (mode.astype(np.uint8) << ((pos_in_seg % 4) * 2).astype(np.uint8)))
    # interleave: for each segment its header bytes, then its groups' bytes
    seg_len = hbytes + np.add.reduceat(gsize, seg_start[:-1]) if len(g) else hbytes
    head_mask = np.arange(4)[None, :] < hbytes[:, None]
    unit_mask = np.arange(24)[None, :] < gsize[:, None]
    out_len = int(seg_len.sum())
    body = np.empty(out_len, dtype=np.uint8)
    seg_off = np.zeros(len(seg_len) + 1, dtype=np.int64)
    np.cumsum(seg_len, out=seg_off[1:])
    # header bytes go at the start of each segment
    hpos = seg_off[:-1, None] + np.arange(4)[None, :]
    body[hpos[head_mask]] = header[head_mask]
    # group bytes follow, in order
    goff = np.zeros(len(g) + 1, dtype=np.int64)
    np.cumsum(gsize, out=goff[1:])
    gstart = seg_off[:-1][seg_of_group] + hbytes[seg_of_group] + goff[:-1] - goff[seg_start[seg_of_group]]
    upos = gstart[:, None] + np.arange(24)[None, :]
    body[upos[unit_mask]] = units[unit_mask]
    tail = np.zeros(max(_TAIL, stride), dtype=np.uint8)
    tail[-stride:] = data[0]
    return bytes([_HEADER]) + body.tobytes() + tail.tobytes()


def _place_escapes(units: np.ndarray, rows: np.ndarray, g: np.ndarray, sentinel: int, base: int) -> None:
    esc = g >= sentinel
    if not esc.any():
        return
    r, c = np.nonzero(esc)
    rank = np.cumsum(esc, axis=1)[r, c] - 1
    units[rows[r], base + rank] = g[r, c]


_SENT2 = np.array([sum(((b >> s) & 3) == 3 for s in (0, 2, 4, 6)) for b in range(256)], dtype=np.int64)
_SENT4 = np.array([((b >> 4) == 15) + ((b & 15) == 15) for b in range(256)], dtype=np.int64)


def meshopt_decode_attributes(src: bytes, count: int, stride: int) -> np.ndarray:
    """Decode meshopt attribute data to ``(count, stride)`` uint8 (a plain reference decoder)."""
    buf = np.frombuffer(src, dtype=np.uint8)
    if len(buf) < 1 + max(_TAIL, stride) or buf[0] != _HEADER:
        raise ValueError("not meshopt attribute data (version 0)")
    be = _block_elements(stride)
    last = buf[len(buf) - stride :].copy()
    out = np.empty((count, stride), dtype=np.uint8)
    p = 1
    for start in range(0, count, be):
        ne = min(be, count - start)
        ng = -(-ne // 16)
        block = np.empty((stride, ng * 16), dtype=np.uint8)
        for k in range(stride):
            hb = buf[p : p + -(-ng // 4)]
            p += len(hb)
            for gi in range(ng):
                m = (int(hb[gi // 4]) >> ((gi % 4) * 2)) & 3
                dst = block[k, gi * 16 : gi * 16 + 16]
                if m == 0:
                    dst[:] = 0
                elif m == 3:
                    dst[:] = buf[p : p + 16]
                    p += 16
                else:
                    bits, nb = (2, 4) if m == 1 else (4, 8)
                    packed = buf[p : p + nb]
                    p += nb
                    if bits == 2:
                        v = np.stack([(packed >> 6) & 3, (packed >> 4) & 3, (packed >> 2) & 3, packed & 3], axis=1).ravel()
                        sentinel = 3
                    else:
                        v = np.stack([packed >> 4, packed & 15], axis=1).ravel()
                        sentinel = 15
                    esc = np.flatnonzero(v == sentinel)
                    v = v.astype(np.uint8)
                    v[esc] = buf[p : p + len(esc)]
                    p += len(esc)
                    dst[:] = v
        zz = block[:, :ne].T
        d = (zz >> 1) ^ (np.uint8(0) - (zz & 1))
        vals = np.cumsum(np.concatenate([last[None, :], d]).astype(np.uint64), axis=0)[1:] & 0xFF
        out[start : start + ne] = vals.astype(np.uint8)
        last = out[start + ne - 1].copy()
    if p != len(buf) - max(_TAIL, stride):
        raise ValueError("meshopt attribute data has trailing or missing bytes")
    return out
