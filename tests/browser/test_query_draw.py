"""Spatial queries drawn with the mouse in the query panel (issue 13): a box, a polygon, a circle
(its centre, then a point on its edge) and a planned road (a line with a buffer).

Each drawing is read back from the page (the filters the panel sent, and the share link), and the
test checks that the listed results are what ``/api/query`` returns for that geometry, that the
same set follows from the source footprints with shapely, that exactly the results are coloured
in the scene, and that the statistics panel shows the count, footprint area and floor area
computed from the source file. A result row flies over its feature and selects it.

One page for the module (the ``viewer`` fixture); the camera looks straight down at the city.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import numpy as np
import pytest

from .helpers import BuiltCity, Server, ViewerPage, panel_rows, tallest_building

pytestmark = pytest.mark.browser

RESULT_CSS = "#4fc3f7"  # the results' colour in the scene (js/city-viewer.js RESULT)
# Canvas positions (fractions of its width and height) of each drawing's clicks.
CLICKS = {
    "box": [(0.30, 0.30), (0.62, 0.58)],
    "polygon": [(0.25, 0.55), (0.45, 0.25), (0.75, 0.40), (0.62, 0.72)],
    "radius": [(0.50, 0.50), (0.64, 0.50)],
    "line": [(0.20, 0.62), (0.50, 0.45), (0.80, 0.52)],
}
BUFFER_M = 15.0
# how close to a circle's or a road buffer's edge a footprint may lie and count either way (m):
# the source is compared in its projected CRS (Gauss-Kruger, scale 1.00006 here), the API in a
# local plane on the ellipsoid
EDGE_M = 0.05


@pytest.fixture(scope="module")
def source(built_city: BuiltCity, server: Server) -> dict:
    """The source buildings: ids, floors, footprints in their CRS and in degrees."""
    if built_city.gpkg is None:
        pytest.skip("no source GeoPackage for this city (set CIM_BROWSER_GPKG)")
    import pyogrio
    import shapely
    from pyproj import CRS

    from cim.crs import to_lonlat

    meta, _, wkb, fields = pyogrio.raw.read(built_city.gpkg)
    cols = {name: np.asarray(values) for name, values in zip(meta["fields"], fields)}
    crs = CRS.from_user_input(meta["crs"])
    # the query store keeps every building, those a BIM model replaced in the scene too
    shown = {r["id"] for r in _api(server, {"layer": "buildings", "limit": 200})["results"]}
    assert shown == set(cols["id"].astype(str).tolist())
    geoms = shapely.from_wkb(wkb)

    def lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_lonlat(xy[:, 0], xy[:, 1], crs))

    return {
        "id": cols["id"].astype(str),
        "floors": cols["floors"].astype(float),
        "geoms": geoms,
        "lonlat": shapely.transform(geoms, lonlat),
        "crs": crs,
    }


def _api(server: Server, body: dict) -> dict:
    request = urllib.request.Request(
        f"{server.base_url}api/query", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _source_ids(source: dict, filters: dict) -> tuple[set[str], set[str]]:
    """The source buildings a drawn geometry selects: (surely, at most) — equal except for
    footprints within EDGE_M of a circle's or a buffer's edge."""
    import shapely

    from cim.crs import from_lonlat

    ids = source["id"]
    if "bbox" in filters:
        hit = shapely.intersects(source["lonlat"], shapely.box(*filters["bbox"]))
        return set(ids[hit]), set(ids[hit])
    if "polygon" in filters:
        hit = shapely.intersects(source["lonlat"], shapely.Polygon(np.reshape(filters["polygon"], (-1, 2))))
        return set(ids[hit]), set(ids[hit])
    if "point" in filters:
        lonlat, metres = np.reshape(filters["point"], (-1, 2)), float(filters["radius"])
        shape = shapely.Point(np.column_stack(from_lonlat(lonlat[:, 0], lonlat[:, 1], source["crs"]))[0])
    else:
        lonlat, metres = np.reshape(filters["line"], (-1, 2)), float(filters["buffer"])
        shape = shapely.LineString(np.column_stack(from_lonlat(lonlat[:, 0], lonlat[:, 1], source["crs"])))
    inner = shapely.dwithin(source["geoms"], shape, metres - EDGE_M)
    outer = shapely.dwithin(source["geoms"], shape, metres + EDGE_M)
    return set(ids[inner]), set(ids[outer])


def _draw(vp: ViewerPage, kind: str) -> dict:
    """Draw `kind` with mouse clicks on the canvas; the filters the panel will send."""
    page = vp.page
    page.click(f"#query-panel button[data-draw='{kind}']")
    assert page.evaluate("window.cim.viewer.scene.canvas.style.cursor") == "crosshair"
    rect = page.evaluate(
        "(() => { const r = window.cim.viewer.scene.canvas.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )
    for fx, fy in CLICKS[kind]:
        page.mouse.click(rect[0] + fx * rect[2], rect[1] + fy * rect[3])
    if kind in ("polygon", "line"):
        assert page.is_visible("#query-finish")
        page.click("#query-finish")
    # drawing is over: the cursor is back, the panel describes the area
    page.wait_for_function("() => window.cim.viewer.scene.canvas.style.cursor === ''", timeout=10_000, polling=100)
    filters = page.evaluate("window.cim.query.filters()")
    assert filters.get("layer") == "buildings"
    return filters


def _coloured(vp: ViewerPage, layer: str) -> dict[str, list[str]]:
    """Ids of the layer's loaded features: all, and those drawn in the results' colour."""
    return vp.page.evaluate(
        """([layer, css]) => { const t = window.cim.layers[layer]; const all = new Set(), marked = new Set();
            const stack = [t.root];
            while (stack.length) { const tile = stack.pop(); stack.push(...tile.children);
              const c = tile.content; if (!tile.contentReady || !c) continue;
              for (let i = 0; i < c.featuresLength; i++) { const f = c.getFeature(i); const id = String(f.getProperty('id'));
                all.add(id); if (f.color.toCssHexString() === css) marked.add(id); } }
            return { all: [...all], marked: [...marked] }; }""",
        [layer, RESULT_CSS],
    )


def test_drawn_areas_list_highlight_and_count_what_the_api_and_the_source_give(
    viewer: ViewerPage, server: Server, built_city: BuiltCity, source: dict
) -> None:
    """The four kinds one after the other on one view (a reset costs seconds); then a row."""
    page = viewer.page
    buildings = built_city.layer("buildings")
    b = buildings["bounds"]
    page.evaluate(
        "([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 420)",
        [(b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2, b["min_height"]],
    )
    viewer.wait_ready()
    page.select_option("#query-layer", buildings["id"])
    page.fill("#query-buffer", str(BUFFER_M))
    for kind in ("box", "polygon", "radius", "line"):
        expected = _check_drawn_query(viewer, server, buildings["id"], source, kind)

    # a row flies over its feature (a point inside the footprint) and selects it by id
    n = len(expected["results"]) - 1
    last = expected["results"][n]
    page.click(f"#query-results button.search-hit >> nth={n}")
    page.wait_for_function("(id) => window.cim.selection && String(window.cim.selection.id) === id", arg=str(last["id"]), timeout=60_000)
    viewer.wait_ready()
    camera = page.evaluate(
        "(() => { const c = window.cim.viewer.camera.positionCartographic; return [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude), c.height]; })()"
    )
    assert camera[:2] == pytest.approx(last["anchor"], abs=1e-7)
    assert camera[2] == pytest.approx(last["top"] + 150, abs=1.0)
    assert page.evaluate("window.cim.cityViewer.selection.feature !== null"), "the selected result is not highlighted"
    picked = page.evaluate(
        "() => { const c = window.cim.viewer.scene.canvas; return window.cim.pickAt(c.clientWidth / 2, c.clientHeight / 2); }"
    )
    assert picked is not None and str(picked["id"]) == str(last["id"]), "the view is not centred over the feature"


def _check_drawn_query(vp: ViewerPage, server: Server, layer: str, source: dict, kind: str) -> dict:
    """Draw `kind`, run the query and the statistics through the panel, check them; the API's page."""
    import shapely

    page = vp.page
    filters = _draw(vp, kind)
    key = {"box": "bbox", "polygon": "polygon", "radius": "point", "line": "line"}[kind]
    assert len(filters[key]) == {"box": 4, "polygon": 8, "radius": 2, "line": 6}[kind], filters
    if kind == "radius":  # the edge click set the radius: its distance from the centre
        assert filters["radius"] == float(page.input_value("#query-radius")) and 30 < filters["radius"] < 200
    if kind == "line":
        assert filters["buffer"] == BUFFER_M

    page.evaluate("document.querySelector('#query-summary').textContent = ''")
    page.click("#query-run")
    page.wait_for_function("() => document.querySelector('#query-summary').textContent !== ''", timeout=60_000, polling=100)
    expected = _api(server, {**filters, "limit": 200})
    listed = page.eval_on_selector_all("#query-results button.search-hit", "bs => bs.map(b => [b.dataset.layer, b.dataset.id])")
    assert listed == [[r["layer"], str(r["id"])] for r in expected["results"]], kind
    got = {str(r["id"]) for r in expected["results"]}
    assert expected["total"] == len(got) and 0 < len(got) < len(source["id"]), (kind, expected["total"])
    # the same geometry in the share link (its numbers rounded to 1e-7 degree)
    page.evaluate("window.cim.share.update()")
    shared = urllib.parse.parse_qs(page.evaluate("window.cim.share.decode(location.hash).panel"))
    assert np.allclose([float(v) for v in shared[key][0].split(",")], filters[key], atol=1.5e-7), kind

    # the source footprints give the same set
    surely, at_most = _source_ids(source, filters)
    assert surely <= got <= at_most, (kind, sorted(got ^ surely))
    assert len(at_most - surely) <= 1, kind

    # exactly the results are coloured in the scene (in every loaded tile)
    scene = _coloured(vp, layer)
    assert set(scene["marked"]) == got & set(scene["all"]) and scene["marked"], kind

    # the statistics panel: count, footprint and floor area from the source file
    page.select_option("#stats-group", "")
    page.evaluate("document.querySelector('#stats-table').replaceChildren()")
    page.click("#stats-run")
    page.wait_for_selector("#stats-table tr[data-stat='count']", timeout=30_000)
    rows = np.isin(source["id"], list(got))
    area = shapely.area(source["geoms"][rows])
    want = {
        "count": float(rows.sum()),
        "footprint_area_m2": float(area.sum()),
        "floor_area_m2": float((area * source["floors"][rows]).sum()),
    }
    shown = dict(page.eval_on_selector_all("#stats-table tr", "rows => rows.map(r => [r.dataset.stat, r.querySelector('td').textContent])"))
    formatted = page.evaluate(
        "(want) => Object.fromEntries(Object.entries(want).map(([k, v]) => [k, new Intl.NumberFormat('zh-CN', { maximumFractionDigits: 1 }).format(v)]))",
        want,
    )
    assert shown == formatted, (kind, want)
    assert want["count"] == len(got) and want["floor_area_m2"] > want["footprint_area_m2"] > 0, kind
    return expected


