"""The annotations API (批注): list, create, edit, delete and export a city's notes.

Operations (declared with :mod:`cim.server.openapi`, routed by one line of the app):

- ``GET /api/annotations`` (paginated, newest first; ``bbox`` optional),
- ``POST /api/annotations`` (``{"kind", "coordinates", "text", "title"?}``: 201 and the note),
- ``GET``, ``PUT`` and ``DELETE /api/annotations/{id}``,
- ``GET /api/annotations.geojson`` (every note, as a download).

**Who is the author.** In a city with accounts, the signed-in user (by session cookie or token);
an anonymous reader may read notes but not write them (401). In a city without accounts every
writer is shown as ``anonymous``, and a browser is told apart from others by a random 256-bit
key the server gives it in an HttpOnly, SameSite=Strict cookie (``cim_author``, scoped to
``/api/annotations``, kept 400 days) on its first write: that browser, and only it, may then edit
and delete its notes; another browser (or a cleared cookie jar) is another author. The page's
scripts never see the key, and the store keeps only its SHA-256. The ``admin`` role may delete
any note. Each note in an answer says whether the asker may edit it (``editable``).

Every create, edit, delete (refused ones too) and export is written to the audit trail
(``annotation.create``, ``annotation.update``, ``annotation.delete``, ``annotation.export``).

Bodies are read here with their own limit (:data:`MAX_ANNOTATION_BODY`): a polygon of 10,000
vertices is larger than the server's default request size.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from cim.access import ADMIN
from cim.annotations import MAX_TEXT, MAX_TITLE, MAX_VERTICES, AnnotationsReadOnly, AnnotationStore, Author, geojson_bytes
from cim.errors import CimError, CimInputError
from cim.server.errors import error_response, status_for
from cim.server.openapi import PAGE_PARAMS, Operation, Param, bbox_param, check_value, operation, page, page_schema, register_schema
from cim.server.security import audit, principal_of
from cim.server.state import ACCESS, CITY_DIR

__all__ = ["AUTHOR_COOKIE", "MAX_ANNOTATION_BODY", "OPERATIONS"]

#: the cookie that tells anonymous browsers apart (a city without accounts)
AUTHOR_COOKIE = "cim_author"
AUTHOR_COOKIE_PATH = "/api/annotations"
#: Chromium keeps a cookie at most 400 days
AUTHOR_COOKIE_SECONDS = 400 * 24 * 3600
#: bytes of a request body: 10,000 vertices written with 17 digits each fit
MAX_ANNOTATION_BODY = 1 << 20
_SECRET = re.compile(r"^[A-Za-z0-9_\-]{43}$")
T = TypeVar("T")
#: a reader who may edit nothing (author keys are never empty)
_NOBODY = Author("nobody", "")

_VERTEX = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 2,
    "maxItems": 3,
    "description": "[lon, lat] or [lon, lat, height]: degrees (WGS 84), metres above the ellipsoid.",
}
_COORDINATES = {
    "type": "array",
    "items": _VERTEX,
    "minItems": 1,
    "maxItems": MAX_VERTICES,
    "description": "A pin: one vertex; a polyline: 2 or more; a polygon: 3 or more (its ring open or closed).",
}
_FIELDS = {
    "kind": {"type": "string", "enum": ["pin", "polyline", "polygon"]},
    "coordinates": _COORDINATES,
    "text": {"type": "string", "maxLength": MAX_TEXT, "description": "Plain text (never HTML)."},
    "title": {"type": "string", "maxLength": MAX_TITLE},
}
_CREATE = {"type": "object", "properties": _FIELDS, "required": ["kind", "coordinates", "text"], "additionalProperties": False}
_UPDATE = {"type": "object", "properties": _FIELDS, "additionalProperties": False}
_NOTE = register_schema(
    "Annotation",
    {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            **_FIELDS,
            "author": {"type": "string", "description": "A user's name, or anonymous."},
            "created": {"type": "string", "format": "date-time"},
            "updated": {"type": "string", "format": "date-time"},
            "editable": {"type": "boolean", "description": "Whether the asker may edit it."},
        },
        "required": ["id", "kind", "coordinates", "text", "title", "author", "created", "updated"],
    },
)
_PAGE = page_schema(_NOTE)
_BBOX = bbox_param("west,south,east,north in degrees: only notes that touch this box.")
_ID = Param("id", {"type": "integer", "minimum": 1}, "The note's id.", required=True, where="path")
_WRITE_ERRORS = {
    401: "The city has accounts and the request is not signed in.",
    403: "The note is someone else's.",
    404: "No such note.",
    503: "The city's folder cannot be written to.",
}


def _store(request: web.Request) -> AnnotationStore:
    return AnnotationStore(request.app[CITY_DIR])


def _reader(request: web.Request) -> Author | None:
    """Who asks, as an author (None: an anonymous reader who never wrote here, or may not write)."""
    if request.app[ACCESS] is not None:
        principal = principal_of(request)
        if principal.anonymous or principal.name is None:
            return None
        return Author.user(principal.name, admin=principal.role == ADMIN)
    secret = request.cookies.get(AUTHOR_COOKIE, "")
    return Author.browser(secret) if _SECRET.match(secret) else None


def _writer(request: web.Request) -> tuple[Author, str | None]:
    """The author of a write, and a new browser key to hand out (None when it has one).

    Raises
    ------
    _SignInFirst
        The city has accounts and the request is anonymous.
    """
    author = _reader(request)
    if author is not None:
        return author, None
    if request.app[ACCESS] is not None:
        raise _SignInFirst("sign in to write annotations in this city")
    secret = secrets.token_urlsafe(32)
    return Author.browser(secret), secret


class _SignInFirst(CimError):
    pass


async def _in_thread(call: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, call)


async def _body(request: web.Request, schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of the request, at most :data:`MAX_ANNOTATION_BODY` bytes, checked."""
    if request.content_length is not None and request.content_length > MAX_ANNOTATION_BODY:
        raise CimInputError(f"the request body is larger than {MAX_ANNOTATION_BODY} bytes")
    raw = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        raw += chunk
        if len(raw) > MAX_ANNOTATION_BODY:
            raise CimInputError(f"the request body is larger than {MAX_ANNOTATION_BODY} bytes")

    def parse() -> dict[str, Any]:
        try:
            value = json.loads(bytes(raw) or b"null", parse_constant=_no_constant)
        except CimInputError:
            raise
        except (ValueError, UnicodeDecodeError):
            raise CimInputError("the request body is not valid JSON") from None
        check_value("body", value, schema)
        return value

    return await _in_thread(parse)


