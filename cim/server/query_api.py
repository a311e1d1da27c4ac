"""The planner query API (issue 13): ``/api/query`` (GET and POST), ``/api/features/{layer}/{id}``,
``/api/stats`` and ``/api/schema`` over the city's feature store (:mod:`cim.query`).

Layers the reader may not see are left out of every answer; every query, export and statistic
is audited (``query``, ``export``, ``stats``), refused ones too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from cim.errors import CimInputError
from cim.query import GROUPS, Query, feature_detail, open_store, schema_of, select, statistics
from cim.query.output import FORMATS, render
from cim.query.store import FeatureStore
from cim.server.api import FEATURE
from cim.server.openapi import Operation, Param, bbox_param, check_value, json_body, operation, page_schema, register_schema
from cim.server.security import audit, principal_of
from cim.server.state import ACCESS, CITY_DIR

__all__ = ["OPERATIONS"]

T = TypeVar("T")

_NUMBERS = {"type": "array", "items": {"type": "number"}}

#: the filters of /api/query and /api/stats, in the query string
FILTER_PARAMS: tuple[Param, ...] = (
    Param(
        "text",
        {"type": "string", "maxLength": 200},
        "Place name, address, keyword: Chinese or Latin substrings, ranked; fuzzy when nothing matches exactly.",
    ),
    Param(
        "where",
        {"type": "string", "maxLength": 4096},
        "Combined conditions, e.g. height > 50 AND use = 'residential' (see cim.query.where).",
    ),
    bbox_param("west,south,east,north in degrees: features whose footprint meets the box."),
    Param("polygon", {**_NUMBERS, "minItems": 6}, "lon,lat,lon,lat,... degrees (closed or not): features whose footprint meets it."),
    Param("point", {**_NUMBERS, "minItems": 2, "maxItems": 2}, "lon,lat degrees; with radius."),
    Param("radius", {"type": "number", "minimum": 0, "maximum": 100000}, "Metres from point."),
    Param("line", {**_NUMBERS, "minItems": 4}, "lon,lat,lon,lat,... degrees: features the line crosses (or within buffer)."),
    Param("buffer", {"type": "number", "minimum": 0, "maximum": 10000, "default": 0}, "Metres around line."),
    Param("layer", {"type": "string", "maxLength": 200}, "Layer id."),
    Param("id", {"type": "string", "maxLength": 200}, "Feature id."),
    Param("ifc_class", {"type": "string", "maxLength": 200}, "BIM elements of this IFC class (IfcWall...)."),
    Param("storey", {"type": "string", "maxLength": 200}, "BIM elements on this storey."),
    Param("globalid", {"type": "string", "maxLength": 200}, "The BIM element with this IFC GlobalId."),
    Param("model", {"type": "string", "maxLength": 200}, "BIM elements of this model."),
)
_SORT = Param("sort", {"type": "string", "maxLength": 200}, "Attribute to sort by; -attr for descending.")
_LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 100000, "default": 50}, "Results per page.")
_OFFSET = Param("offset", {"type": "integer", "minimum": 0, "default": 0}, "Results to skip.")
_FORMAT = Param(
    "format",
    {"type": "string", "enum": ["json", "geojson", "csv"], "default": "json"},
    "json, geojson or csv (UTF-8 with BOM, a download).",
)
_GROUP = Param(
    "group_by", {"type": "string", "enum": list(GROUPS)}, "Statistics per district, use, year_band (decade of year_built) or layer."
)

_RESULT = FEATURE  # the search's feature: one schema for both
_PAGE = page_schema(_RESULT, fuzzy={"type": "boolean"})
_STATS = register_schema(
    "Statistics",
    {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "footprint_area_m2": {"type": "number"},
            "floor_area_m2": {"type": "number"},
            "height_histogram": {
                "type": "object",
                "properties": {"edges": _NUMBERS, "counts": {"type": "array", "items": {"type": "integer"}}},
            },
            "groups": {"type": "array", "items": {"type": "object"}},
        },
    },
)

#: the POST body: the same fields as the query string, geometry as numbers or [lon, lat] pairs
_COORDS = {"oneOf": [_NUMBERS, {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3}}]}
_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{p.name: dict(p.schema) for p in FILTER_PARAMS},
        "bbox": {**_NUMBERS, "minItems": 4, "maxItems": 4},
        "polygon": _COORDS,
        "line": _COORDS,
        "point": {**_NUMBERS, "minItems": 2, "maxItems": 2},
        "sort": dict(_SORT.schema),
        "limit": dict(_LIMIT.schema),
        "offset": dict(_OFFSET.schema),
        "format": dict(_FORMAT.schema),
    },
}


def _hidden(request: web.Request) -> list[str]:
    if request.app[ACCESS] is None:
        return []
    principal = principal_of(request)
    return sorted(layer for layer in principal.restricted if not principal.can_read(layer))


def _query(params: dict[str, Any], hidden: list[str]) -> Query:
    return Query(
        text=params.get("text"),
        where=params.get("where"),
        bbox=params.get("bbox"),
        polygon=params.get("polygon"),
        point=params.get("point"),
        radius=params.get("radius"),
        line=params.get("line"),
        buffer=params.get("buffer", 0.0) or 0.0,
        layer=params.get("layer"),
        id=params.get("id"),
        ifc_class=params.get("ifc_class"),
        storey=params.get("storey"),
        globalid=params.get("globalid"),
        model=params.get("model"),
        sort=params.get("sort"),
        hidden=hidden,
    )


def _detail(params: dict[str, Any]) -> dict[str, Any]:
    """What the audit trail keeps of a query: its filters, long values cut."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None or k in ("limit", "offset", "count", "total"):
            continue
        text = v if isinstance(v, str) else json.dumps(v)
        out[k] = text[:200]
    return out


