"""quantized-mesh-1.0 terrain tiles: encoder, decoder and ``layer.json``.

The format (github.com/CesiumGS/quantized-mesh): little-endian; an 88-byte header (tile centre in
ECEF, min/max height, bounding sphere, horizon occlusion point); the vertices as three arrays u, v
(0 … 32767 across the tile, west→east and south→north) and height (0 … 32767 between the header's
min and max), each delta- then zig-zag-encoded; triangle indices counter-clockwise seen from above,
high-water-mark encoded, 16-bit unless there are more than 65,536 vertices (then 32-bit, after
padding to a 4-byte boundary); the indices of the vertices on the west, south, east and north edges;
then extensions, here only oct-encoded vertex normals (id 1, ``octvertexnormals``).

Vertices are renumbered in order of first use by the triangles, which high-water-mark coding needs.
Many tiles are encoded in one compiled call (:func:`encode_quantized_meshes`).
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
from numba import njit

from cim.kernels.ellipsoid import WGS84_A, WGS84_E2

__all__ = [
    "QMAX",
    "HEADER",
    "OCT_VERTEX_NORMALS",
    "WGS84_B",
    "UNBOUNDED_OCCLUSION",
    "QuantizedMesh",
    "zigzag_delta_decode",
    "high_water_mark_decode",
    "oct_encode",
    "oct_decode",
    "horizon_occlusion_points",
    "encode_quantized_mesh",
    "encode_quantized_meshes",
    "gzip_tile",
    "decode_quantized_mesh",
    "layer_document",
]

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
        return np.stack([west + self.u / QMAX * (east - west), south + self.v / QMAX * (north - south), self.heights()], axis=1)


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
        np.asarray([bounds], dtype=np.float64),
        u,
        v,
        heights,
        triangles,
        np.array([0, n]),
        np.array([0, m]),
        normals=normals,
        height_ranges=None if height_range is None else np.asarray([height_range], dtype=np.float64),
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
    """Encode many terrain tiles at once from ragged arrays.

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
    bounds = np.ascontiguousarray(bounds, dtype=np.float64).reshape(-1, 4)
    voff = np.ascontiguousarray(vertex_offsets, dtype=np.int64)
    toff = np.ascontiguousarray(triangle_offsets, dtype=np.int64)
    k = len(bounds)
    if k == 0:
        return []
    nv, nt = np.diff(voff), np.diff(toff)
    if (nv < 3).any() or (nt < 1).any():
        raise ValueError("every tile needs at least three vertices and a triangle")
    tri = np.ascontiguousarray(triangles, dtype=np.int64).reshape(-1, 3)
    with_normals = normals is not None
    nrm = np.ascontiguousarray(normals, dtype=np.float64).reshape(-1, 3) if with_normals else np.zeros((0, 3))
    with_ranges = height_ranges is not None
    ranges = np.ascontiguousarray(height_ranges, dtype=np.float64).reshape(-1, 2) if with_ranges else np.zeros((0, 2))
    buf, offsets = _encode_tiles(
        bounds,
        np.ascontiguousarray(u, dtype=np.int64),
        np.ascontiguousarray(v, dtype=np.int64),
        np.ascontiguousarray(heights, dtype=np.float64),
        tri,
        voff,
        toff,
        nrm,
        with_normals,
        ranges,
        with_ranges,
    )
    if offsets[0] < 0:
        raise ValueError("every vertex must belong to a triangle of its own tile")
    view = memoryview(buf)
    return [bytes(view[a:b]) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


_DEG = np.pi / 180.0


@njit(nogil=True, cache=True)
def _ecef(lon, lat, h, out):  # pragma: no cover - compiled
    """:func:`cim.kernels.frames.geodetic_to_ecef` of one point, into ``out[0:3]``."""
    lam, phi = lon * _DEG, lat * _DEG
    sin_phi, cos_phi = np.sin(phi), np.cos(phi)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * sin_phi * sin_phi)
    out[0] = (n + h) * cos_phi * np.cos(lam)
    out[1] = (n + h) * cos_phi * np.sin(lam)
    out[2] = (n * (1.0 - WGS84_E2) + h) * sin_phi


@njit(nogil=True, cache=True)
def _put(buf, pos, scalar_bytes):  # pragma: no cover - compiled
    for i in range(scalar_bytes.shape[0]):
        buf[pos + i] = scalar_bytes[i]
    return pos + scalar_bytes.shape[0]


@njit(nogil=True, cache=True)
def _oct(x, y, z):  # pragma: no cover - compiled
    """:func:`oct_encode` of one unit vector: two bytes."""
    total = abs(x) + abs(y) + abs(z)
    px, py = x / total, y / total
    if z < 0:
        sx = 1.0 if px >= 0 else -1.0
        sy = 1.0 if py >= 0 else -1.0
        px, py = (1.0 - abs(py)) * sx, (1.0 - abs(px)) * sy
    px = min(max(px, -1.0), 1.0)
    py = min(max(py, -1.0), 1.0)
    return np.uint8(np.round((px * 0.5 + 0.5) * 255.0)), np.uint8(np.round((py * 0.5 + 0.5) * 255.0))


