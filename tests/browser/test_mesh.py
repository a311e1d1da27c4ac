"""The reality mesh in the viewer: listed with a toggle like the other 3D layers, loaded as a 3D
Tiles tileset, and drawn with its texture (the sample's survey target, a square of known sRGB
colour painted in the tiles' textures, renders as that colour: unlit, sRGB kept)."""

from __future__ import annotations

import numpy as np
import pytest

from cim.samplecity.mesh import TARGET_COLOUR

from .helpers import BuiltCity, ViewerPage, delta_e76, region_colours, wait_frames

pytestmark = pytest.mark.browser

# WebP at quality 85 and Cesium's bilinear filtering of a flat patch: a few units at most
TARGET_MAX_DELTA_E = 4.0


def _mesh_layer(city: BuiltCity) -> dict:
    try:
        return city.layer("mesh")
    except LookupError:
        pytest.skip("this city has no mesh layer")


def test_the_mesh_layer_toggles_and_renders_its_texture(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    layer = _mesh_layer(built_city)
    box = page.locator(f"#layer-{layer['id']}")
    assert box.count() == 1, "the mesh layer is not in the layer list"
    assert box.is_checked() is (layer.get("visible") is not False)
    for other in built_city.city["layers"]:
        if other["kind"] in ("buildings", "bim", "pointcloud", "mesh"):
            page.locator(f"#layer-{other['id']}").set_checked(other["id"] == layer["id"])
    b = layer["bounds"]
    lon, lat = (b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2
    saved = page.evaluate(
        """([lon, lat, h]) => {
            const scene = window.cim.viewer.scene;
            const saved = [scene.skyBox.show, scene.skyAtmosphere.show, scene.sun.show, scene.moon.show];
            scene.globe.show = false;  // the viewer's reset puts the globe and the layers back
            scene.skyBox.show = scene.skyAtmosphere.show = scene.sun.show = scene.moon.show = false;
            window.cim.lookAt(lon, lat, h, 40);
            return saved;
        }""",
        [lon, lat, b["min_height"]],
    )
    try:
        _check_target(viewer, layer, box)
    finally:
        page.evaluate(
            """(saved) => {
                const scene = window.cim.viewer.scene;
                [scene.skyBox.show, scene.skyAtmosphere.show, scene.sun.show, scene.moon.show] = saved;
                window.cim.cityViewer.unsettle();
            }""",
            saved,
        )


def _check_target(viewer: ViewerPage, layer: dict, box: object) -> None:
    page = viewer.page
    viewer.wait_ready()
    wait_frames(viewer, 5)
    viewer.wait_ready()
    shown = page.evaluate(
        """(id) => {
            const ts = window.cim.viewer.scene.primitives;
            for (let i = 0; i < ts.length; i++) {
                const p = ts.get(i);
                if (p instanceof Cesium.Cesium3DTileset && p.show && p.resource && p.resource.url.includes(id)) {
                    return { loaded: p.tilesLoaded, selected: p.statistics.selected, triangles: p.statistics.numberOfTrianglesSelected };
                }
            }
            return null;
        }""",
        layer["url"].split("/")[0],
    )
    assert shown and shown["selected"] > 0 and shown["triangles"] > 0, f"the mesh tileset draws nothing: {shown}"
    cells = region_colours(viewer, viewer.screenshot("40-mesh-target"), grid=(9, 9))
    centre = next(c for c in cells if c["row"] == 4 and c["col"] == 4)
    de = float(delta_e76(centre["mean"], TARGET_COLOUR))
    assert de <= TARGET_MAX_DELTA_E, (
        f"the survey target renders as {np.round(centre['mean']).tolist()}, its texture says {list(TARGET_COLOUR)} (ΔE76 {de:.1f})"
    )
    # toggled off, it is gone from the picture
    box.uncheck()  # type: ignore[attr-defined]
    viewer.wait_ready()
    wait_frames(viewer, 3)
    cells = region_colours(viewer, viewer.screenshot("41-mesh-hidden"), grid=(9, 9))
    centre = next(c for c in cells if c["row"] == 4 and c["col"] == 4)
    assert float(delta_e76(centre["mean"], TARGET_COLOUR)) > 20
