"""The aiohttp application that serves a built city and the CesiumJS viewer.

Files are served by :func:`serve_file`, not by ``aiohttp.web.FileResponse``: the server must send
``X.gz`` as ``X`` with ``Content-Encoding: gzip`` when ``X`` is missing, whatever the client's
``Accept-Encoding`` (FileResponse only negotiates precompressed siblings of an existing file),
must flag gzip-compressed ``.terrain`` tiles by their magic bytes, and must use the project's own
content-type table. Doing ETag/304, Range and HEAD by hand is a few lines more and keeps all of
it in one place. Every filesystem call (resolve, open, stat, read) runs in the loop's default
executor so a slow disk never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import functools
import gc
import gzip
import io
import json
import logging
import mimetypes
import os
import re
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from cim.errors import CimError, CimForbidden, CimInputError, CimIOError, CimNotFound
from cim.server import analysis, api, query_api, vendor
from cim.server import annotations as annotations_api
from cim.server.errors import Handler, error_middleware, error_response
from cim.server.fastpath import connection_factory
from cim.server.filecache import DEFAULT_CACHE_BYTES, CachedFile, FileCache, stamp_of
from cim.server.guard import HEAD_TIMEOUT, MalformedRequestFilter, head_middleware
from cim.server.openapi import Operation, add_operations, operation
from cim.server.security import (
    MAX_BODY,
    add_security_headers,
    api_login,
    api_logout,
    api_me,
    city_for,
    security_middleware,
    setup_security,
)
from cim.server.state import ACCESS, CITY_DIR, FILE_CACHE, VIEWER_DIR
from cim.server.versions import add_version_routes
from cim.server.workers import listening_socket, serve_workers

__all__ = ["content_type_for", "create_app", "default_viewer_dir", "run", "serve_file"]

log = logging.getLogger(__name__)

CESIUM_BUILD = Path("node_modules", "cesium", "Build", "Cesium")


def default_viewer_dir() -> Path:
    """The viewer the package carries (``cim/viewer``, copied in when a wheel is built), else
    the checkout's ``viewer/`` folder beside the package (a source tree or an editable install)."""
    packaged = Path(__file__).resolve().parents[1] / "viewer"
    if (packaged / "index.html").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "viewer"


CONTENT_TYPES: dict[str, str] = {
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".b3dm": "application/octet-stream",
    ".i3dm": "application/octet-stream",
    ".pnts": "application/octet-stream",
    ".cmpt": "application/octet-stream",
    ".subtree": "application/octet-stream",
    ".terrain": "application/vnd.quantized-mesh",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".ktx2": "image/ktx2",
    ".svg": "image/svg+xml",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".wasm": "application/wasm",
    ".gz": "application/gzip",
}
#: Revalidated on every load, so a rebuilt tileset or an edited viewer shows at once.
NO_CACHE_SUFFIXES = frozenset({".json", ".html"})
#: Viewer files that are tooling, not content.
VIEWER_HIDDEN = frozenset({"package.json", "package-lock.json", "tsconfig.json"})
#: Viewer folders that are tooling, not content (npm packages, type declarations).
VIEWER_HIDDEN_DIRS = frozenset({"node_modules", "types"})
GZIP_MAGIC = b"\x1f\x8b"
CHUNK_SIZE = 256 * 1024
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": ("ETag, Last-Modified, Content-Length, Content-Range, Content-Encoding, Accept-Ranges"),
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def content_type_for(name: str) -> str:
    """Return the Content-Type of a file name: the project table, then mimetypes, then bytes."""
    suffix = Path(name).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed is None or encoding is not None:
        return "application/octet-stream"
    return guessed


def cache_control_for(name: str) -> str:
    """Return the Cache-Control value of a file name."""
    if Path(name).suffix.lower() in NO_CACHE_SUFFIXES:
        return "no-cache"
    return "public, max-age=3600"


@dataclass(frozen=True, slots=True)
class _OpenFile:
    """A file opened for one response, with the facts its headers need."""

    handle: BinaryIO
    size: int
    mtime: float
    etag: str
    gzip_encoded: bool
    #: (inode, size, mtime_ns), and the paths a cache entry of this file checks (see cim.server.filecache)
    stamp: tuple[int, int, int] = (0, 0, 0)
    path: str = ""
    absent: str | None = None

    def _replace_handle(self, handle: BinaryIO) -> _OpenFile:
        return dataclasses.replace(self, handle=handle)


