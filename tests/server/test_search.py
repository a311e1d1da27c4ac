"""Feature search: the index the build writes and the /api/search endpoint over it."""

import json

import pyogrio
import pytest

from cim.server import create_app


@pytest.fixture
async def client(aiohttp_client, tiny_city):
    return await aiohttp_client(create_app(tiny_city))


async def test_search_by_words_finds_the_building_and_its_attributes(client, tiny_sources):
    meta, _, _, fields = pyogrio.raw.read(tiny_sources.buildings)
    cols = dict(zip(meta["fields"], fields))
    i = int(cols["height"].argmax())
    name, fid = str(cols["name"][i]), str(cols["id"][i])
    resp = await client.get("/api/search", params={"q": name})
    assert resp.status == 200
    body = await resp.json()
    assert body["count"] >= 1
    assert body["results"][0]["title"] == name  # an exact title ranks first
    top = next(r for r in body["results"] if r["id"] == fid)  # names need not be unique
    assert top["title"] == name and top["layer"] == "buildings"
    # every source attribute, with its JSON type (integers stay integers, null stays null)
    expected = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()}
    assert top["properties"].keys() == expected.keys()
    for k, v in expected.items():
        got = top["properties"][k]
        assert type(got) is type(v) or (v is None and got is None), (k, got, v)
        assert got == pytest.approx(v) if isinstance(v, float) else got == v, (k, got, v)
    assert top["top"] - top["base"] == pytest.approx(float(cols["height"][i]), abs=1e-6)
    assert 105.6 < top["lon"] < 105.8 and 34.5 < top["lat"] < 34.7
    # ids match by prefix; words in any text attribute match too
    resp = await client.get("/api/search", params={"q": fid[:-1], "limit": "200"})
    assert fid in {r["id"] for r in (await resp.json())["results"]}
    district = str(cols["district"][i])
    resp = await client.get("/api/search", params={"q": district, "limit": "200"})
    assert all(r["properties"]["district"] == district for r in (await resp.json())["results"])


async def test_search_by_box_returns_only_features_inside(client, tiny_city):
    city = json.loads((tiny_city / "city.json").read_text())
    assert city["search"]["api"] == "/api/search"
    b = city["bounds"]
    mid = (b["west"] + b["east"]) / 2
    resp = await client.get("/api/search", params={"bbox": f"{b['west']},{b['south']},{mid},{b['north']}", "limit": "200"})
    results = (await resp.json())["results"]
    assert results and all(r["lon"] <= mid + 0.001 for r in results)
    resp = await client.get("/api/search", params={"bbox": "0,0,1,1"})
    assert (await resp.json())["count"] == 0


async def test_search_rejects_bad_queries_with_400(client):
    for params in ({}, {"bbox": "1,2,3"}, {"bbox": "5,0,1,1"}, {"q": "x", "limit": "many"}):
        resp = await client.get("/api/search", params=params)
        assert resp.status == 400, params
        assert "error" in await resp.json()
    resp = await client.get("/api/search", params={"q": '"); DROP TABLE features; --'})
    assert resp.status == 200  # quoted into a harmless FTS phrase


def test_box_search_finds_exactly_the_buildings_whose_footprint_meets_the_box(tiny_sources, tiny_city):
    """Checked against the source footprints (to lon/lat), away from the box edges by 2 m."""
    import numpy as np
    import shapely

    from cim.crs import to_lonlat
    from cim.searchindex import search
    from cim.sources.footprints import read_footprints

    table = read_footprints(tiny_sources.buildings)
    b = shapely.bounds(table.geometries)
    w, s = to_lonlat(b[:, 0], b[:, 1], table.crs)
    e, n = to_lonlat(b[:, 2], b[:, 3], table.crs)
    city = json.loads((tiny_city / "city.json").read_text())["bounds"]
    margin = 2e-5  # about 2 m in degrees
    import sqlite3

    con = sqlite3.connect(tiny_city / "search.sqlite")
    indexed = {r[0] for r in con.execute("SELECT fid FROM features WHERE layer = 'buildings'")}
    con.close()
    assert 100 < len(indexed) <= len(table)  # all but those a BIM model replaces
    judged = 0
    rng = np.random.default_rng(7)
    for _ in range(12):
        x0, y0 = rng.uniform([city["west"], city["south"]], [city["east"], city["north"]])
        box = (x0, y0, x0 + rng.uniform(0.0005, 0.004), y0 + rng.uniform(0.0005, 0.004))
        results = search(tiny_city / "search.sqlite", bbox=box, limit=200)
        if len(results) == 200:
            continue  # cut at the limit (a BIM model's elements): cannot judge completeness
        judged += 1
        found = {r["id"] for r in results if r["layer"] == "buildings"}
        inside = (e >= box[0] + margin) & (w <= box[2] - margin) & (n >= box[1] + margin) & (s <= box[3] - margin)
        outside = (e < box[0] - margin) | (w > box[2] + margin) | (n < box[1] - margin) | (s > box[3] + margin)
        assert set(table.ids[inside]) & indexed <= found, box
        assert not (set(table.ids[outside]) & found), box
    assert judged >= 6
