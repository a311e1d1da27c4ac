"""The annotations API (批注, issue 13): notes shared by every viewer of a city, changed only by
their author, checked on the way in, exported as GeoJSON, audited.

Each test serves its own copy of the tiny city (hard links), so notes never leak between tests.
Two browsers are two clients with no cookie jar: each sends its own ``cim_author`` cookie.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3

import pytest
import shapely
from aiohttp import DummyCookieJar

from cim.access import AccessControl
from cim.annotations import MAX_TEXT, MAX_VERTICES
from cim.audit import AuditLog
from cim.server import create_app
from cim.server.annotations import AUTHOR_COOKIE
from cim.server.state import AUDIT, CITY_DIR

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# inside the tiny sample city (Tianshui): a pin on a roof, a planned road, a plot
PIN = {"kind": "pin", "coordinates": [[105.7263, 34.5801, 1178.5]], "text": "限高 24 m，请复核", "title": "麦积区 地块 7"}
ROAD = {
    "kind": "polyline",
    "coordinates": [[105.7201, 34.5752, 1150.0], [105.7243, 34.5788, 1152.0], [105.7301, 34.5810, 1149.5]],
    "text": "规划道路",
}
PLOT = {
    "kind": "polygon",
    "coordinates": [[105.7310, 34.5820], [105.7330, 34.5820], [105.7330, 34.5835], [105.7310, 34.5835], [105.7310, 34.5820]],
    "text": "Plot B: keep the trees",
}


@pytest.fixture
def city(tiny_city, tmp_path):
    copy = tmp_path / "city"
    shutil.copytree(tiny_city, copy, copy_function=os.link, ignore=shutil.ignore_patterns(".cim"))
    return copy


@pytest.fixture
async def browsers(aiohttp_client, city):
    """Two anonymous browsers of one server, each keeping its own author cookie by hand."""
    client = await aiohttp_client(create_app(city), cookie_jar=DummyCookieJar())
    return Browser(client), Browser(client)


class Browser:
    """One client's view: its author cookie, once the server gave it one."""

    def __init__(self, client) -> None:
        self.client = client
        self.secret: str | None = None

    async def request(self, method: str, path: str, **kw):
        if self.secret is not None:
            kw.setdefault("headers", {})["Cookie"] = f"{AUTHOR_COOKIE}={self.secret}"
        resp = await self.client.request(method, path, **kw)
        cookie = resp.cookies.get(AUTHOR_COOKIE)
        if cookie is not None:
            assert self.secret is None, "the server handed a second author key to a browser that has one"
            self.secret = cookie.value
        return resp


async def audited(client, action: str) -> list[tuple[str, int]]:
    writer = client.server.app[AUDIT]
    assert writer is not None and writer.flush(10.0)
    city = client.server.app[CITY_DIR]
    return [(r["user"], r["status"]) for _, r, _ in AuditLog(city).records() if r is not None and r["action"] == action]


