"""The analyses as JSON requests and answers: what the API serves and the CLI writes.

A request is a JSON object in longitude/latitude degrees (heights in metres, in the city's
vertical datum); :func:`run_analysis` checks it against the kind's schema, runs the analysis on
the city's surface model and answers a JSON object: ``summary`` (the numbers) and ``geojson``
(a FeatureCollection in longitude/latitude to draw or export). The API and ``cim analyse`` both
call it, so they give the same numbers.

Every request may carry a ``proposal`` (体块方案): a footprint polygon and a height that replace
the buildings they cover (more than half of a footprint's area) for the analysis. Sunlight,
skyline and height limit then answer ``before`` and ``after``.

Requests larger than :data:`cim.analysis.schemas.MAX_AREA_M2` (an area, zone or region
polygon, or a viewshed's disc) are refused with a message naming the field; the requests'
schemas are in :mod:`cim.analysis.schemas`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import shapely

from cim.analysis.model import SurfaceModel, prisms_from_polygons
from cim.analysis.schemas import KINDS, MAX_AREA_M2, POLYGON, SCHEMAS, with_defaults
from cim.errors import CimInputError

__all__ = ["apply_proposal", "run_analysis"]


def _polygon(model: SurfaceModel, ring: list[list[float]], field: str) -> shapely.Polygon:
    coords = np.asarray(ring, dtype=np.float64)
    x, y = model.to_xy(coords[:, 0], coords[:, 1])
    poly = shapely.Polygon(np.column_stack([x, y]))
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    if poly.is_empty or poly.area <= 0:
        raise CimInputError(f"{field} is not a polygon with an area")
    if poly.area > MAX_AREA_M2:
        raise CimInputError(f"{field} covers {poly.area / 1e6:.2f} km², more than the {MAX_AREA_M2 / 1e6:g} km² one request may analyse")
    return poly


def _point(model: SurfaceModel, lonlat: list[float], field: str) -> tuple[float, float]:
    x, y = model.to_xy(lonlat[0], lonlat[1])
    _, _, inside = model.cells(x, y)
    if not inside[0]:
        raise CimInputError(f"{field} lies outside the city's surface model")
    return float(x[0]), float(y[0])


def _date(value: str | None) -> dt.date:
    if value is None:
        return dt.date(dt.date.today().year, 1, 20)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CimInputError(f"date must be YYYY-MM-DD, not {value!r}") from None


def _lonlat_geom(model: SurfaceModel, geom: shapely.Geometry) -> dict[str, Any]:
    def project(xy: np.ndarray) -> np.ndarray:
        lon, lat = model.to_lonlat(xy[:, 0], xy[:, 1])
        return np.column_stack([np.round(lon, 8), np.round(lat, 8)])

    return shapely.geometry.mapping(shapely.transform(geom, project))


def _as_lists(value: Any) -> Any:
    """``value`` with its tuples as lists (a GeoJSON mapping as JSON reads it back)."""
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return value


def _feature(model: SurfaceModel, geom: shapely.Geometry, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": _lonlat_geom(model, geom), "properties": props}


def _raster_polygons(model: SurfaceModel, mask: np.ndarray, window: tuple[slice, slice]) -> shapely.Geometry:
    """The cells of ``mask`` (a window of the grid) as one (multi)polygon in the grid CRS."""
    from rasterio.features import shapes
    from rasterio.transform import from_origin

    if not mask.any():
        return shapely.MultiPolygon()
    transform = from_origin(model.x0 + window[1].start * model.res, model.y0 - window[0].start * model.res, model.res, model.res)
    # the regions rasterio traces are disjoint: one MultiPolygon, no union needed; collinear
    # vertices along cell edges dropped
    polys = [shapely.geometry.shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask, transform=transform)]
    return shapely.simplify(shapely.MultiPolygon(polys), model.res * 0.01, preserve_topology=False)


def _r(value: float, digits: int = 3) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _ids(model: SurfaceModel, rows: np.ndarray) -> list[str]:
    return [str(model.prisms.ids[i]) for i in rows]


# -- proposals -------------------------------------------------------------------------------


def _proposal_shape(proposal: Mapping[str, Any]) -> tuple[list[list[float]], float]:
    """The proposal's outer ring ([lon, lat] pairs) and height, from ``polygon`` or ``geojson``."""
    if "polygon" in proposal:
        ring = proposal["polygon"]
        height = proposal.get("height")
    elif "geojson" in proposal:
        doc = proposal["geojson"]
        geom = doc.get("geometry") if doc.get("type") == "Feature" else doc
        props = (doc.get("properties") or {}) if doc.get("type") == "Feature" else {}
        if not isinstance(geom, dict) or geom.get("type") != "Polygon" or not geom.get("coordinates"):
            raise CimInputError("proposal.geojson must be a GeoJSON Polygon or a Feature of one")
        ring = geom["coordinates"][0]
        height = proposal.get("height", props.get("height"))
    else:
        raise CimInputError("proposal needs a polygon or a geojson footprint")
    if not isinstance(height, (int, float)) or isinstance(height, bool) or not 0.1 <= height <= 1000:
        raise CimInputError("proposal.height must be a number of metres from 0.1 to 1000")
    from cim.server.openapi import check_value

    check_value("proposal footprint", ring, POLYGON)
    return ring, float(height)


