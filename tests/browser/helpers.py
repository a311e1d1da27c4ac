"""What the browser tests share: the server runner, the page wrapper and picture statistics.

The fixtures live in ``conftest.py``; test modules import these helpers from here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
VIEWER_DIR = REPO / "viewer"
CESIUM_DIR = VIEWER_DIR / "node_modules" / "cesium" / "Build" / "Cesium"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The canvas is the viewport less the 340 px sidebar; SwiftShader draws about 1.5x as many frames
# a second at 1024 x 640 as at 1280 x 800, and no test depends on the size.
VIEWPORT = {"width": 1024, "height": 640}
# Cesium renders about 3 frames/s under SwiftShader: be generous.
READY_TIMEOUT_MS = 120_000
SERVER_START_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- the city


@dataclass
class BuiltCity:
    tiles_dir: Path
    city: dict
    gpkg: Path | None = None
    source_crs: str | None = None

    def layer(self, kind: str) -> dict:
        """The first layer of `kind` in city.json."""
        for layer in self.city.get("layers", []):
            if layer.get("kind") == kind:
                return layer
        raise LookupError(f"city.json has no {kind!r} layer")

    def layers(self, kind: str) -> list[dict]:
        return [layer for layer in self.city.get("layers", []) if layer.get("kind") == kind]


def build_city(recipe: Path, tiles: Path) -> BuiltCity:
    """``cim.build(recipe, tiles)`` and the city.json it wrote."""
    import cim

    if not hasattr(cim, "build"):
        pytest.skip("cim.build is not available yet")
    cim.build(recipe, tiles)
    city = json.loads((tiles / "city.json").read_text())
    gpkg = recipe.parent / "data" / "buildings.gpkg"
    return BuiltCity(tiles, city, gpkg if gpkg.is_file() else None, city.get("crs"))


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def run_server(city_dir: Path, log_dir: Path, *extra: str) -> Iterator[Server]:
    """Run ``python -m cim.server CITY_DIR [extra arguments]`` on a free port until the block ends."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cim.server", str(city_dir), "--host", "127.0.0.1", "--port", str(port), *extra],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(base, proc, log_path)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"cim.server exited with {proc.returncode}:\n{server.log()}")
            try:
                with urllib.request.urlopen(base + "api/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"cim.server did not answer /api/health within {SERVER_START_TIMEOUT_S} s:\n{server.log()}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- the page


@dataclass
class PageLog:
    """Everything the page asked for or complained about."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    console_warnings: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def outside(self, base_url: str) -> list[str]:
        return [u for u in self.requests if not u.startswith((base_url, "data:", "blob:"))]


@dataclass
class ViewerPage:
    page: object  # playwright.sync_api.Page
    log: PageLog
    base_url: str
    shots: Path

    def wait_ready(self, timeout: int = READY_TIMEOUT_MS) -> None:
        """Wait until window.cim.ready (or an error was recorded); fail on errors."""
        self.page.wait_for_function(
            "() => window.cim && (window.cim.ready || window.cim.errors.length > 0)",
            timeout=timeout,
            polling=100,
        )
        errors = self.page.evaluate("window.cim.errors")
        assert errors == [], f"viewer reported errors: {errors}"

    def reset(self) -> None:
        """Back to the state right after loading (window.cim.reset()), and wait until ready."""
        self.page.evaluate("() => { window.cim.reset(); }")
        self.wait_ready()

    def assert_clean(self) -> None:
        """Nothing was requested outside the server and nothing failed, since the page opened."""
        assert self.log.outside(self.base_url) == [], self.log.outside(self.base_url)
        assert self.log.console_errors == [], self.log.console_errors
        assert self.log.page_errors == [], self.log.page_errors
        errors = self.page.evaluate("window.cim.errors")
        assert errors == [], errors

    def screenshot(self, name: str) -> bytes:
        """PNG of the Cesium canvas only, also saved under the test's tmp dir."""
        data = self.page.locator("#cesium-container canvas").first.screenshot()
        (self.shots / f"{name}.png").write_bytes(data)
        return data


def open_viewer(browser: object, base_url: str, shots: Path) -> ViewerPage:
    page = browser.new_page(viewport=VIEWPORT)
    log = PageLog()
    page.on("request", lambda req: log.requests.append(req.url))

    def on_console(msg: object) -> None:
        if msg.type == "error":
            log.console_errors.append(msg.text)
        elif msg.type == "warning":
            log.console_warnings.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda err: log.page_errors.append(str(err)))
    page.goto(base_url)
    return ViewerPage(page, log, base_url, shots)


