"""The planning analyses panel (issue 14): the viewer shows the numbers the API computes and
draws each answer's overlay in the scene; its texts follow the language toggle; its inputs are
picked with clicks in the scene."""

from __future__ import annotations

import json
import math
import urllib.request

import pytest

from .helpers import BuiltCity, Server, ViewerPage, image_stats, tallest_building, wait_frames

pytestmark = pytest.mark.browser

KINDS = ["sunlight", "shadow", "sightline", "viewshed", "skyline", "heightlimit", "flood"]


def _post(server: Server, kind: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{server.base_url}api/analysis/{kind}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def _drawable(answer: dict) -> int:
    """Entities the panel draws for an answer: one per polygon, line and point."""
    n = 0
    for feature in answer["geojson"]["features"]:
        g = feature["geometry"]
        n += {"Polygon": 1, "MultiPolygon": len(g["coordinates"]), "LineString": 1, "Point": 1}.get(g["type"], 0)
    return n


def test_every_analysis_shows_the_api_numbers_and_draws_its_overlay(viewer: ViewerPage, server: Server) -> None:
    page = viewer.page
    assert page.inner_text("#analysis-heading") == "规划分析"  # Chinese by default
    for kind in KINDS:
        request = page.evaluate(f"window.cim.analysis.request({kind!r})")
        shown = page.evaluate(
            f"""async () => {{
                const a = await window.cim.analysis.run({kind!r});
                return {{ summary: a.summary, entities: window.cim.analysis.overlay.entities.values.length }};
            }}"""
        )
        expected = _post(server, kind, request)
        assert shown["summary"] == expected["summary"], kind
        assert shown["entities"] == _drawable(expected) > 0, kind
    text = page.inner_text("#analysis-result")
    flood = expected["summary"]
    assert f"{flood['buildings_count']} 栋" in text and "淹没面积" in text


def test_the_panel_runs_on_click_and_the_overlay_shows(viewer: ViewerPage, server: Server) -> None:
    page = viewer.page
    wait_frames(viewer)
    before = viewer.screenshot("analysis-before")
    page.select_option("#analysis-kind", "heightlimit")
    page.click("#analysis-run")
    page.wait_for_function("() => window.cim.analysis.last !== null", timeout=120_000, polling=100)
    answer = _post(server, "heightlimit", page.evaluate("window.cim.analysis.request('heightlimit')"))
    s = answer["summary"]
    assert page.inner_text("#analysis-result") == f"检查 {s['checked']} 栋，超高 {s['exceeding_count']} 栋"
    wait_frames(viewer)
    after = viewer.screenshot("analysis-after")
    assert image_stats(viewer, after, before)["diff"] > 0.002  # the zone and the buildings above it are drawn

    # the header's toggle switches this panel (and the annotations panel) to English and back
    page.click("#language-toggle")
    try:
        assert page.evaluate("window.cim.i18n.language()") == "en"
        assert page.inner_text("#analysis-result") == f"{s['checked']} buildings checked, {s['exceeding_count']} above the limit"
        assert page.text_content("#analysis-heading") == "Planning analyses"
        assert page.text_content("#analysis-run") == "Analyse"
        assert page.eval_on_selector("#analysis-kind", "s => s.selectedOptions[0].textContent") == "Height limit"
        assert page.inner_text("#analysis-value-field .field-label") == "Height limit (m above ground)"
        assert page.text_content("#annotations-heading") == "Annotations"
        assert page.text_content("#annotation-refresh") == "Refresh"
    finally:
        page.click("#language-toggle")
    assert page.inner_text("#analysis-result") == f"检查 {s['checked']} 栋，超高 {s['exceeding_count']} 栋"
    assert page.text_content("#annotations-heading") == "批注"
    page.click("#analysis-clear")
    assert page.evaluate("window.cim.analysis.overlay.entities.values.length") == 0


def _metres(value: float) -> str:
    """A distance as the panel shows it in Chinese: grouped, at most one decimal."""
    return f"{round(value, 1):,.1f}".removesuffix(".0")


def test_a_line_of_sight_between_two_clicked_points(viewer: ViewerPage, server: Server, built_city: BuiltCity) -> None:
    """The planner clicks the observer (on the tallest roof) and the target in the scene; the
    panel asks the API about exactly those two places and shows its answer."""
    page = viewer.page
    target = tallest_building(built_city)
    roof = built_city.layer("buildings").get("bounds", built_city.city["bounds"])["max_height"]
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 250)", [target["lon"], target["lat"], roof])
    viewer.wait_ready()
    page.select_option("#analysis-kind", "sightline")
    assert page.inner_text("#analysis-input") == "输入：城市中心（默认）"
    page.click("#analysis-pick")
    assert page.inner_text("#analysis-hint") == "在场景中点击起点（观察者）。"
    centre = page.evaluate("window.cim.canvasCenter()")
    page.mouse.click(centre["x"], centre["y"])
    assert page.inner_text("#analysis-hint") == "在场景中点击终点（目标）。"
    page.mouse.click(centre["x"] + 180, centre["y"] + 120)
    assert page.inner_text("#analysis-hint") == ""
    assert page.evaluate("window.cim.selection") is None  # the clicks picked places, they selected nothing

    picked = page.evaluate("window.cim.analysis.inputs")
    lon, lat = picked["from"][:2]
    metres = math.hypot((lon - target["lon"]) * 111_320 * math.cos(math.radians(lat)), (lat - target["lat"]) * 110_574)
    assert metres < 2.0, f"the observer is {metres:.1f} m from where the camera looked"
    apart = math.hypot((picked["to"][0] - lon) * 111_320 * math.cos(math.radians(lat)), (picked["to"][1] - lat) * 110_574)
    assert apart > 20
    request = page.evaluate("window.cim.analysis.request('sightline')")
    assert request == {"from": [*picked["from"][:2], 1.6], "to": [*picked["to"][:2], 1.6]}
    assert "起点" in page.inner_text("#analysis-input") and "米" in page.inner_text("#analysis-input")

    page.click("#analysis-run")
    page.wait_for_function("() => window.cim.analysis.last !== null", timeout=120_000, polling=100)
    expected = _post(server, "sightline", request)
    s = expected["summary"]
    shown = page.evaluate("window.cim.analysis.last.summary")
    assert shown == s
    what = s["obstruction"]["building"] if not s["visible"] and s["obstruction"].get("building") else "地形"
    text = "通视" if s["visible"] else f"被遮挡：{what}，距离 {_metres(s['obstruction']['distance'])} 米"
    assert page.inner_text("#analysis-result") == text
    assert page.evaluate("window.cim.analysis.overlay.entities.values.length") == _drawable(expected) > 0


