"""Notes as GeoJSON (RFC 7946): what the API's export and ``cim annotations export`` write."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cim.annotations.store import AnnotationStore
from cim.errors import CimNotFound

__all__ = ["export_geojson", "geojson_bytes", "to_geojson"]


def to_geojson(notes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of notes (RFC 7946): a pin is a Point, a polyline a LineString,
    a polygon a Polygon (its ring closed, counterclockwise); id, kind, title, text, author and
    times are properties."""
    features = []
    for note in notes:
        coords = [list(v) for v in note["coordinates"]]
        geometry: dict[str, Any]
        if note["kind"] == "pin":
            geometry = {"type": "Point", "coordinates": coords[0]}
        elif note["kind"] == "polyline":
            geometry = {"type": "LineString", "coordinates": coords}
        else:
            if _signed_area(coords) < 0:  # RFC 7946: an exterior ring runs counterclockwise
                coords = [coords[0], *reversed(coords[1:])]
            geometry = {"type": "Polygon", "coordinates": [[*coords, coords[0]]]}
        properties = {key: note[key] for key in ("kind", "title", "text", "author", "created", "updated")}
        features.append({"type": "Feature", "id": note["id"], "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def _signed_area(ring: Sequence[Sequence[float]]) -> float:
    """Twice the signed area of an open ring in lon/lat (positive: counterclockwise)."""
    total = 0.0
    for (x0, y0, *_), (x1, y1, *_) in zip(ring, [*ring[1:], ring[0]]):
        total += x0 * y1 - x1 * y0
    return total


def geojson_bytes(notes: Sequence[Mapping[str, Any]]) -> bytes:
    """:func:`to_geojson` as UTF-8 JSON (Chinese as itself; the same notes give the same bytes)."""
    return (json.dumps(to_geojson(notes), ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def export_geojson(city_dir: str | Path, out: str | Path, *, bbox: Sequence[float] | None = None) -> int:
    """Write the notes of the city in ``city_dir`` (touching ``bbox``) to ``out`` as GeoJSON,
    atomically, and return how many there were.

    Raises
    ------
    CimNotFound
        ``city_dir`` is not a built city.
    CimIOError
        ``out`` cannot be written.
    """
    from cim.store import atomic_write_bytes

    if not (Path(city_dir) / "city.json").is_file():
        raise CimNotFound(f"{city_dir}: not a built city (no city.json)")
    notes = AnnotationStore(city_dir).all(bbox=bbox)
    atomic_write_bytes(out, geojson_bytes(notes))
    return len(notes)