def _proposal_solid(model: SurfaceModel, proposal: Mapping[str, Any]) -> tuple[shapely.Geometry, float, float, np.ndarray | None]:
    """A proposal's plan, base and top, and its triangles when it is a model file (else None)."""
    if "file" in proposal:
        import base64
        import binascii

        from cim.analysis.meshes import mesh_footprint, mesh_triangles

        name = str(proposal["file"]["name"])
        try:
            data = base64.b64decode(proposal["file"]["data"], validate=True)
        except (binascii.Error, ValueError):
            raise CimInputError(f"proposal.file.data of {name} is not base64") from None
        tri = mesh_triangles(data, name, model, position=proposal.get("position"), rotation=float(proposal.get("rotation", 0.0)))
        try:
            plan = mesh_footprint(tri, model.res)
        except CimInputError as exc:
            raise CimInputError(f"{name}: {exc}") from None
        if plan.area > MAX_AREA_M2:
            raise CimInputError(f"{name}: the model covers {plan.area / 1e6:.2f} km², more than one request may analyse")
        return plan, float(tri[:, :, 2].min()), float(tri[:, :, 2].max()), tri
    ring, height = _proposal_shape(proposal)
    poly = _polygon(model, ring, "proposal.polygon")
    xy = shapely.get_coordinates(shapely.get_exterior_ring(shapely.get_parts(poly)))
    ground = model.ground(xy[:, 0], xy[:, 1])
    base = float(np.nanmin(ground)) if np.isfinite(ground).any() else float(np.nanmedian(np.asarray(model.dem)))
    return poly, base, base + height, None


def apply_proposal(model: SurfaceModel, proposal: Mapping[str, Any]) -> tuple[SurfaceModel, list[str]]:
    """The model with a massing proposal in place of the buildings it covers (more than half
    of their footprint's area), and the ids of those buildings.

    A proposal given as a model file stands in the DSM by its mesh (the highest triangle over
    each cell it owns) and in the prisms by its plan, lowest and highest points."""
    poly, base, top, tri = _proposal_solid(model, proposal)
    prisms = model.prisms
    covered = prisms.covered_by(poly)
    keep = np.setdiff1d(np.arange(len(prisms)), covered)
    new = prisms_from_polygons(
        np.concatenate([prisms.footprints[keep], np.array([poly], dtype=object)]),
        np.concatenate([prisms.base[keep], [base]]),
        np.concatenate([prisms.top[keep], [top]]),
        np.concatenate([prisms.ids[keep], np.array([proposal.get("id", "proposal")], dtype=object)]),
        np.concatenate([prisms.uses[keep], np.array(["proposal"], dtype=object)]),
    )
    boxes = [shapely.bounds(poly)] + [shapely.bounds(prisms.footprints[i]) for i in covered]
    b = np.array(boxes)
    changed = (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))
    after = model.with_prisms(new, changed)
    # the rows of the buildings standing by their meshes, in the new prisms (and the proposal's)
    row_of = np.full(len(prisms), -1, dtype=np.int64)
    row_of[keep] = np.arange(len(keep))
    meshed = row_of[np.asarray(model.meshed, dtype=np.int64)]
    meshed = meshed[meshed >= 0]
    if tri is not None:
        _burn_mesh(after, tri, len(new) - 1)
        meshed = np.append(meshed, len(new) - 1)
    after.meshed = np.sort(meshed).astype(np.int64)
    after.__dict__.pop("sight_surface", None)
    return after, _ids(model, covered)


