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

Geometry streams from the kernel element by element into a spool (float32 relative to the
model's anchor; in memory up to 64 MB, about 2.5 M vertices, then on disk, so a large model's
meshes are never all in memory); tiles read back their elements.

Where the time goes (2-core machines): the geometry process (ifcopenshell's iterator, forked
after this process has parsed the file; see :mod:`cim.sources.ifc_geometry`) is the critical
path. This process consumes its meshes from the first one on, while a helper thread reads the
georeference, the index and the attributes; what is left when the last mesh arrives (the tile
plan, the GLBs, the tilesets) takes 0.01–0.5 s. Measured against ifcopenshell's own iterator
over the same file in ``benchmarks/bench_bim.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from cim.crs import crs_label, parse_crs, to_lonlat
from cim.errors import CimCRSError, CimInputError
from cim.formats.glb import NO_DATA, EncodedColumn, FeatureColumns, PropertyTable, encode_column
from cim.formats.glb_multi import FeaturePrimitive, encode_feature_primitives
from cim.formats.tileset import box_from_bounds, enu_to_gltf, tileset_document, transform_list
from cim.kernels.frames import LocalFrame, ecef_to_geodetic, geodetic_to_ecef
from cim.kernels.mapconv import enu_rotation_about_up, helmert_2d
from cim.kernels.mesh import chunk_by_budget, range_index, split_vertices_by_material, unit_vectors, vertex_normals
from cim.layers.base import LayerResult, Progress
from cim.searchindex import SearchRows
from cim.sources.ifc import (
    ElementAttributes,
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
            lon, lat = map_to_lonlat(enh[:, 0], enh[:, 1], self.crs)
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


#: datums whose geographic coordinates PROJ takes unchanged as WGS 84's: WGS 84 itself, and
#: CGCS2000, the datum of Chinese surveying, to which PROJ 9 knows no transformation: it applies
#: a null ("ballpark") offset
WGS84_LIKE_DATUMS = frozenset({"World Geodetic System 1984", "World Geodetic System 1984 ensemble", "China 2000"})


def map_to_lonlat(x: np.ndarray, y: np.ndarray, crs) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates in the projected ``crs`` → lon/lat degrees, as :func:`cim.crs.to_lonlat`.

    On a datum of :data:`WGS84_LIKE_DATUMS` the inverse projection alone gives the same numbers
    (``tests/bim/test_georef.py`` checks it), and pyproj builds that transformer in 1 ms, where
    the general one searches PROJ's database for datum transformations (0.1–0.2 s of CPU here, in
    each process and each thread that uses it): on a 100-element model that search was more
    than all the rest this process does while the geometry process works.
    """
    geodetic = crs.geodetic_crs
    if not crs.is_projected or geodetic is None or geodetic.datum is None or geodetic.datum.name not in WGS84_LIKE_DATUMS:
        return to_lonlat(x, y, crs)
    lon, lat = _inverse_projection(crs.to_wkt()).transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


@functools.lru_cache(maxsize=16)
def _inverse_projection(wkt: str):
    from pyproj import CRS, Transformer

    crs = CRS.from_wkt(wkt)
    return Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)


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


# -- the spool: element meshes in memory, on disk when large ------------------------------------


class _MeshSpool:
    """Per-element meshes appended to flat buffers, read back per tile.

    The buffers stay in memory up to ``spill_bytes`` (24 bytes a vertex and 12 a triangle: a
    4.5 MB IFC of 1,300 elements needs 7 MB), then move to temporary files that are memory-mapped
    for reading, so a model's meshes are never all in memory. Small models thus touch no file:
    creating the temporary folder and four files cost 15–25 ms here, a third of converting a
    one-element model.
    """

    KINDS = {"pos": (np.float32, 3), "nrm": (np.float32, 3), "rgba": (np.uint8, 4), "tri": (np.uint32, 3)}

    def __init__(self, spill_bytes: int = 64 << 20) -> None:
        self.spill_bytes = spill_bytes
        self._buffers: dict[str, bytearray] = {k: bytearray() for k in self.KINDS}
        self._files: dict | None = None
        self.folder: Path | None = None
        self.v_start: list[int] = []
        self.t_start: list[int] = []
        self.v_count: list[int] = []
        self.t_count: list[int] = []
        self._nv = self._nt = 0
        self._bytes = 0
        self.maps: dict[str, np.ndarray] = {}

    def append(self, pos: np.ndarray, nrm: np.ndarray, rgba: np.ndarray, tri: np.ndarray) -> None:
        """Append one element: (v, 3) positions and normals, (v, 4) colours, (t, 3) triangles."""
        self.extend(pos, nrm, rgba, tri, np.array([len(pos)]), np.array([len(tri)]))

    def extend(self, pos: np.ndarray, nrm: np.ndarray, rgba: np.ndarray, tri: np.ndarray, v_counts: np.ndarray, t_counts: np.ndarray) -> None:
        """Append several elements at once: their buffers concatenated, ``v_counts`` / ``t_counts``
        vertices and triangles each (triangles index each element's own vertices)."""
        parts = {"pos": pos, "nrm": nrm, "rgba": rgba, "tri": tri}
        for k, (dtype, _) in self.KINDS.items():
            data = np.ascontiguousarray(parts[k], dtype=dtype).data
            self._bytes += data.nbytes
            if self._files is None:
                self._buffers[k] += data
            else:
                self._files[k].write(data)
        if self._files is None and self._bytes > self.spill_bytes:
            self._spill()
        v_counts, t_counts = np.asarray(v_counts, dtype=np.int64), np.asarray(t_counts, dtype=np.int64)
        self.v_start += (self._nv + np.cumsum(v_counts) - v_counts).tolist()
        self.t_start += (self._nt + np.cumsum(t_counts) - t_counts).tolist()
        self.v_count += v_counts.tolist()
        self.t_count += t_counts.tolist()
        self._nv += int(v_counts.sum())
        self._nt += int(t_counts.sum())

    def _spill(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="cim-bim-"))
        self._files = {k: open(self.folder / f"{k}.bin", "wb") for k in self.KINDS}  # noqa: SIM115 (closed in finish)
        for k, buf in self._buffers.items():
            self._files[k].write(buf)
        self._buffers = {}

    def finish(self) -> None:
        for k, (dtype, width) in self.KINDS.items():
            n = self._nv if k != "tri" else self._nt
            if self._files is None:
                self.maps[k] = np.frombuffer(self._buffers[k], dtype=dtype).reshape(n, width)
                continue
            self._files[k].close()
            self.maps[k] = np.memmap(self.folder / f"{k}.bin", dtype=dtype, mode="r", shape=(n, width)) if n else np.zeros((0, width), dtype=dtype)
        self.v_start_a, self.v_count_a = np.array(self.v_start, dtype=np.int64), np.array(self.v_count, dtype=np.int64)
        self.t_start_a, self.t_count_a = np.array(self.t_start, dtype=np.int64), np.array(self.t_count, dtype=np.int64)

    def close(self) -> None:
        """Free the buffers and remove the temporary files."""
        self.maps.clear()
        self._buffers = {}
        if self._files is not None:
            for f in self._files.values():
                f.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

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
    """Place a batch of element meshes in the city frame and spool them.

    Vectorised over the batch (one placement, one normal rotation, one colour lookup, one write
    per buffer); only elements with several materials go through a per-element split. The
    per-element version cost 0.8 ms an element, about a tenth of the kernel's time for it.
    """
    vcounts = np.array([len(g.vertices) for g in batch], dtype=np.int64)
    vstarts = np.zeros(len(batch), dtype=np.int64)
    np.cumsum(vcounts[:-1], out=vstarts[1:])
    world = np.concatenate([g.vertices for g in batch])
    enu = model.placement.enu(world)
    # normals in ENU: the kernel's rotated, or made from the placed faces when it gave none
    normals = np.empty_like(enu)
    has = np.array([len(g.normals) == len(g.vertices) for g in batch])
    if has.any():
        normals[range_index(vstarts[has], vcounts[has])] = np.concatenate([g.normals for g, h in zip(batch, has) if h]) @ normal_m.T
    for i in np.flatnonzero(~has):
        a, b = vstarts[i], vstarts[i] + vcounts[i]
        normals[a:b] = vertex_normals(enu[a:b], batch[i].triangles)
    # one material a vertex: vertices shared by triangles of two materials are duplicated
    mat_base = np.zeros(len(batch), dtype=np.int64)
    np.cumsum([len(g.materials) for g in batch[:-1]], out=mat_base[1:])
    sources, tris, vmats, new_counts = [], [], [], np.empty(len(batch), dtype=np.int64)
    for i, g in enumerate(batch):
        a, nv = vstarts[i], vcounts[i]
        if len(g.materials) > 1 and len(g.tri_material) and g.tri_material.min() != g.tri_material.max():
            source, tri, vmat = split_vertices_by_material(g.triangles, g.tri_material, nv)
            sources.append(source + a)
            vmats.append(vmat + mat_base[i])
        else:
            tri = g.triangles
            sources.append(np.arange(a, a + nv))
            vmats.append(np.full(nv, mat_base[i] + (g.tri_material[0] if len(g.tri_material) else 0), dtype=np.int64))
        tris.append(tri)
        new_counts[i] = len(sources[-1])
    source = np.concatenate(sources)
    materials = np.concatenate([g.materials for g in batch])
    rgba = np.clip(np.round(materials[np.concatenate(vmats)] * 255.0), 0, 255).astype(np.uint8)
    pos = enu[source]
    spool.extend(pos - model.anchor, unit_vectors(normals[source]), rgba, np.concatenate(tris), new_counts,
                 np.array([len(t) for t in tris], dtype=np.int64))
    new_starts = np.zeros(len(batch), dtype=np.int64)
    np.cumsum(new_counts[:-1], out=new_starts[1:])
    model.ids.extend(g.id for g in batch)
    model.lo.extend(np.minimum.reduceat(pos, new_starts, axis=0))
    model.hi.extend(np.maximum.reduceat(pos, new_starts, axis=0))
    model.wlo.extend(np.minimum.reduceat(world, vstarts, axis=0))
    model.whi.extend(np.maximum.reduceat(world, vstarts, axis=0))
    model.hull = convex_hull_xy(np.concatenate([model.hull, world[:, :2]]))


