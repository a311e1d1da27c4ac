"""The buildings layer: footprints → LOD1 prisms → quadtree of GLB tiles → ``tileset.json``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio

from cim.crs import crs_label, parse_crs, to_lonlat
from cim.formats.glb import FeatureColumns, encode_feature_mesh
from cim.formats.tileset import enu_to_gltf, replace_tree, tileset_document, transform_list
from cim.layers.base import LayerResult, Progress
from cim.kernels.extrude import BuildingMesh, extrude_footprints, gather_tile, gltf_layer_arrays
from cim.kernels.extrude import warm_up as extrude_warm_up
from cim.kernels.frames import LocalFrame
from cim.kernels.ragged import take_ragged
from cim.kernels.raster import bilinear_sample
from cim.searchindex import SearchRows
from cim.errors import CimInputError
from cim.sources.dem import DemPrefetch, read_dem_window
from cim.sources.footprints import FootprintTable, footprint_rings
from cim.engines import run_jobs
from cim.store import TileStore, atomic_write_bytes, build_key, file_fingerprint, write_new_bytes
from cim.tiling.quadtree import quadtree_plan

log = logging.getLogger("cim.buildings")



@dataclass
class BuildingOptions:
    """How heights and tiles are made.

    Attributes
    ----------
    height : attribute with the height in metres (first choice)
    floors : attribute with the number of floors (second choice, times ``storey_height``)
    storey_height : metres per floor
    default_height : metres, for buildings with neither (one warning gives their count)
    dem : a DEM to stand buildings on (base = lowest ground under the footprint)
    max_features : most buildings in one tile
    workers : parallel workers (default: the number of cores)
    engine : where tile jobs run: ``"auto"``, ``"threads"`` or ``"processes"`` (see cim.engines)
    ground_offset : metres added to the ground sampled from the DEM. A city with a terrain layer
        sinks its buildings by the terrain's finest error bound: the rendered ground is the DEM
        within that bound, so a base that low never floats above it
    """

    height: str | None = "height"
    floors: str | None = "floors"
    storey_height: float = 3.0
    default_height: float = 10.0
    dem: Path | None = None
    max_features: int = 2000
    workers: int | None = None
    engine: str = "threads"  # measured: see benchmarks/bench_buildings.py --engine
    ground_offset: float = 0.0


@dataclass
class PreparedBuildings:
    """Buildings in the local frame, ready to tile."""

    mesh: BuildingMesh
    centres: np.ndarray  # (n, 2) ENU
    sizes: np.ndarray  # (n,) metres
    base: np.ndarray  # (n,)
    top: np.ndarray  # (n,)
    lonlat_boxes: np.ndarray  # (n, 4) west, south, east, north of each footprint, degrees
    warnings: list[str] = field(default_factory=list)

    @property
    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of all the footprints, degrees."""
        b = self.lonlat_boxes
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


@dataclass
class _TileState:
    """Read-only data every tile job of a buildings layer shares (inherited by forked workers)."""

    mesh: BuildingMesh
    columns: FeatureColumns
    box_lo: np.ndarray
    box_hi: np.ndarray
    root: Path
    done: frozenset[str]
    in_place: bool = False  # no tileset.json names the tiles yet: write them without a rename


def _encode_tile(state: _TileState, job: tuple[str, np.ndarray]) -> tuple[str, np.ndarray, np.ndarray, int, int]:
    """Encode and write one tile; returns (file, box lo, box hi, triangles, bytes or -1 if kept)."""
    name, features = job
    lo = state.box_lo[features].min(axis=0)
    hi = state.box_hi[features].max(axis=0)
    rel = f"tiles/{name}.glb"
    to = state.mesh.triangle_offsets
    ntri = int((to[features + 1] - to[features]).sum())
    if rel in state.done:
        return rel, lo, hi, ntri, -1
    centre = (lo + hi) / 2.0
    gl_centre = enu_to_gltf(centre)
    local, nrm, tri, vfeat = gather_tile(state.mesh, features, gl_centre)  # glTF axes, quantized normals
    ptable = state.columns.take(features, "building", "A building footprint extruded to LOD1 (CIM2)", ragged=take_ragged)
    gl_lo, gl_hi = enu_to_gltf(lo - centre), enu_to_gltf(hi - centre)
    glb = encode_feature_mesh(
        local, nrm, tri, vfeat, ptable, gl_centre, position_bounds=(np.minimum(gl_lo, gl_hi), np.maximum(gl_lo, gl_hi)),
    )
    (write_new_bytes if state.in_place else atomic_write_bytes)(state.root / rel, glb)
    return rel, lo, hi, ntri, len(glb)


