"""Fixtures for the browser tests: a built sample city, the real server, headless Chromium.

The tests need Debian's ``/usr/bin/chromium`` and ``viewer/node_modules/cesium`` (both installed
by the Makefile); without them they are skipped, with the reason.

``CIM_BROWSER_CITY=/path/to/built/city`` runs the tests against an already built city folder
instead of building the tiny sample (the tests that need the source GeoPackage are then skipped
unless ``CIM_BROWSER_GPKG`` names it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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
VIEWPORT = {"width": 1280, "height": 800}
# Cesium renders about 3 frames/s under SwiftShader: be generous.
READY_TIMEOUT_MS = 120_000
SERVER_START_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- prerequisites


@pytest.fixture(scope="session")
def browser_prereqs() -> None:
    """Skip (with the reason) when Chromium, CesiumJS or Playwright is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium; see the Makefile)")
    if not (CESIUM_DIR / "Cesium.js").is_file():
        pytest.skip(f"{CESIUM_DIR} is missing (run `npm install` in viewer/; see the Makefile)")
    pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")


# --------------------------------------------------------------------------- the city


@dataclass
class BuiltCity:
    tiles_dir: Path
    city: dict
    gpkg: Path | None = None
    source_crs: str | None = None

    def layer(self, kind: str) -> dict:
        for layer in self.city.get("layers", []):
            if layer.get("kind") == kind:
                return layer
        raise LookupError(f"city.json has no {kind!r} layer")


@pytest.fixture(scope="session")
def built_city(browser_prereqs: None, tmp_path_factory: pytest.TempPathFactory) -> BuiltCity:
    """The tiny sample city, generated and built once per session."""
    override = os.environ.get("CIM_BROWSER_CITY")
    if override:
        tiles = Path(override).resolve()
        gpkg = os.environ.get("CIM_BROWSER_GPKG")
        city = json.loads((tiles / "city.json").read_text())
        return BuiltCity(tiles, city, Path(gpkg) if gpkg else None, city.get("crs"))

    import cim

    for name in ("sample", "build"):
        if not hasattr(cim, name):
            pytest.skip(f"cim.{name} is not available yet")
    root = tmp_path_factory.mktemp("browser-city")
    src = root / "src"
    tiles = root / "tiles"
    cim.sample("tiny", src)
    cim.build(src / "city.toml", tiles)
    city = json.loads((tiles / "city.json").read_text())
    gpkg = src / "data" / "buildings.gpkg"
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
def run_server(city_dir: Path, log_dir: Path) -> Iterator[Server]:
    """Run ``python -m cim.server CITY_DIR`` on a free port until the block ends."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cim.server", str(city_dir), "--host", "127.0.0.1", "--port", str(port)],
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


@pytest.fixture(scope="session")
def server(built_city: BuiltCity, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(built_city.tiles_dir, tmp_path_factory.mktemp("server")) as srv:
        yield srv


# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(browser_prereqs: None) -> Iterator[object]:
    """Headless Chromium, per module.

    Playwright's sync API keeps an asyncio loop running while it is open, which breaks
    pytest-asyncio tests that run after it (``Runner.run() cannot be called from a running
    event loop``): it must be closed before the next module's tests, hence not session-scoped.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


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


@pytest.fixture(scope="module")
def viewer(browser: object, server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerPage]:
    """The viewer on the built city, opened once per module and loaded (window.cim.ready)."""
    shots = tmp_path_factory.mktemp("screenshots")
    vp = open_viewer(browser, server.base_url, shots)
    try:
        vp.wait_ready()
        yield vp
    finally:
        vp.page.close()


@pytest.fixture
def city_copy(built_city: BuiltCity, tmp_path: Path) -> Path:
    """A writable copy of the built city (for tests that edit city.json)."""
    dst = tmp_path / "city"
    shutil.copytree(built_city.tiles_dir, dst)
    return dst