def convex_hull_xy(xy: np.ndarray) -> np.ndarray:
    """The convex hull of points, as the coordinates of its ring (or of the degenerate hull).

    Parameters
    ----------
    xy : (n, 2) float

    Returns
    -------
    (k, 2) float64

    Notes
    -----
    Akl–Toussaint: a point strictly inside the octagon of the extreme points in eight directions
    cannot be on the hull, so those are dropped (numpy) before GEOS sees the rest. On the
    unwelded meshes of a 300-element building GEOS took 0.07 s for the whole batch of vertices;
    after the filter it sees a few hundred.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) > 64:
        x, y = xy[:, 0], xy[:, 1]
        s, d = x + y, x - y
        # the extremes in counter-clockwise order: left, lower left, bottom, lower right, ...
        ring = xy[[x.argmin(), s.argmin(), y.argmin(), d.argmax(), x.argmax(), s.argmax(), y.argmax(), d.argmin()]]
        edges = np.roll(ring, -1, axis=0) - ring
        edges_ok = np.abs(edges).sum(axis=1) > 0
        if edges_ok.sum() >= 3:
            scale = float(np.abs(xy).max()) or 1.0
            inside = np.ones(len(xy), dtype=bool)
            for a, e in zip(ring[edges_ok], edges[edges_ok]):
                inside &= e[0] * (y - a[1]) - e[1] * (x - a[0]) > 1e-9 * scale * scale
            xy = np.concatenate([ring, xy[~inside]])
    return np.asarray(shapely.get_coordinates(shapely.convex_hull(shapely.multipoints(xy))))


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


def _exterior_flags(facts: "_ElementFacts", ids: list[int], wlo: np.ndarray, whi: np.ndarray) -> np.ndarray:
    """Which elements make the far view (see :data:`ENVELOPE_CLASSES`).

    Elements that say nothing about ``IsExternal`` count as exterior when they are not strictly
    inside the walls' box (model axes): on it, above it or beyond it. Parts follow their whole.

    Parameters
    ----------
    facts : the elements' classes and relationships, one row per element of ``ids``
    ids : (n,) STEP ids of the elements drawn
    wlo, whi : (n, 3) float, element boxes in model axes
    """
    n = len(ids)
    detail = facts.detail
    flags = np.zeros(n, dtype=bool)
    walls = facts.walls & ~detail
    ref = walls if walls.any() else ~detail if (~detail).any() else np.ones(n, dtype=bool)
    lo, hi = wlo[ref].min(axis=0), whi[ref].max(axis=0)
    tol = max(0.3, 0.01 * float(np.max(hi[:2] - lo[:2])))
    inside = (wlo[:, 0] > lo[0] + tol) & (wlo[:, 1] > lo[1] + tol) & (whi[:, 0] < hi[0] - tol) & (whi[:, 1] < hi[1] - tol) & (whi[:, 2] < hi[2] - tol)
    said = facts.external >= 0
    flags = np.where(said, facts.external == 1, ~detail & ~inside) | facts.envelope
    # parts follow their whole (curtain-wall plates, stair flights), in element order as a part
    # may be the whole of another
    by_id = {i: r for r, i in enumerate(ids)}
    for r in np.flatnonzero((facts.whole_id >= 0) & ~detail):
        if flags[r]:
            continue
        j = by_id.get(int(facts.whole_id[r]))
        if (j is not None and flags[j]) or (j is None and facts.whole_flag[r]):
            flags[r] = True
    return flags


def _encode_tile(node: _Node, spool: _MeshSpool, model: _Model, columns: FeatureColumns,
                 has_value: np.ndarray | None = None) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One tile's GLB and its content bounds (ENU).

    ``has_value`` ((columns, elements) bool, see :func:`_value_mask`) says which columns hold a
    value for which elements: a tile's table leaves out the columns none of its elements has a
    value in (readers see no value, as for noData). A STRING column empty in every row would
    need a zero-length buffer view, which glTF forbids; and a model's property sets make
    hundreds of columns (221 in a real IFC4 file) of which a tile's elements use some: cutting
    and encoding them all took 7–15 ms a tile.
    """
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
    if has_value is None:
        has_value = _value_mask(columns, {})
    used_columns = [c for c, keep in zip(columns.columns, has_value[:, els].any(axis=1)) if keep]
    table: PropertyTable = FeatureColumns(used_columns).take(els, "element", "A BIM element (IFC product) with its attributes and property sets")
    return encode_feature_primitives(prims, table, enu_to_gltf(centre)), lo, hi