def building_heights(table: FootprintTable, opts: BuildingOptions) -> tuple[np.ndarray, list[str]]:
    """Height of each building: the height attribute, else floors × storey height, else default."""
    n = len(table)
    heights = np.full(n, np.nan)
    notes = []
    if opts.height and opts.height in table.columns and table.types[opts.height] != "STRING":
        heights = np.asarray(table.columns[opts.height], dtype=np.float64).copy()
    elif opts.height and opts.height in table.columns:
        heights = np.array([_to_float(v) for v in table.columns[opts.height]])
    heights[~(heights > 0)] = np.nan
    missing = np.isnan(heights)
    if missing.any() and opts.floors and opts.floors in table.columns:
        floors = np.array([_to_float(v) for v in table.columns[opts.floors]]) if table.types[opts.floors] == "STRING" else np.asarray(table.columns[opts.floors], dtype=np.float64)
        use = missing & (floors > 0)
        heights[use] = floors[use] * opts.storey_height
        if use.any():
            notes.append(f"{int(use.sum())} building(s) took their height from {opts.floors!r} × {opts.storey_height} m")
    missing = np.isnan(heights)
    if missing.any():
        heights[missing] = opts.default_height
        notes.append(f"{int(missing.sum())} of {n} building(s) have no height; used the default {opts.default_height} m")
    return heights, notes


def _to_float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def prepare_buildings(
    table: FootprintTable, frame: LocalFrame, opts: BuildingOptions, dem_prefetch: DemPrefetch | None = None
) -> PreparedBuildings:
    """Heights, bases and LOD1 meshes of every building, in the frame's ENU metres.

    One pass in this process: the rings are projected once, the DEM window under the footprints
    is sampled at every vertex (a building's base is its lowest ground), and the compiled
    extrusion writes the meshes. (Chunks in forked processes were used while the extrusion was
    numpy: each child then paid the page faults of its own copies, and a compiled kernel would
    pay numba's start-up in every child.)
    """
    warnings: list[str] = []
    heights, notes = building_heights(table, opts)
    warnings += notes
    n = len(table)
    dem = None
    if opts.dem is not None:
        dem = dem_prefetch.window(table.bounds, table.crs) if dem_prefetch is not None else read_dem_window(opts.dem, table.bounds, table.crs)

    coords, ring_offsets, poly_offsets, part_feature = footprint_rings(table.geometries)
    starts = ring_offsets[poly_offsets[np.searchsorted(part_feature, np.arange(n))]]  # each building's first coordinate
    lon, lat = to_lonlat(coords[:, 0], coords[:, 1], table.crs)
    ground, up = frame.ground_and_up(lon, lat)
    if dem is not None:
        z = dem.sample(coords[:, 0], coords[:, 1], table.crs)
        with np.errstate(invalid="ignore"):
            base = np.fmin.reduceat(z, starts)
        base += opts.ground_offset  # NaN (off the DEM) stays NaN
        outside = np.isnan(base)
        if outside.all():
            raise CimInputError(f"{table.source}: no footprint lies on the DEM {dem.path} (check both files' CRS)")
        if outside.any():
            fill = float(np.nanmedian(base))
            ids = ", ".join(map(str, table.ids[outside][:10]))
            warnings.append(
                f"{int(outside.sum())} building(s) lie outside the DEM {dem.path.name}; base set to the median "
                f"ground {fill:.1f} m ({ids}{', ...' if outside.sum() > 10 else ''})"
            )
            base[outside] = fill
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
    boxes = np.stack([np.minimum.reduceat(lon, starts), np.minimum.reduceat(lat, starts), np.maximum.reduceat(lon, starts), np.maximum.reduceat(lat, starts)], axis=1)
    return PreparedBuildings(mesh, centres, sizes, base, top, boxes, warnings)


_warm_up: threading.Thread | None = None


def warm_up_kernels() -> None:
    """Start loading the compiled extrusion kernels on a background thread (once per process).

    numba's first call in a process costs about 0.4 s (its typing registries and the cached
    machine code); started before the footprints are read, it overlaps the parts of reading that
    run without the GIL (GDAL, GEOS) instead of waiting in front of the extrusion.
    """
    global _warm_up
    if _warm_up is None:
        _warm_up = threading.Thread(target=_load_kernels, name="cim-numba-warm-up", daemon=True)
        _warm_up.start()


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
    except Exception:  # noqa: BLE001 - an optimisation only: the build's own reads report errors
        return None


def origin_for(table: FootprintTable, ground_height: float = 0.0) -> LocalFrame:
    """A local frame at the centre of a footprint table's extent."""
    xmin, ymin, xmax, ymax = table.bounds
    lon, lat = to_lonlat(np.array([(xmin + xmax) / 2]), np.array([(ymin + ymax) / 2]), table.crs)
    return LocalFrame(float(lon[0]), float(lat[0]), ground_height)


