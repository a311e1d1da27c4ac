"""quantized-mesh-1.0 terrain tiles: encoder, decoder and ``layer.json``.

The format (github.com/CesiumGS/quantized-mesh): little-endian; an 88-byte header (tile centre in
ECEF, min/max height, bounding sphere, horizon occlusion point); the vertices as three arrays u, v
(0 … 32767 across the tile, west→east and south→north) and height (0 … 32767 between the header's
min and max), each delta- then zig-zag-encoded; triangle indices counter-clockwise seen from above,
high-water-mark encoded, 16-bit unless there are more than 65,536 vertices (then 32-bit, after
padding to a 4-byte boundary); the indices of the vertices on the west, south, east and north edges;
then extensions, here only oct-encoded vertex normals (id 1, ``octvertexnormals``).

Vertices are renumbered in order of first use by the triangles, which high-water-mark coding needs.
Header geometry is computed from the *dequantized* vertices, as a client decodes them, so the
bounding sphere holds every decoded vertex. The horizon occlusion point is Cesium's
(EllipsoidalOccluder.computeHorizonCullingPointPossiblyUnderEllipsoid): along the direction of the
bounding sphere's centre, in the ellipsoid-scaled frame, far enough out that when it is below the
horizon every vertex is; with the ellipsoid shrunk by the minimum height when that is negative.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from cim.kernels.frames import WGS84_A, WGS84_E2, geodetic_to_ecef

QMAX = 32767
HEADER = struct.Struct("<3d2f4d3d")
OCT_VERTEX_NORMALS = 1
WGS84_B = WGS84_A * np.sqrt(1.0 - WGS84_E2)
#: scaled-space magnitude of the occlusion point when no finite one bounds the tile (a tile
#: spanning a hemisphere): far out along its direction, so it is culled only from the far side
UNBOUNDED_OCCLUSION = 1e6


@dataclass
class QuantizedMesh:
    """One decoded tile. Positions are quantized as in the file; see :meth:`lonlat_heights`."""

    center: np.ndarray  # (3,) ECEF
    min_height: float
    max_height: float
    sphere_center: np.ndarray  # (3,) ECEF
    sphere_radius: float
    horizon_occlusion: np.ndarray  # (3,) ellipsoid-scaled ECEF
    u: np.ndarray  # (n,) int, 0..32767 west→east
    v: np.ndarray  # (n,) int, 0..32767 south→north
    h: np.ndarray  # (n,) int, 0..32767 min→max height
    triangles: np.ndarray  # (m, 3) int64, counter-clockwise seen from above
    west: np.ndarray
    south: np.ndarray
    east: np.ndarray
    north: np.ndarray
    normals: np.ndarray | None = None  # (n, 3) float64 unit ECEF vectors
    extensions: dict[int, bytes] | None = None

    def heights(self) -> np.ndarray:
        """(n,) float64 metres, dequantized as a client does."""
        return self.min_height + self.h / QMAX * (self.max_height - self.min_height)

    def lonlat_heights(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        """(n, 3) float64 ``(lon°, lat°, h m)`` of the vertices, given the tile's bounds."""
        west, south, east, north = bounds
        return np.stack(
            [west + self.u / QMAX * (east - west), south + self.v / QMAX * (north - south), self.heights()], axis=1
        )


def zigzag_delta_decode(codes: np.ndarray) -> np.ndarray:
    """Undo delta and zig-zag coding: (n,) uint16 codes → (n,) int64 values (the spec's decoder)."""
    c = np.asarray(codes, dtype=np.int64)
    return np.cumsum((c >> 1) ^ -(c & 1)) & 0xFFFF


def high_water_mark_decode(codes: np.ndarray) -> np.ndarray:
    """High-water-mark codes → indices: ``index = highest - code``; a 0 code raises the mark."""
    c = np.asarray(codes, dtype=np.int64).ravel()
    highest = np.concatenate([[0], np.cumsum(c == 0)[:-1]])
    return highest - c