def _no_constant(name: str) -> Any:
    raise CimInputError(f"the request body holds {name}: numbers must be finite")


async def _write(
    request: web.Request,
    action: str,
    status: int,
    call: Callable[[Author, dict[str, Any]], dict[str, Any]],
    schema: dict[str, Any] | None = None,
    **detail: Any,
) -> web.Response:
    """Read the body (against ``schema``), run ``call(author, body)`` in a thread, and answer;
    the outcome, refusals and bad bodies too, is audited as ``action``."""
    try:
        body = await _body(request, schema) if schema is not None else {}
        author, new_secret = _writer(request)
        note = await _in_thread(partial(call, author, body))
    except _SignInFirst as exc:
        audit(request, action, 401, **detail)
        return error_response(401, str(exc), {"WWW-Authenticate": 'Bearer realm="cim"'})
    except AnnotationsReadOnly as exc:
        audit(request, action, 503, **detail)
        return error_response(503, str(exc))
    except CimError as exc:
        audit(request, action, status_for(exc), **detail)
        raise
    audit(request, action, status, id=note["id"], kind=note["kind"], vertices=len(note["coordinates"]), **detail)
    response = web.json_response(note, status=status, headers={"Cache-Control": "no-store"})
    if new_secret is not None:
        response.set_cookie(
            AUTHOR_COOKIE,
            new_secret,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path=AUTHOR_COOKIE_PATH,
            max_age=AUTHOR_COOKIE_SECONDS,
        )
    return response


