"""The CityJSON layer on real files (cjio's Rotterdam subset, CityJSON 2.0 without a CRS, and DH_01,
CityJSON 1.1 with BuildingParts): what the tiles hold against what the files say, vertex by
vertex in ECEF against pyproj, LoDs, a CityJSONSeq, bad input, the validators and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

import cim
from cim.errors import CimCRSError, CimInputError
from cim.layers import registry
from cim.sources.cityjson import SURFACE_TYPES
from cim.warnings import FeatureSkippedWarning
from tests.helpers import cityjson as cj
from tests.helpers.gltf import validate_glbs

ROTTERDAM = "cityjson/cjio_rotterdam_subset.json"
DH01 = "cityjson/cjio_DH_01_subs.city.json"
#: neither file names its CRS: both are Dutch RD New coordinates with NAP heights
RD_NAP = "EPSG:7415"


def tiles_of(out: Path) -> tuple[dict, list[dict]]:
    tileset = json.loads((out / "tileset.json").read_text())
    return tileset, [cj.read_tile(p) for p in sorted((out / "tiles").glob("*.glb"))]


def layer_entry(out: Path) -> dict:
    (entry,) = json.loads((out / "city.json").read_text())["layers"]
    return entry


@pytest.fixture(scope="module")
def dh01(realdata, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dh01") / "out"
    cim.convert("cityjson", realdata / DH01, out, crs=RD_NAP)
    return out


@pytest.fixture(scope="module")
def rotterdam(realdata, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rotterdam") / "out"
    with pytest.warns(FeatureSkippedWarning, match="12 fewer than 3 distinct vertices"):
        cim.convert("cityjson", realdata / ROTTERDAM, out, crs=RD_NAP)
    return out


@pytest.mark.realdata
def test_dh01_objects_parts_and_attributes(realdata, dh01):
    doc = json.loads((realdata / DH01).read_text())
    objects = doc["CityObjects"]
    entry = layer_entry(dh01)
    assert entry["kind"] == "cityjson" and entry["version"] == "1.1"
    assert entry["object_types"] == {"Building": 4, "BuildingPart": 8} and entry["parts"] == 8
    _, tiles = tiles_of(dh01)
    rows = {}
    for t in tiles:
        table = t["table"]
        assert set(t["feature_ids"]) == set(range(len(table["id"])))  # every row has triangles
        for i, oid in enumerate(table["id"]):
            rows[oid] = {k: v[i] for k, v in table.items()}
    # a feature per city object with geometry: the 8 parts and the one Building that has its own
    assert set(rows) == {oid for oid, obj in objects.items() if obj.get("geometry")}
    assert entry["count"] == 9
    for oid, row in rows.items():
        obj = objects[oid]
        assert row["type"] == obj["type"] and row["lod"] == "2"
        assert row["parent"] == (obj.get("parents") or [None])[0]
        assert {k: row[k] for k in obj["attributes"]} == obj["attributes"]


@pytest.mark.realdata
def test_rotterdam_attributes_and_semantic_surfaces(realdata, rotterdam):
    doc = json.loads((realdata / ROTTERDAM).read_text())
    entry = layer_entry(rotterdam)
    assert json.loads((rotterdam / "city.json").read_text())["crs"] == RD_NAP and entry["crs_source"] == "option"
    assert entry["schema"]["TerrainHeight"] == "FLOAT64" and entry["schema"]["status"] == "STRING"
    _, tiles = tiles_of(rotterdam)
    seen = {}
    for t in tiles:
        for i, oid in enumerate(t["table"]["id"]):
            seen[oid] = {k: t["table"][k][i] for k in doc["CityObjects"][oid]["attributes"]}
    assert seen == {oid: obj["attributes"] for oid, obj in doc["CityObjects"].items()}
    # surfaces per type: the file's, less the 12 degenerate ones (reported, by type)
    in_file = Counter()
    degenerate = Counter()
    for obj in doc["CityObjects"].values():
        for g in obj["geometry"]:
            for surface, v in zip(g["boundaries"], g["semantics"]["values"]):
                kind = g["semantics"]["surfaces"][v]["type"]
                in_file[kind] += 1
                degenerate[kind] += len(set(surface[0])) < 3
    assert {k: s["count"] + s["skipped"] for k, s in entry["surfaces"].items()} == dict(in_file)
    assert {k: s["skipped"] for k, s in entry["surfaces"].items() if s["skipped"]} == {k: n for k, n in degenerate.items() if n}
    assert entry["invalid_surfaces"] == {"fewer than 3 distinct vertices": 12} and entry["stats"]["skipped"] == 12
    # each triangle's code is its surface's type, and its normal agrees: roofs up, walls sideways
    for t in tiles:
        codes = t["codes"][t["triangles"][:, 0]]
        assert np.all(t["codes"][t["triangles"]] == codes[:, None])
        up = t["normals"][t["triangles"][:, 0]][:, 1]  # glTF y is up (at the tile, near enough)
        assert np.all(up[codes == 1] > 0.2) and np.all(np.abs(up[codes == 2]) < 0.2) and np.all(up[codes == 3] < -0.9)
        names = {SURFACE_TYPES[c] for c in np.unique(codes)}
        assert names <= set(entry["surfaces"])


@pytest.mark.realdata
@pytest.mark.parametrize("name", [ROTTERDAM, DH01])
def test_vertices_are_where_pyproj_puts_the_file_coordinates(realdata, rotterdam, dh01, name):
    """Every output vertex, in ECEF, is within a millimetre of a vertex of the file (its integers
    through its transform, RD New → WGS 84 by pyproj, NAP heights as ellipsoidal heights), and
    every vertex of a valid surface is one of them."""
    out = rotterdam if name == ROTTERDAM else dh01
    doc = json.loads((realdata / name).read_text())
    t = doc["transform"]
    xyz = np.array(doc["vertices"], dtype=float) * t["scale"] + t["translate"]
    lon, lat = Transformer.from_crs("EPSG:28992", "EPSG:4326", always_xy=True).transform(xyz[:, 0], xyz[:, 1])
    ex, ey, ez = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, xyz[:, 2])
    truth = np.stack([ex, ey, ez], axis=1)
    tileset, tiles = tiles_of(out)
    hit = np.zeros(len(truth), dtype=bool)
    for tile in tiles:
        ecef = cj.tile_ecef(tile, tileset["root"]["transform"])
        d = np.linalg.norm(ecef[:, None, :] - truth[None, :, :], axis=2)
        nearest = d.argmin(axis=1)
        assert d[np.arange(len(d)), nearest].max() < 1e-3
        hit[nearest] = True
    used = {i for obj in doc["CityObjects"].values() for g in obj.get("geometry", []) for i in _flat(g["boundaries"])}
    # (vertices only in Rotterdam's two-vertex surfaces are not shown)
    assert set(np.flatnonzero(hit).tolist()) >= used - _only_in_degenerate(doc)


def _flat(b):
    if isinstance(b, list):
        for x in b:
            yield from _flat(x)
    else:
        yield b


def _only_in_degenerate(doc: dict) -> set[int]:
    good, bad = set(), set()
    for obj in doc["CityObjects"].values():
        for g in obj.get("geometry", []):
            surfaces = g["boundaries"] if g["type"] == "MultiSurface" else [s for shell in g["boundaries"] for s in shell]
            for s in surfaces:
                (bad if len(set(s[0])) < 3 else good).update(_flat(s))
    return bad - good


@pytest.mark.realdata
def test_no_crs_is_a_clear_error(realdata, tmp_path):
    with pytest.raises(CimCRSError, match=r"declares no CRS.*--crs"):
        cim.convert("cityjson", realdata / ROTTERDAM, tmp_path / "out")
    # the city's CRS serves when the layer gives none
    recipe = tmp_path / "city.toml"
    recipe.write_text(
        f'[city]\nname = "r"\ncrs = "{RD_NAP}"\n\n[[layers]]\nid = "r"\nkind = "cityjson"\nsource = "{realdata / ROTTERDAM}"\n'
    )
    report = cim.build(recipe, tmp_path / "city")
    assert report.layers[0].info.crs_source == "city"


# -- LoDs, sequences, determinism ---------------------------------------------------------------------


def test_lod_choice_and_fallback(tmp_path):
    src = cj.write(tmp_path / "two.city.json", cj.two_lod_city())
    cim.convert("cityjson", src, tmp_path / "high")
    entry = layer_entry(tmp_path / "high")
    assert entry["lods"] == ["1.2", "2.2"] and entry["lod"] == "2.2" and entry["lod_fallback"] == {"1.2": 1}
    assert entry["bounds"]["max_height"] == pytest.approx(cj.ORIGIN[2] + 20.0)
    _, tiles = tiles_of(tmp_path / "high")
    lods = {oid: lod for t in tiles for oid, lod in zip(t["table"]["id"], t["table"]["lod"])}
    assert lods == {"A": "2.2", "A-1": "2.2", "B": "1.2", "C": "2.2"}
    with pytest.warns(FeatureSkippedWarning, match="2 city objects with no LoD at or below 1.2"):
        cim.convert("cityjson", src, tmp_path / "low", lod="1.2")
    entry = layer_entry(tmp_path / "low")
    assert entry["lod"] == "1.2" and entry["lod_missing"] == 2 and entry["lod_fallback"] == {}
    assert entry["bounds"]["max_height"] == pytest.approx(cj.ORIGIN[2] + 10.0)  # A's LoD 1.2 box
    _, tiles = tiles_of(tmp_path / "low")
    assert sorted(oid for t in tiles for oid in t["table"]["id"]) == ["A", "B"]
    # attributes typed: booleans, whole numbers, missing ones as noData
    entry = layer_entry(tmp_path / "high")
    assert entry["schema"]["listed"] == "STRING" and entry["schema"]["floors"] == "INT32" and entry["schema"]["tags"] == "STRING"
    rows = {oid: i for i, oid in enumerate(tiles_of(tmp_path / "high")[1][0]["table"]["id"])}
    table = tiles_of(tmp_path / "high")[1][0]["table"]
    assert table["floors"][rows["A"]] == 4 and table["floors"][rows["B"]] is None and table["name"][rows["C"]] is None


@pytest.mark.realdata
def test_a_cityjsonseq_gives_the_same_tiles(realdata, dh01, tmp_path):
    doc = json.loads((realdata / DH01).read_text())
    seq = tmp_path / "dh01.city.jsonl"
    seq.write_text(cj.to_seq(doc))
    cim.convert("cityjson", seq, tmp_path / "seq", crs=RD_NAP)
    assert (tmp_path / "seq" / "tileset.json").read_bytes() == (dh01 / "tileset.json").read_bytes()
    mine = sorted(p.name for p in (tmp_path / "seq" / "tiles").iterdir())
    assert mine == sorted(p.name for p in (dh01 / "tiles").iterdir())
    for name in mine:
        assert (tmp_path / "seq" / "tiles" / name).read_bytes() == (dh01 / "tiles" / name).read_bytes()


@pytest.mark.realdata
def test_same_input_same_bytes_and_a_tree_of_tiles(realdata, rotterdam, tmp_path):
    """Built again with at most 3 buildings a tile: a quadtree whose parents hold the largest
    buildings; every tile's box holds its content and its children's; and the first build's
    bytes come back for the default options."""
    cim.convert("cityjson", realdata / ROTTERDAM, tmp_path / "again", crs=RD_NAP, workers=2)
    for p in (rotterdam / "tiles").iterdir():
        assert (tmp_path / "again" / "tiles" / p.name).read_bytes() == p.read_bytes()
    assert (tmp_path / "again" / "tileset.json").read_bytes() == (rotterdam / "tileset.json").read_bytes()
    cim.convert("cityjson", realdata / ROTTERDAM, tmp_path / "small", crs=RD_NAP, max_features=3)
    tileset = json.loads((tmp_path / "small" / "tileset.json").read_text())
    leaves: list[str] = []

    def walk(tile, parent_box):
        lo, hi = _box(tile["boundingVolume"]["box"])
        if parent_box is not None:
            assert np.all(lo >= parent_box[0] - 1e-6) and np.all(hi <= parent_box[1] + 1e-6)
        t = cj.read_tile(tmp_path / "small" / tile["content"]["uri"])
        p = t["positions"] + t["translation"]
        enu = np.stack([p[:, 0], -p[:, 2], p[:, 1]], axis=1)
        assert np.all(enu >= lo - 1e-3) and np.all(enu <= hi + 1e-3)
        assert len(set(t["table"]["id"])) <= 3
        if not tile.get("children"):
            leaves.extend(t["table"]["id"])
            assert tile["geometricError"] == 0
        for child in tile.get("children", []):
            assert child["geometricError"] < tile["geometricError"]
            walk(child, (lo, hi))

    walk(tileset["root"], None)
    assert len(tileset["root"]["children"]) >= 2
    assert sorted(leaves) == sorted(json.loads((realdata / ROTTERDAM).read_text())["CityObjects"])


def _box(b):
    c, h = np.array(b[:3]), np.array([b[3], b[7], b[11]])
    return c - h, c + h


def test_bad_inputs_are_clear_errors(tmp_path):
    doc = cj.two_lod_city()
    for name, text, match in [
        ("empty", "", "empty"),
        ("truncated", json.dumps(doc)[:-40], "not valid JSON"),
        ("version", json.dumps({**doc, "version": "0.9"}), "version '0.9' is not supported"),
        ("transform", json.dumps({k: v for k, v in doc.items() if k != "transform"}), "no 'transform'"),
    ]:
        path = tmp_path / f"{name}.city.json"
        path.write_text(text)
        with pytest.raises(CimInputError, match=match):
            cim.convert("cityjson", path, tmp_path / f"out-{name}")
    with pytest.raises(CimInputError, match="no city object has surfaces at or below LoD 1.0"):
        cim.convert("cityjson", cj.write(tmp_path / "two.json", doc), tmp_path / "out-lod", lod="1.0")


def test_bad_geometries_are_counted_skips(tmp_path):
    doc = cj.two_lod_city()
    doc["CityObjects"]["C"]["geometry"][0]["boundaries"][0][2] = [[0, 1, 10**6]]
    doc["CityObjects"]["D"] = {"type": "Building", "geometry": [{"type": "Polyhedron", "lod": "2.2", "boundaries": []}]}
    with pytest.warns(Warning) as caught:
        report = cim.convert("cityjson", cj.write(tmp_path / "bad.json", doc), tmp_path / "out")
    messages = " | ".join(str(w.message) for w in caught)
    assert "left out 1 surfaces with a vertex index out of range" in messages
    assert "left out 1 geometries of unknown type 'Polyhedron'" in messages
    assert report.layers[0].count == 4


# -- validators, contract, CLI ---------------------------------------------------------------------------


@pytest.mark.realdata
def test_glbs_pass_the_khronos_validator(rotterdam, dh01, tmp_path):
    cim.convert("cityjson", cj.write(tmp_path / "two.json", cj.two_lod_city()), tmp_path / "two")
    paths = [p for out in (rotterdam, dh01, tmp_path / "two") for p in sorted((out / "tiles").glob("*.glb"))]
    for report in validate_glbs(paths):
        assert report["errors"] == 0 and report["warnings"] == 0, report


def test_registered_and_documented():
    assert "cityjson" in registry.kinds()
    builder = registry.get("cityjson")
    assert builder.kind == "cityjson" and {"crs", "lod", "max_features"} <= set(builder.Options.__dataclass_fields__)


@pytest.mark.realdata
def test_cli_convert_cityjson(realdata, tmp_path):
    cmd = [sys.executable, "-m", "cim", "convert", "cityjson"]
    proc = subprocess.run(
        [*cmd, str(realdata / DH01), str(tmp_path / "out"), "--crs", RD_NAP, "--lod", "2"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "cityjson: 9 features, 1 tiles" in proc.stderr + proc.stdout
    assert (tmp_path / "out" / "tileset.json").is_file()
    proc = subprocess.run([*cmd, str(realdata / ROTTERDAM), str(tmp_path / "none")], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "declares no CRS" in lines[0]


def test_a_recipe_layer_with_a_typo_stops_before_building(tmp_path):
    src = cj.write(tmp_path / "two.city.json", cj.two_lod_city())
    recipe = tmp_path / "city.toml"
    recipe.write_text(f'[city]\nname = "t"\n\n[[layers]]\nid = "cj"\nkind = "cityjson"\nsource = "{src}"\nmax_featrues = 5\n')
    with pytest.raises(CimInputError, match=r"layer cj: unknown option 'max_featrues'; did you mean 'max_features'\?"):
        cim.build(recipe, tmp_path / "out")
    recipe.write_text(recipe.read_text().replace("max_featrues = 5", 'lod = "2.2"'))
    assert cim.build(recipe, tmp_path / "out").layers[0].info.lod == "2.2"


@pytest.mark.realdata
def test_search_finds_buildings_parts_and_names(realdata, dh01, tmp_path):
    from cim.searchindex import search

    doc = json.loads((realdata / DH01).read_text())
    index = dh01 / "search.sqlite"
    # a Building whose geometry is in its parts is found by its id, over its parts' box
    building = "GUID_13974D93-CB4F-4B5A-AB1E-577DD9928CF2"
    found = search(index, "13974D93", limit=50)  # (a whole id with hyphens is an FTS5 phrase, which the index refuses)
    (hit,) = [r for r in found if r["id"] == building]
    assert hit["properties"]["type"] == "Building" and hit["properties"]["parent"] is None
    parts = [r for r in found if r["properties"].get("parent") == building]
    assert sorted(r["id"] for r in parts) == sorted(doc["CityObjects"][building]["children"])
    assert hit["top"] == pytest.approx(max(p["top"] for p in parts))
    assert len(search(index, "BuildingPart", limit=50)) == 8
    # names where present (the synthetic city has some)
    cim.convert("cityjson", cj.write(tmp_path / "two.json", cj.two_lod_city()), tmp_path / "two")
    (alpha,) = search(tmp_path / "two" / "search.sqlite", "Alpha")
    assert alpha["id"] == "A" and alpha["title"] == "Alpha" and alpha["properties"]["floors"] == 4


def test_cityjson_1_0_without_transform(tmp_path):
    """CityJSON 1.0: no transform (real coordinates), numeric lod, a URN CRS."""
    doc = cj.two_lod_city()
    t = doc.pop("transform")
    doc["version"] = "1.0"
    doc["vertices"] = [[c * s + o for c, s, o in zip(v, t["scale"], t["translate"])] for v in doc["vertices"]]
    doc["metadata"] = {"referenceSystem": "urn:ogc:def:crs:EPSG::4544"}
    for obj in doc["CityObjects"].values():
        for g in obj["geometry"]:
            g["lod"] = float(g["lod"])
    cim.convert("cityjson", cj.write(tmp_path / "old.json", doc), tmp_path / "old")
    cim.convert("cityjson", cj.write(tmp_path / "new.json", cj.two_lod_city()), tmp_path / "new")
    entry = layer_entry(tmp_path / "old")
    assert entry["version"] == "1.0" and entry["lods"] == ["1.2", "2.2"] and entry["crs_source"] == "file"
    for p in (tmp_path / "new" / "tiles").iterdir():
        a, b = cj.read_tile(p), cj.read_tile(tmp_path / "old" / "tiles" / p.name)
        np.testing.assert_allclose(a["positions"] + a["translation"], b["positions"] + b["translation"], atol=1e-4)


def test_parents_in_a_cycle_do_not_hang(tmp_path):
    doc = cj.two_lod_city()
    doc["CityObjects"]["B"]["parents"] = ["C"]
    doc["CityObjects"]["C"]["parents"] = ["B"]
    report = cim.convert("cityjson", cj.write(tmp_path / "cycle.json", doc), tmp_path / "out")
    assert report.layers[0].count == 4
