"""One IFC model → its tileset: attributes read while the geometry streams in, then tiles.

:func:`convert_model` drives one model: the geometry process (or this process, for a tiny model
of simple solids; see :mod:`cim.sources.ifc.kernel`) sends meshes element by element, which are
placed and spooled (:mod:`cim.layers.bim.spool`) while a helper thread reads the placement, the
element index and the attributes; then the model's tiles are planned
(:func:`cim.layers.bim.tiles.plan_model_tiles`) and encoded as tile jobs on the layer's pool,
and the model's own ``tileset.json`` (with a summary of the model in its extras) and
``search.json`` are written.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cim.crs import crs_label
from cim.engines import helper_executor
from cim.errors import CimInputError
from cim.formats.glb_table import ColumnBlock
from cim.formats.tileset import replace_tree, tileset_document
from cim.kernels.frames import LocalFrame, ecef_to_geodetic
from cim.layers.base import LayerRun
from cim.layers.bim.options import BimOptions
from cim.layers.bim.placement import ModelPlacement, resolve_placement
from cim.layers.bim.spool import MeshSpool, SpooledModel, ingest_batch, new_model, sort_elements
from cim.layers.bim.tiles import ElementFacts, ModelTiles, exterior_flags, plan_model_tiles, tile_job, walk_nodes
from cim.sources.ifc import (
    ElementAttributes,
    ElementGeometry,
    GeometryLog,
    GeometryStream,
    IfcElementIndex,
    read_georeference,
    schema_name,
)
from cim.warnings import AttributeWarning, CimWarning, GeometryWarning, GeoreferenceWarning

__all__ = ["PreparedModel", "Placing", "convert_model", "prepare_placement", "prepare_elements", "json_bytes"]


@dataclass(frozen=True)
class Placing:
    """How the models of a layer are placed (see :func:`cim.layers.bim.placement.resolve_placement`)."""

    frame: LocalFrame
    crs: Any  # a pyproj CRS or None
    origin: tuple[float, float, float] | None
    rotation: float | None
    require_georef: bool


@dataclass
class PreparedModel:
    """A model's elements read from the file, one row per geometry candidate (or per element drawn).

    Made in a thread while the geometry process works, so that the index, the attributes and
    their encoding stay off the critical path.
    """

    index: IfcElementIndex
    expected: dict[int, tuple[str, str]]
    facts: ElementFacts
    attrs: ElementAttributes
    block: ColumnBlock  # the encoded attribute columns
    search: list[dict]  # non-null attributes per row, for the search index
    warnings: list[tuple[type[CimWarning], str]]

    def row_of(self, ids: list[int]) -> np.ndarray | None:
        """Rows of ``ids``, or None when some were not prepared."""
        lookup = {int(i): r for r, i in enumerate(self.facts.ids)}
        rows = [lookup.get(i) for i in ids]
        return None if any(r is None for r in rows) else np.array(rows, dtype=np.int64)


def prepare_placement(f, path: Path, placing: Placing) -> ModelPlacement:
    """Read the georeference and decide the placement."""
    geo = read_georeference(f)
    return resolve_placement(
        geo,
        placing.frame,
        crs=placing.crs,
        origin=placing.origin,
        rotation=placing.rotation,
        require_georef=placing.require_georef,
        name=path.name,
    )


def in_city_datum(placement: ModelPlacement, path: Path, run: LayerRun) -> ModelPlacement:
    """``placement`` with the model's heights brought to the city's vertical datum, when its
    IfcProjectedCRS names a VerticalDatum PROJ knows (``EPSG:5737``, or a datum's name); a name
    PROJ does not know, or a datum it cannot convert here, is a warning naming the model."""
    name = placement.geo.vertical_datum
    if not name or placement.crs is None or placement.origin is not None:
        return placement  # no vertical datum, or heights given by the layer's own origin
    from pyproj.crs import CompoundCRS

    from cim.crs import parse_crs, to_lonlat
    from cim.datum import vertical_of
    from cim.errors import CimCRSError

    try:
        vertical = vertical_of(parse_crs(name))
    except CimCRSError:
        vertical = None
    if vertical is None:
        run.warn(
            GeoreferenceWarning,
            f"{path.name}: IfcProjectedCRS names the vertical datum {name!r}, which PROJ does not know: "
            f"its heights are taken as the city's ({run.city.vertical_datum})",
        )
        return placement
    enh = placement.map_coords(np.zeros((1, 3)))
    lon, lat = to_lonlat(enh[:, 0], enh[:, 1], placement.crs)
    dz = run.height_offset(CompoundCRS(f"{placement.crs.name} + {vertical.name}", [placement.crs, vertical]), lon, lat, path.name)
    if dz is None:
        return placement
    geo = placement.geo
    placement.geo = dataclasses.replace(geo, origin=(geo.origin[0], geo.origin[1], geo.origin[2] + float(dz[0]) / geo.map_unit))
    return placement


def prepare_elements(
    f, path: Path, name: str, opts: BimOptions, ids: list[int] | None = None, index: IfcElementIndex | None = None
) -> PreparedModel:
    """Index the file and read the attributes of the geometry candidates (or of ``ids``)."""
    index = index or IfcElementIndex(f)
    expected = index.body_candidates(opts.geometry().exclude)
    warnings: list[tuple[type[CimWarning], str]] = []
    heavy = [
        (el.GlobalId, el.is_a(), index.openings[i])
        for i, el in ((i, f.by_id(i)) for i in expected)
        if index.openings[i] > opts.max_voids > 0
    ]
    if heavy:
        warnings.append(
            (
                GeometryWarning,
                f"{path.name}: {len(heavy)} element(s) with more than {opts.max_voids} openings drawn without them: "
                + "; ".join(f"{g} ({c}, {k} openings)" for g, c, k in heavy[:10]),
            )
        )
    elements = [f.by_id(i) for i in (sorted(expected) if ids is None else ids)]
    facts = ElementFacts.read(index, elements)
    attrs = index.attributes(elements, max_properties=opts.max_properties)
    n = len(elements)
    attrs.columns["Model"] = np.full(n, name, dtype=object)
    attrs.types["Model"] = "STRING"
    attrs.columns["cim_level"] = np.where(facts.is_space, 5, 6).astype(np.int64)
    attrs.types["cim_level"] = "INT32"
    block = ColumnBlock(attrs.columns, attrs.types, attrs.present)
    return PreparedModel(index, expected, facts, attrs, block, search_properties(attrs), warnings)


def convert_model(
    stream: GeometryStream, f, path: Path, name: str, run: LayerRun, opts: BimOptions, placing: Placing, geometry_done=None
) -> dict:
    """Stream, spool, plan and write one model; returns its summary (kept in its tileset).

    ``stream`` is already running on ``f`` (the open file). This thread consumes its meshes from
    the first one on (a geometry process that cannot send blocks: attributes first held back
    the kernel for seconds on a large file), while a helper thread reads the placement, then the
    index and attributes. ``geometry_done()`` is called when the geometry has arrived and the
    helper thread has ended (the layer then starts the next model's geometry process, which can
    fork only while no other thread of this kind runs).

    A model made in this process (``stream.in_process``) is read here, one step after the
    other: the kernel holds the GIL while it works, so a helper thread could not run beside it.
    """
    if stream.in_process:
        placement = in_city_datum(prepare_placement(f, path, placing), path, run)
        prepared: Future = Future()
        prepared.set_result(prepare_elements(f, path, name, opts))
        return _finish_model(stream, f, path, name, run, opts, placement, prepared, geometry_done)
    helper = helper_executor(1, "bim-prep")
    try:
        placed = helper.submit(prepare_placement, f, path, placing)
        prepared = helper.submit(prepare_elements, f, path, name, opts)
        # pyproj makes a transformer's PROJ object once per thread (a general one is slow to make
        # and holds the GIL much of the time): make it in this thread, which places the meshes,
        # while the geometry process works ahead into its channel's buffer
        placement = in_city_datum(placed.result(), path, run)
        placement.enu(np.zeros((1, 3)))

        def done() -> None:
            if geometry_done is not None:  # (the last model's helper need not be waited for)
                helper.shutdown(wait=True)
                geometry_done()

        return _finish_model(stream, f, path, name, run, opts, placement, prepared, done)
    finally:
        helper.shutdown(wait=False, cancel_futures=True)


def _finish_model(
    stream: GeometryStream,
    f,
    path: Path,
    name: str,
    run: LayerRun,
    opts: BimOptions,
    placement: ModelPlacement,
    prepared: Future,
    geometry_done,
) -> dict:
    """Stream and spool the meshes, then plan and write the model (see :func:`convert_model`)."""
    glog = GeometryLog()
    spool = MeshSpool()
    try:
        model = _stream_model(stream, name, path, placement, prepared, spool, glog, run)
        prep = prepared.result()
        if geometry_done is not None:
            geometry_done()
        warnings = [(GeoreferenceWarning, f"{path.name}: {n}") for n in placement.notes] + prep.warnings
        warnings += [(GeometryWarning, f"{path.name}: {w}") for w in glog.warnings(opts.element_timeout)]
        if model is None:
            raise CimInputError(f"{path}: no element has geometry" + (f" ({warnings[-1][1]})" if warnings else ""))
        return _write_model(f, model, spool, prep, run, opts, glog, warnings)
    finally:
        spool.close()


def _stream_model(
    stream: GeometryStream, name: str, path: Path, placement: ModelPlacement, prepared, spool: MeshSpool, glog: GeometryLog, run: LayerRun
) -> SpooledModel | None:
    """Spool the element meshes as they arrive, placed in batches of about 2,048 vertices (one
    pyproj call a batch: larger batches left more to place after the last element arrived). The
    batch before the last expected element is placed at once, so that only the last element is
    left to place after it."""
    model: SpooledModel | None = None
    normal_m = np.eye(3)
    batch: list[ElementGeometry] = []
    batch_vertices = 0
    for done, g in enumerate(stream.elements(lambda: prepared.result().expected, glog), start=1):
        far = implausible_vertices(g.vertices)
        if far is not None:
            glog.failed.append((g.guid, g.ifc_class, far))
            continue
        batch.append(g)
        batch_vertices += len(g.vertices)
        if batch_vertices >= 2048 or (prepared.done() and done + 1 >= len(prepared.result().expected)):
            if model is None:
                model, normal_m = new_model(name, path, placement, batch[0])
            ingest_batch(batch, model, spool, normal_m)
            batch, batch_vertices = [], 0
            run.progress(f"{name}: geometry", done, max(done, len(prepared.result().expected)) if prepared.done() else done)
    if batch:
        if model is None:
            model, normal_m = new_model(name, path, placement, batch[0])
        ingest_batch(batch, model, spool, normal_m)
    spool.finish()
    if model is not None:
        sort_elements(model, spool)
    return model


#: metres from the model's world origin beyond which an element's vertex is a damaged number
#: (a 1E300 coordinate), not a building part
MAX_ELEMENT_REACH = 100_000.0


def implausible_vertices(vertices: np.ndarray) -> str | None:
    """Why an element's vertices cannot be drawn (not numbers, or farther than
    :data:`MAX_ELEMENT_REACH` from the model's origin), or None."""
    v = np.asarray(vertices)
    if len(v) == 0:
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        reach = float(np.abs(v).max())
    if not np.isfinite(reach):
        return "vertices that are not numbers"
    if reach > MAX_ELEMENT_REACH:
        return f"a vertex {reach:.3g} m from the model's origin"
    return None


def _write_model(
    f,
    model: SpooledModel,
    spool: MeshSpool,
    prep: PreparedModel,
    run: LayerRun,
    opts: BimOptions,
    glog: GeometryLog,
    warnings: list[tuple[type[CimWarning], str]],
) -> dict:
    """Plan the model's tiles, encode them as tile jobs, write its tileset and search rows."""
    assert run.store is not None
    name, placement = model.name, model.placement
    rows = prep.row_of(model.ids)
    if rows is None:  # the kernel drew elements the index did not expect: read them all again
        prep = prepare_elements(f, model.source, name, opts, ids=model.ids, index=prep.index)
        rows = np.arange(len(model.ids))
    attrs, facts = prep.attrs, prep.facts.take(rows)
    if attrs.dropped:
        warnings.append(
            (
                AttributeWarning,
                f"{model.source.name}: {attrs.dropped} property column(s) beyond the {opts.max_properties} most common left out",
            )
        )
    n = len(model.ids)

    lo, hi = np.array(model.lo), np.array(model.hi)
    # what leaving an element out costs: its box diagonal; a space's faces lie on the walls
    # and slabs kept around it, so leaving it out changes the picture by its thinnest extent
    sizes = np.where(facts.is_space, (hi - lo).min(axis=1), np.linalg.norm(hi - lo, axis=1))
    tri_counts = spool.t_count_a
    exterior = exterior_flags(facts, model.ids, np.array(model.wlo), np.array(model.whi))
    keys, elev = facts.storey, facts.elevation
    order = sorted(set(keys.tolist()), key=lambda k: (elev.get(k, -np.inf), k))  # unassigned (-1) first
    root = plan_model_tiles(
        sizes,
        tri_counts,
        (lo + hi) / 2.0,
        keys,
        order,
        exterior,
        facts.detail,
        max_triangles=opts.max_triangles,
        min_storey_size=opts.min_storey_size,
    )

    nodes = walk_nodes(root)
    state = ModelTiles(spool, model, prep.block, rows, run.store.sink(), f"models/{name}/tiles")
    bounds = {node.name: box for node, box in zip(nodes, run.map(tile_job, state, nodes, stage=f"{name}: tiles"))}
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
        "warnings": [[category.__name__, message] for category, message in warnings],
        "seconds": round(glog.seconds, 3),
        "kernel_peak_mb": round(glog.kernel_peak_mb, 1),
        "kernel_processes": {"started": glog.processes, "forked": glog.forked, "in_process": glog.in_process},
        "search": {"lo": lo.tolist(), "hi": hi.tolist(), "properties": props},
    }
    doc = tileset_document(tile, max(diagonal, 1.0), extras={"cim": {k: v for k, v in summary.items() if k != "search"}})
    run.store.write(f"models/{name}/tileset.json", json_bytes(doc))
    run.store.write(f"models/{name}/search.json", json_bytes(summary["search"]))
    return summary


