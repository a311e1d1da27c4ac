"""GLB point tiles: layout, quantization, metadata, meshopt codec, validity."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from cim.formats.glb import read_accessor, read_glb
from cim.formats.meshopt import meshopt_decode_attributes, meshopt_encode_attributes
from cim.formats.points import POINT_PROPERTIES, decode_points_glb, encode_points_glb
from tests.helpers import REPO
from tests.helpers.gltf import validate_glbs
from tests.helpers.pointcloud import quantization_step

UNIT = 1e-4


def _cloud(n: int, seed: int = 0, extent: float = 50.0):
    rng = np.random.default_rng(seed)
    pos = np.rint((rng.random((n, 3)) * extent + np.array([-1200.0, 800.0, 30.0])) / UNIT).astype(np.int64)
    return (
        pos,
        rng.integers(0, 256, (n, 3)).astype(np.uint8),
        rng.integers(0, 65536, n).astype(np.uint16),
        rng.integers(0, 20, n).astype(np.uint8),
        rng.integers(1, 5, n).astype(np.uint8),
    )


@pytest.mark.parametrize("meshopt", [False, True])
@pytest.mark.parametrize("extent,float_positions", [(50.0, False), (2000.0, True)])
def test_round_trip(meshopt, extent, float_positions):
    pos, rgb, inten, cls, ret = _cloud(3001, extent=extent)
    glb = encode_points_glb(pos, UNIT, rgb, inten, cls, ret, meshopt=meshopt)
    doc, _ = read_glb(glb)
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert (acc["componentType"] == 5126) == float_positions
    d = decode_points_glb(glb)
    step = quantization_step(glb)
    assert step <= (0.005 if float_positions else extent / 65535 + UNIT)  # at most max_step
    assert np.abs(d["positions"] - pos * UNIT).max() <= step / 2 + 1e-6
    np.testing.assert_array_equal(d["colors"], rgb)
    np.testing.assert_array_equal(d["intensity"], inten)
    np.testing.assert_array_equal(d["classification"], cls)
    np.testing.assert_array_equal(d["return_number"], ret)


def _srgb_eotf(c):
    """The sRGB transfer function, written out here rather than taken from cim."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def test_colours_are_stored_as_linear_16_bit_values():
    """glTF's COLOR_0 is linear: known sRGB bytes go in, their linear values (rounded to 16 bits)
    are what the accessor holds, read here without the package's decoder."""
    rgb = np.array([[0, 255, 128], [10, 64, 200], [1, 2, 3]], dtype=np.uint8)
    pos, _, inten, cls, ret = _cloud(3)
    doc, binary = read_glb(encode_points_glb(pos, UNIT, rgb, inten, cls, ret, meshopt=False))
    index = doc["meshes"][0]["primitives"][0]["attributes"]["COLOR_0"]
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    rows = np.frombuffer(binary, np.uint8, count=3 * view["byteStride"], offset=view.get("byteOffset", 0)).reshape(3, -1)
    raw = rows[:, acc["byteOffset"] : acc["byteOffset"] + 6].copy().view("<u2")
    # 128 (sRGB 0.502) -> 0.215861; 10 lies on the linear segment (10 / 255 / 12.92)
    np.testing.assert_array_equal(raw, [[0, 65535, 14146], [199, 3360, 37852], [20, 40, 60]])
    np.testing.assert_allclose(read_accessor(doc, binary, index), _srgb_eotf(rgb / 255.0), atol=0.5 / 65535 + 1e-7)
    assert _srgb_eotf(0.5) == pytest.approx(0.2140, abs=5e-5)


@pytest.mark.parametrize("meshopt", [False, True])
def test_every_srgb_level_keeps_its_own_linear_value_and_decodes_back(meshopt):
    """Eight bits of linear light would merge the 256 sRGB levels into 183 (levels 7-17 into
    one); sixteen keep all 256 apart, and the decoder gives the original bytes back."""
    levels = np.arange(256, dtype=np.uint8)
    rgb = np.stack([levels, levels[::-1], np.roll(levels, 77)], axis=1)
    pos, _, inten, cls, ret = _cloud(256)
    d = decode_points_glb(encode_points_glb(pos, UNIT, rgb, inten, cls, ret, meshopt=meshopt))
    np.testing.assert_array_equal(d["colors"], rgb)
    np.testing.assert_allclose(d["linear_colors"], _srgb_eotf(rgb / 255.0), atol=0.5 / 65535)
    assert len(np.unique(d["linear_colors"][:, 0])) == 256


