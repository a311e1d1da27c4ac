"""The BIM layer: IFC models → georeferenced 3D Tiles with per-element metadata and LODs.

Each model becomes its own tileset (``models/<name>/tileset.json``), joined under the layer's
root, whose transform is the city frame's ENU→ECEF matrix. Inside a model (refine REPLACE):

1. the **exterior** tile: roofs, slabs, curtain walls, elements marked ``IsExternal``, and for
   elements that say nothing, those on the model's outer boundary; geometric error = the size
   (bounding-box diagonal) of the largest element it leaves out;
2. **storey** tiles (each storey cut under a triangle budget): the storey's building fabric,
   leaving out spaces, furniture, MEP and elements under ``min_storey_size``; error = the
   largest of those it leaves out;
3. **detail** tiles: every element of the storey part; error 0.

Every vertex carries its element's feature id into an ``EXT_structural_metadata`` table of the
element's attributes (see :meth:`cim.sources.ifc.IfcElementIndex.attributes`) plus ``Model``
and ``cim_level`` (5 for spaces, 6 for components). Transparent materials (glazing) go to a
second primitive with ``alphaMode: BLEND``.

Geometry streams from the kernel element by element into a spool on disk (float32 relative to
the model's anchor), so a model's meshes are never all in memory; tiles read back their elements.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from cim.crs import crs_label, from_lonlat, parse_crs, to_lonlat
from cim.errors import CimCRSError, CimInputError
from cim.formats.glb import FeatureColumns, PropertyTable
from cim.formats.glb_multi import FeaturePrimitive, encode_feature_primitives
from cim.formats.tileset import box_from_bounds, enu_to_gltf, tileset_document, transform_list
from cim.kernels.frames import LocalFrame, ecef_to_geodetic, geodetic_to_ecef
from cim.kernels.mapconv import enu_rotation_about_up, helmert_2d
from cim.kernels.mesh import chunk_by_budget, range_index, split_vertices_by_material, unit_vectors, vertex_normals
from cim.layers.base import LayerResult, Progress
from cim.searchindex import SearchRows
from cim.sources.ifc import (
    ElementGeometry,
    GeometryLog,
    GeometryOptions,
    IfcElementIndex,
    IfcGeoreference,
    GeometryStream,
    open_ifc,
    read_georeference,
)
from cim.store import TileStore, build_key, file_fingerprint

log = logging.getLogger("cim.bim")

#: always in the exterior tile (slab edges and roofs make the silhouette)
ENVELOPE_CLASSES = ("IfcRoof", "IfcSlab", "IfcCurtainWall")
#: never before the detail level: volumes, furniture, services, small parts
DETAIL_CLASSES = (
    "IfcSpace", "IfcFurnishingElement", "IfcDistributionElement", "IfcDiscreteAccessory", "IfcFastener",
    "IfcMechanicalFastener", "IfcTransportElement", "IfcBuildingElementPart", "IfcVirtualElement",
)
#: the attribute names viewers group and filter BIM elements by
VIEWER_PROPERTIES = {"class": "IfcClass", "storey": "Storey", "id": "GlobalId", "name": "Name", "type": "Type", "model": "Model"}


@dataclass
class BimOptions:
    """How BIM models are tiled.

    Attributes
    ----------
    geometry : kernel options (threads, per-element timeout, max voids, kernel)
    max_triangles : most triangles in one storey or detail tile
    min_storey_size : elements smaller than this (m, box diagonal) wait for the detail tiles
    max_properties : most property-set columns per model (the most common first)
    workers : threads encoding tiles (default: the number of cores)
    """

    geometry: GeometryOptions = field(default_factory=GeometryOptions)
    max_triangles: int = 300_000
    min_storey_size: float = 0.5
    max_properties: int = 256
    workers: int | None = None


# -- placement -------------------------------------------------------------------------------


@dataclass
class ModelPlacement:
    """How a model's world metres (as the kernel gives them) reach the city's ENU frame."""

    method: str
    frame: LocalFrame
    geo: IfcGeoreference
    crs: object | None = None  # pyproj CRS of map coordinates, when placed through one
    origin: tuple[float, float, float] | None = None  # an override, in crs units (or lon, lat, h)
    rotation: float = 0.0  # radians, east → model +X, counter-clockwise
    notes: list[str] = field(default_factory=list)

    def map_coords(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) world metres → (n, 3) map coordinates in the CRS's units (placements through
        a CRS only)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        unit = _crs_unit(self.crs)
        if self.origin is None:
            enh = dataclasses.replace(self.geo, rotation=self.rotation).to_map(xyz)
        else:
            o = (self.origin[0] * unit, self.origin[1] * unit, self.origin[2] * unit)
            enh = helmert_2d(self.geo.engineering(xyz), o, self.rotation)
        return enh / np.array([unit, unit, 1.0])

    def enu(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) world metres → (n, 3) float64 ENU metres of the city frame."""
        xyz = np.asarray(xyz, dtype=np.float64)
        if len(xyz) == 0:
            return np.zeros((0, 3))
        geo = self.geo
        if self.crs is not None:
            enh = self.map_coords(xyz)
            lon, lat = to_lonlat(enh[:, 0], enh[:, 1], self.crs)
            return self.frame.from_ecef(geodetic_to_ecef(lon, lat, enh[:, 2]))
        local = geo.engineering(xyz)
        if self.method == "IfcSite":
            local = local - np.asarray(geo.site_origin)
        local = local @ enu_rotation_about_up(self.rotation).T
        if self.method == "frame origin":
            return local
        lon, lat, h = (self.origin if self.origin is not None else (geo.longitude, geo.latitude, geo.elevation))
        return self.frame.from_ecef(LocalFrame(lon, lat, h).to_ecef(local))

    def normal_matrix(self, anchor: np.ndarray) -> np.ndarray:
        """(3, 3) matrix taking world normals to ENU normals near ``anchor`` (world metres):
        the inverse transpose of the placement's Jacobian there."""
        pts = np.asarray(anchor, dtype=np.float64)[None, :] + np.vstack([np.zeros(3), np.eye(3)])
        e = self.enu(pts)
        jac = (e[1:] - e[0]).T
        return np.linalg.inv(jac).T

    def describe(self) -> dict:
        d = {"method": self.method, "rotation_deg": round(float(np.degrees(self.rotation)), 9), "file": self.geo.to_dict()}
        if self.crs is not None:
            d["crs"] = crs_label(self.crs)
        if self.origin is not None:
            d["origin"] = list(self.origin)
        return d