def _footprint_coords(model: SpooledModel, placement: ModelPlacement) -> dict:
    """The model's convex footprint in the CRS it was placed through (the map conversion's, or
    the override's), else in lon/lat (EPSG:4326): never through a new CRS transformer, which
    costs more than a small model's whole conversion; the buildings layer converts footprints
    into its CRS when it uses them."""
    hull = np.asarray(model.hull, dtype=np.float64).reshape(-1, 2)
    world = np.hstack([hull, np.full((len(hull), 1), float(np.min(np.array(model.wlo)[:, 2])))])
    if placement.crs is not None:
        return {"xy": placement.map_coords(world)[:, :2].tolist(), "crs": crs_label(placement.crs)}
    lon, lat, _ = ecef_to_geodetic(placement.frame.to_ecef(placement.enu(world)))
    return {"xy": np.stack([lon, lat], axis=1).tolist(), "crs": "EPSG:4326"}


def _storey_label(f, key: int, elev: dict) -> dict:
    if key == -1:
        return {"name": None, "elevation": None}
    s = f.by_id(key)
    return {"name": s.Name or s.LongName, "elevation": round(elev.get(key, 0.0), 3), "GlobalId": s.GlobalId}


def search_properties(attrs: ElementAttributes) -> list[dict]:
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


def json_bytes(obj) -> bytes:
    """Compact JSON (Python's C encoder serves only compact output; indenting takes the slow
    pure-Python encoder)."""
    return (json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")
