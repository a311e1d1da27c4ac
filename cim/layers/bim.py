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
meshes are never all in memory); tiles read back their elements. The parts live in
:mod:`cim.layers.bim_placement` (where a model stands), :mod:`cim.layers.bim_spool` (meshes
placed and spooled) and :mod:`cim.layers.bim_tiles` (the tile tree and the GLBs); this module
reads the attributes, drives the kernel and writes the layer.

Where the time goes (2-core machines): the geometry process (ifcopenshell's iterator, forked
after this process has parsed the file; see :mod:`cim.sources.ifc.kernel`) is the critical
path. This process consumes its meshes from the first one on, while a helper thread reads the
georeference, the index and the attributes; what is left when the last mesh arrives (the tile
plan, the GLBs, the tilesets) takes 0.01–0.5 s. A tiny model of simple solids (a few elements:
:mod:`cim.sources.ifc.simple`) is made in this process instead, one step after the other: the
fork, its page faults and the thread hand-offs cost more than the whole of its attributes.
Measured against ifcopenshell's own iterator over the same file in ``benchmarks/bench_bim.py``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from cim.crs import crs_label
from cim.errors import CimInputError, CimIOError
from cim.formats.glb_table import ColumnBlock
from cim.formats.tileset import box_from_bounds, replace_tree, tileset_document, transform_list
from cim.kernels.frames import LocalFrame, ecef_to_geodetic
from cim.layers.base import LayerResult, Progress
from cim.layers.bim_placement import ModelPlacement, frame_for_model, resolve_placement
from cim.layers.bim_spool import MeshSpool, SpooledModel, convex_hull_xy, ingest_batch, new_model
from cim.layers.bim_tiles import (
    DETAIL_CLASSES,
    ENVELOPE_CLASSES,
    ElementFacts,
    TileNode,
    encode_tile,
    exterior_flags,
    plan_model_tiles,
    walk_nodes,
)
from cim.runtime import paused_gc
from cim.searchindex import SearchRows
from cim.sources.ifc import (
    ElementAttributes,
    ElementGeometry,
    GeometryLog,
    GeometryOptions,
    IfcElementIndex,
    GeometryStream,
    open_ifc,
    read_georeference,
    schema_name,
)
from cim.store import TileStore, build_key, file_fingerprint

__all__ = [
    "DETAIL_CLASSES", "ENVELOPE_CLASSES", "VIEWER_PROPERTIES", "BimOptions", "ModelPlacement", "build_bim_layer", "convex_hull_xy",
    "frame_for_model", "plan_model_tiles", "resolve_placement",
]

log = logging.getLogger("cim.bim")

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


def _model_name(path: Path, taken: set[str]) -> str:
    """A folder name for a model: its file's stem, each run of characters other than ASCII
    letters, digits, ``_.-`` made one ``_`` (a loop: compiling the regular expression that does
    it cost 0.5 ms in each conversion), unique among ``taken``."""
    chars: list[str] = []
    for c in path.stem:
        if c.isascii() and (c.isalnum() or c in "_.-"):
            chars.append(c)
        elif not chars or chars[-1] != "\0":
            chars.append("\0")
    base = "".join(chars).replace("\0", "_").strip("._") or "model"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