def _safe_relative(path: str) -> tuple[str, ...]:
    """Split a URL path tail into segments, refusing every way out of the root."""
    if "\x00" in path or "\\" in path or path.startswith("/"):
        raise CimForbidden("forbidden path")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise CimForbidden("forbidden path")
    if not parts or any(p.startswith(".") for p in parts):
        raise CimNotFound(f"not found: {path}")
    return parts


def _resolve_inside(root: Path, parts: tuple[str, ...]) -> Path:
    """Resolve ``root/parts`` and refuse it unless it stays under ``root`` after symlinks."""
    target = root.joinpath(*parts).resolve()
    if not target.is_relative_to(root):
        raise CimForbidden("forbidden path")
    return target


def _open_file(root: Path, parts: tuple[str, ...]) -> _OpenFile:
    """Find and open the file to send (blocking: run it in an executor).

    ``root`` must already be resolved. A missing ``X`` falls back to ``X.gz``; a ``.terrain`` file
    starting with the gzip magic is flagged as gzip-encoded too.
    """
    target = _resolve_inside(root, parts)
    gzip_encoded = False
    url_path, absent = str(root.joinpath(*parts)), None
    if not target.exists():
        gz_parts = (*parts[:-1], parts[-1] + ".gz")
        target = _resolve_inside(root, gz_parts)
        gzip_encoded = True
        url_path, absent = url_path + ".gz", url_path
    if not target.is_file():
        raise CimNotFound(f"not found: {'/'.join(parts)}")
    try:
        handle = target.open("rb")
    except (FileNotFoundError, NotADirectoryError) as exc:  # removed since the checks above
        raise CimNotFound(f"not found: {'/'.join(parts)}") from exc
    except PermissionError as exc:
        raise CimForbidden(f"forbidden: {'/'.join(parts)}") from exc
    except OSError as exc:
        raise CimIOError(f"cannot read {'/'.join(parts)}: {exc.strerror}") from exc
    try:
        stat = os.fstat(handle.fileno())
        if not gzip_encoded and target.suffix == ".terrain":
            gzip_encoded = handle.read(2) == GZIP_MAGIC
            handle.seek(0)
    except BaseException:
        handle.close()
        raise
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    return _OpenFile(handle, stat.st_size, stat.st_mtime, etag, gzip_encoded, stamp_of(stat), url_path, absent)


def _open_small(root: Path, parts: tuple[str, ...], max_file: int) -> tuple[_OpenFile, bytes | None]:
    """:func:`_open_file`, plus the whole body when it is at most ``max_file`` bytes (then the
    file is closed already; blocking: run it in an executor)."""
    opened = _open_file(root, parts)
    if opened.size > max_file:
        return opened, None
    try:
        data = opened.handle.read(max_file + 1)
    finally:
        opened.handle.close()
    if len(data) > max_file:  # grew since fstat: let the next request find it again
        return opened._replace_handle(io.BytesIO(data)), None
    return opened, data