def _burn_mesh(model: SurfaceModel, triangles: np.ndarray, owner: int) -> None:
    """Replace the flat roof of building ``owner`` in ``model``'s DSM (in place) by the
    highest triangle of its mesh over each of its cells (the ground where none is)."""
    from cim.kernels.trimax import rasterise_triangles_max

    rs, cs = model.window(tuple(shapely.total_bounds(shapely.points(triangles.reshape(-1, 3)[:, :2]))))
    if rs.stop <= rs.start or cs.stop <= cs.start:
        return
    z = rasterise_triangles_max(
        triangles, model.x0 + cs.start * model.res, model.y0 - rs.start * model.res, model.res, (rs.stop - rs.start, cs.stop - cs.start)
    )
    mine = np.asarray(model.owner[rs, cs]) == owner
    dem = np.asarray(model.dem[rs, cs], dtype=np.float32)
    roof = np.where(np.isfinite(z), np.fmax(dem, z), dem)
    model.dsm[rs, cs] = np.where(mine, roof, model.dsm[rs, cs])
    model.__dict__.pop("blocks", None)  # the rays' skip tiles follow the DSM


# -- the analyses ----------------------------------------------------------------------------


def _sunlight(model: SurfaceModel, req: dict[str, Any], after: SurfaceModel | None) -> dict[str, Any]:
    from cim.analysis.sunlight import RESIDENTIAL, sunlight_hours

    residential = np.array([u is not None and str(u).lower() in RESIDENTIAL for u in model.prisms.uses])
    if "buildings" in req:
        index = {str(v): i for i, v in enumerate(model.prisms.ids)}
        missing = [b for b in req["buildings"] if b not in index]
        if missing:
            raise CimInputError(f"buildings: unknown id(s) {', '.join(missing[:5])}")
        rows = np.array(sorted({index[b] for b in req["buildings"]}), dtype=np.int64)
    elif "area" in req:
        rows = np.sort(model.prisms.tree.query(_polygon(model, req["area"], "area"), predicate="intersects")).astype(np.int64)
        rows = rows[residential[rows]]
    else:
        raise CimInputError("a sunlight request needs an area or a list of buildings")
    args = dict(
        date=_date(req.get("date")),
        start=req["start"],
        end=req["end"],
        step_minutes=req["step"],
        threshold=req["threshold"],
        spacing=req["spacing"],
        sill=req["sill"],
        max_distance=req["max_distance"],
    )
    before = sunlight_hours(model, buildings=rows, **args)
    out = _sunlight_answer(model, before, req)
    if after is not None:
        # the same buildings, found by id in the changed model (those the proposal replaced are gone)
        index = {str(v): i for i, v in enumerate(after.prisms.ids)}
        kept = [str(model.prisms.ids[i]) for i in rows if str(model.prisms.ids[i]) in index]
        res_after = sunlight_hours(after, buildings=np.array(sorted(index[k] for k in kept), dtype=np.int64), **args)
        answer_after = _sunlight_answer(after, res_after, req)
        hours_before = {b["id"]: b for b in out["summary"]["buildings"]}
        changes = []
        for b in answer_after["summary"]["buildings"]:
            prior = hours_before[b["id"]]
            changes.append(
                {
                    "id": b["id"],
                    "mean_hours_before": prior["mean_hours"],
                    "mean_hours_after": b["mean_hours"],
                    "lost": None if prior["mean_hours"] is None or b["mean_hours"] is None else _r(prior["mean_hours"] - b["mean_hours"]),
                    "min_south_hours_before": prior["min_south_hours"],
                    "min_south_hours_after": b["min_south_hours"],
                    "below_before": prior["below"],
                    "below_after": b["below"],
                }
            )
        out = {
            "summary": {**out["summary"], "after": answer_after["summary"], "changes": changes},
            "geojson": answer_after["geojson"],
        }
    return out