def _value_mask(columns: FeatureColumns, present: dict[str, np.ndarray]) -> np.ndarray:
    """(columns, rows) bool: which rows hold a value in each encoded column (``present`` says it
    for BOOLEAN columns, which encode absence as false)."""
    out = []
    for c in columns.columns:
        if c.offsets is not None:
            out.append(np.diff(c.offsets) > 0)
        elif c.kind == "BOOLEAN":
            p = present.get(c.name)
            out.append(np.ones(len(c.values), dtype=bool) if p is None else np.asarray(p, dtype=bool))
        elif c.no_data is None:
            out.append(np.ones(len(c.values), dtype=bool))
        else:
            out.append(c.values != c.no_data)
    return np.array(out, dtype=bool).reshape(len(out), -1)


def _model_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("._") or "model"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


@dataclass
class _ElementFacts:
    """What tiling needs to know of each element besides its geometry (one row per element).

    Attributes
    ----------
    ids : (n,) int64 STEP ids
    is_space, detail, walls, envelope : (n,) bool, class tests (spaces, :data:`DETAIL_CLASSES`,
        walls and curtain walls, :data:`ENVELOPE_CLASSES`)
    external : (n,) int8, ``IsExternal`` (1, 0) or -1 when the element says nothing
    whole_id : (n,) int64, STEP id of the aggregate/nest whole, -1 when none
    whole_flag : (n,) bool, the whole is an envelope class or marked external
    storey : (n,) int64, STEP id of the element's storey, -1 when none
    elevation : ``{storey id: elevation (m)}``
    """

    ids: np.ndarray
    is_space: np.ndarray
    detail: np.ndarray
    walls: np.ndarray
    envelope: np.ndarray
    external: np.ndarray
    whole_id: np.ndarray
    whole_flag: np.ndarray
    storey: np.ndarray
    elevation: dict[int, float]

    @classmethod
    def read(cls, index: IfcElementIndex, elements: list) -> "_ElementFacts":
        n = len(elements)
        out = cls(np.array([el.id() for el in elements], dtype=np.int64), *(np.zeros(n, dtype=bool) for _ in range(4)),
                  np.full(n, -1, dtype=np.int8), np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool), np.full(n, -1, dtype=np.int64), {})
        kinds: dict[str, tuple[bool, bool, bool, bool]] = {}  # class tests, once per class
        for r, el in enumerate(elements):
            cls = el.is_a()
            kind = kinds.get(cls)
            if kind is None:
                kind = kinds[cls] = (el.is_a("IfcSpace"), any(el.is_a(c) for c in DETAIL_CLASSES), el.is_a("IfcWall") or el.is_a("IfcCurtainWall"),
                                     any(el.is_a(c) for c in ENVELOPE_CLASSES))
            out.is_space[r], out.detail[r], out.walls[r], out.envelope[r] = kind
            if not out.envelope[r]:
                ext = index.is_external(el)
                out.external[r] = -1 if ext is None else int(ext)
            whole = index.parent.get(el.id())
            if whole is not None:
                out.whole_id[r] = whole.id()
                out.whole_flag[r] = any(whole.is_a(c) for c in ENVELOPE_CLASSES) or bool(index.is_external(whole))
            s = index.storey(el)
            if s is not None:
                out.storey[r] = s.id()
                if s.id() not in out.elevation:
                    out.elevation[s.id()] = index.storey_elevation(s)
        return out

    def take(self, rows: np.ndarray) -> "_ElementFacts":
        """The facts of ``rows`` (an int index array)."""
        arrays = {k: getattr(self, k)[rows] for k in ("ids", "is_space", "detail", "walls", "envelope", "external", "whole_id", "whole_flag", "storey")}
        return _ElementFacts(**arrays, elevation=self.elevation)