def wait_frames(vp: ViewerPage, n: int = 3) -> None:
    """Request renders and wait until `n` more frames were drawn."""
    start = vp.page.evaluate("window.cim.frames")
    vp.page.wait_for_function(
        f"() => {{ window.cim.viewer.scene.requestRender(); return window.cim.frames >= {start + n}; }}",
        timeout=60_000,
        polling=100,
    )


def click_canvas_centre(vp: ViewerPage) -> None:
    centre = vp.page.evaluate("window.cim.canvasCenter()")
    vp.page.mouse.click(centre["x"], centre["y"])


def pick_canvas_centre(vp: ViewerPage) -> dict | None:
    """Properties of the feature at the canvas centre (window.cim.pickAt), selecting nothing."""
    return vp.page.evaluate(
        "() => { const c = window.cim.viewer.scene.canvas; return window.cim.pickAt(c.clientWidth / 2, c.clientHeight / 2); }"
    )


def panel_rows(vp: ViewerPage) -> dict[str, str]:
    """The selection panel's rows: attribute (the feature's property id) -> the text shown.

    A row's header shows the attribute's name, less its property set ("Pset_WallCommon.IsExternal"
    shows "IsExternal" under the set's group row), so the header must end the attribute's name.
    """
    rows = vp.page.eval_on_selector_all(
        "#feature-props tr[data-key]",
        "rows => rows.map(r => [r.dataset.key, r.querySelector('th').textContent, r.querySelector('td').textContent])",
    )
    for key, th, _ in rows:
        assert key.endswith(th.replace(".", "_")) or key == th, f"row data-key {key!r} does not match its header {th!r}"
    return {key: td for key, _, td in rows}


# --------------------------------------------------------------------------- source data


