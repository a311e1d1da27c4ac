"""Queries over a city's feature store: filters combined with AND, results, statistics, links.

One :class:`Query` holds every filter the API and ``cim query`` accept; :func:`select` returns the
matching rows in order. Spatial filters are exact against the footprints (shapely 2's STRtree
with its predicate, on the footprints in degrees); distances (``radius``, ``buffer``) are in
metres, measured in a local plane at the query's point (the ellipsoid's radii of curvature
there: over a few kilometres the scale is right to about a millionth).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from cim.errors import CimInputError, CimNotFound
from cim.query.store import FeatureStore
from cim.query.text import text_search
from cim.query.where import evaluate, parse_where

__all__ = [
    "GROUPS",
    "Query",
    "Selection",
    "feature_detail",
    "polygon_from_coords",
    "result_rows",
    "schema_of",
    "select",
    "statistics",
]

#: the ``group_by`` choices of :func:`statistics`
GROUPS = ("district", "use", "year_band", "layer")
#: attributes of every feature besides its layer's schema (sortable)
_BUILTIN_SORT = ("id", "title", "layer", "base", "top", "area")
#: BIM filters: query field → the element attribute it matches
_BIM_FIELDS = {"ifc_class": "IfcClass", "storey": "Storey", "globalid": "GlobalId", "model": "Model"}


@dataclass
class Query:
    """Filters, all optional, combined with AND.

    ``bbox`` (west, south, east, north), ``polygon`` (lon, lat, lon, lat, ...), ``point``
    (lon, lat) and ``line`` (lon, lat, ...) are degrees; ``radius`` (with ``point``) and
    ``buffer`` (with ``line``) metres. ``sort`` is an attribute, ``-attr`` descending.
    ``hidden`` are layers the reader may not see.
    """

    text: str | None = None
    where: str | None = None
    bbox: Sequence[float] | None = None
    polygon: Sequence[float] | None = None
    point: Sequence[float] | None = None
    radius: float | None = None
    line: Sequence[float] | None = None
    buffer: float = 0.0
    layer: str | None = None
    id: str | None = None
    ifc_class: str | None = None
    storey: str | None = None
    globalid: str | None = None
    model: str | None = None
    sort: str | None = None
    hidden: Sequence[str] = ()


@dataclass
class Selection:
    """The rows a query selects, in order, and whether its text matched fuzzily."""

    rows: np.ndarray
    fuzzy: bool = False


def _pairs(name: str, values: Sequence[float], least: int) -> np.ndarray:
    if len(values) % 2 or len(values) < 2 * least:
        raise CimInputError(f"parameter {name!r} takes lon,lat pairs (at least {least}), not {len(values)} numbers")
    xy = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all() or (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        raise CimInputError(f"parameter {name!r}: longitudes must lie in -180..180 and latitudes in -90..90 degrees")
    return xy


def polygon_from_coords(values: Sequence[float], name: str = "polygon") -> shapely.Polygon:
    """A polygon from ``lon,lat,lon,lat,...`` (closed or not).

    Raises
    ------
    CimInputError
        Fewer than three corners, odd count, out of range, or a self-intersecting ring.
    """
    xy = _pairs(name, values, 3)
    if (xy[0] == xy[-1]).all():
        xy = xy[:-1]
    if len(np.unique(xy, axis=0)) < 3:
        raise CimInputError(f"parameter {name!r} needs at least three distinct corners")
    poly = shapely.Polygon(xy)
    if not shapely.is_valid(poly):
        raise CimInputError(f"parameter {name!r} is not a simple polygon: {shapely.is_valid_reason(poly)}")
    return poly


def _local_plane(lon0: float, lat0: float) -> tuple[float, float]:
    """Metres per degree of longitude and latitude at (lon0, lat0) on the GRS80/WGS84 ellipsoid."""
    a, f = 6378137.0, 1 / 298.257222101
    e2 = f * (2 - f)
    s = math.sin(math.radians(lat0))
    n = a / math.sqrt(1 - e2 * s * s)  # prime vertical radius
    m = a * (1 - e2) / (1 - e2 * s * s) ** 1.5  # meridian radius
    return n * math.cos(math.radians(lat0)) * math.pi / 180.0, m * math.pi / 180.0


def _within_distance(store: FeatureStore, shape: shapely.Geometry, origin: tuple[float, float], metres: float) -> np.ndarray:
    """Rows whose geometry lies within ``metres`` of ``shape`` (degrees), in a local plane."""
    kx, ky = _local_plane(*origin)
    pad_x, pad_y = metres / kx * 1.01 + 1e-9, metres / ky * 1.01 + 1e-9
    w, s, e, n = shapely.bounds(shape)
    rows = store.tree.query(shapely.box(w - pad_x, s - pad_y, e + pad_x, n + pad_y))

    def local(xy: np.ndarray) -> np.ndarray:
        return np.column_stack([(xy[:, 0] - origin[0]) * kx, (xy[:, 1] - origin[1]) * ky])

    near = shapely.dwithin(shapely.transform(store.geoms[rows], local), shapely.transform(shape, local), metres)
    return rows[near]


def _spatial(store: FeatureStore, q: Query) -> np.ndarray | None:
    """Boolean mask of the spatial filters (None when there are none)."""
    mask: np.ndarray | None = None

    def both(rows: np.ndarray) -> None:
        nonlocal mask
        hit = np.zeros(len(store), dtype=bool)
        hit[rows] = True
        mask = hit if mask is None else mask & hit

    if q.bbox is not None:
        if len(q.bbox) != 4:
            raise CimInputError("parameter 'bbox' takes west,south,east,north")
        w, s, e, n = (float(v) for v in q.bbox)
        if not (w <= e and s <= n):
            raise CimInputError(f"parameter 'bbox': west must not exceed east, nor south north ({w},{s},{e},{n})")
        both(store.tree.query(shapely.box(w, s, e, n), predicate="intersects"))
    if q.polygon is not None:
        both(store.tree.query(polygon_from_coords(q.polygon), predicate="intersects"))
    if q.point is not None or q.radius is not None:
        if q.point is None or q.radius is None:
            raise CimInputError("parameters 'point' and 'radius' go together (radius in metres)")
        if not q.radius >= 0:
            raise CimInputError(f"parameter 'radius' must be at least 0 metres, not {q.radius}")
        xy = _pairs("point", q.point, 1)
        if len(xy) != 1:
            raise CimInputError("parameter 'point' takes one lon,lat pair")
        both(_within_distance(store, shapely.Point(xy[0]), (float(xy[0, 0]), float(xy[0, 1])), float(q.radius)))
    if q.line is not None:
        xy = _pairs("line", q.line, 2)
        if not q.buffer >= 0:
            raise CimInputError(f"parameter 'buffer' must be at least 0 metres, not {q.buffer}")
        line = shapely.LineString(xy)
        both(_within_distance(store, line, (float(xy[0, 0]), float(xy[0, 1])), float(q.buffer)))
    elif q.buffer:
        raise CimInputError("parameter 'buffer' needs a 'line'")
    return mask


def _types_for(store: FeatureStore, layer: str | None) -> dict[str, str]:
    if layer is not None:
        return dict(store.schema.get(layer, {}))
    return store.attribute_types


def select(store: FeatureStore, q: Query) -> Selection:
    """The rows matching every filter of ``q``, in order (text rank, else ``sort``, else build
    order).

    Raises
    ------
    CimInputError
        A malformed filter (the message names the parameter).
    """
    mask = np.ones(len(store), dtype=bool)
    if q.hidden:
        mask &= ~np.isin(store.layer, list(q.hidden))
    if q.layer is not None:
        if q.layer not in store.schema and q.layer not in set(store.layer.tolist()):
            known = ", ".join(sorted(store.schema)) or "none"
            raise CimInputError(f"parameter 'layer': no layer {q.layer!r} has features (layers: {known})")
        mask &= store.layer == q.layer
    if q.id is not None:
        mask &= store.fid == q.id
    for name, attribute in _BIM_FIELDS.items():
        value = getattr(q, name)
        if value is not None:
            column = store.typed.get(attribute)
            mask &= (column == value) & store.known[attribute] if column is not None else False
    spatial = _spatial(store, q)
    if spatial is not None:
        mask &= spatial
    if q.where is not None:
        mask &= evaluate(parse_where(q.where, _types_for(store, q.layer)), store.typed, store.known)
    fuzzy = False
    if q.text is not None and q.text.strip():
        match = text_search(store, q.text, mask)
        rows, fuzzy = match.rows, match.fuzzy
    else:
        rows = np.flatnonzero(mask)
    if q.sort:
        rows = _sorted(store, rows, q.sort, q.layer)
    return Selection(rows, fuzzy)


def _sorted(store: FeatureStore, rows: np.ndarray, sort: str, layer: str | None) -> np.ndarray:
    descending = sort.startswith("-")
    name = sort[1:] if descending else sort
    builtin = {"id": store.fid, "title": store.title, "layer": store.layer, "base": store.base, "top": store.top, "area": store.area}
    types = _types_for(store, layer)
    if name in types:
        values = store.columns[name][rows]
    elif name in builtin:
        values = builtin[name][rows]
    else:
        known = ", ".join(sorted({*types, *_BUILTIN_SORT}))
        raise CimInputError(f"parameter 'sort': unknown attribute {name[:40]!r} (sortable: {known})")
    if values.dtype == object:
        missing = np.array([v is None for v in values.tolist()], dtype=bool)
        keys = np.array(["" if v is None else str(v) for v in values.tolist()], dtype=object)
        _, ranks = np.unique(keys, return_inverse=True)
        key = ranks.astype(np.float64)
    else:
        missing = np.isnan(values)
        key = np.asarray(values, dtype=np.float64)
    key = np.where(missing, 0.0, -key if descending else key)
    order = np.lexsort((np.arange(len(rows)), key, missing))  # missing values last, ties stable
    return rows[order]


def result_rows(store: FeatureStore, rows: np.ndarray, *, geometry: bool = False) -> list[dict[str, Any]]:
    """The API's result objects of ``rows``: layer, id, title, centre, heights, properties, the
    anchor (a point inside the footprint), and with ``geometry`` the footprint as GeoJSON."""
    props = store.properties(rows)
    out = []
    geo = shapely.to_geojson(store.geoms[rows]).tolist() if geometry and len(rows) else []
    for k, (i, p) in enumerate(zip(rows.tolist(), props)):
        item: dict[str, Any] = {
            "layer": store.layer[i],
            "id": store.fid[i],
            "title": store.title[i],
            "lon": float(store.lon[i]),
            "lat": float(store.lat[i]),
            "base": float(store.base[i]),
            "top": float(store.top[i]),
            "properties": p,
            "anchor": [float(store.anchor[i, 0]), float(store.anchor[i, 1])],
        }
        if geometry:
            item["geometry"] = geo[k]
        out.append(item)
    return out


def _heights(store: FeatureStore, rows: np.ndarray) -> np.ndarray:
    """Each row's height: its ``height`` attribute where it has one, else top − base."""
    fallback = store.top[rows] - store.base[rows]
    column = store.columns.get("height")
    if column is None or column.dtype == object:
        return fallback
    given = column[rows]
    return np.where(np.isnan(given), fallback, given)


