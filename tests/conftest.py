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


#: browser test modules of the second browser group (see pytest_collection_modifyitems)
_SECOND_BROWSER = frozenset(
    {
        "test_workspace",
        "test_colours",
        "test_access",
        "test_cityjson",
        "test_layers_of_a_kind",
        "test_implicit_buildings",
        "test_mesh",
        "test_i3s_cesium",
        "test_second_client",
        "test_massing",
    }
)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``) the browser tests run in
    two groups, each on its own worker with its own built city, server and Chromium, in their
    order: a browser test mostly waits (for tiles, for frames), so two of them at once take
    little more than one, and the suite's wall time is the browser tests'. xdist hands out the
    largest groups first, so the two groups start on the two workers; :data:`_SECOND_BROWSER`
    keeps them about equal (by the modules' measured times; a new module joins the first group).
    (pytest is held below 9 in the test extra: pytest-xdist 3.8 groups by renaming a test's node
    id, which pytest 9 no longer reads, so its loadgroup would scatter the groups.)"""
    for item in items:
        if item.nodeid.startswith("tests/browser/"):
            second = item.path.stem in _SECOND_BROWSER
            item.add_marker(pytest.mark.xdist_group("browser-2" if second else "browser-1"))
    # a Dask client leaves threads for the rest of the process (its IO loop, its offload pool),
    # and rightly no fork is allowed beside them: the Dask tests run last in their process, after
    # the tests of the fork policy (tests/test_engines.py, tests/test_runtime.py) and of the
    # layers that fork
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_engine_dask.py"))
