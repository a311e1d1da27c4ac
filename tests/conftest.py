"""Shared fixtures: the built tiny city, the real third-party data (helpers are in tests/helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest

import cim
from tests.helpers import REALDATA


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata, or a skip that says why."""
    if not (REALDATA / "SOURCES.md").exists():
        pytest.skip(f"real third-party data not found at {REALDATA} (the ../shared folder beside the checkout)")
    return REALDATA


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> cim.samplecity.SampleCity:
    """The tiny preset's sources (read-only for tests: copy before changing)."""
    return cim.sample("tiny", tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_city(tiny_sources, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny city built with small tiles, so that it has a real tree of levels of detail."""
    out = tmp_path_factory.mktemp("tiny-tiles") / "tianshui"
    text = tiny_sources.recipe.read_text().replace("cim_level = 2", "cim_level = 2\nmax_features = 24")
    recipe = tiny_sources.root / "city-small-tiles.toml"
    recipe.write_text(text)
    cim.build(recipe, out)
    return out


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``) the browser tests share
    one built city, one server and one Chromium: they run on one worker, in their order.
    (pytest is held below 9 in the test extra: pytest-xdist 3.8 groups by renaming a test's node
    id, which pytest 9 no longer reads, so its loadgroup would scatter the group.)"""
    for item in items:
        if item.nodeid.startswith("tests/browser/"):
            item.add_marker(pytest.mark.xdist_group("browser"))
    # a Dask client leaves threads for the rest of the process (its IO loop, its offload pool),
    # and rightly no fork is allowed beside them: the Dask tests run last in their process, after
    # the tests of the fork policy (tests/test_engines.py, tests/test_runtime.py) and of the
    # layers that fork
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_engine_dask.py"))