def tallest_building(city: BuiltCity) -> dict:
    """The tallest building of the source GeoPackage: attributes and a lon/lat inside it."""
    if city.gpkg is None:
        pytest.skip("no source GeoPackage for this city")
    import pyogrio.raw
    import shapely
    from pyproj import CRS, Transformer

    meta, _fids, geometry, fields = pyogrio.raw.read(city.gpkg)
    names = list(meta["fields"])
    heights = np.asarray(fields[names.index("height")], dtype=float)
    i = int(np.nanargmax(heights))
    attrs = {name: _py(values[i]) for name, values in zip(names, fields)}
    shape = shapely.from_wkb(geometry[i])
    point = shape.centroid
    if not shape.contains(point):
        point = shape.representative_point()
    src_crs = CRS.from_user_input(meta["crs"]) if meta.get("crs") else CRS.from_user_input("EPSG:4544")
    to_lonlat = Transformer.from_crs(src_crs, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(point.x, point.y)
    return {"attrs": attrs, "lon": lon, "lat": lat}


def _py(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- pictures

# PNGs are decoded inside the page (no Pillow needed): base64 in, ImageData out.
_DECODE_PNG_JS = """
  const decode = async (b64) => {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  };
"""

# Distinct colours of the first image, the fraction of pixels that differ between the first and
# the second, and the centre pixel.
_IMAGE_STATS_JS = (
    """
async ([a, b]) => {"""
    + _DECODE_PNG_JS
    + """
  const ia = await decode(a);
  const pa = ia.data;
  const colours = new Set();
  for (let i = 0; i < pa.length; i += 4) colours.add((pa[i] << 16) | (pa[i + 1] << 8) | pa[i + 2]);
  const c = 4 * (Math.floor(ia.height / 2) * ia.width + Math.floor(ia.width / 2));
  const out = { width: ia.width, height: ia.height, distinct: colours.size,
                centre: [pa[c], pa[c + 1], pa[c + 2]], diff: null };
  if (b) {
    const pb = (await decode(b)).data;
    let changed = 0;
    for (let i = 0; i < pa.length; i += 4) {
      const d = Math.abs(pa[i] - pb[i]) + Math.abs(pa[i + 1] - pb[i + 1]) + Math.abs(pa[i + 2] - pb[i + 2]);
      if (d > 24) changed++;
    }
    out.diff = changed / (ia.width * ia.height);
  }
  return out;
}
"""
)


def image_stats(vp: ViewerPage, png: bytes, other: bytes | None = None) -> dict:
    enc = [base64.b64encode(png).decode("ascii"), base64.b64encode(other).decode("ascii") if other else None]
    return vp.page.evaluate(_IMAGE_STATS_JS, enc)


# The mean colour of each cell of a grid over the picture less an `inset` margin (where Cesium's
# buttons and credits sit). Given the same view drawn over black and over white, each pixel is
# `alpha * colour + (1 - alpha) * background`: over white it is lighter by (1 - alpha) * 255, which
# gives alpha, and the cell's colour is the coverage-weighted mean of the picture over black, so
# the background between points and their antialiased edges weigh nothing.
_REGION_COLOURS_JS = (
    """
async ([a, b, cols, rows, inset]) => {"""
    + _DECODE_PNG_JS
    + """
  const { data, width, height } = await decode(a);
  const white = b ? (await decode(b)).data : null;
  const w = width - 2 * inset, h = height - 2 * inset;
  const out = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const x0 = inset + Math.floor((c * w) / cols), x1 = inset + Math.floor(((c + 1) * w) / cols);
    const y0 = inset + Math.floor((r * h) / rows), y1 = inset + Math.floor(((r + 1) * h) / rows);
    const sum = [0, 0, 0];
    let covered = 0;
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) {
      const i = 4 * (y * width + x);
      const lift = white ? white[i] - data[i] + white[i + 1] - data[i + 1] + white[i + 2] - data[i + 2] : 0;
      covered += Math.min(Math.max(1 - lift / (3 * 255), 0), 1);
      for (let k = 0; k < 3; k++) sum[k] += data[i + k];
    }
    const n = (x1 - x0) * (y1 - y0);
    out.push({ row: r, col: c, mean: covered > 0 ? sum.map((v) => v / covered) : null, coverage: covered / n });
  }
  return out;
}
"""
)


def region_colours(
    vp: ViewerPage, on_black: bytes, on_white: bytes | None = None, grid: tuple[int, int] = (4, 4), inset: int = 48
) -> list[dict]:
    """Mean sRGB colour (0-255) and coverage of each cell of a `grid` (columns, rows), row by row.

    With `on_white` (the same view drawn over a white background, `on_black` over black) the
    mean is of what covers the cell, weighted by coverage; without it, of the whole cell.
    """
    enc = [base64.b64encode(on_black).decode("ascii"), base64.b64encode(on_white).decode("ascii") if on_white else None]
    return vp.page.evaluate(_REGION_COLOURS_JS, [*enc, grid[0], grid[1], inset])


def srgb_to_lab(rgb: object) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB colours: (..., 3) values 0-255 -> (..., 3) float."""
    c = np.asarray(rgb, dtype=float) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    d = 6.0 / 29.0
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e76(a: object, b: object) -> np.ndarray:
    """CIE76 colour difference (Euclidean in L*a*b*) between sRGB colours (..., 3), 0-255."""
    return np.linalg.norm(srgb_to_lab(a) - srgb_to_lab(b), axis=-1)
