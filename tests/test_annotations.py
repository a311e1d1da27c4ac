"""The annotation store (cim.annotations) and ``cim annotations``: notes kept beside a city,
concurrent writers, GeoJSON export from the command line (issue 13)."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest
import shapely
from click.testing import CliRunner

from cim.annotations import AnnotationStore, Author, geojson_bytes
from cim.cli.main import cli
from cim.errors import CimIOError

WANG = Author.user("wang")
BROWSER = Author.browser("k" * 43)


@pytest.fixture
def city(tiny_city, tmp_path):
    copy = tmp_path / "city"
    shutil.copytree(tiny_city, copy, copy_function=os.link, ignore=shutil.ignore_patterns(".cim"))
    return copy


@pytest.fixture
def noted(city):
    store = AnnotationStore(city)
    store.create(WANG, "pin", [[105.7263, 34.5801, 1178.5]], "限高 24 m", "麦积区 地块 7")
    store.create(BROWSER, "polyline", [[105.7201, 34.5752, 1150.0], [105.7301, 34.5810, 1149.5]], "规划道路\n第二段")
    store.create(WANG, "polygon", [[105.7310, 34.5820], [105.7330, 34.5820], [105.7330, 34.5835]], "Plot B")
    return city


def test_export_writes_every_note_as_geojson(noted, tmp_path):
    out = tmp_path / "notes.geojson"
    runner = CliRunner()
    r = runner.invoke(cli, ["annotations", "export", str(noted), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "3 annotation(s)" in r.output
    raw = out.read_bytes()
    assert raw == geojson_bytes(AnnotationStore(noted).all())
    doc = json.loads(raw)
    assert [f["geometry"]["type"] for f in doc["features"]] == ["Point", "LineString", "Polygon"]
    assert [f["properties"]["text"] for f in doc["features"]] == ["限高 24 m", "规划道路\n第二段", "Plot B"]
    assert all(shapely.geometry.shape(f["geometry"]).is_valid for f in doc["features"])
    assert "限高".encode() in raw  # Chinese as itself, not \u escapes

    again = tmp_path / "again.geojson"
    assert runner.invoke(cli, ["annotations", "export", str(noted), "-o", str(again)]).exit_code == 0
    assert again.read_bytes() == raw  # the same notes give the same bytes
    stdout = runner.invoke(cli, ["annotations", "export", str(noted)])
    assert stdout.exit_code == 0 and stdout.stdout_bytes == raw

    boxed = runner.invoke(cli, ["annotations", "export", str(noted), "--bbox", "105.725,34.579,105.7305,34.5815"])
    assert [f["properties"]["kind"] for f in json.loads(boxed.stdout_bytes)["features"]] == ["pin", "polyline"]


def test_export_refuses_bad_input_with_a_message(noted, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["annotations", "export", str(noted), "--bbox", "1,2,3"])
    assert r.exit_code == 1 and "--bbox" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["annotations", "export", str(noted), "--bbox", "106,35,105,34"])
    assert r.exit_code == 1 and "bbox" in r.output
    r = runner.invoke(cli, ["annotations", "export", str(tmp_path), "--out", str(tmp_path / "x.geojson")])
    assert r.exit_code == 3 and "not a built city" in r.output
    assert not (tmp_path / "x.geojson").exists()


def test_a_city_without_notes_exports_an_empty_collection_and_writes_nothing_beside_it(city, tmp_path):
    r = CliRunner().invoke(cli, ["annotations", "export", str(city), "--out", str(tmp_path / "none.geojson")])
    assert r.exit_code == 0
    assert json.loads((tmp_path / "none.geojson").read_text()) == {"type": "FeatureCollection", "features": []}
    assert not (city / ".cim" / "annotations.sqlite").exists()


def test_list_prints_one_line_a_note_newest_first(noted):
    r = CliRunner().invoke(cli, ["annotations", "list", str(noted)])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert [line.split()[:3] for line in lines] == [["3", "polygon", "wang"], ["2", "polyline", "anonymous"], ["1", "pin", "wang"]]
    assert lines[1].endswith("规划道路 第二段")


def test_concurrent_writers_each_get_their_own_note(city):
    store = AnnotationStore(city)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(15):
                store.create(Author.user(f"u{n}"), "pin", [[105.72 + 1e-4 * i, 34.58 + 1e-4 * n]], f"{n}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total, notes = store.page(limit=-1)
    assert total == 60 and len({n["id"] for n in notes}) == 60
    assert sorted(n["text"] for n in notes) == sorted(f"{n}-{i}" for n in range(4) for i in range(15))


def test_polygons_export_counterclockwise_whichever_way_they_were_drawn(city):
    store = AnnotationStore(city)
    square = [[105.731, 34.582, 1150.0], [105.733, 34.582, 1151.0], [105.733, 34.5835, 1152.0], [105.731, 34.5835, 1153.0]]
    store.create(WANG, "polygon", square, "counterclockwise")
    store.create(WANG, "polygon", square[::-1], "clockwise")
    for feature in json.loads(geojson_bytes(store.all()))["features"]:
        ring = feature["geometry"]["coordinates"][0]
        assert shapely.LinearRing(ring).is_ccw, feature["properties"]["text"]
        assert sorted(map(tuple, ring[:-1])) == sorted(map(tuple, square))  # the same vertices, heights kept


def test_a_database_being_made_reads_as_empty_and_a_foreign_file_is_an_error(city):
    store = AnnotationStore(city)
    store.path.parent.mkdir()
    store.path.touch()  # what a first writer's connect leaves before its schema is in
    assert store.page() == (0, [])
    store.path.write_bytes(b"not a database at all, but long enough to be read as one" * 100)
    with pytest.raises(CimIOError, match="cannot be read"):
        store.page()