def _crs_unit(crs) -> float:
    axis = crs.axis_info[0] if crs.axis_info else None
    return float(axis.unit_conversion_factor) if axis is not None and axis.unit_conversion_factor else 1.0


def resolve_placement(
    geo: IfcGeoreference,
    frame: LocalFrame,
    *,
    crs: object = None,
    origin: tuple[float, float, float] | None = None,
    rotation: float | None = None,
    require_georef: bool = False,
    name: str = "model",
) -> ModelPlacement:
    """Decide how a model is placed: the file's georeference, with overrides.

    Parameters
    ----------
    geo : what the file says (:func:`cim.sources.ifc.read_georeference`)
    frame : the city frame
    crs : the city's CRS: the CRS of ``origin``, and of the file's map conversion when the file
        names none (or one pyproj does not know). A CRS the file names wins over it.
    origin : where the model's local origin (IFC world 0, 0, 0) goes: (E, N, H) in ``crs``, or
        (lon°, lat°, h) when ``crs`` is None. With it the model is placed rigidly (no scale).
    rotation : degrees, counter-clockwise from east (grid east with a CRS) to the model's +X
    require_georef : raise when there is nothing to place the model by (standalone conversion)
    """
    theta = None if rotation is None else float(np.radians(rotation))
    city_crs = parse_crs(crs, what=f"{name}: crs") if crs is not None else None
    notes = list(geo.notes)
    if origin is not None:
        origin = tuple(float(v) for v in origin)
        if len(origin) != 3:
            raise CimInputError(f"{name}: origin needs three numbers (E, N, H or lon, lat, h)")
        base = theta if theta is not None else geo.rotation if geo.kind != "none" else 0.0
        if city_crs is not None:
            _require_projected(city_crs, name)
            return ModelPlacement("origin override", frame, geo, city_crs, origin, base, notes)
        return ModelPlacement("origin override (lon, lat, h)", frame, geo, None, origin, base, notes)
    if geo.has_map_conversion:
        file_crs = None
        if geo.crs_name:
            try:
                file_crs = parse_crs(geo.crs_name, what=f"{name}: IfcProjectedCRS")
            except CimCRSError:
                notes.append(f"the file's CRS {geo.crs_name!r} is unknown to pyproj")
        if file_crs is None and city_crs is None:
            raise CimCRSError(f"{name}: the map conversion names no usable CRS ({geo.crs_name!r}); give crs (--crs)")
        use = file_crs or city_crs
        if file_crs is None:
            notes.append(f"map conversion read in the city CRS {crs_label(city_crs)}")
        elif city_crs is not None and not file_crs.equals(city_crs):
            notes.append(f"the model's CRS {crs_label(file_crs)} differs from the city's {crs_label(city_crs)}; used the model's")
        _require_projected(use, name)
        return ModelPlacement(geo.kind, frame, geo, use, None, theta if theta is not None else geo.rotation, notes)
    if geo.kind == "IfcSite":
        return ModelPlacement("IfcSite", frame, geo, None, None, theta if theta is not None else geo.rotation, notes)
    if require_georef:
        raise CimInputError(
            f"{name}: no georeference (no IfcMapConversion, ePSet_MapConversion or IfcSite RefLatitude/RefLongitude); "
            "--origin is required (E,N,H in --crs, or lon,lat,h without --crs)"
        )
    notes.append("no georeference in the file: placed at the city origin (give origin/crs to place it)")
    return ModelPlacement("frame origin", frame, geo, None, None, theta or 0.0, notes)


