"""Result output: CSV that Excel opens with Chinese text intact, and GeoJSON for GIS tools."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

__all__ = ["BOM", "results_csv", "results_geojson", "FIXED_COLUMNS"]

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
