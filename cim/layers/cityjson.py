"""The CityJSON layer: city objects of a CityJSON file or CityJSONSeq → triangles on each
surface's plane → a quadtree of GLB tiles → ``tileset.json``.

Each city object with surfaces is a feature (``_FEATURE_ID_0`` into the tile's property table):
its ``id``, CityJSON ``type``, ``parent`` (a BuildingPart's Building, None for a top-level
object), the ``lod`` shown, and its attributes, typed (see
:func:`cim.sources.cityjson.attribute_columns`; an attribute whose name is one of these four is
kept as ``attributes.<name>``). A Building whose geometry is in its BuildingParts has no
triangles of its own: clicking shows the part, whose ``parent`` names it, and the search index
finds the Building by its id over the box of its parts.

Semantic surfaces: every vertex carries its surface's type (:data:`SURFACE_TYPES` code) as
``semantic_surface``, a property *attribute* of class ``surface`` (EXT_structural_metadata
``propertyAttributes``, vertex attribute ``_SURFACE``, UINT8). Why an attribute rather than a
second feature-id set or a texture: the type is a class of the triangle, not a feature with
properties of its own; a property attribute names it and types it in the schema, any client
that reads EXT_structural_metadata sees it, CesiumJS hands it to a custom shader as
``fsInput.metadata.semantic_surface`` (the viewer colours by it with a legend, as it colours
points by classification), and picking still returns the city object through feature-id set 0.
Vertices are per surface anyway (each has its surface's flat normal), so a per-vertex value is
a per-triangle one. The codes and their names are in ``city.json`` (``surfaces``).

Tiling: a quadtree over top-level city objects (each with its parts, so a building is never cut
between tiles), at most ``max_features`` of them in a tile; parents hold the largest of their
subtree, refine REPLACE, geometric error from the largest left out (as the buildings layer).
Positions go through the city frame like every layer's: file CRS (the horizontal part of a
compound CRS such as EPSG:7415) → longitude/latitude → ECEF → the city's ENU, heights as the file
gives them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cim.crs import check_area_of_use, crs_label, parse_crs, to_lonlat
from cim.errors import CimCRSError, CimInputError
from cim.formats.glb import FeatureColumns, PropertyAttribute
from cim.formats.tileset import replace_tree, tileset_document, transform_list
from cim.kernels.extrude import BuildingMesh, gltf_layer_arrays
from cim.kernels.frames import LocalFrame
from cim.kernels.ragged import take_ragged
from cim.kernels.surfaces import OK, SURFACE_STATUS, SurfaceMesh, surface_mesh, triangulate_surfaces
from cim.layers.base import LayerBuilder, LayerInfo, LayerOptions, LayerOutput, LayerPlan, LayerRun, option
from cim.searchindex import SearchRows
from cim.sources.cityjson import SURFACE_TYPES, CityModel, attribute_columns, horizontal_crs, lod_key, read_cityjson
from cim.sources.plausible import check_heights
from cim.store import TileSink, build_key, file_fingerprint
from cim.tiling.feature_tiles import write_feature_tile
from cim.tiling.quadtree import TileNode, quadtree_plan
from cim.warnings import FeatureSkippedWarning, GeometryWarning

__all__ = [
    "CityJSONLayer",
    "CityJSONOptions",
    "CityJSONInfo",
    "CityJSONPlan",
    "SURFACE_CLASS",
    "SURFACE_PROPERTY",
    "SURFACE_ATTRIBUTE",
    "feature_columns",
    "tile_job",
]

log = logging.getLogger("cim.cityjson")

#: the property attribute of the semantic surfaces (see the module notes)
SURFACE_CLASS, SURFACE_PROPERTY, SURFACE_ATTRIBUTE = "surface", "semantic_surface", "_SURFACE"
_SURFACE_DESCRIPTION = "CityJSON semantic surface type: " + ", ".join(f"{c} {n}" for c, n in SURFACE_TYPES.items())
#: the properties cim adds before the file's attributes
_OWN = ("id", "type", "parent", "lod")


@dataclass
class CityJSONOptions(LayerOptions):
    """How a CityJSON file is read and tiled."""

    crs: str | None = option(
        None,
        help="CRS of the coordinates, e.g. EPSG:7415; overrides the file's metadata.referenceSystem [default: the file's, else the city's].",
    )
    lod: str | None = option(
        None, help="Level of detail to show, e.g. 1.2 or 2.2 (objects without it show their highest below) [default: the highest]."
    )
    max_features: int = option(1000, help="Most top-level city objects (each with its parts) in one tile.")

    def check(self, where: str) -> None:
        if self.max_features < 1:
            raise CimInputError(f"{where}: option 'max_features' must be at least 1, got {self.max_features}")
        if self.lod is not None:
            try:
                lod_key(self.lod)
            except ValueError:
                raise CimInputError(f"{where}: option 'lod' must be a LoD such as 2, 1.2 or 2.2, got {self.lod!r}") from None


@dataclass
class CityJSONInfo(LayerInfo):
    """What a CityJSON layer adds to its ``city.json`` entry."""

    id_property: str = "id"
    version: str = ""
    #: every LoD of the file, lowest first, and the one shown
    lods: list[str] = field(default_factory=list)
    lod: str = ""
    #: city objects shown at a LoD below ``lod`` (they lack it): LoD → count
    lod_fallback: dict[str, int] = field(default_factory=dict)
    #: city objects left out: no LoD at or below ``lod``
    lod_missing: int = 0
    #: city objects of each type (all, with or without surfaces of their own)
    object_types: dict[str, int] = field(default_factory=dict)
    #: objects that are parts of another (BuildingPart, BuildingInstallation, ...)
    parts: int = 0
    #: semantic surface types shown: name → {"code", "count" (surfaces shown), "skipped"}
    surfaces: dict[str, dict[str, int]] = field(default_factory=dict)
    #: surfaces left out, reason → count
    invalid_surfaces: dict[str, int] = field(default_factory=dict)
    #: where the CRS came from: "option", "file" or "city"
    crs_source: str = ""
    #: the vertex property the viewer colours surfaces by
    viewer_properties: dict[str, str] = field(default_factory=lambda: {"surface": SURFACE_PROPERTY})


@dataclass
class CityJSONPlan(LayerPlan):
    model: CityModel | None = None
    mesh: SurfaceMesh | None = None
    root: TileNode | None = None
    frame: LocalFrame | None = None
    unit_rows: np.ndarray | None = None  # (u + 1,) first object row of each top-level unit
    crs_source: str = ""
    status: np.ndarray | None = None
    lonlat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class TileState:
    """Read-only data every tile job of a CityJSON layer shares."""

    mesh: BuildingMesh
    codes: np.ndarray
    columns: FeatureColumns
    box_lo: np.ndarray
    box_hi: np.ndarray
    unit_rows: np.ndarray
    has_geometry: np.ndarray
    sink: TileSink


def tile_job(state: TileState, job: tuple[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Encode and write one tile (``job``: its name and top-level units); returns its box (lo,
    hi, ENU) and its triangles."""
    name, units = job
    rows = np.concatenate([np.arange(state.unit_rows[u], state.unit_rows[u + 1]) for u in np.sort(units)])
    rows = rows[state.has_geometry[rows]]

    def surfaces(rows: np.ndarray) -> dict:
        codes, _ = take_ragged(state.codes, state.mesh.vertex_offsets, rows)
        attribute = PropertyAttribute(SURFACE_CLASS, {SURFACE_PROPERTY: (SURFACE_ATTRIBUTE, codes, _SURFACE_DESCRIPTION)})
        return {"vertex_properties": attribute, "double_sided": True}

    return write_feature_tile(
        state.sink,
        f"tiles/{name}.glb",
        state.mesh,
        state.columns,
        rows,
        state.box_lo,
        state.box_hi,
        "cityobject",
        "A CityJSON city object (its id, type, parent, LoD and attributes)",
        extra=surfaces,
    )


