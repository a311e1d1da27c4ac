"""A second client: 3DTilesRendererJS on three.js (tests/tools/threejs) reads the tiny city.

CesiumJS is not the only client the tiles must satisfy. This page loads the buildings and the
lidar with 3DTilesRendererJS (``GLTFExtensionsPlugin``, three's meshopt decoder) and three.js's
default colour management: glTF's ``COLOR_0`` is linear, three.js converts it to sRGB on output.

The colour test renders the lidar straight down through an orthographic camera and compares the
mean colour of a grid of screen regions with the orthophoto its colours were sampled from,
resampled to the same pixels (see :func:`orthophoto_view`). Colours stored as sRGB bytes in
``COLOR_0`` render paler than the orthophoto (they are read as linear, then encoded again).

The page and its npm packages are served from ``tests/tools/threejs`` by a static server on a
loopback port; the tiles by the project's server (``python -m cim.server``), which allows CORS.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from .helpers import REPO, BuiltCity, PageLog, Server

pytestmark = pytest.mark.browser

THREEJS_DIR = REPO / "tests" / "tools" / "threejs"
MODULES = [
    THREEJS_DIR / "node_modules" / "three" / "build" / "three.module.js",
    THREEJS_DIR / "node_modules" / "3d-tiles-renderer" / "build" / "index.js",
]
LOAD_TIMEOUT_MS = 60_000
#: metres a screen pixel covers: the orthophoto's resolution in the tiny city
PIXEL_SIZE = 0.5
#: screen regions compared, columns × rows (about 65 m × 67 m each on the tiny city)
GRID = (8, 6)
#: a region counts when this share of its pixels is covered by points and by the orthophoto
MIN_COVERAGE = 0.9
#: largest CIE76 ΔE allowed between a region's mean colour in the render and in the orthophoto:
#: below a just noticeable difference (about 2.3). With the colours right, what remains is the
#: splats' overlap across region borders (the page shuffles the draw order, so no colour wins
#: inside), each point taking the orthophoto pixel under it rather than under the screen pixel,
#: and the quantization of stored colours: measured at most 0.4 on the tiny city. sRGB bytes
#: read as linear render about 24 ΔE paler (+22 L*).
MAX_DELTA_E = 2.0
#: a point cloud larger than this is not drawn whole in one page (CIM_BROWSER_CITY)
MAX_POINTS = 3_000_000


# --------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def page_server(browser: object) -> Iterator[str]:
    """``tests/tools/threejs`` (the page and its node_modules) on a loopback port; skips,
    with the reason, when its npm packages are not installed."""
    missing = [str(p.relative_to(REPO)) for p in MODULES if not p.is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: run `make test-deps` (npm ci in tests/tools/threejs)")

    class Handler(http.server.SimpleHTTPRequestHandler):
        # module scripts need a JavaScript type, whatever the host's mime.types says
        extensions_map: ClassVar[dict[str, str]] = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

        def log_message(self, format: str, *args: object) -> None:  # the page logs what it needs
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(THREEJS_DIR)))
    thread = threading.Thread(target=httpd.serve_forever, name="threejs-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@dataclass
class ClientPage:
    page: object  # playwright.sync_api.Page
    log: PageLog
    origins: tuple[str, ...]

    def evaluate(self, script: str, arg: object = None) -> object:
        return self.page.evaluate(script, arg)

    def assert_clean(self) -> None:
        """Nothing was requested outside the two servers and nothing failed."""
        assert [u for u in self.log.requests if not u.startswith((*self.origins, "data:", "blob:"))] == []
        assert self.log.console_errors == []
        assert self.log.page_errors == []
        assert self.evaluate("window.client.errors") == []


@pytest.fixture
def client(browser: object, page_server: str, server: Server) -> Iterator[ClientPage]:
    """The page, fresh for each test (a test ends with :meth:`ClientPage.assert_clean`)."""
    page = browser.new_page(viewport={"width": 1024, "height": 800})
    log = PageLog()
    page.on("request", lambda req: log.requests.append(req.url))
    page.on("console", lambda msg: log.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: log.page_errors.append(str(err)))
    try:
        page.goto(page_server + "index.html")
        page.wait_for_function("() => window.client !== undefined", timeout=LOAD_TIMEOUT_MS, polling=100)
        yield ClientPage(page, log, (page_server, server.base_url))
    finally:
        page.close()


@dataclass
class View:
    """An orthographic view straight down over a tileset, in its root's local frame (x east,
    y north, z up, metres)."""

    frame: np.ndarray  # (4, 4) float64, local → ECEF
    centre: tuple[float, float]
    size: tuple[float, float]  # metres
    pixels: tuple[int, int]  # width, height
    top: float
    depth: float

    @classmethod
    def over(cls, tileset: dict, pixel_size: float) -> View:
        root = tileset["root"]
        frame = np.array(root.get("transform", np.eye(4).ravel()), dtype=np.float64).reshape(4, 4).T
        box = np.asarray(root["boundingVolume"]["box"], dtype=np.float64)
        centre, half = box[:3], np.abs(box[3:].reshape(3, 3)).sum(axis=0)  # the box's axis-aligned envelope
        pixels = (int(np.ceil(2 * half[0] / pixel_size)), int(np.ceil(2 * half[1] / pixel_size)))
        size = (pixels[0] * pixel_size, pixels[1] * pixel_size)
        return cls(frame, (float(centre[0]), float(centre[1])), size, pixels, float(centre[2] + half[2] + 1), float(2 * half[2] + 2))

    def options(self) -> dict:
        return {
            "frame": self.frame.T.ravel().tolist(),
            "view": {"centre": self.centre, "size": self.size, "pixels": self.pixels, "top": self.top, "depth": self.depth},
        }

    def pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """``x, y (h, w) float64``: each screen pixel's centre in the local frame, rows north
        to south."""
        w, h = self.pixels
        px = self.size[0] / w
        x = self.centre[0] - self.size[0] / 2 + (np.arange(w) + 0.5) * px
        y = self.centre[1] + self.size[1] / 2 - (np.arange(h) + 0.5) * px
        return np.meshgrid(x, y)


def open_tilesets(client: ClientPage, server: Server, view: View, urls: dict[str, str], point_size: int = 1) -> None:
    """Open tilesets (layer urls) in the page and wait until everything is loaded and drawn."""
    options = view.options() | {"tilesets": {k: f"{server.base_url}city/{u}" for k, u in urls.items()}, "pointSize": point_size}
    client.evaluate("(o) => window.client.open(o)", options)
    client.page.wait_for_function("() => window.client.errors.length > 0 || window.client.loaded()", timeout=LOAD_TIMEOUT_MS, polling=100)
    assert client.evaluate("window.client.errors") == []
    # loaded() can hold for a frame between one level's tiles and the next level's requests (seen
    # on a busy machine): wait until it has held for five frames in a row, as many times as needed
    deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000
    while True:
        frames = client.evaluate("window.client.frames")
        client.page.wait_for_function(
            f"() => window.client.errors.length > 0 || (window.client.loaded() && window.client.frames >= {frames + 2})",
            timeout=LOAD_TIMEOUT_MS,
            polling=100,
        )
        start = client.evaluate("window.client.frames")
        held = client.page.wait_for_function(
            f"() => !window.client.loaded() ? 'no' : window.client.frames >= {start + 5} ? 'yes' : false",
            timeout=LOAD_TIMEOUT_MS,
            polling=50,
        ).json_value()
        if held == "yes" or time.monotonic() > deadline:
            break


# --------------------------------------------------------------------------- colour


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB colours: ``(..., 3) float`` in 0-255 → ``(..., 3) float64``."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.2126729, 0.0193339], [0.3575761, 0.7151522, 0.1191920], [0.1804375, 0.0721750, 0.9503041]])
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def region_means(rgb: np.ndarray, mask: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour and coverage of each region of a ``grid`` (columns, rows) over an image.

    ``rgb (h, w, 3)``, ``mask (h, w) bool`` → ``means (rows, cols, 3) float64`` (NaN where
    nothing is covered), ``coverage (rows, cols) float64``.
    """
    h, w = mask.shape
    rows = np.minimum(np.arange(h) * grid[1] // h, grid[1] - 1)
    cols = np.minimum(np.arange(w) * grid[0] // w, grid[0] - 1)
    region = (rows[:, None] * grid[0] + cols[None, :]).ravel()
    n = grid[0] * grid[1]
    m = mask.ravel()
    total = np.bincount(region, minlength=n)
    count = np.bincount(region[m], minlength=n)
    sums = np.stack([np.bincount(region[m], weights=rgb.reshape(-1, 3)[m, k], minlength=n) for k in range(3)], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / count[:, None]
    return means.reshape(grid[1], grid[0], 3), (count / total).reshape(grid[1], grid[0])


def orthophoto_view(ortho: Path, view: View, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """The orthophoto as the view sees it: for every screen pixel, the orthophoto pixel under
    its centre (local frame → ECEF → the city's CRS), as the sample lidar took its colours.

    Returns ``rgb (h, w, 3) uint8`` and ``inside (h, w) bool``.
    """
    import rasterio
    from pyproj import Transformer

    x, y = view.pixel_centres()
    ecef = np.stack([x.ravel(), y.ravel(), np.zeros(x.size), np.ones(x.size)]).T @ view.frame.T
    to_crs = Transformer.from_crs("EPSG:4978", crs, always_xy=True)
    e, n, _ = to_crs.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    with rasterio.open(ortho) as ds:
        image = ds.read()  # (3, rows, cols) uint8
        col, row = ~ds.transform * (np.asarray(e), np.asarray(n))
    col, row = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
    inside = (col >= 0) & (col < image.shape[2]) & (row >= 0) & (row < image.shape[1])
    rgb = np.zeros((x.size, 3), dtype=np.uint8)
    rgb[inside] = image[:, row[inside], col[inside]].T
    return rgb.reshape(*x.shape, 3), inside.reshape(x.shape)


def capture(client: ClientPage) -> tuple[np.ndarray, np.ndarray]:
    """The canvas as drawn: ``rgb (h, w, 3) uint8`` and ``covered (h, w) bool`` (opaque pixels)."""
    shot = client.evaluate("window.client.capture()")
    rgba = np.frombuffer(base64.b64decode(shot["rgba"]), dtype=np.uint8).reshape(shot["height"], shot["width"], 4)
    return rgba[..., :3], rgba[..., 3] == 255


# --------------------------------------------------------------------------- tests


def _py(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def test_buildings_load_with_their_metadata(client: ClientPage, server: Server, built_city: BuiltCity) -> None:
    """A sanity check of the client: every building of the layer arrives with its source
    attributes (EXT_mesh_features + EXT_structural_metadata through the plugins' API)."""
    if built_city.gpkg is None:
        pytest.skip("no source GeoPackage for this city")
    import pyogrio.raw
    import shapely
    from pyproj import Transformer

    layer = built_city.layer("buildings")
    tileset = json.loads((built_city.tiles_dir / layer["url"]).read_text())
    view = View.over(tileset, 1.0)
    open_tilesets(client, server, view, {"buildings": layer["url"]})
    stats = client.evaluate("window.client.stats('buildings')")
    assert stats["models"] >= 1 and stats["triangles"] > 0, stats

    meta, _fids, geometry, fields = pyogrio.raw.read(built_city.gpkg)
    names = list(meta["fields"])
    source = {str(row[names.index("id")]): dict(zip(names, map(_py, row))) for row in zip(*fields)}
    features = client.evaluate("window.client.features('buildings')")
    assert {f["className"] for f in features} == {"building"}
    by_id = {f["properties"]["id"]: f["properties"] for f in features}
    assert len(by_id) == len(features) == layer["count"], f"{len(features)} features, {len(by_id)} ids, layer count {layer['count']}"
    assert set(by_id) <= set(source), sorted(set(by_id) - set(source))[:5]
    for key, props in by_id.items():
        for name, value in source[key].items():
            if isinstance(value, float):
                assert props[name] == pytest.approx(value, rel=1e-9), (key, name, props[name], value)
            else:
                assert props[name] == value, (key, name, props[name], value)

    # a ray straight down on the tallest building hits it, and its feature id leads to its row
    tallest = max(by_id.values(), key=lambda p: p["height"])
    i = next(i for i, row in enumerate(zip(*fields)) if row[names.index("id")] == tallest["id"])
    shape = shapely.from_wkb(geometry[i])
    point = shape.representative_point()
    to_ecef = Transformer.from_crs(meta["crs"] or built_city.source_crs, "EPSG:4978", always_xy=True)
    ground = np.array([*to_ecef.transform(point.x, point.y, 0.0), 1.0])
    local = np.linalg.solve(view.frame, ground)
    hit = client.evaluate("([x, y]) => window.client.pick('buildings', x, y)", [float(local[0]), float(local[1])])
    assert hit is not None and hit["properties"] is not None, hit
    assert hit["properties"]["id"] == tallest["id"]
    client.assert_clean()


def test_lidar_colours_match_the_orthophoto(client: ClientPage, server: Server, built_city: BuiltCity) -> None:
    """The lidar, rendered straight down, has the orthophoto's colours region by region."""
    layer = built_city.layer("pointcloud")
    if not layer.get("has_color", True):
        pytest.skip("the point cloud has no colours")
    if layer["count"] > MAX_POINTS:
        pytest.skip(f"{layer['count']} points are too many to draw whole in one page")
    # where cim.sample writes the orthophoto the lidar's colours were sampled from
    ortho = built_city.gpkg.parent / "ortho.tif" if built_city.gpkg is not None else None
    if ortho is None or not ortho.is_file():
        pytest.skip("no source orthophoto for this city")

    tileset = json.loads((built_city.tiles_dir / layer["url"]).read_text())
    view = View.over(tileset, PIXEL_SIZE)
    # splats about 2.5 mean point spacings wide close the gaps between the (random) points:
    # 6 px on the tiny city, 99% of the view covered
    density = layer["count"] / (view.size[0] * view.size[1])
    point_size = int(np.ceil(2.5 / np.sqrt(density) / PIXEL_SIZE))
    client.page.set_viewport_size({"width": view.pixels[0], "height": view.pixels[1]})
    open_tilesets(client, server, view, {"lidar": layer["url"]}, point_size)
    stats = client.evaluate("window.client.stats('lidar')")
    assert stats["points"] == layer["count"], f"drew {stats['points']} of {layer['count']} points: {stats}"

    drawn, covered = capture(client)
    reference, inside = orthophoto_view(ortho, view, built_city.source_crs or built_city.city["crs"])
    mask = covered & inside
    got, coverage = region_means(drawn, mask, GRID)
    want, _ = region_means(reference, mask, GRID)
    used = coverage >= MIN_COVERAGE
    assert used.sum() >= 0.75 * used.size, f"only {used.sum()} of {used.size} regions are covered: {np.round(coverage, 2)}"
    lab_got, lab_want = srgb_to_lab(got[used]), srgb_to_lab(want[used])
    delta_e = np.linalg.norm(lab_got - lab_want, axis=-1)
    lighter = float(np.mean(lab_got[:, 0] - lab_want[:, 0]))
    client.assert_clean()
    assert delta_e.max() <= MAX_DELTA_E, (
        f"lidar vs orthophoto over {used.sum()} regions: ΔE76 mean {delta_e.mean():.1f}, max {delta_e.max():.1f} "
        f"(allowed {MAX_DELTA_E}); the lidar is {lighter:+.1f} L* lighter on average"
    )