@dataclass
class _Prepared:
    """A model's elements read from the file, one row per geometry candidate (or per element drawn).

    Made in a thread while the geometry process works: on these machines the index, attributes
    and their encoding take 0.1–1.5 s per model, which on the critical path was 5–10 % of a
    conversion.
    """

    index: IfcElementIndex
    expected: dict[int, tuple[str, str]]
    facts: _ElementFacts
    attrs: ElementAttributes
    columns: FeatureColumns
    search: list[dict]  # non-null attributes per row, for the search index
    warnings: list[str]

    def row_of(self, ids: list[int]) -> np.ndarray | None:
        """Rows of ``ids``, or None when some were not prepared."""
        lookup = {int(i): r for r, i in enumerate(self.facts.ids)}
        rows = [lookup.get(i) for i in ids]
        return None if any(r is None for r in rows) else np.array(rows, dtype=np.int64)


def _prepare_placement(f, path: Path, frame: LocalFrame, crs, origin, rotation, require_georef: bool) -> ModelPlacement:
    """Read the georeference and decide the placement."""
    geo = read_georeference(f)
    return resolve_placement(geo, frame, crs=crs, origin=origin, rotation=rotation, require_georef=require_georef, name=path.name)


def _prepare_elements(f, path: Path, name: str, opts: BimOptions, ids: list[int] | None = None, index: IfcElementIndex | None = None) -> _Prepared:
    """Index the file and read the attributes of the geometry candidates (or of ``ids``)."""
    index = index or IfcElementIndex(f)
    expected = index.body_candidates(opts.geometry.exclude)
    warnings = []
    heavy = [(el.GlobalId, el.is_a(), index.openings[i]) for i, el in ((i, f.by_id(i)) for i in expected) if index.openings[i] > opts.geometry.max_voids > 0]
    if heavy:
        warnings.append(f"{path.name}: {len(heavy)} element(s) with more than {opts.geometry.max_voids} openings drawn without them: " + "; ".join(f"{g} ({c}, {k} openings)" for g, c, k in heavy[:10]))
    elements = [f.by_id(i) for i in (sorted(expected) if ids is None else ids)]
    facts = _ElementFacts.read(index, elements)
    attrs = index.attributes(elements, max_properties=opts.max_properties)
    n = len(elements)
    attrs.columns["Model"] = np.full(n, name, dtype=object)
    attrs.types["Model"] = "STRING"
    attrs.columns["cim_level"] = np.where(facts.is_space, 5, 6).astype(np.int64)
    attrs.types["cim_level"] = "INT32"
    columns = _encode_columns(attrs.columns, attrs.types)
    return _Prepared(index, expected, facts, attrs, columns, _search_properties(attrs), warnings)


