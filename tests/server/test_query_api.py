"""The planner query API (issue 13): /api/query (GET, POST), /api/features, /api/stats, /api/schema."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil

import numpy as np
import pyogrio
import pytest
import shapely

from cim.access import AccessControl
from cim.audit import AuditLog
from cim.server import create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RESULT_KEYS = {"layer", "id", "title", "lon", "lat", "base", "top", "properties", "anchor"}


@pytest.fixture
async def client(aiohttp_client, tiny_city):
    return await aiohttp_client(create_app(tiny_city))


@pytest.fixture(scope="module")
def cols(tiny_sources):
    meta, _, _, fields = pyogrio.raw.read(tiny_sources.buildings)
    return {k: np.asarray(v) for k, v in zip(meta["fields"], fields)}


async def get_json(client, path, **params):
    resp = await client.get(path, params=params)
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def test_text_query_pages_through_chinese_matches(client, cols):
    want = {str(i) for i, a in zip(cols["id"], cols["address"]) if "秦州" in a}
    first = await get_json(client, "/api/query", text="秦州", layer="buildings", limit="10")
    assert first["total"] >= len(want) - 2 and first["count"] == 10 and first["offset"] == 0 and first["limit"] == 10
    assert first["fuzzy"] is False
    seen = [r["id"] for r in first["results"]]
    rest = await get_json(client, "/api/query", text="秦州", layer="buildings", limit="1000", offset="10")
    seen += [r["id"] for r in rest["results"]]
    assert len(seen) == len(set(seen)) == first["total"] and set(seen) <= want
    hit = first["results"][0]
    assert set(hit) == RESULT_KEYS and "秦州" in hit["properties"]["address"]
    assert shapely.contains(
        shapely.box(hit["lon"] - 0.001, hit["lat"] - 0.001, hit["lon"] + 0.001, hit["lat"] + 0.001), shapely.Point(hit["anchor"])
    )


async def test_the_old_search_gives_the_same_anchor_inside_the_footprint(client):
    found = await get_json(client, "/api/search", q="秦州区", limit="50")
    queried = await get_json(client, "/api/query", text="秦州区", limit="1000")
    anchors = {(r["layer"], r["id"]): r["anchor"] for r in queried["results"]}
    assert found["count"] == 50 and all(anchors[(r["layer"], r["id"])] == r["anchor"] for r in found["results"])


async def test_post_takes_polygons_as_pairs_and_equals_get(client):
    ring = [[105.7033, 34.5776], [105.7058, 34.5778], [105.7045, 34.5801]]
    flat = ",".join(f"{c}" for pair in ring for c in pair)
    got = await get_json(client, "/api/query", polygon=flat, where="floors >= 2", sort="-height", limit="500")
    resp = await client.post("/api/query", json={"polygon": ring, "where": "floors >= 2", "sort": "-height", "limit": 500})
    posted = await resp.json()
    assert resp.status == 200 and posted == got and got["total"] > 3
    heights = [r["properties"]["height"] for r in got["results"]]
    assert heights == sorted(heights, reverse=True)
    resp = await client.post("/api/query", json={"polygon": ring, "colour": "red"})
    assert resp.status == 400 and "colour" in (await resp.json())["error"]


async def test_csv_has_a_bom_and_downloads_and_geojson_has_footprints(client):
    resp = await client.get("/api/query", params={"text": "秦州区", "layer": "buildings", "format": "csv", "limit": "20"})
    raw = await resp.read()
    assert resp.status == 200 and raw.startswith(b"\xef\xbb\xbf")
    assert resp.headers["Content-Type"].startswith("text/csv") and "attachment" in resp.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(table) == 20 and all("秦州区" in row["address"] for row in table)
    assert {"layer", "id", "anchor_lon", "anchor_lat", "name", "name_en", "height"} <= set(table[0])
    resp = await client.get("/api/query", params={"text": "秦州区", "layer": "buildings", "format": "geojson", "limit": "20"})
    doc = json.loads(await resp.text())
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"] and doc["type"] == "FeatureCollection"
    assert [f["properties"]["cim:id"] for f in doc["features"]] == [row["id"] for row in table]
    for f in doc["features"]:
        shape = shapely.geometry.shape(f["geometry"])
        assert shape.geom_type in ("Polygon", "MultiPolygon") and shape.contains(shapely.Point(f["properties"]["cim:anchor"]))


async def test_feature_stats_and_schema(client, cols):
    i = 3
    body = await get_json(client, f"/api/features/buildings/{cols['id'][i]}")
    assert body["id"] == cols["id"][i] and body["links"]["district"] == cols["district"][i]
    assert set(body["links"]) == {"bim", "points", "district", "building"}
    assert (await client.get("/api/features/buildings/NOPE")).status == 404
    stats = await get_json(client, "/api/stats", layer="buildings", where="use = 'residential'", group_by="district")
    assert stats["count"] == (await get_json(client, "/api/query", layer="buildings", where="use = 'residential'"))["total"]
    assert sum(g["count"] for g in stats["groups"]) == stats["count"] > 0
    assert sum(stats["height_histogram"]["counts"]) == stats["count"]
    assert stats["floor_area_m2"] > stats["footprint_area_m2"] > 0
    schema = await get_json(client, "/api/schema")
    b = schema["layers"]["buildings"]
    assert b["height"] == "number" and b["floors"] == "integer" and b["use"] == "string" and b["name_en"] == "string"
    doc = await get_json(client, "/api/openapi.json")
    assert {"/api/query", "/api/stats", "/api/schema", "/api/features/{layer}/{id}"} <= set(doc["paths"])
    assert set(doc["paths"]["/api/query"]) == {"get", "post"}


HOSTILE = [
    {"where": "height > 50; DROP TABLE features; --"},
    {"where": "use = '' OR ''=''"},
    {"where": "use = 'x' UNION SELECT * FROM features"},
    {"where": "(" * 200 + "height > 1" + ")" * 200},
    {"where": "height > 50 AND name = '\u202e秦州\x00'"},
    {"where": "\"properties\" = 'x'"},
    {"where": "height > 'abc'"},
    {"where": "🏢 = 1"},
    {"text": "'; DROP TABLE features_text; --"},
    {"text": '"秦州" OR NEAR(a b) *'},
    {"text": "\x00\x01"},
    {"text": "秦州 AND"},
    {"sort": "height; DROP TABLE features"},
    {"polygon": "1,2,3"},
    {"polygon": "105.7,34.5,105.71,34.51,105.71,34.5,105.7,34.51"},
    {"polygon": "nan,1,2,3,4,5"},
    {"bbox": "1,2,3,4,5"},
    {"point": "105.7,34.57", "radius": "-1"},
    {"line": "105.7,34.5", "buffer": "10"},
    {"layer": "../../etc/passwd"},
    {"group_by": "district"},
    {"format": "xlsx"},
    {"limit": "0"},
    {"limit": "1e9"},
]


async def test_hostile_parameters_are_a_400_naming_the_problem_or_an_answer(client):
    for params in HOSTILE:
        resp = await client.get("/api/query", params=params)
        body = await resp.json()
        assert resp.status in (200, 400), (params, resp.status, body)
        if resp.status == 400:
            assert any(name in body["error"] for name in params), (params, body)
    # ten kilobytes: too long for a URL (414) and refused in a body, naming the field
    resp = await client.post("/api/query", json={"where": "use = '" + "秦" * 10_000 + "'"})
    assert resp.status == 400 and "where" in (await resp.json())["error"]
    resp = await client.post("/api/query", data=b"{not json")
    assert resp.status == 400
    resp = await client.get("/api/stats", params={"where": "height >"})
    assert resp.status == 400 and "where" in (await resp.json())["error"]


async def test_restricted_layers_stay_hidden_and_queries_are_audited(aiohttp_client, tiny_city, tmp_path, cols):
    city = tmp_path / "city"
    shutil.copytree(tiny_city, city, copy_function=os.link, ignore=shutil.ignore_patterns(".cim"))
    acl = AccessControl.open(city, create=True)
    acl.add_user("wang", role="planner")
    acl.restrict("buildings", ["planner"])
    token = acl.new_token("wang")
    client = await aiohttp_client(create_app(city))
    anonymous = await get_json(client, "/api/query", text="秦州", limit="1000")
    assert anonymous["total"] == 0
    assert "buildings" not in (await get_json(client, "/api/schema"))["layers"]
    groups = (await get_json(client, "/api/stats", group_by="layer"))["groups"]
    assert [g["key"] for g in groups] == ["bim"]
    assert (await client.get(f"/api/features/buildings/{cols['id'][3]}")).status == 404
    resp = await client.get("/api/query", params={"text": "秦州", "limit": "5"}, headers={"Authorization": f"Bearer {token}"})
    assert (await resp.json())["total"] > 0
    await client.get("/api/query", params={"where": "height >"})
    await client.get("/api/query", params={"text": "秦州", "format": "csv"})
    from cim.server.state import AUDIT

    writer = client.server.app[AUDIT]
    assert writer is not None and writer.flush(10.0)
    records = [r for _, r, _ in AuditLog(city).records() if r is not None]
    actions = [(r["action"], r["status"], r["user"]) for r in records]
    assert ("query", 200, "wang") in actions and ("query", 400, "anonymous") in actions
    assert ("export", 200, "anonymous") in actions and ("stats", 200, "anonymous") in actions
    refused = next(r for r in records if r["action"] == "query" and r["status"] == 400)
    assert refused["detail"]["where"] == "height >" and "where" in refused["detail"]["error"]
