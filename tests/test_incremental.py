"""Incremental rebuilds and versions: a rebuild after an edit rewrites only the files whose bytes
changed, and its result is the clean build of the new inputs, byte for byte.

The city: the tiny sample's footprints (in small tiles, so an edit touches some of them) and its
lidar (in small leaves). Edits: the footprints of the buildings west of the city's middle grow
and rise 3 m; then one LAZ tile of nine is replaced by a copy with other intensities.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import laspy
import numpy as np
import pyogrio.raw
import pytest
import shapely

import cim
from cim.diff import diff_versions
from cim.versions import get_version, list_versions, object_path, prune
from tests.helpers.cities import assert_same_city, stamps

RECIPE = """
[city]
name = "inc"
crs = "EPSG:4544"

[[layers]]
id = "buildings"
kind = "buildings"
source = "data/buildings.gpkg"
height = "height"
max_features = 12

[[layers]]
id = "lidar"
kind = "pointcloud"
source = "data/lidar"
leaf_points = 4000
"""


def edit_footprints(path: Path) -> int:
    """Grow the footprints west of the middle by 20 % and raise them 3 m; returns how many."""
    meta, _, geometry, fields = pyogrio.raw.read(path)
    shapes = shapely.from_wkb(geometry)
    x = shapely.get_coordinates(shapely.centroid(shapes))[:, 0]
    west = x < np.median(x) - 0.25 * (x.max() - x.min())
    grown = np.array([shapely.affinity.scale(s, 1.2, 1.2) for s in shapes[west]], dtype=object)
    shapes[west] = grown
    names = list(meta["fields"])
    height = fields[names.index("height")].astype(float)
    height[west] += 3.0
    fields[names.index("height")] = height
    path.unlink()
    pyogrio.raw.write(path, shapely.to_wkb(shapes), fields, fields=names, crs=meta["crs"], geometry_type="Unknown", layer="buildings")
    return int(west.sum())


def reintensify(path: Path) -> None:
    las = laspy.read(path)
    las.intensity = (np.asarray(las.intensity, dtype=np.int64) * 7 + 11) % 65535
    tmp = path.with_suffix(".new.laz")
    las.write(tmp)
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def sources(tiny_sources, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inc-src")
    data = Path(tiny_sources.recipe).parent / "data"
    (root / "data").mkdir()
    shutil.copy(data / "buildings.gpkg", root / "data" / "buildings.gpkg")
    shutil.copytree(data / "lidar", root / "data" / "lidar")
    (root / "city.toml").write_text(RECIPE)
    return root


@pytest.fixture(scope="module")
def history(sources, tmp_path_factory):
    """The city built, edited and rebuilt in place; clean builds of each edited state beside it."""
    out = tmp_path_factory.mktemp("inc") / "city"
    first = cim.build(sources / "city.toml", out)
    before = stamps(out)
    edited = edit_footprints(sources / "data" / "buildings.gpkg")
    second = cim.build(sources / "city.toml", out)
    after_edit = stamps(out)
    clean_edit = tmp_path_factory.mktemp("inc-clean") / "city"
    cim.build(sources / "city.toml", clean_edit)
    reintensify(sorted((sources / "data" / "lidar").glob("*.laz"))[4])
    third = cim.build(sources / "city.toml", out)
    after_laz = stamps(out)
    clean_laz = tmp_path_factory.mktemp("inc-clean2") / "city"
    cim.build(sources / "city.toml", clean_laz)
    return {
        "out": out,
        "reports": (first, second, third),
        "states": (before, after_edit, after_laz),
        "clean": (clean_edit, clean_laz),
        "edited": edited,
    }


def touched(a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]], layer: str) -> set[str]:
    return {rel for rel in b if rel.startswith(layer + "/") and a.get(rel) != b[rel]}


def expected(out: Path, v1: str, v2: str, layer: str) -> set[str]:
    """Files of a layer whose bytes differ between two versions (or are new), by the records."""
    a, b = get_version(out, v1).files, get_version(out, v2).files
    return {rel for rel, d in b.items() if rel.startswith(layer + "/") and a.get(rel) != d}


def test_footprint_edit_rewrites_only_the_affected_tiles(history):
    out, (first, second, _), (before, after, _) = history["out"], history["reports"], history["states"]
    assert history["edited"] > 0
    changed = touched(before, after, "buildings")
    assert changed == expected(out, "v1", "v2", "buildings")
    buildings = next(lr for lr in second.layers if lr.id == "buildings")
    assert buildings.files > 5 and 0 < buildings.rewritten < buildings.files
    assert buildings.rewritten == len(changed)
    assert touched(before, after, "lidar") == set()  # its inputs did not change
    assert next(lr for lr in first.layers if lr.id == "buildings").rewritten == buildings.files
    assert "files rewritten" in second.summary()


def layer_of(report, layer_id: str):
    return next(lr for lr in report.layers if lr.id == layer_id)


def test_only_the_tiles_whose_inputs_changed_are_made_again(history):
    """Per-tile input hashes: a rebuild encodes only the tiles whose features (buildings) or
    points (an octree node) changed; the others are kept without being made. Every tile whose
    bytes changed was made; none made but for those (and the layer's index)."""
    out, (first, second, third) = history["out"], history["reports"]
    assert all(lr.made == lr.files for lr in first.layers)  # a first build makes everything
    buildings, lidar = layer_of(second, "buildings"), layer_of(second, "lidar")
    changed = {rel for rel in expected(out, "v1", "v2", "buildings") if rel != "buildings/tileset.json"}
    assert changed and buildings.made - 1 == len(changed) < buildings.files - 1
    assert lidar.made == 0  # the whole layer skipped: its inputs did not change
    lidar, buildings = layer_of(third, "lidar"), layer_of(third, "buildings")
    changed = {rel for rel in expected(out, "v2", "v3", "lidar") if rel != "lidar/tileset.json"}
    assert changed and lidar.made - 1 == len(changed) < lidar.files - 1
    # the buildings build after the lidar (their cache key names it, so they run again), but
    # none of their tiles' inputs changed: only their index is made
    assert buildings.made == 1 and buildings.rewritten == 0
    versions = list_versions(out)
    assert [v.layers["lidar"]["made"] for v in versions] == [layer_of(r, "lidar").made for r in history["reports"]]
    # the layer's log is its build manifest: every tile with the hash of its inputs
    log = [json.loads(line) for line in (out / "lidar" / ".cim-build.jsonl").read_text().splitlines()[1:]]
    tiles = [e for e in log if e["file"].endswith(".glb")]
    assert tiles and all(len(e["in"]) == 40 for e in tiles)


def test_footprint_edit_gives_the_clean_build(history):
    clean_edit, _ = history["clean"]
    # the state after the edit is gone from the live folder; its version keeps it
    out = history["out"]
    v2 = get_version(out, "v2")
    for rel, digest in v2.files.items():
        if rel != "city.json" and not rel.endswith(".sqlite"):
            assert object_path(out, digest, rel).read_bytes() == (clean_edit / rel).read_bytes(), rel


def test_laz_replacement_rewrites_only_the_affected_tiles(history):
    out, (_, _, third), (_, after_edit, after_laz) = history["out"], history["reports"], history["states"]
    changed = touched(after_edit, after_laz, "lidar")
    assert changed == expected(out, "v2", "v3", "lidar")
    lidar = next(lr for lr in third.layers if lr.id == "lidar")
    assert 0 < lidar.rewritten < lidar.files and lidar.rewritten == len(changed)
    assert touched(after_edit, after_laz, "buildings") == set()
    assert_same_city(out, history["clean"][1])


def test_versions_record_every_build_and_prune_keeps_what_kept_ones_need(history, tmp_path):
    out = tmp_path / "city"
    shutil.copytree(history["out"], out, symlinks=True)  # copies the links' bytes: a separate store
    versions = list_versions(out)
    assert [v.id for v in versions] == ["v1", "v2", "v3"]
    assert versions[1].sources != versions[0].sources and versions[2].sources != versions[1].sources
    assert versions[0].recipe is not None and "max_features = 12" in versions[0].recipe["text"]
    report = prune(out, keep=2)
    assert report.removed == ["v1"] and report.kept == ["v2", "v3"] and report.objects_removed > 0
    for v in list_versions(out):
        for rel, digest in v.files.items():
            assert object_path(out, digest, rel).is_file(), (v.id, rel)
    with pytest.raises(cim.errors.CimInputError, match="keep"):
        prune(out, keep=0)


def test_diff_names_the_edited_buildings_and_what_changed(history, tmp_path):
    out = history["out"]
    result = diff_versions(out, "v1", "v2")
    changed = [c for c in result.changes if c.change == "changed"]
    assert len(changed) == history["edited"] and result.count("added") == result.count("removed") == 0
    assert all(c.layer == "buildings" and c.geometry and c.attributes == ["height"] for c in changed)
    assert diff_versions(out, "v2", "v3").changes == []  # intensities are no feature's attributes
    assert diff_versions(out, "v2", "v1").count("changed") == len(changed)
    text = result.text()
    assert text.count("\n~ buildings/") + text.startswith("~ buildings/") == len(changed)
    assert "attributes: height" in text and f"{len(changed)} changed" in text
    with pytest.raises(cim.errors.CimNotFound, match="v9"):
        diff_versions(out, "v1", "v9")


def test_cli_versions_diff_and_prune(history, tmp_path):
    from click.testing import CliRunner

    from cim.cli.main import cli

    out = tmp_path / "city"
    shutil.copytree(history["out"], out, symlinks=True)
    runner = CliRunner()
    listed = runner.invoke(cli, ["versions", str(out)])
    assert listed.exit_code == 0 and [line.split("\t")[0] for line in listed.output.splitlines()] == ["v1", "v2", "v3"]
    geo = tmp_path / "changes.geojson"
    shown = runner.invoke(cli, ["diff", str(out), "v1", "v2", "--geojson", str(geo)])
    assert shown.exit_code == 0 and f"{history['edited']} changed" in shown.output
    doc = json.loads(geo.read_text())
    assert len(doc["features"]) == history["edited"]
    assert {f["properties"]["change"] for f in doc["features"]} == {"changed"}
    assert all(f["geometry"]["type"] == "Polygon" for f in doc["features"])
    missing = runner.invoke(cli, ["diff", str(out), "v1", "v7"])
    assert missing.exit_code != 0 and "no version 'v7'" in missing.output and "Traceback" not in missing.output
    pruned = runner.invoke(cli, ["prune", str(out), "--keep", "1"])
    assert pruned.exit_code == 0 and "removed v1, v2" in pruned.output
    assert [v.id for v in list_versions(out)] == ["v3"]


async def test_server_serves_an_old_version_beside_the_current_one(history, aiohttp_client):
    from cim.server.app import create_app

    out = history["out"]
    client = await aiohttp_client(create_app(out, audit=False))
    listed = await (await client.get("/api/versions")).json()
    assert [v["id"] for v in listed["versions"]] == ["v1", "v2", "v3"]
    v1 = get_version(out, "v1")
    changed = sorted(rel for rel in expected(out, "v1", "v3", "buildings") if rel in v1.files and rel.endswith(".glb"))
    assert changed
    rel = changed[0]
    old = await client.get(f"/v/v1/city/{rel}")
    now = await client.get(f"/city/{rel}")
    assert old.status == now.status == 200
    assert await old.read() == object_path(out, v1.files[rel], rel).read_bytes() != await now.read()
    assert old.headers["Content-Type"] == "model/gltf-binary" and "immutable" in old.headers["Cache-Control"]
    city = await (await client.get("/v/v1/city/city.json")).json()
    assert {layer["id"] for layer in city["layers"]} == {"buildings", "lidar"}
    assert (await client.get("/v/v1/city/nothing.glb")).status == 404
    assert (await client.get("/v/v8/city/city.json")).status == 404
    assert (await client.get("/v/v1/city/.cim/versions/000001.json")).status == 404
    diff = await client.get("/api/diff", params={"from": "v1", "to": "v2"})
    doc = await diff.json()
    assert diff.status == 200 and doc["changed"] == history["edited"] and doc["added"] == 0
    assert (await client.get("/api/diff", params={"to": "v2"})).status == 400


def test_unchanged_inputs_skip_every_layer_with_the_same_result(history, sources, tmp_path, caplog):
    out = tmp_path / "city"
    shutil.copytree(history["out"], out, symlinks=True)
    before = stamps(out)
    with caplog.at_level(logging.INFO, logger="cim.layers"):
        again = cim.build(sources / "city.toml", out)
    skipped = [r.getMessage() for r in caplog.records if "inputs unchanged since its last build: skipped" in r.getMessage()]
    assert len(skipped) == 2 and again.rewritten == 0 and again.version == "v4"
    after = stamps(out)
    assert {rel for rel in after if before.get(rel) != after[rel]} <= {"city.json", "search.sqlite"}
    assert_same_city(out, history["out"])
    third = history["reports"][2]
    for lr_a, lr_b in zip(third.layers, again.layers):
        assert (lr_a.id, lr_a.count, lr_a.tiles, lr_a.bounds, lr_a.schema) == (lr_b.id, lr_b.count, lr_b.tiles, lr_b.bounds, lr_b.schema)
        assert [str(w) for w in lr_a.warnings] == [str(w) for w in lr_b.warnings]


def test_the_history_folder_is_private(history):
    assert (history["out"] / ".cim").stat().st_mode & 0o077 == 0


async def test_versions_keep_access_rules_and_diffs_are_audited(history, tmp_path, aiohttp_client):
    from cim.access import AccessControl
    from cim.audit import AuditLog
    from cim.server.app import create_app
    from cim.server.state import AUDIT

    out = tmp_path / "city"
    shutil.copytree(history["out"], out, symlinks=True)
    acl = AccessControl.open(out, create=True)
    acl.add_user("wang", role="planner")
    acl.restrict("buildings", ["planner"])
    token = acl.new_token("wang")
    client = await aiohttp_client(create_app(out))
    assert (await client.get("/v/v1/city/buildings/tileset.json")).status == 403
    assert (await client.get("/v/v1/city/search.sqlite")).status == 403
    city = await (await client.get("/v/v1/city/city.json")).json()
    assert [layer["id"] for layer in city["layers"]] == ["lidar"]
    anonymous = await (await client.get("/api/diff", params={"from": "v1", "to": "v2"})).json()
    assert anonymous["changed"] == 0  # the buildings are not the anonymous reader's to see
    planner = {"Authorization": f"Bearer {token}"}
    read = await client.get("/v/v1/city/buildings/tileset.json", headers=planner)
    assert read.status == 200 and read.headers["Cache-Control"].startswith("private")
    assert (await client.get("/v/v1/city/lidar/tileset.json")).headers["Cache-Control"].startswith("public")
    seen = await (await client.get("/api/diff", params={"from": "v1", "to": "v2"}, headers=planner)).json()
    assert seen["changed"] == history["edited"]
    assert client.server.app[AUDIT].flush(10.0)
    diffs = [r for _, r, _ in AuditLog(out).records() if r is not None and r["action"] == "diff"]
    assert [(r["user"], r["detail"]["changed"]) for r in diffs] == [("anonymous", 0), ("wang", history["edited"])]
    # an old version's restricted files are audited as the live ones: the refusal and the read
    records = [r for _, r, _ in AuditLog(out).records() if r is not None]
    denied = [(r["user"], r["target"]) for r in records if r["action"] == "read-denied"]
    assert denied == [("anonymous", "/v/v1/city/buildings/tileset.json")]
    reads = [(r["user"], r["detail"]["layer"], r["detail"]["paths"]) for r in records if r["action"] == "read"]
    assert reads == [("wang", "buildings", ["/v/v1/city/buildings/tileset.json"])]