def test_the_skyline_is_charted_today_and_with_a_proposal(viewer: ViewerPage, server: Server) -> None:
    """A 150 m tower proposed 80 m east of the viewpoint: the API says it changes the skyline, and
    the chart shows both curves, point for point the API's."""
    page = viewer.page
    page.select_option("#analysis-kind", "skyline")
    assert page.is_visible("#analysis-proposal") and page.is_hidden("#analysis-chart")
    lon, lat = page.evaluate("window.cim.analysis.request('skyline')")["viewpoint"]
    m_lon, m_lat = 1 / (111_320 * math.cos(math.radians(lat))), 1 / 110_574
    ring = [[lon + dx * m_lon, lat + dy * m_lat] for dx, dy in ((70, -10), (90, -10), (90, 10), (70, 10))]
    page.evaluate("(ring) => window.cim.analysis.setInputs({ proposal: ring.map(([x, y]) => [x, y, 0]) })", ring)
    page.fill("#analysis-proposal-height", "150")
    request = page.evaluate("window.cim.analysis.request('skyline')")
    assert request["proposal"] == {"polygon": ring, "height": 150}
    assert "方案体块：4 个顶点，高 150 米" in page.inner_text("#analysis-input")

    page.click("#analysis-run")
    page.wait_for_function("() => window.cim.analysis.last?.kind === 'skyline'", timeout=120_000, polling=100)
    page.wait_for_function("() => window.cim.analysis.chartSeries() !== null", timeout=30_000, polling=100)
    s = _post(server, "skyline", request)["summary"]
    assert s["changed_azimuths"] > 0 and s["max_rise"] > 0
    series = page.evaluate("window.cim.analysis.chartSeries()")
    assert [x["name"] for x in series] == ["现状", "方案"]
    assert series[0]["data"] == [[a, e] for a, e in zip(s["azimuths"], s["elevation"], strict=True)]
    assert series[1]["data"] == [[a, e] for a, e in zip(s["azimuths"], s["after"]["elevation"], strict=True)]
    assert page.is_visible("#analysis-chart canvas")
    assert f"方案改变 {s['changed_azimuths']} 个方位的天际线" in page.inner_text("#analysis-result")
    page.click("#language-toggle")
    try:
        page.wait_for_function(
            "() => window.cim.analysis.chartSeries()?.map(x => x.name).join() === 'Today,Proposal'", timeout=10_000, polling=100
        )
    finally:
        page.click("#language-toggle")
