"""Massing (体块比对, issue 14): the planner draws a proposal's footprint by mouse and gives its
height; the viewer draws it as an extruded block, sends it with every analysis, and shows the
before/after numbers of sunlight, height limit and skyline exactly as the API answers them for
the same proposal. One module, one page: the suite is at its time budget."""

from __future__ import annotations

import json
import math
import urllib.request

import pytest

from .helpers import BuiltCity, Server, ViewerPage, image_stats, wait_frames

pytestmark = pytest.mark.browser

M_PER_DEG_LAT = 110_574.0


def _post(server: Server, kind: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{server.base_url}api/analysis/{kind}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=180) as resp:
        return json.loads(resp.read())


def _shown(value: float | int | None) -> str:
    """A number as the panel shows it in Chinese: grouped, at most three decimals."""
    if value is None:
        return ""
    text = f"{value:,.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _table(viewer: ViewerPage) -> dict[str, list[tuple[object, str]]]:
    """The before/after table: per row key, its cells' (data-value, text)."""
    rows = viewer.page.eval_on_selector_all(
        "#analysis-compare tr[data-key]",
        "trs => trs.map(tr => [tr.dataset.key, [...tr.querySelectorAll('td')].map(td => [JSON.parse(td.dataset.value), td.textContent])])",
    )
    return {key: [(v, text) for v, text in cells] for key, cells in rows}


def _row(expected: list[float | int | None]) -> list[tuple[object, str]]:
    return [(v, _shown(v)) for v in expected]


def _south_facing_target(server: Server, viewer: ViewerPage) -> tuple[dict, float, float]:
    """A residential building of the default area with sun today, well inside that area, and
    its centroid (lon, lat)."""
    import shapely

    request = viewer.page.evaluate("window.cim.analysis.request('sunlight')")
    answer = _post(server, "sunlight", request)
    area = shapely.Polygon(request["area"])
    lat0 = area.centroid.y
    shrink = 70 / M_PER_DEG_LAT  # the proposal 35 m south of it stays inside the default zone
    inner = area.buffer(-shrink)
    best = None
    for feature in answer["geojson"]["features"]:
        p = feature["properties"]
        shape = shapely.geometry.shape(feature["geometry"])
        c = shape.centroid
        if p.get("mean_hours") is None or not inner.contains(c):
            continue
        if best is None or p["mean_hours"] > best[0]["mean_hours"]:
            best = (p, c.x, c.y)
    assert best is not None and best[0]["mean_hours"] > 0.5, "no sunny residential building in the default area"
    assert abs(best[2] - lat0) < 0.01
    return best


