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


def zigzag_delta_encode(values: np.ndarray) -> np.ndarray:
    """(n,) int → (n,) uint16: differences from the previous value (the first from 0), zig-zagged."""
    d = np.diff(np.asarray(values, dtype=np.int32), prepend=0)
    return ((d << 1) ^ (d >> 31)).astype(np.uint16)


def zigzag_delta_decode(codes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag_delta_encode`: (n,) uint16 → (n,) int64."""
    c = np.asarray(codes, dtype=np.int64)
    return np.cumsum((c >> 1) ^ -(c & 1)) & 0xFFFF


def high_water_mark_encode(indices: np.ndarray) -> np.ndarray:
    """Flat indices, numbered by first use, to high-water-mark codes (``highest - index``)."""
    idx = np.asarray(indices, dtype=np.int64).ravel()
    highest = np.empty_like(idx)
    if len(idx):
        highest[0] = 0
        highest[1:] = np.maximum.accumulate(idx)[:-1] + 1
    codes = highest - idx
    if len(idx) and (codes.min() < 0):
        raise ValueError("indices are not numbered in order of first use")
    return codes


def high_water_mark_decode(codes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`high_water_mark_encode`."""
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


def bounding_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (the box's middle) and radius of a sphere holding every (n, 3) point."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2.0
    r = float(np.sqrt(((points - centre) ** 2).sum(axis=1).max()))
    return centre, r * (1.0 + 1e-9) + 1e-6


def horizon_occlusion_point(points: np.ndarray, direction: np.ndarray, min_height: float) -> np.ndarray:
    """Cesium's horizon culling point of ECEF points, in the (possibly shrunk) ellipsoid-scaled frame.

    Parameters
    ----------
    points : (n, 3) ECEF metres
    direction : (3,) the direction the point lies along (the bounding sphere's centre)
    min_height : the tile's minimum height; below 0 the ellipsoid shrinks by it, as the client
        shrinks it when it tests the point (``isScaledSpacePointVisiblePossiblyUnderEllipsoid``)
    """
    shrink = min(0.0, float(min_height))
    radii = np.array([WGS84_A + shrink, WGS84_A + shrink, WGS84_B + shrink])
    d = np.asarray(direction, dtype=np.float64) / radii
    d = d / np.linalg.norm(d)
    s = np.asarray(points, dtype=np.float64) / radii
    mag2 = (s * s).sum(axis=1)
    mag = np.sqrt(mag2)
    unit = s / mag[:, None]
    mag2, mag = np.maximum(mag2, 1.0), np.maximum(mag, 1.0)  # points below count as on the ellipsoid
    cos_a = unit @ d
    sin_a = np.linalg.norm(np.cross(unit, d), axis=1)
    cos_b = 1.0 / mag
    sin_b = np.sqrt(mag2 - 1.0) * cos_b
    denom = cos_a * cos_b - sin_a * sin_b
    if (denom <= 0).any():
        return d * UNBOUNDED_OCCLUSION
    return d * float((1.0 / denom).max())


def quantize_heights(heights: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, float, float]:
    """Heights to 0…32767 between float32 bounds that hold them; returns ``(codes, lo32, hi32)``."""
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    if lo32 > lo:
        lo32 = np.nextafter(lo32, np.float32(-np.inf))
    if hi32 < hi:
        hi32 = np.nextafter(hi32, np.float32(np.inf))
    span = float(hi32) - float(lo32)
    if span <= 0:
        return np.zeros(len(heights), dtype=np.int64), float(lo32), float(hi32)
    q = np.round((np.asarray(heights, dtype=np.float64) - float(lo32)) / span * QMAX)
    return np.clip(q, 0, QMAX).astype(np.int64), float(lo32), float(hi32)


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
    """Encode one terrain tile.

    Parameters
    ----------
    bounds : ``(west, south, east, north)`` degrees of the tile
    u, v : (n,) int, 0 … 32767 across the tile (west→east, south→north)
    heights : (n,) float metres above the WGS84 ellipsoid
    triangles : (m, 3) int, counter-clockwise seen from above; every vertex used
    normals : (n, 3) float unit ECEF vectors, written as the ``octvertexnormals`` extension
    height_range : the header's min/max height (the tile's full range, which may exceed the
        vertices'); default: the vertices' range

    Returns
    -------
    The uncompressed tile (gzip it for serving: :func:`gzip_tile`).
    """
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    heights = np.asarray(heights, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    n = len(u)
    # renumber vertices by first use, as high-water-mark coding requires
    flat = tri.ravel()
    first = np.full(n, len(flat), dtype=np.int64)
    np.minimum.at(first, flat, np.arange(len(flat)))
    if (first == len(flat)).any():
        raise ValueError("every vertex must belong to a triangle")
    order = np.argsort(first, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    u, v, heights = u[order], v[order], heights[order]
    tri = rank[tri]
    lo, hi = height_range if height_range is not None else (float(heights.min()), float(heights.max()))
    hq, lo32, hi32 = quantize_heights(heights, min(lo, float(heights.min())), max(hi, float(heights.max())))

    west, south, east, north = bounds
    lon = west + u / QMAX * (east - west)
    lat = south + v / QMAX * (north - south)
    ecef = geodetic_to_ecef(lon, lat, lo32 + hq / QMAX * (hi32 - lo32))
    centre = geodetic_to_ecef(np.array((west + east) / 2), np.array((south + north) / 2), np.array((lo32 + hi32) / 2))
    sphere_c, sphere_r = bounding_sphere(ecef)
    hop = horizon_occlusion_point(ecef, sphere_c, lo32)

    wide = n > 65536
    idx_dtype = np.dtype("<u4") if wide else np.dtype("<u2")
    parts = [
        HEADER.pack(*centre, lo32, hi32, *sphere_c, sphere_r, *hop),
        struct.pack("<I", n),
        zigzag_delta_encode(u).astype("<u2").tobytes(),
        zigzag_delta_encode(v).astype("<u2").tobytes(),
        zigzag_delta_encode(hq).astype("<u2").tobytes(),
    ]
    size = HEADER.size + 4 + 6 * n
    if size % idx_dtype.itemsize:
        parts.append(b"\0" * (idx_dtype.itemsize - size % idx_dtype.itemsize))
    parts += [struct.pack("<I", len(tri)), high_water_mark_encode(tri).astype(idx_dtype).tobytes()]
    for on_edge, along in ((u == 0, v), (v == 0, u), (u == QMAX, v), (v == QMAX, u)):  # west south east north
        edge = np.flatnonzero(on_edge)
        edge = edge[np.argsort(along[edge], kind="stable")]
        parts += [struct.pack("<I", len(edge)), edge.astype(idx_dtype).tobytes()]
    if normals is not None:
        oct_ = oct_encode(np.asarray(normals, dtype=np.float64)[order])
        parts += [struct.pack("<BI", OCT_VERTEX_NORMALS, oct_.nbytes), oct_.tobytes()]
    return b"".join(parts)


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
