"""The CityJSON vocabulary cim uses: versions, semantic surface types and their codes, LoD labels,
and reference systems."""

from __future__ import annotations

import math
import re

from pyproj import CRS
from pyproj.exceptions import CRSError

from cim.errors import CimCRSError

__all__ = [
    "SUPPORTED_VERSIONS",
    "SURFACE_TYPES",
    "SURFACE_NONE",
    "SURFACE_OTHER",
    "surface_code",
    "lod_key",
    "lod_label",
    "parse_reference_system",
    "horizontal_crs",
]

#: the CityJSON versions read (major.minor)
SUPPORTED_VERSIONS = ("1.0", "1.1", "2.0")

#: semantic surface code → CityJSON surface type; 0 is "no semantics", 255 a type of an extension
SURFACE_TYPES: dict[int, str] = {
    0: "None",
    1: "RoofSurface",
    2: "WallSurface",
    3: "GroundSurface",
    4: "ClosureSurface",
    5: "OuterCeilingSurface",
    6: "OuterFloorSurface",
    7: "Window",
    8: "Door",
    9: "InteriorWallSurface",
    10: "CeilingSurface",
    11: "FloorSurface",
    12: "WaterSurface",
    13: "WaterGroundSurface",
    14: "WaterClosureSurface",
    15: "TrafficArea",
    16: "AuxiliaryTrafficArea",
    17: "TransportationMarking",
    18: "TransportationHole",
    255: "Other",
}
SURFACE_NONE, SURFACE_OTHER = 0, 255
_SURFACE_CODES = {name: code for code, name in SURFACE_TYPES.items() if code not in (SURFACE_NONE, SURFACE_OTHER)}

_EPSG = re.compile(r"EPSG(?:/[^/]*/|::?|:[^:]*:)(\d+)\s*$", re.IGNORECASE)


def surface_code(surface_type: object) -> int:
    """The code of a semantic surface type (:data:`SURFACE_TYPES`; an extension's ``+Type`` and
    anything unknown is :data:`SURFACE_OTHER`)."""
    return _SURFACE_CODES.get(surface_type, SURFACE_OTHER) if isinstance(surface_type, str) else SURFACE_OTHER


def lod_key(lod: str) -> tuple[int, ...]:
    """Sort key of a LoD label: ``"2.2"`` → ``(2, 2)``; ``"2"`` sorts below ``"2.0"`` and ``"2.2"``."""
    return tuple(int(p) for p in lod.split("."))


def lod_label(value: object) -> str | None:
    """A geometry's ``lod`` as a label (1.1+ write strings, 1.0 numbers), or None when it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        text = repr(float(value)) if isinstance(value, float) and not float(value).is_integer() else str(int(value))
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    return text if re.fullmatch(r"\d+(\.\d+)*", text) else None


def parse_reference_system(text: object, *, where: str) -> CRS:
    """The CRS of a ``metadata.referenceSystem`` (OGC URL or URN with an EPSG code, or anything
    pyproj reads).

    Raises
    ------
    CimCRSError
        Not a CRS.
    """
    if isinstance(text, str):
        m = _EPSG.search(text.strip())
        try:
            return CRS.from_epsg(int(m.group(1))) if m else CRS.from_user_input(text)
        except CRSError:
            pass
    raise CimCRSError(f"{where}: metadata.referenceSystem {text!r} is not a CRS cim knows")


def horizontal_crs(crs: CRS) -> CRS:
    """The horizontal part of a compound CRS (e.g. EPSG:7415 → EPSG:28992); other CRSs as they
    are. CityJSON heights are taken as given (no geoid model is applied)."""
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if sub.is_projected or sub.is_geographic:
                return sub
    return crs
