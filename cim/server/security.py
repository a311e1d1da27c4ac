"""Access control, the audit trail and the headers a security review expects, for the server.

:func:`security_middleware` runs first on every request:

1. limits: a query string over :data:`MAX_QUERY` bytes is a 414 (bodies are capped by the
   application's ``client_max_size``);
2. who: ``Authorization: Bearer cim_…`` (a token, for scripts), else the ``cim_session`` cookie
   (the viewer's login), else the anonymous reader; a bad token is a 401, never a silent
   downgrade to anonymous; a city that refuses anonymous readers answers 401 to them, except
   for the viewer's own files and the login;
3. what: a file under ``/city/LAYER/…`` of a layer the principal may not read is a 403, as is
   ``search.sqlite`` while any layer is restricted (the filtered ``/api/search`` serves it);
   reads of restricted layers are audited;
4. and every response gets ``nosniff``, a CSP that lets the viewer (and CesiumJS's workers and
   WebAssembly decoders) run and nothing else, ``frame-ancestors 'none'``, no referrer.

Layer ids are mapped to their folders from ``city.json`` (each layer's ``url``), read again when
the file changes. With no access rules (no ``CITY/.cim/access.sqlite``), every layer is public
and the middleware costs one dictionary lookup per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from cim.access import ANONYMOUS, AccessControl, Principal, file_stamp
from cim.audit import AuditWriter
from cim.errors import CimInputError
from cim.server.errors import Handler, error_response
from cim.server.state import ACCESS, AUDIT

__all__ = [
    "MAX_QUERY",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "audit",
    "audit_read",
    "city_for",
    "principal_of",
    "security_middleware",
    "setup_security",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "cim_session"
MAX_QUERY = 4096
MAX_BODY = 64 * 1024
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
PRIVATE: web.RequestKey[bool] = web.RequestKey("private", bool)

#: CesiumJS needs blob: workers and WebAssembly (Draco, KTX2 decoders), data: images and inline
#: style attributes it sets on its widgets; nothing may load from elsewhere or frame the page, and
#: no inline script runs (the viewer has none). 'unsafe-eval' is the one concession: the Knockout
#: library inside Cesium.js finds its global object with ``(0, eval)("this")`` when it loads, so
#: without it CesiumJS does not start (measured with Chromium; nothing of cim's evaluates strings);
#: and its web workers start from blob: URLs that import blob: scripts.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' blob: 'unsafe-eval' 'wasm-unsafe-eval'",
        "worker-src 'self' blob:",
        "child-src 'self' blob:",
        "img-src 'self' data: blob:",
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "connect-src 'self' data: blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
#: paths open to anyone even where a login is required: the viewer, CesiumJS, the login itself
_OPEN_PREFIXES = ("/api/login", "/api/me", "/api/health", "/cesium/")


class _LayerMap:
    """Layer ids by the first path segment of their folder, from ``city.json``."""

    def __init__(self, city_dir: Path) -> None:
        self.path = city_dir / "city.json"
        self._stamp: tuple[int, int] | None = None
        self.by_folder: dict[str, str] = {}
        self.city: dict[str, Any] = {}

    def refresh(self) -> None:
        stamp = file_stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return
        try:
            city = json.loads(self.path.read_bytes())
        except ValueError:
            return
        folders = {}
        for layer in city.get("layers", []):
            url = str(layer.get("url") or "")
            head = url.split("/", 1)[0]
            if head and "{" not in head:
                folders[head] = str(layer.get("id"))
        self.by_folder, self.city, self._stamp = folders, city, stamp


LAYER_MAP: web.AppKey[_LayerMap] = web.AppKey("layer_map")


def setup_security(app: web.Application, city_dir: Path, *, audit: bool = True) -> None:
    """Attach the access rules (if the city has any) and, while the application runs (from its
    startup to its cleanup: an application never started leaves no thread, and each forked
    worker starts its own), the audit writer."""
    app[ACCESS] = acl = AccessControl.load(city_dir)
    if acl is not None:
        app[TOKEN_MEMO] = _TokenMemo(acl)
    app[AUDIT] = None
    app[LAYER_MAP] = _LayerMap(city_dir)

    async def _open(app: web.Application) -> None:
        if not audit:
            return
        from cim.audit import AuditLog

        trail = AuditLog(city_dir)
        try:
            trail._mac_key(create=True)
        except Exception as exc:  # a read-only city: serve it, and say the trail is off
            log.warning("audit trail off for %s: %s", city_dir, exc)
            return
        app[AUDIT] = AuditWriter(trail)

    async def _close(app: web.Application) -> None:
        writer = app[AUDIT]
        if writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, writer.close)

    app.on_startup.append(_open)
    app.on_cleanup.append(_close)


def principal_of(request: web.Request) -> Principal:
    return request.get(PRINCIPAL, ANONYMOUS)


def audit(request: web.Request, action: str, status: int, **detail: Any) -> None:
    """Record one action of the request's principal (queued; never waits on the disk)."""
    writer: AuditWriter | None = request.app.get(AUDIT)
    if writer is None:
        return
    writer.record(
        user=principal_of(request).label,
        action=action,
        target=request.path,
        remote=request.remote,
        status=status,
        detail=detail,
    )