def _get(server: Server, path: str) -> dict:
    with urllib.request.urlopen(f"{server.base_url}{path}", timeout=60) as response:
        return json.loads(response.read())


def test_the_attribute_panel_links_lidar_points_and_a_replaced_building(viewer: ViewerPage, server: Server, built_city: BuiltCity) -> None:
    """A building's lidar link (its count and heights as /api/features gives them) shows the
    hidden point cloud; a BIM element's building link selects the building its model replaced."""
    page = viewer.page
    buildings = built_city.layer("buildings")["id"]
    lidar = built_city.layer("pointcloud")["id"]
    target = tallest_building(built_city)
    fid = str(target["attrs"]["id"])
    points = _get(server, f"api/features/{buildings}/{fid}")["links"]["points"]
    assert points["count"] > 0
    page.evaluate("([lon, lat]) => window.cim.lookAt(lon, lat, 1100, 300)", [target["lon"], target["lat"]])
    viewer.wait_ready()
    assert page.evaluate(f"window.cim.cityViewer.layers.get('{lidar}').handle.show") is False
    page.evaluate("([layer, id]) => window.cim.cityViewer.selectById(layer, id)", [buildings, fid])
    link = page.locator("#feature-links button.feature-link", has_text="激光点云")
    link.wait_for(timeout=30_000)
    want = page.evaluate(
        """(p) => { const f = (v) => new Intl.NumberFormat('zh-CN', { maximumFractionDigits: 1 }).format(v);
            return `激光点云：${f(p.count)} 点，高度 P50 ${f(p.z_p50)} 米，P90 ${f(p.z_p90)} 米，最高 ${f(p.z_max)} 米`; }""",
        points,
    )
    assert link.text_content() == want
    link.click()
    page.wait_for_function(f"() => window.cim.cityViewer.layers.get('{lidar}').handle.show === true", timeout=10_000, polling=100)
    assert page.locator(f"#layer-{lidar}").is_checked()
    assert str(page.evaluate("window.cim.selection.id")) == fid  # still selected

    # a BIM element links the building its model replaced; the link selects it
    element = _get(server, "api/query?layer=bim&ifc_class=IfcDoor&limit=1")["results"][0]
    building = _get(server, f"api/features/{element['layer']}/{urllib.parse.quote(str(element['id']))}")["links"]["building"]
    assert building is not None and building["layer"] == buildings
    page.evaluate("([layer, id]) => window.cim.cityViewer.selectById(layer, id)", [element["layer"], str(element["id"])])
    back = page.locator("#feature-links button.feature-link", has_text=str(building["title"]))
    back.wait_for(timeout=30_000)
    back.click()
    page.wait_for_function(
        "(id) => window.cim.selection && String(window.cim.cityViewer.selection.id) === id",
        arg=str(building["id"]),
        timeout=60_000,
        polling=100,
    )
    assert page.evaluate("window.cim.cityViewer.selection.layerId") == buildings
    # and that building links its model back
    model = page.locator("#feature-links button.feature-link", has_text=str(element["properties"]["Model"]))
    model.wait_for(timeout=30_000)


