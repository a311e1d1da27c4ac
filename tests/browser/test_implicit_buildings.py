"""The viewer on a buildings layer written with implicit tiling (subtrees with tile metadata).

The city of this module is the tiny sample's footprints alone, as a quadtree of small tiles
forced implicit (``implicit_tiles = 0``, two-level subtrees): CesiumJS fetches the subtrees,
descends to the tiles below the first subtree and picks the tallest building.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

from .helpers import BuiltCity, Server, ViewerPage, build_city, click_canvas_centre, run_server, tallest_building

pytestmark = pytest.mark.browser

RECIPE = """\
[city]
name = "implicit"
title = "Implicit buildings"
crs = "EPSG:4544"

[[layers]]
id = "buildings"
kind = "buildings"
title = "Buildings (implicit)"
source = "data/buildings.gpkg"
height = "height"
floors = "floors"
max_features = 6
implicit_tiles = 0
subtree_levels = 2
"""


@pytest.fixture(scope="module")
def built_city(browser_prereqs: None, tiny_sources, tmp_path_factory: pytest.TempPathFactory) -> BuiltCity:
    """Overrides the session's city for this module: the tiny sample's buildings alone, implicit."""
    src = tmp_path_factory.mktemp("implicit-city") / "src"
    (src / "data").mkdir(parents=True)
    shutil.copy(tiny_sources.buildings, src / "data" / "buildings.gpkg")
    (src / "city.toml").write_text(RECIPE)
    return build_city(src / "city.toml", src.parent / "tiles")


@pytest.fixture(scope="module")
def server(built_city: BuiltCity, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(built_city.tiles_dir, tmp_path_factory.mktemp("implicit-server")) as srv:
        yield srv


def test_the_viewer_loads_implicit_buildings_and_picks_one(viewer: ViewerPage, built_city: BuiltCity) -> None:
    page = viewer.page
    layer = built_city.layer("buildings")
    assert "implicitTiling" in (built_city.tiles_dir / "buildings" / "tileset.json").read_text()
    target = tallest_building(built_city)
    page.evaluate("([lon, lat, h]) => window.cim.lookAt(lon, lat, h, 150)", [target["lon"], target["lat"], layer["bounds"]["max_height"]])
    viewer.wait_ready()

    click_canvas_centre(viewer)
    page.wait_for_function("() => window.cim.selection !== null", timeout=30_000, polling=100)
    assert page.text_content("#feature-layer") == layer["title"]
    id_prop = layer.get("id_property", "id")
    assert page.evaluate("window.cim.selection")[id_prop] == target["attrs"][id_prop]

    # the client read subtrees and went below the root subtree's two levels
    subtrees = [u for u in viewer.log.requests if u.endswith(".subtree")]
    assert subtrees, "no subtree was requested"
    levels = [int(m[1]) for u in viewer.log.requests if (m := re.search(r"/tiles/(\d+)-\d+-\d+\.glb", u))]
    assert levels and max(levels) >= 2, sorted(set(levels))
