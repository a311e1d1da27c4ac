"""A second I3S reader: CesiumJS's I3SDataProvider draws the buildings exported by
``cim export i3s`` and picks the tallest building where the source tiles put it.

The package is served the way an I3S service lays out a scene layer
(``/SceneServer/layers/0``, ``.../nodepages/0``, ``.../nodes/3/geometries/0``, ...), each
resource read from the SLPK and un-gzipped, by a static server on a loopback port beside
CesiumJS itself (``viewer/node_modules``). The camera looks straight down at the roof of the
tallest source building; Cesium must load the node pages, decode the uncompressed geometry
buffers, and pick a feature at the canvas centre whose I3S fields name that building.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cim.export.i3s import export_i3s
from cim.kernels.frames import ecef_to_geodetic
from tests.helpers.i3s import breadth_first, source_tree, tile_features

from .helpers import CESIUM_DIR, PageLog

pytestmark = pytest.mark.browser

LOAD_TIMEOUT_MS = 180_000

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script>window.CESIUM_BASE_URL = "/cesium/";</script>
<script src="/cesium/Cesium.js"></script>
<link rel="stylesheet" href="/cesium/Widgets/widgets.css">
<style>html, body, #c { margin: 0; width: 100%; height: 100%; overflow: hidden; }</style>
</head><body><div id="c"></div><script>
window.i3s = {errors: [], ready: false};
window.addEventListener("error", (e) => window.i3s.errors.push(String(e.message)));
(async () => {
  try {
    const viewer = new Cesium.Viewer("c", {
      baseLayer: false, geocoder: false, baseLayerPicker: false, animation: false, timeline: false,
      homeButton: false, sceneModePicker: false, navigationHelpButton: false, fullscreenButton: false,
      infoBox: false, selectionIndicator: false,
    });
    const provider = await Cesium.I3SDataProvider.fromUrl("/i3s/SceneServer/layers/0", {showFeatures: true});
    viewer.scene.primitives.add(provider);
    window.i3s.viewer = viewer;
    window.i3s.provider = provider;
    window.i3s.ready = true;
  } catch (e) {
    window.i3s.errors.push(String((e && e.stack) || e));
  }
})();
</script></body></html>
"""

PICK = """([lon, lat, height]) => {
  const {viewer, provider} = window.i3s;
  if (!window.i3s.placed) {
    viewer.camera.setView({
      destination: Cesium.Cartesian3.fromDegrees(lon, lat, height),
      orientation: {heading: 0, pitch: -Cesium.Math.PI_OVER_TWO, roll: 0},
    });
    window.i3s.placed = true;
  }
  viewer.scene.requestRender();
  if (!provider.layers[0].tileset.tilesLoaded) return false;
  const canvas = viewer.scene.canvas;
  const centre = new Cesium.Cartesian2(canvas.clientWidth / 2, canvas.clientHeight / 2);
  const picked = viewer.scene.pick(centre);
  if (!picked || !picked.content || !picked.content.tile.i3sNode) return false;
  window.i3s.picked = {node: picked.content.tile.i3sNode, position: viewer.scene.pickPosition(centre)};
  return true;
}"""

# Cesium's own way to read a picked I3S feature (its Sandcastle example): the node's fields at
# the picked position, found through the geometry's feature index
FIELDS = """async () => {
  const {node, position} = window.i3s.picked;
  await node.loadFields();
  const where = Cesium.Cartographic.fromCartesian(position);
  return {
    fields: node.getFieldsForPickedPosition(position),
    position: [Cesium.Math.toDegrees(where.longitude), Cesium.Math.toDegrees(where.latitude), where.height],
    layerType: window.i3s.provider.layers[0].data.layerType,
  };
}"""


