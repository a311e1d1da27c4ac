"""The server under load (issue 12): the in-memory file cache answers exactly as the disk does,
sees files change, stays within its bytes; several worker processes share one port, each
enforcing the access rules; SIGTERM ends them all with the audit trail complete."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cim.access import AccessControl
from cim.audit import AuditLog
from cim.server import create_app
from cim.server.filecache import CachedFile, FileCache
from cim.server.state import ACCESS, FILE_CACHE
from tests.browser.helpers import run_server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TERRAIN = b"quantized-mesh-tile " * 60
#: headers that differ between two answers for reasons other than the file
VOLATILE = {"date", "server"}


@pytest.fixture
def city(tmp_path: Path) -> Path:
    city = tmp_path / "city"
    files: dict[str, bytes] = {
        "city.json": json.dumps({"name": "t", "layers": [{"id": "b", "url": "b/tileset.json"}]}).encode(),
        "b/tileset.json": b'{"asset": {"version": "1.1"}}',
        "b/tiles/0.glb": b"glTF" + bytes(range(256)) * 20,
        "b/tiles/empty.glb": b"",
        "t/0/0/0.terrain": gzip.compress(TERRAIN),  # gzip-stored, flagged by its magic
        "t/1/0/0.terrain.gz": gzip.compress(TERRAIN[::-1]),  # only the .gz exists
        "t/plain.terrain": TERRAIN,
        "i/0/0/0.webp": b"RIFF....WEBPVP8 " + b"\x01" * 500,
        "big.glb": b"glTF" + os.urandom(300_000),  # over the max_file below: streamed from disk
    }
    for name, data in files.items():
        (city / name).parent.mkdir(parents=True, exist_ok=True)
        (city / name).write_bytes(data)
    (city / "viewer").mkdir()
    (city / "viewer" / "index.html").write_text("<!doctype html><title>v</title>")
    return city


PATHS = [
    "b/tileset.json",
    "b/tiles/0.glb",
    "b/tiles/empty.glb",
    "t/0/0/0.terrain",
    "t/1/0/0.terrain",
    "t/plain.terrain",
    "i/0/0/0.webp",
    "big.glb",
]
VARIANTS: list[dict[str, str]] = [
    {},
    {"Accept-Encoding": "gzip, deflate"},
    {"Accept-Encoding": "identity"},
    {"Accept-Encoding": "gzip;q=0"},
    {"Range": "bytes=0-9"},
    {"Range": "bytes=-7"},
    {"Range": "bytes=5-"},
    {"Range": "bytes=999999-"},
    {"Range": "bytes=0-9", "Accept-Encoding": "identity"},
    {"Range": "bytes=0-9", "If-Range": '"not-the-etag"'},
    {"If-None-Match": '"not-the-etag"'},
    {"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"},
    {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
]


async def answer(client, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    response = await client.request(method, "/city/" + path, headers=headers)
    body = await response.read()
    kept = {k.lower(): v for k, v in response.headers.items() if k.lower() not in VOLATILE}
    return response.status, kept, body


async def test_cached_answers_equal_uncached_ones(aiohttp_client, city):
    """Every kind of file and request variant, including those built from the answer's own ETag
    and Last-Modified, gets the same status, headers and bytes with and without the cache, on
    the request that fills the cache and on those it answers."""
    cached = create_app(city, city / "viewer", audit=False, cache_bytes=1_000_000)
    cache = cached[FILE_CACHE]
    assert cache is not None
    cache.max_file = 100_000
    plain = create_app(city, city / "viewer", audit=False, cache_bytes=0)
    assert plain[FILE_CACHE] is None
    with_cache = await aiohttp_client(cached, auto_decompress=False)
    without = await aiohttp_client(plain, auto_decompress=False)
    compared = 0
    for path in PATHS:
        _, first, _ = await answer(without, "GET", path, {})
        own = [
            {"If-None-Match": first["etag"]},
            {"If-None-Match": f'W/{first["etag"]}, "x"'},
            {"If-Modified-Since": first["last-modified"]},
            {"Range": "bytes=2-5", "If-Range": first["etag"]},
        ]
        for headers in VARIANTS + own:
            for method in ("GET", "HEAD"):
                expected = await answer(without, method, path, headers)
                for _ in range(2):  # the first may fill the cache, the second is a hit
                    got = await answer(with_cache, method, path, headers)
                    assert got == expected, (method, path, headers, set(got[1].items()) ^ set(expected[1].items()))
                    compared += 1
    assert compared > 300
    assert cache.hits > 200, "the cache was not used"
    assert cache.bytes <= 100_000 * 6 and len(cache) >= 7  # big.glb is not in it


async def test_a_replaced_file_is_served_at_once(aiohttp_client, city):
    app = create_app(city, city / "viewer", audit=False)
    client = await aiohttp_client(app, auto_decompress=False)
    tile = city / "b" / "tiles" / "0.glb"
    first = await client.get("/city/b/tiles/0.glb")
    old_etag = first.headers["ETag"]
    assert (await client.get("/city/b/tiles/0.glb")).headers["ETag"] == old_etag
    hits = app[FILE_CACHE].hits
    assert hits >= 1

    # a rebuild writes a new file and renames it over the old one
    new = b"glTF" + b"\x07" * 700
    (city / "b" / "tiles" / "0.glb.tmp").write_bytes(new)
    os.replace(city / "b" / "tiles" / "0.glb.tmp", tile)
    second = await client.get("/city/b/tiles/0.glb")
    assert await second.read() == new and second.headers["ETag"] != old_etag
    assert (await client.get("/city/b/tiles/0.glb", headers={"If-None-Match": old_etag})).status == 200

    # same size, same modification time, another inode: still the new bytes
    same = bytes(reversed(new))
    st = tile.stat()
    (city / "b" / "tiles" / "0.glb.tmp").write_bytes(same)
    os.utime(city / "b" / "tiles" / "0.glb.tmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(city / "b" / "tiles" / "0.glb.tmp", tile)
    assert await (await client.get("/city/b/tiles/0.glb")).read() == same

    # an X written beside a cached X.gz wins over it, as it does uncached
    gz = await client.get("/city/t/1/0/0.terrain")
    assert gz.headers.get("Content-Encoding") == "gzip"
    await client.get("/city/t/1/0/0.terrain")
    (city / "t" / "1" / "0" / "0.terrain").write_bytes(b"fresh terrain")
    fresh = await client.get("/city/t/1/0/0.terrain")
    assert await fresh.read() == b"fresh terrain" and "Content-Encoding" not in fresh.headers

    # a deleted file is gone at once
    tile.unlink()
    assert (await client.get("/city/b/tiles/0.glb")).status == 404


async def test_a_path_swapped_for_a_symlink_out_of_the_root_is_refused(aiohttp_client, city, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0.glb").write_bytes(b"SECRET")
    client = await aiohttp_client(create_app(city, city / "viewer", audit=False), auto_decompress=False)
    assert (await client.get("/city/b/tiles/0.glb")).status == 200
    assert (await client.get("/city/b/tiles/0.glb")).status == 200  # cached
    shutil.rmtree(city / "b" / "tiles")
    (city / "b" / "tiles").symlink_to(outside)
    refused = await client.get("/city/b/tiles/0.glb")
    assert refused.status == 403 and b"SECRET" not in await refused.read()


def entry(n: int, name: str = "x") -> CachedFile:
    return CachedFile(b"x" * n, {"ETag": '"e"'}, '"e"', 0.0, (0, n, 0), name)


def test_the_cache_keeps_within_its_bytes_least_recently_used_out(tmp_path):
    files = {}
    for i in range(10):
        files[i] = tmp_path / f"{i}.bin"
        files[i].write_bytes(b"x" * 300)
    cache = FileCache(max_bytes=1000, max_file=400)

    def put(i: int) -> None:
        st = files[i].stat()
        cache.put(("r", (str(i),), False), CachedFile(b"x" * 300, {}, '"e"', 0.0, (st.st_ino, st.st_size, st.st_mtime_ns), str(files[i])))

    for i in range(3):
        put(i)
    assert cache.bytes == 900 and len(cache) == 3
    assert cache.get(("r", ("0",), False)) is not None  # 0 is now the most recently used
    put(3)  # evicts 1, the least recently used
    assert cache.bytes == 900 and len(cache) == 3
    assert cache.get(("r", ("1",), False)) is None
    assert cache.get(("r", ("0",), False)) is not None
    for i in range(10):
        put(i)
        assert cache.bytes <= 1000
    cache.put(("r", ("big",), False), entry(401, str(files[0])))  # over max_file: not kept
    assert cache.get(("r", ("big",), False)) is None
    assert FileCache(max_bytes=100, max_file=400).max_file == 100


async def test_the_app_cache_stays_within_its_bytes(aiohttp_client, tmp_path):
    city = tmp_path / "many"
    city.mkdir()
    (city / "city.json").write_text('{"layers": []}')
    for i in range(200):
        (city / f"{i}.glb").write_bytes(bytes([i]) * 5000)
    app = create_app(city, tmp_path, audit=False, cache_bytes=50_000)
    client = await aiohttp_client(app)
    for i in range(200):
        assert await (await client.get(f"/city/{i}.glb")).read() == bytes([i]) * 5000
    cache = app[FILE_CACHE]
    assert cache is not None and 0 < cache.bytes <= 50_000 and len(cache) == 10


# ------------------------------------------------------------------------- several processes


@pytest.fixture
def restricted_city(tiny_city, tmp_path):
    copy = tmp_path / "city"
    shutil.copytree(tiny_city, copy, copy_function=os.link, ignore=shutil.ignore_patterns(".cim"))
    acl = AccessControl.open(copy, create=True)
    acl.add_user("wang", role="planner")
    acl.add_user("li", role="clerk")
    acl.restrict("buildings", ["planner"])
    return copy, {name: acl.new_token(name) for name in ("wang", "li")}


def _get(conn: http.client.HTTPConnection, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    response = conn.getresponse()
    return response.status, response.read()


def test_two_workers_share_the_port_and_both_enforce_access(restricted_city, tmp_path):
    city, tokens = restricted_city
    with run_server(city, tmp_path, "--workers", "2") as server:
        port = int(server.base_url.rstrip("/").rsplit(":", 1)[1])
        refused_by: set[int] = set()
        read_by: set[int] = set()
        for _ in range(200):
            # one keep-alive connection stays with one worker: ask it who it is, then test it
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                status, body = _get(conn, "/api/health")
                assert status == 200
                worker = json.loads(body)["worker"]
                assert worker != server.process.pid
                assert _get(conn, "/city/buildings/tileset.json")[0] == 403  # anonymous
                assert _get(conn, "/city/buildings/tileset.json", tokens["li"])[0] == 403  # a clerk
                refused_by.add(worker)
                status, body = _get(conn, "/city/buildings/tileset.json", tokens["wang"])
                assert status == 200 and json.loads(body)["asset"]
                read_by.add(worker)
            finally:
                conn.close()
            if len(refused_by) == 2 and len(read_by) == 2:
                break
        assert len(refused_by) == 2 and refused_by == read_by, refused_by
        assert "Traceback" not in server.log()


def test_sigterm_ends_every_worker_with_the_audit_trail_complete(restricted_city, tmp_path):
    city, tokens = restricted_city
    reads: dict[int, int] = {}
    with run_server(city, tmp_path, "--workers", "2") as server:
        port = int(server.base_url.rstrip("/").rsplit(":", 1)[1])
        for _ in range(200):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                worker = json.loads(_get(conn, "/api/health")[1])["worker"]
                for _ in range(5):
                    assert _get(conn, "/city/buildings/tileset.json", tokens["wang"])[0] == 200
                reads[worker] = reads.get(worker, 0) + 5
            finally:
                conn.close()
            if len(reads) == 2 and min(reads.values()) >= 20:
                break
        assert len(reads) == 2
        workers = list(reads)
        process = server.process
    # run_server sent SIGTERM to the parent and waited for it
    assert process.returncode == 0, server.log()
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    records = [r for _, r, _ in AuditLog(city).records() if r is not None and r.get("action") == "read"]
    assert sum(r["detail"]["count"] for r in records) == sum(reads.values())  # reads come in bursts, none lost
    assert {path for r in records for path in r["detail"]["paths"]} == {"/city/buildings/tileset.json"}
    assert AuditLog(city).verify().ok


async def test_a_remembered_token_is_forgotten_when_revoked(aiohttp_client, restricted_city):
    """A token is checked against the database once, not on every tile, and yet a revocation
    (another process writing the rules) refuses it at the next request."""
    city, tokens = restricted_city
    app = create_app(city)
    acl = app[ACCESS]
    assert acl is not None
    checks = []
    check = acl.authenticate_token
    acl.authenticate_token = lambda token: checks.append(token) or check(token)  # type: ignore[method-assign]
    client = await aiohttp_client(app)
    for _ in range(5):
        assert (await client.get("/city/buildings/tileset.json", headers={"Authorization": f"Bearer {tokens['wang']}"})).status == 200
    assert checks == [tokens["wang"]]
    for _ in range(2):
        assert (await client.get("/city/buildings/tileset.json", headers={"Authorization": "Bearer cim_bad"})).status == 401
    assert len(checks) == 2
    await asyncio.sleep(0.05)  # a later write than the token's: the file's time moves on
    AccessControl.open(city).revoke("wang")
    assert (await client.get("/city/buildings/tileset.json", headers={"Authorization": f"Bearer {tokens['wang']}"})).status == 401


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_error_line(city, workers):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [sys.executable, "-m", "cim.server", str(city), "--port", str(port), "--workers", workers]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr and "Traceback" not in result.stderr


async def test_a_cached_answer_is_made_private_per_request_not_in_the_cache(aiohttp_client, restricted_city):
    """The cache holds a file's headers as the disk gives them: a restricted read turns its own
    answer private, and the next anonymous reader of a public file still gets it public."""
    city, tokens = restricted_city
    client = await aiohttp_client(create_app(city), auto_decompress=False)
    wang = {"Authorization": f"Bearer {tokens['wang']}"}
    for _ in range(2):
        restricted = await client.get("/city/buildings/tileset.json", headers=wang)
        assert restricted.status == 200 and restricted.headers["Cache-Control"] == "no-cache"
    glb = next(p for p in (city / "buildings").rglob("*.glb"))
    path = "/city/" + glb.relative_to(city).as_posix()
    for _ in range(3):
        assert (await client.get(path, headers=wang)).headers["Cache-Control"] == "private, max-age=3600"
    assert (await client.get(path)).status == 403
    public = next(p for p in (city / "bim").rglob("*.glb"))
    public_path = "/city/" + public.relative_to(city).as_posix()
    for headers in (wang, {}, wang, {}):
        answer = await client.get(public_path, headers=headers)
        assert answer.status == 200
        assert answer.headers["Cache-Control"] == ("private, max-age=3600" if headers else "public, max-age=3600")


def _workers_seen(port: int, tries: int = 100) -> set[int]:
    seen: set[int] = set()
    for _ in range(tries):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            seen.add(json.loads(_get(conn, "/api/health")[1])["worker"])
        finally:
            conn.close()
        if len(seen) == 2:
            break
    return seen


def test_a_killed_worker_is_replaced(city, tmp_path):
    with run_server(city, tmp_path, "--workers", "2") as server:
        port = int(server.base_url.rstrip("/").rsplit(":", 1)[1])
        time.sleep(2.5)  # past the start, where a death stops the server instead
        first = _workers_seen(port)
        assert len(first) == 2
        killed = min(first)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            try:
                seen = _workers_seen(port)
            except ConnectionError:  # one queued on the dying worker's socket as it died: reset
                seen = set()
            if len(seen) == 2 and killed not in seen:
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        assert f"server worker pid {killed} ended" in server.log()
