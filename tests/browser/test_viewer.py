"""End-to-end: the CesiumJS viewer, served by `python -m cim.server`, on the tiny sample city.

Every test gets the viewer in its initial state (the `viewer` fixture: one page per module,
reset between tests) and leaves nothing requested outside the server and no error logged.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest

from .helpers import (
    READY_TIMEOUT_MS,
    BuiltCity,
    ViewerPage,
    click_canvas_centre,
    image_stats,
    open_viewer,
    panel_rows,
    run_server,
    tallest_building,
    wait_frames,
)

pytestmark = pytest.mark.browser


def assert_shown(key: str, shown: str, expected: object) -> None:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        assert shown == "", f"{key}: expected empty, panel shows {shown!r}"
    elif isinstance(expected, bool):
        # yes/no in the language shown
        assert shown.lower() in (("true", "yes", "是") if expected else ("false", "no", "否")), f"{key}: {shown!r} != {expected!r}"
    elif isinstance(expected, int):
        assert int(shown) == expected, f"{key}: {shown!r} != {expected!r}"
    elif isinstance(expected, float):
        assert float(shown) == pytest.approx(expected, rel=1e-6, abs=1e-3), f"{key}: {shown!r} != {expected!r}"
    else:
        assert shown == str(expected), f"{key}: {shown!r} != {expected!r}"


# --------------------------------------------------------------------------- tests


def test_viewer_loads_every_layer_and_renders(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    tiles_layers = [l["id"] for l in built_city.city["layers"] if l["kind"] in ("buildings", "bim", "pointcloud", "mesh", "cityjson")]
    assert tiles_layers, "the sample city has no 3D Tiles layer"
    assert sorted(page.evaluate("Object.keys(window.cim.layers)")) == sorted(tiles_layers)
    assert page.evaluate("window.cim.ready") is True
    # the layer tree lists every layer once, grouped by CIM level (city.json order within a group)
    listed = page.eval_on_selector_all("#layer-tree li[data-layer]", "lis => lis.map(li => [li.dataset.layer, Number(li.dataset.level)])")
    assert sorted(i for i, _ in listed) == sorted(l["id"] for l in built_city.city["layers"])
    group = {1: 0, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3}
    assert [group[level] for _, level in listed] == sorted(group[level] for _, level in listed)
    assert page.text_content("#city-name") == built_city.city.get("title", built_city.city["name"])

    stats = image_stats(viewer, viewer.screenshot("01-home"))
    assert stats["width"] > 600 and stats["height"] > 400
    assert stats["distinct"] > 100, f"the canvas looks blank: {stats}"


def test_layer_checkbox_hides_and_shows_buildings(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    layer_id = built_city.layer("buildings")["id"]
    box = page.locator(f"#layer-{layer_id}")
    shown = viewer.screenshot("02-buildings-on")
    box.uncheck()
    assert page.evaluate(f"window.cim.layers[{json.dumps(layer_id)}].show") is False
    wait_frames(viewer)
    hidden = viewer.screenshot("03-buildings-off")
    box.check()
    assert page.evaluate(f"window.cim.layers[{json.dumps(layer_id)}].show") is True
    viewer.wait_ready()

    stats = image_stats(viewer, shown, hidden)
    # The buildings must account for a visible share of the picture.
    assert stats["diff"] > 0.003, f"hiding the buildings changed almost nothing: {stats}"


def test_click_tallest_building_shows_its_attributes(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    target = tallest_building(built_city)
    layer = built_city.layer("buildings")
    roof = layer.get("bounds", built_city.city["bounds"])["max_height"]

    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 250)", [target["lon"], target["lat"], roof])
    viewer.wait_ready()
    before = viewer.screenshot("04-tallest-before-click")

    click_canvas_centre(viewer)
    page.wait_for_function("() => window.cim.selection !== null", timeout=30_000, polling=100)
    page.wait_for_selector("#feature-body:not([hidden])", timeout=10_000)
    wait_frames(viewer)
    after = viewer.screenshot("05-tallest-selected")

    assert page.text_content("#feature-layer") == layer["title"]
    rows = panel_rows(viewer)
    expected = target["attrs"]
    missing = sorted(set(expected) - set(rows))
    assert not missing, f"panel lacks source attributes {missing}; rows: {rows}"
    for key, value in expected.items():
        assert_shown(key, rows[key], value)
    id_prop = layer.get("id_property", "id")
    assert page.evaluate("window.cim.selection")[id_prop] == expected[id_prop]

    # pickAt gives the same feature, without selecting.
    size = page.evaluate("[window.cim.viewer.scene.canvas.clientWidth, window.cim.viewer.scene.canvas.clientHeight]")
    picked = page.evaluate("([x, y]) => window.cim.pickAt(x, y)", [size[0] / 2, size[1] / 2])
    assert picked is not None and picked[id_prop] == expected[id_prop]

    # The selected building is highlighted: the picture around the centre changed.
    stats = image_stats(viewer, after, before)
    assert stats["diff"] > 0.001, f"selection did not change the picture: {stats}"


def test_click_on_empty_ground_clears_the_selection(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    target = tallest_building(built_city)
    roof = built_city.city["bounds"]["max_height"]
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 250)", [target["lon"], target["lat"], roof])
    viewer.wait_ready()
    click_canvas_centre(viewer)
    page.wait_for_function("() => window.cim.selection !== null", timeout=30_000, polling=100)

    b = built_city.city["bounds"]
    # About 2 km west of the city: nothing but the globe under the camera.
    page.evaluate(
        "([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 300)",
        [b["west"] - 0.02, (b["south"] + b["north"]) / 2, b["min_height"]],
    )
    viewer.wait_ready()
    click_canvas_centre(viewer)
    page.wait_for_function("() => window.cim.selection === null", timeout=30_000, polling=100)
    assert page.is_hidden("#feature-body")
    assert page.eval_on_selector_all("#feature-props tr", "rows => rows.length") == 0
    page.evaluate("window.cim.flyHome(0)")
    viewer.wait_ready()
    viewer.screenshot("06-home-again")


def test_unknown_kind_is_skipped_and_broken_layer_is_reported(browser: object, city_copy, tmp_path, built_city: BuiltCity) -> None:
    city_json = city_copy / "city.json"
    city = json.loads(city_json.read_text())
    city["layers"].append({"id": "future", "kind": "hologram", "title": "Not yet", "url": "future/"})
    city["layers"].append({"id": "missing", "kind": "bim", "title": "Missing BIM", "format": "3dtiles", "url": "missing/tileset.json"})
    city_json.write_text(json.dumps(city))

    with run_server(city_copy, tmp_path) as srv:
        vp = open_viewer(browser, srv.base_url, tmp_path)
        try:
            page = vp.page
            page.wait_for_function("() => window.cim && window.cim.ready", timeout=READY_TIMEOUT_MS, polling=100)
            errors = page.evaluate("window.cim.errors")
            assert len(errors) == 1 and "Missing BIM" in errors[0], errors
            assert "Missing BIM" in page.text_content("#messages")
            assert page.is_visible("#messages .message")
            assert built_city.layer("buildings")["id"] in page.evaluate("Object.keys(window.cim.layers)")
            assert "missing" not in page.evaluate("Object.keys(window.cim.layers)")
            assert any("hologram" in w for w in vp.log.console_warnings), vp.log.console_warnings
            assert not any("hologram" in e for e in vp.log.console_errors)
            assert vp.log.page_errors == []
            assert vp.log.outside(srv.base_url) == []
            vp.screenshot("07-broken-layer")
        finally:
            page.close()


def test_search_box_finds_a_building_and_selects_it(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    if not built_city.city.get("search"):
        pytest.skip("this city was built without a search index")
    target = tallest_building(built_city)
    attrs = target["attrs"]
    page.fill("#search-input", str(attrs["id"]))
    hit = page.locator(f'#search-results button.search-hit[data-id="{attrs["id"]}"]')
    hit.wait_for(timeout=30_000)
    assert attrs["name"] in hit.text_content()
    hit.click()
    page.wait_for_function(
        "(id) => window.cim.selection && String(window.cim.selection.id) === id", arg=str(attrs["id"]), timeout=60_000, polling=100
    )
    rows = panel_rows(viewer)
    for key, value in attrs.items():
        assert_shown(key, rows[key], value)
    viewer.screenshot("08-search-result")


def test_shadows_follow_the_sun(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    page.evaluate("window.cim.setSun('2024-12-21', 9, false)")
    viewer.wait_ready()
    plain = viewer.screenshot("09-winter-9h-no-shadows")
    page.check("#sun-shadows")
    assert page.evaluate("window.cim.viewer.shadows") is True
    viewer.wait_ready()
    wait_frames(viewer)
    shaded = viewer.screenshot("10-winter-9h-shadows")
    assert "09:00" in page.text_content("#sun-time-label")
    stats = image_stats(viewer, shaded, plain)
    # low winter sun: buildings cast long shadows over the ground and each other
    assert stats["diff"] > 0.01, f"turning shadows on changed almost nothing: {stats}"


def test_measure_a_building_roof_edge(viewer: ViewerPage, built_city: BuiltCity) -> None:
    """Measure between two roof corners of the tallest building: the measured length is the
    footprint edge's length from the source (pickPosition, geodesics and frames all agree)."""
    import pyogrio.raw
    import shapely
    from pyproj import Transformer

    page = viewer.page
    target = tallest_building(built_city)
    meta, _, geometry, fields = pyogrio.raw.read(built_city.gpkg)
    ids = [str(v) for v in fields[list(meta["fields"]).index("id")]]
    shape = shapely.from_wkb(geometry[ids.index(str(target["attrs"]["id"]))])
    ring = list(shape.exterior.coords) if shape.geom_type == "Polygon" else list(shape.geoms[0].exterior.coords)
    # the longest edge, measured 1 m inside the roof from each corner (so the pick hits the roof)
    edges = sorted(((shapely.Point(a).distance(shapely.Point(b)), a, b) for a, b in itertools.pairwise(ring)), reverse=True)
    _, a, b = edges[0]
    centre = shape.centroid
    inset = [
        (
            p[0] + (centre.x - p[0]) * 1.0 / max(shapely.Point(p).distance(centre), 1e-9),
            p[1] + (centre.y - p[1]) * 1.0 / max(shapely.Point(p).distance(centre), 1e-9),
        )
        for p in (a, b)
    ]
    to_ll = Transformer.from_crs(meta["crs"], "EPSG:4326", always_xy=True)
    (lon1, lat1), (lon2, lat2) = (to_ll.transform(*p) for p in inset)
    base = built_city.layer("buildings")["bounds"]["max_height"]
    roof = float(base)  # the tallest building's roof is the layer's highest point
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 200)", [target["lon"], target["lat"], roof])
    viewer.wait_ready()
    pixels = page.evaluate(
        """([pts]) => pts.map(([lon, lat, h]) => {
            const w = Cesium.SceneTransforms.worldToWindowCoordinates(window.cim.viewer.scene, Cesium.Cartesian3.fromDegrees(lon, lat, h));
            return [w.x, w.y];
        })""",
        [[[lon1, lat1, roof], [lon2, lat2, roof]]],
    )
    m = page.evaluate("([p, q]) => window.cim.measure(p[0], p[1], q[0], q[1])", pixels)
    assert m is not None, "the measure tool hit nothing"
    expected = shapely.Point(inset[0]).distance(shapely.Point(inset[1]))
    assert m["horizontal"] == pytest.approx(expected, abs=0.5), (m, expected)
    assert abs(m["vertical"]) < 0.5
    wait_frames(viewer)
    assert f"{m['distance']:.2f}" in page.text_content("#measure-result").replace(",", "")
    viewer.screenshot("11-measure")


