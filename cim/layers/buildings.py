"""The buildings layer: footprints → LOD1 prisms → quadtree of GLB tiles → ``tileset.json``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyogrio

from cim.crs import crs_label, parse_crs, to_lonlat, transformer
from cim.engines import background
from cim.errors import CimInputError
from cim.formats.glb import FeatureColumns
from cim.formats.tileset import replace_tree, tileset_document, transform_list
from cim.kernels.extrude import BuildingMesh, extrude_footprints, gltf_layer_arrays
from cim.kernels.extrude import warm_up as extrude_warm_up
from cim.kernels.frames import LocalFrame
from cim.kernels.ragged import take_ragged
from cim.kernels.raster import bilinear_sample
from cim.layers.base import LayerBuilder, LayerInfo, LayerOptions, LayerOutput, LayerPlan, LayerRun, option
from cim.layers.building_heights import HEIGHT_OPTIONS, PointHeights, heights_from_points, point_links, roof_attribute
from cim.searchindex import SearchRows
from cim.sources.dem import DemPrefetch, read_dem_window, sample_dem
from cim.sources.footprints import FLOAT64, INT32, FootprintTable, footprint_rings, issue_ids, read_footprints
from cim.store import TileSink, build_key, file_fingerprint
from cim.tiling.feature_tiles import FeatureInputs, write_feature_tile
from cim.tiling.implicit_tree import implicit_replace_tree, tile_metadata_schema
from cim.tiling.quadtree import TileNode, quadtree_plan
from cim.warnings import (
    CimWarning,
    DefaultValueWarning,
    FeatureRepairedWarning,
    FeatureSkippedWarning,
    GeoreferenceWarning,
    OutsideDataWarning,
)

__all__ = [
    "BuildingsLayer",
    "MAX_BUILDING_HEIGHT",
    "BuildingsOptions",
    "BuildingsInfo",
    "BuildingsPlan",
    "PreparedBuildings",
    "building_heights",
    "prepare_buildings",
    "prefetch_dem_for",
    "origin_for",
    "search_rows",
    "concat_rows",
    "warm_up_kernels",
    "tile_job",
]

log = logging.getLogger("cim.buildings")


@dataclass
class BuildingsOptions(LayerOptions):
    """How footprints are read, given heights and tiled.

    Heights: the ``height`` attribute (metres), else ``floors`` × ``storey_height``, else
    ``default_height`` (one warning gives the count). With a ``dem``, a building's base is the
    lowest ground under its footprint; a city with a terrain layer built from the same DEM sinks
    its buildings by the terrain's finest error bound, so that a base never floats above the
    rendered ground.
    """

    height: str | None = option("height", help="Attribute with the height in metres.", cli="--height-attr")
    floors: str | None = option("floors", help="Attribute with the number of floors (used where there is no height).", cli="--floors-attr")
    storey_height: float = option(3.0, help="Metres per floor.")
    default_height: float = option(10.0, help="Metres, where neither height nor floors is known.")
    dem: Path | None = option(None, help="DEM to stand buildings on (base = lowest ground under the footprint).")
    max_features: int = option(2000, help="Most buildings in one tile.")
    implicit_tiles: int = option(
        2000,
        help="Write the quadtree with 3D Tiles implicit tiling (subtree files with each tile's box and geometric error; "
        "tileset.json stays a few KB) when it has more tiles than this; -1: never.",
    )
    subtree_levels: int = option(5, help="Levels of each subtree file of an implicit quadtree.")
    crs: str | None = option(None, help="CRS of a file that declares none, e.g. EPSG:4544 [default: the city's].")
    crs_override: bool = option(False, help="Use --crs even for a file that declares one (its header is wrong).")
    layer: str | None = option(None, help="Layer of a multi-layer file (GeoPackage) [default: the first].")
    id_attr: str = option("id", help="Attribute with feature ids.")
    # heights from a classified point cloud (cim.layers.building_heights)
    heights_from: Path | tuple[Path, ...] | None = option(
        None, help="LAS/LAZ file(s), folder(s) or glob giving the heights (ground class 2, building class 6); replaces height/floors."
    )
    heights_layer: str | None = option(None, help="In a recipe: id of a pointcloud layer whose sources give the heights.")
    roof_percentiles: tuple[float, ...] = option((50.0, 90.0), help="Percentiles of the roof points kept as h_roof_<p> attributes.")
    ground_percentile: float = option(10.0, help="Percentile of the ground points around a footprint taken as h_ground.")
    ground_from: Literal["points", "dem"] = option("points", help="Ground from ground points around the footprint, or the DEM under it.")
    ground_buffer: float = option(3.0, help="Width (m) of the ring around a footprint whose ground points give h_ground.")
    min_points: int = option(3, help="Fewer roof (or ground) points than this: the building takes a fallback height.")
    heights_fallback: Literal["default", "attributes"] = option(
        "default", help="Height of a building with too few points: default_height, or the height/floors attributes (then the default)."
    )
    roof_height: str = option("h_roof_50", help="Roof attribute whose height above h_ground is the building's height.")
    heights_memory: int = option(256 << 20, help="Bytes of point keys held in memory before spilling to temporary files.", key=False)
    link_points: bool = option(
        True,
        help="In a recipe with a pointcloud layer: link each building to the building points its footprint covers "
        "(count and height percentiles, for the query API) [no effect with heights from points, which give them].",
    )

    def check(self, where: str) -> None:
        for name in ("storey_height", "default_height"):
            if not getattr(self, name) > 0:
                raise CimInputError(f"{where}: option {name!r} must be positive, got {getattr(self, name)}")
        if self.max_features < 1:
            raise CimInputError(f"{where}: option 'max_features' must be at least 1, got {self.max_features}")
        if self.implicit_tiles < -1:
            raise CimInputError(f"{where}: option 'implicit_tiles' must be -1 (never) or more, got {self.implicit_tiles}")
        if not 1 <= self.subtree_levels <= 10:
            raise CimInputError(f"{where}: option 'subtree_levels' must be in 1..10, got {self.subtree_levels}")
        percentiles = (*self.roof_percentiles, self.ground_percentile)
        if not self.roof_percentiles or not all(0.0 <= p <= 100.0 for p in percentiles):
            raise CimInputError(f"{where}: options 'roof_percentiles' and 'ground_percentile' must be in 0..100, got {percentiles}")
        if self.min_points < 1 or self.ground_buffer < 0 or self.heights_memory < 1 << 20:
            raise CimInputError(f"{where}: options 'min_points' ≥ 1, 'ground_buffer' ≥ 0 and 'heights_memory' ≥ 1 MiB are required")
        names = [roof_attribute(p) for p in self.roof_percentiles]
        if self.roof_height not in names:
            raise CimInputError(
                f"{where}: option 'roof_height' must be one of {', '.join(names)} (from roof_percentiles), got {self.roof_height!r}"
            )

    @property
    def uses_points(self) -> bool:
        """Heights come from a point cloud."""
        return self.heights_from is not None or self.heights_layer is not None

    @property
    def roof_height_percentile(self) -> float:
        """The roof percentile ``roof_height`` names."""
        return next(p for p in self.roof_percentiles if roof_attribute(p) == self.roof_height)


@dataclass
class BuildingsInfo(LayerInfo):
    """What a buildings layer adds to its ``city.json`` entry."""

    id_property: str = "id"
    #: LOD1 buildings left out because a BIM model of the city stands on their footprint
    replaced_by_bim: int | None = None


@dataclass
class PreparedBuildings:
    """Buildings in the local frame, ready to tile."""

    mesh: BuildingMesh
    centres: np.ndarray  # (n, 2) ENU
    sizes: np.ndarray  # (n,) metres
    base: np.ndarray  # (n,)
    top: np.ndarray  # (n,)
    lonlat_boxes: np.ndarray  # (n, 4) west, south, east, north of each footprint, degrees
    #: the footprints in degrees, ragged (xy, ring offsets, polygon offsets, polygon feature)
    lonlat_rings: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    warnings: list[tuple[type[CimWarning], str]] = field(default_factory=list)

    @property
    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of all the footprints, degrees."""
        b = self.lonlat_boxes
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