@functools.lru_cache(maxsize=256)
def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header admits gzip (RFC 9110 12.5.3; ``q=0`` refuses).

    No header at all means any coding is acceptable; an empty one means none is.
    """
    if header is None:
        return True
    allowed: dict[str, bool] = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name.strip():
            allowed[name.strip().lower()] = q > 0
    return allowed.get("gzip", allowed.get("x-gzip", allowed.get("*", False)))


def _decompressed(opened: _OpenFile) -> _OpenFile:
    """The file's bytes un-gzipped, for a client that does not take gzip (blocking)."""
    try:
        data = gzip.decompress(opened.handle.read())
    except (OSError, EOFError) as exc:
        raise CimIOError(f"a precompressed file is damaged: {exc}") from exc
    finally:
        opened.handle.close()
    return _OpenFile(
        io.BytesIO(data), len(data), opened.mtime, opened.etag[:-1] + '-identity"', False, opened.stamp, opened.path, opened.absent
    )


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison of an ``If-None-Match`` header against an ETag (RFC 9110 13.1.2)."""
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse one ``bytes=`` range into ``(start, stop)``, stop exclusive.

    Returns ``None`` for a header to ignore (malformed or several ranges: send the whole file).
    Raises ``ValueError`` when the range cannot be satisfied.
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        start, stop = max(size - int(last), 0), size
        if int(last) == 0:
            raise ValueError("empty suffix range")
    else:
        start = int(first)
        stop = size if last == "" else min(int(last) + 1, size)
        if last != "" and int(last) < start:
            return None
    if start >= size:
        raise ValueError("range starts past the end")
    return start, stop


async def serve_file(request: web.Request, root: Path, path: str) -> web.StreamResponse:
    """Send one file under ``root`` with caching, range, precompression and HEAD support.

    Small files are answered from the application's :class:`~cim.server.filecache.FileCache`
    (:data:`FILE_CACHE`, when it has one) with the same status, headers and bytes as from disk.

    Parameters
    ----------
    request : aiohttp.web.Request
        The GET or HEAD request.
    root : Path
        Resolved directory served; nothing outside it is ever read.
    path : str
        Decoded URL path tail, relative to ``root``.

    Returns
    -------
    aiohttp.web.StreamResponse
        200, 206, 304 or 416.

    Raises
    ------
    CimForbidden
        When the path tries to leave ``root``.
    CimNotFound
        When there is no such file (nor ``path + ".gz"``).
    """
    parts = _safe_relative(path)
    cache = request.app.get(FILE_CACHE)
    key = (str(root), parts, False)
    if cache is not None:
        entry = cache.get(key)
        if entry is not None:
            if not entry.gzip_encoded or accepts_gzip(request.headers.get("Accept-Encoding")):
                return _answer(request, entry)
            plain = cache.get((key[0], parts, True))
            if plain is not None:
                return _answer(request, plain)
    loop = asyncio.get_running_loop()
    max_file = cache.max_file if cache is not None and cache.max_bytes else -1
    opened, data = await loop.run_in_executor(None, _open_small, root, parts, max_file)
    if data is not None and cache is not None:
        entry = CachedFile(
            data,
            _file_headers(parts[-1], opened.etag, opened.mtime, opened.gzip_encoded),
            opened.etag,
            opened.mtime,
            opened.stamp,
            opened.path,
            opened.absent,
        )
        cache.put(key, entry)
        if entry.gzip_encoded and not accepts_gzip(request.headers.get("Accept-Encoding")):
            entry = await loop.run_in_executor(None, _decompressed_entry, entry, parts[-1])
            cache.put((key[0], parts, True), entry)
        return _answer(request, entry)
    if opened.gzip_encoded and not accepts_gzip(request.headers.get("Accept-Encoding")):
        opened = await loop.run_in_executor(None, _decompressed, opened)
    try:
        headers = _file_headers(parts[-1], opened.etag, opened.mtime, opened.gzip_encoded)
        if _not_modified(request, opened.etag, opened.mtime):
            del headers["Content-Type"]
            return web.Response(status=304, headers=headers)
        start, stop, status = 0, opened.size, 200
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if range_header and (if_range is None or if_range.strip() == opened.etag):
            try:
                byte_range = _byte_range(range_header, opened.size)
            except ValueError:
                return error_response(416, "range not satisfiable", {"Content-Range": f"bytes */{opened.size}"})
            if byte_range is not None:
                start, stop = byte_range
                status = 206
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{opened.size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = stop - start
        await response.prepare(request)
        try:
            if request.method != "HEAD":
                await _send_bytes(response, opened.handle, start, stop)
            await response.write_eof()
        except ConnectionResetError:  # the client left (a viewer flying on cancels tiles): nothing to report
            log.debug("client left during %s", request.path)
        return response
    finally:
        await loop.run_in_executor(None, opened.handle.close)


def _file_headers(name: str, etag: str, mtime: float, gzip_encoded: bool) -> dict[str, str]:
    """The headers of a 200 answer with a file's bytes (Content-Length aside)."""
    headers = {
        "Content-Type": content_type_for(name),
        "ETag": etag,
        "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
        "Cache-Control": cache_control_for(name),
        "Accept-Ranges": "bytes",
    }
    if gzip_encoded:
        headers["Content-Encoding"] = "gzip"
    if gzip_encoded or etag.endswith('-identity"'):
        headers["Vary"] = "Accept-Encoding"
    return headers


