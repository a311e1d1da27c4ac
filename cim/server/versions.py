"""Versions over HTTP: an old version's files beside the current ones, the list, and diffs.

- ``GET /v/{version}/city/{path}``: a file of ``version`` (``v3``, ``latest``), served from the
  city's version store (:mod:`cim.versions`) like ``/city/{path}``; so a viewer pointed at
  ``/v/v1/city/city.json`` shows the city as it was, beside ``/city/city.json`` as it is. A
  stored version never changes: its files are sent with ``Cache-Control: immutable``.
- ``GET /api/versions``: the versions, oldest first (without their file lists).
- ``GET /api/diff?from=V1&to=V2``: :func:`cim.diff.diff_versions` as JSON, audited.

Access rules hold as for the live city: a layer the reader may not read is a 403 in any version,
left out of diffs, and the search index of a version is refused while any layer is restricted;
a reader's reads of a restricted layer's files are audited (and sent private) as they are live.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

from aiohttp import web

from cim.errors import CimForbidden, CimNotFound
from cim.searchindex import INDEX_NAME
from cim.server.openapi import Param, add_operations, operation
from cim.server.security import PRIVATE, audit, audit_read, principal_of
from cim.server.state import ACCESS, CITY_DIR
from cim.versions import OBJECTS_DIR, Version, get_version, list_versions, object_path

__all__ = ["add_version_routes", "api_versions", "api_diff", "version_file"]


def _hidden_layers(request: web.Request, version: Version) -> set[str]:
    """Ids of the layers of ``version`` this request's reader may not read."""
    if request.app[ACCESS] is None:
        return set()
    principal = principal_of(request)
    if not principal.restricted:
        return set()
    return {layer for layer in principal.restricted if not principal.can_read(layer)}


def _layer_folders(city_doc: dict, layers: set[str]) -> dict[str, str]:
    """First path segment (folder) -> layer id, for the ``layers`` of a version's ``city.json``."""
    out: dict[str, str] = {}
    for layer in city_doc.get("layers", []):
        if str(layer.get("id")) in layers:
            url = str(layer.get("url", ""))
            out[url.split("/", 1)[0] if "/" in url else str(layer.get("id"))] = str(layer.get("id"))
    return out


def _resolve(city, version_id: str, path: str) -> tuple[Version, str]:
    """(blocking) the version and the object's path relative to the objects folder."""
    version = get_version(city, version_id)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." or p.startswith(".") for p in parts) or "\\" in path or "\x00" in path:
        raise CimNotFound(f"not found: {path}")
    rel = "/".join(parts)
    name = rel if rel in version.files else rel + ".gz" if rel + ".gz" in version.files else None
    if name is None:
        raise CimNotFound(f"version {version.id} has no file {rel}")
    obj = object_path(city, version.files[name], name)
    stored = obj.relative_to(city / OBJECTS_DIR).as_posix()
    return version, stored[: -len(".gz")] if name != rel else stored


async def version_file(request: web.Request) -> web.StreamResponse:
    """``GET /v/{version}/city/{path}``."""
    from cim.server.app import serve_file

    city = request.app[CITY_DIR]
    loop = asyncio.get_running_loop()
    version, stored = await loop.run_in_executor(None, _resolve, city, request.match_info["version"], request.match_info["path"])
    path = request.match_info["path"].strip("/")
    principal = principal_of(request) if request.app[ACCESS] is not None else None
    layer = None  # the restricted layer the file belongs to, if any: its reads are audited
    if principal is not None and principal.restricted:
        hidden = {name for name in principal.restricted if not principal.can_read(name)}
        if hidden and path == INDEX_NAME:
            raise CimForbidden("the search index is not served while layers are restricted (use /api/search)")
        doc = json.loads(await loop.run_in_executor(None, _read_city_json, city, version))
        layer = _layer_folders(doc, set(principal.restricted)).get(path.split("/", 1)[0])
        if layer is not None:
            request[PRIVATE] = True
            if layer in hidden:
                audit(request, "read-denied", 403, layer=layer, version=version.id)
                raise CimForbidden(f"forbidden: {path}")
        if hidden and path == "city.json":  # as this reader may see it
            doc["layers"] = [entry for entry in doc.get("layers", []) if str(entry.get("id")) not in hidden]
            return web.json_response(doc, headers={"Cache-Control": "no-cache"})
    response = await serve_file(request, (city / OBJECTS_DIR).resolve(), stored)
    if response.status in (200, 206, 304):
        response.headers["Cache-Control"] = f"{'private' if layer else 'public'}, max-age=31536000, immutable"
    if layer is not None:
        audit_read(request, layer, response.status)
    return response


def _read_city_json(city, version: Version) -> bytes:
    return object_path(city, version.files["city.json"], "city.json").read_bytes()


@operation(
    "GET",
    "/api/versions",
    summary="The city's versions (every build), oldest first",
    tag="versions",
    response={"type": "object", "properties": {"versions": {"type": "array", "items": {"type": "object"}}}},
)
async def api_versions(request: web.Request, params: dict[str, Any]) -> web.Response:
    """Each version: id, time, the hashes of its sources, its recipe, files rewritten per layer."""
    found = await asyncio.get_running_loop().run_in_executor(None, list_versions, request.app[CITY_DIR])
    return web.json_response({"versions": [v.summary() for v in found]}, headers={"Cache-Control": "no-cache"})


@operation(
    "GET",
    "/api/diff",
    summary="Features added, removed and changed between two versions",
    tag="versions",
    params=(
        Param("from", {"type": "string", "maxLength": 64}, "The version compared from (e.g. v1).", required=True),
        Param("to", {"type": "string", "maxLength": 64, "default": "latest"}, "The version compared to."),
    ),
    response={"type": "object"},
    extra_responses={404: "No such version."},
)
async def api_diff(request: web.Request, params: dict[str, Any]) -> web.Response:
    """Matched by layer and feature id; a change names its attributes, or its geometry."""
    from cim.diff import diff_versions

    old, new = params["from"], params["to"]
    city = request.app[CITY_DIR]
    loop = asyncio.get_running_loop()
    target = await loop.run_in_executor(None, get_version, city, new)
    exclude = _hidden_layers(request, target)
    result = await loop.run_in_executor(None, partial(diff_versions, city, old, new, exclude=exclude))
    audit(
        request,
        "diff",
        200,
        old=result.old,
        new=result.new,
        added=result.count("added"),
        removed=result.count("removed"),
        changed=result.count("changed"),
    )
    return web.json_response(result.to_dict(), headers={"Cache-Control": "no-cache"})


def add_version_routes(app: web.Application) -> None:
    """Register the routes above (before the viewer's catch-all route)."""
    add_operations(app, (api_versions, api_diff))
    app.router.add_get("/v/{version}/city/{path:.*}", version_file)