def audit_read(request: web.Request, layer: str, status: int) -> None:
    """Record a read of a restricted layer's file (queued, grouped into bursts: :mod:`cim.audit`)."""
    writer: AuditWriter | None = request.app.get(AUDIT)
    if writer is not None:
        writer.read(principal_of(request).label, layer, request.path, request.remote, status)


def city_for(request: web.Request) -> dict[str, Any]:
    """``city.json`` as this request's principal may see it: layers it may not read removed."""
    layers: _LayerMap = request.app[LAYER_MAP]
    layers.refresh()
    principal = principal_of(request)
    city = dict(layers.city)
    city["layers"] = [layer for layer in layers.city.get("layers", []) if principal.can_read(str(layer.get("id")))]
    return city


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class _TokenMemo:
    """Tokens this process verified, valid while the rules database is unchanged on disk.

    A token's check reads the database and hashes, so it runs in the executor; a script sends
    the same token with every request, and a hop to a thread per tile costs more than serving
    the tile. A verified token is remembered for :data:`TOKEN_MEMO_S` seconds (as long as
    :class:`cim.access.AccessControl` caches it), and forgotten as soon as the database changes
    (a ``cim users revoke``), which one ``stat`` per request sees.
    """

    def __init__(self, acl: AccessControl) -> None:
        self.acl = acl
        self._stamp: tuple[int, int] | None = None
        self._known: dict[str, tuple[Principal | None, float]] = {}

    def _db_stamp(self) -> tuple[int, int] | None:
        try:
            return file_stamp(self.acl.db)
        except OSError:
            return None

    def get(self, token: str) -> tuple[bool, Principal | None]:
        """(known, principal): known is False when the token must be checked in full."""
        stamp = self._db_stamp()
        if stamp != self._stamp:
            self._known.clear()
            self._stamp = stamp
            return False, None
        found = self._known.get(token)
        if found is None or found[1] < time.monotonic():
            return False, None
        return True, found[0]

    def put(self, token: str, principal: Principal | None, stamp: tuple[int, int] | None) -> None:
        if stamp != self._stamp:  # the rules changed while the token was checked
            return
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[token] = (principal, time.monotonic() + TOKEN_MEMO_S)


TOKEN_MEMO_S = 30.0
TOKEN_MEMO: web.AppKey[_TokenMemo] = web.AppKey("token_memo")


async def _authenticate(request: web.Request, acl: AccessControl) -> Principal | None:
    token = _bearer(request)
    if token is not None:
        memo = request.app.get(TOKEN_MEMO)
        known, principal = memo.get(token) if memo is not None else (False, None)
        if not known:
            stamp = memo._stamp if memo is not None else None
            principal = await asyncio.get_running_loop().run_in_executor(None, acl.authenticate_token, token)
            if memo is not None:
                memo.put(token, principal, stamp)
        if principal is None:
            raise _Unauthorized("invalid or revoked token")
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal = acl.authenticate_session(cookie)
        if principal is not None:
            return principal
    return acl.anonymous()