def _decompressed_entry(entry: CachedFile, name: str) -> CachedFile:
    """A cached gzip file's entry for a client that does not take gzip (blocking)."""
    try:
        data = gzip.decompress(entry.body)
    except (OSError, EOFError) as exc:
        raise CimIOError(f"a precompressed file is damaged: {exc}") from exc
    etag = entry.etag[:-1] + '-identity"'
    return dataclasses.replace(entry, body=data, headers=_file_headers(name, etag, entry.mtime, False), etag=etag)


def _answer(request: web.Request, entry: CachedFile) -> web.Response:
    """The answer to a GET or HEAD of a cached file: 200, 206, 304 or 416, as from disk."""
    if _not_modified(request, entry.etag, entry.mtime):
        headers = dict(entry.headers)
        del headers["Content-Type"]
        return web.Response(status=304, headers=headers)
    range_header = request.headers.get("Range")
    if range_header:
        if_range = request.headers.get("If-Range")
        if if_range is None or if_range.strip() == entry.etag:
            size = len(entry.body)
            try:
                byte_range = _byte_range(range_header, size)
            except ValueError:
                return error_response(416, "range not satisfiable", {"Content-Range": f"bytes */{size}"})
            if byte_range is not None:
                start, stop = byte_range
                headers = dict(entry.headers)
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
                return web.Response(status=206, body=entry.body[start:stop], headers=headers)
    if not entry.body:  # aiohttp leaves out the Content-Length of an empty body for HEAD
        return web.Response(headers={**entry.headers, "Content-Length": "0"})
    return web.Response(body=entry.body, headers=entry.headers)


def _not_modified(request: web.Request, etag: str, mtime: float) -> bool:
    """Decide a conditional GET; ``If-None-Match`` wins over ``If-Modified-Since``."""
    headers = request.headers
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, etag)
    if "If-Modified-Since" not in headers:
        return False
    since = request.if_modified_since
    return since is not None and int(mtime) <= since.timestamp()