def _sunlight_answer(model: SurfaceModel, res: Any, req: dict[str, Any]) -> dict[str, Any]:
    buildings = []
    features = []
    for k, row in enumerate(res.buildings):
        props = {
            "id": str(model.prisms.ids[row]),
            "use": model.prisms.uses[row],
            "base": _r(model.prisms.base[row], 2),
            "top": _r(model.prisms.top[row], 2),
            "max_hours": _r(res.max_hours[k]),
            "mean_hours": _r(res.mean_hours[k]),
            "min_south_hours": _r(res.min_south_hours[k]),
            "below": bool(res.below[k]),
        }
        buildings.append(props)
        features.append(_feature(model, model.prisms.footprints[row], **props))
    if req.get("points"):
        lon, lat = model.to_lonlat(res.points.xyz[:, 0], res.points.xyz[:, 1])
        for i in range(len(lon)):
            features.append(
                {
                    "type": "Feature",
                    "geometry": {
                        "type": "Point",
                        "coordinates": [round(float(lon[i]), 8), round(float(lat[i]), 8), round(float(res.points.xyz[i, 2]), 2)],
                    },
                    "properties": {"building": str(model.prisms.ids[res.points.building[i]]), "hours": _r(res.hours[i])},
                }
            )
    below = [b["id"] for b in buildings if b["below"]]
    return {
        "summary": {
            "date": str(_date(req.get("date"))),
            "window": [req["start"], req["end"]],
            "threshold": req["threshold"],
            "count": len(buildings),
            "below_count": len(below),
            "below": below,
            "points": len(res.hours),
            "buildings": buildings,
        },
        "geojson": {"type": "FeatureCollection", "features": features},
    }


def _shadow(model: SurfaceModel, req: dict[str, Any], after: SurfaceModel | None) -> dict[str, Any]:
    from cim.analysis.sunlight import ground_shadow

    m = after or model
    area = _polygon(m, req["area"], "area")
    res = ground_shadow(
        m, area, date=_date(req.get("date")), start=req["start"], end=req["end"], step_minutes=req["step"], max_distance=req["max_distance"]
    )
    fractions = res.shadow_fraction()
    features = [
        _feature(m, _raster_polygons(m, res.shadow[k], res.window), hour=_r(h, 4), shadow_fraction=_r(fractions[k], 4))
        for k, h in enumerate(res.hours)
    ]
    cells = res.sun_hours[res.inside]
    return {
        "summary": {
            "date": str(_date(req.get("date"))),
            "hours": [_r(h, 4) for h in res.hours],
            "shadow_fraction": [_r(f, 4) for f in fractions],
            "area_m2": _r(res.inside.sum() * m.res**2, 1),
            "mean_sun_hours": _r(float(cells.mean()) if len(cells) else 0.0),
            "min_sun_hours": _r(float(cells.min()) if len(cells) else 0.0),
        },
        "geojson": {"type": "FeatureCollection", "features": features},
    }


def _sightline(model: SurfaceModel, req: dict[str, Any], after: SurfaceModel | None) -> dict[str, Any]:
    from cim.analysis.visibility import sightline

    m = after or model
    ends = []
    for field, default_h in (("from", 1.6), ("to", 0.0)):
        v = req[field]
        x, y = _point(m, v, field)
        h = float(v[2]) if len(v) > 2 else default_h
        if not req["absolute"]:
            r, c, _ = m.cells(np.array([x]), np.array([y]))
            h += float(m.dsm[r[0], c[0]])
        ends.append(np.array([x, y, h]))
    s = sightline(m, ends[0], ends[1])
    summary: dict[str, Any] = {"visible": s.visible, "length": _r(s.length), "obstruction": None}
    line = shapely.LineString([ends[0][:2], ends[1][:2]])
    features = [_feature(m, line, part="sightline", visible=s.visible)]
    if not s.visible:
        lon, lat = m.to_lonlat(s.point[0], s.point[1])
        summary["obstruction"] = {
            "kind": s.kind,
            "building": str(m.prisms.ids[s.building]) if s.building >= 0 else None,
            "point": [round(float(lon[0]), 8), round(float(lat[0]), 8), _r(s.point[2])],
            "distance": _r(s.distance),
        }
        features = [
            _feature(m, shapely.LineString([ends[0][:2], s.point[:2]]), part="visible", visible=True),
            _feature(m, shapely.LineString([s.point[:2], ends[1][:2]]), part="hidden", visible=False),
            _feature(m, shapely.Point(s.point[:2]), part="obstruction", **summary["obstruction"]),
        ]
    summary["from"] = [_r(ends[0][2])]
    summary["to"] = [_r(ends[1][2])]
    return {"summary": summary, "geojson": {"type": "FeatureCollection", "features": features}}