def test_precision_sets_the_step_and_bounds_the_error():
    pos, rgb, inten, cls, ret = _cloud(2000, extent=20.0)
    fine = encode_points_glb(pos, UNIT, rgb, inten, cls, ret, meshopt=True)
    coarse = encode_points_glb(pos, UNIT, rgb, inten, cls, ret, meshopt=True, precision=0.01)
    assert len(coarse) < len(fine)
    d = decode_points_glb(coarse)
    assert np.abs(d["positions"] - pos * UNIT).max() <= 0.005 + 1e-9


def test_layout_follows_gltf_and_3d_tiles_rules():
    pos, rgb, inten, cls, ret = _cloud(100)
    doc, _ = read_glb(encode_points_glb(pos, UNIT, rgb, inten, cls, ret))
    prim = doc["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0  # POINTS
    assert "KHR_mesh_quantization" in doc["extensionsRequired"]
    attrs = prim["attributes"]
    color = doc["accessors"][attrs["COLOR_0"]]
    # linear colours need 16 bits (8 merge the dark sRGB levels); 6 bytes + 2 pad keep the stride a multiple of 4
    assert color["componentType"] == 5123 and color["normalized"] is True and color["type"] == "VEC3"
    pos_acc = doc["accessors"][attrs["POSITION"]]
    assert pos_acc["normalized"] is True and pos_acc["componentType"] == 5123
    for a in attrs.values():  # every vertex attribute on a 4-byte boundary
        acc = doc["accessors"][a]
        view = doc["bufferViews"][acc["bufferView"]]
        assert acc.get("byteOffset", 0) % 4 == 0 and view["byteStride"] % 4 == 0
    mat = doc["materials"][prim["material"]]
    assert mat["pbrMetallicRoughness"]["metallicFactor"] == 0
    assert "KHR_materials_unlit" in mat["extensions"]
    meta = doc["extensions"]["EXT_structural_metadata"]
    props = meta["schema"]["classes"]["point"]["properties"]
    assert {k: v["componentType"] for k, v in props.items()} == {"intensity": "UINT16", "classification": "UINT8", "return_number": "UINT8"}
    pa = meta["propertyAttributes"][prim["extensions"]["EXT_structural_metadata"]["propertyAttributes"][0]]
    assert pa["class"] == "point"
    assert {k: v["attribute"] for k, v in pa["properties"].items()} == {k: v[0] for k, v in POINT_PROPERTIES.items()}
    assert {"_INTENSITY", "_CLASSIFICATION", "_RETURN_NUMBER"} <= set(attrs)


def test_y_up_axes():
    """glTF content is y-up: ENU up goes to +y, north to -z (CesiumJS turns it back)."""
    pos = np.array([[0, 0, 0], [0, 0, 10_000], [0, 10_000, 0]], dtype=np.int64)  # origin, 1 m up, 1 m north
    z = np.zeros(3, np.uint8)
    glb = encode_points_glb(pos, UNIT, None, z.astype(np.uint16), z, z, max_step=1.0)
    doc, binary = read_glb(glb)
    node = doc["nodes"][0]
    stride = doc["bufferViews"][0]["byteStride"]
    raw = np.frombuffer(binary, np.uint16, count=3 * stride // 2).reshape(3, stride // 2)[:, :3] / 65535.0
    gl = raw * np.array(node["scale"]) + np.array(node["translation"])
    np.testing.assert_allclose(gl[1] - gl[0], [0, 1, 0], atol=1e-4)
    np.testing.assert_allclose(gl[2] - gl[0], [0, 0, -1], atol=1e-4)
    assert "COLOR_0" not in doc["meshes"][0]["primitives"][0]["attributes"]


@pytest.mark.parametrize("stride", [4, 8, 24, 28, 64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 255, 256, 257, 1000])
def test_meshopt_round_trip(stride, n):
    rng = np.random.default_rng(stride * 1000 + n)
    data = rng.integers(0, 256, (n, stride)).astype(np.uint8)
    data[:, : stride // 2] = (np.arange(n)[:, None] // 7 + np.arange(stride // 2)).astype(np.uint8)  # smooth bytes
    data[:, -1] = 0  # a constant byte
    enc = meshopt_encode_attributes(data)
    assert enc[0] == 0xA0
    np.testing.assert_array_equal(meshopt_decode_attributes(enc, n, stride), data)


def test_meshopt_matches_the_reference_decoder(tmp_path):
    """The official meshoptimizer decoder (the one CesiumJS uses) reads our streams."""
    node = shutil.which("node")
    decoder = REPO / "viewer" / "node_modules" / "meshoptimizer" / "meshopt_decoder.mjs"
    if node is None or not decoder.exists():
        pytest.skip("node or the meshoptimizer npm package (viewer/node_modules) is missing")
    cases = []
    rng = np.random.default_rng(7)
    for stride, n in [(24, 1000), (28, 333), (8, 16), (4, 1), (64, 300)]:
        data = rng.integers(0, 256, (n, stride)).astype(np.uint8)
        data[:, ::3] = (np.arange(n)[:, None] // 5).astype(np.uint8)
        path = tmp_path / f"{stride}_{n}.bin"
        path.write_bytes(meshopt_encode_attributes(data))
        cases.append((path, n, stride, data))
    script = tmp_path / "decode.mjs"
    script.write_text(
        f'import {{ MeshoptDecoder }} from "{decoder.as_posix()}";\n'
        'import { readFileSync } from "node:fs";\n'
        "await MeshoptDecoder.ready;\n"
        "for (const [f, n, s] of JSON.parse(process.argv[2])) {\n"
        "  const out = new Uint8Array(n * s);\n"
        "  MeshoptDecoder.decodeVertexBuffer(out, n, s, new Uint8Array(readFileSync(f)));\n"
        "  console.log(Buffer.from(out).toString('hex'));\n"
        "}\n"
    )
    arg = json.dumps([[str(p), n, s] for p, n, s, _ in cases])
    proc = subprocess.run([node, str(script), arg], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for line, (_, n, stride, data) in zip(proc.stdout.split(), cases):
        np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(line), np.uint8).reshape(n, stride), data)


def test_tiles_validate(tmp_path):
    paths = []
    for i, (extent, meshopt, colors) in enumerate([(50.0, False, True), (50.0, True, True), (3000.0, True, True), (40.0, True, False)]):
        pos, rgb, inten, cls, ret = _cloud(500 + i, seed=i, extent=extent)
        p = tmp_path / f"t{i}.glb"
        p.write_bytes(encode_points_glb(pos, UNIT, rgb if colors else None, inten, cls, ret, meshopt=meshopt))
        paths.append(p)
    for report in validate_glbs(paths):
        assert report["errors"] == 0, report
        assert report["warnings"] == 0, report


def test_empty_tile_is_refused():
    with pytest.raises(ValueError):
        encode_points_glb(np.empty((0, 3), np.int64), UNIT, None, np.empty(0, np.uint16), np.empty(0, np.uint8), np.empty(0, np.uint8))


def test_large_nodes_store_24_bit_positions_with_the_exponential_filter():
    """Nodes too large for 16 bits at ``max_step``: 24-bit mantissas on a power-of-two step of at
    most ``max_step``, decoded by meshopt's EXPONENTIAL filter to exact float32 values."""
    pos, rgb, inten, cls, ret = _cloud(4000, extent=3000.0)
    glb = encode_points_glb(pos, UNIT, rgb, inten, cls, ret, meshopt=True, max_step=0.005)
    doc, _ = read_glb(glb)
    prim = doc["meshes"][0]["primitives"][0]
    acc = doc["accessors"][prim["attributes"]["POSITION"]]
    view = doc["bufferViews"][acc["bufferView"]]
    assert acc["componentType"] == 5126 and view["extensions"]["EXT_meshopt_compression"]["filter"] == "EXPONENTIAL"
    assert "scale" not in doc["nodes"][0] and "KHR_mesh_quantization" not in doc.get("extensionsRequired", [])
    others = {doc["accessors"][a]["bufferView"] for k, a in prim["attributes"].items() if k != "POSITION"}
    assert others == {1 - acc["bufferView"]}  # the filter applies to a whole view: positions alone
    step = quantization_step(glb)
    assert step == 2.0**-8  # 3.9 mm: the largest power of two under max_step
    d = decode_points_glb(glb)
    assert np.abs(d["positions"] - pos * UNIT).max() <= step / 2 + 1e-6
    np.testing.assert_array_equal(d["colors"], rgb)
    np.testing.assert_array_equal(d["intensity"], inten)
    # without meshopt the same values are written as plain float32
    plain = decode_points_glb(encode_points_glb(pos, UNIT, rgb, inten, cls, ret, meshopt=False, max_step=0.005))
    np.testing.assert_array_equal(plain["positions"], d["positions"])


def test_exponential_filter_matches_meshoptimizer(tmp_path):
    """CesiumJS decodes the position view with meshoptimizer's decodeGltfBuffer and its
    EXPONENTIAL filter: the same floats as our reference decoder."""
    node = shutil.which("node")
    decoder = REPO / "viewer" / "node_modules" / "meshoptimizer" / "meshopt_decoder.mjs"
    if node is None or not decoder.exists():
        pytest.skip("node or the meshoptimizer npm package (viewer/node_modules) is missing")
    pos, rgb, inten, cls, ret = _cloud(1500, extent=3000.0)
    glb = encode_points_glb(pos, UNIT, rgb, inten, cls, ret, meshopt=True)
    doc, binary = read_glb(glb)
    ext = doc["bufferViews"][0]["extensions"]["EXT_meshopt_compression"]
    src = tmp_path / "pos.bin"
    src.write_bytes(binary[ext["byteOffset"] : ext["byteOffset"] + ext["byteLength"]])
    script = tmp_path / "decode.mjs"
    script.write_text(
        f'import {{ MeshoptDecoder }} from "{decoder.as_posix()}";\n'
        'import { readFileSync } from "node:fs";\n'
        "await MeshoptDecoder.ready;\n"
        f"const n = {ext['count']}, s = {ext['byteStride']};\n"
        "const out = new Uint8Array(n * s);\n"
        f'MeshoptDecoder.decodeGltfBuffer(out, n, s, new Uint8Array(readFileSync("{src.as_posix()}")), "ATTRIBUTES", "EXPONENTIAL");\n'
        "console.log(Buffer.from(out).toString('hex'));\n"
    )
    proc = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    theirs = np.frombuffer(bytes.fromhex(proc.stdout.strip()), "<f4").reshape(-1, 3)
    ours = decode_points_glb(glb)["positions"]
    t = np.array(doc["nodes"][0]["translation"])
    np.testing.assert_array_equal(np.stack([ours[:, 0], ours[:, 2], -ours[:, 1]], axis=1), (theirs.astype(np.float64) + t))


def test_positions_share_one_cubic_lattice():
    """A flat node (50 x 50 x 2 m) is quantized on one step in every axis: the one that fits its
    largest side in 16 bits, never finer than ``precision``."""
    pos, rgb, inten, cls, ret = _cloud(2000, extent=50.0)
    pos[:, 2] = pos[:, 2] // 25  # 2 m of height
    glb = encode_points_glb(pos, UNIT, rgb, inten, cls, ret, meshopt=True, precision=0.001)
    doc, _ = read_glb(glb)
    sx, sy, sz = doc["nodes"][0]["scale"]
    assert sx == sy == sz == pytest.approx(65535 * 0.001)  # 50 m / 65535 < 1 mm: the precision
    d = decode_points_glb(glb)
    assert np.abs(d["positions"] - pos * UNIT).max() <= 0.0005 + 1e-9
