"""A fast path below aiohttp: cached city files answered by the connection's protocol itself.

Why below aiohttp
-----------------
With the file cache (:mod:`cim.server.filecache`), uvloop and two worker processes, a tile's
answer costs little of cim's own code; what is left (measured with py-spy, see
``benchmarks/README.md``, "Serving under load") is aiohttp's per-request machinery: parsing into
a request object, a task per request, routing, four middlewares, a response object, the
``on_response_prepare`` signals and the join of head and body. :class:`FastPath` is the
protocol of every connection, in front of aiohttp's (itself behind
:class:`cim.server.guard.HeadDeadline`) on the same listening socket: it reads each request head
itself and answers a cached file with a head precomputed once per cached entry (only ``Date``
changes, once a second) and the body, in one ``writelines``.

What it answers
---------------
Only what it can decide exactly as the slow path would, from tables it holds: a ``GET`` or
``HEAD`` in ``HTTP/1.1`` of ``/city/PATH`` with plain path characters (no percent-escape, no
query, no empty, ``.`` or ``..`` segment), no body, no ``Range``, ``If-Range``, ``Expect``,
``Upgrade`` or ``Cookie``, a ``Host``, no header twice nor empty, ``Connection`` absent or ``keep-alive``,
``If-Modified-Since`` only beside an ``If-None-Match`` (which wins), whose file is in the
worker's cache and unchanged on disk (the cache's ``stat``), while aiohttp has no request of
this connection in hand. The answer is the slow path's, byte for byte but the ``Date``: the
same status (200, or 304 for a matching ``If-None-Match``), headers in the same order (the
file's, ``Content-Length``, ``Date``, ``Server``, CORS, the security headers, ``Vary:
Authorization, Cookie`` in a city with accounts, ``Cache-Control`` made private for a signed-in
reader or a restricted layer), and body (none for ``HEAD`` and 304). A gzip-stored terrain tile
goes to a client refusing gzip from the cache's un-gzipped variant when it holds one.

Access control stays exact. In a city with accounts, the reader is the anonymous one (when the
city admits anonymous readers) or a bearer token this worker has already verified against the
current rules (:class:`cim.server.security._TokenMemo`), remembered by the bytes of its
``Authorization`` header with what it may read by folder (:class:`_Reader`) until the rules or
``city.json`` change (checked every :data:`RULES_CHECK_S` seconds: a revoked token is refused
by the fast path within 50 ms, by the slow path from the next turn of the event loop on); a request whose reader may not read
the file's layer, ``search.sqlite`` while layers are restricted, an unknown or unverified token,
a session cookie, or a city needing a login all go to the slow path, which answers them (401,
403) and audits them. A permitted read of a restricted layer is answered here and audited from
here with the same record the slow path writes (the audit writer queues it; nothing waits).

What it never answers
---------------------
Everything else goes to aiohttp unchanged, the bytes of the request as received: the API,
``city.json`` in a city with accounts, the viewer's files, misses (whose answer fills the cache
for the next time), files over the cache's size limit, requests with a body (after such a
request the connection stays with aiohttp to its end), malformed or over-long heads (aiohttp
answers 400 and :class:`cim.server.guard.MalformedRequestFilter` logs one line) and any request
that arrives while aiohttp is still answering an earlier one of the connection (pipelined
answers keep their order). A head that arrives incomplete is held here, under the same deadline
as :class:`~cim.server.guard.HeadDeadline`'s (a slowloris connection is closed with the same log
line). The fast path turns itself off (with a warning) for an application whose middlewares or
response signals are not the ones whose headers it reproduces.

Staying in step with aiohttp
----------------------------
Requests are passed to aiohttp one whole head at a time, so its parser never holds half of one.
aiohttp is idle for this connection when every request passed to it has reached its handler
(:class:`_Watched`, told by :func:`cim.server.guard.head_middleware`) and none is in progress
(aiohttp clears that flag once the answer's last byte is handed to the transport) with none
queued; the wait for its next request cannot serve as the sign, since uvloop reads the next
request before a finished handler's task wakes aiohttp's loop. Each fast answer pushes back
aiohttp's keep-alive deadline, so a connection kept busy here is not closed as idle. These read
four attributes of aiohttp's ``RequestHandler`` (``_request_in_progress``, ``_messages``,
``_keepalive_timeout``, ``_next_keepalive_close_time``): an aiohttp without them turns the fast
path off.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from typing import Any

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

from cim.errors import CimError
from cim.server.filecache import CachedFile, CacheKey, FileCache
from cim.server.guard import HEAD_TIMEOUT, HeadDeadline
from cim.server.state import ACCESS, AUDIT, CITY_DIR, FILE_CACHE

__all__ = ["MAX_HEAD", "RULES_CHECK_S", "FastPath", "FastTable", "connection_factory"]

log = logging.getLogger("cim.server")

#: longest request head read here; a longer one goes to aiohttp (its own limit is 8190 a line)
MAX_HEAD = 8190
#: most header lines read here (aiohttp allows more; beyond this it decides)
MAX_HEADERS = 64
#: bytes of requests held while the client does not read its answers; past this, reading stops
MAX_HELD = 256 * 1024

_PATH_OK = re.compile(rb"/city/[A-Za-z0-9_~/.\-]+")
#: a header line with a non-empty value of visible ASCII (anything else: aiohttp decides)
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z\-]+):[ \t]*([\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)[ \t]*")
#: request headers whose presence sends the request to aiohttp
_SLOW_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"range", b"if-range", b"expect", b"upgrade", b"cookie"})
#: request headers whose presence ends the fast path for the connection (a body follows)
_BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"upgrade"})


class FastTable:
    """What the fast path of one application knows: its cache, access rules, heads built so far.

    Parameters
    ----------
    app : aiohttp.web.Application
        An application made by :func:`cim.server.app.create_app`, with a file cache.
    """

    def __init__(self, app: web.Application) -> None:
        from cim.server import security

        cache = app[FILE_CACHE]
        assert cache is not None
        self.app = app
        self.cache: FileCache = cache
        self.root = str(app[CITY_DIR])
        self.acl = app[ACCESS]
        self.memo = app.get(security.TOKEN_MEMO)
        self.layers = app[security.LAYER_MAP]
        self.hits = 0
        from cim.server.app import CORS_HEADERS, _etag_matches, _safe_relative, accepts_gzip

        self._etag_matches, self._safe_relative, self._accepts_gzip = _etag_matches, _safe_relative, accepts_gzip
        tail = [f"Server: {SERVER_SOFTWARE}"]
        tail += [f"{name}: {value}" for name, value in CORS_HEADERS.items()]
        tail += [f"{name}: {value}" for name, value in security.SECURITY_HEADERS.items()]
        if self.acl is not None:
            tail.append("Vary: Authorization, Cookie")
        self._tail = ("\r\n" + "\r\n".join(tail) + "\r\n\r\n").encode("latin-1")
        #: (cache key, private) -> (entry, 200 head up to "Date: ", 304 head up to "Date: ")
        self._heads: dict[tuple[CacheKey, bool], tuple[CachedFile, bytes, bytes]] = {}
        self._date_second = -1
        self._date = b""
        #: Authorization header (None: absent) -> what this reader may read (see _reader)
        self._readers: dict[bytes | None, _Reader] = {}
        self._check_at = 0.0
        self._rules_seen: tuple[Any, ...] | None = None
        self._readers_until = 0.0

    @staticmethod
    def supported(app: web.Application) -> str | None:
        """Why the fast path cannot reproduce this application's answers, or None when it can."""
        from aiohttp.web_protocol import RequestHandler

        from cim.server import app as app_module
        from cim.server import security
        from cim.server.errors import error_middleware
        from cim.server.guard import head_middleware

        if app.get(FILE_CACHE) is None:
            return "the file cache is off"
        internals = ("_request_in_progress", "_messages", "_keepalive_timeout", "_next_keepalive_close_time")
        if not all(name in getattr(RequestHandler, "__slots__", ()) for name in internals):
            return "this aiohttp's connection handler lacks the state it reads"
        expected = [head_middleware, error_middleware, app_module._preflight_middleware, security.security_middleware]
        if list(app.middlewares) != expected:
            return "the application's middlewares are not those it reproduces"
        if list(app.on_response_prepare) != [app_module._add_cors_headers, security.add_security_headers]:
            return "the application's response signals are not those it reproduces"
        return None

    def date(self) -> bytes:
        """``Date``'s value now (as aiohttp writes it), formatted once a second."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = email.utils.formatdate(now, usegmt=True).encode("latin-1")
        return self._date

    def heads(self, key: CacheKey, entry: CachedFile, private: bool) -> tuple[bytes, bytes]:
        """The 200 and 304 heads of ``entry`` up to ``Date``'s value (built once per entry)."""
        known = self._heads.get((key, private))
        if known is not None and known[0] is entry:
            return known[1], known[2]
        headers = dict(entry.headers)
        if private:
            headers["Cache-Control"] = headers["Cache-Control"].replace("public", "private")
        lines = [f"{name}: {value}" for name, value in headers.items()]
        ok = "HTTP/1.1 200 OK\r\n" + "".join(f"{line}\r\n" for line in lines) + f"Content-Length: {len(entry.body)}\r\nDate: "
        lines = [f"{name}: {value}" for name, value in headers.items() if name != "Content-Type"]
        not_modified = "HTTP/1.1 304 Not Modified\r\n" + "".join(f"{line}\r\n" for line in lines) + "Date: "
        if len(self._heads) > 2 * len(self.cache) + 1024:  # entries evicted from the cache
            self._heads.clear()
        built = (entry, ok.encode("latin-1"), not_modified.encode("latin-1"))
        self._heads[(key, private)] = built
        return built[1], built[2]

    def answer(self, method: bytes, target: bytes, headers: dict[bytes, bytes], peer: str) -> list[bytes] | None:
        """The bytes answering a parsed request, or None when the slow path must answer it."""
        path = target.decode("ascii")
        try:
            parts = self._safe_relative(path[len("/city/") :])
        except CimError:
            return None
        if len(parts) != path.count("/") - 1:  # an empty or "." segment: aiohttp's reading decides
            return None
        private = False
        audited: tuple[_Reader, str] | None = None
        if self.acl is not None:
            if parts == ("city.json",):  # as this reader may see it: the slow path's
                return None
            reader = self._reader(headers)
            if reader is None:
                return None
            head = parts[0]
            verdict = reader.folders.get(head)
            if verdict is None:
                verdict = reader.decide(head, self.layers.by_folder)
            if verdict is _SLOW:
                return None
            private = reader.private
            if verdict is not _OPEN:
                private = True
                audited = (reader, verdict)
        key = (self.root, parts, False)
        entry = self.cache.get(key)
        if entry is None:
            return None
        if entry.gzip_encoded and not self._accepts_gzip(_text(headers.get(b"accept-encoding"))):
            key = (self.root, parts, True)
            entry = self.cache.get(key)
            if entry is None:
                return None
        ok, not_modified = self.heads(key, entry, private)
        if_none_match = headers.get(b"if-none-match")
        if if_none_match is not None and self._etag_matches(if_none_match.decode("latin-1"), entry.etag):
            status, out = 304, [not_modified, self.date(), self._tail]
        else:
            if if_none_match is None and b"if-modified-since" in headers:
                return None
            status, out = 200, [ok, self.date(), self._tail]
            if method == b"GET" and entry.body:
                out.append(entry.body)
        if audited is not None:
            writer = self.app.get(AUDIT)
            if writer is not None:
                writer.read(audited[0].label, audited[1], path, peer, status)
        self.hits += 1
        return out

    def _reader(self, headers: dict[bytes, bytes]) -> _Reader | None:
        """The reader of a request, remembered by its ``Authorization`` header's bytes (see
        :class:`_Reader`); None when the slow path must decide."""
        now = time.monotonic()
        if now >= self._check_at:
            self._check_rules(now)
        authorization = headers.get(b"authorization")
        reader = self._readers.get(authorization)
        if reader is None:
            principal = self._principal(headers)
            if principal is None:  # unknown, unverified or refused: never remembered here
                return None
            if len(self._readers) >= MAX_READERS:
                self._readers.clear()
            reader = self._readers[authorization] = _Reader(principal)
        return reader

    def _check_rules(self, now: float) -> None:
        """At most every :data:`RULES_CHECK_S` seconds: forget every reader when the access
        rules or ``city.json`` changed on disk (one ``stat`` each), and every
        :data:`~cim.server.security.TOKEN_MEMO_S` seconds as the token memo does."""
        from cim.server.security import TOKEN_MEMO_S

        self._check_at = now + RULES_CHECK_S
        self.layers.refresh()
        seen = (self.memo._db_stamp() if self.memo is not None else None, self.layers._stamp)
        if seen != self._rules_seen or now >= self._readers_until:
            self._readers.clear()
            self._rules_seen, self._readers_until = seen, now + TOKEN_MEMO_S

    def _principal(self, headers: dict[bytes, bytes]) -> Any:
        """The reader of a request when it can be decided here, else None (see the module)."""
        assert self.acl is not None
        authorization = headers.get(b"authorization")
        if authorization is None:
            return self.acl.anonymous()
        scheme, _, value = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or self.memo is None:
            return None
        known, principal = self.memo.get(value.strip())
        return principal if known else None


