"""GLB point-cloud tiles: one POINTS primitive, quantized positions, per-point metadata.

Layout of a tile (glTF 2.0, y up, as 3D Tiles 1.1 expects), every attribute on a 4-byte boundary
as glTF requires (single bytes are widened with padding, which compression makes almost free):

- most nodes: one interleaved vertex buffer view, ``POSITION`` (UNSIGNED_SHORT normalized VEC3
  + 2 pad bytes, the node's translation and scale undoing the quantization:
  ``KHR_mesh_quantization``), ``COLOR_0`` (UNSIGNED_SHORT normalized VEC3 + 2 pad bytes),
  ``_INTENSITY`` (UNSIGNED_SHORT + 2 pad), ``_CLASSIFICATION`` and ``_RETURN_NUMBER``
  (UNSIGNED_BYTE + 3 pad each): 28 bytes a point;
- the few coarse nodes where 16 bits would step more than ``max_step``: FLOAT VEC3 positions in
  a view of their own, stored as 24-bit mantissas on a power-of-two step under meshopt's
  EXPONENTIAL filter (decoded to float32), the other attributes in a second view;
- ``EXT_structural_metadata`` property attributes of class ``point`` (``intensity`` UINT16,
  ``classification`` UINT8, ``return_number`` UINT8) so that a viewer styles by them;
- an explicit unlit material (``KHR_materials_unlit``, with ``metallicFactor`` 0 as fallback);
- optionally ``EXT_meshopt_compression`` (mode ATTRIBUTES) on the vertex buffers: points come in
  Morton order, so byte deltas are small; padding, classes and return numbers cost almost
  nothing, and intensities recorded in 8 bits leave their high byte constant (free).
  The Khronos validator reports 0 errors and warnings (it cannot decode the extension, so it
  checks the JSON only); CesiumJS decodes it with meshoptimizer.

Colours: the sources' RGB is sRGB (display values, staged as 8 bits a channel) and glTF defines
``COLOR_0`` as linear, which every client converts back to sRGB when it draws; a tile that stored
the sRGB bytes themselves would be converted twice and look pale. The packing kernel looks each
channel up in :data:`cim.kernels.color.SRGB8_TO_LINEAR16` (the exact sRGB transfer function,
rounded once, so the output stays deterministic). Sixteen bits because eight bits of linear light
merge the dark sRGB levels (shadows, dark vegetation) into a few bands; with sixteen, every level
keeps a value of its own and decodes back to the same sRGB byte. The low bytes follow no
smooth pattern and cost about two bytes a point after compression; an encoding that keeps them
constant where eight bits suffice saves little unless it gives up that round trip (the figures,
and the alternatives measured, are in ``benchmarks/README.md``).

Where the bytes of a point go, and the layouts measured and dropped (other point orders, float32
positions for the coarse nodes, a larger shared JSON), is in ``benchmarks/README.md``.

The meshopt attribute codec is in :mod:`cim.formats.meshopt`.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
from numba import njit

from cim.formats.glb import ARRAY_BUFFER, CHUNK_BIN, CHUNK_JSON, FLOAT, GLB_MAGIC, POINTS, UNSIGNED_BYTE, UNSIGNED_SHORT, read_glb
from cim.formats.meshopt import exponential_filter, meshopt_decode_attributes, meshopt_encode_attributes
from cim.kernels import JitOptions
from cim.kernels.color import SRGB8_TO_LINEAR16, linear_to_srgb

__all__ = [
    "POINT_CLASS",
    "POINT_PROPERTIES",
    "POINT_DESCRIPTIONS",
    "SHORT_MAX",
    "EXPONENTIAL",
    "MANTISSA_MAX",
    "encode_points_glb",
    "POINT_WORDS",
    "encode_point_words",
    "decode_points_glb",
    "position_bounds",
]

_JIT: JitOptions = {"nogil": True, "cache": True}

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


#: the EXT_meshopt_compression filter of 24-bit positions (each component a signed 24-bit
#: mantissa and an 8-bit exponent, decoded to float32)
EXPONENTIAL = "EXPONENTIAL"
MANTISSA_MAX = (1 << 23) - 1


def encode_points_glb(
    positions: np.ndarray,
    unit: float,
    colors: np.ndarray | None,
    intensity: np.ndarray,
    classification: np.ndarray,
    return_number: np.ndarray,
    *,
    max_step: float = 0.005,
    precision: float = 0.0,
    meshopt: bool = False,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """Encode one point tile as a GLB.

    Parameters
    ----------
    positions : (n, 3) int32, ENU (east, north, up) in multiples of ``unit`` metres, in the
        tileset's frame
    unit : metres per position unit
    colors : (n, 3) uint8 sRGB, or None for a tile without colour (stored linear, 16-bit)
    intensity : (n,) uint16
    classification, return_number : (n,) uint8
    max_step, precision, meshopt, bounds : passed through to :func:`encode_point_words`, which
        documents them (``bounds`` of ``positions``)

    Returns
    -------
    GLB bytes, as :func:`encode_point_words` writes them.
    """
    n = len(positions)
    words = np.zeros((n, POINT_WORDS), dtype=np.uint32)
    words[:, :3] = np.asarray(positions).astype(np.int32).view(np.uint32)
    if colors is not None:
        c = np.asarray(colors, dtype=np.uint32)
        words[:, 3] = c[:, 0] | c[:, 1] << 8 | c[:, 2] << 16
    words[:, 3] |= np.asarray(classification, dtype=np.uint32) << 24
    words[:, 4] = np.asarray(intensity, dtype=np.uint32) | np.asarray(return_number, dtype=np.uint32) << 16
    return encode_point_words(words, unit, colors is not None, max_step=max_step, precision=precision, meshopt=meshopt, bounds=bounds)


#: uint32 words a point: x, y, z (int32), ``r | g << 8 | b << 16 | class << 24``,
#: ``intensity | return_number << 16`` (the layout of :data:`cim.tiling.octree.STAGE_DTYPE`)
POINT_WORDS = 5


def encode_point_words(
    words: np.ndarray,
    unit: float,
    colored: bool,
    *,
    max_step: float = 0.005,
    precision: float = 0.0,
    meshopt: bool = False,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """Encode one point tile, given as packed words (:data:`POINT_WORDS`), as a GLB.

    Parameters
    ----------
    words : (n, 5) uint32 points (any row order; a Morton order compresses best)
    unit : metres per position unit
    colored : write COLOR_0 (the staged sRGB bytes, as 16-bit linear values)
    max_step : largest quantization step (m) accepted for 16-bit positions; larger nodes store
        24-bit positions on a power-of-two step of at most ``max_step``
    precision : quantization step (m) wanted when 16 bits would be finer (the data's own
        resolution: finer steps only add noise bits that compress badly)
    meshopt : compress the vertex buffers with ``EXT_meshopt_compression``
    bounds : the positions' (lo, hi) per axis when the caller has them (:func:`position_bounds`)

    Returns
    -------
    GLB bytes. Positions are stored in glTF axes ``(e, u, -n)`` from the box's west, bottom and
    north corner; the node's translation (and scale, when 16-bit) places them in the tileset frame.
    """
    n = len(words)
    if n == 0:
        raise ValueError("a point tile needs at least one point")
    lo, hi = (np.asarray(b, dtype=np.int64) for b in bounds) if bounds is not None else position_bounds(words)
    ext = np.maximum(hi - lo, 1)
    finest = -(-ext // SHORT_MAX)  # the smallest integer step that spans the node in 16 bits
    short = float(finest.max()) * unit <= max_step
    base = lo.copy()
    base[1] = hi[1]  # north is flipped: measured down from the top
    translation = [round(float(lo[0] * unit), 9), round(float(lo[2] * unit), 9), round(float(-hi[1] * unit), 9)]
    scale = None
    if short:
        # one cubic lattice: the step that fits the node's largest side in 16 bits, no finer than
        # the data. A finer step on the flatter axes (the vertical, mostly) would spend bytes on
        # errors below the data's own precision anyway.
        # q = round(rel / step), step a whole number of units: 32.32 fixed point
        step = np.full(3, max(int(finest.max()), max(1, int(precision / unit + 1e-9))), dtype=np.int64)
        mul = np.array([((1 << 32) + int(t) // 2) // int(t) for t in step], dtype=np.int64)
        span = step * SHORT_MAX * unit  # what the normalized 1.0 stands for
        scale = [round(float(span[0]), 9), round(float(span[2]), 9), round(float(span[1]), 9)]
        mode, exponent = _SHORT, 0
    else:
        # the same rule as 16-bit nodes, the finest 16-bit step clamped to [precision, max_step],
        # here max_step: as a power of two (exact in float32) on 24-bit mantissas. Meshopt's
        # EXPONENTIAL filter turns them into float32 on the GPU; raw float32 positions compress
        # worse than these mantissas on one step (benchmarks/README.md)
        exponent = math.floor(math.log2(max(max_step, unit)))
        exponent = max(exponent, math.ceil(math.log2(float(ext.max()) * unit / MANTISSA_MAX)))
        mul = np.zeros(3, dtype=np.int64)
        mode = _EXPONENTIAL if meshopt else _FLOAT
    attr_words = (2 if colored else 0) + 3
    pos_words = 2 if short else 3
    if short:  # one interleaved view: position, then the attributes
        views = [np.empty((n, pos_words + attr_words), dtype=np.uint32)]
        pos_view, attr_col = 0, pos_words
    else:  # the position filter applies to a whole view: positions get their own
        views = [np.empty((n, pos_words), dtype=np.uint32), np.empty((n, attr_words), dtype=np.uint32)]
        pos_view, attr_col = 0, 0
    pmin = np.empty(3)
    pmax = np.empty(3)
    _pack_words(
        np.ascontiguousarray(words, dtype=np.uint32),
        base,
        mode,
        mul,
        unit / 2.0**exponent,
        exponent,
        colored,
        _LINEAR16,
        views[pos_view],
        views[-1],
        attr_col,
        pmin,
        pmax,
    )
    views = [v.view(np.uint8) for v in views]
    pos_col = 0
    attr_col *= 4
    bound_min: list[float]
    bound_max: list[float]
    if short:
        bound_min, bound_max = [int(v) for v in pmin], [int(v) for v in pmax]
    else:
        bound_min = [float(v) * 2.0**exponent for v in pmin]
        bound_max = [float(v) * 2.0**exponent for v in pmax]

    doc: dict = {"asset": {"version": "2.0", "generator": "cim"}}
    chunks: list[bytes | memoryview] = []
    buffer_views: list[dict] = []
    offset = raw_offset = 0
    for i, data in enumerate(views):
        stride = data.shape[1]
        encoded: bytes | memoryview
        if meshopt:
            encoded = meshopt_encode_attributes(data)
            ext_ = {"buffer": 0, "byteOffset": offset, "byteLength": len(encoded), "byteStride": stride, "mode": "ATTRIBUTES", "count": n}
            if i == pos_view and mode == _EXPONENTIAL:
                ext_["filter"] = EXPONENTIAL
            buffer_views.append(
                {
                    "buffer": 1,
                    "byteOffset": raw_offset,
                    "byteLength": n * stride,
                    "byteStride": stride,
                    "target": ARRAY_BUFFER,
                    "extensions": {"EXT_meshopt_compression": ext_},
                }
            )
            raw_offset += n * stride
        else:
            encoded = data.data.cast("B")  # memoryview(data): numpy's stubs give arrays __buffer__ on Python 3.12+ only
            buffer_views.append({"buffer": 0, "byteOffset": offset, "byteLength": n * stride, "byteStride": stride, "target": ARRAY_BUFFER})
        chunks.append(encoded)
        offset += len(encoded)
        if offset % 4:
            chunks.append(b"\0" * (4 - offset % 4))
            offset += 4 - offset % 4
    doc["bufferViews"] = buffer_views
    doc["buffers"] = [{"byteLength": offset}]
    if meshopt:  # the placeholder buffer the decoded views live in; it holds no data of its own
        doc["buffers"].append({"byteLength": raw_offset, "extensions": {"EXT_meshopt_compression": {"fallback": True}}})
    used, required = [], []
    if meshopt:
        used.append("EXT_meshopt_compression")
        required.append("EXT_meshopt_compression")
    if short:
        used.append("KHR_mesh_quantization")
        required.append("KHR_mesh_quantization")
    doc["extensionsUsed"] = [*used, "KHR_materials_unlit", "EXT_structural_metadata"]
    if required:
        doc["extensionsRequired"] = required

    accessors: list[dict] = []

    def add(view: int, byte_offset: int, ctype: int, type_: str, normalized: bool = False, **extra) -> int:
        acc = {"bufferView": view, "componentType": ctype, "count": n, "type": type_}
        if byte_offset:
            acc["byteOffset"] = byte_offset
        if normalized:
            acc["normalized"] = True
        acc.update(extra)
        accessors.append(acc)
        return len(accessors) - 1

    attr_view = len(views) - 1
    attributes = {"POSITION": add(pos_view, pos_col, UNSIGNED_SHORT if short else FLOAT, "VEC3", short, min=bound_min, max=bound_max)}
    col = attr_col
    if colored:
        attributes["COLOR_0"] = add(attr_view, col, UNSIGNED_SHORT, "VEC3", True)
        col += 8
    for pid, (semantic, _, _) in POINT_PROPERTIES.items():
        attributes[semantic] = add(attr_view, col, UNSIGNED_SHORT if pid == "intensity" else UNSIGNED_BYTE, "SCALAR")
        col += 4
    doc["accessors"] = accessors
    doc["meshes"] = [
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
    doc["nodes"] = [node]
    return _pack_glb(doc, chunks)


#: what every tile's JSON shares (metadata schema, material, scene), serialised once. Kept to
#: what readers need (the properties' descriptions, :data:`POINT_DESCRIPTIONS`, go in the layer's
#: manifest): every tile repeats it, so its size counts per point
_SHARED_JSON = json.dumps(
    {
        "extensions": {
            "EXT_structural_metadata": {
                "schema": {
                    "id": "cim_pointcloud",
                    "classes": {
                        POINT_CLASS: {
                            "properties": {
                                pid: {"type": "SCALAR", "componentType": ctype} for pid, (_, ctype, _) in POINT_PROPERTIES.items()
                            },
                        }
                    },
                },
                "propertyAttributes": [
                    {"class": POINT_CLASS, "properties": {pid: {"attribute": sem} for pid, (sem, _, _) in POINT_PROPERTIES.items()}}
                ],
            }
        },
        "materials": [{"pbrMetallicRoughness": {"metallicFactor": 0}, "extensions": {"KHR_materials_unlit": {}}}],
        "scenes": [{"nodes": [0]}],
        "scene": 0,
    },
    separators=(",", ":"),
)


def _pack_glb(doc: dict, chunks: list) -> bytes:
    """A GLB of ``doc`` (a tile's own JSON) plus :data:`_SHARED_JSON`, and the binary ``chunks``
    (each a multiple of 4 bytes long)."""
    js = (json.dumps(doc, separators=(",", ":"), allow_nan=False)[:-1] + "," + _SHARED_JSON[1:]).encode()
    js += b" " * ((-len(js)) % 4)
    size = sum(len(c) for c in chunks)
    total = 12 + 8 + len(js) + 8 + size
    return b"".join(
        [
            struct.pack("<III", GLB_MAGIC, 2, total),
            struct.pack("<II", len(js), CHUNK_JSON),
            js,
            struct.pack("<II", size, CHUNK_BIN),
            *chunks,
        ]
    )


def decode_points_glb(data: bytes) -> dict[str, np.ndarray]:
    """Decode a point tile written by :func:`encode_points_glb` (for tests and tools).

    Returns
    -------
    ``positions`` (n, 3) float64 ENU metres in the tileset frame (node transform applied, y-up
    turned back to z-up), ``colors`` (n, 3) uint8 sRGB (the stored linear values converted back:
    the bytes the encoder was given) and ``linear_colors`` (n, 3) float64 in [0, 1] (as stored), or
    both absent, ``intensity``, ``classification``, ``return_number`` (n,).
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
                raw = meshopt_decode_attributes(src, ext["count"], ext["byteStride"])
                if ext.get("filter", "NONE") == EXPONENTIAL:
                    raw = exponential_filter(raw)
                elif ext.get("filter", "NONE") != "NONE":
                    raise ValueError(f"meshopt filter {ext['filter']} is not supported here")
                views[i] = raw.tobytes()
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
        stored = accessor(attrs["COLOR_0"])[:, :3]
        linear = stored.astype(np.float64)
        if doc["accessors"][attrs["COLOR_0"]].get("normalized"):
            linear /= np.iinfo(stored.dtype).max
        out["linear_colors"] = linear
        out["colors"] = np.round(linear_to_srgb(linear) * 255.0).astype(np.uint8)
    for pid, (semantic, _, dtype) in POINT_PROPERTIES.items():
        out[pid] = accessor(attrs[semantic])[:, 0].astype(dtype)
    return out


_SHORT, _EXPONENTIAL, _FLOAT = 0, 1, 2  # position encodings of :func:`_pack_words`
_LINEAR16 = SRGB8_TO_LINEAR16.astype(np.uint32)  # the kernel's colour table, in its word type


@njit(**_JIT)
def _pack_words(words, base, mode, mul, inv_step, exponent, colored, linear16, pos_out, attr_out, attr_col, pmin, pmax):  # pragma: no cover
    """Write a tile's vertices as uint32 words, and the POSITION accessor's bounds (in stored
    units) into ``pmin``, ``pmax``.

    Positions go to ``pos_out[:, :2]`` or ``[:, :3]`` in glTF axes, offsets from ``base`` that are
    >= 0 on every axis (east, up, and north measured down from the top). ``mode`` _SHORT:
    UNSIGNED_SHORT x 3 + 2 pad bytes, ``q = round(rel / step)`` by 32.32 fixed point ``mul``;
    _EXPONENTIAL: per component a 24-bit mantissa ``round(rel * inv_step)`` below the 8-bit
    ``exponent`` (the meshopt EXPONENTIAL filter's input); _FLOAT: the same values as float32.
    The attributes go to ``attr_out[:, attr_col:]``: COLOR_0 RGB + pad (when ``colored``; each
    staged sRGB byte looked up in ``linear16``, (256,) uint32), _INTENSITY + 2 pad,
    _CLASSIFICATION + 3 pad, _RETURN_NUMBER + 3 pad, each a masked copy of a staged word: one
    pass of word stores, not byte by byte.
    """
    n = words.shape[0]
    f = np.empty(1, dtype=np.float32)
    fw = f.view(np.uint32)
    top = np.uint32((exponent & 0xFF) << 24)  # the exponent byte (two's complement)
    step = 2.0**exponent
    for k in range(3):
        pmin[k] = np.inf
        pmax[k] = -np.inf
    half = np.int64(1) << 31
    for i in range(n):
        e = np.int64(np.int32(words[i, 0])) - base[0]
        s = base[1] - np.int64(np.int32(words[i, 1]))
        u = np.int64(np.int32(words[i, 2])) - base[2]
        if mode == 0:
            q0 = min((e * mul[0] + half) >> 32, 65535)
            q1 = min((u * mul[2] + half) >> 32, 65535)
            q2 = min((s * mul[1] + half) >> 32, 65535)
            pos_out[i, 0] = np.uint32(q0 | (q1 << 16))
            pos_out[i, 1] = np.uint32(q2)
        else:
            q0 = min(np.int64(e * inv_step + 0.5), 8388607)
            q1 = min(np.int64(u * inv_step + 0.5), 8388607)
            q2 = min(np.int64(s * inv_step + 0.5), 8388607)
            if mode == 1:
                pos_out[i, 0] = np.uint32(q0) | top
                pos_out[i, 1] = np.uint32(q1) | top
                pos_out[i, 2] = np.uint32(q2) | top
            else:
                f[0] = q0 * step
                pos_out[i, 0] = fw[0]
                f[0] = q1 * step
                pos_out[i, 1] = fw[0]
                f[0] = q2 * step
                pos_out[i, 2] = fw[0]
        v0, v1, v2 = float(q0), float(q1), float(q2)
        if v0 < pmin[0]:
            pmin[0] = v0
        if v0 > pmax[0]:
            pmax[0] = v0
        if v1 < pmin[1]:
            pmin[1] = v1
        if v1 > pmax[1]:
            pmax[1] = v1
        if v2 < pmin[2]:
            pmin[2] = v2
        if v2 > pmax[2]:
            pmax[2] = v2
        w3 = words[i, 3]
        w4 = words[i, 4]
        c = attr_col
        if colored:
            attr_out[i, c] = linear16[w3 & np.uint32(0xFF)] | (linear16[(w3 >> np.uint32(8)) & np.uint32(0xFF)] << np.uint32(16))
            attr_out[i, c + 1] = linear16[(w3 >> np.uint32(16)) & np.uint32(0xFF)]
            c += 2
        attr_out[i, c] = w4 & np.uint32(0xFFFF)
        attr_out[i, c + 1] = w3 >> np.uint32(24)
        attr_out[i, c + 2] = w4 >> np.uint32(16)


def position_bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis (min, max) of (n, 3) integer positions, or of the positions in (n, 5) uint32
    point words, as two (3,) int64."""
    lo = np.empty(3, dtype=np.int64)
    hi = np.empty(3, dtype=np.int64)
    if points.dtype == np.uint32:
        _bounds(points.view(np.int32), lo, hi)
    else:
        _bounds(points, lo, hi)
    return lo, hi


@njit(**_JIT)
def _bounds(pos, lo, hi):  # pragma: no cover - compiled
    """Per-axis min and max of the first three columns of (n, k) integers into ``lo``, ``hi``."""
    for k in range(3):
        lo[k] = pos[0, k]
        hi[k] = pos[0, k]
    for i in range(1, pos.shape[0]):
        for k in range(3):
            v = pos[i, k]
            if v < lo[k]:
                lo[k] = v
            elif v > hi[k]:
                hi[k] = v
