"""Colours in CesiumJS: what the viewer draws is what its legend and its sources say (issue 17).

CesiumJS takes a shader's colour and glTF's COLOR_0 as linear light and encodes them for the
screen; legends and orthophotos are sRGB. A legend colour the viewer forgets to linearise, or an
sRGB byte stored as if it were linear, renders lighter than it should.

Pictures are read back from the canvas and compared in CIE L*a*b* (ΔE76: about 2.3 is a just
noticeable difference). The camera looks straight down through an orthographic frustum, so
roofs and ground lie where the orthophoto has them. Points are small and antialiased: a point
layer is drawn over black and over white, and each region's colour is the coverage-weighted
mean of its points (`region_colours`), with no background mixed in.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator

import numpy as np
import pytest

from .helpers import BuiltCity, ViewerPage, delta_e76, region_colours, srgb_to_lab, tallest_building, wait_frames

pytestmark = pytest.mark.browser

# A rendered swatch and its legend colour: the same bytes, give or take rounding.
SWATCH_MAX_DELTA_E = 3.0
# A region of the lidar in RGB and the same region of the orthophoto the lidar colours were sampled
# from: points sample about 1 m apart where the imagery shows lossy WebP tiles resampled to the
# screen, and Cesium's display encoding is a 2.2 power where the encoder used the sRGB curve.
# Measured up to 1.0 on the tiny city with linear tiles; sRGB bytes stored as linear measure ~22.
ORTHO_MAX_DELTA_E = 3.0


def _layer(city: BuiltCity, kind: str) -> dict:
    try:
        return city.layer(kind)
    except LookupError:
        pytest.skip(f"this city has no {kind} layer")


def _show_only(vp: ViewerPage, city: BuiltCity, layer_id: str) -> None:
    """Of the 3D layers, show `layer_id` alone; hide the globe (and with it imagery and terrain)."""
    for layer in city.city["layers"]:
        if layer["kind"] in ("buildings", "bim", "pointcloud"):
            vp.page.locator(f"#layer-{layer['id']}").set_checked(layer["id"] == layer_id)
    vp.page.evaluate("window.cim.viewer.scene.globe.show = false")


@contextlib.contextmanager
def top_down(vp: ViewerPage, bounds: dict, share: float = 0.8) -> Iterator[None]:
    """An orthographic camera straight down on the middle of `bounds`, `share` of its smaller
    side across; no sky box, atmosphere, sun or moon (they show where the globe is hidden).
    All of it is put back on exit; the viewer fixture's reset does the layers and the globe."""
    lat = (bounds["south"] + bounds["north"]) / 2
    lon = (bounds["west"] + bounds["east"]) / 2
    across = min(
        (bounds["east"] - bounds["west"]) * 111_320 * math.cos(math.radians(lat)),
        (bounds["north"] - bounds["south"]) * 110_574,
    )
    # eye-dome lighting shades points by depth (the panel is hidden while no point layer shows)
    vp.page.evaluate(
        "() => { const b = document.querySelector('#points-edl'); if (b.checked) { b.checked = false; b.dispatchEvent(new Event('input')); } }"
    )
    saved = vp.page.evaluate(
        """([lon, lat, top]) => {
            const viewer = window.cim.viewer, scene = viewer.scene;
            const saved = {
                skyBox: scene.skyBox.show, skyAtmosphere: scene.skyAtmosphere.show, sun: scene.sun.show,
                moon: scene.moon.show, background: Cesium.Color.pack(scene.backgroundColor, []),
            };
            scene.skyBox.show = scene.skyAtmosphere.show = scene.sun.show = scene.moon.show = false;
            window.cim.lookAt(lon, lat, top, 300);
            return saved;
        }""",
        [lon, lat, bounds["max_height"]],
    )
    # The switch to orthographic picks a position to size the frustum; a pick pass that runs while
    # Cesium still convolves a model's environment map (after the camera moved) fails inside
    # Cesium (DynamicEnvironmentMapManager destroys a buffer twice), so let that settle first.
    vp.wait_ready()
    wait_frames(vp, 5)
    vp.page.evaluate(
        """(width) => {
            const camera = window.cim.viewer.camera;
            camera.switchToOrthographicFrustum();
            camera.frustum.width = width;
            window.cim.cityViewer.unsettle();
        }""",
        share * across,
    )
    try:
        yield
    finally:
        vp.page.evaluate(
            """(saved) => {
                const viewer = window.cim.viewer, scene = viewer.scene;
                viewer.camera.switchToPerspectiveFrustum();
                scene.skyBox.show = saved.skyBox;
                scene.skyAtmosphere.show = saved.skyAtmosphere;
                scene.sun.show = saved.sun;
                scene.moon.show = saved.moon;
                scene.backgroundColor = Cesium.Color.unpack(saved.background);
                window.cim.cityViewer.unsettle();
            }""",
            saved,
        )


