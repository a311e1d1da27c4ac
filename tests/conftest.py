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


#: browser test modules -> their browser group (see pytest_collection_modifyitems); a module
#: not named here joins group 1. Balanced by the modules' measured times (the whole suite with
#: ``--durations=0``, 2026-12-06: about 680-720 s of tests a group on a loaded machine).
_BROWSER_GROUPS = {
    # group 1
    "test_viewer": 1,
    "test_workspace": 1,
    "test_cityjson": 1,
    "test_mesh": 1,
    "test_i3s_cesium": 1,
    # group 2
    "test_colours": 2,
    "test_access": 2,
    "test_annotations": 2,
    "test_massing": 2,
    "test_shadows": 2,
    # group 3
    "test_compare": 3,
    "test_analysis": 3,
    "test_query_draw": 3,
    "test_layers_of_a_kind": 3,
    "test_diff_viewer": 3,
    "test_implicit_buildings": 3,
    "test_second_client": 3,
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n 3 --dist loadgroup``) the browser tests run in
    three groups, each on its own worker with its own built city, server and Chromium, in their
    order. A browser test mostly waits (for tiles, for frames, for a timer): a whole ``make test``
    on 2 cores with two workers kept them 37 % busy (user + system CPU 890 s in 1,187 s), so three
    workers on two cores take less wall time than two, and the suite's wall time is the browser
    tests'. xdist hands out the largest groups first, so the three groups start on the three
    workers; :data:`_BROWSER_GROUPS` keeps them about equal (a new module joins the first group).
    (pytest is held below 9 in the test extra: pytest-xdist 3.8 groups by renaming a test's node
    id, which pytest 9 no longer reads, so its loadgroup would scatter the groups.)"""
    for item in items:
        if item.nodeid.startswith("tests/browser/"):
            group = _BROWSER_GROUPS.get(item.path.stem, 1)
            item.add_marker(pytest.mark.xdist_group(f"browser-{group}"))
    # a Dask client leaves threads for the rest of the process (its IO loop, its offload pool),
    # and rightly no fork is allowed beside them: the Dask tests run last in their process, after
    # the tests of the fork policy (tests/test_engines.py, tests/test_runtime.py) and of the
    # layers that fork
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_engine_dask.py"))