def _floors(store: FeatureStore, rows: np.ndarray) -> np.ndarray:
    column = store.columns.get("floors")
    if column is None or column.dtype == object:
        return np.full(len(rows), np.nan)
    return column[rows]


def histogram_edges(heights: np.ndarray) -> np.ndarray:
    """Bin edges for a height histogram: from 0 by a round step (5, 10, 20, 50 or 100 m) to the
    first multiple at or above the highest value, at most 30 bins."""
    top = float(np.max(heights)) if len(heights) else 0.0
    step = next((s for s in (5.0, 10.0, 20.0, 50.0, 100.0) if top / s <= 30), 10.0 ** math.ceil(math.log10(max(top, 1.0) / 30)))
    count = max(1, math.ceil(top / step) + (1 if top > 0 and top % step == 0 else 0))
    return np.arange(count + 1) * step


def _group_keys(store: FeatureStore, rows: np.ndarray, group_by: str) -> list[Any]:
    if group_by == "layer":
        return store.layer[rows].tolist()
    if group_by == "year_band":
        years = store.columns.get("year_built")
        if years is None or years.dtype == object:
            return [None] * len(rows)
        return [None if math.isnan(y) else f"{int(y // 10 * 10)}s" for y in years[rows].tolist()]
    column = store.columns.get(group_by)
    if column is None:
        return [None] * len(rows)
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in column[rows].tolist()]


