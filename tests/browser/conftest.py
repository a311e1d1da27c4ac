"""Fixtures for the browser tests: a built sample city, the real server, headless Chromium.

The tests need Debian's ``/usr/bin/chromium`` and ``viewer/node_modules/cesium`` (both installed
by the Makefile); without them they are skipped, with the reason.

``CIM_BROWSER_CITY=/path/to/built/city`` runs the tests against an already built city folder
instead of building the tiny sample (the tests that need the source GeoPackage are then skipped
unless ``CIM_BROWSER_GPKG`` names it).

``CIM_BROWSER_ORDER=reverse`` runs each module's tests in reverse order, ``CIM_BROWSER_ORDER=N``
in an order shuffled with seed N: every test starts from the viewer's initial state, so any
order passes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    CESIUM_DIR,
    CHROMIUM,
    CHROMIUM_ARGS,
    BuiltCity,
    Server,
    ViewerPage,
    build_city,
    open_viewer,
    run_server,
)

_CALL_FAILED = pytest.StashKey[bool]()


# --------------------------------------------------------------------------- order


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    order = os.environ.get("CIM_BROWSER_ORDER")
    if not order:
        return
    here = Path(__file__).parent
    # reorder within each module: module-scoped fixtures (browser, page) stay set up once
    modules: dict[Path, list[int]] = {}
    for i, item in enumerate(items):
        if here in item.path.parents:
            modules.setdefault(item.path, []).append(i)
    for slots in modules.values():
        tests = [items[i] for i in slots]
        if order == "reverse":
            tests.reverse()
        else:
            random.Random(int(order)).shuffle(tests)
        for i, test in zip(slots, tests):
            items[i] = test


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed


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


@pytest.fixture(scope="session")
def built_city(browser_prereqs: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> BuiltCity:
    """The tiny sample city (the session's ``tiny_sources``), built once per session."""
    override = os.environ.get("CIM_BROWSER_CITY")
    if override:
        tiles = Path(override).resolve()
        gpkg = os.environ.get("CIM_BROWSER_GPKG")
        city = json.loads((tiles / "city.json").read_text())
        return BuiltCity(tiles, city, Path(gpkg) if gpkg else None, city.get("crs"))

    sources = request.getfixturevalue("tiny_sources")  # not when CIM_BROWSER_CITY says the city
    return build_city(sources.recipe, tmp_path_factory.mktemp("browser-city") / "tiles")


@pytest.fixture(scope="session")
def server(built_city: BuiltCity, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(built_city.tiles_dir, tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture
def city_copy(built_city: BuiltCity, tmp_path: Path) -> Path:
    """A writable copy of the built city (for tests that edit city.json)."""
    dst = tmp_path / "city"
    shutil.copytree(built_city.tiles_dir, dst)
    return dst


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


@pytest.fixture(scope="module")
def _loaded_page(browser: object) -> Iterator[dict[str, ViewerPage]]:
    """The module's open viewer page, if any (the `viewer` fixture opens, reuses and drops it)."""
    holder: dict[str, ViewerPage] = {}
    yield holder
    if "page" in holder:
        holder.pop("page").page.close()


@pytest.fixture
def viewer(
    request: pytest.FixtureRequest,
    _loaded_page: dict[str, ViewerPage],
    browser: object,
    server: Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ViewerPage]:
    """The viewer on the module's city, loaded, in its initial state.

    A module's tests share one page: loading it takes Cesium 20-40 s under SwiftShader on this
    2-core box, going back to the initial state (``window.cim.reset()``: no selection, layers as
    city.json says, tools at their defaults, camera home) a few seconds. A page whose test failed
    is closed, so the next test opens a fresh one. After every test the page must have requested
    nothing outside the server and logged no error.
    """
    vp = _loaded_page.get("page")
    clean = False
    try:
        if vp is None:
            vp = _loaded_page["page"] = open_viewer(browser, server.base_url, tmp_path_factory.mktemp("screenshots"))
            vp.wait_ready()
        else:
            vp.reset()
        yield vp
        if not request.node.stash.get(_CALL_FAILED, True):
            vp.assert_clean()
            clean = True
    finally:
        if not clean and "page" in _loaded_page:
            _loaded_page.pop("page").page.close()
