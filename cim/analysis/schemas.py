"""The JSON requests of the analyses: one JSON Schema per kind (the API's request bodies, the
CLI's ``--request``), their defaults and the size limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["KINDS", "MAX_AREA_M2", "MAX_SKYLINE_RADIUS", "POLYGON", "SCHEMAS", "with_defaults"]

#: the largest area (m²) one request may cover
MAX_AREA_M2 = 4_000_000.0
#: the longest skyline radius (m)
MAX_SKYLINE_RADIUS = 5000.0

_LONLAT = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
_LONLATH = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3}
POLYGON = {
    "type": "array",
    "items": _LONLAT,
    "minItems": 3,
    "maxItems": 2000,
    "description": "A ring of [longitude, latitude] degrees (closed or not).",
}
_PROPOSAL = {
    "type": "object",
    "description": (
        "A massing proposal replacing the buildings it covers: a footprint (`polygon`, or a GeoJSON Polygon "
        "geometry or Feature in `geojson`) and a `height` in metres above the ground (or the Feature's "
        "`properties.height`); or a model `file` (IFC, placed by its georeferencing; glTF/GLB, placed at "
        "`position`), whose mesh goes into the surface (its highest point over each cell) and whose plan and "
        "top stand for it in the exact ray tests."
    ),
    "properties": {
        "polygon": POLYGON,
        "geojson": {"type": "object", "description": "A GeoJSON Polygon, or a Feature of one, in longitude/latitude."},
        "height": {"type": "number", "minimum": 0.1, "maximum": 1000},
        "id": {"type": "string", "maxLength": 64},
        "file": {
            "type": "object",
            "description": "A model file: its `name` (.ifc, .glb or .gltf) and its bytes in base64 (`data`).",
            "properties": {
                "name": {"type": "string", "maxLength": 200},
                "data": {"type": "string", "description": "The file's bytes, base64."},
            },
            "required": ["name", "data"],
            "additionalProperties": False,
        },
        "position": {
            **_LONLATH,
            "description": "[lon, lat] or [lon, lat, height] of a model file's origin (glTF: required; IFC: instead of its georeferencing).",
        },
        "rotation": {"type": "number", "minimum": -360, "maximum": 360, "description": "Degrees clockwise from north (a placed model)."},
    },
    "additionalProperties": False,
}
_DATE = {"type": "string", "maxLength": 10, "description": "YYYY-MM-DD (default: 大寒, 20 January of this year)."}
_SUN = {
    "date": _DATE,
    "start": {"type": "number", "minimum": 0, "maximum": 24, "default": 8, "description": "Hours, true solar time."},
    "end": {"type": "number", "minimum": 0, "maximum": 24, "default": 16, "description": "Hours, true solar time."},
    "max_distance": {"type": "number", "minimum": 10, "maximum": 5000, "default": 1000, "description": "Metres searched for obstacles."},
}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**properties, "proposal": _PROPOSAL},
        "required": list(required),
        "additionalProperties": False,
    }


#: each kind's request body (JSON Schema)
SCHEMAS: dict[str, dict[str, Any]] = {
    "sunlight": _obj(
        {
            "area": {**POLYGON, "description": "Residential buildings meeting this polygon are analysed."},
            "buildings": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 5000},
            **_SUN,
            "step": {"type": "number", "minimum": 1, "maximum": 60, "default": 10, "description": "Minutes between sun positions."},
            "threshold": {"type": "number", "minimum": 0, "maximum": 24, "default": 2, "description": "Hours of sun required."},
            "spacing": {"type": "number", "minimum": 0.5, "maximum": 50, "default": 3, "description": "Metres between façade points."},
            "sill": {"type": "number", "minimum": 0, "maximum": 10, "default": 0.9, "description": "Window sill above the floor (m)."},
            "points": {"type": "boolean", "default": False, "description": "Answer every façade point too."},
        }
    ),
    "shadow": _obj(
        {
            "area": POLYGON,
            **_SUN,
            "step": {"type": "number", "minimum": 1, "maximum": 60, "default": 60, "description": "Minutes between shadows."},
        },
        ("area",),
    ),
    "sightline": _obj(
        {
            "from": {**_LONLATH, "description": "[lon, lat, height]; height above the surface (default 1.6) unless absolute."},
            "to": {**_LONLATH, "description": "[lon, lat, height]; height above the surface (default 0) unless absolute."},
            "absolute": {"type": "boolean", "default": False, "description": "Heights are absolute, not above the surface."},
        },
        ("from", "to"),
    ),
    "viewshed": _obj(
        {
            "observer": _LONLAT,
            "eye_height": {"type": "number", "minimum": 0, "maximum": 500, "default": 1.6},
            "radius": {"type": "number", "minimum": 1, "maximum": 1128, "default": 300, "description": "Metres (π r² ≤ 4 km²)."},
        },
        ("observer",),
    ),
    "skyline": _obj(
        {
            "viewpoint": _LONLAT,
            "eye_height": {"type": "number", "minimum": 0, "maximum": 500, "default": 1.6},
            "radius": {"type": "number", "minimum": 10, "maximum": MAX_SKYLINE_RADIUS, "default": 2000},
            "azimuth_step": {"type": "number", "minimum": 0.1, "maximum": 10, "default": 0.5},
        },
        ("viewpoint",),
    ),
    "heightlimit": _obj(
        {
            "zone": POLYGON,
            "limit": {"type": "number", "minimum": -500, "maximum": 10000},
            "mode": {"type": "string", "enum": ["above_ground", "absolute"], "default": "above_ground"},
        },
        ("zone", "limit"),
    ),
    "flood": _obj(
        {
            "region": POLYGON,
            "level": {"type": "number", "minimum": -500, "maximum": 10000, "description": "Water level (m, the DEM's datum)."},
            "seed": {**_LONLAT, "description": "Flood only the ground connected to this point."},
        },
        ("region", "level"),
    ),
}
KINDS = tuple(SCHEMAS)


def with_defaults(kind: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """The request with the kind's defaults filled in."""
    out = {name: spec["default"] for name, spec in SCHEMAS[kind]["properties"].items() if "default" in spec}
    out.update(request)
    return out
