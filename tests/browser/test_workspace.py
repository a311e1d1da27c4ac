"""The planner's workspace in the viewer: Chinese by default with a remembered English toggle,
the selection in view at 1280x800, per-layer transparency, and share links that a reload
restores (with the bookmarks kept beside them).

One page for the module (the `viewer` fixture); the share-link test reloads it once. The legend
swatches against rendered pixels are tests/browser/test_colours.py's.
"""

from __future__ import annotations

import pytest

from .helpers import BuiltCity, ViewerPage, image_stats, tallest_building, wait_frames

pytestmark = pytest.mark.browser

WORKSPACE = {"width": 1280, "height": 800}


def heading(vp: ViewerPage, panel: str) -> str:
    return vp.page.text_content(f"#{panel}-heading").strip()


def select_tallest(vp: ViewerPage, city: BuiltCity, range_m: float = 250.0) -> dict:
    """Look down at the tallest building and select it by id; returns the source row."""
    target = tallest_building(city)
    layer = city.layer("buildings")
    page = vp.page
    page.evaluate(
        "([lon, lat, h, r]) => window.cim.lookAt(lon, lat, h, r)", [target["lon"], target["lat"], layer["bounds"]["max_height"], range_m]
    )
    vp.wait_ready()
    page.evaluate("([layer, id]) => window.cim.cityViewer.selectById(layer, id)", [layer["id"], str(target["attrs"]["id"])])
    page.wait_for_selector("#feature-body:not([hidden])", timeout=10_000)
    return target


def test_chinese_by_default_english_by_a_remembered_toggle(viewer: ViewerPage) -> None:
    page = viewer.page
    zh = page.evaluate("window.cim.i18n.catalogue('zh-CN')")
    en = page.evaluate("window.cim.i18n.catalogue('en')")
    assert page.evaluate("window.cim.i18n.language()") == "zh-CN"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert heading(viewer, "layers") == zh["layers.title"] == "图层"
    assert page.text_content("#feature-hint") == zh["feature.hint"]
    # every static text shows its Chinese message
    shown = page.eval_on_selector_all("[data-i18n]", "els => els.map(e => [e.dataset.i18n, e.textContent])")
    assert len(shown) > 30
    assert [k for k, text in shown if text != zh[k]] == []
    group = page.eval_on_selector_all("#layer-tree .layer-group h3", "hs => hs.map(h => h.textContent)")
    assert group and all(g in zh.values() for g in group)

    page.click("#language-toggle")
    assert page.evaluate("localStorage.getItem('cim.language')") == "en"
    assert heading(viewer, "layers") == en["layers.title"] == "Layers"
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.text_content("#language-toggle") == en["language.switch"]
    # text the tools built follows too: the layer groups, the status line
    group = page.eval_on_selector_all("#layer-tree .layer-group h3", "hs => hs.map(h => h.textContent)")
    assert group and all(g in en.values() for g in group)
    assert "loaded" in page.text_content("#load-status")

    page.click("#language-toggle")
    assert page.evaluate("localStorage.getItem('cim.language')") == "zh-CN"
    assert heading(viewer, "layers") == "图层"