def over_black_and_white(vp: ViewerPage, name: str) -> tuple[bytes, bytes]:
    """The settled picture over a black background, then over a white one."""
    shots = []
    for colour in ("BLACK", "WHITE"):
        vp.page.evaluate(f"() => {{ window.cim.viewer.scene.backgroundColor = Cesium.Color.{colour}; window.cim.cityViewer.unsettle(); }}")
        vp.wait_ready()
        shots.append(vp.screenshot(f"{name}-over-{colour.lower()}"))
    return shots[0], shots[1]


def legend_colour(vp: ViewerPage, code: int) -> list[int]:
    """The sRGB colour (0-255) of the legend swatch of ASPRS class `code`, as the page shows it."""
    css = vp.page.evaluate(
        """(code) => {
            const box = document.querySelector(`#points-legend input[data-class="${code}"]`);
            return box ? getComputedStyle(box.parentElement.querySelector(".swatch")).backgroundColor : null;
        }""",
        code,
    )
    assert css and css.startswith("rgb"), f"class {code} has no legend swatch ({css!r})"
    return [int(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]


def test_classification_colours_render_as_their_legend(viewer: ViewerPage, built_city: BuiltCity) -> None:
    """Each class of the lidar, shown alone (the legend's filter) and coloured by classification,
    renders as its legend swatch: the shader's colours are linearised once, exactly."""
    page = viewer.page
    lidar = _layer(built_city, "pointcloud")
    codes = sorted(int(c) for c, info in (lidar.get("classes") or {}).items() if info.get("count"))
    if not codes:
        pytest.skip("the point cloud reports no classes")
    _show_only(viewer, built_city, lidar["id"])
    page.evaluate("window.cim.points.setMode('classification')")
    measured = {}
    with top_down(viewer, lidar["bounds"]):
        for code in codes:
            page.evaluate("([codes, shown]) => codes.forEach((c) => window.cim.points.setClassVisible(c, c === shown))", [codes, code])
            [cell] = region_colours(viewer, *over_black_and_white(viewer, f"21-class-{code}"), grid=(1, 1))
            assert cell["coverage"] > 0.002, f"class {code} hardly shows in the view: {cell}"
            legend = legend_colour(viewer, code)
            measured[code] = (legend, [round(v, 1) for v in cell["mean"]], round(float(delta_e76(cell["mean"], legend)), 2))
    off = {code: m for code, m in measured.items() if m[2] > SWATCH_MAX_DELTA_E}
    assert not off, f"classes rendered unlike their legend (legend, rendered, ΔE76): {off}; all: {measured}"


def test_lidar_rgb_matches_the_orthophoto(viewer: ViewerPage, built_city: BuiltCity) -> None:
    """The lidar in RGB and the orthophoto its colours were sampled from, drawn one after the
    other from the same camera, agree region by region (a 4 x 4 grid): COLOR_0 is linear as glTF
    defines it, and the viewer passes it through."""
    page = viewer.page
    lidar = _layer(built_city, "pointcloud")
    imagery = _layer(built_city, "imagery")
    if lidar.get("has_color") is False:
        pytest.skip("the point cloud has no colours")
    lb, ib = lidar["bounds"], imagery.get("bounds") or built_city.city["bounds"]
    overlap = {
        "west": max(lb["west"], ib["west"]),
        "south": max(lb["south"], ib["south"]),
        "east": min(lb["east"], ib["east"]),
        "north": min(lb["north"], ib["north"]),
        "max_height": lb["max_height"],
    }
    assert overlap["east"] > overlap["west"] and overlap["north"] > overlap["south"], "the lidar is outside the orthophoto"
    _show_only(viewer, built_city, lidar["id"])
    assert page.evaluate("document.querySelector('#points-mode').value") == "rgb"
    with top_down(viewer, overlap):
        points = region_colours(viewer, *over_black_and_white(viewer, "22-lidar-rgb"))
        page.locator(f"#layer-{lidar['id']}").uncheck()
        page.locator(f"#layer-{imagery['id']}").check()
        page.evaluate("() => { window.cim.viewer.scene.globe.show = true; window.cim.cityViewer.unsettle(); }")
        viewer.wait_ready()
        ortho = region_colours(viewer, viewer.screenshot("23-orthophoto"))
    thin = [c for c in points if c["coverage"] < 0.2]
    assert not thin, f"points cover too little of some regions: {thin}"
    rendered = np.array([c["mean"] for c in points])
    source = np.array([c["mean"] for c in ortho])
    de = delta_e76(rendered, source)
    lighter = float(np.mean(srgb_to_lab(rendered)[:, 0] - srgb_to_lab(source)[:, 0]))
    assert de.max() <= ORTHO_MAX_DELTA_E, (
        f"lidar RGB vs orthophoto, ΔE76 per region (max {ORTHO_MAX_DELTA_E}): {np.round(de, 1).tolist()}; "
        f"mean {de.mean():.1f}; the lidar is {lighter:+.1f} L* lighter on average"
        + json.dumps({"lidar": np.round(rendered).tolist(), "orthophoto": np.round(source).tolist()})
    )


def test_selection_highlight_tints_by_its_colour(viewer: ViewerPage, built_city: BuiltCity) -> None:
    """A selected building draws as its rendered colour times the highlight's sRGB colour: Cesium
    applies a feature's colour after lighting and the screen encoding, so the highlight is handed
    over as the CSS colour it is (a white wall would show it exactly). Seen straight down, the
    roof of the tallest building before and after selection."""
    page = viewer.page
    layer = _layer(built_city, "buildings")
    target = tallest_building(built_city)
    _show_only(viewer, built_city, layer["id"])
    roof = layer.get("bounds", built_city.city["bounds"])["max_height"]
    d = 0.00004  # about 4 m each way: the view stays on the roof
    spot = {
        "west": target["lon"] - d,
        "east": target["lon"] + d,
        "south": target["lat"] - d,
        "north": target["lat"] + d,
        "max_height": roof,
    }
    with top_down(viewer, spot, share=0.5):
        viewer.wait_ready()
        [plain] = region_colours(viewer, viewer.screenshot("24-roof"), grid=(1, 1), inset=200)
        centre = page.evaluate("window.cim.canvasCenter()")
        picked = page.evaluate("([x, y]) => window.cim.select(x, y)", [centre["x"], centre["y"]])
        assert picked is not None, "nothing selected at the centre of the tallest building's roof"
        wait_frames(viewer)
        [lit] = region_colours(viewer, viewer.screenshot("25-roof-selected"), grid=(1, 1), inset=200)
        page.evaluate("window.cim.clearSelection()")
    css = page.evaluate("window.cim.highlightColour")
    highlight = np.array([int(css[i : i + 2], 16) for i in (1, 3, 5)], dtype=float) / 255.0
    roof_colour = np.array(plain["mean"])
    expected = roof_colour * highlight
    linearised = roof_colour * highlight**2.2  # what a highlight "made linear" would draw
    de = float(delta_e76(lit["mean"], expected))
    assert de <= SWATCH_MAX_DELTA_E, (
        f"selected roof {np.round(lit['mean'], 1).tolist()} vs expected {np.round(expected, 1).tolist()} "
        f"(ΔE76 {de:.1f}; a linearised highlight would draw {np.round(linearised, 1).tolist()}); "
        f"roof before selection {np.round(roof_colour, 1).tolist()}, highlight {css}"
    )