def _require_projected(crs, name: str) -> None:
    if crs.is_geographic:
        raise CimCRSError(f"{name}: {crs_label(crs)} is geographic; a map conversion needs a projected CRS")


def frame_for_model(path: str | Path, *, crs: object = None, origin: tuple[float, float, float] | None = None, rotation: float | None = None) -> LocalFrame:
    """An ENU frame at a model's local origin, for converting one model on its own
    (``cim convert bim``); raises CimInputError when the model cannot be placed."""
    path = Path(path)
    geo = read_georeference(open_ifc(path))
    probe = LocalFrame(0.0, 0.0, 0.0)
    placement = resolve_placement(geo, probe, crs=crs, origin=origin, rotation=rotation, require_georef=True, name=path.name)
    lon, lat, h = ecef_to_geodetic(probe.to_ecef(placement.enu(np.zeros((1, 3)))))
    return LocalFrame(float(lon[0]), float(lat[0]), float(h[0]))


# -- the spool: element meshes on disk ---------------------------------------------------------


class _MeshSpool:
    """Per-element meshes appended to flat files, read back (memory-mapped) per tile."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files = {k: open(folder / f"{k}.bin", "wb") for k in ("pos", "nrm", "rgba", "tri")}
        self.v_start: list[int] = []
        self.t_start: list[int] = []
        self.v_count: list[int] = []
        self.t_count: list[int] = []
        self._nv = self._nt = 0
        self.maps: dict[str, np.ndarray] = {}

    def append(self, pos: np.ndarray, nrm: np.ndarray, rgba: np.ndarray, tri: np.ndarray) -> None:
        self._files["pos"].write(np.ascontiguousarray(pos, dtype=np.float32).tobytes())
        self._files["nrm"].write(np.ascontiguousarray(nrm, dtype=np.float32).tobytes())
        self._files["rgba"].write(np.ascontiguousarray(rgba, dtype=np.uint8).tobytes())
        self._files["tri"].write(np.ascontiguousarray(tri, dtype=np.uint32).tobytes())
        self.v_start.append(self._nv)
        self.t_start.append(self._nt)
        self.v_count.append(len(pos))
        self.t_count.append(len(tri))
        self._nv += len(pos)
        self._nt += len(tri)

    def finish(self) -> None:
        shapes = {"pos": (np.float32, 3), "nrm": (np.float32, 3), "rgba": (np.uint8, 4), "tri": (np.uint32, 3)}
        for k, f in self._files.items():
            f.close()
            dtype, width = shapes[k]
            n = self._nv if k != "tri" else self._nt
            self.maps[k] = np.memmap(self.folder / f"{k}.bin", dtype=dtype, mode="r", shape=(n, width)) if n else np.zeros((0, width), dtype=dtype)
        self.v_start_a, self.v_count_a = np.array(self.v_start, dtype=np.int64), np.array(self.v_count, dtype=np.int64)
        self.t_start_a, self.t_count_a = np.array(self.t_start, dtype=np.int64), np.array(self.t_count, dtype=np.int64)

    def gather(self, elements: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Positions (float32, anchor-relative), normals, colours, triangles (indices into the
        gathered vertices) and each vertex's row in ``elements``."""
        vc, tc = self.v_count_a[elements], self.t_count_a[elements]
        vidx = range_index(self.v_start_a[elements], vc)
        tidx = range_index(self.t_start_a[elements], tc)
        base = np.zeros(len(elements), dtype=np.int64)
        np.cumsum(vc[:-1], out=base[1:])
        tri = self.maps["tri"][tidx].astype(np.int64) + np.repeat(base, tc)[:, None]
        rows = np.repeat(np.arange(len(elements)), vc)
        return self.maps["pos"][vidx], self.maps["nrm"][vidx], self.maps["rgba"][vidx], tri, rows


# -- one model ---------------------------------------------------------------------------------


@dataclass
class _Model:
    """A model's elements after streaming: geometry records and what tiling needs."""

    name: str
    source: Path
    placement: ModelPlacement
    anchor: np.ndarray  # (3,) ENU of the spool's origin
    ids: list[int] = field(default_factory=list)
    lo: list[np.ndarray] = field(default_factory=list)  # ENU boxes
    hi: list[np.ndarray] = field(default_factory=list)
    wlo: list[np.ndarray] = field(default_factory=list)  # world (model axes) boxes
    whi: list[np.ndarray] = field(default_factory=list)
    hull: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # world (model axes) x, y