def feature_columns(model: CityModel) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The property table's columns of every object: ``id``, ``type``, ``parent``, ``lod``, then
    the attributes (one named like those four is kept as ``attributes.<name>``)."""
    attrs, attr_types = attribute_columns(model.attributes)
    columns: dict[str, np.ndarray] = {
        "id": model.ids,
        "type": model.types,
        "parent": model.parents,
        "lod": model.object_lod,
    }
    types = dict.fromkeys(columns, "STRING")
    for name, col in attrs.items():
        key = f"attributes.{name}" if name in _OWN or name.startswith("attributes.") else name
        columns[key] = col
        types[key] = attr_types[name]
    return columns, types


class CityJSONLayer(LayerBuilder[CityJSONOptions, CityJSONPlan]):
    """CityJSON 1.0/1.1/2.0 or CityJSONSeq → 3D Tiles 1.1: every city object (buildings and their
    parts, bridges, roads, vegetation, ...) at one LoD, with its attributes and semantic surfaces
    (``tileset.json`` + ``tiles/*.glb``)."""

    kind = "cityjson"
    Options = CityJSONOptions
    order = 45
    cim_level = 3
    summary = "Convert CityJSON (1.0, 1.1, 2.0) or CityJSONSeq city objects into 3D Tiles with their attributes and semantic surfaces."

    def plan(self, sources: list[Path], options: CityJSONOptions, run: LayerRun) -> CityJSONPlan:
        source = sources[0]
        model = read_cityjson(source, lod=options.lod, crs=options.crs)
        crs_source = "option" if options.crs is not None else "file"
        if model.crs is None:
            city_crs = run.crs(None)
            if city_crs is None:
                raise CimCRSError(
                    f"{source}: the file declares no CRS (metadata.referenceSystem); give one with --crs "
                    "(the layer's crs option), e.g. EPSG:7415 for Amersfoort / RD New + NAP height"
                )
            model.crs = parse_crs(city_crs, what=f"layer {run.id}: crs")
            crs_source = "city"
        if model.n_surfaces == 0:
            at = f" at or below LoD {options.lod}" if options.lod is not None else ""
            raise CimInputError(f"{source}: no city object has surfaces{at} (LoDs in the file: {', '.join(model.lods) or 'none'})")
        used = np.zeros(len(model.coords), dtype=bool)
        used[model.ring_indices] = True
        lon = np.full(len(model.coords), np.nan)
        lat = np.full(len(model.coords), np.nan)
        lon[used], lat[used] = to_lonlat(model.coords[used, 0], model.coords[used, 1], horizontal_crs(model.crs))
        if not (np.all(np.isfinite(lon[used])) and np.all(np.abs(lat[used]) <= 90)):
            raise CimCRSError(f"{source}: coordinates do not project from {crs_label(model.crs)} to longitude/latitude (check the CRS)")
        check_area_of_use(
            horizontal_crs(model.crs),
            (float(np.nanmin(lon)), float(np.nanmin(lat)), float(np.nanmax(lon)), float(np.nanmax(lat))),
            str(source),
        )
        z = model.coords[:, 2]
        check_heights(z[used], str(source))
        shift = run.height_offset(model.crs, np.where(used, lon, 0.0), np.where(used, lat, 0.0), source.name)
        if shift is not None:  # heights in another vertical datum than the city's
            z = z + np.where(used, shift, 0.0)
        frame = run.propose_frame(
            lambda: LocalFrame((np.nanmin(lon) + np.nanmax(lon)) / 2.0, (np.nanmin(lat) + np.nanmax(lat)) / 2.0, float(z[used].min()))
        )
        ground, up = frame.ground_and_up(np.where(used, lon, 0.0), np.where(used, lat, 0.0))
        enu = ground + z[:, None] * up
        run.progress("triangulate", 0, model.n_surfaces)
        triangles, tri_surface, normals, status = triangulate_surfaces(enu, model.ring_indices, model.ring_offsets, model.surface_offsets)
        run.progress("triangulate", model.n_surfaces, model.n_surfaces)
        mesh = surface_mesh(
            enu,
            model.ring_indices,
            model.ring_offsets,
            model.surface_offsets,
            model.surface_object,
            model.surface_semantic,
            len(model),
            triangles,
            tri_surface,
            normals,
            status == OK,
        )
        if len(mesh.triangles) == 0:
            raise CimInputError(f"{source}: no valid surface to show ({_reasons(status)})")
        # top-level units: an object and its descendants are consecutive rows
        roots = model.roots()
        starts = np.flatnonzero(np.r_[True, roots[1:] != roots[:-1]])
        unit_rows = np.r_[starts, len(model)].astype(np.int64)
        vo = mesh.vertex_offsets
        unit_vertices = vo[unit_rows[1:]] - vo[unit_rows[:-1]]
        shown = np.flatnonzero(unit_vertices > 0)
        lo, hi = _unit_boxes(mesh, unit_rows, shown)
        root = quadtree_plan((lo[:, :2] + hi[:, :2]) / 2.0, np.linalg.norm(hi - lo, axis=1), options.max_features)
        for node in root.walk():
            node.features = shown[node.features]
        key = build_key("cityjson-1", file_fingerprint(source), options.key(), crs_label(model.crs), crs_source, frame.to_dict())
        return CityJSONPlan(
            key,
            [(node.name, node.features) for node in root.walk()],
            model=model,
            mesh=mesh,
            root=root,
            frame=frame,
            unit_rows=unit_rows,
            crs_source=crs_source,
            status=status,
            lonlat=(lon, lat, z),
        )

    def build(self, plan: CityJSONPlan, run: LayerRun) -> LayerOutput:
        assert run.store is not None and plan.model is not None and plan.mesh is not None and plan.root is not None
        assert plan.frame is not None and plan.unit_rows is not None and plan.status is not None and plan.lonlat is not None
        model, mesh, status = plan.model, plan.mesh, plan.status
        name = model.source.name
        info = _info(model, status, plan.crs_source)
        if info.invalid_surfaces:
            run.warn(
                FeatureSkippedWarning,
                f"{name}: skipped {sum(info.invalid_surfaces.values())} invalid surface(s): "
                + "; ".join(f"{n} {reason}" for reason, n in info.invalid_surfaces.items()),
            )
        for reason, n in sorted(model.issues.items()):
            category = FeatureSkippedWarning if "city objects" in reason or "surfaces" in reason else GeometryWarning
            run.warn(category, f"{name}: left out {n} {reason}")
        if info.lod_fallback:
            log.info("%s: %s shown below LoD %s", name, info.lod_fallback, info.lod)
        columns, types = feature_columns(model)
        rows = _search_rows(run.id, model, plan.lonlat)
        run.add_search(rows)
        gl_positions, gl_normals, box_lo, box_hi = gltf_layer_arrays(
            BuildingMesh(mesh.positions, mesh.normals, mesh.triangles, mesh.vertex_offsets, mesh.triangle_offsets)
        )
        vo = mesh.vertex_offsets
        state = TileState(
            mesh=BuildingMesh(gl_positions, gl_normals, mesh.triangles, mesh.vertex_offsets, mesh.triangle_offsets),
            codes=mesh.vertex_code,
            columns=FeatureColumns.encode(columns, types),
            box_lo=box_lo,
            box_hi=box_hi,
            unit_rows=plan.unit_rows,
            has_geometry=vo[1:] > vo[:-1],
            sink=run.store.sink(),
        )
        bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        triangles = 0
        leaves = {node.name for node in plan.root.walk() if not node.children}
        for (tile, _), (lo, hi, ntri) in zip(plan.jobs, run.map(tile_job, state, plan.jobs, stage="tiles")):
            bounds[tile] = (lo, hi)
            if tile in leaves:
                triangles += ntri
        root_json, lo, hi = replace_tree(plan.root, bounds, lambda node: node.geometric_error)
        root_json["transform"] = transform_list(plan.frame.matrix())
        lon, lat, z = plan.lonlat
        used = np.isfinite(lon)
        return LayerOutput(
            index=tileset_document(root_json, max(float(np.linalg.norm(hi - lo)), 2.0 * plan.root.geometric_error, 1.0)),
            count=int(state.has_geometry.sum()),
            tiles=len(plan.jobs),
            triangles=triangles,
            bounds={
                "west": float(lon[used].min()),
                "south": float(lat[used].min()),
                "east": float(lon[used].max()),
                "north": float(lat[used].max()),
                "min_height": float(z[used].min()),
                "max_height": float(z[used].max()),
            },
            schema=types,
            skipped=sum(info.invalid_surfaces.values()) + info.lod_missing,
            crs=crs_label(model.crs) if model.crs is not None else None,
            info=info,
            search=rows,
        )


def _reasons(status: np.ndarray) -> str:
    counts = np.bincount(status, minlength=len(SURFACE_STATUS))
    return ", ".join(f"{int(counts[c])} {SURFACE_STATUS[c]}" for c in SURFACE_STATUS if c != OK and counts[c]) or "none"


def _unit_boxes(mesh: SurfaceMesh, unit_rows: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) ENU boxes of the vertices of each unit in ``units`` (units with vertices)."""
    vo = mesh.vertex_offsets
    first = vo[unit_rows[units]]
    return np.minimum.reduceat(mesh.positions, first, axis=0), np.maximum.reduceat(mesh.positions, first, axis=0)


def _info(model: CityModel, status: np.ndarray, crs_source: str) -> CityJSONInfo:
    shown_lod = model.lod if model.lod is not None else (model.lods[-1] if model.lods else "")
    fallback = Counter(str(x) for x in model.object_lod[model.fallback])
    codes = model.surface_semantic
    ok = np.bincount(codes[status == OK], minlength=256)
    bad = np.bincount(codes[status != OK], minlength=256)
    counts = np.bincount(status, minlength=len(SURFACE_STATUS))
    missing = sum(n for reason, n in model.issues.items() if reason.startswith("city objects with no LoD"))
    return CityJSONInfo(
        version=model.version,
        lods=list(model.lods),
        lod=shown_lod,
        lod_fallback=dict(sorted(fallback.items(), key=lambda kv: lod_key(kv[0]))),
        lod_missing=missing,
        object_types=dict(sorted(Counter(model.types.tolist()).items())),
        parts=int(sum(p is not None for p in model.parents)),
        surfaces={SURFACE_TYPES[c]: {"code": c, "count": int(ok[c]), "skipped": int(bad[c])} for c in SURFACE_TYPES if ok[c] or bad[c]},
        invalid_surfaces={SURFACE_STATUS[c]: int(counts[c]) for c in SURFACE_STATUS if c != OK and counts[c]},
        crs_source=crs_source,
    )


def _search_rows(layer_id: str, model: CityModel, lonlat: tuple[np.ndarray, np.ndarray, np.ndarray]) -> SearchRows:
    """Every city object with surfaces, or with parts that have some (over their box), for the
    city's search index: titled by its ``name`` attribute where it has one, else its id."""
    lon, lat, z = lonlat
    n = len(model)
    west = np.full(n, np.inf)
    south = np.full(n, np.inf)
    east = np.full(n, -np.inf)
    north = np.full(n, -np.inf)
    base = np.full(n, np.inf)
    top = np.full(n, -np.inf)
    # each ring position counts for its object and every ancestor (parts make their parent's box)
    cur_v = np.asarray(model.ring_indices)
    cur_obj = np.repeat(np.repeat(model.surface_object, np.diff(model.surface_offsets)), np.diff(model.ring_offsets))
    row = {oid: i for i, oid in enumerate(model.ids.tolist())}
    parent_rows = np.array([row.get(p, -1) if p is not None else -1 for p in model.parents], dtype=np.int64)
    owners, verts = [cur_obj], [cur_v]
    for _ in range(n):  # up the parents (at most n levels: a file may make a cycle of them)
        if not len(cur_obj):
            break
        p = parent_rows[cur_obj]
        sel = p >= 0
        cur_obj, cur_v = p[sel], cur_v[sel]
        owners.append(cur_obj)
        verts.append(cur_v)
    o = np.concatenate(owners)
    v = np.concatenate(verts)
    for out, values, reduce in (
        (west, lon, np.minimum),
        (east, lon, np.maximum),
        (south, lat, np.minimum),
        (north, lat, np.maximum),
        (base, z, np.minimum),
        (top, z, np.maximum),
    ):
        reduce.at(out, o, values[v])
    keep = np.flatnonzero(np.isfinite(west))
    props: list[dict] = []
    titles: list[str] = []
    texts: list[str] = []
    for i in keep.tolist():
        attrs = model.attributes[i]
        p = {"id": model.ids[i], "type": model.types[i], "parent": model.parents[i], "lod": model.object_lod[i]}
        p.update({(f"attributes.{k}" if k in _OWN else k): val for k, val in attrs.items()})
        props.append(p)
        title = attrs.get("name")
        titles.append(title if isinstance(title, str) and title else str(model.ids[i]))
        words = [str(model.types[i])] + ([str(model.parents[i])] if model.parents[i] else [])
        words += [val for k, val in attrs.items() if isinstance(val, str) and k != "name"]
        texts.append(" ".join(words))
    return SearchRows(
        layer_id,
        model.ids[keep],
        np.array(titles, dtype=object),
        np.array(texts, dtype=object),
        (west[keep] + east[keep]) / 2.0,
        (south[keep] + north[keep]) / 2.0,
        west[keep],
        south[keep],
        east[keep],
        north[keep],
        base[keep],
        top[keep],
        props,
    )