@dataclass(frozen=True)
class TileState:
    """Read-only data every tile job of a buildings layer shares."""

    mesh: BuildingMesh
    columns: FeatureColumns
    box_lo: np.ndarray
    box_hi: np.ndarray
    sink: TileSink
    #: each building's digest, for the tiles' input hashes (a rebuild keeps unchanged tiles)
    inputs: FeatureInputs | None = None


#: the EXT_structural_metadata class of the layer's features
_CLASS_NAME, _CLASS_DESCRIPTION = "building", "A building footprint extruded to LOD1 (CIM2)"


def tile_job(state: TileState, job: tuple[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """The tile job: encode and write one tile (``job``: its name and buildings); returns its
    box (lo, hi, ENU) and its triangles."""
    name, features = job
    return write_feature_tile(
        state.sink,
        f"tiles/{name}.glb",
        state.mesh,
        state.columns,
        features,
        state.box_lo,
        state.box_hi,
        _CLASS_NAME,
        _CLASS_DESCRIPTION,
        inputs=state.inputs,
    )


#: metres: a height attribute above this is not a building's (the tallest stands at 828 m)
MAX_BUILDING_HEIGHT = 1000.0


def building_heights(table: FootprintTable, opts: BuildingsOptions) -> tuple[np.ndarray, list[tuple[type[CimWarning], str]]]:
    """Height of each building: the height attribute, else floors × storey height, else default."""
    n = len(table)
    heights = np.full(n, np.nan)
    notes: list[tuple[type[CimWarning], str]] = []
    if opts.height and opts.height in table.columns and table.types[opts.height] != "STRING":
        heights = np.asarray(table.columns[opts.height], dtype=np.float64).copy()
    elif opts.height and opts.height in table.columns:
        heights = np.array([_to_float(v) for v in table.columns[opts.height]])
    heights[~(heights > 0)] = np.nan
    tall = heights > MAX_BUILDING_HEIGHT  # infinities too: an undeclared no-data value, or millimetres
    if tall.any():
        notes.append(
            (
                DefaultValueWarning,
                f"{int(tall.sum())} building(s) declare {opts.height!r} values above {MAX_BUILDING_HEIGHT:.0f} m "
                f"(like {float(heights[tall][0]):.6g}); taken as missing",
            )
        )
        heights[tall] = np.nan
    missing = np.isnan(heights)
    if missing.any() and opts.floors and opts.floors in table.columns:
        floors = (
            np.array([_to_float(v) for v in table.columns[opts.floors]])
            if table.types[opts.floors] == "STRING"
            else np.asarray(table.columns[opts.floors], dtype=np.float64)
        )
        use = missing & (floors > 0) & (floors * opts.storey_height <= MAX_BUILDING_HEIGHT)
        heights[use] = floors[use] * opts.storey_height
        if use.any():
            notes.append(
                (DefaultValueWarning, f"{int(use.sum())} building(s) took their height from {opts.floors!r} × {opts.storey_height} m")
            )
    missing = np.isnan(heights)
    if missing.any():
        heights[missing] = opts.default_height
        notes.append(
            (DefaultValueWarning, f"{int(missing.sum())} of {n} building(s) have no height; used the default {opts.default_height} m")
        )
    return heights, notes


def _to_float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def prepare_buildings(
    table: FootprintTable,
    frame: LocalFrame,
    opts: BuildingsOptions,
    dem_prefetch: DemPrefetch | None = None,
    ground_offset: float = 0.0,
    points: PointHeights | None = None,
) -> PreparedBuildings:
    """Heights, bases and LOD1 meshes of every building, in the frame's ENU metres.

    One pass in this process: the rings are projected once, the DEM window under the footprints
    is sampled at every vertex (a building's base is its lowest ground), and the compiled
    extrusion writes the meshes. Heights from a point cloud (``points``) replace the attribute
    rules, and stand the buildings on the points' ground where there is no DEM. (Chunks in
    forked processes were used while the extrusion was numpy: each child then paid the page
    faults of its own copies, and a compiled kernel would pay numba's start-up in every child.)
    """
    warnings: list[tuple[type[CimWarning], str]] = []
    if points is None:
        heights, notes = building_heights(table, opts)
    else:
        heights, notes = points.heights.copy(), list(points.notes)
        if opts.heights_fallback == "attributes" and points.fallback.any():
            rows = np.flatnonzero(points.fallback)
            heights[rows], more = building_heights(table.take(rows), opts)
            notes += [(category, f"of those, {message}") for category, message in more]
    warnings += notes
    n = len(table)
    dem = None
    if opts.dem is not None:
        dem = (
            dem_prefetch.window(table.bounds, table.crs) if dem_prefetch is not None else read_dem_window(opts.dem, table.bounds, table.crs)
        )

    coords, ring_offsets, poly_offsets, part_feature = footprint_rings(table.geometries)
    starts = ring_offsets[poly_offsets[np.searchsorted(part_feature, np.arange(n))]]  # each building's first coordinate
    lon, lat = to_lonlat(coords[:, 0], coords[:, 1], table.crs)
    ground, up = frame.ground_and_up(lon, lat)
    if dem is not None:
        z = dem.sample(coords[:, 0], coords[:, 1], table.crs)
        with np.errstate(invalid="ignore"):
            base = np.fmin.reduceat(z, starts)
        base += ground_offset  # NaN (off the DEM) stays NaN
        outside = np.isnan(base)
        if outside.all():
            raise CimInputError(f"{table.source}: no footprint lies on the DEM {dem.path} (check both files' CRS)")
        if outside.any():
            fill = float(np.nanmedian(base))
            ids = ", ".join(map(str, table.ids[outside][:10]))
            warnings.append(
                (
                    OutsideDataWarning,
                    f"{int(outside.sum())} building(s) lie outside the DEM {dem.path.name}; base set to the median "
                    f"ground {fill:.1f} m ({ids}{', ...' if outside.sum() > 10 else ''})",
                )
            )
            base[outside] = fill
    elif points is not None and points.base is not None:
        base = points.base.copy()
    else:
        base = np.zeros(n)
    top = base + heights
    mesh = extrude_footprints(ground, up, ring_offsets, poly_offsets, part_feature, base, top)
    xmin = np.minimum.reduceat(ground[:, 0], starts)
    xmax = np.maximum.reduceat(ground[:, 0], starts)
    ymin = np.minimum.reduceat(ground[:, 1], starts)
    ymax = np.maximum.reduceat(ground[:, 1], starts)
    centres = np.stack([(xmin + xmax) / 2, (ymin + ymax) / 2], axis=1)
    sizes = np.maximum(np.hypot(xmax - xmin, ymax - ymin), heights)
    boxes = np.stack(
        [
            np.minimum.reduceat(lon, starts),
            np.minimum.reduceat(lat, starts),
            np.maximum.reduceat(lon, starts),
            np.maximum.reduceat(lat, starts),
        ],
        axis=1,
    )
    rings = (np.column_stack([lon, lat]), ring_offsets, poly_offsets, part_feature)
    return PreparedBuildings(mesh, centres, sizes, base, top, boxes, rings, warnings)


_warm_up = None


def warm_up_kernels() -> None:
    """Start loading the compiled extrusion kernels on a helper thread (once per process).

    numba's first call in a process loads its typing registries and the cached machine code;
    started before the footprints are read, it overlaps the parts of reading that run without
    the GIL (GDAL, GEOS) instead of waiting in front of the extrusion.
    """
    global _warm_up
    if _warm_up is None:
        _warm_up = background(_load_kernels, name="numba-warm-up")


def _load_kernels() -> None:
    extrude_warm_up()
    LocalFrame(0.0, 0.0, 0.0).ground_and_up(np.zeros(1), np.zeros(1))
    bilinear_sample(np.zeros((2, 2), dtype=np.float32), 0.0, 2.0, 1.0, 1.0, np.ones(1), np.ones(1))  # DEMs read as float32
    take_ragged(np.zeros(1, dtype=np.uint8), np.array([0, 1]), np.array([0]))


def prefetch_dem_for(source: str | Path, dem: str | Path | None, crs: object = None, layer: str | int | None = None) -> DemPrefetch | None:
    """Start reading the DEM under a footprint file's declared extent (see
    :class:`cim.sources.dem.DemPrefetch`); ``None`` when there is no DEM, or the file declares no
    extent or CRS (the build then reads the DEM itself and reports any error there)."""
    if dem is None:
        return None
    try:
        info = pyogrio.read_info(str(source), layer=layer)
        bounds = info.get("total_bounds")
        declared = crs if crs is not None else info.get("crs")
        if bounds is None or declared is None or not np.all(np.isfinite(bounds)):
            return None
        return DemPrefetch(dem, tuple(bounds), parse_crs(declared))
    except Exception:
        return None


def origin_for(table: FootprintTable, ground_height: float = 0.0) -> LocalFrame:
    """A local frame at the centre of a footprint table's extent."""
    xmin, ymin, xmax, ymax = table.bounds
    lon, lat = to_lonlat(np.array([(xmin + xmax) / 2]), np.array([(ymin + ymax) / 2]), table.crs)
    return LocalFrame(float(lon[0]), float(lat[0]), ground_height)


@dataclass
class BuildingsPlan(LayerPlan):
    table: FootprintTable | None = None
    prep: PreparedBuildings | None = None
    root: TileNode | None = None
    frame: LocalFrame | None = None
    replaced: int = 0
    #: the search rows of the buildings BIM models replaced (kept in the index, not in the tiles)
    replaced_rows: SearchRows | None = None
    replaced_table: FootprintTable | None = None
    #: link the buildings to the city's point-cloud layers (:func:`point_links`)
    link_points: bool = False
    #: levels of each subtree file when the quadtree is written with implicit tiling, else 0
    subtree_levels: int = 0


class BuildingsLayer(LayerBuilder[BuildingsOptions, BuildingsPlan]):
    """Building footprints (GeoPackage, GeoJSON, Shapefile; any CRS) → LOD1 prisms → a quadtree of
    GLB tiles with per-building ids and attributes (``tileset.json`` + ``tiles/*.glb``).

    Parents hold the buildings of their children (refine REPLACE) with a geometric error from
    the largest building size left out below them; a tile holds at most ``max_features``
    buildings; a quadtree of more than ``implicit_tiles`` tiles is written with implicit tiling
    (:mod:`cim.tiling.implicit_tree`: the same tiles, boxes and errors, in subtree files). Buildings
    under a BIM model of the same city (more than half of their footprint)
    are left out: the model replaces them.
    """

    kind = "buildings"
    Options = BuildingsOptions
    content = ("tiles", "subtrees")
    order = 50
    cim_level = 2
    summary = "Extrude building footprints (GeoPackage, GeoJSON, Shapefile) to LOD1 3D Tiles."

    def plan(self, sources: list[Path], options: BuildingsOptions, run: LayerRun) -> BuildingsPlan:
        source = sources[0]
        crs = run.crs(options.crs)
        warm_up_kernels()
        prefetch = prefetch_dem_for(source, options.dem, crs, options.layer)
        if options.crs_override and options.crs is None:
            raise CimInputError(f"{source}: crs_override needs the layer's own crs (the CRS to use instead of the file's)")
        table = read_footprints(source, crs=crs, layer=options.layer, id_attr=options.id_attr, crs_override=options.crs_override)
        _check_named_attributes(table, options)
        if table.overridden_crs is not None:
            run.warn(GeoreferenceWarning, f"{source}: declares {table.overridden_crs}; read as {crs_label(table.crs)} (crs_override)")
        frame = run.propose_frame(lambda: _city_frame(table, options, prefetch))
        replaced = _drop_replaced(table, [fp for r in run.city.results("bim") for fp in r.info.footprints])  # type: ignore[union-attr]
        # a replaced building leaves the tiles (its model stands there) but stays in the search
        # index, where its footprint links it to its model's elements and they to it
        gone = table.take(replaced) if len(replaced) else None
        if len(replaced):
            table = table.take(np.setdiff1d(np.arange(len(table)), replaced))
        ground_offset = -_terrain_error(run, options.dem)
        points = heights_from_points(table, options, run, prefetch) if options.uses_points else None
        run.progress("extrude", 0, len(table))
        prep = prepare_buildings(table, frame, options, dem_prefetch=prefetch, ground_offset=ground_offset, points=points)
        run.progress("extrude", len(table), len(table))
        gone_prep = None if gone is None else prepare_buildings(gone, frame, options, dem_prefetch=prefetch, ground_offset=ground_offset)
        root = quadtree_plan(prep.centres, prep.sizes, options.max_features)
        nodes = list(root.walk())
        implicit = 0 <= options.implicit_tiles < len(nodes)
        key = build_key(
            "buildings-1",
            file_fingerprint(table.source),
            file_fingerprint(options.dem) if options.dem else None,
            options.height,
            options.floors,
            options.storey_height,
            options.default_height,
            options.max_features,
            frame.to_dict(),
            *(
                [
                    points.fingerprint,
                    {k: v for k, v in options.key().items() if k in HEIGHT_OPTIONS},
                ]
                if points is not None
                else []
            ),
            *(["implicit", options.subtree_levels] if implicit else []),
        )
        return BuildingsPlan(
            key,
            [(node.name, node.features) for node in nodes],
            table=table,
            prep=prep,
            root=root,
            frame=frame,
            replaced=len(replaced),
            replaced_rows=None if gone is None or gone_prep is None else search_rows(run.id, gone, gone_prep),
            replaced_table=gone,
            link_points=options.link_points and points is None,
            subtree_levels=options.subtree_levels if implicit else 0,
        )

    def build(self, plan: BuildingsPlan, run: LayerRun) -> LayerOutput:
        assert (
            run.store is not None and plan.table is not None and plan.prep is not None and plan.root is not None and plan.frame is not None
        )
        table, prep, root = plan.table, plan.prep, plan.root
        if table.skipped:
            run.warn(FeatureSkippedWarning, f"{table.source.name}: skipped {len(table.skipped)} footprint(s): {issue_ids(table.skipped)}")
        if table.repaired:
            run.warn(
                FeatureRepairedWarning,
                f"{table.source.name}: repaired {len(table.repaired)} invalid footprint(s): {issue_ids(table.repaired)}",
            )
        for category, message in prep.warnings:
            run.warn(category, f"{table.source.name}: {message}")
        # the search index takes the rows now and indexes them while the tiles are encoded
        rows = search_rows(run.id, table, prep)
        geometries = table.geometries
        if plan.replaced_rows is not None and plan.replaced_table is not None:
            rows = concat_rows(rows, plan.replaced_rows)
            geometries = np.concatenate([geometries, plan.replaced_table.geometries])
        links = point_links(geometries, table.crs, run) if plan.link_points else None
        if links is not None:  # the index's rows only: the tiles' metadata stays the footprints'
            assert rows.columns is not None and rows.types is not None
            rows.columns = {**rows.columns, **links}
            rows.types = {**rows.types, **{name: INT32 if name == "n_points" else FLOAT64 for name in links}}
            rows.derived = tuple(links)
        run.add_search(rows)
        m = prep.mesh
        # once for every tile: positions in glTF axes, normals quantized as the GLB stores them
        # (parents repeat most of the leaves' buildings), and each building's box (a tile's box
        # is the union of its buildings' boxes)
        gl_positions, gl_normals, box_lo, box_hi = gltf_layer_arrays(m)
        mesh = BuildingMesh(gl_positions, gl_normals, m.triangles, m.vertex_offsets, m.triangle_offsets)
        columns = FeatureColumns.encode(table.columns, table.types)
        state = TileState(
            mesh=mesh,
            columns=columns,
            box_lo=box_lo,
            box_hi=box_hi,
            sink=run.store.sink(),
            inputs=FeatureInputs.of("buildings", mesh, columns, _CLASS_NAME, _CLASS_DESCRIPTION),
        )
        bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        triangles = 0
        leaves = {node.name for node in root.walk() if not node.children}
        for (name, _), (lo, hi, ntri) in zip(plan.jobs, run.map(tile_job, state, plan.jobs, stage="tiles")):
            bounds[name] = (lo, hi)
            if name in leaves:
                triangles += ntri
        extra: dict[str, Any] = {}
        if plan.subtree_levels:
            root_json, lo, hi, subtrees = implicit_replace_tree(root, bounds, lambda node: node.geometric_error, plan.subtree_levels)
            run.store.write_many([(path, data, None) for path, data in sorted(subtrees.items())])
            extra["schema"] = tile_metadata_schema()
        else:
            root_json, lo, hi = replace_tree(root, bounds, lambda node: node.geometric_error)
        root_json["transform"] = transform_list(plan.frame.matrix())
        diagonal = float(np.linalg.norm(hi - lo))
        west, south, east, north = prep.lonlat_bounds
        return LayerOutput(
            index=tileset_document(root_json, max(diagonal, 2.0 * root.geometric_error, 1.0), **extra),
            count=len(table),
            tiles=len(plan.jobs),
            triangles=triangles,
            bounds={
                "west": west,
                "south": south,
                "east": east,
                "north": north,
                "min_height": float(prep.base.min()),
                "max_height": float(prep.top.max()),
            },
            schema=dict(table.types),
            skipped=len(table.skipped),
            repaired=len(table.repaired),
            crs=crs_label(table.crs),
            info=BuildingsInfo(replaced_by_bim=plan.replaced or None),
            search=rows,
        )


def _check_named_attributes(table: FootprintTable, opts: BuildingsOptions) -> None:
    """A height or floors attribute the user named must exist in the file (the defaults,
    ``height`` and ``floors``, may be absent: then the next rule applies).

    Raises
    ------
    CimInputError
        Naming the option, the attribute and the attributes the file has.
    """
    defaults = {"height": BuildingsOptions.height, "floors": BuildingsOptions.floors}
    for name, flag in (("height", "--height-attr"), ("floors", "--floors-attr")):
        attr = getattr(opts, name)
        if attr is None or attr == defaults[name] or attr in table.columns:
            continue
        listed = ", ".join(table.columns) or "none"
        raise CimInputError(
            f"{table.source}: {flag} / option {name!r} names the attribute {attr!r}, which the file has not (its attributes: {listed})"
        )


def _terrain_error(run: LayerRun, dem: Path | None) -> float:
    """The finest error bound of a terrain layer of the city built from ``dem`` (0 when none)."""
    if dem is None:
        return 0.0
    for r in run.city.results("terrain"):
        if r.info is not None and any(Path(s).resolve() == Path(dem).resolve() for s in r.sources):
            return r.info.finest_error()  # type: ignore[attr-defined]
    return 0.0


def _city_frame(table: FootprintTable, opts: BuildingsOptions, prefetch: DemPrefetch | None) -> LocalFrame:
    """The centre of the footprints, on the ground (from the prefetched DEM window when there is
    one: opening the DEM again costs more than sampling the window)."""
    frame = origin_for(table)
    if opts.dem is not None:
        xmin, ymin, xmax, ymax = table.bounds
        x, y = np.array([(xmin + xmax) / 2]), np.array([(ymin + ymax) / 2])
        z = (
            prefetch.window(table.bounds, table.crs).sample(x, y, table.crs)
            if prefetch is not None
            else sample_dem(opts.dem, x, y, table.crs)
        )
        if np.isfinite(z[0]):
            frame = LocalFrame(frame.lon, frame.lat, float(z[0]))
    return frame


def _drop_replaced(table: FootprintTable, footprints: list[dict[str, Any]]) -> np.ndarray:
    """Rows of ``table`` whose footprint lies mostly (> 50 % of its area) under a BIM model's
    footprint (``{"wkt", "crs"}``, see :class:`cim.layers.bim.BimInfo`)."""
    import shapely
    from pyproj import CRS

    if not footprints:
        return np.empty(0, dtype=np.int64)
    tree = shapely.STRtree(table.geometries)
    rows: set[int] = set()
    for fp in footprints:
        geom, crs = shapely.from_wkt(fp["wkt"]), fp.get("crs")
        if crs is not None and not CRS.from_user_input(crs).equals(table.crs):
            t = transformer(CRS.from_user_input(crs), table.crs)
            geom = shapely.transform(geom, lambda xy, t=t: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        for i in tree.query(geom):
            g = table.geometries[i]
            if shapely.area(shapely.intersection(g, geom)) > 0.5 * shapely.area(g):
                rows.add(int(i))
    return np.array(sorted(rows), dtype=np.int64)


def search_rows(layer_id: str, table: FootprintTable, prep: PreparedBuildings) -> SearchRows:
    """Each building's footprint box (degrees), heights and attribute columns for the city's
    search index (titled by ``name``, searchable by its other text attributes; the index builds
    the rows in SQL), and its footprint (degrees) with its area in m² (in the file's projected
    CRS; on the local tangent plane for a geographic CRS) for the query API."""
    import shapely

    box = prep.lonlat_boxes
    if table.crs.is_projected:
        areas = shapely.area(table.geometries)
    else:
        areas = _tangent_plane_areas(table, prep)
    text_cols = tuple(name for name in table.columns if table.types[name] == "STRING" and name not in ("id", "name"))
    return SearchRows(
        layer_id,
        table.ids,
        None,
        None,
        (box[:, 0] + box[:, 2]) / 2.0,
        (box[:, 1] + box[:, 3]) / 2.0,
        box[:, 0],
        box[:, 1],
        box[:, 2],
        box[:, 3],
        prep.base,
        prep.top,
        columns=table.columns,
        types=table.types,
        title_column="name" if "name" in table.columns else None,
        text_columns=text_cols,
        rings=prep.lonlat_rings,
        areas=areas,
    )


def concat_rows(a: SearchRows, b: SearchRows) -> SearchRows:
    """One layer's column rows ``a`` then ``b`` (their footprints too); an attribute only one of
    them has is missing (NaN, None) in the other's rows."""
    assert a.columns is not None and b.columns is not None and a.types is not None and b.types is not None
    n, m = len(a.ids), len(b.ids)
    types = {**b.types, **a.types}
    columns = {}
    for name, kind in types.items():
        parts = []
        for rows, count in ((a, n), (b, m)):
            assert rows.columns is not None
            given = rows.columns.get(name)
            if given is None:
                given = np.full(count, None, dtype=object) if kind == "STRING" else np.full(count, np.nan)
            parts.append(np.asarray(given, dtype=object) if kind == "STRING" else np.asarray(given, dtype=np.float64))
        joined = np.concatenate(parts)
        if kind != "STRING" and name in a.columns and name in b.columns:
            joined = joined.astype(np.result_type(a.columns[name], b.columns[name]))
        columns[name] = joined
    rings = None
    if a.rings is not None and b.rings is not None:
        (xa, ra, pa, fa), (xb, rb, pb, fb) = a.rings, b.rings
        rings = (
            np.concatenate([xa, xb]),
            np.concatenate([ra[:-1], rb + ra[-1]]),
            np.concatenate([pa[:-1], pb + pa[-1]]),
            np.concatenate([fa, fb + n]),
        )
    areas = None if a.areas is None or b.areas is None else np.concatenate([a.areas, b.areas])

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(a, name), getattr(b, name)])

    return SearchRows(
        a.layer,
        cat("ids"),
        None,
        None,
        cat("lon"),
        cat("lat"),
        cat("west"),
        cat("south"),
        cat("east"),
        cat("north"),
        cat("base"),
        cat("top"),
        columns=columns,
        types=types,
        title_column=a.title_column,
        text_columns=tuple(dict.fromkeys(a.text_columns + b.text_columns)),
        derived=tuple(dict.fromkeys(a.derived + b.derived)),
        rings=rings,
        areas=areas,
    )


def _tangent_plane_areas(table: FootprintTable, prep: PreparedBuildings) -> np.ndarray:
    """Footprint areas (m²) of lon/lat footprints: square degrees scaled at each building's
    latitude (spherical; the error is far below a footprint's own accuracy)."""
    import shapely

    lat0 = np.radians((prep.lonlat_boxes[:, 1] + prep.lonlat_boxes[:, 3]) / 2.0)
    scale = (6378137.0 * np.pi / 180.0) ** 2 * np.cos(lat0)  # m² per square degree at each building
    return shapely.area(table.geometries) * scale