def _ingest(batch: list[ElementGeometry], model: _Model, spool: _MeshSpool, normal_m: np.ndarray) -> None:
    """Place a batch of element meshes in the city frame and spool them."""
    counts = [len(g.vertices) for g in batch]
    enu = model.placement.enu(np.concatenate([g.vertices for g in batch]))
    starts = np.concatenate([[0], np.cumsum(counts)])
    hull_pts = [model.hull]
    for g, a, b in zip(batch, starts[:-1], starts[1:]):
        pos = enu[a:b]
        if len(g.normals) == len(g.vertices):
            nrm = g.normals @ normal_m.T
        else:
            nrm = vertex_normals(pos, g.triangles)
        source, tri, vmat = split_vertices_by_material(g.triangles, g.tri_material, len(pos))
        rgba = np.clip(np.round(g.materials[vmat] * 255.0), 0, 255).astype(np.uint8)
        p = pos[source]
        spool.append(p - model.anchor, unit_vectors(nrm[source]), rgba, tri)
        model.ids.append(g.id)
        model.lo.append(p.min(axis=0))
        model.hi.append(p.max(axis=0))
        model.wlo.append(g.vertices.min(axis=0))
        model.whi.append(g.vertices.max(axis=0))
        hull_pts.append(g.vertices[:, :2])
    pts = np.concatenate(hull_pts)
    hull = shapely.convex_hull(shapely.multipoints(pts))
    model.hull = np.asarray(shapely.get_coordinates(hull))


@dataclass
class _Node:
    name: str
    elements: np.ndarray
    error: float
    children: list["_Node"] = field(default_factory=list)


def plan_model_tiles(
    sizes: np.ndarray,
    triangles: np.ndarray,
    centres: np.ndarray,
    storey: np.ndarray,
    storey_order: list[int],
    exterior: np.ndarray,
    detail: np.ndarray,
    *,
    max_triangles: int,
    min_storey_size: float,
) -> _Node:
    """The tile tree of one model: exterior → storey parts → detail (see the module notes).

    Parameters
    ----------
    sizes : (n,) float, element box diagonals (m)
    triangles : (n,) int, element triangle counts
    centres : (n, 3) float, element box centres
    storey : (n,) int, a storey key per element
    storey_order : storey keys from the lowest storey up
    exterior, detail : (n,) bool, the element's level (see :data:`ENVELOPE_CLASSES`, :data:`DETAIL_CLASSES`)
    """
    n = len(sizes)
    ext = np.flatnonzero(exterior)
    if len(ext) == 0:
        ext = np.flatnonzero(~detail) if (~detail).any() else np.arange(n)
    # largest first under the budget: the silhouette survives, small parts wait
    ext = ext[np.argsort(-sizes[ext], kind="stable")]
    cum = np.cumsum(triangles[ext])
    keep = ext[: max(1, int(np.searchsorted(cum, max_triangles, side="right")))]
    in_root = np.zeros(n, dtype=bool)
    in_root[keep] = True
    root = _Node("exterior", np.sort(keep), float(sizes[~in_root].max()) if (~in_root).any() else 0.0)
    if root.error == 0.0:
        return root
    fabric = exterior | (~detail & (sizes >= min_storey_size))
    for level, key in enumerate(storey_order):
        members = np.flatnonzero(storey == key)
        groups = chunk_by_budget(centres[members], triangles[members], max_triangles)
        for k, g in enumerate(groups):
            g = members[g]
            kept = g[fabric[g]]
            name = f"s{level:02d}-{k}"
            if len(kept) == 0 or len(kept) == len(g):
                root.children.append(_Node(name, g, 0.0))
                continue
            omitted = g[~fabric[g]]
            node = _Node(name, kept, float(sizes[omitted].max()))
            node.children.append(_Node(name + "-detail", g, 0.0))
            root.children.append(node)
    return root


def _exterior_flags(elements: list, index: IfcElementIndex, wlo: np.ndarray, whi: np.ndarray, detail: np.ndarray) -> np.ndarray:
    """Which elements make the far view (see :data:`ENVELOPE_CLASSES`).

    Elements that say nothing about ``IsExternal`` count as exterior when they are not strictly
    inside the walls' box (model axes): on it, above it or beyond it.
    """
    n = len(elements)
    flags = np.zeros(n, dtype=bool)
    walls = np.array([el.is_a("IfcWall") or el.is_a("IfcCurtainWall") for el in elements]) & ~detail
    ref = walls if walls.any() else ~detail if (~detail).any() else np.ones(n, dtype=bool)
    lo, hi = wlo[ref].min(axis=0), whi[ref].max(axis=0)
    tol = max(0.3, 0.01 * float(np.max(hi[:2] - lo[:2])))
    inside = (wlo[:, 0] > lo[0] + tol) & (wlo[:, 1] > lo[1] + tol) & (whi[:, 0] < hi[0] - tol) & (whi[:, 1] < hi[1] - tol) & (whi[:, 2] < hi[2] - tol)
    boundary = ~inside
    by_id = {el.id(): i for i, el in enumerate(elements)}
    for i, el in enumerate(elements):
        if any(el.is_a(c) for c in ENVELOPE_CLASSES):
            flags[i] = True
            continue
        ext = index.is_external(el)
        if ext is not None:
            flags[i] = ext
        elif not detail[i]:
            flags[i] = bool(boundary[i])
    # parts follow their whole (curtain-wall plates, stair flights)
    for i, el in enumerate(elements):
        whole = index.parent.get(el.id())
        if whole is not None and not flags[i] and not detail[i]:
            j = by_id.get(whole.id())
            if (j is not None and flags[j]) or (j is None and (any(whole.is_a(c) for c in ENVELOPE_CLASSES) or index.is_external(whole))):
                flags[i] = True
    return flags


