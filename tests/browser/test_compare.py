"""Comparison views (issue 14): the swipe (卷帘比对) on the viewer's page and the multi-screen page
(多屏比对, compare.html) with linked cameras.

The swipe is checked on pixels: with the buildings on the left only, the left of the divider is
drawn as with every layer shown and the right as with the buildings hidden; the divider drags.
A layer "of another version" is the current buildings served under /v/v1/city/ by a route of
the page (the server of these tests keeps no versions). The multi-screen page is its own page:
moving view 1's camera moves view 2's to the same place, and back, with no feedback loop.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .helpers import BuiltCity, Server, ViewerPage, open_viewer, wait_frames

pytestmark = pytest.mark.browser

# pixels that differ by more than this (sum over R, G, B) count as changed, as in helpers.image_stats
CHANGED = 24
# kept out of the halves compared: the divider's band around the split, and Cesium's buttons and
# credits along the edges
BAND_PX = 12
EDGE_PX = 48


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def changed_share(a: bytes, b: bytes, side: str, split: float) -> float:
    """Share of the pixels of one side of the split (`"left"` or `"right"`) that differ."""
    pa, pb = pixels(a), pixels(b)
    assert pa.shape == pb.shape
    h, w, _ = pa.shape
    x = round(split * w)
    cols = slice(EDGE_PX, x - BAND_PX) if side == "left" else slice(x + BAND_PX, w - EDGE_PX)
    rows = slice(EDGE_PX, h - EDGE_PX)
    diff = np.abs(pa[rows, cols] - pb[rows, cols]).sum(axis=-1)
    return float((diff > CHANGED).mean())


def settle(vp: ViewerPage) -> None:
    vp.wait_ready()
    wait_frames(vp)


# --------------------------------------------------------------------------- swipe


def test_swipe_shows_each_side_its_layers_and_the_divider_drags(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    buildings = built_city.layer("buildings")["id"]
    assert page.text_content("#compare-heading").strip() == "比对"
    # the panel's texts are its messages (Chinese by default)
    assert page.text_content("#compare-panel [data-i18n='compare.swipe']") == "卷帘比对"
    assert page.text_content("#compare-panel a[data-views='3']") == "3 屏"
    settle(viewer)
    every = viewer.screenshot("swipe-off")

    # the reference: the buildings hidden everywhere
    page.locator(f"#layer-{buildings}").uncheck()
    settle(viewer)
    without = viewer.screenshot("swipe-no-buildings")
    page.locator(f"#layer-{buildings}").check()
    settle(viewer)
    # the buildings fill enough of both halves for the comparison to mean something
    assert changed_share(every, without, "left", 0.5) > 0.02
    assert changed_share(every, without, "right", 0.5) > 0.02

    # buildings on the left only (set A: every layer; set B: all but the buildings)
    page.locator("#swipe-toggle").check()
    page.locator(f"#swipe-sides select[data-layer='{buildings}']").select_option("left")
    assert page.evaluate(f"window.cim.swipe.side('{buildings}')") == "left"
    assert page.evaluate(f"window.cim.layers['{buildings}'].splitDirection") == page.evaluate("Cesium.SplitDirection.LEFT")
    assert page.evaluate("window.cim.viewer.scene.splitPosition") == pytest.approx(0.5)
    assert page.is_visible("#swipe-divider")
    settle(viewer)
    swiped = viewer.screenshot("swipe-left")
    assert changed_share(swiped, every, "left", 0.5) < 0.01
    assert changed_share(swiped, without, "right", 0.5) < 0.01
    assert changed_share(swiped, every, "right", 0.5) > 0.02

    # the other way round, with the divider dragged to a quarter of the width
    page.locator(f"#swipe-sides select[data-layer='{buildings}']").select_option("right")
    box = page.locator("#swipe-divider").bounding_box()
    canvas = page.locator("#cesium-container canvas").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(canvas["x"] + canvas["width"] * 0.4, y, steps=3)
    page.mouse.move(canvas["x"] + canvas["width"] * 0.25, y, steps=3)
    page.mouse.up()
    assert page.evaluate("window.cim.viewer.scene.splitPosition") == pytest.approx(0.25, abs=0.01)
    assert page.get_attribute("#swipe-divider", "aria-valuenow") == "25"
    settle(viewer)
    quarter = viewer.screenshot("swipe-quarter")
    assert changed_share(quarter, without, "left", 0.25) < 0.01
    assert changed_share(quarter, every, "right", 0.25) < 0.01
    # the keyboard moves it too
    dragged = page.evaluate("window.cim.viewer.scene.splitPosition")
    page.focus("#swipe-divider")
    page.keyboard.press("ArrowRight")
    moved = page.evaluate("window.cim.viewer.scene.splitPosition")
    assert moved == pytest.approx(dragged + 0.02, abs=1e-9)

    # the share link carries it
    page.evaluate("window.cim.share.update()")
    link = page.evaluate("location.hash")
    assert page.evaluate("(hash) => window.cim.share.decode(hash).swipe", link) == f"{moved:.3f},{buildings}:right"

    # off: every layer on both sides again, the divider gone, the link without it
    page.locator("#swipe-toggle").uncheck()
    assert page.evaluate(f"window.cim.layers['{buildings}'].splitDirection") == page.evaluate("Cesium.SplitDirection.NONE")
    assert not page.is_visible("#swipe-divider")
    page.evaluate("window.cim.share.update()")
    assert "swipe=" not in page.evaluate("location.hash")
    # opening the link shows the swipe again
    page.evaluate("(hash) => window.cim.share.apply(window.cim.share.decode(hash))", link)
    assert page.evaluate("window.cim.swipe.enabled()")
    assert page.evaluate(f"window.cim.swipe.side('{buildings}')") == "right"
    assert page.input_value(f"#swipe-sides select[data-layer='{buildings}']") == "right"
    assert page.evaluate("window.cim.viewer.scene.splitPosition") == pytest.approx(moved, abs=1e-3)


def test_swipe_puts_a_layer_of_another_version_on_the_right(viewer: ViewerPage, built_city: BuiltCity, server: Server) -> None:
    page = viewer.page
    buildings = built_city.layer("buildings")["id"]
    # versions are asked for on the button's click only (no 404 logged on a server without them)
    assert page.evaluate("window.cim.swipe.versions()") == []
    assert not page.is_visible("#swipe-version")
    assert not any("/api/versions" in url for url in viewer.log.requests)

    # a server that keeps versions, played by routes: v1 is the current city under /v/v1/city/
    versions = {"versions": [{"id": "v1", "number": 1}]}
    page.route("**/api/versions", lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(versions)))
    page.route("**/v/v1/city/**", lambda route: route.continue_(url=route.request.url.replace("/v/v1/city/", "/city/")))
    try:
        page.click("#swipe-versions")
        page.wait_for_selector("#swipe-version", state="visible", timeout=10_000)
        assert page.evaluate("window.cim.swipe.versions()") == [{"id": "v1", "number": 1}]
        assert not page.is_visible("#compare-panel p[data-i18n='compare.noVersions']")
        options = page.eval_on_selector_all("#swipe-version option", "os => os.map(o => o.value)")
        assert f"v1/{buildings}" in options
        settle(viewer)
        every = viewer.screenshot("version-off")
        page.locator("#swipe-version").select_option(f"v1/{buildings}")
        page.wait_for_function("() => window.cim.swipe.versionLayer() !== null", timeout=60_000, polling=100)
        assert page.evaluate("window.cim.swipe.versionLayer()") == {"version": "v1", "layer": buildings}
        assert page.evaluate("window.cim.swipe.enabled()")
        assert page.evaluate(f"window.cim.swipe.side('{buildings}')") == "left"
        assert any("/v/v1/city/city.json" in url for url in viewer.log.requests)
        assert any(f"/v/v1/city/{built_city.layer('buildings')['url']}" in url for url in viewer.log.requests)
        # the current buildings hidden: the right still shows v1's, the left none
        page.locator(f"#layer-{buildings}").uncheck()
        settle(viewer)
        page.wait_for_function(
            "() => { window.cim.viewer.scene.requestRender(); return window.cim.swipe.versionTilesLoaded(); }",
            timeout=60_000,
            polling=200,
        )
        wait_frames(viewer)
        only_v1 = viewer.screenshot("version-only")
        assert changed_share(only_v1, every, "right", 0.5) < 0.01
        assert changed_share(only_v1, every, "left", 0.5) > 0.02
    finally:
        page.unroute("**/api/versions")
        page.unroute("**/v/v1/city/**")


# --------------------------------------------------------------------------- multi-screen


@pytest.fixture(scope="module")
def linked(browser: object, server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerPage]:
    """compare.html with two linked views, loaded once for the module."""
    vp = open_viewer(browser, server.base_url + "compare.html?views=2", tmp_path_factory.mktemp("compare-shots"))
    vp.base_url = server.base_url
    try:
        vp.wait_ready()
        yield vp
    finally:
        vp.page.close()


def camera_of(vp: ViewerPage, i: int) -> dict:
    return vp.page.evaluate(
        """(i) => { const c = window.cim.viewers[i].camera; const p = c.positionWC;
                    return { p: [p.x, p.y, p.z], heading: c.heading, pitch: c.pitch, roll: c.roll }; }""",
        i,
    )


def move_view(vp: ViewerPage, i: int, lon: float, lat: float, height: float, heading: float, pitch: float) -> None:
    vp.page.evaluate(
        """([i, lon, lat, h, heading, pitch]) => {
            const v = window.cim.views[i];
            v.cesium.camera.setView({ destination: Cesium.Cartesian3.fromDegrees(lon, lat, h),
                                      orientation: { heading, pitch, roll: 0 } });
            v.unsettle();
        }""",
        [i, lon, lat, height, heading, pitch],
    )


def wait_same_camera(vp: ViewerPage, a: int, b: int) -> None:
    vp.page.wait_for_function(
        """([a, b]) => { const ca = window.cim.viewers[a].camera, cb = window.cim.viewers[b].camera;
                         window.cim.viewers.forEach((v) => v.scene.requestRender());
                         return Cesium.Cartesian3.distance(ca.positionWC, cb.positionWC) < 0.01
                             && Math.abs(ca.heading - cb.heading) < 1e-6; }""",
        arg=[a, b],
        timeout=60_000,
        polling=100,
    )


def wait_all_frames(vp: ViewerPage, n: int = 3) -> None:
    """Request renders in every view until `n` more frames were drawn in all (cim.frames sums them)."""
    start = vp.page.evaluate("window.cim.frames")
    vp.page.wait_for_function(
        "(until) => { window.cim.viewers.forEach((v) => v.scene.requestRender()); return window.cim.frames >= until; }",
        arg=start + n * 2,
        timeout=60_000,
        polling=100,
    )


def test_linked_views_move_together_each_with_its_layers(linked: ViewerPage, built_city: BuiltCity) -> None:
    page = linked.page
    layers = [layer["id"] for layer in built_city.city["layers"]]
    assert page.evaluate("window.cim.views.length") == 2
    assert page.evaluate("window.cim.views.map((v) => [...v.layers.keys()])") == [layers, layers]
    # one fetch of city.json for both views
    assert sum(1 for url in linked.log.requests if url.split("?")[0].endswith("/city/city.json")) == 1
    assert page.title().endswith("多屏比对")

    b = built_city.city["bounds"]
    lon, lat = (b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2
    # view 1 moves: view 2 follows, to the same place and orientation
    move_view(linked, 0, lon, lat, 600.0, 0.7, -0.6)
    wait_same_camera(linked, 0, 1)
    one, two = camera_of(linked, 0), camera_of(linked, 1)
    assert math.dist(one["p"], two["p"]) < 0.01
    assert two["heading"] == pytest.approx(0.7, abs=1e-6) and two["pitch"] == pytest.approx(-0.6, abs=1e-6)
    assert abs(two["roll"]) < 1e-6 or abs(abs(two["roll"]) - 2 * math.pi) < 1e-6
    # no feedback loop: more frames in both views copy nothing more
    pushes = page.evaluate("window.cim.link.pushes()")
    wait_all_frames(linked, 4)
    assert page.evaluate("window.cim.link.pushes()") == pushes
    still = camera_of(linked, 0)
    assert math.dist(still["p"], one["p"]) < 1e-3 and still["heading"] == pytest.approx(one["heading"], abs=1e-9)

    # view 2 moves: view 1 follows
    move_view(linked, 1, lon + 0.001, lat - 0.001, 400.0, -0.3, -0.9)
    wait_same_camera(linked, 1, 0)
    # Cesium gives headings in [0, 2 pi)
    assert camera_of(linked, 0)["heading"] == pytest.approx(2 * math.pi - 0.3, abs=1e-6)
    assert page.evaluate("window.cim.link.pushes()") == pushes + 1

    # each view its own layers: hiding the buildings in view 2 leaves view 1's
    buildings = built_city.layer("buildings")["id"]
    page.locator(f".view[data-view='2'] input[data-layer='{buildings}']").uncheck()
    shown = page.evaluate(f"window.cim.views.map((v) => v.layers.get('{buildings}').handle.show)")
    assert shown == [True, False]
    assert page.is_checked(f".view[data-view='1'] input[data-layer='{buildings}']")
    linked.wait_ready()
    linked.assert_clean()


def test_compare_page_is_in_the_packaged_viewer() -> None:
    """setup.py copies the multi-screen page and its script with the viewer."""
    import ast

    setup_py = Path(__file__).resolve().parents[2] / "setup.py"
    tree = ast.parse(setup_py.read_text())
    files = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "VIEWER_FILES" for t in node.targets)
    )
    for name in ("compare.html", "compare.js"):
        assert name in files
        assert (setup_py.parent / "viewer" / name).is_file()