class _Unauthorized(Exception):
    pass


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if len(request.query_string) > MAX_QUERY:
        return error_response(414, f"query string longer than {MAX_QUERY} bytes")
    acl: AccessControl | None = request.app.get(ACCESS)
    if acl is None:
        return await handler(request)
    path = request.path
    try:
        principal = await _authenticate(request, acl)
    except _Unauthorized as exc:
        audit_denied = request.app.get(AUDIT)
        if audit_denied is not None:
            audit(request, "auth", 401, reason=str(exc))
        return error_response(401, str(exc), {"WWW-Authenticate": 'Bearer realm="cim"'})
    if principal is None:
        if path.startswith("/city/") or (path.startswith("/api/") and not path.startswith(_OPEN_PREFIXES)):
            return error_response(401, "this city needs a login", {"WWW-Authenticate": 'Bearer realm="cim"'})
        principal = Principal(None, None, acl.restricted)
    request[PRINCIPAL] = principal
    if path.startswith("/city/") and principal.restricted:
        rest = path[len("/city/") :]
        head = rest.split("/", 1)[0]
        if head.startswith("search.sqlite") and not principal.reads_everything:
            return error_response(403, "search.sqlite is not served while layers are restricted: use /api/search")
        layers: _LayerMap = request.app[LAYER_MAP]
        layers.refresh()
        layer = layers.by_folder.get(head)
        if layer is not None and layer in principal.restricted:
            request[PRIVATE] = True
            if not principal.can_read(layer):
                audit(request, "read-denied", 403, layer=layer)
                return error_response(403, f"layer {layer!r} is restricted")
            response = await handler(request)
            audit_read(request, layer, response.status)
            return response
    return await handler(request)


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.get(PRIVATE) or (PRINCIPAL in request and not principal_of(request).anonymous):
        cache = response.headers.get("Cache-Control", "")
        if "public" in cache:
            response.headers["Cache-Control"] = cache.replace("public", "private")
    if request.app.get(ACCESS) is not None:
        response.headers.add("Vary", "Authorization, Cookie")


# ---------------------------------------------------------------------- login


async def api_login(request: web.Request) -> web.Response:
    """``POST /api/login`` with JSON ``{"user": …, "password": …}``: sets the session cookie."""
    acl: AccessControl | None = request.app.get(ACCESS)
    if acl is None:
        raise CimInputError("this city has no accounts: every layer is public")
    try:
        body = await request.json()
        name, password = str(body["user"]), str(body["password"])
    except (ValueError, KeyError, TypeError):
        raise CimInputError('login needs a JSON body {"user": ..., "password": ...}') from None
    loop = asyncio.get_running_loop()
    principal = await loop.run_in_executor(None, partial(acl.authenticate_password, name, password))
    if principal is None:
        request[PRINCIPAL] = Principal(name, None)
        audit(request, "login", 401)
        return error_response(401, "wrong user name or password")
    request[PRINCIPAL] = principal
    audit(request, "login", 200)
    response = web.json_response({"user": principal.name, "role": principal.role}, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE,
        acl.session_cookie(principal),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=12 * 3600,
    )
    return response


async def api_logout(request: web.Request) -> web.Response:
    """``POST /api/logout``: ends the browser's session."""
    principal = principal_of(request)
    if not principal.anonymous:
        audit(request, "logout", 200)
    response = web.json_response({"user": None}, headers={"Cache-Control": "no-store"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def api_me(request: web.Request) -> web.Response:
    """``GET /api/me``: who the request is, and whether the city has accounts."""
    acl: AccessControl | None = request.app.get(ACCESS)
    principal = principal_of(request)
    return web.json_response(
        {
            "user": principal.name,
            "role": principal.role,
            "accounts": acl is not None,
            "anonymous": acl is None or acl.anonymous_allowed,
        },
        headers={"Cache-Control": "no-store"},
    )