def oct_encode(normals: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors → (n, 2) uint8, Cesium's AttributeCompression.octEncode (range 255)."""
    n = np.asarray(normals, dtype=np.float64)
    p = n[:, :2] / np.abs(n).sum(axis=1, keepdims=True)
    below = n[:, 2] < 0
    sign = np.where(p >= 0, 1.0, -1.0)  # signNotZero
    folded = (1.0 - np.abs(p[:, ::-1])) * sign
    p = np.where(below[:, None], folded, p)
    return np.round((np.clip(p, -1.0, 1.0) * 0.5 + 0.5) * 255.0).astype(np.uint8)


def oct_decode(encoded: np.ndarray) -> np.ndarray:
    """(n, 2) uint8 → (n, 3) unit float64 vectors (Cesium's AttributeCompression.octDecode)."""
    p = np.asarray(encoded, dtype=np.float64) / 255.0 * 2.0 - 1.0
    z = 1.0 - np.abs(p).sum(axis=1)
    sign = np.where(p >= 0, 1.0, -1.0)
    folded = (1.0 - np.abs(p[:, ::-1])) * sign
    xy = np.where((z < 0)[:, None], folded, p)
    v = np.column_stack([xy, z])
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def horizon_occlusion_points(points: np.ndarray, directions: np.ndarray, min_heights: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Cesium's horizon culling point of each tile's ECEF points, in its (possibly shrunk) scaled frame.

    Parameters
    ----------
    points : (N, 3) ECEF metres, tile after tile
    directions : (k, 3) the direction each point lies along (the tile's bounding-sphere centre)
    min_heights : (k,) each tile's minimum height; below 0 the ellipsoid shrinks by it, as the
        client shrinks it when it tests the point (``isScaledSpacePointVisiblePossiblyUnderEllipsoid``)
    offsets : (k + 1,) tile ``s`` owns ``points[offsets[s]:offsets[s+1]]``

    Returns
    -------
    (k, 3) float64. A tile no finite point bounds (one spanning a hemisphere) gets a point
    ``UNBOUNDED_OCCLUSION`` radii out along its direction.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    seg = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    shrink = np.minimum(0.0, np.asarray(min_heights, dtype=np.float64))
    radii = np.column_stack([WGS84_A + shrink, WGS84_A + shrink, WGS84_B + shrink])
    d = np.asarray(directions, dtype=np.float64) / radii
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    s = np.asarray(points, dtype=np.float64) / radii[seg]
    mag2 = (s * s).sum(axis=1)
    mag = np.sqrt(mag2)
    unit = s / mag[:, None]
    mag2, mag = np.maximum(mag2, 1.0), np.maximum(mag, 1.0)  # points below count as on the ellipsoid
    ds = d[seg]
    cos_a = (unit * ds).sum(axis=1)
    sin_a = np.linalg.norm(np.cross(unit, ds), axis=1)
    cos_b = 1.0 / mag
    sin_b = np.sqrt(mag2 - 1.0) * cos_b
    denom = cos_a * cos_b - sin_a * sin_b
    with np.errstate(divide="ignore"):
        inv = np.where(denom > 0, 1.0 / denom, np.inf)
    magnitude = np.maximum.reduceat(inv, offsets[:-1])
    magnitude = np.where(np.isfinite(magnitude), magnitude, UNBOUNDED_OCCLUSION)
    return d * magnitude[:, None]


def encode_quantized_mesh(
    bounds: tuple[float, float, float, float],
    u: np.ndarray,
    v: np.ndarray,
    heights: np.ndarray,
    triangles: np.ndarray,
    *,
    normals: np.ndarray | None = None,
    height_range: tuple[float, float] | None = None,
) -> bytes:
    """Encode one terrain tile (see :func:`encode_quantized_meshes` for the parameters).

    Returns
    -------
    The uncompressed tile (gzip it for serving: :func:`gzip_tile`).
    """
    n, m = len(u), len(np.asarray(triangles).reshape(-1, 3))
    return encode_quantized_meshes(
        np.asarray([bounds], dtype=np.float64), u, v, heights, triangles, np.array([0, n]), np.array([0, m]),
        normals=normals, height_ranges=None if height_range is None else np.asarray([height_range], dtype=np.float64),
    )[0]


def encode_quantized_meshes(
    bounds: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    heights: np.ndarray,
    triangles: np.ndarray,
    vertex_offsets: np.ndarray,
    triangle_offsets: np.ndarray,
    *,
    normals: np.ndarray | None = None,
    height_ranges: np.ndarray | None = None,
) -> list[bytes]:
    """Encode many terrain tiles at once from ragged arrays (each array op runs once for all).

    Parameters
    ----------
    bounds : (k, 4) float, ``(west, south, east, north)`` degrees of each tile
    u, v : (N,) int, 0 … 32767 across their tile (west→east, south→north)
    heights : (N,) float metres above the WGS84 ellipsoid
    triangles : (M, 3) int, indices into their tile's vertices, counter-clockwise seen from above;
        every vertex used
    vertex_offsets, triangle_offsets : (k + 1,) int, tile ``s`` owns ``[off[s], off[s+1])``
    normals : (N, 3) float unit ECEF vectors, written as the ``octvertexnormals`` extension
    height_ranges : (k, 2) float, each header's min/max height (the tile's full range, which may
        exceed its vertices'); default: the vertices' range

    Returns
    -------
    One uncompressed tile per entry of ``bounds`` (gzip them for serving: :func:`gzip_tile`).
    """
    bounds = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    voff = np.asarray(vertex_offsets, dtype=np.int64)
    toff = np.asarray(triangle_offsets, dtype=np.int64)
    k = len(bounds)
    nv, nt = np.diff(voff), np.diff(toff)
    if k == 0:
        return []
    if (nv < 3).any() or (nt < 1).any():
        raise ValueError("every tile needs at least three vertices and a triangle")
    seg_v = np.repeat(np.arange(k), nv)
    seg_t = np.repeat(np.arange(k), nt)
    tri = np.asarray(triangles, dtype=np.int64).reshape(-1, 3) + voff[seg_t][:, None]
    # renumber vertices by first use, as high-water-mark coding requires (tiles stay in order)
    flat = tri.ravel()
    used, first = np.unique(flat, return_index=True)
    if len(used) != voff[-1]:
        raise ValueError("every vertex must belong to a triangle of its own tile")
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    u = np.asarray(u, dtype=np.int64)[order]
    v = np.asarray(v, dtype=np.int64)[order]
    heights = np.asarray(heights, dtype=np.float64)[order]
    flat = rank[flat]

    starts = voff[:-1]
    h_lo = np.minimum.reduceat(heights, starts)
    h_hi = np.maximum.reduceat(heights, starts)
    if height_ranges is not None:
        hr = np.asarray(height_ranges, dtype=np.float64).reshape(-1, 2)
        h_lo, h_hi = np.minimum(h_lo, hr[:, 0]), np.maximum(h_hi, hr[:, 1])
    lo32 = h_lo.astype(np.float32)
    hi32 = h_hi.astype(np.float32)
    lo32 = np.where(lo32 > h_lo, np.nextafter(lo32, np.float32(-np.inf)), lo32).astype(np.float64)
    hi32 = np.where(hi32 < h_hi, np.nextafter(hi32, np.float32(np.inf)), hi32).astype(np.float64)
    span = hi32 - lo32
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(span[seg_v] > 0, np.round((heights - lo32[seg_v]) / span[seg_v] * QMAX), 0.0)
    hq = np.clip(q, 0, QMAX).astype(np.int64)

    west, south, east, north = bounds.T
    lon = west[seg_v] + u / QMAX * (east - west)[seg_v]
    lat = south[seg_v] + v / QMAX * (north - south)[seg_v]
    ecef = geodetic_to_ecef(lon, lat, lo32[seg_v] + hq / QMAX * span[seg_v])
    centre = geodetic_to_ecef((west + east) / 2, (south + north) / 2, (lo32 + hi32) / 2)
    box_lo = np.minimum.reduceat(ecef, starts, axis=0)
    box_hi = np.maximum.reduceat(ecef, starts, axis=0)
    sphere_c = (box_lo + box_hi) / 2.0
    radius = np.sqrt(np.maximum.reduceat(((ecef - sphere_c[seg_v]) ** 2).sum(axis=1), starts)) * (1.0 + 1e-9) + 1e-6
    hop = horizon_occlusion_points(ecef, sphere_c, lo32, voff)

    codes = np.empty((3, len(u)), dtype=np.int64)
    for row, values in enumerate((u, v, hq)):
        d = np.diff(values, prepend=0)
        d[starts] = values[starts]  # each tile's deltas start from 0
        codes[row] = (d << 1) ^ (d >> 63)
    zz = codes.astype("<u2")
    # high-water marks: with global numbering each tile's first index equals the mark, so one
    # running maximum serves every tile
    highest = np.empty_like(flat)
    highest[0] = 0
    highest[1:] = np.maximum.accumulate(flat)[:-1] + 1
    hwm = highest - flat
    hwm16, hwm32 = hwm.astype("<u2"), hwm.astype("<u4")
    edges = []
    for on_edge, along in ((u == 0, v), (v == 0, u), (u == QMAX, v), (v == QMAX, u)):  # west south east north
        idx = np.flatnonzero(on_edge)
        idx = idx[np.lexsort((along[idx], seg_v[idx]))]
        local = idx - voff[seg_v[idx]]
        off = np.concatenate([[0], np.cumsum(np.bincount(seg_v[idx], minlength=k))])
        edges.append((local.astype("<u2"), local.astype("<u4"), off.tolist()))
    octs = oct_encode(np.asarray(normals, dtype=np.float64)[order]) if normals is not None else None

    head = np.column_stack([centre, lo32, hi32, sphere_c, radius, hop]).tolist()
    vo, to = voff.tolist(), toff.tolist()
    tiles = []
    for s in range(k):
        a, b = vo[s], vo[s + 1]
        n = b - a
        wide = n > 65536
        size = 4 if wide else 2
        parts = [HEADER.pack(*head[s]), struct.pack("<I", n), zz[0, a:b].tobytes(), zz[1, a:b].tobytes(), zz[2, a:b].tobytes()]
        if wide and (HEADER.size + 4 + 6 * n) % 4:
            parts.append(b"\0" * (4 - (HEADER.size + 4 + 6 * n) % 4))
        ta, tb = 3 * to[s], 3 * to[s + 1]
        parts += [struct.pack("<I", to[s + 1] - to[s]), (hwm32 if wide else hwm16)[ta:tb].tobytes()]
        for e16, e32, off in edges:
            parts += [struct.pack("<I", off[s + 1] - off[s]), (e32 if wide else e16)[off[s] : off[s + 1]].tobytes()]
        if octs is not None:
            parts += [struct.pack("<BI", OCT_VERTEX_NORMALS, 2 * n), octs[a:b].tobytes()]
        tiles.append(b"".join(parts))
    return tiles


def gzip_tile(data: bytes, level: int = 6) -> bytes:
    """Gzip bytes deterministically (no file name, time 0), as terrain tiles are stored and served."""
    return zlib.compress(data, level, wbits=31)


def decode_quantized_mesh(data: bytes) -> QuantizedMesh:
    """Decode a tile (gzip-compressed or not), as CesiumJS's CesiumTerrainProvider does.

    Raises
    ------
    ValueError
        When the bytes are truncated or inconsistent.
    """
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    buf = memoryview(data)
    if len(buf) < HEADER.size + 4:
        raise ValueError(f"tile too short for a header: {len(buf)} bytes")
    h = HEADER.unpack_from(buf, 0)
    pos = HEADER.size
    (n,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    if pos + 6 * n > len(buf):
        raise ValueError(f"tile truncated in its {n} vertices")
    uvh = np.frombuffer(buf, dtype="<u2", count=3 * n, offset=pos)
    pos += 6 * n
    u, v, hq = (zigzag_delta_decode(uvh[k * n : (k + 1) * n]) for k in range(3))
    dt = np.dtype("<u4") if n > 65536 else np.dtype("<u2")
    if pos % dt.itemsize:
        pos += dt.itemsize - pos % dt.itemsize

    def take(count: int) -> np.ndarray:
        nonlocal pos
        if pos + count * dt.itemsize > len(buf):
            raise ValueError("tile truncated in its indices")
        out = np.frombuffer(buf, dtype=dt, count=count, offset=pos).astype(np.int64)
        pos += count * dt.itemsize
        return out

    def count() -> int:
        nonlocal pos
        (c,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        return c

    tri = high_water_mark_decode(take(3 * count())).reshape(-1, 3)
    edges = [take(count()) for _ in range(4)]
    extensions: dict[int, bytes] = {}
    normals = None
    while pos < len(buf):
        ext_id, length = struct.unpack_from("<BI", buf, pos)
        pos += 5
        extensions[ext_id] = bytes(buf[pos : pos + length])
        if ext_id == OCT_VERTEX_NORMALS:
            normals = oct_decode(np.frombuffer(buf, dtype=np.uint8, count=2 * n, offset=pos).reshape(n, 2))
        pos += length
    return QuantizedMesh(
        np.array(h[0:3]), h[3], h[4], np.array(h[5:8]), h[8], np.array(h[9:12]),
        u, v, hq, tri, *edges, normals=normals, extensions=extensions,
    )


def layer_document(
    *,
    bounds: tuple[float, float, float, float],
    available: list[list[dict[str, int]]],
    minzoom: int,
    maxzoom: int,
    version: str,
    name: str = "terrain",
    description: str = "",
    attribution: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``layer.json`` for a quantized-mesh tileset in the geographic TMS scheme with vertex normals.

    ``available[z]`` lists level ``z``'s tile rectangles (TMS rows); every level from 0 to
    ``maxzoom`` has an entry, empty below ``minzoom``.
    """
    doc: dict[str, Any] = {
        "tilejson": "2.1.0",
        "name": name,
        "description": description,
        "version": version,
        "format": "quantized-mesh-1.0",
        "attribution": attribution,
        "scheme": "tms",
        "projection": "EPSG:4326",
        "bounds": [float(b) for b in bounds],
        "minzoom": int(minzoom),
        "maxzoom": int(maxzoom),
        "tiles": ["{z}/{x}/{y}.terrain?v={version}"],
        "extensions": ["octvertexnormals"],
        "available": available,
    }
    if extra:
        doc.update(extra)
    return doc