async def _run(request: web.Request, action: str, params: dict[str, Any], work: Callable[[FeatureStore], T]) -> T:
    """Open the store and run ``work`` on a worker thread; audit a refusal too."""
    city = request.app[CITY_DIR]

    def job() -> T:
        return work(open_store(city))

    try:
        return await asyncio.get_running_loop().run_in_executor(None, job)
    except CimInputError as exc:
        audit(request, action, 400, error=str(exc)[:200], **_detail(params))
        raise


async def _answer(request: web.Request, params: dict[str, Any]) -> web.Response:
    hidden = _hidden(request)
    fmt = params.get("format", "json")
    limit, offset = params.get("limit", 50), params.get("offset", 0)
    action = "query" if fmt == "json" else "export"

    def work(store: FeatureStore) -> tuple[bytes, int, int]:
        return render(store, _query(params, hidden), fmt, limit, offset)

    body, total, count = await _run(request, action, params, work)
    audit(request, action, 200, total=total, count=count, **_detail(params))
    headers = {"Cache-Control": "no-cache"}
    if fmt != "json":
        headers["Content-Disposition"] = f'attachment; filename="query.{fmt}"'
    return web.Response(body=body, content_type=FORMATS[fmt], charset="utf-8", headers=headers)


@operation(
    "GET",
    "/api/query",
    summary="Query features: text, place, attributes, BIM elements (combined with AND)",
    tag="query",
    params=(*FILTER_PARAMS, _SORT, _LIMIT, _OFFSET, _FORMAT),
    response=_PAGE,
    extra_responses={404: "The city has no feature store."},
)
async def api_query(request: web.Request, params: dict[str, Any]) -> web.Response:
    """Features matching every filter given, paginated; ranked by text when ``text`` is given,
    else in ``sort`` order, else in build order. ``format=csv`` or ``geojson`` downloads the page."""
    return await _answer(request, params)


