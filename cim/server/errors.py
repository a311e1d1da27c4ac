"""One table from cim error types to HTTP status codes, and the middleware that applies it.

Handlers raise :mod:`cim.errors` exceptions; :func:`error_middleware` turns them (and aiohttp's
own HTTP errors, such as 405 from the router) into a JSON body ``{"error": ..., "status": N}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from cim.errors import CimError, CimForbidden, CimInputError, CimNotFound

__all__ = ["STATUS_BY_ERROR", "error_middleware", "error_response", "status_for"]

log = logging.getLogger(__name__)

#: Status code of each cim error type; a subclass takes the entry of its nearest listed base.
STATUS_BY_ERROR: Mapping[type[CimError], int] = {
    CimNotFound: 404,
    CimForbidden: 403,
    CimInputError: 400,
    CimError: 500,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_for(exc: CimError) -> int:
    """Return the HTTP status code of a cim error.

    Parameters
    ----------
    exc : CimError
        The error a handler raised.

    Returns
    -------
    int
        The entry of the first type in ``type(exc).__mro__`` found in :data:`STATUS_BY_ERROR`.
    """
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """Build the JSON error response every failing request gets.

    Parameters
    ----------
    status : int
        HTTP status code.
    message : str
        Human-readable reason; never an absolute filesystem path.
    headers : Mapping[str, str], optional
        Extra headers (``Allow``, ``Content-Range``, ...).

    Returns
    -------
    aiohttp.web.Response
        ``{"error": message, "status": status}`` with ``Cache-Control: no-store``.
    """
    response = web.json_response({"error": message, "status": status}, status=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map cim errors through :data:`STATUS_BY_ERROR`, and aiohttp 4xx/5xx errors, to JSON."""
    try:
        return await handler(request)
    except CimError as exc:
        status = status_for(exc)
        if status >= 500:
            log.exception("error serving %s", request.path)
        return error_response(status, str(exc) or type(exc).__name__)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, exc.reason, kept)
