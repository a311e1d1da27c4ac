"""JSON API handlers beyond file serving: feature search over the city's search index, and the
published description of the whole API (``/api/openapi.json``, see :mod:`cim.server.openapi`)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from aiohttp import web

from cim.errors import CimNotFound
from cim.searchindex import INDEX_NAME, search
from cim.server.openapi import Operation, Param, bbox_param, document, operation, operations_of, register_schema
from cim.server.security import audit, principal_of
from cim.server.state import ACCESS, CITY_DIR

__all__ = ["FEATURE", "OPERATIONS", "api_search"]

#: a feature as every search and query answers it
FEATURE = register_schema(
    "Feature",
    {
        "type": "object",
        "properties": {
            "layer": {"type": "string"},
            "id": {"type": "string"},
            "title": {"type": "string"},
            "lon": {"type": "number"},
            "lat": {"type": "number"},
            "base": {"type": "number"},
            "top": {"type": "number"},
            "properties": {"type": "object"},
            "anchor": {
                "type": "array",
                "items": {"type": "number"},
                "description": "lon, lat of a point inside the footprint (fly-to target)",
            },
        },
    },
)


@operation(
    "GET",
    "/api/search",
    summary="Find features by words and/or a box",
    tag="search",
    params=(
        Param("q", {"type": "string", "maxLength": 200}, "Words (prefix match on id, title and text attributes)."),
        bbox_param("west,south,east,north in degrees."),
        Param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}, "Most results returned."),
    ),
    response={
        "type": "object",
        "properties": {"count": {"type": "integer"}, "results": {"type": "array", "items": FEATURE}},
    },
    extra_responses={404: "The city has no search index."},
)
async def api_search(request: web.Request, params: dict[str, Any]) -> web.Response:
    """Features by text and/or place, best matches first; layers the reader may not see are left out."""
    index = request.app[CITY_DIR] / INDEX_NAME
    if not index.is_file():
        raise CimNotFound("this city has no search index (rebuild it with cim build)")
    q = (params.get("q") or "").strip() or None
    bbox = tuple(params["bbox"]) if "bbox" in params else None
    layers = None
    if request.app[ACCESS] is not None and principal_of(request).restricted:
        principal = principal_of(request)
        layers = [layer for layer in principal.restricted if not principal.can_read(layer)]
    results = await asyncio.get_running_loop().run_in_executor(None, partial(search, index, q, bbox, params["limit"], exclude=layers))
    audit(request, "search", 200, q=q, bbox=request.query.get("bbox"), count=len(results))
    return web.json_response({"count": len(results), "results": results}, headers={"Cache-Control": "no-cache"})


@operation("GET", "/api/openapi.json", summary="This document", tag="meta", response={"type": "object"})
async def api_openapi(request: web.Request, params: dict[str, Any]) -> web.Response:
    """The OpenAPI 3.1 document of every operation this server answers."""
    return web.json_response(document(operations_of(request.app)), headers={"Cache-Control": "no-cache"})


#: the operations of this module, routed by :func:`cim.server.app.create_app`
OPERATIONS: tuple[Operation, ...] = (api_search, api_openapi)