def _flat(name: str, value: Any) -> Any:
    """``[[lon, lat], ...]`` as ``[lon, lat, ...]`` (heights dropped)."""
    if value and isinstance(value[0], list):
        return [float(c) for pair in value for c in pair[:2]]
    return value


@operation(
    "POST",
    "/api/query",
    summary="Query features with a JSON body (for long polygons)",
    tag="query",
    body=_BODY,
    response=_PAGE,
    extra_responses={404: "The city has no feature store."},
)
async def api_query_post(request: web.Request, params: dict[str, Any]) -> web.Response:
    """The same as ``GET /api/query``, the fields in a JSON object; ``polygon`` and ``line`` as
    flat numbers or ``[lon, lat]`` pairs."""
    body = await json_body(request, _BODY)
    for name in ("polygon", "line"):
        if name in body:
            body[name] = _flat(name, body[name])
            check_value(f"body.{name}", body[name], _NUMBERS)
    defaults = {"buffer": 0.0, "limit": 50, "offset": 0, "format": "json"}
    return await _answer(request, {**defaults, **body})


@operation(
    "GET",
    "/api/features/{layer}/{id}",
    summary="One feature with its linked objects",
    tag="query",
    params=(
        Param("layer", {"type": "string", "maxLength": 200}, "Layer id.", where="path"),
        Param("id", {"type": "string", "maxLength": 200}, "Feature id.", where="path"),
    ),
    response={"allOf": [_RESULT, {"type": "object", "properties": {"links": {"type": "object"}, "geometry": {"type": "object"}}}]},
    extra_responses={404: "No such feature."},
)
async def api_feature(request: web.Request, params: dict[str, Any]) -> web.Response:
    """A feature, its footprint (GeoJSON) and ``links``: ``bim`` (models standing in its
    footprint), ``points`` (lidar statistics, or null), ``district``, and ``building`` (for a BIM
    element, the building holding it)."""
    hidden = _hidden(request)
    item = await _run(request, "query", params, lambda store: feature_detail(store, params["layer"], params["id"], hidden))
    item["geometry"] = json.loads(item["geometry"])
    audit(request, "query", 200, layer=params["layer"], id=params["id"])
    return web.json_response(item, headers={"Cache-Control": "no-cache"})


@operation(
    "GET",
    "/api/stats",
    summary="Statistics of a query's features: counts, areas, height histogram, groups",
    tag="query",
    params=(*FILTER_PARAMS, _GROUP),
    response=_STATS,
    extra_responses={404: "The city has no feature store."},
)
async def api_stats(request: web.Request, params: dict[str, Any]) -> web.Response:
    """Count, footprint area (m², projected CRS), floor area (area × floors), height histogram,
    and the same per ``group_by`` group, of the features the filters select."""
    hidden = _hidden(request)

    def work(store: FeatureStore) -> dict[str, Any]:
        return statistics(store, select(store, _query(params, hidden)).rows, params.get("group_by"))

    body = await _run(request, "stats", params, work)
    audit(request, "stats", 200, count=body["count"], **_detail(params))
    return web.json_response(body, headers={"Cache-Control": "no-cache"})


@operation(
    "GET",
    "/api/schema",
    summary="Queryable attributes of each layer and their types",
    tag="query",
    response={"type": "object", "properties": {"layers": {"type": "object"}}},
    extra_responses={404: "The city has no feature store."},
)
async def api_schema(request: web.Request, params: dict[str, Any]) -> web.Response:
    """``{"layers": {layer: {attribute: "string" | "number" | "integer" | "boolean"}}}``."""
    hidden = _hidden(request)
    body = await _run(request, "query", params, lambda store: schema_of(store, hidden))
    return web.json_response(body, headers={"Cache-Control": "no-cache"})


#: the operations of this module, routed by :func:`cim.server.app.create_app`
OPERATIONS: tuple[Operation, ...] = (api_query, api_query_post, api_feature, api_stats, api_schema)
