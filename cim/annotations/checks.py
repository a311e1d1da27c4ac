"""What a note may hold: its shape (pin, polyline, polygon), vertices, text and title, checked
before anything is stored; every message names the field that is wrong."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from cim.errors import CimInputError

__all__ = ["KINDS", "MAX_HEIGHT", "MAX_TEXT", "MAX_TITLE", "MAX_VERTICES", "bounds", "check_bbox", "check_coordinates", "check_text"]

#: the shapes a note can take, and the fewest vertices each needs
KINDS: Mapping[str, int] = {"pin": 1, "polyline": 2, "polygon": 3}
MAX_VERTICES = 10_000
MAX_TEXT = 10_000
MAX_TITLE = 200
#: metres above or below the ellipsoid a vertex may lie (a typo, not a place, beyond that)
MAX_HEIGHT = 100_000.0
#: decimals kept: 1e-9 degree is 0.1 mm on the ground; heights to the millimetre
_LONLAT_DIGITS = 9
_HEIGHT_DIGITS = 3
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def check_coordinates(kind: str, coordinates: object, where: str = "coordinates") -> list[list[float]]:
    """The vertices of a note of ``kind``, checked and rounded.

    Parameters
    ----------
    kind : {"pin", "polyline", "polygon"}
        A pin has one vertex, a polyline at least two, a polygon at least three distinct ones
        (a closing vertex equal to the first is dropped: rings are stored open).
    coordinates : list of [lon, lat] or [lon, lat, height]
        Degrees (WGS 84) and metres above the ellipsoid; every vertex of one note has the same
        length; at most :data:`MAX_VERTICES`.
    where : str
        How error messages name the field.

    Returns
    -------
    list of list of float
        Longitudes and latitudes rounded to 1e-9 degree, heights to the millimetre.

    Raises
    ------
    CimInputError
        Naming the field and the vertex that is wrong.
    """
    if kind not in KINDS:
        raise CimInputError(f"kind must be one of {', '.join(KINDS)}, not {str(kind)[:40]!r}")
    if not isinstance(coordinates, list):
        raise CimInputError(f"{where} must be a list of [lon, lat] or [lon, lat, height] vertices")
    if len(coordinates) > MAX_VERTICES:
        raise CimInputError(f"{where} has {len(coordinates):,} vertices; a note takes at most {MAX_VERTICES:,}")
    out: list[list[float]] = []
    width = None
    for i, vertex in enumerate(coordinates):
        if not isinstance(vertex, list) or len(vertex) not in (2, 3):
            raise CimInputError(f"{where}[{i}] must be [lon, lat] or [lon, lat, height]")
        if width is None:
            width = len(vertex)
        elif len(vertex) != width:
            raise CimInputError(f"{where}[{i}] has {len(vertex)} values; every vertex of a note has {width}")
        values = []
        for j, value in enumerate(vertex):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CimInputError(f"{where}[{i}][{j}] must be a finite number")
            values.append(float(value))
        lon, lat = values[0], values[1]
        if not -180.0 <= lon <= 180.0:
            raise CimInputError(f"{where}[{i}]: longitude {lon} is outside -180..180")
        if not -90.0 <= lat <= 90.0:
            raise CimInputError(f"{where}[{i}]: latitude {lat} is outside -90..90")
        rounded = [round(lon, _LONLAT_DIGITS), round(lat, _LONLAT_DIGITS)]
        if width == 3:
            if abs(values[2]) > MAX_HEIGHT:
                raise CimInputError(f"{where}[{i}]: height {values[2]} m is beyond ±{MAX_HEIGHT:,.0f} m")
            rounded.append(round(values[2], _HEIGHT_DIGITS))
        out.append(rounded)
    if kind == "polygon" and len(out) > 3 and out[0] == out[-1]:
        out.pop()
    need = KINDS[kind]
    if kind == "pin" and len(out) != 1:
        raise CimInputError(f"{where}: a pin has exactly one vertex, not {len(out)}")
    distinct = len({(v[0], v[1]) for v in out})
    if distinct < need:
        raise CimInputError(f"{where}: a {kind} needs at least {need} distinct vertices, not {distinct}")
    return out


def check_text(value: object, where: str, max_chars: int, *, single_line: bool = False) -> str:
    """A note's text (or title) as given: a string of at most ``max_chars`` characters, with no
    control character but tab and line breaks (none at all when ``single_line``).

    Raises
    ------
    CimInputError
        Naming ``where``.
    """
    if not isinstance(value, str):
        raise CimInputError(f"{where} must be a string")
    if len(value) > max_chars:
        raise CimInputError(f"{where} is {len(value):,} characters long; at most {max_chars:,} are kept")
    for ch in value:
        if (ch < " " or ch == "\x7f") and (single_line or ch not in _ALLOWED_CONTROLS):
            raise CimInputError(f"{where} contains the control character U+{ord(ch):04X}")
    return value


def bounds(coordinates: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` of vertices."""
    lons = [v[0] for v in coordinates]
    lats = [v[1] for v in coordinates]
    return min(lons), min(lats), max(lons), max(lats)


def check_bbox(bbox: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    """``(west, south, east, north)`` in degrees, checked; None stays None."""
    if bbox is None:
        return None
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        raise CimInputError("bbox must be four finite numbers: west,south,east,north")
    west, south, east, north = (float(v) for v in bbox)
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise CimInputError("bbox must be west,south,east,north in degrees with west <= east and south <= north")
    return west, south, east, north
