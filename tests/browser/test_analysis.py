"""The planning analyses panel (issue 14): the viewer shows the numbers the API computes and
draws each answer's overlay in the scene."""

from __future__ import annotations

import json
import urllib.request

import pytest

from .helpers import Server, ViewerPage, image_stats, wait_frames

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
        request = page.evaluate(f"window.cim.analysis.defaultRequest({kind!r})")
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
    answer = _post(server, "heightlimit", page.evaluate("window.cim.analysis.defaultRequest('heightlimit')"))
    s = answer["summary"]
    assert page.inner_text("#analysis-result") == f"检查 {s['checked']} 栋，超高 {s['exceeding_count']} 栋"
    wait_frames(viewer)
    after = viewer.screenshot("analysis-after")
    assert image_stats(viewer, after, before)["diff"] > 0.002  # the zone and the buildings above it are drawn
    page.evaluate("window.cim.analysis.setLanguage('en')")
    assert page.inner_text("#analysis-result") == f"{s['checked']} buildings checked, {s['exceeding_count']} above the limit"
    page.evaluate("window.cim.analysis.setLanguage('zh-CN')")
    page.click("#analysis-clear")
    assert page.evaluate("window.cim.analysis.overlay.entities.values.length") == 0