def test_selection_is_visible_at_1280_by_800_without_scrolling(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    page.set_viewport_size(WORKSPACE)
    try:
        target = select_tallest(viewer, built_city)
        assert str(page.evaluate("window.cim.selection.id")) == str(target["attrs"]["id"])
        boxes = page.evaluate(
            """() => {
                const panel = document.querySelector('#feature-panel');
                const rows = [...panel.querySelectorAll('#feature-props tr[data-key]:not([hidden])')];
                const p = panel.getBoundingClientRect();
                return {
                    panel: [p.top, p.bottom], scrollTop: panel.scrollTop,
                    sidebarScroll: document.querySelector('#sidebar').scrollTop,
                    rows: rows.map(r => { const b = r.getBoundingClientRect(); return [r.dataset.key, b.top, b.bottom]; }),
                    window: [window.innerWidth, window.innerHeight],
                };
            }"""
        )
        assert boxes["window"] == [1280, 800]
        keys = [key for key, _, _ in boxes["rows"]]
        assert set(target["attrs"]) <= set(keys), "an attribute of the building is not listed"
        top, bottom = boxes["panel"]
        assert boxes["scrollTop"] == 0 and boxes["sidebarScroll"] == 0
        off = [key for key, t, b in boxes["rows"] if t < top - 0.5 or b > min(bottom, 800) + 0.5]
        assert off == [], f"rows off-screen at 1280x800: {off} (panel {top:.0f}-{bottom:.0f})"
        # the panels above are all still there, scrolled in their own column
        assert page.is_visible("#layers-panel") or page.evaluate("document.querySelector('#tools').scrollHeight > 0")
    finally:
        page.set_viewport_size({"width": 1024, "height": 640})


def test_transparency_slider_makes_a_layer_see_through(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    layer = built_city.layer("buildings")
    target = tallest_building(built_city)
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 120)", [target["lon"], target["lat"], layer["bounds"]["max_height"]])
    viewer.wait_ready()
    opaque = viewer.screenshot("workspace-opaque")
    slider = page.locator(f"#opacity-{layer['id']}")
    assert slider.input_value() == "0"
    slider.fill("100")  # 100 % transparent
    assert page.evaluate(f"window.cim.cityViewer.layers.get('{layer['id']}').handle.opacity") == 0
    assert "color('white', 0.000)" in page.evaluate(f"window.cim.layers['{layer['id']}'].style.color.expression")
    viewer.wait_ready()
    wait_frames(viewer)
    gone = viewer.screenshot("workspace-transparent")
    # the tallest building filled the middle of the view: now the ground shows there
    assert image_stats(viewer, gone, opaque)["diff"] > 0.05
    # half way: the style's alpha, and the slider's label in the language's percent
    slider.fill("50")
    assert "color('white', 0.500)" in page.evaluate(f"window.cim.layers['{layer['id']}'].style.color.expression")
    assert page.text_content(f"li[data-layer='{layer['id']}'] .opacity-value").startswith("50")
    # imagery: its alpha
    imagery = built_city.layer("imagery")
    page.locator(f"#opacity-{imagery['id']}").fill("30")
    assert page.evaluate("window.cim.viewer.imageryLayers.get(0).alpha") == pytest.approx(0.7)


def test_share_link_and_bookmark_survive_a_reload(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    buildings = built_city.layer("buildings")["id"]
    imagery = built_city.layer("imagery")["id"]
    target = select_tallest(viewer, built_city, range_m=300.0)
    page.locator(f"#layer-{imagery}").uncheck()
    page.locator(f"#opacity-{buildings}").fill("40")
    page.click("#language-toggle")  # English, remembered in localStorage (not in the link)
    page.click("#bookmark-add")
    assert page.eval_on_selector_all("#bookmark-list .bookmark-open", "bs => bs.length") == 1
    page.evaluate("window.cim.share.update()")
    link = page.evaluate("location.href")
    assert f"sel={buildings}%2F{target['attrs']['id']}" in link and "alpha=" in link
    camera = page.evaluate(
        "(() => { const c = window.cim.viewer.camera.positionCartographic; return [c.longitude, c.latitude, c.height]; })()"
    )

    page.reload()
    assert page.evaluate("location.href") == link
    viewer.wait_ready()
    page.wait_for_function("() => window.cim.selection !== null", timeout=60_000, polling=100)
    assert page.evaluate("window.cim.i18n.language()") == "en"
    assert heading(viewer, "layers") == "Layers"
    assert str(page.evaluate("window.cim.selection.id")) == str(target["attrs"]["id"])
    assert page.evaluate("window.cim.cityViewer.selection.feature !== null"), "the feature was not highlighted in the scene"
    assert page.evaluate(
        f"window.cim.layers['{buildings}'] && window.cim.cityViewer.layers.get('{buildings}').handle.opacity"
    ) == pytest.approx(0.6)
    assert page.locator(f"#opacity-{buildings}").input_value() == "40"
    assert page.evaluate(f"window.cim.cityViewer.layers.get('{imagery}').handle.show") is False
    assert not page.locator(f"#layer-{imagery}").is_checked()
    now = page.evaluate(
        "(() => { const c = window.cim.viewer.camera.positionCartographic; return [c.longitude, c.latitude, c.height]; })()"
    )
    assert now[0] == pytest.approx(camera[0], abs=1e-8) and now[1] == pytest.approx(camera[1], abs=1e-8)
    assert now[2] == pytest.approx(camera[2], abs=0.05)
    # the bookmark was kept, with the same view
    assert page.eval_on_selector_all("#bookmark-list .bookmark-open", "bs => bs.length") == 1
    kept = page.evaluate("window.cim.share.decode(window.cim.share.bookmarks()[0].hash)")
    assert kept == page.evaluate("window.cim.share.decode(location.hash)")

    # back to the module's defaults for the tests after this one
    page.evaluate("() => { window.cim.i18n.setLanguage('zh-CN'); localStorage.removeItem('cim.bookmarks'); }")


def test_query_panel_lists_colours_downloads_and_charts(viewer: ViewerPage, built_city: BuiltCity) -> None:
    """Combined conditions and a drawn box through the panel: the results are the API's, coloured
    in the scene and listed; a row selects its feature by id; the downloads are the API's CSV
    (with its BOM) and GeoJSON; the statistics shown and charted are /api/stats'."""
    import json
    import urllib.parse
    import urllib.request

    page = viewer.page
    if not page.evaluate("fetch('/api/openapi.json').then(r => r.json()).then(d => Boolean(d.paths['/api/query']))"):
        pytest.skip("this server has no query API")
    buildings = built_city.layer("buildings")
    b = buildings["bounds"]
    box = [b["west"], b["south"], (b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2]
    page.fill("#query-where", "height > 15")
    page.evaluate("(box) => window.cim.query.setArea('box', [[box[0], box[1]], [box[2], box[3]]])", box)
    page.click("#query-run")
    page.wait_for_function("() => document.querySelectorAll('#query-results button.search-hit').length > 0", timeout=30_000, polling=100)
    qs = f"where={urllib.parse.quote('height > 15')}&bbox={','.join(f'{v:.7f}' for v in box)}&limit=200"
    with urllib.request.urlopen(f"{viewer.base_url}api/query?{qs}") as response:
        expected = json.load(response)
    listed = page.eval_on_selector_all("#query-results button.search-hit", "bs => bs.map(b => [b.dataset.layer, b.dataset.id])")
    assert listed == [[r["layer"], str(r["id"])] for r in expected["results"]]
    assert 0 < len(listed) < buildings["count"]
    assert str(expected["total"]) in page.text_content("#query-summary")

    # a row flies over the feature and selects it by id, coloured with the selection's colour
    first = expected["results"][0]
    page.click("#query-results button.search-hit >> nth=0")
    page.wait_for_function("(id) => window.cim.selection && String(window.cim.selection.id) === id", arg=str(first["id"]), timeout=60_000)
    assert page.evaluate("window.cim.cityViewer.selection.feature !== null")
    # the other results in view carry the results' colour
    coloured = page.evaluate(
        """(ids) => { const t = window.cim.layers.buildings; let n = 0; const want = new Set(ids);
            const stack = [t.root];
            while (stack.length) { const tile = stack.pop(); stack.push(...tile.children);
              const c = tile.content; if (!tile.contentReady || !c) continue;
              for (let i = 0; i < c.featuresLength; i++) { const f = c.getFeature(i);
                if (want.has(String(f.getProperty('id'))) && f.color.toCssHexString() === '#4fc3f7') n++; } }
            return n; }""",
        [str(r["id"]) for r in expected["results"][1:]],
    )
    assert coloured > 0

    # downloads: the API's own renderings
    csv_href = page.get_attribute("#query-csv", "href")
    assert "format=csv" in csv_href and "where=" in csv_href
    with urllib.request.urlopen(viewer.base_url.rstrip("/") + csv_href) as response:
        body = response.read()
    assert body.startswith(b"\xef\xbb\xbf") and len(body.splitlines()) == expected["total"] + 1
    assert "format=geojson" in page.get_attribute("#query-geojson", "href")

    # statistics by district, charted with ECharts (served by the server itself)
    page.select_option("#stats-group", "district")
    page.click("#stats-run")
    page.wait_for_selector("#stats-chart canvas", timeout=30_000)
    with urllib.request.urlopen(f"{viewer.base_url}api/stats?{qs.replace('&limit=200', '')}&group_by=district") as response:
        stats = json.load(response)
    shown = page.eval_on_selector_all("#stats-table tr", "rows => rows.map(r => [r.dataset.stat, r.querySelector('td').textContent])")
    assert dict(shown)["count"] == page.evaluate(
        "(n) => new Intl.NumberFormat('zh-CN', { maximumFractionDigits: 1 }).format(n)", stats["count"]
    )
    assert stats["count"] == expected["total"]
    assert any("/vendor/echarts/" in u for u in viewer.log.requests)


def test_a_new_panel_is_one_registration_with_its_messages(viewer: ViewerPage) -> None:
    """registerPanel with its own messages file: placed by its order among the collapsible tool
    panels, titled in the language shown; a <section class="panel"> a module drops elsewhere in
    the sidebar joins them too."""
    page = viewer.page
    placed = page.evaluate(
        """async () => {
            const { registerPanel } = window.cim.workspace;
            const body = registerPanel({ id: "probe", title: "probe.title", order: 45,
                messages: { "zh-CN": { "probe.title": "试验面板" }, en: { "probe.title": "Probe panel" } } });
            body.append(Object.assign(document.createElement("p"), { id: "probe-content" }));
            const stray = Object.assign(document.createElement("section"), { className: "panel", id: "stray-panel" });
            stray.innerHTML = '<h2 id="stray-heading">x</h2><p id="stray-content"></p>';
            document.querySelector('#feature-panel').before(stray);
            await new Promise((r) => setTimeout(r, 0));
            const order = [...document.querySelectorAll('#tools > section.panel')].map((s) => s.id);
            const heading = document.querySelector('#probe-heading').textContent;
            document.querySelector('#probe-heading .panel-toggle').click();
            const collapsed = document.querySelector('#probe-content').offsetParent === null;
            window.cim.i18n.setLanguage('en');
            const english = document.querySelector('#probe-heading').textContent;
            window.cim.i18n.setLanguage('zh-CN');
            document.querySelector('#probe-heading .panel-toggle').click();
            document.querySelector('#probe-panel').remove();
            stray.remove();
            localStorage.removeItem('cim.panels.collapsed');
            return { order, heading, collapsed, english,
                     strayCollapsible: stray.dataset.collapsible === 'true' };
        }"""
    )
    order = placed["order"]
    assert order.index("measure-panel") < order.index("probe-panel") < order.index("sun-panel")
    assert "stray-panel" in order and placed["strayCollapsible"]
    assert placed["heading"] == "试验面板" and placed["english"] == "Probe panel"
    assert placed["collapsed"]

    # BIM attributes grouped by property set; a set that does not apply (only false and empty
    # values: glTF metadata stores a boolean the set does not give as false) is left out
    groups = page.evaluate(
        """() => import('/js/feature-panel.js').then((m) => m.groupProperties(
            { GlobalId: 'g', Pset_WallCommon_IsExternal: true, Pset_WallCommon_FireRating: null,
              Pset_DoorCommon_IsExternal: false, Pset_DoorCommon_FireRating: null, Qto_Base_Width: 0.25 },
            new Map([['Pset_WallCommon_IsExternal', 'Pset_WallCommon.IsExternal'], ['Pset_WallCommon_FireRating', 'Pset_WallCommon.FireRating'],
                     ['Pset_DoorCommon_IsExternal', 'Pset_DoorCommon.IsExternal'], ['Pset_DoorCommon_FireRating', 'Pset_DoorCommon.FireRating'],
                     ['Qto_Base_Width', 'Qto_Base.Width']])))"""
    )
    assert [g[0] for g in groups] == ["", "Pset_WallCommon", "Qto_Base"]
    assert [row[1] for row in groups[1][1]] == ["IsExternal", "FireRating"]
    shown = page.evaluate(
        "() => import('/js/properties.js').then((m) => [m.formatValue(14.100000000000001, 'FLOAT64'), m.formatValue(12.300000190734863, 'FLOAT32')])"
    )
    assert shown == ["14.1", "12.3"]
