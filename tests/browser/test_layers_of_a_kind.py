"""The BIM and point-cloud tools act on every layer of their kind, not only the first.

The city of this module lists the tiny sample's BIM models as two BIM layers (one IFC each) and
its lidar survey as two point-cloud layers (its LAZ tiles split in two), and nothing else.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from .helpers import (
    BuiltCity,
    Server,
    ViewerPage,
    build_city,
    click_canvas_centre,
    image_stats,
    pick_canvas_centre,
    run_server,
    wait_frames,
)

pytestmark = pytest.mark.browser

RECIPE = """\
[city]
name = "twins"
title = "Two BIM and two point-cloud layers"
crs = "EPSG:4544"
"""


@pytest.fixture(scope="module")
def built_city(browser_prereqs: None, tmp_path_factory: pytest.TempPathFactory) -> BuiltCity:
    """Overrides the session's city for this module: two layers of each kind."""
    import cim

    if not hasattr(cim, "sample"):
        pytest.skip("cim.sample is not available yet")
    src = tmp_path_factory.mktemp("twin-city") / "src"
    cim.sample("tiny", src)
    data = src / "data"
    # the model with fewer storeys first: its storeys alone are not the panel's list
    ifcs = sorted((data / "bim").glob("*.ifc"), key=lambda p: "centre" not in p.name)
    lazs = sorted((data / "lidar").glob("*.la[sz]"))
    assert len(ifcs) >= 2 and len(lazs) >= 2, (ifcs, lazs)
    parts = {"bim-a": ifcs[:1], "bim-b": ifcs[1:], "lidar-a": lazs[: len(lazs) // 2], "lidar-b": lazs[len(lazs) // 2 :]}
    recipe = [RECIPE]
    for layer_id, files in parts.items():
        folder = data / layer_id
        folder.mkdir()
        for f in files:
            shutil.move(f, folder / f.name)
        kind = "bim" if layer_id.startswith("bim") else "pointcloud"
        # point clouds open hidden, as in the sample: eye-dome lighting is slow under SwiftShader
        visible = "" if kind == "bim" else "visible = false\n"
        recipe.append(f'\n[[layers]]\nid = "{layer_id}"\nkind = "{kind}"\nsource = "data/{layer_id}"\n{visible}')
    (src / "city.toml").write_text("".join(recipe))
    return build_city(src / "city.toml", src.parent / "tiles")


@pytest.fixture(scope="module")
def server(built_city: BuiltCity, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(built_city.tiles_dir, tmp_path_factory.mktemp("twin-server")) as srv:
        yield srv


def look_down_at_model(vp: ViewerPage, layer: dict, range_m: float = 40.0) -> None:
    """Camera straight above the centre of the layer's (only) model footprint."""
    import shapely
    from pyproj import Transformer

    fp = layer["footprints"][0]
    centre = shapely.from_wkt(fp["wkt"]).centroid
    lon, lat = Transformer.from_crs(fp["crs"], "EPSG:4326", always_xy=True).transform(centre.x, centre.y)
    vp.page.evaluate("([lon, lat, h, r]) => window.cim.lookAt(lon, lat, h, r)", [lon, lat, layer["bounds"]["max_height"], range_m])
    vp.wait_ready()


def test_bim_panel_merges_and_filters_every_bim_layer(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    bims = built_city.layers("bim")
    assert [b["id"] for b in bims] == ["bim-a", "bim-b"]
    chips = page.eval_on_selector_all("#bim-classes input", "xs => xs.map(x => x.dataset.ifcClass)")
    assert chips == sorted(set(bims[0]["classes"]) | set(bims[1]["classes"]))
    storeys = page.eval_on_selector_all("#bim-storey option", "os => os.filter(o => o.value).map(o => o.textContent)")
    assert set(storeys) == set(bims[0]["storey_names"]) | set(bims[1]["storey_names"])
    assert set(storeys) > set(bims[0]["storey_names"]), "the second layer adds no storey: a weak check"

    # the first layer is the one a first-layer-only tool would filter: hide the class of the
    # element on top of the second model, and that model shows it no more
    look_down_at_model(viewer, bims[1])
    click_canvas_centre(viewer)
    page.wait_for_function("() => window.cim.selection !== null", timeout=30_000, polling=100)
    assert page.evaluate("window.cim.cityViewer.selection.layerId") == "bim-b"
    hidden = page.evaluate("window.cim.selection")["IfcClass"]
    assert page.evaluate("(c) => window.cim.bim.setClassVisible(c, false)", hidden) is True
    viewer.wait_ready()
    wait_frames(viewer)
    under = pick_canvas_centre(viewer)
    assert under is None or under["IfcClass"] != hidden, under
    shows = page.evaluate(
        "(ids) => ids.map(id => window.cim.layers[id].style && window.cim.layers[id].style.show.expression)",
        ["bim-a", "bim-b"],
    )
    assert all(s and hidden in s for s in shows), shows

    # one cut for both models
    page.evaluate("(h) => window.cim.bim.setCut(true, h)", min(b["bounds"]["min_height"] for b in bims) + 2.0)
    assert page.evaluate("['bim-a', 'bim-b'].map(id => window.cim.layers[id].clippingPlanes.enabled)") == [True, True]


def test_point_panel_styles_every_point_layer(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    clouds = built_city.layers("pointcloud")
    ids = [c["id"] for c in clouds]
    assert ids == ["lidar-a", "lidar-b"]
    legend = page.eval_on_selector_all("#points-legend input", "xs => xs.map(x => Number(x.dataset.class))")
    assert legend == sorted({int(c) for layer in clouds for c in layer["classes"]})

    uniforms = """(ids) => ids.map(id => {
        const u = window.cim.layers[id].customShader.uniforms;
        return [u.u_mode.value, u.u_hidden.value, u.u_size.value];
    })"""
    assert page.evaluate("(ids) => ids.map(id => window.cim.layers[id].show)", ids) == [False, False]
    # the second layer alone (the panel shows only while a point layer does)
    page.locator("#layer-lidar-b").check()
    page.uncheck("#points-edl")  # eye-dome lighting costs several seconds a frame under SwiftShader
    page.evaluate("window.cim.points.setSize(3)")
    assert page.evaluate(uniforms, ids) == [[0, 0, 3]] * 2
    assert page.evaluate("(ids) => ids.map(id => window.cim.layers[id].pointCloudShading.eyeDomeLighting)", ids) == [False] * 2

    # from above: colouring by classification changes its picture
    page.evaluate("window.cim.viewer.scene.globe.show = false")
    b = clouds[1]["bounds"]
    page.evaluate(
        "([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 400)",
        [(b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2, b["max_height"]],
    )
    viewer.wait_ready()
    rgb = viewer.screenshot("twin-lidar-b-rgb")
    page.evaluate("window.cim.points.setMode('classification')")
    page.evaluate("window.cim.points.setClassVisible(2, false)")
    wait_frames(viewer, 2)
    by_class = viewer.screenshot("twin-lidar-b-classes")
    assert page.evaluate(uniforms, ids) == [[1, 4, 3]] * 2
    assert image_stats(viewer, by_class, rgb)["diff"] > 0.01, "the second point layer kept its colours"
