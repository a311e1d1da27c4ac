"""``cim export i3s``: built layers as I3S scene layer packages, read back by loaders.gl (an
independent reader, in Node) and compared with the source 3D Tiles layer."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import struct
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from cim.cli.main import cli
from cim.errors import CimInputError
from cim.export.i3s import export_i3s
from cim.formats.glb import read_glb
from cim.kernels.frames import enu_rotation, geodetic_to_ecef
from tests.helpers.i3s import breadth_first, quaternion_matrix, read_slpk, source_tree, tile_features, tile_property_names

INT32_NULL = -(2**31)


def _i3s_value(value, source):
    """A value as loaders.gl gives it, in the source's terms: strings lose their NUL; Int32
    values come back through a Uint32Array; booleans are Int16 0/1."""
    if isinstance(value, str):
        return value.rstrip("\0") or None
    if isinstance(source, bool):
        return bool(value)
    if isinstance(source, int) and value is not None:
        value = int(value) - 2**32 if int(value) >= 2**31 else int(value)
        return None if value == INT32_NULL else value
    return value


def _box(obb: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ECEF centre, axes as columns, half sizes) of an I3S oriented box."""
    center = geodetic_to_ecef(*(np.array([c]) for c in obb["center"]))[0]
    return center, quaternion_matrix(obb["quaternion"]), np.array(obb["halfSize"])


