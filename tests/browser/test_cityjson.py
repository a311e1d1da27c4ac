"""A CityJSON layer in the viewer: coloured by semantic surface, a flat roof renders as the roof's
legend swatch; clicked, a building part shows its CityJSON attributes.

The city of this module is cjio's DH_01 (CityJSON 1.1, Buildings with BuildingParts, Dutch RD New +
NAP, which the file does not declare) converted on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.helpers import REALDATA

from .helpers import (
    _DECODE_PNG_JS,
    BuiltCity,
    Server,
    ViewerPage,
    click_canvas_centre,
    delta_e76,
    panel_rows,
    region_colours,
    run_server,
    wait_frames,
)

pytestmark = [pytest.mark.browser, pytest.mark.realdata]

DH01 = REALDATA / "cityjson" / "cjio_DH_01_subs.city.json"
# a rendered swatch and its legend colour: the same bytes, give or take rounding (as test_colours)
SWATCH_MAX_DELTA_E = 3.0


@pytest.fixture(scope="module")
def built_city(browser_prereqs: None, tmp_path_factory: pytest.TempPathFactory) -> BuiltCity:
    """Overrides the session's city for this module: DH_01 alone."""
    import cim

    if not DH01.exists():
        pytest.skip(f"{DH01} is missing (the ../shared folder beside the checkout)")
    tiles = tmp_path_factory.mktemp("cityjson-city") / "tiles"
    cim.convert("cityjson", DH01, tiles, crs="EPSG:7415")
    return BuiltCity(tiles, json.loads((tiles / "city.json").read_text()))