@dataclass
class _Prepared:
    """A model's elements read from the file, one row per geometry candidate (or per element drawn).

    Made in a thread while the geometry process works: on these machines the index, attributes
    and their encoding take 0.1–1.5 s per model, which on the critical path was 5–10 % of a
    conversion.
    """

    index: IfcElementIndex
    expected: dict[int, tuple[str, str]]
    facts: ElementFacts
    attrs: ElementAttributes
    block: ColumnBlock  # the encoded attribute columns
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
    facts = ElementFacts.read(index, elements)
    attrs = index.attributes(elements, max_properties=opts.max_properties)
    n = len(elements)
    attrs.columns["Model"] = np.full(n, name, dtype=object)
    attrs.types["Model"] = "STRING"
    attrs.columns["cim_level"] = np.where(facts.is_space, 5, 6).astype(np.int64)
    attrs.types["cim_level"] = "INT32"
    block = ColumnBlock(attrs.columns, attrs.types, attrs.present)
    return _Prepared(index, expected, facts, attrs, block, _search_properties(attrs), warnings)


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

    A model made in this process (``stream.in_process``) is read here, one step after the
    other: the kernel holds the GIL while it works, so a helper thread could not run beside it,
    and starting, waiting for and joining one cost 3–10 ms here, a sixth of such a model.
    """
    if stream.in_process:
        placement = _prepare_placement(f, path, frame, crs, origin, rotation, require_georef)
        prepared: Future = Future()
        prepared.set_result(_prepare_elements(f, path, name, opts))
        return _finish_model(stream, f, path, name, store, opts, placement, prepared, progress, geometry_done)
    helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cim-bim-prep")
    try:
        placed = helper.submit(_prepare_placement, f, path, frame, crs, origin, rotation, require_georef)
        prepared = helper.submit(_prepare_elements, f, path, name, opts)
        # pyproj makes a transformer's PROJ object once per thread (a general one costs
        # 0.1–0.3 s here, holding the GIL much of the time): make it in this thread, which
        # places the meshes, while the geometry process works ahead into its channel's buffer
        placement = placed.result()
        placement.enu(np.zeros((1, 3)))

        def done() -> None:
            if geometry_done is not None:  # (the last model's helper need not be waited for)
                helper.shutdown(wait=True)
                geometry_done()

        return _finish_model(stream, f, path, name, store, opts, placement, prepared, progress, done)
    finally:
        helper.shutdown(wait=False, cancel_futures=True)


def _finish_model(stream: GeometryStream, f, path: Path, name: str, store: TileStore, opts: BimOptions, placement: ModelPlacement,
                  prepared: Future, progress: Progress | None, geometry_done) -> dict:
    """Stream and spool the meshes, then plan and write the model (see :func:`_convert_model`)."""
    glog = GeometryLog()
    spool = MeshSpool()
    try:
        model = _stream_model(stream, name, path, placement, prepared, spool, glog, progress)
        prep = prepared.result()
        if geometry_done is not None:
            geometry_done()
        warnings = [f"{path.name}: {n}" for n in placement.notes] + prep.warnings
        warnings += [f"{path.name}: {w}" for w in glog.warnings(opts.geometry.element_timeout)]
        if model is None:
            raise CimInputError(f"{path}: no element has geometry" + (f" ({warnings[-1]})" if warnings else ""))
        return _write_model(f, model, spool, prep, store, opts, glog, warnings, progress)
    finally:
        spool.close()


def _stream_model(stream: GeometryStream, name: str, path: Path, placement: ModelPlacement, prepared, spool: MeshSpool, glog: GeometryLog,
                  progress) -> SpooledModel | None:
    """Spool the element meshes as they arrive, placed in batches of about 2,048 vertices (one
    pyproj call a batch; batches of 65,536 left 80 ms of a 3.6 s conversion, and of 8,192 a whole
    100-element model, to do after the last element). The batch before the last expected
    element is placed at once, so that only the last element is left to place after it (a
    batch costs 4–10 ms here, on the critical path at the end)."""
    model: SpooledModel | None = None
    normal_m = np.eye(3)
    batch: list[ElementGeometry] = []
    batch_vertices = done = 0
    for g in stream.elements(lambda: prepared.result().expected, glog):
        batch.append(g)
        batch_vertices += len(g.vertices)
        done += 1
        if batch_vertices >= 2048 or (prepared.done() and done + 1 >= len(prepared.result().expected)):
            if model is None:
                model, normal_m = new_model(name, path, placement, batch[0])
            ingest_batch(batch, model, spool, normal_m)
            batch, batch_vertices = [], 0
            if progress:
                progress(f"{name}: geometry", done, max(done, len(prepared.result().expected)) if prepared.done() else done)
    if batch:
        if model is None:
            model, normal_m = new_model(name, path, placement, batch[0])
        ingest_batch(batch, model, spool, normal_m)
    spool.finish()
    return model


def _write_model(f, model: SpooledModel, spool: MeshSpool, prep: _Prepared, store: TileStore, opts: BimOptions, glog: GeometryLog,
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
    n = len(model.ids)

    lo, hi = np.array(model.lo), np.array(model.hi)
    # what leaving an element out costs: its box diagonal; a space's faces lie on the walls
    # and slabs kept around it, so leaving it out changes the picture by its thinnest extent
    sizes = np.where(facts.is_space, (hi - lo).min(axis=1), np.linalg.norm(hi - lo, axis=1))
    tri_counts = spool.t_count_a
    exterior = exterior_flags(facts, model.ids, np.array(model.wlo), np.array(model.whi))
    keys, elev = facts.storey, facts.elevation
    order = sorted(set(keys.tolist()), key=lambda k: (elev.get(k, -np.inf), k))  # unassigned (-1) first
    root = plan_model_tiles(sizes, tri_counts, (lo + hi) / 2.0, keys, order, exterior, facts.detail,
                            max_triangles=opts.max_triangles, min_storey_size=opts.min_storey_size)

    nodes = walk_nodes(root)
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def write(node: TileNode) -> None:
        glb, blo, bhi = encode_tile(node, spool, model, prep.block, rows)
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

    tile, tlo, thi = replace_tree(root, bounds, lambda node: node.error)
    diagonal = float(np.linalg.norm(thi - tlo))
    props = [prep.search[r] for r in rows]
    summary = {
        "model": name,
        "source": model.source.name,
        "schema": schema_name(f),
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
        "kernel_processes": {"started": glog.processes, "forked": glog.forked, "in_process": glog.in_process},
        "search": {"lo": lo.tolist(), "hi": hi.tolist(), "properties": props},
    }
    doc = tileset_document(tile, max(diagonal, 1.0), extras={"cim": {k: v for k, v in summary.items() if k != "search"}})
    store.write(f"models/{name}/tileset.json", _json_bytes(doc))
    store.write(f"models/{name}/search.json", _json_bytes(summary["search"]))
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


def _json_bytes(obj) -> bytes:
    """Compact JSON (Python's C encoder serves only compact output: indenting a one-element
    model's tileset took 1.9 ms, as long as writing its tile)."""
    return (json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


# -- the layer ---------------------------------------------------------------------------------


@paused_gc  # (a generation-1 collection alone took 4 ms of converting a 22-element model)
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
        :func:`resolve_placement`; parsed, and refused when invalid, by the first model placed
        through it)
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
    for s in sources:
        if not s.is_file():
            raise CimIOError(f"{s}: no such IFC file")
    key = build_key(
        "bim-3", [file_fingerprint(s) for s in sources], frame.to_dict(), str(crs), origin, rotation, require_georef,
        repr(opts),  # the options' dataclass repr: as exact as asdict, without its deep copies (0.4 ms)
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
            by_name[name] = _convert_model(streams[k], f, path, name, frame, store, opts, crs=crs, origin=origin, rotation=rotation,
                                           require_georef=require_georef, progress=progress,
                                           geometry_done=(lambda k=k: start(k + 1)) if k + 1 < len(jobs) else None)
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


def _footprint_coords(model: SpooledModel, placement: ModelPlacement) -> dict:
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