async def _send_bytes(response: web.StreamResponse, handle: BinaryIO, start: int, stop: int) -> None:
    """Copy ``handle[start:stop]`` to the response, reading in the executor chunk by chunk."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, handle.seek, start)
    remaining = stop - start
    while remaining > 0:
        chunk = await loop.run_in_executor(None, handle.read, min(CHUNK_SIZE, remaining))
        if not chunk:  # the file shrank since fstat: end the body short rather than hang
            break
        await response.write(chunk)
        remaining -= len(chunk)


async def _viewer_index(request: web.Request) -> web.StreamResponse:
    return await serve_file(request, request.app[VIEWER_DIR], "index.html")


async def _viewer_file(request: web.Request) -> web.StreamResponse:
    path = request.match_info["path"]
    parts = _safe_relative(path)
    # lower(): on a case-insensitive filesystem /Node_Modules/ would reach the same folder
    if parts[0].lower() in VIEWER_HIDDEN_DIRS or "/".join(parts).lower() in VIEWER_HIDDEN:
        raise CimNotFound(f"not found: {path}")
    return await serve_file(request, request.app[VIEWER_DIR], path)


async def _cesium_file(request: web.Request) -> web.StreamResponse:
    root = request.app[VIEWER_DIR] / CESIUM_BUILD
    return await serve_file(request, root, request.match_info["path"])


async def _city_file(request: web.Request) -> web.StreamResponse:
    path = request.match_info["path"]
    if path == "city.json" and request.app[ACCESS] is not None:  # as this reader may see it
        return web.json_response(city_for(request), headers={"Cache-Control": "no-cache"})
    return await serve_file(request, request.app[CITY_DIR], path)


async def _api_city(request: web.Request) -> web.Response:
    if request.app[ACCESS] is not None:
        return web.json_response(city_for(request), headers={"Cache-Control": "no-cache"})
    city_json = request.app[CITY_DIR] / "city.json"
    try:
        raw = await asyncio.get_running_loop().run_in_executor(None, city_json.read_bytes)
    except FileNotFoundError as exc:
        raise CimNotFound("city.json not found") from exc
    try:
        city = json.loads(raw)
    except ValueError as exc:
        raise CimError(f"city.json is not valid JSON: {exc}") from exc
    return web.json_response(city, headers={"Cache-Control": "no-cache"})


async def _api_health(request: web.Request) -> web.Response:
    """``{"status": "ok", "worker": PID}``."""
    return web.json_response({"status": "ok", "worker": os.getpid()}, headers={"Cache-Control": "no-store"})


def _documented(method: str, path: str, handler: Handler, summary: str, tag: str, **kw: Any) -> Operation:
    """An operation of a handler that reads the request itself (no query parameters)."""

    async def handle(request: web.Request, params: dict[str, Any]) -> web.StreamResponse:
        return await handler(request)

    handle.__name__ = handler.__name__.lstrip("_")
    return operation(method, path, summary=summary, tag=tag, description=(handler.__doc__ or "").strip(), **kw)(handle)


_BASE_OPERATIONS: tuple[Operation, ...] = (
    _documented("GET", "/api/health", _api_health, "Liveness, and which server process answered", "meta"),
    _documented("GET", "/api/city", _api_city, "The city: its layers as this user may see them (city.json)", "city"),
    _documented(
        "POST",
        "/api/login",
        api_login,
        "Sign in: sets an HttpOnly session cookie",
        "account",
        body={
            "type": "object",
            "properties": {"user": {"type": "string"}, "password": {"type": "string"}},
            "required": ["user", "password"],
        },
        extra_responses={401: "Wrong user name or password."},
    ),
    _documented("POST", "/api/logout", api_logout, "Sign out: ends the session", "account"),
    _documented("GET", "/api/me", api_me, "Who this request is, and whether the city has accounts", "account"),
)


@web.middleware
async def _preflight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every CORS preflight (``OPTIONS``) before routing reaches a handler."""
    if request.method != "OPTIONS":
        return await handler(request)
    requested = request.headers.get("Access-Control-Request-Headers")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": requested or "Range, If-None-Match, Content-Type, Authorization",
            "Access-Control-Max-Age": "86400",
            "Allow": "GET, HEAD, POST, OPTIONS",
        },
    )


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in CORS_HEADERS.items():
        response.headers.setdefault(name, value)