def _corners(box: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    center, axes, half = box
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    return center + (signs * half) @ axes.T


def check_against_source(read: dict, layer_dir, id_property: str) -> tuple[set, set]:
    """Assert that what loaders.gl read is the source layer: tree, LOD thresholds, features per
    node, attributes, vertices (ECEF within 1 cm) inside each node's box. Returns the feature
    ids seen and the names of the source tables' properties."""
    tree = source_tree(layer_dir / "tileset.json")
    tiles = breadth_first(tree)
    nodes = read["nodes"]
    offset = 1 if tree.glb is not None else 0  # I3S roots are empty: one is put above a root with content
    assert len(nodes) == len(tiles) + offset == read["nodeCount"]
    if offset:
        assert nodes[0]["children"] == [1] and nodes[0]["vertexCount"] == 0 and "positions" not in nodes[0]
    index = {id(t): i + offset for i, t in enumerate(tiles)}
    for node in nodes:  # a node's box holds its children's (I3S clients cull a subtree by it)
        parent = _box(node["obb"])
        for child in node["children"]:
            corners = _corners(_box(nodes[child]["obb"]))
            assert (np.abs((corners - parent[0]) @ parent[1]) <= parent[2] + 0.002).all()
    seen: set = set()
    names: set = set()
    for i, tile in enumerate(tiles):
        node = nodes[i + offset]
        assert node["id"] == i + offset
        assert node["children"] == [index[id(c)] for c in tile.children]
        if tile.children and tile.error > 0:
            radius = node["mbs"][3]
            expected = math.pi / 4 * (2 * radius * 16 / tile.error) ** 2
            sq = next(s for s in node["lodSelection"] if s["metricType"] == "maxScreenThresholdSQ")["maxError"]
            assert sq == pytest.approx(expected, rel=1e-3)
        if tile.glb is None:
            assert node["vertexCount"] == 0
            continue
        features = tile_features(tile, id_property)
        names |= tile_property_names(tile)
        assert node["featureCount"] == len(features) == len(node["attributes"]["OBJECTID"])
        attrs = node["attributes"]
        ids = [v.rstrip("\0") for v in attrs[id_property]]
        oid_to_id = dict(zip(attrs["OBJECTID"], ids))
        assert set(ids) == set(features)
        seen |= set(ids)
        for row, fid in enumerate(ids):
            source = features[fid][0]
            for pid, value in source.items():
                if value is None:
                    continue
                got = _i3s_value(attrs[pid][row], value)
                if isinstance(value, float):
                    assert got == pytest.approx(value, rel=1e-12), (fid, pid)
                else:
                    assert got == value, (fid, pid)
        picked = node["picked"]
        assert picked["attributes"][id_property] == oid_to_id[picked["id"]]
        positions = np.array(node["positions"]).reshape(-1, 3)
        normals = np.array(node["normals"]).reshape(-1, 3)
        assert len(positions) == len(normals) == node["vertexCount"] == sum(len(f[1]) for f in features.values())
        vertex_ids = np.array([oid_to_id[o] for o in node["featureIds"]])
        obb = node["obb"]
        center = _box(obb)[0]
        enu = enu_rotation(obb["center"][0], obb["center"][1])  # normals are stored east-north-up at the centre
        for fid, (_, source_vertices, source_normals) in features.items():
            mine = positions[vertex_ids == fid]
            assert mine.shape == source_vertices.shape, fid
            assert np.abs(mine - source_vertices).max() < 0.01, fid
            assert np.abs(normals[vertex_ids == fid] - source_normals @ enu.T).max() < 0.02, fid
        local = (positions - center) @ quaternion_matrix(obb["quaternion"])
        assert (np.abs(local) <= np.array(obb["halfSize"]) + 0.002).all()
    return seen, names


@pytest.mark.parametrize(("layer", "id_property"), [("buildings", "id"), ("bim", "GlobalId")])
def test_layer_reads_back_in_loadersgl(tiny_city, tmp_path, layer, id_property):
    out = tmp_path / f"{layer}.slpk"
    result = export_i3s(tiny_city / layer, out)
    assert result.layer_type == "3DObject" and out.stat().st_size == result.bytes
    read = read_slpk(out)
    assert read["hashIndex"] and read["layerType"] == "3DObject" and read["version"] == "1.8"
    assert read["spatialReference"]["wkid"] == 4326
    manifest = next(entry for entry in json.loads((tiny_city / "city.json").read_text())["layers"] if entry["id"] == layer)
    seen, names = check_against_source(read, tiny_city / layer, id_property)
    assert read["fields"][0] == {"name": "OBJECTID", "type": "esriFieldTypeOID", "alias": "OBJECTID"}
    # every property of the tiles' tables is a field (the layer's schema may name more: columns
    # empty in every tile are not written into any table)
    aliases = [f["alias"] for f in read["fields"][1:]]
    assert sorted(aliases) == sorted(names) and set(aliases) <= set(manifest["schema"])
    assert [a["name"] for a in read["attributeStorageInfo"]] == [f["name"] for f in read["fields"]]
    assert len(seen) == result.features == manifest["count"]
    assert result.nodes == read["nodeCount"] > 2  # the small-tile tiny city has a real tree


def test_colours_are_srgb_bytes(tiny_city, tmp_path):
    """glTF colours are linear; I3S vertex colours are the display (sRGB) bytes."""
    out = tmp_path / "buildings.slpk"
    export_i3s(tiny_city / "buildings", out)
    node = next(n for n in read_slpk(out)["nodes"] if n["vertexCount"])
    tile = next(t for t in breadth_first(source_tree(tiny_city / "buildings" / "tileset.json")) if t.glb is not None)
    doc, _ = read_glb(tile.glb.read_bytes())
    linear = np.array(doc["materials"][0]["pbrMetallicRoughness"]["baseColorFactor"][:3])
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    expected = [*np.rint(srgb * 255).astype(int).tolist(), 255]
    assert np.array(node["colors"]).reshape(-1, 4).tolist() == [expected] * 10


def test_bim_keeps_property_sets_as_fields(tiny_city, tmp_path):
    out = tmp_path / "bim.slpk"
    export_i3s(tiny_city / "bim", out)
    read = read_slpk(out)
    by_name = {f["name"]: f for f in read["fields"]}
    assert by_name["GlobalId"]["type"] == "esriFieldTypeString"
    assert by_name["StoreyElevation"]["type"] == "esriFieldTypeDouble"
    assert by_name["CIM_Asset_InstallYear"]["type"] == "esriFieldTypeInteger"
    assert by_name["Pset_WallCommon_IsExternal"]["type"] == "esriFieldTypeSmallInteger"
    assert by_name["Pset_WallCommon_IsExternal"]["alias"] == "Pset_WallCommon.IsExternal"


def test_export_is_deterministic_and_a_valid_slpk(tiny_city, tmp_path):
    a, b = tmp_path / "a.slpk", tmp_path / "b.slpk"
    export_i3s(tiny_city / "bim", a)
    export_i3s(tiny_city / "bim", b)
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        assert names[-1] == "@specialIndexFileHASH128@" and names[:-1] == sorted(names[:-1])
        assert all(i.compress_type == zipfile.ZIP_STORED and i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
        assert {"3dSceneLayer.json.gz", "metadata.json", "nodepages/0.json.gz"} <= set(names)
        assert all(n.endswith((".json.gz", ".bin.gz", ".json", "@")) for n in names)
        metadata = json.loads(archive.read("metadata.json"))
        assert metadata["ArchiveCompressionType"] == "Store" and metadata["I3SVersion"] == "1.8"
        index = archive.read("@specialIndexFileHASH128@")
        offsets = {i.filename: i.header_offset for i in infos[:-1]}
    records = [(index[k : k + 16], struct.unpack_from("<Q", index, k + 16)[0]) for k in range(0, len(index), 24)]
    assert len(records) == len(offsets)
    keys = [struct.unpack("<QQ", digest) for digest, _ in records]
    assert keys == sorted(keys)  # the spec's comparator: two little-endian 64-bit words
    expected = {hashlib.md5(name.lower().encode()).digest(): off for name, off in offsets.items()}
    assert dict(records) == expected


def test_a_mesh_layer_becomes_an_integrated_mesh(tiny_city, tmp_path):
    city = tmp_path / "city"
    shutil.copytree(tiny_city / "buildings", city / "reality")
    (city / "city.json").write_text(json.dumps({"layers": [{"id": "reality", "kind": "mesh", "url": "reality/tileset.json"}]}))
    out = tmp_path / "mesh.slpk"
    result = export_i3s(city / "reality", out)
    assert result.layer_type == "IntegratedMesh" and result.features == 0
    read = read_slpk(out)
    assert read["layerType"] == "IntegratedMesh" and read["fields"] == []
    tiles = breadth_first(source_tree(city / "reality" / "tileset.json"))
    meshes = [n for n in read["nodes"] if n["vertexCount"]]
    assert len(meshes) == sum(t.glb is not None for t in tiles)
    for node, tile in zip(meshes, [t for t in tiles if t.glb is not None]):
        source = np.concatenate([f[1] for f in tile_features(tile, "id").values()])
        positions = np.array(node["positions"]).reshape(-1, 3)
        assert node["featureCount"] == 0 and len(positions) == len(source)
        # no features: the triangles keep the tile's order, not grouped by building
        assert np.abs(np.sort(positions, axis=0) - np.sort(source, axis=0)).max() < 0.01


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("terrain", "I3S has no terrain layer type"),
        ("imagery", "I3S has no imagery layer type"),
        ("lidar", "point-cloud layers are not exported"),
        (".", "a built city, not a layer: give one of its layers (terrain, buildings, bim, lidar, imagery, reality)"),
        ("buildings/tiles", "not a built layer"),
    ],
)
def test_layers_that_cannot_be_exported_are_one_line_errors(tiny_city, tmp_path, layer, message):
    r = CliRunner().invoke(cli, ["export", "i3s", str(tiny_city / layer), str(tmp_path / "x.slpk")])
    assert r.exit_code == 1, r.output
    assert "error:" in r.output and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.slpk").exists()
    with pytest.raises(CimInputError, match=re.escape(message)):
        export_i3s(tiny_city / layer, tmp_path / "x.slpk")