def _viewshed(model: SurfaceModel, req: dict[str, Any], after: SurfaceModel | None) -> dict[str, Any]:
    from cim.analysis.visibility import viewshed

    m = after or model
    x, y = _point(m, req["observer"], "observer")
    radius = float(req["radius"])
    if np.pi * radius**2 > MAX_AREA_M2:
        raise CimInputError(f"radius {radius:g} m covers more than the {MAX_AREA_M2 / 1e6:g} km² one request may analyse")
    v = viewshed(m, x, y, float(req["eye_height"]), radius)
    visible, hidden = v.areas(m.res)
    features = [
        _feature(m, _raster_polygons(m, v.state == 2, v.window), visible=True),
        _feature(m, _raster_polygons(m, v.state == 1, v.window), visible=False),
    ]
    return {
        "summary": {
            "visible_m2": _r(visible, 1),
            "hidden_m2": _r(hidden, 1),
            "visible_share": _r(visible / max(visible + hidden, 1e-9), 4),
            "buildings": _ids(m, v.buildings),
        },
        "geojson": {"type": "FeatureCollection", "features": features},
    }


def _skyline_answer(m: SurfaceModel, sk: Any) -> dict[str, Any]:
    ids, counts = sk.buildings()
    lon, lat = m.to_lonlat(sk.point[:, 0], sk.point[:, 1])
    ok = np.isfinite(sk.elevation)
    coords = [[round(float(a), 8), round(float(b), 8), round(float(c), 2)] for a, b, c in zip(lon[ok], lat[ok], sk.point[ok, 2])]
    return {
        "summary": {
            "azimuths": [_r(a, 3) for a in sk.azimuths],
            "elevation": [_r(e, 4) for e in sk.elevation],
            "building": [str(m.prisms.ids[b]) if b >= 0 else None for b in sk.building],
            "buildings": [{"id": str(m.prisms.ids[i]), "azimuth_samples": int(n)} for i, n in zip(ids, counts)],
            "max_elevation": _r(float(np.nanmax(sk.elevation)) if ok.any() else float("nan"), 4),
        },
        "geojson": {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords}, "properties": {"part": "skyline"}}],
        },
    }


def _skyline(model: SurfaceModel, req: dict[str, Any], after: SurfaceModel | None) -> dict[str, Any]:
    from cim.analysis.visibility import skyline

    x, y = _point(model, req["viewpoint"], "viewpoint")
    args = dict(radius=float(req["radius"]), azimuth_step=float(req["azimuth_step"]))
    out = _skyline_answer(model, skyline(model, x, y, float(req["eye_height"]), **args))
    if after is not None:
        later = _skyline_answer(after, skyline(after, x, y, float(req["eye_height"]), **args))
        before_e, after_e = np.array(out["summary"]["elevation"], dtype=float), np.array(later["summary"]["elevation"], dtype=float)
        changed = np.abs(np.nan_to_num(after_e) - np.nan_to_num(before_e)) > 1e-6
        out = {
            "summary": {
                **out["summary"],
                "after": later["summary"],
                "changed_azimuths": int(changed.sum()),
                "max_rise": _r(float(np.nanmax(after_e - before_e)), 4),
            },
            "geojson": {
                "type": "FeatureCollection",
                "features": out["geojson"]["features"]
                + [dict(f, properties={"part": "skyline_after"}) for f in later["geojson"]["features"]],
            },
        }
    return out