def statistics(store: FeatureStore, rows: np.ndarray, group_by: str | None = None) -> dict[str, Any]:
    """Counts, footprint area (m², in the layer's projected CRS), floor area (area × floors),
    the height histogram and, with ``group_by`` (one of :data:`GROUPS`), the same per group.

    Features without a footprint (BIM elements) count but add no area; a building without
    ``floors`` adds no floor area."""
    if group_by is not None and group_by not in GROUPS:
        raise CimInputError(f"parameter 'group_by' must be one of {', '.join(GROUPS)}, not {group_by!r}")
    area = np.nan_to_num(store.area[rows])
    floor_area = np.nan_to_num(store.area[rows] * _floors(store, rows))
    heights = _heights(store, rows)
    edges = histogram_edges(heights)
    counts, _ = np.histogram(heights, bins=edges)
    body: dict[str, Any] = {
        "count": len(rows),
        "footprint_area_m2": float(area.sum()),
        "floor_area_m2": float(floor_area.sum()),
        "height_histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "groups": [],
    }
    if group_by is not None and len(rows):
        keys = _group_keys(store, rows, group_by)
        labels = sorted({k for k in keys if k is not None}, key=str) + ([None] if None in keys else [])
        index = {k: j for j, k in enumerate(labels)}
        at = np.array([index[k] for k in keys], dtype=np.int64)
        n = np.bincount(at, minlength=len(labels))
        a = np.bincount(at, weights=area, minlength=len(labels))
        f = np.bincount(at, weights=floor_area, minlength=len(labels))
        body["groups"] = [
            {"key": k, "count": int(n[j]), "footprint_area_m2": float(a[j]), "floor_area_m2": float(f[j])} for j, k in enumerate(labels)
        ]
    return body


