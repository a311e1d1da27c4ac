"""The JSON API's one description: every ``/api/`` operation declared once, validated and documented.

A handler module declares its operations with :func:`operation`; the declaration is both what the
server checks each request against and what ``GET /api/openapi.json`` publishes (OpenAPI 3.1), so
the document cannot drift from the code. Parameters are parsed and checked here, before a handler
runs: a parameter of the wrong type, out of range, too long, or unknown is a 400 whose message
names it (:class:`cim.errors.CimInputError`); handlers receive typed values.

Why not a framework (aiohttp-apispec, connexion...): the API is small, the server's request path
is measured to the microsecond (``benchmarks/bench_server.py``), and the validation needed
(scalars, enums, ranges, lengths, a JSON body of plain fields) is a hundred lines.

Example
-------
>>> from cim.server.openapi import Param, operation
>>> @operation("GET", "/api/hello", summary="Say hello", tag="demo",
...            params=(Param("name", {"type": "string", "maxLength": 20}, "who", required=True),))
... async def hello(request, params):
...     return web.json_response({"hello": params["name"]})
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from cim._version import __version__
from cim.errors import CimInputError

__all__ = [
    "OPERATIONS",
    "PAGE_PARAMS",
    "Operation",
    "Param",
    "add_operations",
    "bbox_param",
    "check_value",
    "document",
    "json_body",
    "operation",
    "operations_of",
    "page",
    "page_schema",
    "register_schema",
]

ApiHandler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]

#: named schemas published under ``components.schemas`` (see :func:`register_schema`)
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
        "required": ["error", "status"],
    },
}

#: the longest text any query parameter may carry
MAX_PARAM_CHARS = 4096

#: bytes of a JSON request body (the server's own limit, ``MAX_BODY``, is larger: uploads)
MAX_JSON_BODY = 1 << 20


def register_schema(name: str, schema: Mapping[str, Any]) -> dict[str, str]:
    """Publish a named schema and return a ``$ref`` to it for use in other schemas."""
    SCHEMAS[name] = dict(schema)
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Param:
    """One query or path parameter.

    Parameters
    ----------
    name : str
        Its name in the URL.
    schema : Mapping
        JSON Schema of its value: ``type`` one of string, integer, number, boolean, or array
        (comma-separated in the URL; ``items`` typed, ``minItems``/``maxItems``); ``enum``,
        ``minimum``, ``maximum``, ``maxLength``, ``default``.
    description : str
        What it means (published).
    required : bool
        A request without it is a 400.
    where : {"query", "path"}
        Where it sits.
    """

    name: str
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False
    where: Literal["query", "path"] = "query"

    def parse(self, raw: str) -> Any:
        """Return the typed value of ``raw``, or raise :class:`CimInputError` naming the parameter."""
        if len(raw) > MAX_PARAM_CHARS:
            raise CimInputError(f"parameter {self.name!r} is longer than {MAX_PARAM_CHARS} characters")
        if self.schema.get("type") == "array":
            items = [] if raw == "" else raw.split(",")
            low, high = self.schema.get("minItems"), self.schema.get("maxItems")
            if (low is not None and len(items) < low) or (high is not None and len(items) > high):
                want = f"{low}" if low == high else f"{low or 0} to {high if high is not None else 'any number of'}"
                raise CimInputError(f"parameter {self.name!r} takes {want} comma-separated values, not {len(items)}")
            item_schema = self.schema.get("items", {"type": "string"})
            return [_scalar(self.name, item, item_schema) for item in items]
        return _scalar(self.name, raw, self.schema)


def _scalar(name: str, raw: str, schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type", "string")
    value: Any
    if kind == "integer":
        try:
            value = int(raw.strip())
        except ValueError:
            raise CimInputError(f"parameter {name!r} must be an integer, not {raw[:40]!r}") from None
    elif kind == "number":
        try:
            value = float(raw.strip())
        except ValueError:
            raise CimInputError(f"parameter {name!r} must be a number, not {raw[:40]!r}") from None
        if not math.isfinite(value):
            raise CimInputError(f"parameter {name!r} must be a finite number, not {raw[:40]!r}")
    elif kind == "boolean":
        lowered = raw.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise CimInputError(f"parameter {name!r} must be true or false, not {raw[:40]!r}")
        value = lowered in ("true", "1")
    else:
        value = raw
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise CimInputError(f"parameter {name!r} is longer than {schema['maxLength']} characters")
    if "enum" in schema and value not in schema["enum"]:
        raise CimInputError(f"parameter {name!r} must be one of {', '.join(map(str, schema['enum']))}, not {raw[:40]!r}")
    if "minimum" in schema and value < schema["minimum"]:
        raise CimInputError(f"parameter {name!r} must be at least {schema['minimum']}, not {value}")
    if "maximum" in schema and value > schema["maximum"]:
        raise CimInputError(f"parameter {name!r} must be at most {schema['maximum']}, not {value}")
    return value


#: ``limit`` and ``offset``: every operation that returns a list pages it
PAGE_PARAMS: tuple[Param, ...] = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "Results per page."),
    Param("offset", {"type": "integer", "minimum": 0, "default": 0}, "Results to skip."),
)


def page_schema(items: Mapping[str, Any], **extra: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a :func:`page` of ``items`` (plus ``extra`` properties)."""
    return {
        "type": "object",
        "properties": {
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            "count": {"type": "integer"},
            **extra,
            "results": {"type": "array", "items": dict(items)},
        },
    }