def test_a_proposal_drawn_by_mouse_reports_before_and_after(
    viewer: ViewerPage, server: Server, built_city: BuiltCity, tiny_sources
) -> None:
    page = viewer.page
    target, lon, lat = _south_facing_target(server, viewer)
    # look straight down at a spot 35 m south of the building and draw a block there by clicks
    south = lat - 35 / M_PER_DEG_LAT
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 220)", [lon, south, target["base"]])
    viewer.wait_ready()
    wait_frames(viewer)
    before = viewer.screenshot("massing-before")

    page.select_option("#analysis-kind", "sunlight")
    page.click("#analysis-proposal")
    assert page.get_attribute("#analysis-proposal", "aria-pressed") == "true"
    c = page.evaluate("window.cim.canvasCenter()")
    for dx, dy in ((-30, 30), (30, 30), (30, -30), (-30, -30)):
        page.mouse.click(c["x"] + dx, c["y"] + dy)
    page.click("#analysis-finish")
    page.fill("#analysis-proposal-height", "120")
    ring = page.evaluate("window.cim.analysis.inputs.proposal")
    assert len(ring) == 4
    assert page.evaluate("window.cim.selection") is None  # the clicks drew, they selected nothing
    m_lon = 111_320 * math.cos(math.radians(lat))
    centre_lon, centre_lat = sum(p[0] for p in ring) / 4, sum(p[1] for p in ring) / 4
    assert math.hypot((centre_lon - lon) * m_lon, (centre_lat - south) * M_PER_DEG_LAT) < 3.0
    assert "方案体块：4 个顶点，高 120 米" in page.inner_text("#analysis-input")

    # the block stands in the scene
    block = page.evaluate(
        """() => {
            const es = window.cim.analysis.massing.entities.values;
            const now = Cesium.JulianDate.now();
            return es.map(e => ({ height: e.polygon.height.getValue(now), top: e.polygon.extrudedHeight.getValue(now) }));
        }"""
    )
    assert len(block) == 1 and block[0]["top"] - block[0]["height"] == pytest.approx(120)
    wait_frames(viewer)
    drawn = viewer.screenshot("massing-drawn")
    assert image_stats(viewer, drawn, before)["diff"] > 0.01

    # sunlight: the same numbers as the API for the same proposal, neighbours losing sun listed
    page.click("#analysis-run")
    page.wait_for_function("() => window.cim.analysis.last?.kind === 'sunlight'", timeout=180_000, polling=100)
    request = page.evaluate("window.cim.analysis.request('sunlight')")
    assert request["proposal"] == {"polygon": [p[:2] for p in ring], "height": 120}
    expected = _post(server, "sunlight", request)
    s = expected["summary"]
    assert page.evaluate("window.cim.analysis.last.summary") == s
    losing = sorted((ch for ch in s["changes"] if (ch["lost"] or 0) > 0), key=lambda ch: (-ch["lost"], ch["id"]))
    assert target["id"] in [ch["id"] for ch in losing], "the building just north of a 120 m block loses sun"
    table = _table(viewer)
    assert table["below"] == _row([s["below_count"], s["after"]["below_count"], s["after"]["below_count"] - s["below_count"]])
    for ch in losing[:10]:
        assert table[f"lost:{ch['id']}"] == _row([ch["mean_hours_before"], ch["mean_hours_after"], -ch["lost"]])
    assert len(table) == 1 + min(len(losing), 10)
    text = page.inner_text("#analysis-result")
    assert f"方案后日照不足 {s['after']['below_count']} 栋，{len(losing)} 栋日照减少，最多减少 {_shown(losing[0]['lost'])} 小时" in text
    # the block now stands on the ground the server stood it on
    base = page.evaluate("window.cim.analysis.massing.entities.values[0].polygon.height.getValue(Cesium.JulianDate.now())")
    assert base == s["proposal"]["base"]

    # height limit: the 120 m block breaks the default 15 m limit of the default zone
    page.select_option("#analysis-kind", "heightlimit")
    page.click("#analysis-run")
    page.wait_for_function("() => window.cim.analysis.last?.kind === 'heightlimit'", timeout=120_000, polling=100)
    expected = _post(server, "heightlimit", page.evaluate("window.cim.analysis.request('heightlimit')"))
    s = expected["summary"]
    assert page.evaluate("window.cim.analysis.last.summary") == s
    own = [r for r in s["after"]["exceeding"] if r["id"] == "proposal"]
    assert own and own[0]["excess"] > 90
    table = _table(viewer)
    assert table["exceeding"] == _row(
        [s["exceeding_count"], s["after"]["exceeding_count"], s["after"]["exceeding_count"] - s["exceeding_count"]]
    )
    assert table["proposal-excess"] == _row([None, own[0]["excess"], None])
    assert f"方案体块超出限高 {_shown(own[0]['excess'])} 米" in page.inner_text("#analysis-result")
    assert page.evaluate("window.cim.analysis.overlay.entities.values.length") == sum(
        len(f["geometry"]["coordinates"]) if f["geometry"]["type"] == "MultiPolygon" else 1 for f in expected["geojson"]["features"]
    )

    # skyline from the target building's door: the block rises in the south
    page.evaluate("([lon, lat]) => window.cim.analysis.setInputs({ ...window.cim.analysis.inputs, point: [lon, lat, 0] })", [lon, lat])
    page.select_option("#analysis-kind", "skyline")
    page.click("#analysis-run")
    page.wait_for_function("() => window.cim.analysis.last?.kind === 'skyline'", timeout=120_000, polling=100)
    request = page.evaluate("window.cim.analysis.request('skyline')")
    assert request["viewpoint"] == [lon, lat] and "proposal" in request
    s = _post(server, "skyline", request)["summary"]
    assert page.evaluate("window.cim.analysis.last.summary") == s
    assert s["changed_azimuths"] > 0 and s["max_rise"] > 0
    table = _table(viewer)
    assert table == {
        "max-elevation": _row([s["max_elevation"], s["after"]["max_elevation"], None]),
        "changed-azimuths": _row([None, s["changed_azimuths"], None]),
        "max-rise": _row([None, None, s["max_rise"]]),
    }

    # a proposal read from a GeoJSON file: its ring and its height, drawn as the block
    square = [[lon + dx / m_lon, south + dy / M_PER_DEG_LAT] for dx, dy in ((-8, -8), (8, -8), (8, 8), (-8, 8))]
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*square, square[0]]]}, "properties": {"height": 45}}
    page.set_input_files(
        "#analysis-proposal-file",
        files=[{"name": "方案.geojson", "mimeType": "application/geo+json", "buffer": json.dumps(feature).encode()}],
    )
    page.wait_for_function("() => window.cim.analysis.inputs.proposal?.length === 4", timeout=10_000, polling=100)
    assert [p[:2] for p in page.evaluate("window.cim.analysis.inputs.proposal")] == square
    assert page.input_value("#analysis-proposal-height") == "45"
    assert page.evaluate("window.cim.analysis.request('heightlimit')")["proposal"] == {"polygon": square, "height": 45}
    assert page.evaluate("window.cim.analysis.massing.entities.values.length") == 1
    page.set_input_files("#analysis-proposal-file", files=[{"name": "broken.geojson", "mimeType": "application/json", "buffer": b"{"}])
    page.wait_for_function(
        "() => document.querySelector('#analysis-result').textContent.includes('broken.geojson')", timeout=10_000, polling=100
    )

    # a proposal given as an IFC model: sent as multipart, placed by its own georeferencing, drawn
    # from the plan the server measured; the numbers are the library's for the same file
    import base64

    from cim.analysis.files import load_model
    from cim.analysis.service import run_analysis

    model = load_model(built_city.tiles_dir)
    xmin, ymin, xmax, ymax = model.bounds
    lons, lats = model.to_lonlat([xmin + 5, xmax - 5, xmax - 5, xmin + 5], [ymin + 5, ymin + 5, ymax - 5, ymax - 5])
    zone = [[float(x), float(y), 0.0] for x, y in zip(lons, lats)]
    page.select_option("#analysis-kind", "heightlimit")
    page.evaluate("(zone) => window.cim.analysis.setInputs({ area: zone })", zone)
    page.fill("#analysis-value", "3")
    ifc = tiny_sources.ifc[0]
    page.set_input_files("#analysis-proposal-file", str(ifc))
    page.wait_for_function(f"() => document.querySelector('#analysis-input').textContent.includes('{ifc.name}')", timeout=10_000)
    assert page.evaluate("window.cim.analysis.inputs.proposal") is None
    page.click("#analysis-run")
    page.wait_for_function("() => window.cim.analysis.last?.kind === 'heightlimit'", timeout=180_000, polling=100)
    request = page.evaluate("window.cim.analysis.request('heightlimit')")
    assert request["proposal"] == {} and request["limit"] == 3  # the file went up beside it
    file = {"name": ifc.name, "data": base64.b64encode(ifc.read_bytes()).decode("ascii")}
    s = run_analysis(model, "heightlimit", {**request, "proposal": {"file": file}})["summary"]
    assert page.evaluate("window.cim.analysis.last.summary") == s
    own = [r for r in s["after"]["exceeding"] if r["id"] == "proposal"]
    assert own and own[0]["excess"] > 3 and s["proposal"]["replaced"]
    assert _table(viewer)["proposal-excess"] == _row([None, own[0]["excess"], None])
    shown = page.evaluate(
        """() => {
            const e = window.cim.analysis.massing.entities.values[0];
            const now = Cesium.JulianDate.now();
            return { file: e.properties.file.getValue(now), base: e.polygon.height.getValue(now),
                     top: e.polygon.extrudedHeight.getValue(now),
                     corners: e.polygon.hierarchy.getValue(now).positions.length };
        }"""
    )
    plan = s["proposal"]["plan"]
    ring = plan["coordinates"][0][0] if plan["type"] == "MultiPolygon" else plan["coordinates"][0]
    assert shown == {
        "file": ifc.name,
        "base": s["proposal"]["base"],
        "top": s["proposal"]["base"] + s["proposal"]["height"],
        "corners": len(ring) - 1,
    }

    # a glTF carries no georeferencing: it stands at the centre of the footprint drawn before it
    import trimesh

    glb = trimesh.creation.box(extents=(20.0, 20.0, 50.0)).export(file_type="glb")
    page.evaluate("(ring) => window.cim.analysis.setInputs({ area: window.cim.analysis.inputs.area, proposal: ring })", square)
    page.set_input_files("#analysis-proposal-file", files=[{"name": "tower.glb", "mimeType": "model/gltf-binary", "buffer": glb}])
    page.wait_for_function("() => document.querySelector('#analysis-input').textContent.includes('tower.glb')", timeout=10_000)
    request = page.evaluate("window.cim.analysis.request('heightlimit')")
    assert request["proposal"]["position"] == pytest.approx([sum(p[0] for p in square) / 4, sum(p[1] for p in square) / 4], abs=1e-12)
    page.evaluate("() => { window.previousAnswer = window.cim.analysis.last; }")
    page.click("#analysis-run")
    page.wait_for_function(
        "() => window.cim.analysis.last !== window.previousAnswer || document.querySelector('#analysis-result').textContent.includes('失败')",
        timeout=180_000,
        polling=100,
    )
    assert "失败" not in page.inner_text("#analysis-result"), page.inner_text("#analysis-result")
    file = {"name": "tower.glb", "data": base64.b64encode(glb).decode("ascii")}
    s = run_analysis(model, "heightlimit", {**request, "proposal": {**request["proposal"], "file": file}})["summary"]
    assert page.evaluate("window.cim.analysis.last.summary") == s

    # back to the default: the block goes, and the table with the answer
    page.click("#analysis-default")
    assert page.evaluate("window.cim.analysis.massing.entities.values.length") == 0
    page.click("#analysis-clear")
    assert page.is_hidden("#analysis-compare")