def test_buildings_stand_on_the_rendered_terrain(viewer: ViewerPage, built_city: BuiltCity) -> None:
    """Sample CesiumJS's terrain (most detailed level) at the corners of buildings: no base is
    above the ground (floating), none sunk more than the finest level's error + 0.5 m."""
    import pyogrio.raw
    import shapely
    from pyproj import Transformer

    page = viewer.page
    terrain = next((l for l in built_city.city["layers"] if l["kind"] == "terrain"), None)
    if terrain is None:
        pytest.skip("this city has no terrain layer")
    assert page.evaluate("window.cim.viewer.terrainProvider instanceof Cesium.CesiumTerrainProvider")
    finest = terrain["max_error"][str(terrain["maxzoom"])]
    meta, _, geometry, fields = pyogrio.raw.read(built_city.gpkg)
    ids = [str(v) for v in fields[list(meta["fields"]).index("id")]]
    to_ll = Transformer.from_crs(meta["crs"], "EPSG:4326", always_xy=True)
    geoms = shapely.from_wkb(geometry)
    picks = list(range(0, len(ids), max(1, len(ids) // 12)))[:12]
    checked = 0
    for i in picks:
        hit = page.evaluate(
            "async (id) => (await (await fetch('/api/search?q=' + encodeURIComponent(id) + '&limit=50')).json()).results.find(r => r.id === id)",
            ids[i],
        )
        if hit is None:  # replaced by a BIM model, say
            continue
        corners = shapely.get_coordinates(geoms[i])
        lonlat = [list(to_ll.transform(x, y)) for x, y in corners]
        heights = page.evaluate(
            """async (pts) => {
                const carto = pts.map(([lon, lat]) => Cesium.Cartographic.fromDegrees(lon, lat));
                const done = await Cesium.sampleTerrainMostDetailed(window.cim.viewer.terrainProvider, carto);
                return done.map(c => c.height);
            }""",
            lonlat,
        )
        assert all(h is not None for h in heights)
        base = hit["base"]
        assert base <= min(heights) + 0.02, f"{ids[i]} floats: base {base:.2f} above terrain {min(heights):.2f}"
        assert base >= min(heights) - (finest + 0.5), f"{ids[i]} sunk: base {base:.2f}, terrain {min(heights):.2f}"
        checked += 1
    assert checked >= 6


def test_imagery_and_terrain_are_listed_and_imagery_toggles(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    kinds = {l["kind"]: l["id"] for l in built_city.city["layers"]}
    if "imagery" not in kinds or "terrain" not in kinds:
        pytest.skip("this city lacks imagery or terrain")
    listed = page.eval_on_selector_all("#layer-tree li[data-layer]", "lis => lis.map(li => li.dataset.layer)")
    assert kinds["imagery"] in listed and kinds["terrain"] in listed
    with_imagery = viewer.screenshot("12-imagery-on")
    box = page.locator(f"#layer-{kinds['imagery']}")
    box.uncheck()
    assert page.evaluate("window.cim.viewer.imageryLayers.get(0).show") is False
    viewer.wait_ready()
    wait_frames(viewer)
    without = viewer.screenshot("13-imagery-off")
    box.check()
    viewer.wait_ready()
    stats = image_stats(viewer, with_imagery, without)
    assert stats["diff"] > 0.01, f"hiding the orthophoto changed almost nothing: {stats}"


def test_bim_element_pick_filter_and_cut(viewer: ViewerPage, built_city: BuiltCity) -> None:
    import shapely
    from pyproj import Transformer

    page = viewer.page
    bim = next((l for l in built_city.city["layers"] if l["kind"] == "bim"), None)
    if bim is None:
        pytest.skip("this city has no BIM layer")
    assert page.is_visible("#bim-panel")
    fp = bim["footprints"][0]
    centre = shapely.from_wkt(fp["wkt"]).centroid
    lon, lat = Transformer.from_crs(fp["crs"], "EPSG:4326", always_xy=True).transform(centre.x, centre.y)
    top = bim["bounds"]["max_height"]
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 40)", [lon, lat, top])
    viewer.wait_ready()
    before = viewer.screenshot("14-bim-top")
    click_canvas_centre(viewer)
    page.wait_for_function("() => window.cim.selection !== null", timeout=30_000, polling=100)
    picked = page.evaluate("window.cim.selection")
    assert picked["GlobalId"] and picked["IfcClass"].startswith("Ifc"), picked
    assert page.text_content("#feature-layer") == bim["title"]
    rows = panel_rows(viewer)
    assert rows["IfcClass"] == picked["IfcClass"] and rows["GlobalId"] == picked["GlobalId"]

    # hide the picked element's class: the same pixel now shows something else (or nothing)
    page.evaluate("(c) => window.cim.bim.setClassVisible(c, false)", picked["IfcClass"])
    page.evaluate("window.cim.clearSelection()")
    viewer.wait_ready()
    wait_frames(viewer)
    size = page.evaluate("[window.cim.viewer.scene.canvas.clientWidth, window.cim.viewer.scene.canvas.clientHeight]")
    under = page.evaluate("([x, y]) => window.cim.pickAt(x, y)", [size[0] / 2, size[1] / 2])
    assert under is None or under.get("IfcClass") != picked["IfcClass"], under
    filtered = viewer.screenshot("15-bim-class-hidden")
    page.evaluate("(c) => window.cim.bim.setClassVisible(c, true)", picked["IfcClass"])

    # a horizontal cut just above the ground removes the upper storeys from view
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 120)", [lon, lat, top])
    viewer.wait_ready()
    whole = viewer.screenshot("16-bim-whole")
    page.evaluate("(h) => window.cim.bim.setCut(true, h)", bim["bounds"]["min_height"] + 2.0)
    viewer.wait_ready()
    wait_frames(viewer)
    cut = viewer.screenshot("17-bim-cut")
    cut_at = page.evaluate("window.cim.bim.cutState().value")
    assert f"{cut_at:.1f}" in page.text_content("#bim-cut-label").replace(",", "")  # grouped for the language
    assert image_stats(viewer, filtered, before)["diff"] > 0.001
    assert image_stats(viewer, cut, whole)["diff"] > 0.002, "the cut changed nothing"


def test_point_cloud_renders_upright_in_colour(viewer: ViewerPage, built_city: BuiltCity) -> None:
    """Only the lidar shown, globe hidden: positions picked on a grid of screen points lie
    within the source's height range (a cloud stored z-up in its GLBs would stand as a wall),
    and the picture is not one colour (COLOR_0 must be normalized)."""
    page = viewer.page
    lidar = next((l for l in built_city.city["layers"] if l["kind"] == "pointcloud"), None)
    if lidar is None:
        pytest.skip("this city has no point-cloud layer")
    others = [l["id"] for l in built_city.city["layers"] if l["id"] != lidar["id"]]
    assert lidar.get("visible") is False and page.evaluate(f"window.cim.layers[{json.dumps(lidar['id'])}].show") is False
    # the point-cloud panel (and its legend) only while a point layer is shown
    assert page.is_hidden("#points-panel")
    page.locator(f"#layer-{lidar['id']}").check()
    assert page.is_visible("#points-panel")
    for lid in others:
        page.locator(f"#layer-{lid}").uncheck()
    page.evaluate("window.cim.viewer.scene.globe.show = false")
    page.uncheck("#points-edl")  # eye-dome lighting costs several seconds a frame under SwiftShader
    page.evaluate("window.cim.points.setSize(3)")
    b = lidar["bounds"]
    lon, lat = (b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 600)", [lon, lat, b["max_height"]])
    viewer.wait_ready()
    shot = viewer.screenshot("18-lidar-rgb")
    heights = page.evaluate(
        """() => {
            const scene = window.cim.viewer.scene;
            const w = scene.canvas.clientWidth, h = scene.canvas.clientHeight;
            const out = [];
            // each pickPosition renders a depth pass (seconds under SwiftShader): a 4 x 3 grid
            for (let i = 1; i < 5; i++) for (let j = 1; j < 4; j++) {
                const p = scene.pickPosition(new Cesium.Cartesian2(w * i / 5, h * j / 4));
                if (p) out.push(Cesium.Cartographic.fromCartesian(p).height);
            }
            return out;
        }"""
    )
    assert len(heights) >= 5, f"only {len(heights)} of 12 screen points hit the cloud"
    lo, hi = b["min_height"] - 1.0, b["max_height"] + 1.0
    outside = [h for h in heights if not lo <= h <= hi]
    assert not outside, f"picked heights outside {lo:.1f}..{hi:.1f}: {outside[:5]}"
    stats = image_stats(viewer, shot)
    assert stats["distinct"] > 200, f"the cloud renders in too few colours: {stats}"
    # colour by classification and hide the ground class: the picture changes
    page.evaluate("window.cim.points.setMode('classification')")
    wait_frames(viewer, 2)
    by_class = viewer.screenshot("19-lidar-classes")
    assert page.is_visible("#points-legend")
    page.evaluate("window.cim.points.setClassVisible(2, false)")
    wait_frames(viewer, 2)
    no_ground = viewer.screenshot("20-lidar-no-ground")
    assert image_stats(viewer, by_class, shot)["diff"] > 0.01
    assert image_stats(viewer, no_ground, by_class)["diff"] > 0.01


def test_nothing_left_the_server_and_nothing_failed(viewer: ViewerPage) -> None:
    """The page's whole log (the fixture checks the same after every test)."""
    log = viewer.log
    assert any(u.endswith("/cesium/Cesium.js") for u in log.requests)
    assert any("/city/city.json" in u for u in log.requests)
    assert any(u.split("?")[0].endswith(".glb") for u in log.requests), "no GLB was requested"
    assert log.outside(viewer.base_url) == []
    assert log.console_errors == []
    assert log.page_errors == []
    assert viewer.page.evaluate("window.cim.errors") == []