#: a folder's verdict for a reader: answered here, not audited / the slow path decides
_OPEN = "\x00open"
_SLOW = "\x00slow"
#: seconds between two checks of the access rules' and ``city.json``'s files by the fast path
#: (a revoked token or a newly restricted layer is refused by it at most this long after; the
#: slow path checks at every turn of the event loop). Checking at every turn instead cost the
#: fast path about 3 us a request of its ~30 (``benchmarks/README.md``, "Serving under load").
RULES_CHECK_S = 0.05
#: most readers remembered (each a verified token, or the anonymous one)
MAX_READERS = 10_000


class _Reader:
    """What one reader (a verified token, or the anonymous reader) may read, by first path
    segment: ``_OPEN`` (answered, not audited), ``_SLOW`` (the slow path answers: 403 or
    ``search.sqlite``) or the restricted layer's id (answered and audited). Kept by
    :class:`FastTable` per ``Authorization`` header's bytes until the rules or ``city.json``
    change, so a keep-alive client's repeated token costs a dictionary lookup, not a decode,
    a memo lookup and the layer checks."""

    __slots__ = ("folders", "label", "principal", "private")

    def __init__(self, principal: Any) -> None:
        self.principal = principal
        self.label: str = principal.label
        self.private: bool = not principal.anonymous
        self.folders: dict[str, str] = {}

    def decide(self, head: str, by_folder: dict[str, str]) -> str:
        """The verdict for files under ``head`` (remembered: ``by_folder`` is the layer map of
        the turn the reader was made in, both forgotten together)."""
        principal = self.principal
        verdict = _OPEN
        if principal.restricted:
            layer = by_folder.get(head)
            if head.startswith("search.sqlite") and not principal.reads_everything:
                verdict = _SLOW
            elif layer is not None and layer in principal.restricted:
                verdict = layer if principal.can_read(layer) else _SLOW
        if len(self.folders) < 1024:
            self.folders[head] = verdict
        return verdict


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


