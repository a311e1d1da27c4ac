"""Shadow speckles with CesiumJS's shadow-map defaults and with the viewer's tuning (js/sun.js),
counted in rendered pixels: the tiny city's flat LOD1 roofs seen from above under a low winter
sun, where a speckle is a pixel more than 30 levels darker than the median of its 5 x 5
neighbourhood in a lit surface (shadow acne's dots, and the jagged steps of a shadow's edge).
The figures are in README.md ("The planner's workspace in the viewer")."""

from __future__ import annotations

import base64

import pytest

from .helpers import _DECODE_PNG_JS, BuiltCity, ViewerPage, tallest_building, wait_frames

pytestmark = pytest.mark.browser

#: CesiumJS 1.x ShadowMap defaults (its constructor): what the viewer changes
CESIUM_DEFAULTS = {
    "softShadows": False,
    "maximumDistance": 5000.0,
    "darkness": 0.3,
    "primitive": {"normalOffsetScale": 0.1, "depthBias": 0.00002, "normalShadingSmooth": 0.05},
    "terrain": {"normalOffsetScale": 0.5, "depthBias": 0.0001, "normalShadingSmooth": 0.3},
}
HALF = 48  # the margin left out (Cesium's buttons and credit), pixels

_READ = """([s]) => { const m = window.cim.viewer.shadowMap;
  return { softShadows: m.softShadows, maximumDistance: m.maximumDistance, darkness: m.darkness,
    primitive: { normalOffsetScale: m._primitiveBias.normalOffsetScale, depthBias: m._primitiveBias.depthBias, normalShadingSmooth: m._primitiveBias.normalShadingSmooth },
    terrain: { normalOffsetScale: m._terrainBias.normalOffsetScale, depthBias: m._terrainBias.depthBias, normalShadingSmooth: m._terrainBias.normalShadingSmooth } }; }"""
_WRITE = """(s) => { const m = window.cim.viewer.shadowMap; m.softShadows = s.softShadows; m.maximumDistance = s.maximumDistance;
  m.darkness = s.darkness; Object.assign(m._primitiveBias, s.primitive); Object.assign(m._terrainBias, s.terrain);
  window.cim.viewer.scene.requestRender(); }"""
_SPECKLES = (
    "async ([png, half]) => {"
    + _DECODE_PNG_JS
    + """
  // a speckle: a pixel more than 30 levels darker than the median of its 5 x 5 neighbourhood
  // (an isolated dark dot in a lit surface); counted over the picture less a margin
  const { data, width, height } = await decode(png);
  const lum = new Float32Array(width * height);
  for (let i = 0; i < lum.length; i++) lum[i] = 0.2126 * data[4 * i] + 0.7152 * data[4 * i + 1] + 0.0722 * data[4 * i + 2];
  let speckles = 0, lit = 0;
  const near = new Float32Array(25);
  for (let y = half; y < height - half; y++) for (let x = half; x < width - half; x++) {
    let k = 0;
    for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) near[k++] = lum[(y + dy) * width + x + dx];
    near.sort();
    const median = near[12];
    if (median < 120) continue;  // only lit surfaces
    lit++;
    if (lum[y * width + x] < median - 30) speckles++;
  }
  return { speckles, lit };
}"""
)


def _measure(vp: ViewerPage, name: str) -> dict:
    wait_frames(vp, 4)
    png = vp.screenshot(name)
    return vp.page.evaluate(_SPECKLES, [base64.b64encode(png).decode("ascii"), HALF])


def test_the_tuned_shadow_map_leaves_fewer_speckles_on_lit_roofs(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    target = tallest_building(built_city)
    layer = built_city.layer("buildings")
    imagery = built_city.layer("imagery")["id"]
    page.evaluate(f"window.cim.cityViewer.setLayerVisible('{imagery}', false)")
    page.evaluate("window.cim.setSun('2026-12-21', 8.5, true)")  # a low winter sun: acne grows as light grazes
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 400)", [target["lon"], target["lat"], layer["bounds"]["max_height"]])
    viewer.wait_ready()
    assert page.evaluate("window.cim.viewer.shadows") is True
    tuned = page.evaluate(_READ, [None])
    assert tuned != CESIUM_DEFAULTS
    page.evaluate(_WRITE, CESIUM_DEFAULTS)
    before = _measure(viewer, "shadows-cesium-defaults")
    page.evaluate(_WRITE, tuned)
    after = _measure(viewer, "shadows-tuned")
    print(f"speckle pixels on lit surfaces: Cesium defaults {before}, tuned {after}")
    assert after["lit"] > 10_000, "little is lit: nothing measured"
    assert after["speckles"] < before["speckles"], (before, after)