def build_buildings_layer(
    table: FootprintTable,
    out_dir: str | Path,
    frame: LocalFrame,
    opts: BuildingOptions | None = None,
    *,
    layer_id: str = "buildings",
    progress: Progress | None = None,
    search: bool = True,
    dem_prefetch: DemPrefetch | None = None,
    search_sink: Callable[[SearchRows], None] | None = None,
) -> LayerResult:
    """Write a buildings layer: ``out_dir/tileset.json`` and ``out_dir/tiles/*.glb``.

    Parameters
    ----------
    table : the footprints (see :func:`cim.sources.footprints.read_footprints`)
    out_dir : the layer folder
    frame : the city's local frame; the tileset's root transform is its ENU→ECEF matrix
    opts : heights, DEM, tile size
    progress : called as ``progress(stage, done, total)``
    dem_prefetch : the DEM window under the footprints, already being read (see
        :func:`prefetch_dem_for`)
    search_sink : called with the layer's search rows before the tiles are encoded (a
        :class:`cim.searchindex.SearchIndexWriter` indexes them meanwhile)
    """
    t0 = time.perf_counter()
    opts = opts or BuildingOptions()
    out_dir = Path(out_dir)
    if progress:
        progress("extrude", 0, len(table))
    prep = prepare_buildings(table, frame, opts, dem_prefetch=dem_prefetch)
    if progress:
        progress("extrude", len(table), len(table))
    for w in prep.warnings:
        log.warning("%s: %s", table.source.name, w)
    root = quadtree_plan(prep.centres, prep.sizes, opts.max_features)
    nodes = list(root.walk())
    key = build_key(
        "buildings-1",
        file_fingerprint(table.source),
        file_fingerprint(opts.dem) if opts.dem else None,
        opts.height, opts.floors, opts.storey_height, opts.default_height, opts.max_features,
        frame.to_dict(),
    )
    store = TileStore(out_dir, key)
    types = table.types
    m = prep.mesh
    # once for every tile: positions in glTF axes, normals quantized as the GLB stores them
    # (parents repeat 80 % of the leaves' buildings, so per-tile conversion did it 1.8 times),
    # and each building's box (a tile's box is the union of its buildings' boxes)
    gl_positions, gl_normals, box_lo, box_hi = gltf_layer_arrays(m)
    state = _TileState(
        mesh=BuildingMesh(gl_positions, gl_normals, m.triangles, m.vertex_offsets, m.triangle_offsets),
        columns=FeatureColumns.encode(table.columns, table.types),
        box_lo=box_lo,
        box_hi=box_hi,
        root=out_dir,
        done=frozenset(store.done),
        # a first build: nothing serves these tiles before tileset.json is written, last; a tile
        # torn by a crash has no line in the build log, so a resumed build writes it again
        in_place=store.unpublished("tileset.json"),
    )
    rows = search_rows(layer_id, table, prep) if search else None
    if rows is not None and search_sink is not None:
        search_sink(rows)
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    triangles = 0
    jobs = ((node.name, node.features) for node in nodes)
    results = run_jobs(_encode_tile, state, jobs, workers=opts.workers, engine=opts.engine)
    for i, (node, (rel, lo, hi, ntri, size)) in enumerate(zip(nodes, results)):
        if size >= 0:
            store.record(rel, size)
        else:
            store.keep(rel)
        bounds[node.name] = (lo, hi)
        if not node.children:
            triangles += ntri
        if progress:
            progress("tiles", i + 1, len(nodes))

    root_json, lo, hi = replace_tree(root, bounds, lambda node: node.geometric_error)
    root_json["transform"] = transform_list(frame.matrix())
    diagonal = float(np.linalg.norm(hi - lo))
    doc = tileset_document(root_json, max(diagonal, 2.0 * root.geometric_error, 1.0))
    store.finish("tileset.json", doc)

    west, south, east, north = prep.lonlat_bounds
    result = LayerResult(
        id=layer_id,
        kind="buildings",
        path=out_dir,
        count=len(table),
        tiles=len(nodes),
        triangles=triangles,
        bytes=store.size_on_disk(),
        bounds={"west": west, "south": south, "east": east, "north": north, "min_height": float(prep.base.min()), "max_height": float(prep.top.max())},
        schema=dict(types),
        seconds=time.perf_counter() - t0,
        resumed_tiles=store.resumed,
        skipped=len(table.skipped),
        repaired=len(table.repaired),
        warnings=prep.warnings,
    )
    result.search = rows
    log.info(
        "buildings %s: %d buildings, %d tiles, %d triangles, %.1f MB, %s, %.2f s",
        layer_id, result.count, result.tiles, triangles, result.bytes / 1e6, crs_label(table.crs), result.seconds,
    )
    return result


def search_rows(layer_id: str, table: FootprintTable, prep: PreparedBuildings) -> SearchRows:
    """Each building's footprint box (degrees), heights and attribute columns for the city's
    search index (titled by ``name``, searchable by its other text attributes; the index builds
    the rows in SQL)."""
    box = prep.lonlat_boxes
    text_cols = tuple(name for name in table.columns if table.types[name] == "STRING" and name not in ("id", "name"))
    return SearchRows(
        layer_id, table.ids, None, None, (box[:, 0] + box[:, 2]) / 2.0, (box[:, 1] + box[:, 3]) / 2.0,
        box[:, 0], box[:, 1], box[:, 2], box[:, 3],
        prep.base, prep.top, columns=table.columns, types=table.types,
        title_column="name" if "name" in table.columns else None, text_columns=text_cols,
    )
