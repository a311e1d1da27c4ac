"""``/api/analysis/{kind}``: the planning analyses (:mod:`cim.analysis.service`) over HTTP.

Each kind is one ``POST`` operation whose JSON body schema is the kind's request schema, so the
OpenAPI document lists every field. The analysis runs in the loop's executor (seconds of numpy
must not block the file serving), reads the city's surface model (``CITY/analysis/``, cached
per process) and is audited as ``analysis.<kind>``. The answers name buildings, so a principal
who may not read every buildings layer of a restricted city is refused (403).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from aiohttp import BodyPartReader, web

from cim.analysis.files import load_model
from cim.analysis.schemas import KINDS, SCHEMAS
from cim.analysis.service import run_analysis
from cim.errors import CimError, CimForbidden
from cim.server.openapi import Operation, json_body, operation
from cim.server.security import LAYER_MAP, audit, city_for
from cim.server.state import ACCESS, CITY_DIR

__all__ = ["MAX_MODEL_BYTES", "OPERATIONS", "multipart_body"]

_SUMMARIES = {
    "sunlight": "Sunlight hours (日照) of residential façades on a winter day, buildings below the threshold",
    "shadow": "Hour-by-hour shadow (阴影) of an area on the ground",
    "sightline": "Line of sight (通视) between two points: visible, or the first obstruction",
    "viewshed": "Viewshed (可视域): the visible and hidden surface around an observer, and the buildings seen",
    "skyline": "Skyline (天际线): elevation angle over azimuth from a viewpoint, and the buildings forming it",
    "heightlimit": "Height limit (控高): buildings of a zone above a limit, and by how much",
    "flood": "Flood (淹没): ground and buildings below a water level in a region",
}

_ANSWER = {
    "type": "object",
    "properties": {"kind": {"type": "string"}, "summary": {"type": "object"}, "geojson": {"type": "object"}},
    "required": ["kind", "summary", "geojson"],
}


#: layer kinds the surface model is made of
_MODEL_KINDS = ("buildings", "terrain")


def _check_access(request: web.Request) -> None:
    """Refuse a principal who may not read a layer the surface model is made of."""
    if request.app[ACCESS] is None:
        return
    visible = {str(layer.get("id")) for layer in city_for(request).get("layers", [])}  # refreshes the map
    every = request.app[LAYER_MAP].city.get("layers", [])
    blocked = [str(layer.get("id")) for layer in every if layer.get("kind") in _MODEL_KINDS and str(layer.get("id")) not in visible]
    if blocked:
        raise CimForbidden(f"the analyses read layer {blocked[0]!r}, which is restricted")


#: bytes of a proposal model uploaded as multipart/form-data
MAX_MODEL_BYTES = 32 << 20


async def multipart_body(request: web.Request, schema: dict[str, Any]) -> dict[str, Any]:
    """A request sent as ``multipart/form-data``: its ``request`` part (the JSON body) with the
    ``proposal`` part (a model file) as ``proposal.file``, checked against ``schema``.

    The parts are read from the stream with their own limits (the application's body limit is
    for JSON): :data:`cim.server.openapi.MAX_JSON_BODY` for the request, :data:`MAX_MODEL_BYTES`
    for the model.

    Raises
    ------
    CimInputError
        A part missing, too large, or a request that is not JSON or fails the schema.
    """
    import base64
    import json

    from cim.errors import CimInputError
    from cim.server.openapi import MAX_JSON_BODY, check_value

    body: Any = {}
    model: tuple[str, bytes] | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise CimInputError("nested multipart bodies are not accepted")
        limit = MAX_MODEL_BYTES if part.name == "proposal" else MAX_JSON_BODY
        data = bytearray()
        while chunk := await part.read_chunk(1 << 16):
            data += chunk
            if len(data) > limit:
                raise CimInputError(f"the {part.name} part is larger than {limit} bytes")
        if part.name == "request":
            try:
                body = json.loads(bytes(data) or b"{}")
            except (ValueError, UnicodeDecodeError):
                raise CimInputError("the request part is not valid JSON") from None
        elif part.name == "proposal":
            model = (part.filename or "proposal", bytes(data))
        else:
            raise CimInputError(f"unknown part {part.name!r} (request, proposal)")
    if not isinstance(body, dict):
        raise CimInputError("the request part must be a JSON object")
    if model is not None:
        given = body.get("proposal")
        given = given if isinstance(given, dict) else {}
        body["proposal"] = {**given, "file": {"name": model[0], "data": base64.b64encode(model[1]).decode("ascii")}}
    check_value("body", body, schema)
    return body


def _make(kind: str) -> Operation:
    async def handle(request: web.Request, params: dict[str, Any]) -> web.Response:
        if request.content_type == "multipart/form-data":
            body = await multipart_body(request, SCHEMAS[kind])
        else:
            body = await json_body(request, SCHEMAS[kind])
        try:
            _check_access(request)
            loop = asyncio.get_running_loop()
            model = await loop.run_in_executor(None, load_model, request.app[CITY_DIR])
            answer = await loop.run_in_executor(None, partial(run_analysis, model, kind, body))
        except CimError as exc:
            from cim.server.errors import status_for

            audit(request, f"analysis.{kind}", status_for(exc), error=str(exc)[:200])
            raise
        audit(request, f"analysis.{kind}", 200, summary={k: v for k, v in answer["summary"].items() if not isinstance(v, list)})
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    handle.__name__ = f"analysis_{kind}"
    return operation(
        "POST",
        f"/api/analysis/{kind}",
        summary=_SUMMARIES[kind],
        tag="analysis",
        description=(
            f"{_SUMMARIES[kind]}. Positions in longitude/latitude degrees; an optional `proposal` (a footprint and a "
            "height, or a model file) replaces the buildings it covers. A model larger than the JSON body allows is "
            "sent as `multipart/form-data`: a `request` part (this JSON body; its `proposal` may give `position`, "
            f"`rotation`, `id`) and a `proposal` part (the .ifc, .glb or .gltf file, up to {MAX_MODEL_BYTES >> 20} MB)."
        ),
        body=SCHEMAS[kind],
        response=_ANSWER,
        extra_responses={403: "A layer the analysis reads is restricted.", 404: "The city has no surface model (build it again)."},
    )(handle)


#: the operations of this module, routed by :func:`cim.server.app.create_app`
OPERATIONS: tuple[Operation, ...] = tuple(_make(kind) for kind in KINDS)