class FastPath(asyncio.Protocol):
    """One connection's protocol: cached files answered here, the rest to ``inner`` (see the module).

    Parameters
    ----------
    inner : HeadDeadline
        aiohttp's protocol for this connection, behind its head deadline.
    table : FastTable
        The application's fast path.
    timeout : float
        Seconds a request head held here may take from its first byte.
    """

    def __init__(self, inner: HeadDeadline, table: FastTable, timeout: float = HEAD_TIMEOUT) -> None:
        self.inner = inner
        self.table = table
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self._handler: Any = inner.inner
        self._buffer = b""
        self._passthrough = False
        self._write_paused = False
        self._read_paused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._peer = ""
        #: requests passed to aiohttp one by one, and how many of them its handlers started
        self._forwarded = 0
        self._started = 0
        if isinstance(inner, _Watched):
            inner.fast = self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._passthrough:
            self.inner.data_received(data)
            return
        self._buffer += data
        self._serve()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._buffer = b""
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.inner.resume_writing()
        if self._buffer and not self._passthrough:
            self._serve()
        if self._read_paused and not self._write_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    def _idle(self) -> bool:
        """Whether aiohttp has answered every request passed to it, every byte written.

        aiohttp marks a request in progress from its handler's start to the end of its answer's
        writing (``write_eof``); :class:`_Watched` counts the requests whose handler started. A
        request passed on but not started yet (queued, or its task not run) keeps it busy.
        """
        handler = self._handler
        return self._started == self._forwarded and not handler._request_in_progress and not handler._messages

    def _serve(self) -> None:
        """Answer or pass on every complete request head held (see the module)."""
        transport = self.transport
        buffer, pos = self._buffer, 0
        while pos < len(buffer):
            if transport is None or transport.is_closing():
                pos = len(buffer)
                break
            if self._write_paused:  # the client does not read: hold, and stop reading past a bound
                if len(buffer) - pos > MAX_HELD and not self._read_paused:
                    self._read_paused = True
                    transport.pause_reading()
                break
            end = buffer.find(b"\r\n\r\n", pos)
            if end < 0:
                if len(buffer) - pos > MAX_HEAD or buffer.find(b"\n\n", pos) >= 0:  # over-long, or bare LF lines
                    self._hand_over(buffer[pos:])
                    return
                break
            self._cancel()
            head = buffer[pos:end]
            verdict = self._answer(head)
            if verdict is None:  # a body may follow, or the head is not ours to read
                self._hand_over(buffer[pos:])
                return
            start, pos = pos, end + 4
            if isinstance(verdict, list):
                transport.writelines(verdict)
                self._keep_alive()
            else:
                self._forwarded += 1
                self.inner.data_received(buffer[start:pos])
        self._buffer = buffer[pos:] if pos else buffer
        if self._buffer and self._deadline is None and b"\r\n\r\n" not in self._buffer:
            self._deadline = asyncio.get_running_loop().call_later(self.timeout, self._expire)

    def _answer(self, head: bytes) -> list[bytes] | bool | None:
        """The answer to one request head; False: aiohttp answers it; None: aiohttp takes the
        connection from this request on."""
        if len(head) > MAX_HEAD:
            return None
        lines = head.split(b"\r\n")
        request_line = lines[0].split(b" ")
        if len(request_line) != 3 or len(lines) > MAX_HEADERS + 1:
            return None
        method, target, version = request_line
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            match = _HEADER.fullmatch(line)
            if match is None:
                return None
            name = match.group(1).lower()
            if name in headers or name in _BODY_HEADERS:
                return None
            headers[name] = match.group(2)
        if version != b"HTTP/1.1" or b"host" not in headers:  # aiohttp refuses a 1.1 request without Host
            return None
        if method not in (b"GET", b"HEAD") or not _PATH_OK.fullmatch(target) or not self._idle():
            return False
        connection = headers.get(b"connection")
        if (connection is not None and connection.lower() != b"keep-alive") or not _SLOW_HEADERS.isdisjoint(headers):
            return False
        return self.table.answer(method, target, headers, self._peer) or False

    def _keep_alive(self) -> None:
        """Tell aiohttp the connection is in use, so its keep-alive timer does not close it."""
        handler = self._handler
        with_timeout = getattr(handler, "_keepalive_timeout", 0)
        if with_timeout:
            handler._next_keepalive_close_time = self._loop.time() + with_timeout

    def _hand_over(self, held: bytes) -> None:
        """Pass the bytes held, and all that follow, to aiohttp."""
        self._cancel()
        self._passthrough = True
        self._buffer = b""
        if held:
            self.inner.data_received(held)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        log.warning("closed a connection from %s: no complete request head within %.0f s", self._peer or "?", self.timeout)
        if self.transport is not None:
            self.transport.close()