def _encode_tile(node: _Node, spool: _MeshSpool, model: _Model, columns: FeatureColumns) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One tile's GLB and its content bounds (ENU)."""
    els = node.elements
    pos32, nrm, rgba, tri, rows = spool.gather(els)
    pos = pos32.astype(np.float64) + model.anchor
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    centre = (lo + hi) / 2.0
    rel = enu_to_gltf(pos - centre).astype(np.float32)
    normals = enu_to_gltf(np.asarray(nrm))
    transparent = rgba[tri[:, 0], 3] < 255
    prims = []
    for mask, mode in ((~transparent, "OPAQUE"), (transparent, "BLEND")):
        if not mask.any():
            continue
        t = tri[mask]
        keep = np.zeros(len(rel), dtype=bool)
        keep[t.ravel()] = True
        used = np.flatnonzero(keep)
        remap = np.cumsum(keep, dtype=np.int64) - 1
        prims.append(FeaturePrimitive(rel[used], normals[used], rgba[used], remap[t].astype(np.uint32), rows[used], mode, mode.lower()))
    table: PropertyTable = columns.take(els, "element", "A BIM element (IFC product) with its attributes and property sets")
    # a STRING column empty in every row of the tile would need a zero-length buffer view,
    # which glTF forbids: leave such columns out of this tile's table (readers see no value)
    table.columns = [c for c in table.columns if c.offsets is None or c.offsets[-1] > 0]
    return encode_feature_primitives(prims, table, enu_to_gltf(centre)), lo, hi