@operation(
    "GET",
    "/api/annotations",
    summary="List the city's annotations (newest first)",
    tag="annotations",
    params=(*PAGE_PARAMS, _BBOX),
    response=_PAGE,
)
async def list_annotations(request: web.Request, params: dict[str, Any]) -> web.Response:
    """One page of the notes every viewer of the city shares; ``editable`` says which are the asker's."""
    call = partial(
        _store(request).page, bbox=params.get("bbox"), limit=params["limit"], offset=params["offset"], reader=_reader(request) or _NOBODY
    )
    total, notes = await _in_thread(call)
    return web.json_response(page(notes, total, params), headers={"Cache-Control": "no-store"})


@operation(
    "POST",
    "/api/annotations",
    summary="Add an annotation: a pin, a polyline or a polygon with a note",
    tag="annotations",
    body=_CREATE,
    response=_NOTE,
    extra_responses={k: v for k, v in _WRITE_ERRORS.items() if k in (401, 503)},
)
async def create_annotation(request: web.Request, params: dict[str, Any]) -> web.Response:
    """Store a note (201); the author is the signed-in user, or this browser (see the module)."""
    store = _store(request)
    return await _write(
        request,
        "annotation.create",
        201,
        lambda author, body: store.create(author, body["kind"], body["coordinates"], body["text"], body.get("title", "")),
        _CREATE,
    )


@operation(
    "GET",
    "/api/annotations/{id}",
    summary="One annotation",
    tag="annotations",
    params=(_ID,),
    response=_NOTE,
    extra_responses={404: "No such note."},
)
async def get_annotation(request: web.Request, params: dict[str, Any]) -> web.Response:
    """One note."""
    note = await _in_thread(partial(_store(request).get, params["id"], _reader(request) or _NOBODY))
    return web.json_response(note, headers={"Cache-Control": "no-store"})


@operation(
    "PUT",
    "/api/annotations/{id}",
    summary="Edit one's own annotation",
    tag="annotations",
    params=(_ID,),
    body=_UPDATE,
    response=_NOTE,
    extra_responses=_WRITE_ERRORS,
)
async def update_annotation(request: web.Request, params: dict[str, Any]) -> web.Response:
    """Change the given fields (kind, coordinates, text, title) of a note; its author only (403)."""
    note_id, store = params["id"], _store(request)
    return await _write(
        request, "annotation.update", 200, lambda author, body: store.update(note_id, author, **body), _UPDATE, note=note_id
    )


@operation(
    "DELETE",
    "/api/annotations/{id}",
    summary="Delete one's own annotation (an admin: any)",
    tag="annotations",
    params=(_ID,),
    response=_NOTE,
    extra_responses=_WRITE_ERRORS,
)
async def delete_annotation(request: web.Request, params: dict[str, Any]) -> web.Response:
    """Remove a note (its author, or the admin role; else 403) and answer with what it was."""
    note_id, store = params["id"], _store(request)
    return await _write(request, "annotation.delete", 200, lambda author, body: store.delete(note_id, author), note=note_id)


@operation(
    "GET",
    "/api/annotations.geojson",
    summary="Every annotation as GeoJSON (a download)",
    tag="annotations",
    params=(_BBOX,),
    response={"type": "object", "description": "A FeatureCollection: Point, LineString or Polygon features."},
    response_type="application/geo+json",
)
async def export_annotations(request: web.Request, params: dict[str, Any]) -> web.Response:
    """The notes (touching ``bbox``) as a GeoJSON FeatureCollection, oldest first."""
    store = _store(request)
    notes = await _in_thread(partial(store.all, bbox=params.get("bbox")))
    body = await _in_thread(partial(geojson_bytes, notes))
    audit(request, "annotation.export", 200, count=len(notes), bbox=request.query.get("bbox"))
    return web.Response(
        body=body,
        headers={
            "Content-Type": "application/geo+json; charset=utf-8",
            "Content-Disposition": 'attachment; filename="annotations.geojson"',
            "Cache-Control": "no-store",
        },
    )


#: the operations of this module, routed by :func:`cim.server.app.create_app`
OPERATIONS: tuple[Operation, ...] = (
    list_annotations,
    create_annotation,
    export_annotations,
    get_annotation,
    update_annotation,
    delete_annotation,
)