def test_cli_writes_the_package(tiny_city, tmp_path):
    r = CliRunner().invoke(cli, ["export", "i3s", str(tiny_city / "buildings"), str(tmp_path / "b.slpk"), "--name", "楼宇"])
    assert r.exit_code == 0, r.output
    assert "3DObject" in r.output and "features" in r.output
    with zipfile.ZipFile(tmp_path / "b.slpk") as archive:
        import gzip

        layer = json.loads(gzip.decompress(archive.read("3dSceneLayer.json.gz")))
    assert layer["name"] == "楼宇" and layer["layerType"] == "3DObject"
    r = CliRunner().invoke(cli, ["export", "i3s", str(tiny_city / "buildings"), str(tmp_path)])
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_a_tile_that_is_not_a_glb_is_named(tiny_city, tmp_path):
    layer = tmp_path / "buildings"
    shutil.copytree(tiny_city / "buildings", layer)
    victim = next((layer / "tiles").glob("*.glb"))
    victim.write_bytes(b"not a glb")
    with pytest.raises(CimInputError, match=victim.name):
        export_i3s(layer, tmp_path / "x.slpk")


def _textured_quad(path, size: float, colour: tuple[int, int, int]) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A GLB of one textured quad (two triangles) in the tile's ENU frame; returns the PNG, the
    ENU corners and their texture coordinates."""
    from io import BytesIO

    from PIL import Image

    from cim.formats.glb import ELEMENT_ARRAY_BUFFER, FLOAT, UNSIGNED_SHORT, GltfBuilder
    from cim.formats.tileset import enu_to_gltf

    image = BytesIO()
    Image.new("RGB", (4, 4), colour).save(image, format="PNG")
    png = image.getvalue()
    enu = np.array([[0, 0, 0], [size, 0, 0], [size, size, 2], [0, size, 2]], dtype=np.float64)
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)
    b = GltfBuilder()
    a_idx = b.accessor(np.array([0, 1, 2, 0, 2, 3], dtype=np.uint16), UNSIGNED_SHORT, "SCALAR", target=ELEMENT_ARRAY_BUFFER)
    a_pos = b.accessor(enu_to_gltf(enu).astype(np.float32), FLOAT, "VEC3", min_max=True)
    a_nrm = b.accessor(np.tile(enu_to_gltf(np.array([0.0, 0.0, 1.0])), (4, 1)).astype(np.float32), FLOAT, "VEC3")
    a_uv = b.accessor(uv, FLOAT, "VEC2")
    b.json["images"] = [{"bufferView": b.buffer_view(png), "mimeType": "image/png"}]
    b.json["samplers"] = [{}]
    b.json["textures"] = [{"source": 0, "sampler": 0}]
    b.json["materials"] = [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0}}]
    prim = {"attributes": {"POSITION": a_pos, "NORMAL": a_nrm, "TEXCOORD_0": a_uv}, "indices": a_idx, "material": 0}
    b.json["meshes"] = [{"primitives": [prim]}]
    b.json["nodes"] = [{"mesh": 0}]
    b.json["scenes"] = [{"nodes": [0]}]
    path.write_bytes(b.to_glb())
    return png, enu[[0, 1, 2, 0, 2, 3]], uv[[0, 1, 2, 0, 2, 3]]


def test_a_textured_mesh_keeps_its_textures(tmp_path):
    from cim.formats.tileset import transform_list
    from cim.kernels.frames import enu_to_ecef_matrix

    city = tmp_path / "city"
    (city / "reality" / "tiles").mkdir(parents=True)
    quads = {
        name: _textured_quad(city / "reality" / "tiles" / f"{name}.glb", size, colour)
        for name, size, colour in [("root", 40.0, (200, 10, 10)), ("a", 20.0, (10, 200, 10)), ("b", 10.0, (10, 10, 200))]
    }
    frame = enu_to_ecef_matrix(105.7, 34.58, 1100.0)
    box = {"box": [20, 20, 1, 21, 0, 0, 0, 21, 0, 0, 0, 2]}
    leaf = {"boundingVolume": box, "geometricError": 0.0}
    tileset = {
        "asset": {"version": "1.1"},
        "geometricError": 50.0,
        "root": {
            "boundingVolume": box,
            "geometricError": 8.0,
            "refine": "REPLACE",
            "transform": transform_list(frame),
            "content": {"uri": "tiles/root.glb"},
            "children": [{**leaf, "content": {"uri": "tiles/a.glb"}}, {**leaf, "content": {"uri": "tiles/b.glb"}}],
        },
    }
    (city / "reality" / "tileset.json").write_text(json.dumps(tileset))
    (city / "city.json").write_text(json.dumps({"layers": [{"id": "reality", "kind": "mesh", "url": "reality/tileset.json"}]}))
    out = tmp_path / "reality.slpk"
    assert export_i3s(city / "reality", out).layer_type == "IntegratedMesh"
    read = read_slpk(out)
    assert [n["children"] for n in read["nodes"]] == [[1], [2, 3], [], []]
    for node, name in zip(read["nodes"][1:], ["root", "a", "b"]):
        png, enu, uv = quads[name]
        assert bytes(node["texture"]["bytes"]) == png and node["texture"]["format"] == "png"
        assert np.allclose(np.array(node["uv"]).reshape(-1, 2), uv, atol=1e-6)
        ecef = enu @ frame[:3, :3].T + frame[:3, 3]
        assert np.abs(np.array(node["positions"]).reshape(-1, 3) - ecef).max() < 0.01


def test_additive_refinement_hands_the_parent_content_down(tmp_path):
    """I3S nodes replace their parent: a child of an ADD tile draws the parent's content too."""
    from cim.formats.tileset import transform_list
    from cim.kernels.frames import enu_to_ecef_matrix

    layer = tmp_path / "city" / "quads"
    (layer / "tiles").mkdir(parents=True)
    _textured_quad(layer / "tiles" / "a.glb", 10.0, (1, 2, 3))
    _textured_quad(layer / "tiles" / "b.glb", 5.0, (1, 2, 3))
    box = {"box": [5, 5, 1, 6, 0, 0, 0, 6, 0, 0, 0, 2]}
    child = {"boundingVolume": box, "geometricError": 0.0, "content": {"uri": "tiles/b.glb"}}
    root = {"boundingVolume": box, "geometricError": 4.0, "refine": "ADD", "content": {"uri": "tiles/a.glb"}, "children": [child]}
    root["transform"] = transform_list(enu_to_ecef_matrix(105.7, 34.58, 1100.0))
    (layer / "tileset.json").write_text(json.dumps({"asset": {"version": "1.1"}, "geometricError": 8.0, "root": root}))
    export_i3s(layer, tmp_path / "x.slpk")
    nodes = read_slpk(tmp_path / "x.slpk")["nodes"]
    parent, child = (np.array(n["positions"]).reshape(-1, 3) for n in nodes[-2:])
    assert [n["children"] for n in nodes] == [[1], [2], []]
    assert len(child) == 2 * len(parent)  # the parent's quad and its own
    assert np.allclose(child[: len(parent)], parent)  # first the quad it adds to
    assert np.ptp(child[len(parent) :, 0]) < np.ptp(parent[:, 0])  # then its own, the smaller


