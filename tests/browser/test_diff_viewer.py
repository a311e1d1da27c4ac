"""The viewer colours a diff (viewer/js/diff.js): changed features orange on the current tiles,
removed ones as red boxes; cleared by cim.diff.clear() and by the viewer's reset. The session's
city has one version, so the diff fetched from the server is empty and the coloured one is
given to the tool as /api/diff would answer it."""

from __future__ import annotations

import pytest

from tests.browser.helpers import BuiltCity, ViewerPage, pick_canvas_centre, tallest_building, wait_frames

pytestmark = pytest.mark.browser

ORANGE = "#f28c28"

FEATURE_COLOUR_AT_CENTRE = """() => {
  const c = window.cim.viewer.scene.canvas;
  const picked = window.cim.viewer.scene.pick(new Cesium.Cartesian2(c.clientWidth / 2, c.clientHeight / 2));
  return picked && picked.color ? picked.color.toCssHexString() : null;
}"""


def test_viewer_colours_a_diff(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    empty = page.evaluate("() => window.cim.diff.show('v1', 'latest')")
    assert empty == {"added": 0, "changed": 0, "removed": 0}

    target = tallest_building(built_city)
    roof = built_city.city["bounds"]["max_height"]
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 250)", [target["lon"], target["lat"], roof])
    viewer.wait_ready()
    assert str(pick_canvas_centre(viewer)["id"]) == str(target["attrs"]["id"])
    assert page.evaluate(FEATURE_COLOUR_AT_CENTRE) == "#ffffff"

    lon, lat = target["lon"], target["lat"]
    doc = {
        "from": "v1",
        "to": "v2",
        "features": [
            {"layer": "buildings", "id": str(target["attrs"]["id"]), "change": "changed", "bbox": [lon, lat, lon, lat]},
            {
                "layer": "buildings",
                "id": "gone",
                "change": "removed",
                "bbox": [lon + 0.001, lat, lon + 0.0015, lat + 0.0005],
                "base": 1100,
                "top": 1130,
            },
        ],
    }
    assert page.evaluate("(doc) => window.cim.diff.apply(doc)", doc) == {"added": 0, "changed": 1, "removed": 1}
    page.wait_for_function(
        "() => { window.cim.viewer.scene.requestRender(); return window.cim.diff.coloured > 0; }", timeout=30_000, polling=100
    )
    wait_frames(viewer)
    assert page.evaluate(FEATURE_COLOUR_AT_CENTRE) == ORANGE
    assert page.evaluate("() => window.cim.viewer.entities.values.map((e) => e.name)") == ["buildings/gone (removed)"]

    page.evaluate("() => window.cim.diff.clear()")
    wait_frames(viewer)
    assert page.evaluate(FEATURE_COLOUR_AT_CENTRE) == "#ffffff"
    assert page.evaluate("() => [window.cim.diff.coloured, window.cim.viewer.entities.values.length, window.cim.diff.shown]") == [
        0,
        0,
        None,
    ]
