"""Connection guards aiohttp lacks: a deadline on request heads, and one log line per bad request.

aiohttp closes a connection that stays silent, but not one that trickles: a client sending a
header byte a second keeps a connection (and its memory) forever, and enough of them starve the
server (slowloris). :class:`HeadDeadline` wraps each connection's protocol: from the first byte
of a request, its head must be complete within :data:`HEAD_TIMEOUT` seconds, else the
connection is closed with one log line. An idle keep-alive connection has no deadline (aiohttp's
keep-alive timeout ends it); a request being answered has none either (a slow download is not
an attack on the head).

aiohttp also logs every malformed request (a bad header line, an over-long URL) as an ERROR with
a traceback: :class:`MalformedRequestFilter` turns those records into one WARNING line naming
the peer and the reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from cim.server.errors import Handler

__all__ = ["HEAD_TIMEOUT", "HeadDeadline", "MalformedRequestFilter", "head_middleware"]

log = logging.getLogger("cim.server")

#: seconds a request head may take from its first byte
HEAD_TIMEOUT = 10.0
_WATCHED: dict[asyncio.BaseTransport, HeadDeadline] = {}


class HeadDeadline(asyncio.Protocol):
    """An aiohttp connection protocol, with a deadline on each request head (see the module)."""

    def __init__(self, inner: Any, timeout: float = HEAD_TIMEOUT) -> None:
        self.inner = inner
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _WATCHED[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and not self._busy:
            self._deadline = asyncio.get_running_loop().call_later(self.timeout, self._expire)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self.transport is not None:
            _WATCHED.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def head_complete(self) -> None:
        self._cancel()
        self._busy = True

    def answered(self) -> None:
        self._busy = False

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning("closed a connection from %s: no complete request head within %.0f s", peer[0] if peer else "?", self.timeout)
        if self.transport is not None:
            self.transport.close()


@web.middleware
async def head_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection's guard its request head is complete, and when it is answered."""
    guard = _WATCHED.get(request.transport) if request.transport is not None else None
    if guard is None:
        return await handler(request)
    guard.head_complete()
    try:
        return await handler(request)
    finally:
        guard.answered()


class MalformedRequestFilter(logging.Filter):
    """On ``aiohttp.server``: a malformed request's traceback becomes one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = " ".join(str(exc.message).split())[:200]
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "malformed request from %s: %s", (peer, reason)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif isinstance(exc, ConnectionResetError):  # the client left mid-answer
            record.msg, record.args = "client %s left before its answer was sent", record.args
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True