def test_fields_widen_across_tiles_and_keep_objectid_free():
    from cim.export.i3s import _Features, _fields
    from cim.export.tiles import Table

    features = _Features()
    scalar = {"type": "SCALAR"}
    first = Table(
        "b",
        {"OBJECTID": {**scalar, "componentType": "INT32"}, "n": {**scalar, "componentType": "INT32"}, "flag": {"type": "BOOLEAN"}},
        {"OBJECTID": [7, 8], "n": [1, 2], "flag": [True, False]},
        2,
    )
    second = Table("b", {"n": {**scalar, "componentType": "FLOAT64"}, "flag": {"type": "STRING"}}, {"n": [2.5], "flag": ["yes"]}, 1)
    assert features.table_ids(first).tolist() == [1, 2] and features.table_ids(second).tolist() == [3]
    assert _fields(features) == [
        ("OBJECTID", "OBJECTID", "OBJECTID", "Oid32"),
        ("OBJECTID", "OBJECTID_1", "OBJECTID", "Int32"),
        ("n", "n", "n", "Float64"),  # INT32 in one tile, FLOAT64 in another: a double holds both
        ("flag", "flag", "flag", "String"),  # BOOLEAN and STRING: text
    ]


def test_a_tileset_without_a_manifest_is_typed_by_its_content(tiny_city, tmp_path):
    shutil.copytree(tiny_city / "buildings", tmp_path / "copy" / "buildings")
    result = export_i3s(tmp_path / "copy" / "buildings", tmp_path / "b.slpk")
    assert result.kind == "3dtiles" and result.layer_type == "3DObject" and result.features == 126