@pytest.fixture(scope="module")
def server(built_city: BuiltCity, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(built_city.tiles_dir, tmp_path_factory.mktemp("cityjson-server")) as srv:
        yield srv


def largest_flat_roof() -> dict:
    """The largest horizontal RoofSurface of DH_01: its object, attributes, height and a
    longitude/latitude inside it."""
    import shapely
    from pyproj import Transformer

    doc = json.loads(DH01.read_text())
    t = doc["transform"]
    best: dict = {}
    for oid, obj in doc["CityObjects"].items():
        for g in obj.get("geometry", []):
            values = g["semantics"]["values"][0]
            for surface, v in zip(g["boundaries"][0], values):
                if g["semantics"]["surfaces"][v]["type"] != "RoofSurface":
                    continue
                pts = [[c * s + o for c, s, o in zip(doc["vertices"][i], t["scale"], t["translate"])] for i in surface[0]]
                if len({round(p[2], 3) for p in pts}) != 1:
                    continue
                poly = shapely.Polygon([p[:2] for p in pts])
                if poly.area > best.get("area", 0):
                    inside = poly.buffer(-1.0).representative_point() if poly.buffer(-1.0).area > 0 else poly.representative_point()
                    best = {"id": oid, "type": obj["type"], "parent": (obj.get("parents") or [None])[0], "attrs": obj["attributes"]}
                    best.update(area=poly.area, xy=(inside.x, inside.y), z=pts[0][2])
    lon, lat = Transformer.from_crs("EPSG:28992", "EPSG:4326", always_xy=True).transform(*best["xy"])
    return {**best, "lon": lon, "lat": lat}


def look_at_roof(vp: ViewerPage, roof: dict, range_m: float = 12.0) -> None:
    """Straight down at the roof from ``range_m`` above it, the globe hidden."""
    vp.page.evaluate("() => { window.cim.viewer.scene.globe.show = false; }")
    vp.page.evaluate("([lon, lat, h, r]) => window.cim.lookAt(lon, lat, h, r)", [roof["lon"], roof["lat"], roof["z"], range_m])
    vp.wait_ready()


def legend_swatch(vp: ViewerPage, surface: str) -> list[int]:
    css = vp.page.evaluate(
        """(name) => {
            const row = document.querySelector(`#cityjson-legend [data-surface="${name}"]`);
            return row ? getComputedStyle(row.querySelector(".swatch")).backgroundColor : null;
        }""",
        surface,
    )
    assert css and css.startswith("rgb"), f"{surface} has no legend swatch ({css!r})"
    return [int(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]


def share_off_colour(vp: ViewerPage, png: bytes, rgb: list[int], inset: int) -> float:
    """The share of the picture's pixels (less an ``inset`` margin) whose colour is more than 12
    (summed over R, G, B) from ``rgb``: a roof drawn in one colour has none."""
    import base64

    return vp.page.evaluate(
        "async ([png, rgb, inset]) => {"
        + _DECODE_PNG_JS
        + """
          const { data, width, height } = await decode(png);
          let off = 0, n = 0;
          for (let y = inset; y < height - inset; y++) for (let x = inset; x < width - inset; x++) {
            const i = 4 * (y * width + x);
            n++;
            if (Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1]) + Math.abs(data[i + 2] - rgb[2]) > 12) off++;
          }
          return off / n;
        }""",
        [base64.b64encode(png).decode("ascii"), rgb, inset],
    )


def test_roof_renders_in_its_legend_colour(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    assert page.is_visible("#cityjson-panel")
    assert page.evaluate("document.querySelector('#cityjson-mode').value") == "plain"
    roof = largest_flat_roof()
    look_at_roof(viewer, roof)
    picked = page.evaluate(
        "() => { const c = window.cim.viewer.scene.canvas; return window.cim.pickAt(c.clientWidth / 2, c.clientHeight / 2); }"
    )
    assert picked is not None and picked["id"] == roof["id"], picked
    [plain] = region_colours(viewer, viewer.screenshot("cj-01-roof-plain"), grid=(1, 1), inset=280)

    page.select_option("#cityjson-mode", "surface")
    assert page.is_visible("#cityjson-legend")
    viewer.wait_ready()
    wait_frames(viewer)
    shot = viewer.screenshot("cj-02-roof-by-surface")
    [coloured] = region_colours(viewer, shot, grid=(1, 1), inset=280)
    legend = legend_swatch(viewer, "RoofSurface")
    # one colour, no speckle (a surface code read without rounding flickers to its neighbour's)
    assert share_off_colour(viewer, shot, legend, 280) < 0.002
    assert legend == [200, 85, 61]  # the swatch is the table's colour (#c8553d)
    de = float(delta_e76(coloured["mean"], legend))
    assert de <= SWATCH_MAX_DELTA_E, f"roof rendered {coloured['mean']} vs legend {legend} (ΔE76 {de:.1f}); plain {plain['mean']}"
    # the plain material is not the roof colour: the mode did change the picture
    assert float(delta_e76(plain["mean"], legend)) > 10
    # every surface type the layer has is in the legend, with its count
    layer = built_city.layer("cityjson")
    rows = page.eval_on_selector_all("#cityjson-legend .legend-row", "rows => rows.map(r => [r.dataset.surface, r.textContent])")
    assert [name for name, _ in rows] == [n for n, s in layer["surfaces"].items() if s["count"]]
    for name, text in rows:
        assert f"({layer['surfaces'][name]['count']})" in text


def test_click_shows_the_cityjson_attributes(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    roof = largest_flat_roof()
    look_at_roof(viewer, roof, range_m=40.0)
    click_canvas_centre(viewer)
    page.wait_for_function("() => window.cim.selection !== null", timeout=30_000, polling=100)
    page.wait_for_selector("#feature-body:not([hidden])", timeout=10_000)
    rows = panel_rows(viewer)
    assert rows["id"] == roof["id"] and rows["type"] == roof["type"] and rows["parent"] == (roof["parent"] or "")
    assert rows["lod"] == "2"
    for key, value in roof["attrs"].items():
        assert key in rows, f"panel lacks {key}: {rows}"
        if isinstance(value, str):
            assert rows[key] == value
        else:
            assert float(rows[key]) == pytest.approx(value, abs=1e-9)
    assert page.text_content("#feature-layer") == built_city.layer("cityjson")["title"]


# Reddish pixels (a roof's colour, lit or shaded) with fewer than 3 reddish neighbours: specks.
_SPECKS_JS = (
    "async (png) => {"
    + _DECODE_PNG_JS
    + """
  const { data, width, height } = await decode(png);
  const red = (i) => data[i] - data[i + 1] > 60;
  let specks = 0, total = 0;
  for (let y = 1; y < height - 1; y++) for (let x = 1; x < width - 1; x++) {
    if (!red(4 * (y * width + x))) continue;
    total++;
    let k = 0;
    for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) if ((dx || dy) && red(4 * ((y + dy) * width + x + dx))) k++;
    if (k < 3) specks++;
  }
  return { specks, total };
}"""
)


def test_walls_are_one_colour_seen_obliquely(viewer: ViewerPage) -> None:
    """Seen from the side, the walls under the roof show no roof-coloured specks: the surface
    code reaches each fragment interpolated, and read without rounding it flickers to the code
    below it (walls to roofs) on thousands of pixels."""
    import base64

    page = viewer.page
    roof = largest_flat_roof()
    page.evaluate("() => { window.cim.viewer.scene.globe.show = false; }")
    page.evaluate("window.cim.cityjson.setMode('surface')")
    page.evaluate(
        """([lon, lat, h]) => {
            const camera = window.cim.viewer.camera;
            const target = Cesium.Cartesian3.fromDegrees(lon, lat, h - 6);
            camera.lookAt(target, new Cesium.HeadingPitchRange(Cesium.Math.toRadians(30), Cesium.Math.toRadians(-20), 45));
            camera.lookAtTransform(Cesium.Matrix4.IDENTITY);
            window.cim.cityViewer.unsettle();
        }""",
        [roof["lon"], roof["lat"], roof["z"]],
    )
    viewer.wait_ready()
    wait_frames(viewer)
    shot = viewer.screenshot("cj-03-oblique-by-surface")
    found = page.evaluate(_SPECKS_JS, base64.b64encode(shot).decode("ascii"))
    assert found["total"] > 1000, f"the roofs hardly show: {found}"
    assert found["specks"] < 20, f"roof-coloured specks on the walls: {found}"


def test_the_legend_hides_a_surface_type(viewer: ViewerPage) -> None:
    """Unticking RoofSurface in the legend shows what is under the roofs; ticking it brings
    the roof back in its colour."""
    page = viewer.page
    roof = largest_flat_roof()
    look_at_roof(viewer, roof)
    page.select_option("#cityjson-mode", "surface")
    viewer.wait_ready()
    legend = legend_swatch(viewer, "RoofSurface")
    box = page.locator('#cityjson-legend [data-surface="RoofSurface"] input')
    box.uncheck()
    viewer.wait_ready()
    wait_frames(viewer)
    assert share_off_colour(viewer, viewer.screenshot("cj-04-roofs-hidden"), legend, 280) > 0.9
    box.check()
    viewer.wait_ready()
    wait_frames(viewer)
    assert share_off_colour(viewer, viewer.screenshot("cj-05-roofs-shown"), legend, 280) < 0.002