class _Watched(HeadDeadline):
    """aiohttp's protocol behind its head deadline, telling the fast path in front of it when
    aiohttp's handler of a request starts (:func:`cim.server.guard.head_middleware` says so)."""

    fast: FastPath | None = None

    def head_complete(self) -> None:
        super().head_complete()
        if self.fast is not None:
            self.fast._started += 1


class _Factory:
    """A listening socket's protocol factory (see :func:`connection_factory`)."""

    def __init__(self, handler: Any, head_timeout: float, table: FastTable | None) -> None:
        self.handler = handler
        self.head_timeout = head_timeout
        #: the fast path's table, None when it is off
        self.table = table

    def __call__(self) -> asyncio.Protocol:
        if self.table is None:
            return HeadDeadline(self.handler(), self.head_timeout)
        return FastPath(_Watched(self.handler(), self.head_timeout), self.table, self.head_timeout)


def connection_factory(app: web.Application, handler: Any, head_timeout: float = HEAD_TIMEOUT, *, fast: bool = True) -> _Factory:
    """The protocol factory of a listening socket: :class:`FastPath` in front of aiohttp's
    protocol (made by ``handler``, an :class:`aiohttp.web.Server`) behind its head deadline, or
    the latter alone when ``fast`` is False or the application is not one the fast path can
    reproduce (a warning says why). Its ``table`` is the fast path's :class:`FastTable`."""
    why = "turned off" if not fast else FastTable.supported(app)
    if why is not None and fast:
        log.warning("serving without the fast path: %s", why)
    return _Factory(handler, head_timeout, None if why is not None else FastTable(app))