def bbox_param(description: str) -> Param:
    """The ``bbox`` parameter: west,south,east,north in degrees, four finite numbers."""
    return Param("bbox", {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}, description)


def page(results: Sequence[Any], total: int, params: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The body of one page of results: ``{"total", "offset", "limit", "count", "results", ...}``."""
    return {
        "total": total,
        "offset": params.get("offset", 0),
        "limit": params.get("limit"),
        "count": len(results),
        "results": list(results),
        **extra,
    }


@dataclass(frozen=True)
class Operation:
    """One API operation: its route, its parameters and its published description.

    Call :meth:`route_handler` for the aiohttp handler that checks a request's parameters and
    then calls ``handler(request, params)``.
    """

    method: str
    path: str
    handler: ApiHandler
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    description: str = ""
    body: Mapping[str, Any] | None = None
    response: Mapping[str, Any] | None = None
    response_type: str = "application/json"
    extra_responses: Mapping[int, str] = field(default_factory=dict)
    strict: bool = True

    def parse(self, request: web.Request) -> dict[str, Any]:
        """Typed parameters of ``request`` (defaults filled in); a 400 for a bad or unknown one."""
        values: dict[str, Any] = {}
        known = {p.name for p in self.params if p.where == "query"}
        if self.strict:
            for name in request.query:
                if name not in known:
                    listed = ", ".join(sorted(known)) or "none"
                    raise CimInputError(f"unknown parameter {name!r} (this operation takes: {listed})")
        for param in self.params:
            source: Mapping[str, str] = request.match_info if param.where == "path" else request.query
            if param.where == "query" and len(request.query.getall(param.name, [])) > 1:
                raise CimInputError(f"parameter {param.name!r} is given more than once")
            raw = source.get(param.name)
            if raw is None:
                if param.required:
                    raise CimInputError(f"parameter {param.name!r} is required")
                if "default" in param.schema:
                    values[param.name] = param.schema["default"]
                continue
            values[param.name] = param.parse(raw)
        return values

    def route_handler(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handler(request, self.parse(request))

        handle.__name__ = getattr(self.handler, "__name__", "handle")
        handle.__doc__ = self.handler.__doc__
        return handle


def operation(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    params: Iterable[Param] = (),
    description: str = "",
    body: Mapping[str, Any] | None = None,
    response: Mapping[str, Any] | None = None,
    response_type: str = "application/json",
    extra_responses: Mapping[int, str] | None = None,
    strict: bool = True,
) -> Callable[[ApiHandler], Operation]:
    """Declare an API operation (a decorator turning ``async def f(request, params)`` into an
    :class:`Operation`); see the module's example."""

    def wrap(handler: ApiHandler) -> Operation:
        return Operation(
            method=method.upper(),
            path=path,
            handler=handler,
            summary=summary,
            tag=tag,
            params=tuple(params),
            description=description or (handler.__doc__ or "").strip(),
            body=body,
            response=response,
            response_type=response_type,
            extra_responses=dict(extra_responses or {}),
            strict=strict,
        )

    return wrap


async def json_body(request: web.Request, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The request's JSON object, checked against ``schema`` (an object of plain fields).

    Raises
    ------
    CimInputError
        When the body is not JSON, not an object, too large, misses a required field, has an
        unknown field (when ``additionalProperties`` is false), or a field of the wrong type.
    """
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise CimInputError(f"the request body is larger than {MAX_JSON_BODY} bytes")
    raw = await request.read()
    if len(raw) > MAX_JSON_BODY:
        raise CimInputError(f"the request body is larger than {MAX_JSON_BODY} bytes")
    try:
        value = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise CimInputError("the request body is not valid JSON") from None
    check_value("body", value, schema)
    return value


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def check_value(where: str, value: Any, schema: Mapping[str, Any]) -> None:
    """Check ``value`` against a JSON Schema subset (type, enum, properties, required,
    additionalProperties, items, min/maxItems, maxLength, minimum, maximum, oneOf of types);
    raise :class:`CimInputError` naming the field (``where``) that fails."""
    if "$ref" in schema:
        schema = SCHEMAS[str(schema["$ref"]).rsplit("/", 1)[-1]]
    if "oneOf" in schema:
        errors = []
        for option in schema["oneOf"]:
            try:
                check_value(where, value, option)
                return
            except CimInputError as exc:
                errors.append(str(exc))
        raise CimInputError(errors[0] if len(errors) == 1 else f"{where} matches none of the accepted forms")
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else list(kinds)
        ok = any(isinstance(value, _JSON_TYPES[name]) and not (name in ("integer", "number") and isinstance(value, bool)) for name in names)
        if not ok:
            raise CimInputError(f"{where} must be {' or '.join(names)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise CimInputError(f"{where} must be a finite number")
    if "enum" in schema and value not in schema["enum"]:
        raise CimInputError(f"{where} must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        raise CimInputError(f"{where} is longer than {schema['maxLength']} characters")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise CimInputError(f"{where} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise CimInputError(f"{where} must be at most {schema['maximum']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise CimInputError(f"{where} needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise CimInputError(f"{where} takes at most {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                check_value(f"{where}[{i}]", item, schema["items"])
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise CimInputError(f"{where}.{name} is required")
        if schema.get("additionalProperties") is False:
            for name in value:
                if name not in properties:
                    raise CimInputError(f"{where}.{name} is not a known field ({', '.join(properties) or 'none'})")
        for name, item in value.items():
            if name in properties:
                check_value(f"{where}.{name}", item, properties[name])


#: the operations routed in an application, in order
OPERATIONS: web.AppKey[list[Operation]] = web.AppKey("operations", list)


def add_operations(app: web.Application, operations: Iterable[Operation]) -> None:
    """Route ``operations`` in ``app`` and remember them for :func:`document`."""
    listed = app.setdefault(OPERATIONS, [])
    for op in operations:
        app.router.add_route(op.method, op.path, op.route_handler())
        listed.append(op)


def _param_doc(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "description": param.description,
        "schema": dict(param.schema),
        **({"style": "form", "explode": False} if param.schema.get("type") == "array" else {}),
    }


def document(operations: Iterable[Operation], title: str = "cim city API") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    paths: dict[str, dict[str, Any]] = {}
    tags: list[str] = []
    for op in operations:
        if op.tag not in tags:
            tags.append(op.tag)
        entry: dict[str, Any] = {
            "summary": op.summary,
            "description": op.description,
            "operationId": getattr(op.handler, "__name__", op.path),
            "tags": [op.tag],
            "parameters": [_param_doc(p) for p in op.params],
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {op.response_type: {"schema": dict(op.response or {})}},
                },
                "400": {"description": "A parameter or the body is invalid (the message names it).", "content": _error_content()},
                **{str(code): {"description": text, "content": _error_content()} for code, text in op.extra_responses.items()},
            },
        }
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": dict(op.body)}}}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": {name: dict(schema) for name, schema in SCHEMAS.items()},
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "An API token (cim users add)."},
                "session": {"type": "apiKey", "in": "cookie", "name": "cim_session"},
            },
        },
    }


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def operations_of(app: web.Application) -> list[Operation]:
    """The operations :func:`add_operations` routed in ``app``."""
    if OPERATIONS not in app:
        return []
    routed: list[Operation] = app[OPERATIONS]
    return list(routed)
