"""The fast path below aiohttp (issue 12): cached city files answered by the connection's own
protocol, byte for byte as aiohttp answers them, with access control and audit kept exact, and
everything it does not answer passed to aiohttp unchanged (malformed heads, slow heads, pipelined
mixes of hits, misses and API calls)."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import select
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cim.access import AccessControl
from cim.audit import AuditLog
from cim.server import create_app
from cim.server.app import _loop_factory
from cim.server.fastpath import RULES_CHECK_S, FastPath, connection_factory
from cim.server.workers import listening_socket

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HEAD_TIMEOUT = 1.5
_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")


class Served:
    """A city served in a thread of this process, on the protocol stack and loop of ``cim serve``."""

    def __init__(self, port: int, factory: Any) -> None:
        self.port = port
        self.factory = factory

    @property
    def fast_hits(self) -> int:
        return self.factory.table.hits if self.factory.table is not None else 0

    def connect(self) -> Conn:
        return Conn(self.port)


@contextmanager
def serving(city: Path, *, fast: bool, audit: bool = False, keepalive: float = 75.0) -> Iterator[Served]:
    from aiohttp import web

    app = create_app(city, city, audit=audit)
    sock = listening_socket("127.0.0.1", 0)
    loop = (_loop_factory() or asyncio.new_event_loop)()  # uvloop's when installed, as cim serve
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive)
        await runner.setup()
        box["factory"] = factory = connection_factory(app, runner.server, HEAD_TIMEOUT, fast=fast)
        server = await loop.create_server(factory, sock=sock)
        box["stop"] = stop = asyncio.Event()
        ready.set()
        await stop.wait()
        server.close()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the server did not start"
    try:
        yield Served(sock.getsockname()[1], box["factory"])
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        loop.close()


class Conn:
    """A client connection that reads answers one by one (pipelined ones too)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.held = b""

    def answer(self, method: str = "GET") -> bytes:
        """The next whole answer (head and Content-Length body), with its Date blanked."""
        data = self.held
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {data!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        found = re.search(rb"\r\nContent-Length: (\d+)", head)
        length = int(found.group(1)) if found and method != "HEAD" else 0
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            rest += chunk
        self.held = rest[length:]
        return _DATE.sub(b"\r\nDate: -\r\n", head + b"\r\n\r\n" + rest[:length])

    def close(self) -> None:
        self.sock.close()


def ask(conn: Conn, method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    conn.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return conn.answer(method)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _header(answer: bytes, name: str) -> str:
    found = re.search(rb"\r\n" + name.encode() + rb": ([^\r]*)", answer.partition(b"\r\n\r\n")[0])
    assert found is not None, (name, answer[:400])
    return found.group(1).decode()


@pytest.fixture(scope="module")
def sample(tiny_city) -> list[str]:
    """A few files of every kind the tiny city has: tilesets, models, terrain, imagery, subtrees."""
    picked: list[str] = []
    for pattern in ("tileset.json", "*.glb", "*.terrain", "*.webp", "*.png", "*.jpg", "*.subtree", "*.pnts"):
        found = sorted(p for p in tiny_city.rglob(pattern) if ".cim" not in p.parts)
        picked += ["/city/" + p.relative_to(tiny_city).as_posix() for p in found[:3]]
    assert any(p.endswith(".terrain") for p in picked) and any(p.endswith(".glb") for p in picked), picked
    return picked


def test_fast_answers_are_the_slow_path_s_bytes(tiny_city, sample):
    """Every sampled file, with each variant of request, answers the same bytes (but Date) from
    aiohttp alone and from the fast path, on the request that fills the cache and on hits."""
    terrain = next(p for p in sample if p.endswith(".terrain"))
    assert (tiny_city / terrain[len("/city/") :]).read_bytes()[:2] == b"\x1f\x8b", "the tiny city's terrain is not gzip-stored"
    with serving(tiny_city, fast=False) as slow, serving(tiny_city, fast=True) as fast:
        s_conn, f_conn = slow.connect(), fast.connect()
        compared = 0
        for path in sample:
            etag = _header(ask(s_conn, "GET", path), "ETag")
            variants: list[dict[str, str]] = [
                {},
                {"Accept-Encoding": "gzip, deflate, br"},
                {"Accept-Encoding": "identity"},
                {"Accept-Encoding": "gzip;q=0"},
                {"If-None-Match": etag},
                {"If-None-Match": f'W/{etag}, "other"', "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
                {"If-None-Match": '"other"'},
                {"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"},
                {"Range": "bytes=0-9"},
                {"Connection": "keep-alive", "User-Agent": "test"},
            ]
            for headers in variants:
                for method in ("GET", "HEAD"):
                    expected = ask(s_conn, method, path, headers)
                    for _ in range(2):
                        got = ask(f_conn, method, path, headers)
                        assert got == expected, (method, path, headers, got[:800], expected[:800])
                        compared += 1
        s_conn.close()
        f_conn.close()
        assert compared >= 40 * len(sample)
        assert fast.fast_hits >= 10 * len(sample), "the fast path answered too few: the test did not test it"
    # what was compared: a 304 and an un-gzipped terrain tile among them
    with serving(tiny_city, fast=True) as fast:
        conn = fast.connect()
        ask(conn, "GET", terrain)
        plain = ask(conn, "GET", terrain, {"Accept-Encoding": "identity"})
        gz = ask(conn, "GET", terrain)
        body = gz.partition(b"\r\n\r\n")[2]
        assert _header(gz, "Content-Encoding") == "gzip" and plain.partition(b"\r\n\r\n")[2] == gzip.decompress(body)
        assert b"\r\nContent-Encoding:" not in plain.partition(b"\r\n\r\n")[0]
        assert _status(ask(conn, "GET", terrain, {"If-None-Match": _header(gz, "ETag")})) == 304
        assert fast.fast_hits == 2
        conn.close()


def test_pipelined_hits_misses_and_api_calls_answer_in_order(tiny_city, sample):
    """A burst of requests in one write, hits of the fast path between misses and API calls that
    aiohttp answers: each answer in order, each what it is alone."""
    requests = [("GET", sample[0]), ("GET", "/api/health"), ("GET", sample[0]), ("HEAD", sample[1])]
    requests += [("GET", "/city/nothing-here.glb"), ("GET", sample[1]), ("GET", sample[2]), ("GET", sample[0])]
    with serving(tiny_city, fast=True) as fast:
        conn = fast.connect()
        alone = [ask(conn, m, p) for m, p in requests]
        hits = fast.fast_hits
        assert hits == 3, "a hit right after an answer of aiohttp's was not the fast path's"
        burst = b"".join(f"{m} {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for m, p in requests) * 3
        conn.sock.sendall(burst)
        for _ in range(3):
            for (method, _path), expected in zip(requests, alone, strict=True):
                got = conn.answer(method)
                if b'"worker"' not in expected:
                    assert got == expected
                else:
                    assert _status(got) == 200 and b'"status": "ok"' in got
        assert fast.fast_hits > hits, "no pipelined request was answered by the fast path"
        conn.close()


def test_malformed_and_slow_heads_are_aiohttp_s_to_refuse(tiny_city, sample, caplog):
    """A malformed head gets aiohttp's 400; a trickled head is cut off at the deadline; the
    server keeps serving the fast path."""
    with serving(tiny_city, fast=False) as slow, serving(tiny_city, fast=True) as fast:
        for bad in (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n"):
            answers = []
            for server in (slow, fast):
                conn = server.connect()
                conn.sock.sendall(bad)
                answers.append(_DATE.sub(b"\r\nDate: -\r\n", _until_closed(conn)))
                conn.close()
            assert answers[0] == answers[1] and b" 400 Bad Request\r\n" in answers[0], answers
        conn = fast.connect()
        ask(conn, "GET", sample[0])
        start = time.monotonic()
        conn.sock.sendall(b"GET " + sample[0].encode() + b" HTTP/1.1\r\nHost: x\r\n")
        with caplog.at_level("WARNING", logger="cim.server"):
            for _ in range(int(HEAD_TIMEOUT * 10)):  # a byte every 0.3 s until the server closes
                try:
                    conn.sock.sendall(b"X")
                    time.sleep(0.3)
                    if select.select([conn.sock], [], [], 0)[0] and conn.sock.recv(1) == b"":
                        break
                except OSError:  # reset once closed
                    break
            else:
                pytest.fail("the trickled head was never cut off")
        assert HEAD_TIMEOUT - 0.5 < time.monotonic() - start < HEAD_TIMEOUT + 3
        assert "no complete request head within" in caplog.text
        conn.close()
        conn = fast.connect()
        hits = fast.fast_hits
        assert _status(ask(conn, "GET", sample[0])) == 200 and fast.fast_hits == hits + 1
        conn.close()


def test_a_client_that_does_not_read_gets_every_answer_in_order(tiny_city, sample, monkeypatch):
    """Hundreds of pipelined requests for the largest sampled file sent before reading any
    answer: the server stops writing (and then reading) while the client does not read, and
    every answer arrives whole and in order once it does."""
    biggest = max(sample, key=lambda p: (tiny_city / p[len("/city/") :]).stat().st_size)
    size = (tiny_city / biggest[len("/city/") :]).stat().st_size
    count = max(200, 16_000_000 // max(size, 1))
    paused: list[int] = []
    pause = FastPath.pause_writing
    monkeypatch.setattr(FastPath, "pause_writing", lambda self: paused.append(1) or pause(self))
    with serving(tiny_city, fast=True) as fast:
        conn = fast.connect()
        first = ask(conn, "GET", biggest)
        ask(conn, "GET", biggest)
        hits = fast.fast_hits
        burst = f"GET {biggest} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * count
        sender = threading.Thread(target=conn.sock.sendall, args=(burst,))
        sender.start()
        time.sleep(0.5)  # the server writes until the socket buffers are full
        for _ in range(count):
            assert conn.answer() == first
        sender.join(10)
        assert fast.fast_hits == hits + count
        assert paused, "the server never had to stop writing: the test did not test it"
        conn.close()


#: request heads at the edges of what the fast path reads (``{P}``: a cached file's path)
ODD_HEADS = [
    b"GET {P} HTTP/1.1\r\n\r\n",  # no Host: aiohttp refuses it
    b"GET {P} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\nX:\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\nX: a\tb\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\nX: \xc3\xa9\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nhost:x   \r\nx-y_z: 1\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost : x\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    b"GET {P} HTTP/1.1\nHost: x\n\n",
    b"\r\nGET {P} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET {P}?v=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET {P}#top HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET {D}/../{P6} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET {D}/./{P6} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET {D}//{P6} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /city/%{HEX}{P7} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://x{P} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"get {P} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET  {P} HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET {P} HTTP/1.0\r\nHost: x\r\n\r\n",
    b"HEAD {P} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b'GET {P} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: GZIP;q=0.5\r\nIf-None-Match: W/"x"\r\n\r\n',
    b"GET {P} HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 8000 + b"\r\n\r\n",
    b"GET {P} HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(70)) + b"\r\n",
]


def test_odd_request_heads_get_the_slow_path_s_answer(tiny_city, sample):
    """Heads the fast path must read as aiohttp does, or leave to it: each gets the same bytes
    (but Date) from both, and the connection is left open or closed alike."""
    path = next(p for p in sample if p.endswith(".glb"))
    folder, _, name = path.rpartition("/")
    subs = {b"{P}": path, b"{D}": folder, b"{P6}": folder.rsplit("/", 1)[1] + "/" + name}
    subs[b"{HEX}"] = f"{ord(path[6]):02X}"
    subs[b"{P7}"] = path[7:]

    def head(raw: bytes) -> bytes:
        for key, value in subs.items():
            raw = raw.replace(key, value.encode())
        return raw

    results = []
    for fast in (False, True):
        with serving(tiny_city, fast=fast) as server:
            warm = server.connect()
            ask(warm, "GET", path)
            ask(warm, "GET", path)
            conns = [server.connect() for _ in ODD_HEADS]
            for conn, raw in zip(conns, ODD_HEADS, strict=True):
                conn.sock.sendall(head(raw))
            answers = [conn.answer("HEAD" if raw.startswith(b"HEAD") else "GET") for conn, raw in zip(conns, ODD_HEADS, strict=True)]
            time.sleep(0.3)
            for i, conn in enumerate(conns):
                conn.sock.setblocking(False)
                try:
                    answers[i] += b" [closed]" if conn.sock.recv(1) == b"" else b" [more]"
                except BlockingIOError:
                    answers[i] += b" [open]"
                except OSError:
                    answers[i] += b" [closed]"
                conn.close()
            results.append((answers, server.fast_hits))
            warm.close()
    (slow, _), (fast_answers, hits) = results
    for raw, expected, got in zip(ODD_HEADS, slow, fast_answers, strict=True):
        assert got == expected, (raw[:120], got[:300], expected[:300])
    statuses = {_status(a) for a in slow}
    assert {200, 400} <= statuses, statuses
    assert hits >= 4, "no odd head was answered by the fast path: the test did not test it"


def test_a_busy_fast_connection_outlives_aiohttp_s_keep_alive_timer(tiny_city, sample):
    """aiohttp closes a connection idle for its keep-alive timeout; one the fast path keeps
    busy is not idle, and one left idle is still closed."""
    with serving(tiny_city, fast=True, keepalive=1.0) as fast:
        conn = fast.connect()
        ask(conn, "GET", sample[0])  # a miss: aiohttp's, which arms its timer
        hits = fast.fast_hits
        for _ in range(10):  # 3 s of hits, three times the timeout
            assert _status(ask(conn, "GET", sample[0])) == 200
            time.sleep(0.3)
        assert fast.fast_hits == hits + 10
        time.sleep(2.5)
        assert _until_closed(conn) == b"", "an idle connection was not closed"
        conn.close()


def _until_closed(conn: Conn) -> bytes:
    data = b""
    while chunk := conn.sock.recv(65536):
        data += chunk
    return data


@pytest.fixture(scope="module")
def restricted(tiny_city, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    copy = tmp_path_factory.mktemp("fastpath") / "city"
    shutil.copytree(tiny_city, copy, copy_function=os.link, ignore=shutil.ignore_patterns(".cim"))
    acl = AccessControl.open(copy, create=True)
    acl.add_user("wang", role="planner")
    acl.add_user("li", role="clerk")
    acl.restrict("buildings", ["planner"])
    return copy, {name: acl.new_token(name) for name in ("wang", "li")}


def test_a_restricted_layer_is_never_answered_to_who_may_not_read_it(restricted):
    """Anonymous and a clerk get 403 on the restricted layer however warm the cache; a planner
    gets the slow path's bytes, each read audited, from the fast path too; a revoked token is
    refused at once."""
    city, tokens = restricted
    restricted_tile = "/city/" + sorted(p for p in (city / "buildings").rglob("*.glb"))[0].relative_to(city).as_posix()
    public_tile = "/city/" + sorted(p for p in (city / "terrain").rglob("*.terrain"))[0].relative_to(city).as_posix()
    wang = {"Authorization": f"Bearer {tokens['wang']}"}
    li = {"Authorization": f"Bearer {tokens['li']}"}
    with serving(city, fast=False) as slow, serving(city, fast=True, audit=True) as fast:
        s_conn, f_conn = slow.connect(), fast.connect()
        for headers, path in [(wang, restricted_tile), ({}, public_tile), (li, public_tile), (wang, "/city/city.json")]:
            expected = ask(s_conn, "GET", path, headers)
            for _ in range(3):
                assert ask(f_conn, "GET", path, headers) == expected
        hits = fast.fast_hits
        assert hits >= 5, "the fast path did not answer a restricted read"
        for headers in ({}, li, {"Authorization": "Bearer cim_forged"}, {"Cookie": "cim_session=forged"}):
            for _ in range(2):
                expected = ask(s_conn, "GET", restricted_tile, headers)
                assert _status(expected) in (401, 403)
                assert ask(f_conn, "GET", restricted_tile, headers) == expected
        assert fast.fast_hits == hits
        assert b"private" in ask(f_conn, "GET", restricted_tile, wang)
        f_conn.close()
        s_conn.close()
        reads = 3 + 1
        time.sleep(0.1)
        AccessControl.open(city).revoke("wang")
        conn = fast.connect()
        assert _status(ask(conn, "GET", restricted_tile, wang)) == 401
        conn.close()
    records = [r for _, r, _ in AuditLog(city).records() if r is not None and r.get("target") == restricted_tile]
    read = list(AuditLog(city).show(action="read"))  # reads come in bursts: every path read, how often
    assert (
        sum(r["detail"]["count"] for r in read) == reads and {r["user"] for r in read} == {"wang"} and {r["status"] for r in read} == {200}
    )
    assert all(
        r["remote"] == "127.0.0.1" and r["detail"]["layer"] == "buildings" and r["detail"]["paths"] == [restricted_tile] for r in read
    )
    assert sum(r["action"] == "read-denied" for r in records) == 6  # anonymous, li and a forged cookie, twice each
    assert AuditLog(city).verify().ok


def test_a_kept_alive_reader_loses_its_rights_at_the_next_rule_change(restricted):
    """Readers are remembered by their Authorization header on a connection kept alive: a
    revocation or a newly restricted layer applies to the next request once the fast path has
    looked at the rules again (every RULES_CHECK_S seconds)."""
    city, _ = restricted  # the module's city: users of this test's own, the rules put back after
    acl = AccessControl.open(city)
    acl.add_user("zhao", role="planner")
    acl.add_user("zhou", role="clerk")
    restricted_tile = "/city/" + sorted(p for p in (city / "buildings").rglob("*.glb"))[0].relative_to(city).as_posix()
    public_tile = "/city/" + sorted(p for p in (city / "terrain").rglob("*.terrain"))[0].relative_to(city).as_posix()
    planner = {"Authorization": f"Bearer {acl.new_token('zhao')}"}
    clerk = {"Authorization": f"Bearer {acl.new_token('zhou')}"}
    with serving(city, fast=True, audit=True) as fast:
        w_conn, l_conn, a_conn = fast.connect(), fast.connect(), fast.connect()
        for _ in range(3):
            assert _status(ask(w_conn, "GET", restricted_tile, planner)) == 200
            assert _status(ask(l_conn, "GET", public_tile, clerk)) == 200
            assert _status(ask(a_conn, "GET", public_tile)) == 200
        hits = fast.fast_hits
        assert hits >= 6, "the fast path did not answer remembered readers"
        time.sleep(0.05)
        acl.revoke("zhao")
        acl.restrict("terrain", ["planner"])
        time.sleep(RULES_CHECK_S)  # the fast path looks at the rules this often
        try:
            assert _status(ask(w_conn, "GET", restricted_tile, planner)) == 401
            assert _status(ask(l_conn, "GET", public_tile, clerk)) == 403
            assert _status(ask(a_conn, "GET", public_tile)) == 403
            assert fast.fast_hits == hits
        finally:
            acl.make_public("terrain")
            for conn in (w_conn, l_conn, a_conn):
                conn.close()