def _node_signature(node: dict) -> tuple:
    """What a node holds, whatever its number: its buildings, vertices and box centre."""
    ids = sorted(v.rstrip("\0") for v in node.get("attributes", {}).get("id", []))
    return tuple(ids), node["vertexCount"], tuple(round(c, 7) for c in node["obb"]["center"])


def test_an_implicit_buildings_layer_exports_as_its_explicit_twin(tiny_sources, tmp_path):
    """Buildings written with implicit tiling (several subtree files) export to the I3S nodes of
    the same layer written explicitly: the subtrees' availability is walked into the same tree,
    with the boxes and errors their tile metadata holds."""
    import cim

    source = tiny_sources.root / "data" / "buildings.gpkg"
    explicit, implicit = tmp_path / "explicit", tmp_path / "implicit"
    cim.convert("buildings", source, explicit, height="height", max_features=8)
    built = cim.convert("buildings", source, implicit, height="height", max_features=8, implicit_tiles=0, subtree_levels=2)
    assert "implicitTiling" in (implicit / "tileset.json").read_text()
    assert len(list((implicit / "subtrees").rglob("*.subtree"))) > 1
    a, b = export_i3s(explicit, tmp_path / "explicit.slpk"), export_i3s(implicit, tmp_path / "implicit.slpk")
    assert (b.layer_type, b.nodes, b.features) == (a.layer_type, a.nodes, a.features) and b.nodes > 20
    assert b.features == built.layers[0].count
    ra, rb = read_slpk(tmp_path / "explicit.slpk"), read_slpk(tmp_path / "implicit.slpk")

    def tree(read: dict) -> list:
        nodes = read["nodes"]
        return sorted((_node_signature(n), sorted(_node_signature(nodes[c]) for c in n["children"])) for n in nodes)

    assert tree(ra) == tree(rb)
    # a subtree file the tileset names but that is gone: one line naming it
    gone = sorted((implicit / "subtrees").rglob("*.subtree"))[-1]
    gone.unlink()
    with pytest.raises(CimInputError, match=gone.name):
        export_i3s(implicit, tmp_path / "broken.slpk")