def _model_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("._") or "model"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def _convert_model(
    stream: GeometryStream,
    path: Path,
    name: str,
    frame: LocalFrame,
    store: TileStore,
    opts: BimOptions,
    *,
    crs,
    origin,
    rotation,
    require_georef: bool,
    progress: Progress | None,
    geometry_done=None,
) -> dict:
    """Stream, spool, plan and write one model; returns its summary (kept in its tileset).

    ``stream`` is already running: its kernel process parses the file while this one reads
    attributes and georeference. ``geometry_done()`` is called when the geometry has arrived
    (the layer starts the next model's kernel then, behind this model's tiling).
    """
    f = open_ifc(path)
    geo = read_georeference(f)
    placement = resolve_placement(geo, frame, crs=crs, origin=origin, rotation=rotation, require_georef=require_georef, name=path.name)
    index = IfcElementIndex(f)
    expected = index.body_candidates(opts.geometry.exclude)
    placement.enu(np.zeros((1, 3)))  # build the CRS transformer while the kernel works
    glog = GeometryLog()
    warnings = [f"{path.name}: {n}" for n in placement.notes]
    heavy = [(el.GlobalId, el.is_a(), index.openings[i]) for i, el in ((i, f.by_id(i)) for i in expected) if index.openings[i] > opts.geometry.max_voids > 0]
    if heavy:
        warnings.append(f"{path.name}: {len(heavy)} element(s) with more than {opts.geometry.max_voids} openings drawn without them: " + "; ".join(f"{g} ({c}, {k} openings)" for g, c, k in heavy[:10]))

    # attributes of every candidate, read while the kernel works (the main thread mostly waits)
    candidates = sorted(expected)
    attr_pool = ThreadPoolExecutor(max_workers=1)
    attr_future = attr_pool.submit(index.attributes, [f.by_id(i) for i in candidates], max_properties=opts.max_properties)
    attr_pool.shutdown(wait=False)
    with tempfile.TemporaryDirectory(prefix="cim-bim-") as tmp:
        spool = _MeshSpool(Path(tmp))
        model: _Model | None = None
        normal_m = np.eye(3)
        batch: list[ElementGeometry] = []
        batch_vertices = 0
        done = 0
        for g in stream.elements(expected, glog):
            if model is None:
                anchor_world = g.vertices.mean(axis=0)
                model = _Model(name, path, placement, placement.enu(anchor_world[None, :])[0])
                normal_m = placement.normal_matrix(anchor_world)
            batch.append(g)
            batch_vertices += len(g.vertices)
            done += 1
            if batch_vertices >= 65536:
                _ingest(batch, model, spool, normal_m)
                batch, batch_vertices = [], 0
                if progress:
                    progress(f"{name}: geometry", done, len(expected))
        if batch:
            _ingest(batch, model, spool, normal_m)
        spool.finish()
        if geometry_done is not None:
            geometry_done()
        warnings += [f"{path.name}: {w}" for w in glog.warnings(opts.geometry.element_timeout)]
        if model is None:
            raise CimInputError(f"{path}: no element has geometry" + (f" ({warnings[-1]})" if warnings else ""))

        elements = [f.by_id(i) for i in model.ids]
        attrs = attr_future.result()
        row_of = {i: r for r, i in enumerate(candidates)}
        if all(i in row_of for i in model.ids):
            attrs = attrs.take(np.array([row_of[i] for i in model.ids], dtype=np.int64))
        else:  # the kernel drew elements the index did not expect: read them all again
            attrs = index.attributes(elements, max_properties=opts.max_properties)
        if attrs.dropped:
            warnings.append(f"{path.name}: {attrs.dropped} property column(s) beyond the {opts.max_properties} most common left out")
        n = len(elements)
        is_space = np.array([el.is_a("IfcSpace") for el in elements])
        attrs.columns["Model"] = np.full(n, name, dtype=object)
        attrs.types["Model"] = "STRING"
        attrs.columns["cim_level"] = np.where(is_space, 5, 6).astype(np.int64)
        attrs.types["cim_level"] = "INT32"
        columns = FeatureColumns.encode(attrs.columns, attrs.types)

        lo, hi = np.array(model.lo), np.array(model.hi)
        # what leaving an element out costs: its box diagonal; a space's faces lie on the walls
        # and slabs kept around it, so leaving it out changes the picture by its thinnest extent
        sizes = np.where(is_space, (hi - lo).min(axis=1), np.linalg.norm(hi - lo, axis=1))
        tri_counts = spool.t_count_a
        detail = np.array([any(el.is_a(c) for c in DETAIL_CLASSES) for el in elements])
        exterior = _exterior_flags(elements, index, np.array(model.wlo), np.array(model.whi), detail)
        storeys = [index.storey(el) for el in elements]
        keys = np.array([s.id() if s is not None else -1 for s in storeys])
        elev = {s.id(): index.storey_elevation(s) for s in storeys if s is not None}
        order = sorted(set(keys.tolist()), key=lambda k: (elev.get(k, -np.inf), k))  # unassigned (-1) first
        root = plan_model_tiles(sizes, tri_counts, (lo + hi) / 2.0, keys, order, exterior, detail,
                                max_triangles=opts.max_triangles, min_storey_size=opts.min_storey_size)

        nodes = _walk(root)
        bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def write(node: _Node) -> None:
            rel = f"models/{name}/tiles/{node.name}.glb"
            glb, blo, bhi = _encode_tile(node, spool, model, columns)
            store.write(rel, glb)
            bounds[node.name] = (blo, bhi)

        with ThreadPoolExecutor(max_workers=opts.workers or os.cpu_count() or 1) as pool:
            for i, _ in enumerate(pool.map(write, nodes)):
                if progress:
                    progress(f"{name}: tiles", i + 1, len(nodes))
        spool.maps.clear()

    tile, tlo, thi = _tile_json(root, bounds)
    diagonal = float(np.linalg.norm(thi - tlo))
    summary = {
        "model": name,
        "source": path.name,
        "schema": f.schema,
        "elements": n,
        "triangles": int(tri_counts.sum()),
        "tiles": len(nodes),
        "expected": len(expected),
        "failed": [list(x) for x in glog.failed],
        "timed_out": [list(x) for x in glog.timed_out],
        "empty": [list(x) for x in glog.empty],
        "placement": placement.describe(),
        "storeys": [_storey_label(f, k, elev) for k in order],
        "bounds_enu": [tlo.tolist(), thi.tolist()],
        "footprint": _footprint_coords(model, placement, crs),
        "schema_types": attrs.types,
        "warnings": warnings,
        "seconds": round(glog.seconds, 3),
        "kernel_peak_mb": round(glog.kernel_peak_mb, 1),
        "search": _search_payload(attrs, lo, hi),
    }
    doc = tileset_document(tile, max(diagonal, 1.0), extras={"cim": {k: v for k, v in summary.items() if k != "search"}})
    store.write(f"models/{name}/tileset.json", _json_bytes(doc))
    store.write(f"models/{name}/search.json", _json_bytes(summary["search"], indent=None))
    return summary


def _storey_label(f, key: int, elev: dict) -> dict:
    if key == -1:
        return {"name": None, "elevation": None}
    s = f.by_id(key)
    return {"name": s.Name or s.LongName, "elevation": round(elev.get(key, 0.0), 3), "GlobalId": s.GlobalId}


def _search_payload(attrs, lo: np.ndarray, hi: np.ndarray) -> dict:
    """Element boxes and non-null attributes for the city's search index."""
    cols = attrs.columns
    props = []
    keys = list(cols)
    for row in range(len(lo)):
        p = {}
        for k in keys:
            v = cols[k][row]
            if isinstance(v, np.generic):
                v = v.item()
            if v is None or (isinstance(v, float) and v != v) or (k in attrs.present and not attrs.present[k][row]):
                continue
            p[k] = v
        props.append(p)
    return {"lo": lo.tolist(), "hi": hi.tolist(), "properties": props}


def _json_bytes(obj, indent: int | None = 1) -> bytes:
    return (json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False, separators=None if indent else (",", ":")) + "\n").encode("utf-8")


def _walk(node: _Node) -> list[_Node]:
    out = [node]
    for c in node.children:
        out += _walk(c)
    return out