def _resource(archive: zipfile.ZipFile, path: str) -> bytes | None:
    """The package's resource at a service path (without ``/SceneServer/layers/0``), un-gzipped."""
    names = set(archive.namelist())
    candidates = ["3dSceneLayer.json.gz"] if path == "" else [f"{path}.json.gz", f"{path}.bin.gz", f"{path}.jpg", f"{path}.png"]
    for name in candidates:
        if name in names:
            data = archive.read(name)
            return gzip.decompress(data) if name.endswith(".gz") else data
    return None


@pytest.fixture(scope="module")
def i3s_server(browser: object, built_city, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """CesiumJS and the buildings' package on a loopback port."""
    if not (CESIUM_DIR / "Cesium.js").is_file():
        pytest.skip("CesiumJS is not installed (make test-deps runs `npm ci` in viewer/)")
    package = tmp_path_factory.mktemp("i3s") / "buildings.slpk"
    export_i3s(built_city.tiles_dir / "buildings", package)
    archive = zipfile.ZipFile(package)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            body: bytes | None = None
            kind = "application/octet-stream"
            if path == "/":
                body, kind = PAGE.encode(), "text/html; charset=utf-8"
            elif path.startswith("/cesium/"):
                file = (CESIUM_DIR / path[len("/cesium/") :]).resolve()
                if CESIUM_DIR.resolve() in file.parents and file.is_file():
                    body = file.read_bytes()
                    kind = {".js": "text/javascript", ".css": "text/css", ".json": "application/json", ".wasm": "application/wasm"}.get(
                        file.suffix, "application/octet-stream"
                    )
            elif path.startswith("/i3s/SceneServer/layers/0"):
                with lock:
                    body = _resource(archive, path[len("/i3s/SceneServer/layers/0") :].strip("/"))
                if body is not None and body[:1] == b"{":
                    kind = "application/json"
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="i3s-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", package
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
        archive.close()


def _tallest_roof(layer: Path) -> tuple[str, float, float, float]:
    """(id, lon, lat, height) of the centre of the highest roof among the source leaf tiles."""
    best: tuple[float, str, np.ndarray] | None = None
    for tile in breadth_first(source_tree(layer / "tileset.json")):
        if tile.glb is None or tile.children:
            continue
        for fid, (_, vertices, _) in tile_features(tile, "id").items():
            lon, lat, h = ecef_to_geodetic(vertices)
            if best is None or h.max() > best[0]:
                roof = vertices[h > h.max() - 0.05]
                best = (float(h.max()), fid, roof.mean(axis=0))
    assert best is not None
    lon, lat, h = ecef_to_geodetic(best[2][None, :])
    return best[1], float(lon[0]), float(lat[0]), float(h[0])


def test_cesium_picks_the_tallest_building_from_the_package(browser, i3s_server, built_city):
    url, _ = i3s_server
    fid, lon, lat, roof = _tallest_roof(built_city.tiles_dir / "buildings")
    page = browser.new_page(viewport={"width": 800, "height": 600})
    log = PageLog()
    page.on("request", lambda req: log.requests.append(req.url))
    page.on("console", lambda msg: log.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: log.page_errors.append(str(err)))
    try:
        page.goto(url)
        page.wait_for_function("() => window.i3s.ready || window.i3s.errors.length > 0", timeout=LOAD_TIMEOUT_MS, polling=200)
        assert page.evaluate("window.i3s.errors") == []
        page.wait_for_function(PICK, arg=[lon, lat, roof + 150.0], timeout=LOAD_TIMEOUT_MS, polling=500)
        picked = page.evaluate(FIELDS)
        assert picked["layerType"] == "3DObject"
        assert picked["fields"]["id"] == fid and picked["fields"]["OBJECTID"] >= 1
        # the roof is where the source tiles put it: its centre, within a centimetre
        assert picked["position"][2] == pytest.approx(roof, abs=0.01)
        assert np.abs(np.array(picked["position"][:2]) - [lon, lat]).max() < 1e-7  # about 1 cm
        assert [u for u in log.requests if not u.startswith((url, "data:", "blob:"))] == []
        assert log.page_errors == [] and log.console_errors == []
    finally:
        page.close()
