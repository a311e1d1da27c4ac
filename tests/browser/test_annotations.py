"""Annotations in the viewer (批注, issue 13): two browsers (two contexts, two cookie jars: two
anonymous authors) on one server. A note placed with the mouse in the first is stored on the
server, seen by the second after a refresh, edited and deleted by its author only.

The module serves its own copy of the tiny city (annotations are written beside it) and keeps
both pages open for all its tests. To keep the module quick, the first browser loads only the
layers a note is placed on (buildings, terrain) and the second none (its notes need no tiles):
each page is given ``city.json`` with the other layers left out (``page.route``); everything else,
the annotations above all, is the real server's.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely

from .helpers import VIEWPORT, BuiltCity, PageLog, Server, ViewerPage, run_server, tallest_building

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__pwned = 1"> 限高 24 m，请复核'
FORBIDDEN_LOG = "status of 403"


@pytest.fixture(scope="module")
def notes_server(built_city: BuiltCity, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    city = tmp_path_factory.mktemp("annotations") / "city"
    shutil.copytree(built_city.tiles_dir, city, copy_function=os.link, ignore=shutil.ignore_patterns(".cim"))
    with run_server(city, tmp_path_factory.mktemp("annotations-server")) as server:
        yield server


def open_with_layers(browser: object, base_url: str, shots: Path, keep: set[str]) -> ViewerPage:
    """The viewer in a browser context of its own (``browser.new_page``), given a city.json that
    lists only the layers of the kinds in ``keep``."""
    page = browser.new_page(viewport=VIEWPORT)
    log = PageLog()
    page.on("request", lambda req: log.requests.append(req.url))
    page.on("console", lambda msg: log.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: log.page_errors.append(str(err)))

    def fewer_layers(route: object) -> None:
        city = route.fetch().json()
        city["layers"] = [layer for layer in city["layers"] if layer["kind"] in keep]
        route.fulfill(json=city)

    page.route("**/city/city.json", fewer_layers)
    page.goto(base_url)
    return ViewerPage(page, log, base_url, shots)


@pytest.fixture(scope="module")
def two(browser: object, notes_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ViewerPage, ViewerPage]]:
    """The viewer in two browser contexts (two cookie jars), loading side by side."""
    shots = tmp_path_factory.mktemp("annotation-shots")
    first = open_with_layers(browser, notes_server.base_url, shots, {"buildings"})
    second = open_with_layers(browser, notes_server.base_url, shots, set())
    try:
        first.wait_ready()
        second.wait_ready()
        yield first, second
    finally:
        first.page.close()
        second.page.close()


def api(server: Server, path: str) -> dict:
    with urllib.request.urlopen(server.base_url + path.lstrip("/"), timeout=10) as resp:
        return json.loads(resp.read())


def look_at_tallest(vp: ViewerPage, built_city: BuiltCity) -> dict:
    """Look straight down at the tallest building; return it with its roof height (search index)."""
    target = tallest_building(built_city)
    roof = built_city.layer("buildings").get("bounds", built_city.city["bounds"])["max_height"]
    vp.page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 250)", [target["lon"], target["lat"], roof])
    vp.wait_ready()
    return target


def write_note(vp: ViewerPage, text: str, title: str = "") -> dict:
    """Fill the note's form, save, and return the saved note (from the page's list)."""
    page = vp.page
    page.wait_for_selector("#annotation-form:not([hidden])", timeout=10_000)
    page.fill("#annotation-title", title)
    page.fill("#annotation-text", text)
    before = page.evaluate("window.cim.annotations.notes.map(n => n.id)")
    page.click("#annotation-save")
    page.wait_for_function(
        "(before) => window.cim.annotations.notes.some(n => !before.includes(n.id))", arg=before, timeout=20_000, polling=100
    )
    return page.evaluate("(before) => window.cim.annotations.notes.find(n => !before.includes(n.id))", before)


def refresh(vp: ViewerPage) -> list[dict]:
    vp.page.click("#annotation-refresh")
    vp.page.evaluate("window.cim.annotations.refresh()")
    return vp.page.evaluate("window.cim.annotations.notes")


def item_texts(vp: ViewerPage) -> dict[int, dict]:
    """Each listed note: its text as shown, and which buttons it offers."""
    rows = vp.page.eval_on_selector_all(
        "#annotation-list li[data-id]",
        """lis => lis.map(li => [Number(li.dataset.id), {
            text: li.querySelector('.annotation-text').textContent,
            buttons: [...li.querySelectorAll('button')].map(b => b.className.split(' ').pop()),
            html: li.querySelectorAll('img, script').length,
        }])""",
    )
    return dict(rows)


def test_a_pin_on_a_roof_is_shared_with_the_second_browser(two, notes_server, built_city) -> None:
    first, second = two
    target = look_at_tallest(first, built_city)
    [hit] = [
        r for r in api(notes_server, f"/api/search?q={target['attrs']['id']}&limit=5")["results"] if r["id"] == str(target["attrs"]["id"])
    ]

    page = first.page
    page.click("#annotations-panel button[data-kind=pin]")
    assert page.get_attribute("#annotations-panel button[data-kind=pin]", "aria-pressed") == "true"
    centre = page.evaluate("window.cim.canvasCenter()")
    page.mouse.click(centre["x"], centre["y"])
    note = write_note(first, HOSTILE, "麦积区 地块 7")
    assert page.evaluate("window.cim.selection") is None  # the click placed the pin, it selected nothing

    stored = api(notes_server, f"/api/annotations/{note['id']}")
    assert stored["kind"] == "pin" and stored["text"] == HOSTILE and stored["title"] == "麦积区 地块 7"
    assert stored["author"] == "anonymous"
    lon, lat, height = stored["coordinates"][0]
    metres = math.hypot((lon - target["lon"]) * 111_320 * math.cos(math.radians(lat)), (lat - target["lat"]) * 110_574)
    assert metres < 2.0, f"the pin is {metres:.1f} m from where the camera looked"
    assert height == pytest.approx(hit["top"], abs=1.5), "the pin is not on the roof"
    mine = item_texts(first)[note["id"]]
    assert mine["text"] == HOSTILE and mine["html"] == 0 and {"annotation-edit", "annotation-delete"} <= set(mine["buttons"])
    assert page.evaluate("document.cookie") == ""  # the author key is HttpOnly

    # the second browser sees it after a refresh: as text, not its own
    notes = refresh(second)
    assert [n["id"] for n in notes if n["text"] == HOSTILE] == [note["id"]]
    theirs = item_texts(second)[note["id"]]
    assert theirs["text"] == HOSTILE and theirs["html"] == 0
    assert theirs["buttons"] == ["annotation-fly"]
    assert second.page.evaluate("window.__pwned") is None
    assert second.page.evaluate(
        f"Boolean(window.cim.viewer.dataSources.getByName('annotations')[0].entities.getById('annotation-{note['id']}'))"
    )

    # and flies to it: the camera ends up above the pin
    second.page.click(f"#annotation-list li[data-id='{note['id']}'] .annotation-fly")
    second.wait_ready()
    camera = second.page.evaluate(
        "(() => { const c = window.cim.viewer.camera.positionCartographic; return [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude), c.height]; })()"
    )
    away = math.hypot((camera[0] - lon) * 111_320 * math.cos(math.radians(lat)), (camera[1] - lat) * 110_574)
    assert camera[2] > height and math.hypot(away, camera[2] - height) < 400
    first.assert_clean()
    second.assert_clean()


def test_a_polygon_drawn_with_clicks_surrounds_the_point_inside(two, notes_server, built_city) -> None:
    first, _ = two
    target = look_at_tallest(first, built_city)
    page = first.page
    page.click("#annotations-panel button[data-kind=polygon]")
    centre = page.evaluate("window.cim.canvasCenter()")
    assert page.is_disabled("#annotation-finish")
    for dx, dy in ((-40, -40), (40, -40), (0, 45)):  # a triangle round the centre (each click is a pick pass)
        page.mouse.click(centre["x"] + dx, centre["y"] + dy)
    page.wait_for_function("() => !document.querySelector('#annotation-finish').disabled", timeout=10_000, polling=100)
    page.click("#annotation-finish")
    note = write_note(first, "Plot B: keep the trees\n第二行")
    stored = api(notes_server, f"/api/annotations/{note['id']}")
    assert stored["kind"] == "polygon" and len(stored["coordinates"]) == 3
    ring = shapely.Polygon([v[:2] for v in stored["coordinates"]])
    assert ring.is_valid and ring.contains(shapely.Point(target["lon"], target["lat"]))
    exported = api(notes_server, "/api/annotations.geojson")
    [feature] = [f for f in exported["features"] if f["id"] == note["id"]]
    assert (
        feature["geometry"]["type"] == "Polygon" and feature["geometry"]["coordinates"][0][0] == feature["geometry"]["coordinates"][0][-1]
    )
    first.assert_clean()


def test_only_its_author_edits_and_deletes_a_note(two, notes_server) -> None:
    first, second = two
    page = first.page
    created = page.evaluate(
        """async () => {
            const c = window.cim.viewer.camera.positionCartographic;
            const lon = Cesium.Math.toDegrees(c.longitude), lat = Cesium.Math.toDegrees(c.latitude);
            const body = { kind: "polyline", coordinates: [[lon, lat, 1150], [lon + 0.001, lat, 1151]], text: "规划道路" };
            const r = await fetch("/api/annotations", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
            return r.json();
        }"""
    )
    note_id = created["id"]
    refresh(first)
    refresh(second)
    assert item_texts(second)[note_id]["buttons"] == ["annotation-fly"]

    # the author edits it in the panel
    page.click(f"#annotation-list li[data-id='{note_id}'] .annotation-edit")
    assert page.input_value("#annotation-text") == "规划道路"
    page.fill("#annotation-text", "规划道路（已改线）")
    page.click("#annotation-save")
    page.wait_for_function(
        "(id) => window.cim.annotations.notes.some(n => n.id === id && n.text === '规划道路（已改线）')",
        arg=note_id,
        timeout=20_000,
        polling=100,
    )
    assert api(notes_server, f"/api/annotations/{note_id}")["text"] == "规划道路（已改线）"
    refresh(second)
    assert item_texts(second)[note_id]["text"] == "规划道路（已改线）"

    # the other browser cannot delete it, even by asking the server directly
    status = second.page.evaluate(f"fetch('/api/annotations/{note_id}', {{ method: 'DELETE' }}).then(r => r.status)")
    assert status == 403
    assert second.page.evaluate(f"window.cim.annotations.remove({note_id})") is False
    assert "自己的批注" in second.page.text_content("#annotation-message")
    assert api(notes_server, f"/api/annotations/{note_id}")["id"] == note_id

    # the author deletes it: two clicks
    delete = f"#annotation-list li[data-id='{note_id}'] .annotation-delete"
    page.click(delete)
    assert page.text_content(delete) == "确认删除"
    page.click(delete)
    page.wait_for_function("(id) => !window.cim.annotations.notes.some(n => n.id === id)", arg=note_id, timeout=20_000, polling=100)
    assert note_id not in [n["id"] for n in refresh(second)]
    assert note_id not in item_texts(second)
    first.assert_clean()
    assert [e for e in second.log.console_errors if FORBIDDEN_LOG not in e] == []
    assert second.log.page_errors == []


def test_the_export_button_downloads_every_note(two, notes_server, tmp_path: Path) -> None:
    first, _ = two
    first.page.evaluate(
        """() => fetch("/api/annotations", { method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ kind: "pin", coordinates: [[105.72, 34.58, 1160]], text: "导出" }) })"""
    )
    with first.page.expect_download() as download:
        first.page.click("#annotation-export")
    saved = tmp_path / "notes.geojson"
    download.value.save_as(saved)
    doc = json.loads(saved.read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection" and "导出" in [f["properties"]["text"] for f in doc["features"]]
    assert [f["id"] for f in doc["features"]] == [n["id"] for n in reversed(api(notes_server, "/api/annotations")["results"])]
    first.assert_clean()
