"""JSON API handlers beyond file serving: feature search over the city's search index."""

from __future__ import annotations

import asyncio
from functools import partial

from aiohttp import web

from cim.errors import CimInputError, CimNotFound
from cim.searchindex import INDEX_NAME, search
from cim.server.security import audit, principal_of
from cim.server.state import ACCESS, CITY_DIR

__all__ = ["api_search"]


def _parse_bbox(value: str) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(v) for v in value.split(","))
    except ValueError:
        raise CimInputError(f"bbox={value!r}: expected four numbers west,south,east,north") from None
    return west, south, east, north


async def api_search(request: web.Request) -> web.Response:
    """``GET /api/search?q=words&bbox=w,s,e,n&limit=20``: features by text and/or place."""
    index = request.app[CITY_DIR] / INDEX_NAME
    if not index.is_file():
        raise CimNotFound("this city has no search index (rebuild it with cim build)")
    q = request.query.get("q", "").strip() or None
    bbox = _parse_bbox(request.query["bbox"]) if "bbox" in request.query else None
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        raise CimInputError("limit must be an integer") from None
    layers = None
    if request.app[ACCESS] is not None and principal_of(request).restricted:
        principal = principal_of(request)
        layers = [layer for layer in principal.restricted if not principal.can_read(layer)]
    results = await asyncio.get_running_loop().run_in_executor(None, partial(search, index, q, bbox, limit, exclude=layers))
    audit(request, "search", 200, q=q, bbox=request.query.get("bbox"), count=len(results))
    return web.json_response({"count": len(results), "results": results}, headers={"Cache-Control": "no-cache"})