def create_app(
    city_dir: Path, viewer_dir: Path | None = None, *, audit: bool = True, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> web.Application:
    """Build the application serving one built city and the viewer.

    Parameters
    ----------
    city_dir : Path
        A built city: a folder holding ``city.json`` and its tilesets.
    viewer_dir : Path, optional
        The viewer's static files, with CesiumJS under ``node_modules/cesium``; defaults to the
        repository's ``viewer/`` folder.
    audit : bool
        Keep the audit trail in ``CITY/.cim/audit.jsonl`` (see :mod:`cim.audit`); a city that
        cannot be written to is served with the trail off and a warning.
    cache_bytes : int
        Bytes of small files' answers kept in memory (:mod:`cim.server.filecache`); 0: none.

    Returns
    -------
    aiohttp.web.Application
        Routes ``/``, ``/{path}``, ``/cesium/{path}``, ``/city/{path}``, ``/api/city``,
        ``/api/search``, ``/api/login``, ``/api/logout``, ``/api/me``, ``/api/health`` and
        ``/api/openapi.json`` (the operations of :mod:`cim.server.openapi`);
        access rules and audit trail as :mod:`cim.server.security` describes; state under :data:`CITY_DIR` and :data:`VIEWER_DIR` (both resolved).

    Raises
    ------
    CimNotFound
        When ``city_dir`` has no ``city.json``.
    """
    city_root = Path(city_dir).resolve()
    if not (city_root / "city.json").is_file():
        raise CimNotFound(f"no city.json in {city_dir}")
    viewer_root = Path(viewer_dir if viewer_dir is not None else default_viewer_dir()).resolve()
    app = web.Application(
        middlewares=[head_middleware, error_middleware, _preflight_middleware, security_middleware], client_max_size=MAX_BODY
    )
    app[CITY_DIR] = city_root
    app[VIEWER_DIR] = viewer_root
    app[FILE_CACHE] = FileCache(cache_bytes) if cache_bytes > 0 else None
    setup_security(app, city_root, audit=audit)
    app.on_response_prepare.append(_add_cors_headers)
    app.on_response_prepare.append(add_security_headers)
    # the documented JSON API (cim/server/openapi.py): one line per module that declares operations
    add_operations(app, _BASE_OPERATIONS)
    add_operations(app, api.OPERATIONS)
    add_operations(app, annotations_api.OPERATIONS)
    add_operations(app, analysis.OPERATIONS)
    add_operations(app, query_api.OPERATIONS)
    app.router.add_get("/city/{path:.*}", _city_file)
    app.router.add_get("/cesium/{path:.*}", _cesium_file)
    app.router.add_get("/vendor/{name}/{path:.*}", vendor.vendor_file)
    add_version_routes(app)
    app.router.add_get("/", _viewer_index)
    app.router.add_get("/{path:.*}", _viewer_file)
    return app


def run(
    city_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    viewer_dir: Path | None = None,
    *,
    head_timeout: float = HEAD_TIMEOUT,
    workers: int = 1,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> None:
    """Serve a city until interrupted, after printing its URL.

    Parameters
    ----------
    city_dir : Path
        A built city (see :func:`create_app`).
    host : str
        Interface to bind; loopback by default.
    port : int
        TCP port.
    viewer_dir : Path, optional
        Viewer folder (see :func:`create_app`).
    head_timeout : float
        Seconds a request head may take from its first byte (see :mod:`cim.server.guard`).
    workers : int
        Server processes sharing the port (:mod:`cim.server.workers`, forked: the CLI's choice,
        one a CPU by default there); with 1, the server runs in this process.
    cache_bytes : int
        Bytes of small files each process keeps in memory (:mod:`cim.server.filecache`); 0: none.

    Raises
    ------
    CimNotFound
        When ``city_dir`` has no ``city.json``.
    CimInputError
        When ``workers`` or ``cache_bytes`` is out of range.
    CimIOError
        When the address cannot be bound.
    """
    if workers < 1:
        raise CimInputError(f"--workers must be at least 1, not {workers}")
    if cache_bytes < 0:
        raise CimInputError("the cache size cannot be negative")
    city_root = Path(city_dir).resolve()
    if not (city_root / "city.json").is_file():
        raise CimNotFound(f"no city.json in {city_dir}")
    viewer_root = Path(viewer_dir if viewer_dir is not None else default_viewer_dir()).resolve()
    if not (viewer_root / CESIUM_BUILD / "Cesium.js").is_file():
        print(
            f"cim: warning: no CesiumJS under {viewer_root} (run `npm ci` in viewer/, then reinstall): the viewer will not load",
            flush=True,
        )
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())

    def serve(sock: socket.socket) -> None:
        # the app (and its audit writer's thread) is made in the process that serves it
        app = create_app(city_root, viewer_root, cache_bytes=cache_bytes)
        if workers > 1:  # a worker process is the server's own: what lives now lives as long as
            # it does, so keep the collector's full passes (which walk every tracked object) off it
            gc.collect()
            gc.freeze()
        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(app, sock, head_timeout))

    shown = f"[{host}]" if ":" in host else host
    if workers == 1:
        sock = listening_socket(host, port)
        print(f"cim: serving {city_root} at http://{shown}:{sock.getsockname()[1]}/", flush=True)
        serve(sock)
    else:
        print(f"cim: serving {city_root} at http://{shown}:{port}/ ({workers} worker processes)", flush=True)
        serve_workers(serve, host, port, workers)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (``pip install uvloop``: its transports and
    loop are written in C, which roughly halves the time a small answer costs), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(app: web.Application, sock: socket.socket, head_timeout: float = HEAD_TIMEOUT) -> None:
    """Serve on a listening socket until SIGINT or SIGTERM, each connection under a request-head
    deadline (:class:`cim.server.guard.HeadDeadline`) and cached city files answered below
    aiohttp (:mod:`cim.server.fastpath`), then close cleanly (the audit trail is flushed)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    handler = runner.server
    assert handler is not None
    server = await loop.create_server(connection_factory(app, handler, head_timeout), sock=sock)
    try:
        await stop.wait()
    finally:
        server.close()
        await runner.cleanup()
