"""quantized-mesh-1.0 encoding, checked against the specification's byte layout and CesiumJS's rules."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from cim.formats.quantized_mesh import (
    decode_quantized_mesh,
    encode_quantized_mesh,
    encode_quantized_meshes,
    gzip_tile,
    horizon_occlusion_points,
    layer_document,
    oct_decode,
    oct_encode,
)
from cim.kernels.frames import geodetic_to_ecef
from tests.helpers.terrain import QMAX, scaled_visible

BOUNDS = (105.71, 34.59, 105.7113733, 34.5913733)


def _grid_mesh(n: int, rng):
    """An n × n grid of vertices in shuffled order, two triangles a cell, counter-clockwise."""
    i, j = np.meshgrid(np.arange(n), np.arange(n))
    u = (i.ravel() * QMAX) // (n - 1)
    v = (j.ravel() * QMAX) // (n - 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    tri = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    perm = rng.permutation(n * n)
    inv = np.argsort(perm)
    h = 1200.0 + 30 * np.sin(u / 5000.0) + rng.normal(0, 0.5, n * n)
    return u[perm], v[perm], h[perm], inv[tri]


def test_roundtrip_and_spec_layout():
    rng = np.random.default_rng(0)
    u, v, h, tri = _grid_mesh(9, rng)
    normals = rng.normal(size=(len(u), 3))
    normals[:, 2] = np.abs(normals[:, 2]) + 1
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    raw = encode_quantized_mesh(BOUNDS, u, v, h, tri, normals=normals, height_range=(1100.0, 1300.0))
    q = decode_quantized_mesh(gzip_tile(raw))
    assert gzip.decompress(gzip_tile(raw)) == raw
    # the byte layout, read by hand: header, vertexCount, u/v/h, triangleCount, indices, 4 edges, extension
    n = struct.unpack_from("<I", raw, 88)[0]
    assert n == len(u)
    minh, maxh = struct.unpack_from("<2f", raw, 24)
    assert (minh, maxh) == (np.float32(1100.0), np.float32(1300.0))
    pos = 92 + 6 * n
    m = struct.unpack_from("<I", raw, pos)[0]
    assert m == len(tri)
    pos += 4 + 6 * m
    for expect in (9, 9, 9, 9):
        count = struct.unpack_from("<I", raw, pos)[0]
        assert count == expect
        pos += 4 + 2 * count
    ext_id, ext_len = struct.unpack_from("<BI", raw, pos)
    assert (ext_id, ext_len) == (1, 2 * n) and pos + 5 + ext_len == len(raw)
    # the same mesh comes back, renumbered by first use
    got = {(a, b): hh for a, b, hh in zip(q.u.tolist(), q.v.tolist(), q.heights().tolist())}
    want = {(a, b): hh for a, b, hh in zip(u.tolist(), v.tolist(), h.tolist())}
    assert got.keys() == want.keys()
    assert max(abs(got[k] - want[k]) for k in got) <= 200.0 / QMAX

    def canon(corners):  # rotate to start at the smallest corner, keeping the winding
        k = corners.index(min(corners))
        return tuple(corners[k:] + corners[:k])

    got_t = {canon([(int(q.u[i]), int(q.v[i])) for i in tt]) for tt in q.triangles.tolist()}
    want_t = {canon([(int(u[i]), int(v[i])) for i in tt]) for tt in tri.tolist()}
    assert got_t == want_t
    first_use = np.unique(q.triangles.ravel(), return_index=True)[1]
    assert (np.diff(first_use) > 0).all()  # high-water-mark order
    dots = (q.normals[:, None, :] * normals[None, :, :]).sum(-1).max(axis=1)
    assert dots.min() > np.cos(np.radians(1.0))


def test_32_bit_indices_above_65536_vertices():
    rng = np.random.default_rng(1)
    u, v, h, tri = _grid_mesh(257, rng)  # 66,049 vertices
    raw = encode_quantized_mesh(BOUNDS, u, v, h, tri)
    n = len(u)
    size16 = 88 + 4 + 6 * n + 4 + 6 * len(tri) + 4 * (4 + 2 * 257)
    pad = (4 - (92 + 6 * n) % 4) % 4
    assert len(raw) == 88 + 4 + 6 * n + pad + 4 + 12 * len(tri) + 4 * (4 + 4 * 257) != size16
    q = decode_quantized_mesh(raw)
    assert len(q.u) == n and q.triangles.max() == n - 1 and len(q.west) == 257


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(2)
    meshes = [_grid_mesh(k, rng) for k in (2, 5, 3)]
    bounds = np.array([BOUNDS, (0.0, 0.0, 1.0, 1.0), (-10.0, -20.0, -9.0, -19.0)])
    cat = [np.concatenate([m[i] for m in meshes]) for i in range(4)]
    voff = np.cumsum([0] + [len(m[0]) for m in meshes])
    toff = np.cumsum([0] + [len(m[3]) for m in meshes])
    many = encode_quantized_meshes(bounds, cat[0], cat[1], cat[2], cat[3], voff, toff)
    for b, m, blob in zip(bounds, meshes, many):
        assert blob == encode_quantized_mesh(tuple(b), *m)


def test_unused_vertex_is_refused():
    with pytest.raises(ValueError, match="every vertex"):
        encode_quantized_mesh(BOUNDS, [0, QMAX, QMAX, 0], [0, 0, QMAX, QMAX], [1, 2, 3, 4.0], [[0, 1, 2]])


def test_oct_encoding_is_cesiums():
    rng = np.random.default_rng(3)
    vec = rng.normal(size=(2000, 3))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    enc = oct_encode(vec)
    assert enc.dtype == np.uint8 and enc.shape == (2000, 2)
    back = oct_decode(enc)
    assert np.degrees(np.arccos(np.clip((back * vec).sum(1), -1, 1))).max() < 1.0
    # straight up (+z) encodes to the centre of the octahedron map, -z to its corners
    assert oct_encode(np.array([[0.0, 0.0, 1.0]])).tolist() == [[128, 128]]
    assert oct_encode(np.array([[0.0, 0.0, -1.0]])).tolist() == [[255, 255]]


def test_horizon_occlusion_point_culls_only_hidden_points():
    rng = np.random.default_rng(4)
    radii = np.array([6378137.0, 6378137.0, 6356752.314245179])
    lon = rng.uniform(10.0, 12.0, 500)
    lat = rng.uniform(40.0, 42.0, 500)
    for h in (rng.uniform(0.0, 3000.0, 500), rng.uniform(-400.0, -10.0, 500)):
        pts = geodetic_to_ecef(lon, lat, h)
        centre = pts.mean(axis=0)
        hop = horizon_occlusion_points(pts, centre[None], np.array([h.min()]), np.array([0, len(pts)]))[0]
        shrink = min(0.0, h.min())
        cams = centre / np.linalg.norm(centre) * rng.uniform(1.0, 3.0, (3000, 1)) + rng.normal(0, 0.8, (3000, 3))
        cams = cams[np.linalg.norm(cams, axis=1) > 1.001]
        culled = ~scaled_visible(hop[None], cams * radii / (radii + shrink))
        assert 0.05 < culled.mean() < 0.95
        hidden = ~scaled_visible((pts / (radii + shrink))[None], (cams * radii / (radii + shrink))[culled][:, None])
        assert hidden.all()


def test_layer_document():
    doc = layer_document(
        bounds=(1, 2, 3, 4), available=[[{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]], minzoom=0, maxzoom=0, version="abc"
    )
    assert doc["tiles"] == ["{z}/{x}/{y}.terrain?v={version}"] and doc["version"] == "abc"
    assert doc["extensions"] == ["octvertexnormals"] and doc["scheme"] == "tms"


def test_decoder_refuses_truncated_tiles():
    rng = np.random.default_rng(5)
    raw = encode_quantized_mesh(BOUNDS, *_grid_mesh(4, rng))
    for cut in (10, 100, len(raw) - 40):
        with pytest.raises((ValueError, struct.error)):
            decode_quantized_mesh(raw[:cut])


@pytest.mark.parametrize("size", [0, 1, 100, 511, 512, 513, 5000, 40000, 200000])
def test_gzip_tile_round_trips_at_every_size(size):
    rng = np.random.default_rng(size)
    data = (np.cumsum(rng.integers(-2, 3, size)) % 7).astype(np.uint8).tobytes()  # compressible, like tiles
    packed = gzip_tile(data)
    assert packed[:2] == b"\x1f\x8b" and gzip.decompress(packed) == data
    assert gzip_tile(data) == packed  # deterministic: no time, no name
    assert struct.unpack_from("<I", packed, 4)[0] == 0


def test_index_outside_its_tile_is_refused():
    with pytest.raises(ValueError, match="every vertex"):
        encode_quantized_mesh(BOUNDS, [0, QMAX, QMAX], [0, 0, QMAX], [1, 2, 3.0], [[0, 1, 3]])