def _heightlimit_answer(m: SurfaceModel, zone: shapely.Geometry, req: dict[str, Any]) -> dict[str, Any]:
    from cim.analysis.zoning import height_limit

    hl = height_limit(m, zone, float(req["limit"]), req["mode"])
    rows = []
    features = [_feature(m, zone, part="zone", limit=req["limit"], mode=req["mode"])]
    for k, i in enumerate(hl.buildings):
        if not hl.exceeding[k]:
            continue
        props = {"id": str(m.prisms.ids[i]), "top": _r(m.prisms.top[i]), "limit": _r(hl.limit[k]), "excess": _r(hl.excess[k])}
        rows.append(props)
        features.append(_feature(m, m.prisms.footprints[i], part="exceeding", **props))
    return {
        "summary": {"checked": len(hl.buildings), "exceeding_count": len(rows), "exceeding": rows},
        "geojson": {"type": "FeatureCollection", "features": features},
    }


def _heightlimit(model: SurfaceModel, req: dict[str, Any], after: SurfaceModel | None) -> dict[str, Any]:
    zone = _polygon(model, req["zone"], "zone")
    out = _heightlimit_answer(model, zone, req)
    if after is not None:
        later = _heightlimit_answer(after, zone, req)
        out = {"summary": {**out["summary"], "after": later["summary"]}, "geojson": later["geojson"]}
    return out


def _flood(model: SurfaceModel, req: dict[str, Any], after: SurfaceModel | None) -> dict[str, Any]:
    from cim.analysis.zoning import flood

    m = after or model
    region = _polygon(m, req["region"], "region")
    seed = _point(m, req["seed"], "seed") if "seed" in req else None
    f = flood(m, float(req["level"]), region, seed=seed)
    depth = f.depth[f.depth > 0]
    buildings = [{"id": str(m.prisms.ids[i]), "depth": _r(d)} for i, d in zip(f.buildings, f.building_depth)]
    features = [_feature(m, _raster_polygons(m, np.nan_to_num(f.depth) > 0, f.window), part="water", level=req["level"])]
    features += [
        _feature(m, m.prisms.footprints[i], part="building", id=str(m.prisms.ids[i]), depth=_r(d))
        for i, d in zip(f.buildings, f.building_depth)
    ]
    return {
        "summary": {
            "level": req["level"],
            "area_m2": _r(f.area(m.res), 1),
            "volume_m3": _r(f.volume(m.res), 1),
            "max_depth": _r(float(depth.max()) if len(depth) else 0.0),
            "mean_depth": _r(float(depth.mean()) if len(depth) else 0.0),
            "buildings_count": len(buildings),
            "buildings": buildings,
        },
        "geojson": {"type": "FeatureCollection", "features": features},
    }


_RUNNERS: dict[str, Callable[[SurfaceModel, dict[str, Any], SurfaceModel | None], dict[str, Any]]] = {
    "sunlight": _sunlight,
    "shadow": _shadow,
    "sightline": _sightline,
    "viewshed": _viewshed,
    "skyline": _skyline,
    "heightlimit": _heightlimit,
    "flood": _flood,
}


def run_analysis(model: SurfaceModel, kind: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """Run one analysis from a JSON request; answer ``{"kind", "summary", "geojson"}``.

    Raises
    ------
    CimInputError
        An unknown kind, a request that fails the kind's schema (the message names the field),
        or one too large.
    """
    from cim.server.openapi import check_value

    if kind not in _RUNNERS:
        raise CimInputError(f"unknown analysis {kind!r} (one of {', '.join(KINDS)})")
    check_value("body", dict(request), SCHEMAS[kind])
    req = with_defaults(kind, request)
    after = None
    replaced: list[str] = []
    if "proposal" in req:
        after, replaced = apply_proposal(model, req["proposal"])
    out = _RUNNERS[kind](model, req, after)
    if "proposal" in req:
        out["summary"]["proposal"] = {
            "id": str(req["proposal"].get("id", "proposal")),
            "replaced": replaced,
            "height": _r(float(after.prisms.top[-1] - after.prisms.base[-1]), 2) if after is not None else None,
            "base": _r(float(after.prisms.base[-1]), 2) if after is not None else None,
            # its plan (GeoJSON, lon/lat): a model file's outline seen from above, for the viewer to draw
            "plan": _as_lists(_lonlat_geom(model, after.prisms.footprints[-1])) if after is not None else None,
        }
    return {"kind": kind, **out}
