"""The pure I3S encoders: attribute and geometry buffers as the specification lays them out,
the LOD conversion, the package's hash index."""

from __future__ import annotations

import hashlib
import math
import struct
import zipfile
from io import BytesIO

import numpy as np
import pytest

from cim.errors import CimInputError
from cim.formats.i3s import resources as r
from cim.formats.i3s.slpk import HASH_INDEX_NAME, encode_slpk, gzip_bytes


def test_string_attribute_is_the_specs_example():
    # attributeStorageInfo.cmn.md: {"Bratislava", "Berlin", "Wien", <empty>, ""}
    # → |5|24|11|7|5|0|1|Bratislava\0|Berlin\0|Wien\0||\0|
    data = r.encode_attribute("String", ["Bratislava", "Berlin", "Wien", None, ""])
    head = struct.unpack_from("<7I", data)
    assert head == (5, 24, 11, 7, 5, 0, 1)
    assert data[28:] == b"Bratislava\0Berlin\0Wien\0\0"


def test_number_attributes():
    data = r.encode_attribute("Float64", [2.5, 44.67, None])
    assert struct.unpack_from("<I", data)[0] == 3 and data[4:8] == b"\0\0\0\0"  # padding: doubles 8-byte aligned
    values = np.frombuffer(data, "<f8", offset=8)
    assert values[:2].tolist() == [2.5, 44.67] and math.isnan(values[2])
    data = r.encode_attribute("Int32", [3, -10, None])
    assert struct.unpack("<Iiii", data) == (3, 3, -10, r.INT32_NULL)
    assert struct.unpack("<III", r.encode_attribute("Oid32", [7, 9])) == (2, 7, 9)
    assert struct.unpack("<Ihh", r.encode_attribute("Int16", [True, False])) == (2, 1, 0)
    with pytest.raises(ValueError):
        r.encode_attribute("Int64", [1])


def test_geometry_buffer_layout():
    n = 3
    pos = np.arange(9, dtype=np.float32).reshape(3, 3)
    nrm = np.tile([0.0, 0.0, 1.0], (3, 1))
    col = np.full((3, 4), 200, dtype=np.uint8)
    data = r.encode_geometry(pos, nrm, col, None, np.array([42], dtype=np.uint64), np.array([[0, 0]]))
    assert struct.unpack_from("<II", data) == (3, 1)
    offset = 8
    assert np.frombuffer(data, "<f4", 9, offset).tolist() == pos.ravel().tolist()
    offset += 12 * n + 12 * n
    assert np.frombuffer(data, "<f4", 6, offset).tolist() == [0.0] * 6  # uv0: the layout is fixed
    offset += 8 * n
    assert data[offset : offset + 12] == bytes([200]) * 12
    offset += 4 * n
    assert struct.unpack_from("<QII", data, offset) == (42, 0, 0) and len(data) == offset + 16
    with pytest.raises(ValueError):
        r.encode_geometry(pos[:2], nrm[:2], col[:2])


def test_lod_threshold_matches_3d_tiles_refinement():
    # a tile of error e seen at distance d on a screen of height H with field of view fov:
    # 3D Tiles refines when e·H/(2 d tan(fov/2)) > 16; the I3S node switches when the projected
    # disc of its bounding sphere passes lodThreshold: both must switch at the same distance
    radius, error, height, fov = 120.0, 3.5, 1080, math.radians(60)
    distance = error * height / (2 * 16 * math.tan(fov / 2))
    diameter_px = 2 * radius * height / (2 * distance * math.tan(fov / 2))
    assert r.lod_threshold_sq(radius, error) == pytest.approx(math.pi / 4 * diameter_px**2)


def test_quaternion_of_a_rotation():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        x, y, z, w = r.quaternion_from_rotation(q)
        back = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        assert np.allclose(back, q, atol=1e-12) and w >= 0


def test_slpk_entries_and_index():
    entries = {"b/1.bin.gz": gzip_bytes(b"one"), "3dSceneLayer.json.gz": gzip_bytes(b"{}"), "a.json": b"{}"}
    data = encode_slpk(entries)
    assert data == encode_slpk(dict(reversed(list(entries.items()))))
    archive = zipfile.ZipFile(BytesIO(data))
    names = [i.filename for i in archive.infolist()]
    assert names == ["3dSceneLayer.json.gz", "a.json", "b/1.bin.gz", HASH_INDEX_NAME]
    index = archive.read(HASH_INDEX_NAME)
    assert len(index) == 24 * 3
    found = {index[k : k + 16]: struct.unpack_from("<Q", index, k + 16)[0] for k in range(0, len(index), 24)}
    for info in archive.infolist()[:-1]:
        assert found[hashlib.md5(info.filename.lower().encode()).digest()] == info.header_offset
        assert data[info.header_offset : info.header_offset + 4] == b"PK\x03\x04"
    assert gzip_bytes(b"x") == gzip_bytes(b"x")  # no timestamp in the gzip header
    with pytest.raises(CimInputError, match="collides"):
        encode_slpk({"A.json": b"", "a.json": b""})