def test_a_boolean_an_element_lacks_shows_nothing_in_the_panel(viewer: ViewerPage, server: Server, built_city: BuiltCity) -> None:
    """A door whose Pset_DoorCommon gives IsExternal but not HandicapAccessible: the first reads
    yes/no, the second shows nothing (its tile has the column, for other doors), not "否"."""
    page = viewer.page
    doors = _get(server, "api/query?layer=bim&ifc_class=IfcDoor&limit=200")["results"]
    lacking = [
        d for d in doors if "Pset_DoorCommon.IsExternal" in d["properties"] and "Pset_DoorCommon.HandicapAccessible" not in d["properties"]
    ]
    if not lacking:
        pytest.skip("this city has no door without HandicapAccessible")
    door = lacking[0]
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 60)", [door["lon"], door["lat"], door["top"]])
    viewer.wait_ready()
    page.evaluate("([layer, id]) => window.cim.cityViewer.selectById(layer, id)", [door["layer"], str(door["id"])])
    page.wait_for_function(
        "() => window.cim.cityViewer.selection && window.cim.cityViewer.selection.feature !== null", timeout=60_000, polling=100
    )
    ids = page.evaluate("window.cim.cityViewer.selection.feature.getPropertyIds()")
    assert "Pset_DoorCommon_HandicapAccessible" in ids, "the door's tile has no such column: nothing to check"
    page.wait_for_selector("#feature-props tr[data-key='Pset_DoorCommon_IsExternal']", timeout=30_000)
    rows = panel_rows(viewer)
    assert rows["Pset_DoorCommon_IsExternal"] == ("是" if door["properties"]["Pset_DoorCommon.IsExternal"] else "否")
    assert rows.get("Pset_DoorCommon_HandicapAccessible", "") == ""
    assert page.evaluate("window.cim.selection.Pset_DoorCommon_HandicapAccessible") is None