def _encode_columns(columns: dict[str, np.ndarray], types: dict[str, str]) -> FeatureColumns:
    """Encode attribute columns for property tables (as ``FeatureColumns.encode``), with STRING
    columns made by a Python loop rather than Arrow: both run at about 0.4 µs a string here, but
    importing pyarrow costs 0.06–0.26 s, six times the whole conversion of a one-element model,
    and BIM tables are small (thousands of rows)."""
    out = []
    for name, col in columns.items():
        if types[name] != "STRING":
            out.append(encode_column(name, col, types[name]))
            continue
        values = col.tolist()
        strings = [b"" if v is None else (v if isinstance(v, str) else str(v)).encode("utf-8") for v in values]
        offsets = np.zeros(len(strings) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, strings), dtype=np.int64, count=len(strings)), out=offsets[1:])
        has_null = any(v is None for v in values)
        out.append(EncodedColumn(name, "STRING", np.frombuffer(b"".join(strings), dtype=np.uint8).copy(), offsets, NO_DATA["STRING"] if has_null else None))
    return FeatureColumns(out)


def _convert_model(
    stream: GeometryStream,
    f,
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

    ``stream`` is already running on ``f`` (the open file). This thread consumes its meshes from
    the first one on (a geometry process that cannot send blocks: the old order, attributes
    first, held back the kernel for up to 2.5 s on a 4.5 MB file), while a helper thread reads
    the placement, then the index and attributes. ``geometry_done()`` is called when the
    geometry has arrived and the helper thread has ended (the layer then starts the next model's
    geometry process, which can fork only while no other thread of this kind runs).
    """
    helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cim-bim-prep")
    try:
        placed = helper.submit(_prepare_placement, f, path, frame, crs, origin, rotation, require_georef)
        prepared = helper.submit(_prepare_elements, f, path, name, opts)
        glog = GeometryLog()
        spool = _MeshSpool()
        try:
            # pyproj makes a transformer's PROJ object once per thread (a general one costs
            # 0.1–0.3 s here, holding the GIL much of the time): make it in this thread, which
            # places the meshes, while the geometry process works ahead into its channel's buffer
            placement = placed.result()
            placement.enu(np.zeros((1, 3)))
            model = _stream_model(stream, name, path, placement, prepared, spool, glog, progress)
            prep = prepared.result()
            helper.shutdown(wait=True)
            if geometry_done is not None:
                geometry_done()
            warnings = [f"{path.name}: {n}" for n in placement.notes] + prep.warnings
            warnings += [f"{path.name}: {w}" for w in glog.warnings(opts.geometry.element_timeout)]
            if model is None:
                raise CimInputError(f"{path}: no element has geometry" + (f" ({warnings[-1]})" if warnings else ""))
            return _write_model(f, model, spool, prep, store, opts, glog, warnings, progress)
        finally:
            spool.close()
    finally:
        helper.shutdown(wait=False, cancel_futures=True)


def _stream_model(stream: GeometryStream, name: str, path: Path, placement: ModelPlacement, prepared, spool: _MeshSpool, glog: GeometryLog,
                  progress) -> _Model | None:
    """Spool the element meshes as they arrive, placed in batches of about 2,048 vertices (one
    pyproj call a batch; what is left when the last element arrives costs a few ms, where
    batches of 65,536 left 80 ms of a 3.6 s conversion, and of 8,192 a whole 100-element model,
    to do after it)."""
    model: _Model | None = None
    normal_m = np.eye(3)
    batch: list[ElementGeometry] = []
    batch_vertices = done = 0
    for g in stream.elements(lambda: prepared.result().expected, glog):
        batch.append(g)
        batch_vertices += len(g.vertices)
        done += 1
        if batch_vertices >= 2048:
            if model is None:
                model, normal_m = _new_model(name, path, placement, batch[0])
            _ingest(batch, model, spool, normal_m)
            batch, batch_vertices = [], 0
            if progress:
                progress(f"{name}: geometry", done, max(done, len(prepared.result().expected)) if prepared.done() else done)
    if batch:
        if model is None:
            model, normal_m = _new_model(name, path, placement, batch[0])
        _ingest(batch, model, spool, normal_m)
    spool.finish()
    return model


def _new_model(name: str, path: Path, placement: ModelPlacement, first: ElementGeometry) -> tuple[_Model, np.ndarray]:
    anchor_world = first.vertices.mean(axis=0)
    return _Model(name, path, placement, placement.enu(anchor_world[None, :])[0]), placement.normal_matrix(anchor_world)


def _write_model(f, model: _Model, spool: _MeshSpool, prep: _Prepared, store: TileStore, opts: BimOptions, glog: GeometryLog,
                 warnings: list[str], progress) -> dict:
    """Plan the model's tiles and write them, its tileset and its search rows."""
    name, placement = model.name, model.placement
    rows = prep.row_of(model.ids)
    if rows is None:  # the kernel drew elements the index did not expect: read them all again
        prep = _prepare_elements(f, model.source, name, opts, ids=model.ids, index=prep.index)
        rows = np.arange(len(model.ids))
    attrs, facts = prep.attrs, prep.facts.take(rows)
    if attrs.dropped:
        warnings.append(f"{model.source.name}: {attrs.dropped} property column(s) beyond the {opts.max_properties} most common left out")
    columns = FeatureColumns([c.take(rows) for c in prep.columns.columns])
    has_value = _value_mask(columns, {k: v[rows] for k, v in attrs.present.items()})
    n = len(model.ids)

    lo, hi = np.array(model.lo), np.array(model.hi)
    # what leaving an element out costs: its box diagonal; a space's faces lie on the walls
    # and slabs kept around it, so leaving it out changes the picture by its thinnest extent
    sizes = np.where(facts.is_space, (hi - lo).min(axis=1), np.linalg.norm(hi - lo, axis=1))
    tri_counts = spool.t_count_a
    exterior = _exterior_flags(facts, model.ids, np.array(model.wlo), np.array(model.whi))
    keys, elev = facts.storey, facts.elevation
    order = sorted(set(keys.tolist()), key=lambda k: (elev.get(k, -np.inf), k))  # unassigned (-1) first
    root = plan_model_tiles(sizes, tri_counts, (lo + hi) / 2.0, keys, order, exterior, facts.detail,
                            max_triangles=opts.max_triangles, min_storey_size=opts.min_storey_size)

    nodes = _walk(root)
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def write(node: _Node) -> None:
        glb, blo, bhi = _encode_tile(node, spool, model, columns, has_value)
        store.write(f"models/{name}/tiles/{node.name}.glb", glb)
        bounds[node.name] = (blo, bhi)

    workers = min(len(nodes), opts.workers or os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, _ in enumerate(pool.map(write, nodes)):
                if progress:
                    progress(f"{name}: tiles", i + 1, len(nodes))
    else:  # one tile (small models): no thread to start
        for i, node in enumerate(nodes):
            write(node)
            if progress:
                progress(f"{name}: tiles", i + 1, len(nodes))
    spool.maps.clear()

    tile, tlo, thi = _tile_json(root, bounds)
    diagonal = float(np.linalg.norm(thi - tlo))
    props = [prep.search[r] for r in rows]
    summary = {
        "model": name,
        "source": model.source.name,
        "schema": f.schema,
        "elements": n,
        "triangles": int(tri_counts.sum()),
        "tiles": len(nodes),
        "expected": len(prep.expected),
        "failed": [list(x) for x in glog.failed],
        "timed_out": [list(x) for x in glog.timed_out],
        "empty": [list(x) for x in glog.empty],
        "placement": placement.describe(),
        "storeys": [_storey_label(f, k, elev) for k in order],
        "bounds_enu": [tlo.tolist(), thi.tolist()],
        "footprint": _footprint_coords(model, placement),
        "schema_types": attrs.types,
        "warnings": warnings,
        "seconds": round(glog.seconds, 3),
        "kernel_peak_mb": round(glog.kernel_peak_mb, 1),
        "kernel_processes": {"started": glog.processes, "forked": glog.forked},
        "search": {"lo": lo.tolist(), "hi": hi.tolist(), "properties": props},
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


def _search_properties(attrs: ElementAttributes) -> list[dict]:
    """Each row's non-null attributes, for the city's search index."""
    cols = attrs.columns
    out: list[dict] = [{} for _ in range(len(next(iter(cols.values()))) if cols else 0)]
    for k, col in cols.items():
        values = col.tolist()  # Python scalars: no numpy type reaches the JSON
        present = attrs.present.get(k)
        for row, v in enumerate(values):
            if v is None or (isinstance(v, float) and v != v) or (present is not None and not present[row]):
                continue
            out[row][k] = v
    return out


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
    crs : the city's CRS: the CRS of ``origin``, and of map conversions that name none (see
        :func:`resolve_placement`)
    origin, rotation : placement overrides, applied to every model (see :func:`resolve_placement`)
    require_georef : raise CimInputError for a model with no georeference and no ``origin``
        (standalone conversion); otherwise such a model is placed at the frame origin, warned
    options : tiling and kernel options

    Returns
    -------
    LayerResult with ``extra["footprints"]``: ``[{"model", "wkt", "crs"}]``, each model's convex
    footprint in the CRS it was placed through (its map conversion's, or ``crs`` with an
    ``origin`` override), else in lon/lat (EPSG:4326), for the buildings layer to drop the LOD1
    building it replaces (it converts them into its CRS); ``extra["models"]``: per-model
    summaries (placement, counts, failures, storeys).
    """
    t0 = time.perf_counter()
    opts = options or BimOptions()
    out_dir = Path(out_dir)
    sources = [Path(s) for s in sources]
    if not sources:
        raise CimInputError(f"layer {layer_id}: no IFC source given")
    city_crs = parse_crs(crs, what=f"layer {layer_id}: crs") if crs is not None else None  # fail before any work
    key = build_key(
        "bim-2", [file_fingerprint(s) for s in sources], frame.to_dict(), str(crs), origin, rotation, require_georef,
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
    # one geometry process at a time; the next model's starts when the current model's geometry
    # is in, behind its tiling (it then parses its file itself); the first forks after this
    # process has parsed the file, and shares the parsed model
    streams: dict[int, GeometryStream] = {}

    def start(k: int) -> None:
        if k < len(jobs) and k not in streams:
            streams[k] = GeometryStream(jobs[k][0], opts.geometry)

    try:
        for k, (path, name) in enumerate(jobs):
            f = open_ifc(path)
            if k not in streams:
                streams[k] = GeometryStream(path, opts.geometry, file=f)
            by_name[name] = _convert_model(streams[k], f, path, name, frame, store, opts, crs=city_crs, origin=origin, rotation=rotation,
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


def _footprint_coords(model: _Model, placement: ModelPlacement) -> dict:
    """The model's convex footprint in the CRS it was placed through (the map conversion's, or
    the override's), else in lon/lat (EPSG:4326): never through a new CRS transformer, which
    pyproj takes 0.15–0.3 s to build here (four times the whole conversion of a one-element
    model); the buildings layer converts footprints into its CRS when it uses them."""
    hull = np.asarray(model.hull, dtype=np.float64).reshape(-1, 2)
    world = np.hstack([hull, np.full((len(hull), 1), float(np.min(np.array(model.wlo)[:, 2])))])
    if placement.crs is not None:
        return {"xy": placement.map_coords(world)[:, :2].tolist(), "crs": crs_label(placement.crs)}
    lon, lat, _ = ecef_to_geodetic(placement.frame.to_ecef(placement.enu(world)))
    return {"xy": np.stack([lon, lat], axis=1).tolist(), "crs": "EPSG:4326"}


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
