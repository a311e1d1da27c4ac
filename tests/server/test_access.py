"""Who may read what: accounts, tokens, sessions, restricted layers, security headers (issue 12).

Each test serves its own copy of the tiny city (hard links: nothing is copied but the names), so
access rules and audit trails never leak between tests.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pyogrio
import pytest

from cim.access import AccessControl
from cim.audit import AuditLog
from cim.server import create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def city(tiny_city, tmp_path):
    copy = tmp_path / "city"
    shutil.copytree(tiny_city, copy, copy_function=os.link, ignore=shutil.ignore_patterns(".cim"))
    return copy


@pytest.fixture
def rules(city):
    """buildings readable by planners only; a planner, a clerk and an admin, each with a token."""
    acl = AccessControl.open(city, create=True)
    acl.add_user("wang", role="planner", password="规划 passphrase 1")
    acl.add_user("li", role="clerk")
    acl.add_user("root", role="admin")
    acl.restrict("buildings", ["planner"])
    tokens = {name: acl.new_token(name) for name in ("wang", "li", "root")}
    return acl, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def trail(city) -> list[dict]:
    return [r for _, r, _ in AuditLog(city).records() if r is not None]


async def flushed(client) -> None:
    from cim.server.state import AUDIT

    writer = client.server.app[AUDIT]
    assert writer is not None and writer.flush(10.0)


def a_building_name(tiny_sources) -> str:
    meta, _, _, fields = pyogrio.raw.read(tiny_sources.buildings)
    cols = dict(zip(meta["fields"], fields))
    return str(cols["name"][int(cols["height"].argmax())])


async def test_a_city_without_accounts_is_public_and_still_audited(aiohttp_client, city, tiny_sources):
    client = await aiohttp_client(create_app(city))
    resp = await client.get("/city/buildings/tileset.json")
    assert resp.status == 200
    assert resp.headers["Cache-Control"].startswith("no-cache")
    me = await (await client.get("/api/me")).json()
    assert me == {"user": None, "role": None, "accounts": False, "anonymous": True}
    resp = await client.get("/api/search", params={"q": a_building_name(tiny_sources)})
    assert (await resp.json())["count"] >= 1
    await flushed(client)
    [record] = [r for r in trail(city) if r["action"] == "search"]
    assert record["user"] == "anonymous" and record["remote"] == "127.0.0.1" and record["detail"]["q"] == a_building_name(tiny_sources)
    assert AuditLog(city).verify().ok


async def test_every_response_carries_the_security_headers(aiohttp_client, city):
    client = await aiohttp_client(create_app(city))
    for path in ("/", "/city/city.json", "/api/health", "/city/no-such-file"):
        resp = await client.get(path)
        csp = resp.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, (path, csp)
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["Referrer-Policy"] == "no-referrer", path


async def test_limits_on_query_and_body_sizes(aiohttp_client, city, rules):
    client = await aiohttp_client(create_app(city))
    resp = await client.get("/api/search", params={"q": "x" * 5000})
    assert resp.status == 414
    resp = await client.post("/api/login", data=b"{" + b" " * (100 * 1024) + b"}", headers={"Content-Type": "application/json"})
    assert resp.status == 413


async def test_a_restricted_layer_is_invisible_and_forbidden_to_others(aiohttp_client, city, rules, tiny_sources):
    _, tokens = rules
    client = await aiohttp_client(create_app(city))
    name = a_building_name(tiny_sources)

    async def view(headers: dict[str, str]) -> tuple[set[str], int, set[str], int]:
        ids = {layer["id"] for layer in (await (await client.get("/city/city.json", headers=headers)).json())["layers"]}
        api_ids = {layer["id"] for layer in (await (await client.get("/api/city", headers=headers)).json())["layers"]}
        assert ids == api_ids
        tile = (await client.get("/city/buildings/tileset.json", headers=headers)).status
        results = (await (await client.get("/api/search", params={"q": name, "limit": "200"}, headers=headers)).json())["results"]
        found = {r["layer"] for r in results}
        index = (await client.get("/city/search.sqlite", headers=headers)).status
        return ids, tile, found, index

    everything = {layer["id"] for layer in json.loads((city / "city.json").read_text())["layers"]}
    ids, tile, found, index = await view({})
    assert ids == everything - {"buildings"} and tile == 403 and "buildings" not in found and index == 403
    ids, tile, found, index = await view(bearer(tokens["li"]))  # a clerk: not a planner
    assert ids == everything - {"buildings"} and tile == 403 and "buildings" not in found and index == 403
    ids, tile, found, index = await view(bearer(tokens["wang"]))
    assert ids == everything and tile == 200 and "buildings" in found and index == 200
    ids, tile, found, index = await view(bearer(tokens["root"]))  # admin reads every layer
    assert ids == everything and tile == 200 and "buildings" in found
    # a restricted layer's files are never left in a shared cache
    resp = await client.get("/city/buildings/tileset.json", headers=bearer(tokens["wang"]))
    assert "public" not in resp.headers["Cache-Control"] and "Authorization" in resp.headers.get("Vary", "")
    # other layers stay open to anonymous readers
    assert (await client.get("/city/bim/tileset.json")).status == 200

    await flushed(client)
    records = trail(city)
    reads = [(r["user"], r["status"]) for r in records if r["action"] in ("read", "read-denied") and r["detail"]["layer"] == "buildings"]
    assert ("anonymous", 403) in reads and ("li", 403) in reads and ("wang", 200) in reads and ("root", 200) in reads
    assert not any(r["action"] == "read" and r["detail"].get("layer") == "bim" for r in records)  # public reads are not logged
    assert {r["user"] for r in records if r["action"] == "search"} == {"anonymous", "li", "wang", "root"}


async def test_a_bad_token_is_refused_not_downgraded(aiohttp_client, city, rules):
    _, tokens = rules
    client = await aiohttp_client(create_app(city))
    forged = tokens["wang"][:-4] + ("AAAA" if not tokens["wang"].endswith("AAAA") else "BBBB")
    for token in (forged, "cim_nonsense", "x"):
        resp = await client.get("/city/bim/tileset.json", headers=bearer(token))
        assert resp.status == 401, token
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_login_session_cookie_and_revocation(aiohttp_client, city, rules):
    acl, tokens = rules
    client = await aiohttp_client(create_app(city))
    resp = await client.post("/api/login", json={"user": "wang", "password": "wrong password"})
    assert resp.status == 401 and "Set-Cookie" not in resp.headers
    resp = await client.post("/api/login", json={"user": "nobody", "password": "wrong password"})
    assert resp.status == 401
    resp = await client.post("/api/login", json={"user": "wang", "password": "规划 passphrase 1"})
    assert resp.status == 200 and (await resp.json()) == {"user": "wang", "role": "planner"}
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert (await client.get("/city/buildings/tileset.json")).status == 200  # the client keeps the cookie
    assert (await (await client.get("/api/me")).json())["user"] == "wang"

    acl.revoke("wang")  # another process (`cim users revoke`) in practice: the server sees the file change
    assert (await client.get("/city/buildings/tileset.json")).status == 403
    assert (await client.get("/city/bim/tileset.json", headers=bearer(tokens["wang"]))).status == 401

    resp = await client.post("/api/logout")
    assert resp.status == 200
    await flushed(client)
    logins = [(r["user"], r["status"]) for r in trail(city) if r["action"] == "login"]
    assert logins == [("wang", 401), ("nobody", 401), ("wang", 200)]


async def test_a_city_closed_to_anonymous_readers_still_serves_its_login(aiohttp_client, city, rules):
    acl, tokens = rules
    acl.set_anonymous(False)
    client = await aiohttp_client(create_app(city))
    assert (await client.get("/city/city.json")).status == 401
    assert (await client.get("/api/search", params={"q": "x"})).status == 401
    assert (await client.get("/")).status == 200  # the viewer, to show its login
    assert (await (await client.get("/api/me")).json())["anonymous"] is False
    assert (await client.get("/city/city.json", headers=bearer(tokens["li"]))).status == 200


def test_only_hashes_are_stored(city, rules):
    _, tokens = rules
    raw = (city / ".cim" / "access.sqlite").read_bytes()
    for token in tokens.values():
        secret = token.split("_", 2)[2]
        assert len(secret) == 43 and secret.encode() not in raw
    con = sqlite3.connect(city / ".cim" / "access.sqlite")
    [(hashed,)] = con.execute("SELECT password FROM users WHERE name = 'wang'").fetchall()
    con.close()
    assert hashed.startswith("$argon2id$") and "passphrase" not in hashed
    assert (city / ".cim").stat().st_mode & 0o077 == 0
    assert (city / ".cim" / "access.sqlite").stat().st_mode & 0o077 == 0


async def test_the_private_folder_is_never_served(aiohttp_client, city, rules):
    client = await aiohttp_client(create_app(city))
    for path in ("/city/.cim/access.sqlite", "/city/.cim/secret.key", "/city/.cim/audit.jsonl", "/city/%2ecim/secret.key"):
        assert (await client.get(path, headers=bearer(rules[1]["root"]))).status == 404, path


async def test_reads_are_audited_in_bursts_and_none_lost_at_stop(aiohttp_client, city, rules):
    """A planner's tile reads become few records listing every path; stopping the server (no
    flush) writes what the audit writer still held."""
    _, tokens = rules
    found = (p.relative_to(city).as_posix() for p in (city / "buildings").rglob("*") if p.is_file())
    tiles = sorted(f"/city/{rel}" for rel in found if "/." not in f"/{rel}")[:20]
    assert len(tiles) >= 3
    client = await aiohttp_client(create_app(city))
    for path in tiles:
        assert (await client.get(path, headers=bearer(tokens["wang"]))).status == 200
    assert (await client.get(tiles[0], headers=bearer(tokens["wang"]))).status == 200
    await client.close()  # the application's cleanup closes the writer
    reads = [r for r in trail(city) if r["action"] == "read"]
    assert len(reads) < len(tiles) + 1
    assert sorted(p for r in reads for p in r["detail"]["paths"]) == tiles  # every path, once
    assert sum(r["detail"]["count"] for r in reads) == len(tiles) + 1
    assert {(r["user"], r["detail"]["layer"], r["status"]) for r in reads} == {("wang", "buildings", 200)}
    assert AuditLog(city).verify().ok
