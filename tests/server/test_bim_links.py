"""The link between a building and the BIM model that replaced it, on the tiny sample city, from
both ends through /api/features: each model stands in its building's place (the building leaves
the tiles), and the query store keeps the building, so the building links its model and every
element of the model links the building."""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pytest
import shapely

from cim.server import create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
async def client(aiohttp_client, tiny_city):
    return await aiohttp_client(create_app(tiny_city))


@pytest.fixture(scope="module")
def replaced(tiny_sources, tiny_city):
    """The source buildings a BIM model replaced (the ids missing from the tiles' features, as
    city.json counts them), with their footprints, and each model's footprint."""
    manifest = json.loads((tiny_city / "city.json").read_text())
    buildings = next(layer for layer in manifest["layers"] if layer["kind"] == "buildings")
    bim = next(layer for layer in manifest["layers"] if layer["kind"] == "bim")
    meta, _, wkb, fields = pyogrio.raw.read(tiny_sources.buildings)
    ids = np.asarray(fields[list(meta["fields"]).index("id")]).astype(str)
    geoms = shapely.from_wkb(wkb)
    models = [shapely.from_wkt(f["wkt"]) for f in bim["footprints"]]
    gone = {}
    for fid, g in zip(ids, geoms):
        under = [m for m in models if shapely.area(shapely.intersection(g, m)) > 0.5 * g.area]
        if under:
            gone[str(fid)] = g
    assert len(gone) == buildings["replaced_by_bim"] == 2
    return gone


async def _json(client, path, **params):
    response = await client.get(path, params=params)
    body = await response.json()
    assert response.status == 200, body
    return body


async def test_a_replaced_building_links_its_model_and_the_model_links_it(client, replaced):
    names = set()
    for fid in replaced:
        building = await _json(client, f"/api/features/buildings/{fid}")
        models = building["links"]["bim"]
        assert len(models) == 1 and models[0]["elements"] > 0, fid
        name = models[0]["model"]
        names.add(name)
        # every element of that model links back to this building
        elements = await _json(client, "/api/query", model=name, limit="200")
        assert elements["total"] == models[0]["elements"]
        for element in elements["results"]:
            detail = await _json(client, f"/api/features/{element['layer']}/{element['id']}")
            assert detail["links"]["building"] == {"layer": "buildings", "id": fid, "title": building["title"]}
    assert len(names) == len(replaced)  # one model each


async def test_the_replaced_buildings_are_counted_with_their_footprints(client, replaced):
    """A model replaces a building in the scene, not in the city: a query over its footprint
    finds the building, with its area."""
    for fid, g in replaced.items():
        body = await _json(client, "/api/query", id=fid, layer="buildings")
        assert body["total"] == 1
        stats = await _json(client, "/api/stats", id=fid, layer="buildings")
        assert stats["footprint_area_m2"] == pytest.approx(g.area, rel=1e-12)