@njit(nogil=True, cache=True)
def _encode_tiles(bounds, u_in, v_in, h_in, tri, voff, toff, nrm, with_normals, ranges, with_ranges):  # pragma: no cover - compiled
    """Every tile's bytes, one after the other: ``(buffer, (k + 1,) offsets)``; ``offsets[0] = -1``
    when a tile has a vertex no triangle of its own uses (or an index outside the tile).

    The numpy version of this (the same arithmetic in the same order, so the same bytes, over a
    block's tiles at once, then a Python loop packing each tile) paid the interpreter for every
    tile; this is one compiled pass, and releases the GIL.
    """
    k = bounds.shape[0]
    cap = 0
    for s in range(k):
        cap += 160 + 26 * (voff[s + 1] - voff[s]) + 12 * (toff[s + 1] - toff[s])
    buf = np.empty(cap, np.uint8)
    offsets = np.zeros(k + 1, np.int64)
    f8 = np.empty(1, np.float64)
    b8 = f8.view(np.uint8)
    f4 = np.empty(1, np.float32)
    b4 = f4.view(np.uint8)
    i4 = np.empty(1, np.uint32)
    c4 = i4.view(np.uint8)
    p = np.empty(3)
    pos = 0
    nmax = 0
    for s in range(k):
        nmax = max(nmax, voff[s + 1] - voff[s])
    rank = np.empty(nmax, np.int64)
    order = np.empty(nmax, np.int64)
    hq = np.empty(nmax, np.int64)
    ecef = np.empty((nmax, 3))
    key = np.empty(nmax, np.int64)
    for s in range(k):
        a, n = voff[s], voff[s + 1] - voff[s]
        t0, m = toff[s], toff[s + 1] - toff[s]
        west, south, east, north = bounds[s, 0], bounds[s, 1], bounds[s, 2], bounds[s, 3]
        # renumber the vertices by first use, as high-water-mark coding requires
        rank[:n] = -1
        used = 0
        for t in range(t0, t0 + m):
            for c in range(3):
                i = tri[t, c]
                if i < 0 or i >= n:
                    offsets[0] = -1
                    return buf[:0], offsets
                if rank[i] < 0:
                    rank[i] = used
                    order[used] = i
                    used += 1
        if used != n:
            offsets[0] = -1
            return buf[:0], offsets
        # header heights: float32, widened outwards so that they hold every vertex
        lo, hi = np.inf, -np.inf
        for i in range(n):
            lo, hi = min(lo, h_in[a + i]), max(hi, h_in[a + i])
        if with_ranges:
            lo, hi = min(lo, ranges[s, 0]), max(hi, ranges[s, 1])
        lo32, hi32 = np.float32(lo), np.float32(hi)
        if lo32 > lo:
            lo32 = np.nextafter(lo32, np.float32(-np.inf))
        if hi32 < hi:
            hi32 = np.nextafter(hi32, np.float32(np.inf))
        lo64, hi64 = np.float64(lo32), np.float64(hi32)
        span = hi64 - lo64
        # the dequantized vertices in ECEF, as a client decodes them
        box_lo = np.full(3, np.inf)
        box_hi = np.full(3, -np.inf)
        for j in range(n):
            i = a + order[j]
            q = np.round((h_in[i] - lo64) / span * QMAX) if span > 0 else 0.0
            hq[j] = np.int64(min(max(q, 0.0), QMAX))
            lon = west + u_in[i] / QMAX * (east - west)
            lat = south + v_in[i] / QMAX * (north - south)
            _ecef(lon, lat, lo64 + hq[j] / QMAX * span, p)
            for c in range(3):
                ecef[j, c] = p[c]
                box_lo[c] = min(box_lo[c], p[c])
                box_hi[c] = max(box_hi[c], p[c])
        centre = np.empty(3)
        _ecef((west + east) / 2, (south + north) / 2, (lo64 + hi64) / 2, centre)
        sc = (box_lo + box_hi) / 2.0
        r2 = 0.0
        for j in range(n):
            d0, d1, d2 = ecef[j, 0] - sc[0], ecef[j, 1] - sc[1], ecef[j, 2] - sc[2]
            r2 = max(r2, d0 * d0 + d1 * d1 + d2 * d2)
        radius = np.sqrt(r2) * (1.0 + 1e-9) + 1e-6
        # the horizon occlusion point (see horizon_occlusion_points)
        shrink = min(0.0, lo64)
        ra, rb = WGS84_A + shrink, WGS84_B + shrink
        dx, dy, dz = sc[0] / ra, sc[1] / ra, sc[2] / rb
        dn = np.sqrt(dx * dx + dy * dy + dz * dz)
        dx, dy, dz = dx / dn, dy / dn, dz / dn
        magnitude = -np.inf
        for j in range(n):
            sx, sy, sz = ecef[j, 0] / ra, ecef[j, 1] / ra, ecef[j, 2] / rb
            mag2 = sx * sx + sy * sy + sz * sz
            mag = np.sqrt(mag2)
            ux, uy, uz = sx / mag, sy / mag, sz / mag
            mag2, mag = max(mag2, 1.0), max(mag, 1.0)
            cos_a = ux * dx + uy * dy + uz * dz
            cx, cy, cz = uy * dz - uz * dy, uz * dx - ux * dz, ux * dy - uy * dx
            sin_a = np.sqrt(cx * cx + cy * cy + cz * cz)
            cos_b = 1.0 / mag
            sin_b = np.sqrt(mag2 - 1.0) * cos_b
            denom = cos_a * cos_b - sin_a * sin_b
            magnitude = max(magnitude, 1.0 / denom if denom > 0 else np.inf)
        if not (magnitude < np.inf):
            magnitude = UNBOUNDED_OCCLUSION
        start = pos
        for x in (centre[0], centre[1], centre[2]):
            f8[0] = x
            pos = _put(buf, pos, b8)
        for x in (lo32, hi32):
            f4[0] = x
            pos = _put(buf, pos, b4)
        for x in (sc[0], sc[1], sc[2], radius, dx * magnitude, dy * magnitude, dz * magnitude):
            f8[0] = x
            pos = _put(buf, pos, b8)
        i4[0] = n
        pos = _put(buf, pos, c4)
        # u, v, height: delta then zig-zag coded, uint16
        for what in range(3):
            last = 0
            for j in range(n):
                val = u_in[a + order[j]] if what == 0 else (v_in[a + order[j]] if what == 1 else hq[j])
                d = val - last
                last = val
                z = ((d << 1) ^ (d >> 63)) & 0xFFFF
                buf[pos] = z & 0xFF
                buf[pos + 1] = z >> 8
                pos += 2
        wide = n > 65536
        size = 4 if wide else 2
        if wide:  # 32-bit indices start on a 4-byte boundary of the tile
            for _ in range((4 - (pos - start) % 4) % 4):
                buf[pos] = 0
                pos += 1
        i4[0] = m
        pos = _put(buf, pos, c4)
        # indices, high-water-mark coded
        highest = 0
        for t in range(t0, t0 + m):
            for c in range(3):
                idx = rank[tri[t, c]]
                code = highest - idx
                if code == 0:
                    highest += 1
                for b in range(size):
                    buf[pos + b] = (code >> (8 * b)) & 0xFF
                pos += size
        # the west, south, east and north edges' vertices, each sorted along its edge
        for edge in range(4):
            cnt = 0
            for j in range(n):
                i = a + order[j]
                uu, vv = u_in[i], v_in[i]
                on = uu == 0 if edge == 0 else (vv == 0 if edge == 1 else (uu == QMAX if edge == 2 else vv == QMAX))
                if on:
                    along = vv if edge % 2 == 0 else uu
                    key[cnt] = along * nmax * 2 + j
                    cnt += 1
            srt = np.sort(key[:cnt])
            i4[0] = cnt
            pos = _put(buf, pos, c4)
            for c in range(cnt):
                j = srt[c] % (nmax * 2)
                for b in range(size):
                    buf[pos + b] = (j >> (8 * b)) & 0xFF
                pos += size
        if with_normals:
            buf[pos] = OCT_VERTEX_NORMALS
            i4[0] = 2 * n
            pos = _put(buf, pos + 1, c4)
            for j in range(n):
                i = a + order[j]
                buf[pos], buf[pos + 1] = _oct(nrm[i, 0], nrm[i, 1], nrm[i, 2])
                pos += 2
        offsets[s + 1] = pos
    return buf[:pos], offsets


def gzip_tile(data: bytes, level: int = 6) -> bytes:
    """Gzip bytes deterministically (no file name, time 0), as terrain tiles are stored and served.

    The deflate window and hash table are sized to the tile (a window of at least the tile's length
    finds every match the full 32 KB window would): zlib allocates and clears them per call, and
    for tiles of a few hundred bytes that setup is most of the work; fitted, the bytes out are the
    same. The level's effect on terrain tiles' sizes is in ``benchmarks/README.md``.
    """
    wbits = max(9, min(15, (len(data) - 1).bit_length()))
    c = zlib.compressobj(level, zlib.DEFLATED, 16 + wbits, max(1, min(8, wbits - 6)))
    return c.compress(data) + c.flush()


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
    west, south, east, north = (take(count()) for _ in range(4))
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
        np.array(h[0:3]),
        h[3],
        h[4],
        np.array(h[5:8]),
        h[8],
        np.array(h[9:12]),
        u,
        v,
        hq,
        tri,
        west,
        south,
        east,
        north,
        normals=normals,
        extensions=extensions,
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
