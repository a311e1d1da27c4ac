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


_ONES = np.uint64(0x0101010101010101)


def _nonzero_bytes(t: np.ndarray) -> np.ndarray:
    """0x01 in each byte of ``t`` (uint64) that is nonzero, else 0x00 (in place)."""
    t |= t >> np.uint64(4)
    t |= t >> np.uint64(2)
    t |= t >> np.uint64(1)
    t &= _ONES
    return t


def _byte_sum(f: np.ndarray) -> np.ndarray:
    """Sum of the bytes of each uint64 (each byte 0 or 1): one multiply, the top byte."""
    return ((f * _ONES) >> np.uint64(56)).astype(np.int64)


def meshopt_encode_attributes(data: np.ndarray) -> bytes:
    """Encode ``(n, stride)`` uint8 vertex data with the meshopt attribute codec.

    Byte deltas between consecutive elements, zigzagged, stored per byte position in groups of
    16 as 0, 2, 4 or 8 bits each (2- and 4-bit codes escape larger values to trailing bytes).
    Vectorised over every group of every block at once; each group's 16 bytes are two uint64
    words, so the per-byte tests (``>= 3``, ``>= 15``) and counts are a few word operations.
    """
    data = np.ascontiguousarray(data, dtype=np.uint8)
    n, stride = data.shape
    if stride % 4 or stride > 256:
        raise ValueError("meshopt attributes need a stride divisible by 4 and at most 256")
    if n == 0:
        raise ValueError("nothing to encode")
    be = _block_elements(stride)
    zz = np.empty_like(data)
    zz[0] = 0  # the first element's baseline is itself, stored in the tail
    np.subtract(data[1:], data[:-1], out=zz[1:])
    zz = (zz << np.uint8(1)) ^ (np.uint8(0) - (zz >> np.uint8(7)))
    full = n // be
    parts = [bytes([_HEADER])]
    if full:
        parts.append(_encode_blocks(zz[: full * be].reshape(full, be, stride)))
    rem = n - full * be
    if rem:
        padded = -(-rem // 16) * 16
        last = np.zeros((1, padded, stride), dtype=np.uint8)
        last[0, :rem] = zz[full * be :]
        parts.append(_encode_blocks(last))
    tail = np.zeros(max(_TAIL, stride), dtype=np.uint8)
    tail[-stride:] = data[0]
    parts.append(tail.tobytes())
    return b"".join(parts)


def _encode_blocks(z: np.ndarray) -> bytes:
    """Encode blocks of zigzagged deltas, ``z`` (blocks, elements, stride) with elements a
    multiple of 16, all blocks holding the same number of elements.

    Each (block, byte) data block becomes one row of header bytes followed by one row per group,
    each row padded to 24 bytes; a boolean mask of the rows' lengths then compacts them into the
    stream in one pass (no offsets to compute, no scattered writes but the escapes)."""
    nb, ne, stride = z.shape
    ng = ne // 16
    nseg = nb * stride
    hb = -(-ng // 4)
    g8 = np.ascontiguousarray(z.transpose(0, 2, 1)).reshape(nseg * ng, 16)
    w = g8.view(np.uint64)  # (groups, 2)
    # a byte is >= 3 when a bit above the low two is set or both low bits are (+1 carries into
    # bit 2); >= 15 likewise with nibbles. No carry crosses a byte.
    low2 = w & np.uint64(0x0303030303030303)
    f3 = _nonzero_bytes((w & np.uint64(0xFCFCFCFCFCFCFCFC)) | ((low2 + _ONES) & np.uint64(0x0404040404040404)))
    low4 = w & np.uint64(0x0F0F0F0F0F0F0F0F)
    f15 = _nonzero_bytes((w & np.uint64(0xF0F0F0F0F0F0F0F0)) | ((low4 + _ONES) & np.uint64(0x1010101010101010)))
    c3 = _byte_sum(f3).sum(axis=1)
    c15 = _byte_sum(f15).sum(axis=1)
    zero = (w[:, 0] | w[:, 1]) == 0
    s1, s2 = 4 + c3, 8 + c15
    mode = np.where(s1 <= s2, np.where(s1 <= 16, 1, 3), np.where(s2 <= 16, 2, 3)).astype(np.uint8)
    mode[zero] = 0
    gsize = np.minimum(np.minimum(s1, s2), 16)
    gsize[zero] = 0
    rows = np.zeros((nseg, ng + 1, 24), dtype=np.uint8)
    lens = np.empty((nseg, ng + 1), dtype=np.int64)
    lens[:, 0] = hb
    lens[:, 1:] = gsize.reshape(nseg, ng)
    # headers: 2 bits a group, first group in the low bits
    mm = np.zeros((nseg, hb * 4), dtype=np.uint8)
    mm[:, :ng] = mode.reshape(nseg, ng)
    mm = mm.reshape(nseg, hb, 4)
    rows[:, 0, :hb] = mm[:, :, 0] | (mm[:, :, 1] << 2) | (mm[:, :, 2] << 4) | (mm[:, :, 3] << 6)
    flat = rows.reshape(nseg * (ng + 1), 24)  # a view; group i is row i + i // ng + 1
    i3 = np.flatnonzero(mode == 3)
    if len(i3):
        flat[i3 + i3 // ng + 1, :16] = g8[i3]
    for m, flags, low in ((1, f3, low2), (2, f15, low4)):
        idx = np.flatnonzero(mode == m)
        if not len(idx):
            continue
        fl = flags[idx]
        if m == 1:
            lanes = (low[idx] | (fl * np.uint64(3))).view(np.uint32)  # 4 deltas → 1 byte, first high
            packed = ((lanes & 3) << 6) | (((lanes >> 8) & 3) << 4) | (((lanes >> 16) & 3) << 2) | (lanes >> 24)
            width = 4
        else:
            lanes = (low[idx] | (fl * np.uint64(15))).view(np.uint16)
            packed = ((lanes & 15) << 4) | (lanes >> 8)
            width = 8
        ridx = idx + idx // ng + 1
        flat[ridx, :width] = packed.astype(np.uint8).reshape(len(idx), width)
        # escaped bytes follow in element order: rank = escapes before it in the group, from
        # byte prefix sums (multiplying by 0x0101.. sums lower bytes into each byte)
        esc = fl.view(np.uint8).ravel()
        pos = np.flatnonzero(esc)
        if len(pos):
            incl = fl * _ONES
            first = (incl[:, 0] >> np.uint64(56)).astype(np.uint8)
            rank = (incl - fl).view(np.uint8).reshape(len(idx), 16)
            rank[:, 8:] += first[:, None]
            grp = pos >> 4
            flat[ridx[grp], width + rank.ravel()[pos]] = g8[idx].ravel()[pos]
    keep = np.arange(24, dtype=np.int64) < lens[:, :, None]
    return rows[keep].tobytes()


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