def _tile_json(node: _Node, bounds: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    lo, hi = bounds[node.name]
    kids = []
    for c in node.children:
        cj, clo, chi = _tile_json(c, bounds)
        kids.append(cj)
        lo, hi = np.minimum(lo, clo), np.maximum(hi, chi)
    tile: dict = {
        "boundingVolume": {"box": box_from_bounds(lo, hi)},
        "geometricError": round(node.error, 3),
        "refine": "REPLACE",
        "content": {"uri": f"tiles/{node.name}.glb"},
    }
    if kids:
        tile["children"] = kids
    return tile, lo, hi


# -- the layer ---------------------------------------------------------------------------------


def build_bim_layer(
    sources: list[Path],
    out_dir: Path,
    frame: LocalFrame,
    *,
    crs: object = None,
    origin: tuple[float, float, float] | None = None,
    rotation: float | None = None,
    layer_id: str = "bim",
    progress: Progress | None = None,
    require_georef: bool = False,
    options: BimOptions | None = None,
) -> LayerResult:
    """Convert IFC models (IFC2x3, IFC4, IFC4X3) into one 3D Tiles layer in ``out_dir``.

    Writes ``out_dir/tileset.json`` (a root with one child per model, transform = the city
    frame), ``out_dir/models/<model>/tileset.json`` and its ``tiles/*.glb``.

    Parameters
    ----------
    sources : IFC files
    out_dir : the layer folder
    frame : the city's local frame
    crs : the city's CRS (footprints are given in it; see :func:`resolve_placement`)
    origin, rotation : placement overrides, applied to every model (see :func:`resolve_placement`)
    require_georef : raise CimInputError for a model with no georeference and no ``origin``
        (standalone conversion); otherwise such a model is placed at the frame origin, warned
    options : tiling and kernel options

    Returns
    -------
    LayerResult with ``extra["footprints"]``: ``[{"model", "wkt", "crs"}]``, each model's convex
    footprint in ``crs`` (lon/lat when None), for the buildings layer to drop the LOD1 building
    it replaces; ``extra["models"]``: per-model summaries (placement, counts, failures, storeys).
    """
    t0 = time.perf_counter()
    opts = options or BimOptions()
    out_dir = Path(out_dir)
    sources = [Path(s) for s in sources]
    if not sources:
        raise CimInputError(f"layer {layer_id}: no IFC source given")
    if crs is not None:
        parse_crs(crs, what=f"layer {layer_id}: crs")  # fail before any work
    key = build_key(
        "bim-1", [file_fingerprint(s) for s in sources], frame.to_dict(), str(crs), origin, rotation, require_georef,
        dataclasses.asdict(opts),
    )
    store = TileStore(out_dir, key)
    taken: set[str] = set()
    names = [_model_name(p, taken) for p in sources]
    by_name: dict[str, dict | None] = {}
    for name in names:  # models finished by an earlier run of the same build are read back
        finished = store.is_done(f"models/{name}/tileset.json") and store.is_done(f"models/{name}/search.json")
        by_name[name] = _load_summary(out_dir, name) if finished else None
    jobs = [(p, n) for p, n in zip(sources, names) if by_name[n] is None]
    # one kernel process at a time; the next starts when the current model's geometry is in
    streams: dict[int, GeometryStream] = {}

    def start(k: int) -> None:
        if k < len(jobs) and k not in streams:
            streams[k] = GeometryStream(jobs[k][0], opts.geometry)

    try:
        for k, (path, name) in enumerate(jobs):
            start(k)
            by_name[name] = _convert_model(streams[k], path, name, frame, store, opts, crs=crs, origin=origin, rotation=rotation,
                                           require_georef=require_georef, progress=progress, geometry_done=lambda k=k: start(k + 1))
            streams.pop(k).close()
    finally:
        for stream in streams.values():
            stream.close()
    summaries = [by_name[n] for n in names]

    children, los, his = [], [], []
    for s in summaries:
        lo, hi = np.array(s["bounds_enu"][0]), np.array(s["bounds_enu"][1])
        los.append(lo)
        his.append(hi)
        children.append({
            "boundingVolume": {"box": box_from_bounds(lo, hi)},
            "geometricError": round(float(np.linalg.norm(hi - lo)), 3),
            "refine": "REPLACE",
            "content": {"uri": f"models/{s['model']}/tileset.json"},
        })
    lo, hi = np.min(los, axis=0), np.max(his, axis=0)
    root = {
        "boundingVolume": {"box": box_from_bounds(lo, hi)},
        "geometricError": max(c["geometricError"] for c in children),
        "refine": "ADD",
        "transform": transform_list(frame.matrix()),
        "children": children,
    }
    store.finish("tileset.json", tileset_document(root, root["geometricError"]), content_dir="models")

    # bounds from each model's box corners (models may lie far apart)
    corners = np.array([[x, y, z] for a, b in zip(los, his) for x in (a[0], b[0]) for y in (a[1], b[1]) for z in (a[2], b[2])])
    lon, lat, h = ecef_to_geodetic(frame.to_ecef(corners))
    schema: dict[str, str] = {}
    for s in summaries:
        for k, t in s["schema_types"].items():
            schema[k] = t if schema.get(k, t) == t else "STRING"
    warnings = [w for s in summaries for w in s["warnings"]]
    failed = sum(len(s["failed"]) + len(s["timed_out"]) for s in summaries)
    result = LayerResult(
        id=layer_id,
        kind="bim",
        path=out_dir,
        count=sum(s["elements"] for s in summaries),
        tiles=sum(s["tiles"] for s in summaries),
        triangles=sum(s["triangles"] for s in summaries),
        bytes=store.size_on_disk(),
        bounds={"west": float(lon.min()), "south": float(lat.min()), "east": float(lon.max()), "north": float(lat.max()),
                "min_height": float(h.min()), "max_height": float(h.max())},
        schema=schema,
        seconds=time.perf_counter() - t0,
        resumed_tiles=store.resumed,
        skipped=failed,
        warnings=warnings,
        extra={
            "footprints": [_footprint(s) for s in summaries],
            "models": [_model_entry(s) for s in summaries],
            "viewer_properties": dict(VIEWER_PROPERTIES),
        },
    )
    result.search = _search_rows(layer_id, summaries, frame)
    for w in warnings:
        log.warning("%s", w)
    log.info("bim %s: %d models, %d elements, %d tiles, %d triangles, %.2f s", layer_id, len(summaries), result.count, result.tiles, result.triangles, result.seconds)
    return result


def _model_entry(s: dict) -> dict:
    """A model's entry in the manifest (failure lists capped: city.json stays small)."""
    out = {k: s.get(k) for k in ("model", "source", "schema", "elements", "expected", "triangles", "tiles", "placement", "storeys", "kernel_peak_mb")}
    for k in ("failed", "timed_out"):
        out[k] = s[k][:100]
    return out


def _load_summary(out_dir: Path, name: str) -> dict | None:
    try:
        doc = json.loads((out_dir / "models" / name / "tileset.json").read_text())
        summary = doc["extras"]["cim"]
        summary["search"] = json.loads((out_dir / "models" / name / "search.json").read_text())
        return summary
    except (OSError, KeyError, ValueError):
        return None


def _footprint_coords(model: _Model, placement: ModelPlacement, crs) -> dict:
    """The model's convex footprint in the city CRS (lon/lat without one)."""
    hull = np.asarray(model.hull, dtype=np.float64).reshape(-1, 2)
    world = np.hstack([hull, np.full((len(hull), 1), float(np.min(np.array(model.wlo)[:, 2])))])
    city = parse_crs(crs) if crs is not None else None
    if placement.crs is not None and (city is None or placement.crs.equals(city)):
        xy = placement.map_coords(world)[:, :2]  # no inverse projection needed
        label = crs_label(placement.crs)
    else:
        lon, lat, _ = ecef_to_geodetic(placement.frame.to_ecef(placement.enu(world)))
        if city is not None:
            xy = np.stack(from_lonlat(lon, lat, city), axis=1)
            label = crs_label(city)
        else:
            xy, label = np.stack([lon, lat], axis=1), "EPSG:4326"
    return {"xy": xy.tolist(), "crs": label}


def _footprint(summary: dict) -> dict:
    """``{"model", "wkt", "crs"}`` of a model's footprint."""
    fp = summary["footprint"]
    xy = np.asarray(fp["xy"], dtype=np.float64).reshape(-1, 2)
    geom = shapely.Polygon(xy) if len(xy) >= 4 else shapely.Point(xy[0]).buffer(0.5)
    return {"model": summary["model"], "wkt": shapely.to_wkt(geom, rounding_precision=3 if fp["crs"] != "EPSG:4326" else 9), "crs": fp["crs"]}


def _search_rows(layer_id: str, summaries: list[dict], frame: LocalFrame) -> SearchRows | None:
    los = [np.asarray(s["search"]["lo"]).reshape(-1, 3) for s in summaries]
    his = [np.asarray(s["search"]["hi"]).reshape(-1, 3) for s in summaries]
    props = [p for s in summaries for p in s["search"]["properties"]]
    if not props:
        return None
    lo, hi = np.concatenate(los), np.concatenate(his)
    n = len(lo)
    lon, lat, h = ecef_to_geodetic(frame.to_ecef(np.concatenate([lo, hi, (lo + hi) / 2.0])))
    ids = np.array([p.get("GlobalId", "") for p in props], dtype=object)
    titles = np.array([p.get("Name") or f"{p.get('IfcClass', 'element')} {p.get('GlobalId', '')}" for p in props], dtype=object)
    texts = np.array([" ".join(str(p[k]) for k in ("IfcClass", "Type", "Storey", "Material", "Model", "ObjectType") if p.get(k)) for p in props], dtype=object)
    return SearchRows(
        layer_id, ids, titles, texts, lon[2 * n :], lat[2 * n :],
        np.minimum(lon[:n], lon[n : 2 * n]), np.minimum(lat[:n], lat[n : 2 * n]),
        np.maximum(lon[:n], lon[n : 2 * n]), np.maximum(lat[:n], lat[n : 2 * n]),
        np.minimum(h[:n], h[n : 2 * n]), np.maximum(h[:n], h[n : 2 * n]), props,
    )
