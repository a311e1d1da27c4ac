"""Result output: CSV that Excel opens with Chinese text intact, and GeoJSON for GIS tools."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from cim.errors import CimInputError
from cim.query.engine import Query, result_rows, select
from cim.query.store import FeatureStore

__all__ = ["BOM", "FIXED_COLUMNS", "FORMATS", "render", "results_csv", "results_geojson"]

#: the output formats and their media types
FORMATS = {"json": "application/json", "geojson": "application/geo+json", "csv": "text/csv"}

#: the UTF-8 byte order mark: without it Excel reads a CSV file in the system's legacy code page
BOM = "\ufeff"
#: the columns every CSV row starts with (the features' properties follow, in order of appearance)
FIXED_COLUMNS = ("layer", "id", "title", "lon", "lat", "base", "top", "anchor_lon", "anchor_lat")


def results_csv(results: list[dict[str, Any]]) -> bytes:
    """Results as CSV (UTF-8 with a BOM, CRLF line ends as RFC 4180 says): the fixed columns,
    then every property any result has (empty where a result lacks it)."""
    keys: dict[str, None] = {}
    for r in results:
        for k in r["properties"]:
            keys.setdefault(k, None)
    extra = [k for k in keys if k not in FIXED_COLUMNS]
    buf = io.StringIO()
    buf.write(BOM)
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([*FIXED_COLUMNS, *extra])
    for r in results:
        fixed = [r["layer"], r["id"], r["title"], r["lon"], r["lat"], r["base"], r["top"], *r["anchor"]]
        writer.writerow([*fixed, *(_cell(r["properties"].get(k)) for k in extra)])
    return buf.getvalue().encode("utf-8")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def results_geojson(results: list[dict[str, Any]], **members: Any) -> dict[str, Any]:
    """Results as a GeoJSON FeatureCollection: each feature's footprint (``geometry`` from
    :func:`cim.query.engine.result_rows` with ``geometry=True``), its properties, and ``layer``,
    ``title``, ``base``, ``top`` and ``anchor`` beside them; ``members`` are added to the
    collection (``total``, ``offset``...)."""
    features = []
    for r in results:
        geometry = r.get("geometry")
        features.append(
            {
                "type": "Feature",
                "id": f"{r['layer']}/{r['id']}",
                "geometry": json.loads(geometry) if isinstance(geometry, str) else geometry,
                "properties": {
                    **r["properties"],
                    "cim:layer": r["layer"],
                    "cim:id": r["id"],
                    "cim:title": r["title"],
                    "cim:base": r["base"],
                    "cim:top": r["top"],
                    "cim:anchor": r["anchor"],
                },
            }
        )
    return {"type": "FeatureCollection", **members, "features": features}


def render(store: FeatureStore, query: Query, fmt: str = "json", limit: int | None = 50, offset: int = 0) -> tuple[bytes, int, int]:
    """One page of a query's results in ``fmt`` (json, geojson or csv) as the API sends it and
    ``cim query`` writes it; returns (bytes, total, count). ``limit=None``: every result.

    Raises
    ------
    CimInputError
        A malformed filter, or an unknown format.
    """
    if fmt not in FORMATS:
        raise CimInputError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    selection = select(store, query)
    rows = selection.rows[offset : None if limit is None else offset + limit]
    results = result_rows(store, rows, geometry=fmt == "geojson")
    total = len(selection.rows)
    members = {"total": total, "offset": offset, "limit": limit, "count": len(results), "fuzzy": selection.fuzzy}
    if fmt == "csv":
        return results_csv(results), total, len(results)
    if fmt == "geojson":
        return json.dumps(results_geojson(results, **members), ensure_ascii=False).encode(), total, len(results)
    page = {**members, "results": results}
    return json.dumps(page, ensure_ascii=False).encode(), total, len(results)
