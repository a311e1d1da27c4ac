"""Meshes in the surface model: IFC and glTF/GLB models as triangles in the model's CRS.

A proposal may be a model rather than a footprint and a height (``cim analyse --proposal
tower.ifc``, or the API's ``proposal.file``), and a city's BIM layers stand in the surface model
by their meshes. Both become triangles ``(m, 3, 3)`` in the model's projected CRS (absolute
heights); :func:`mesh_footprint` gives their plan (the union of the triangles seen from above),
and :func:`cim.kernels.trimax.rasterise_triangles_max` their highest point over each cell.

- **IFC** is placed by its own georeferencing (``IfcMapConversion`` to an ``IfcProjectedCRS``,
  IFC2x3's ``ePSet_MapConversion``, or ``IfcSite`` latitude/longitude), as the BIM layer places
  it; a model with none needs a ``position``.
- **glTF/GLB** carries no georeferencing: it is placed at a given ``position`` ([lon, lat] and
  optionally the height of its origin; default: the model's lowest point on the ground there),
  turned ``rotation`` degrees clockwise from north (its -Z axis, glTF's forward, faces north
  unturned; +Y is up, as glTF defines).

A file that cannot be read is a :class:`~cim.errors.CimInputError` naming it.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from cim.analysis.model import SurfaceModel
from cim.errors import CimError, CimInputError

__all__ = ["MESH_SUFFIXES", "burn_meshes", "gltf_triangles", "ifc_triangles", "mesh_footprint", "mesh_triangles"]

#: the model formats a proposal may be given in
MESH_SUFFIXES = (".ifc", ".glb", ".gltf")
#: IFC classes that never rise above a building's envelope: not drawn for the surface model, and
#: walls are drawn without their openings (the kernel's booleans are most of the time: a 2 MB
#: residential model of the city preset takes 3 s instead of 8, with the same highest points)
_NOT_ENVELOPE = ("IfcWindow", "IfcDoor", "IfcFurnishingElement")


def mesh_triangles(
    data: bytes,
    name: str,
    model: SurfaceModel,
    *,
    position: Sequence[float] | None = None,
    rotation: float = 0.0,
) -> np.ndarray:
    """The triangles of an IFC or glTF/GLB file (by ``name``'s suffix) in ``model``'s CRS.

    Parameters
    ----------
    data : the file's bytes
    name : the file's name (its suffix picks the format; messages name it)
    position : [lon, lat] or [lon, lat, height] of the model's origin (glTF: required; IFC:
        overrides its georeferencing)
    rotation : degrees clockwise from north (glTF, or an IFC placed by ``position``)

    Returns
    -------
    (m, 3, 3) float64, triangle corners (x, y, z)

    Raises
    ------
    CimInputError
        An unknown suffix, a file that does not parse, one with no triangles, or one placed
        outside the surface model.
    """
    suffix = Path(name).suffix.lower()
    if suffix == ".ifc":
        tri = ifc_triangles(data, name, model, position=position, rotation=rotation)
    elif suffix in (".glb", ".gltf"):
        if position is None:
            raise CimInputError(f"{name}: a glTF model carries no georeferencing: give its position [lon, lat] (or [lon, lat, height])")
        tri = gltf_triangles(data, name, model, position=position, rotation=rotation)
    else:
        raise CimInputError(f"{name}: a proposal model must be {', '.join(MESH_SUFFIXES)} (or a .geojson footprint)")
    if len(tri) == 0:
        raise CimInputError(f"{name}: the model has no triangles")
    xmin, ymin, xmax, ymax = model.bounds
    x, y = tri[:, :, 0], tri[:, :, 1]
    if x.max() < xmin or x.min() > xmax or y.max() < ymin or y.min() > ymax:
        raise CimInputError(f"{name}: the model stands outside the city's surface model (check its georeferencing or position)")
    return tri


def _position_xy(model: SurfaceModel, position: Sequence[float], name: str) -> tuple[float, float, float | None]:
    if len(position) not in (2, 3) or not all(np.isfinite(float(v)) for v in position):
        raise CimInputError(f"{name}: position must be [lon, lat] or [lon, lat, height]")
    x, y = model.to_xy(float(position[0]), float(position[1]))
    return float(x[0]), float(y[0]), float(position[2]) if len(position) == 3 else None


def _place(local: np.ndarray, model: SurfaceModel, position: Sequence[float], rotation: float, name: str) -> np.ndarray:
    """Local east/north/up metres (origin at 0) → the model's CRS at ``position``, turned
    ``rotation`` degrees clockwise from (true) north; on the ground unless a height is given."""
    x, y, h = _position_xy(model, position, name)
    # clockwise from true north, and true north is model.true_north clockwise from grid north
    theta = np.radians(-(rotation + model.true_north))
    cos, sin = np.cos(theta), np.sin(theta)
    e, n, u = local[:, 0], local[:, 1], local[:, 2]
    gx, gy = x + e * cos - n * sin, y + e * sin + n * cos
    if h is None:
        ground = model.ground(gx, gy)
        here = model.ground(np.array([x]), np.array([y]))
        lowest = float(np.nanmin(ground)) if np.isfinite(ground).any() else float(here[0])
        if not np.isfinite(lowest):
            raise CimInputError(f"{name}: position lies outside the city's surface model")
        h = lowest - float(u.min())
    return np.column_stack([gx, gy, u + h])


def gltf_triangles(data: bytes, name: str, model: SurfaceModel, *, position: Sequence[float], rotation: float = 0.0) -> np.ndarray:
    """The triangles of a glTF/GLB file placed at ``position`` (see the module notes)."""
    import trimesh

    suffix = Path(name).suffix.lower().lstrip(".")
    try:
        scene: Any = trimesh.load(io.BytesIO(data), file_type=suffix, force="scene")
        meshes = [m.apply_transform(np.asarray(t)) for m, t in ((scene.geometry[g].copy(), scene.graph[n][0]) for n, g in _nodes(scene))]
    except CimError:
        raise
    except Exception as exc:  # trimesh raises many types for a bad file
        raise CimInputError(f"{name}: not a readable glTF model ({type(exc).__name__}: {exc})") from None
    parts = [np.asarray(m.vertices, dtype=np.float64)[np.asarray(m.faces, dtype=np.int64)] for m in meshes if len(getattr(m, "faces", ()))]
    if not parts:
        raise CimInputError(f"{name}: the glTF model has no triangles")
    tri = np.concatenate(parts)
    # glTF is y-up, -z forward: east = x, north = -z, up = y
    local = np.stack([tri[..., 0], -tri[..., 2], tri[..., 1]], axis=-1).reshape(-1, 3)
    return _place(local, model, position, rotation, name).reshape(-1, 3, 3)


def _nodes(scene: object) -> list[tuple[str, str]]:
    graph = scene.graph  # type: ignore[attr-defined]
    return [(node, graph[node][1]) for node in graph.nodes_geometry]


def ifc_triangles(
    data: bytes,
    name: str,
    model: SurfaceModel,
    *,
    position: Sequence[float] | None = None,
    rotation: float = 0.0,
    placing: tuple[str | None, tuple[float, float, float] | None, float | None] | None = None,
) -> np.ndarray:
    """The triangles of an IFC file's elements, placed by its georeferencing (or ``position``):
    its envelope as seen from above (no windows, doors or furniture; walls without openings).
    ``placing`` is a BIM layer's ``(crs, origin, rotation)`` overrides, applied as the layer
    applies them (:func:`cim.layers.bim.placement.resolve_placement`)."""
    from cim.crs import from_lonlat, parse_crs, transformer
    from cim.kernels.frames import LocalFrame, ecef_to_geodetic
    from cim.layers.bim.placement import resolve_placement
    from cim.sources.ifc import (
        EXCLUDED_CLASSES,
        GeometryLog,
        GeometryOptions,
        IfcElementIndex,
        iter_element_geometry,
        open_ifc,
        read_georeference,
    )

    with tempfile.TemporaryDirectory(prefix="cim-proposal-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        try:
            f = open_ifc(path)
        except CimError as exc:
            raise CimInputError(f"{name}: not a readable IFC file ({exc})") from None
        lon0, lat0 = model.centre_lonlat
        frame = LocalFrame(lon0, lat0, model.median_ground)
        geo = read_georeference(f)
        try:
            crs, origin, turn = placing if placing is not None else (None, None, None)
            placement = resolve_placement(
                geo,
                frame,
                crs=crs if crs is not None else model.crs,
                origin=origin,
                rotation=turn,
                require_georef=position is None and origin is None,
                name=name,
            )
        except CimError as exc:
            raise CimInputError(str(exc)) from None
        options = GeometryOptions(threads=1, element_timeout=60.0, max_voids=1, exclude=(*EXCLUDED_CLASSES, *_NOT_ENVELOPE))
        log = GeometryLog()
        index = IfcElementIndex(f)
        parts = []
        for element in iter_element_geometry(path, index.body_candidates(options.exclude), options, log, file=f):
            if len(element.triangles):
                parts.append(np.asarray(element.vertices, dtype=np.float64)[np.asarray(element.triangles, dtype=np.int64)])
    if not parts:
        raise CimInputError(f"{name}: no element of the IFC model has geometry")
    world = np.concatenate(parts).reshape(-1, 3)
    if position is not None:
        local = geo.engineering(world)
        return _place(local, model, position, rotation, name).reshape(-1, 3, 3)
    if placement.crs is not None:
        enh = placement.map_coords(world)
        if not placement.crs.equals(model.crs):
            t = transformer(parse_crs(placement.crs), model.crs)
            x, y = t.transform(enh[:, 0], enh[:, 1])
            enh = np.column_stack([x, y, enh[:, 2]])
        return enh.reshape(-1, 3, 3)
    # placed without a CRS (IfcSite latitude/longitude): through the city frame
    ecef = frame.to_ecef(placement.enu(world))
    lon, lat, h = ecef_to_geodetic(ecef)
    x, y = from_lonlat(lon, lat, model.crs)
    return np.column_stack([x, y, h]).reshape(-1, 3, 3)


def mesh_footprint(triangles: np.ndarray, res: float) -> shapely.Geometry:
    """The plan of a mesh: the union of its triangles seen from above (those seen edge-on
    dropped), cleaned of slivers narrower than a hundredth of ``res``; a Polygon or MultiPolygon.

    Raises
    ------
    CimInputError
        When the mesh covers no area from above.
    """
    tri = np.asarray(triangles, dtype=np.float64)
    xy = tri[:, :, :2]
    u, v = xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0]
    area = 0.5 * np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])
    keep = area > 1e-6
    if not keep.any():
        raise CimInputError("the model covers no area seen from above")
    rings = np.concatenate([xy[keep], xy[keep][:, :1]], axis=1)
    polys = shapely.polygons(rings)
    plan = shapely.union_all(shapely.make_valid(polys), grid_size=res * 1e-3)
    plan = shapely.buffer(shapely.buffer(plan, res * 0.01), -res * 0.01)
    parts = [g for g in shapely.get_parts(plan) if isinstance(g, shapely.Polygon) and g.area > 0]
    if not parts:
        raise CimInputError("the model covers no area seen from above")
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def burn_meshes(model: SurfaceModel, meshes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Put models in ``model``'s DSM by their meshes, in place: over each mesh's window, the
    flat roofs of the prisms it stands for (those whose footprint it covers by more than half)
    are taken off, and each cell gets the highest triangle over its centre (or keeps the
    ground). The prisms stay (their ids, plan and top for the exact ray tests and the height
    limit); a cell the mesh covers beyond them is owned by the first of them.

    Parameters
    ----------
    meshes : (m, 3, 3) float triangles in the model's CRS, one array a model

    Returns
    -------
    the prisms each mesh stands for, (k,) int64 each
    """
    from cim.kernels.trimax import rasterise_triangles_max

    prisms = model.prisms
    stands_for = []
    for tri in meshes:
        plan = mesh_footprint(tri, model.res)
        rows = prisms.covered_by(plan)
        stands_for.append(rows)
        xy = tri.reshape(-1, 3)[:, :2]
        rs, cs = model.window((float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())))
        if rs.stop <= rs.start or cs.stop <= cs.start:
            continue
        z = rasterise_triangles_max(
            tri, model.x0 + cs.start * model.res, model.y0 - rs.start * model.res, model.res, (rs.stop - rs.start, cs.stop - cs.start)
        )
        dem = np.asarray(model.dem[rs, cs], dtype=np.float32)
        dsm = np.array(model.dsm[rs, cs], dtype=np.float32)
        owner = np.array(model.owner[rs, cs], dtype=np.int32)
        theirs = np.isin(owner, rows)
        dsm[theirs] = dem[theirs]
        owner[theirs] = -1
        hit = np.isfinite(z) & (np.isnan(dsm) | (z >= dsm) | theirs)
        dsm[hit] = np.fmax(dem[hit], z[hit])
        if len(rows):
            owner[hit] = rows[0]
        model.dsm[rs, cs] = dsm
        model.owner[rs, cs] = owner
    model.meshed = np.unique(np.concatenate([np.asarray(model.meshed, dtype=np.int64), *stands_for])).astype(np.int64)
    for cached in ("blocks", "sight_surface"):  # they follow the DSM
        model.__dict__.pop(cached, None)
    return stands_for