def schema_of(store: FeatureStore, hidden: Sequence[str] = ()) -> dict[str, Any]:
    """Each layer's queryable attributes and their types."""
    return {"layers": {layer: dict(types) for layer, types in sorted(store.schema.items()) if layer not in hidden}}


def feature_detail(store: FeatureStore, layer: str, fid: str, hidden: Sequence[str] = ()) -> dict[str, Any]:
    """One feature as a result object, with its ``links``: the BIM models standing in its
    footprint (a model's element whose centre lies inside), the lidar statistics of the
    building points its footprint covers (see :func:`_point_stats`), its district, and for a BIM
    element the building whose footprint holds its centre.

    Raises
    ------
    CimNotFound
        No such feature (or one of a layer the reader may not see).
    """
    if layer in hidden:
        raise CimNotFound(f"no feature {fid!r} in layer {layer!r}")
    i = store.index_of(layer, fid)
    item = result_rows(store, np.array([i]), geometry=True)[0]
    visible = ~np.isin(store.layer, list(hidden)) if hidden else np.ones(len(store), dtype=bool)
    bim: list[dict[str, Any]] = []
    building = None
    model_column = store.columns.get("Model")
    if store.has_footprint[i] and model_column is not None:
        inside = store.tree.query(store.geoms[i], predicate="intersects")
        inside = inside[(model_column[inside] != None) & visible[inside]]  # noqa: E711 - elementwise
        points = shapely.points(store.anchor[inside])
        inside = inside[shapely.contains(store.geoms[i], points)]
        seen: dict[str, dict[str, Any]] = {}
        for j in inside.tolist():
            name = str(model_column[j])
            if name not in seen:
                seen[name] = {"layer": store.layer[j], "id": name, "title": name, "model": name, "elements": 0}
            seen[name]["elements"] += 1
        bim = [seen[k] for k in sorted(seen)]
    elif not store.has_footprint[i]:
        holders = store.tree.query(shapely.Point(store.anchor[i]), predicate="within")
        holders = holders[store.has_footprint[holders] & visible[holders]]
        if len(holders):
            j = int(holders[0])
            building = {"layer": store.layer[j], "id": store.fid[j], "title": store.title[j]}
    props = item["properties"]
    item["links"] = {"bim": bim, "points": _point_stats(store, i, props), "district": props.get("district"), "building": building}
    return item


def _point_stats(store: FeatureStore, i: int, props: dict[str, Any]) -> dict[str, Any] | None:
    """The lidar statistics of a building: its ``n_points`` and ``h_roof_<p>`` attributes, which
    :mod:`cim.layers.building_heights` gives a building whose heights came from a point cloud
    (while it computes them), or whose city has a point-cloud layer (``link_points``: columns
    of the search index that are not among its properties, percentiles 0, 50, 90 and 100). ``z_min``/``z_max`` are the 0th
    and 100th roof percentiles, known when the layer's ``roof_percentiles`` include 0 and 100."""

    def value(name: str) -> Any:
        if name in props:  # an attribute of the feature (heights from points)
            return props[name]
        column = store.columns.get(name)  # a column the build derived (the link)
        if column is None or column.dtype == object or math.isnan(column[i]):
            return None
        return float(column[i])

    count = value("n_points")
    if count is None:
        return None
    return {
        "count": int(count),
        "z_min": value("h_roof_0"),
        "z_p50": value("h_roof_50"),
        "z_p90": value("h_roof_90"),
        "z_max": value("h_roof_100"),
        "ground": value("h_ground"),
    }