async def test_a_browser_owns_its_notes_and_every_browser_sees_them(browsers, city):
    a, b = browsers
    assert not (city / ".cim" / "annotations.sqlite").exists()
    listed = await (await b.request("GET", "/api/annotations")).json()
    assert listed == {"total": 0, "offset": 0, "limit": 50, "count": 0, "results": []}
    assert not (city / ".cim" / "annotations.sqlite").exists()  # made on the first write only

    resp = await a.request("POST", "/api/annotations", json=PIN)
    assert resp.status == 201
    note = await resp.json()
    assert {k: note[k] for k in ("kind", "coordinates", "text", "title", "author")} == {**PIN, "author": "anonymous"}
    assert note["created"] == note["updated"] and note["created"].endswith("Z") and note["editable"] is True
    cookie = resp.cookies[AUTHOR_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/api/annotations"
    assert len(a.secret or "") == 43

    with sqlite3.connect(city / ".cim" / "annotations.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        keys = [row[0] for row in con.execute("SELECT author_key FROM annotations")]
    assert keys and a.secret not in keys[0]  # only a hash of the browser's key is kept

    # the second browser sees the note, but it is not its own
    listed = await (await b.request("GET", "/api/annotations")).json()
    assert listed["total"] == 1 and listed["results"][0]["text"] == PIN["text"]
    assert listed["results"][0]["editable"] is False
    path = f"/api/annotations/{note['id']}"
    assert (await b.request("PUT", path, json={"text": "mine now"})).status == 403
    resp = await b.request("DELETE", path)
    assert resp.status == 403 and "author" in (await resp.json())["error"]
    assert b.secret is None  # a refused write makes no author

    own = await (await b.request("POST", "/api/annotations", json=ROAD)).json()
    assert own["editable"] is True
    assert (await a.request("DELETE", f"/api/annotations/{own['id']}")).status == 403

    # the first browser edits and deletes its own
    resp = await a.request("PUT", path, json={"text": "限高 30 m", "title": ""})
    assert resp.status == 200
    edited = await resp.json()
    assert edited["text"] == "限高 30 m" and edited["title"] == "" and edited["coordinates"] == PIN["coordinates"]
    assert edited["created"] == note["created"] and edited["updated"] > note["updated"]
    assert (await (await b.request("GET", path)).json())["text"] == "限高 30 m"
    assert (await a.request("DELETE", path)).status == 200
    assert (await a.request("GET", path)).status == 404
    assert (await a.request("DELETE", path)).status == 404
    listed = await (await a.request("GET", "/api/annotations")).json()
    assert [n["id"] for n in listed["results"]] == [own["id"]]

    assert await audited(a.client, "annotation.create") == [("anonymous", 201), ("anonymous", 201)]
    assert await audited(a.client, "annotation.update") == [("anonymous", 403), ("anonymous", 200)]
    assert await audited(a.client, "annotation.delete") == [("anonymous", 403), ("anonymous", 403), ("anonymous", 200), ("anonymous", 404)]
    assert AuditLog(city).verify().ok


async def test_a_forged_or_malformed_author_cookie_owns_nothing(browsers):
    a, _ = browsers
    note = await (await a.request("POST", "/api/annotations", json=PIN)).json()
    path = f"/api/annotations/{note['id']}"
    for value in ("x" * 43, "not a key", (a.secret or "")[:-1]):
        resp = await a.client.put(path, json={"text": "?"}, headers={"Cookie": f"{AUTHOR_COOKIE}={value}"})
        assert resp.status == 403, value
    # a malformed key is no key: that browser is given a new one
    resp = await a.client.post("/api/annotations", json=ROAD, headers={"Cookie": f"{AUTHOR_COOKIE}=short"})
    assert resp.status == 201 and len(resp.cookies[AUTHOR_COOKIE].value) == 43


def _vertices(n: int) -> list[list[float]]:
    return [[105.72 + 1e-6 * i, 34.58 + 1e-6 * (i % 7), 1150.0 + 0.001 * i] for i in range(n)]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({**PIN, "kind": "circle"}, "kind"),
        ({**PIN, "coordinates": [[205.0, 34.5]]}, "longitude"),
        ({**PIN, "coordinates": [[105.0, -91.0]]}, "latitude"),
        ({**PIN, "coordinates": [[105.0, 34.5, 1e9]]}, "height"),
        ({**PIN, "coordinates": [[105.0, 34.5], [105.1, 34.5]]}, "exactly one vertex"),
        ({**PIN, "coordinates": []}, "coordinates"),
        ({**PIN, "coordinates": [[105.0]]}, "coordinates[0]"),
        ({**PIN, "coordinates": [[105.0, True]]}, "coordinates[0][1]"),
        ({**PIN, "coordinates": [["105", 34.0]]}, "coordinates[0][0]"),
        ({**ROAD, "coordinates": [[105.0, 34.5], [105.0, 34.5]]}, "2 distinct vertices"),
        ({**ROAD, "coordinates": [[105.0, 34.5, 1.0], [105.1, 34.5]]}, "coordinates[1]"),
        ({**PLOT, "coordinates": [[105.0, 34.5], [105.1, 34.5], [105.0, 34.5]]}, "3 distinct vertices"),
        ({**ROAD, "coordinates": _vertices(MAX_VERTICES + 1)}, "coordinates"),
        ({**PIN, "text": "x" * (MAX_TEXT + 1)}, "text"),
        ({**PIN, "text": "bell \x07"}, "text"),
        ({**PIN, "title": "two\nlines"}, "title"),
        ({**PIN, "text": 42}, "text"),
        ({"kind": "pin", "coordinates": PIN["coordinates"]}, "text"),
        ({**PIN, "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_note_is_a_400_naming_the_field(browsers, city, body, named):
    a, _ = browsers
    resp = await a.request("POST", "/api/annotations", json=body)
    assert resp.status == 400
    assert named in (await resp.json())["error"]
    assert not (city / ".cim" / "annotations.sqlite").exists()
    assert a.secret is None  # nothing stored, no author made


async def test_non_finite_numbers_and_non_json_are_refused(browsers):
    a, _ = browsers
    raw = '{"kind": "pin", "coordinates": [[NaN, 34.5]], "text": "x"}'
    resp = await a.request("POST", "/api/annotations", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "finite" in (await resp.json())["error"]
    resp = await a.request("POST", "/api/annotations", data=b"\xff{", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "JSON" in (await resp.json())["error"]
    resp = await a.request("POST", "/api/annotations", data=b" " * (2 << 20))
    assert resp.status == 400 and "larger" in (await resp.json())["error"]
    assert (await a.request("PUT", "/api/annotations/abc", json={"text": "x"})).status == 400
    assert (await a.request("PUT", "/api/annotations/1", json={})).status in (400, 404)


async def test_a_polygon_of_ten_thousand_vertices_is_stored_whole(browsers):
    a, _ = browsers
    ring = [
        [105.72 + 0.01 * math.cos(2 * math.pi * i / MAX_VERTICES), 34.58 + 0.01 * math.sin(2 * math.pi * i / MAX_VERTICES)]
        for i in range(MAX_VERTICES)
    ]
    body = {"kind": "polygon", "coordinates": ring, "text": "a large plot"}
    assert len(json.dumps(body)) > 64 * 1024  # larger than the server's default body limit
    resp = await a.request("POST", "/api/annotations", json=body)
    assert resp.status == 201, await resp.text()
    note = await resp.json()
    assert len(note["coordinates"]) == MAX_VERTICES
    assert max(abs(p - q) for v, w in zip(note["coordinates"], ring) for p, q in zip(v, w)) < 1e-9
    assert shapely.Polygon(note["coordinates"]).is_valid


async def test_text_is_plain_text_returned_as_given(browsers):
    a, b = browsers
    hostile = '<img src=x onerror="alert(1)"> & <script>alert(2)</script>\n第二行\t"quoted" \'single\''
    note = await (await a.request("POST", "/api/annotations", json={**PIN, "text": hostile, "title": "<b>标题</b>"})).json()
    fetched = await (await b.request("GET", f"/api/annotations/{note['id']}")).json()
    assert fetched["text"] == hostile and fetched["title"] == "<b>标题</b>"
    resp = await b.request("GET", "/api/annotations")
    assert resp.content_type == "application/json"
    exported = json.loads(await (await b.request("GET", "/api/annotations.geojson")).read())
    assert exported["features"][0]["properties"]["text"] == hostile


async def test_pages_boxes_and_the_geojson_export(browsers):
    a, b = browsers
    made = []
    for body in (PIN, ROAD, PLOT):
        made.append(await (await a.request("POST", "/api/annotations", json=body)).json())
    first = await (await b.request("GET", "/api/annotations", params={"limit": "2"})).json()
    second = await (await b.request("GET", "/api/annotations", params={"limit": "2", "offset": "2"})).json()
    assert (first["total"], first["count"], second["count"]) == (3, 2, 1)
    assert [n["id"] for n in first["results"] + second["results"]] == [n["id"] for n in reversed(made)]  # newest first

    # notes touching a box: the same as shapely's intersects on their geometries
    box = (105.7250, 34.5790, 105.7305, 34.5815)
    shapes = {
        n["id"]: shapely.Point(n["coordinates"][0])
        if n["kind"] == "pin"
        else shapely.LineString(n["coordinates"])
        if n["kind"] == "polyline"
        else shapely.Polygon(n["coordinates"])
        for n in made
    }
    expected = {i for i, s in shapes.items() if shapely.box(*shapely.bounds(s)).intersects(shapely.box(*box))}
    inside = await (await b.request("GET", "/api/annotations", params={"bbox": ",".join(map(str, box))})).json()
    assert {n["id"] for n in inside["results"]} == expected and 0 < len(expected) < 3
    resp = await b.request("GET", "/api/annotations", params={"bbox": "106,35,105,34"})
    assert resp.status == 400 and "bbox" in (await resp.json())["error"]

    resp = await b.request("GET", "/api/annotations.geojson")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/geo+json")
    assert resp.headers["Content-Disposition"] == 'attachment; filename="annotations.geojson"'
    raw = await resp.read()
    assert raw == await (await a.request("GET", "/api/annotations.geojson")).read()  # same notes, same bytes
    doc = json.loads(raw)
    assert doc["type"] == "FeatureCollection"
    assert [f["id"] for f in doc["features"]] == [n["id"] for n in made]  # oldest first
    assert [f["geometry"]["type"] for f in doc["features"]] == ["Point", "LineString", "Polygon"]
    ring = doc["features"][2]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == len(PLOT["coordinates"])  # stored open, exported closed
    for feature in doc["features"]:
        assert shapely.geometry.shape(feature["geometry"]).is_valid
    assert doc["features"][0]["properties"] == {k: made[0][k] for k in ("kind", "title", "text", "author", "created", "updated")}
    boxed = json.loads(await (await b.request("GET", "/api/annotations.geojson", params={"bbox": ",".join(map(str, box))})).read())
    assert {f["id"] for f in boxed["features"]} == expected
    assert await audited(a.client, "annotation.export") == [("anonymous", 200)] * 3


@pytest.fixture
def accounts(city):
    acl = AccessControl.open(city, create=True)
    acl.add_user("wang", role="planner")
    acl.add_user("li", role="planner")
    acl.add_user("root", role="admin")
    return {name: {"Authorization": f"Bearer {acl.new_token(name)}"} for name in ("wang", "li", "root")}


async def test_in_a_city_with_accounts_the_user_is_the_author(aiohttp_client, city, accounts):
    client = await aiohttp_client(create_app(city))
    resp = await client.post("/api/annotations", json=PIN)
    assert resp.status == 401 and "sign in" in (await resp.json())["error"]
    assert AUTHOR_COOKIE not in resp.cookies

    resp = await client.post("/api/annotations", json=PLOT, headers=accounts["wang"])
    assert resp.status == 201 and AUTHOR_COOKIE not in resp.cookies
    note = await resp.json()
    assert note["author"] == "wang"
    path = f"/api/annotations/{note['id']}"
    listed = await (await client.get("/api/annotations")).json()  # anonymous readers still read
    assert listed["total"] == 1 and listed["results"][0]["editable"] is False
    assert (await (await client.get(path, headers=accounts["li"])).json())["editable"] is False
    assert (await (await client.get(path, headers=accounts["wang"])).json())["editable"] is True

    assert (await client.put(path, json={"text": "改"}, headers=accounts["li"])).status == 403
    assert (await client.delete(path, headers=accounts["li"])).status == 403
    assert (await client.put(path, json={"text": "改"}, headers=accounts["root"])).status == 403  # an admin deletes, never rewrites
    assert (await client.put(path, json={"kind": "polyline", "coordinates": ROAD["coordinates"]}, headers=accounts["wang"])).status == 200
    resp = await client.put(path, json={"kind": "pin"}, headers=accounts["wang"])  # three vertices are no pin
    assert resp.status == 400 and "one vertex" in (await resp.json())["error"]
    assert (await client.delete(path, headers=accounts["root"])).status == 200
    assert (await client.get(path)).status == 404

    assert await audited(client, "annotation.create") == [("anonymous", 401), ("wang", 201)]
    assert await audited(client, "annotation.update") == [("li", 403), ("root", 403), ("wang", 200), ("wang", 400)]
    assert await audited(client, "annotation.delete") == [("li", 403), ("root", 200)]


async def test_a_city_that_cannot_be_written_lists_and_refuses(aiohttp_client, city):
    (city / ".cim").write_text("not a folder")  # nothing can be made under it, whoever runs the server
    client = await aiohttp_client(create_app(city))
    assert (await (await client.get("/api/annotations")).json())["total"] == 0
    resp = await client.post("/api/annotations", json=PIN)
    assert resp.status == 503
    message = (await resp.json())["error"]
    assert "read-only" in message and str(city) not in message
    assert (await client.get("/api/annotations.geojson")).status == 200


async def test_the_api_document_describes_the_annotations(aiohttp_client, city):
    client = await aiohttp_client(create_app(city))
    doc = await (await client.get("/api/openapi.json")).json()
    ops = {(m, p) for p, item in doc["paths"].items() for m in item if p.startswith("/api/annotations")}
    assert ops == {
        ("get", "/api/annotations"),
        ("post", "/api/annotations"),
        ("get", "/api/annotations.geojson"),
        ("get", "/api/annotations/{id}"),
        ("put", "/api/annotations/{id}"),
        ("delete", "/api/annotations/{id}"),
    }
    create = doc["paths"]["/api/annotations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create["required"] == ["kind", "coordinates", "text"]
    assert create["properties"]["coordinates"]["maxItems"] == MAX_VERTICES
    assert "403" in doc["paths"]["/api/annotations/{id}"]["delete"]["responses"]
