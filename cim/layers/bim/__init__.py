"""The BIM layer: IFC models → georeferenced 3D Tiles with per-element metadata and LODs.

Each model becomes its own tileset (``models/<name>/tileset.json``), joined under the layer's
root, whose transform is the city frame's ENU→ECEF matrix. Inside a model:

1. the **exterior** tile: roofs, slabs, curtain walls, elements marked ``IsExternal``, and for
   elements that say nothing, those on the model's outer boundary; geometric error = the size
   (bounding-box diagonal) of the largest element it leaves out;
2. **storey** tiles (each storey cut under a triangle budget): the storey's building fabric,
   leaving out spaces, furniture, MEP and elements under ``min_storey_size``; error = the
   largest of those it leaves out;
3. **detail** tiles: what the storey part's tile leaves out, and only that (the storey tile
   refines by ADD: its detail child adds to it instead of repeating its fabric); error 0.

The exterior is replaced (REPLACE) by the storey tiles, which hold every element the exterior
shows again, so a client at full detail draws each element exactly once.

Every vertex carries its element's feature id into an ``EXT_structural_metadata`` table of the
element's attributes (see :meth:`cim.sources.ifc.IfcElementIndex.attributes`) plus ``Model``
and ``cim_level`` (5 for spaces, 6 for components). Transparent materials (glazing) go to a
second primitive with ``alphaMode: BLEND``.

Geometry streams from the kernel element by element into a spool (float64 city ENU; in memory
up to 64 MB, then on disk, so a large model's meshes are never all in memory); once a model's
geometry is in, its elements are put in STEP id order (the kernel's threads send them in no fixed
order), so every output byte follows from the file alone; tiles read back their elements. The parts live in
:mod:`cim.layers.bim.placement` (where a model stands), :mod:`cim.layers.bim.spool` (meshes
placed and spooled), :mod:`cim.layers.bim.tiles` (the tile tree and the GLBs) and
:mod:`cim.layers.bim.model` (one model: attributes read while its geometry streams in, then its
tiles); this module is the layer: it drives the models one after the other (the next model's
geometry process starting while the current model's tiles are encoded) and joins their tilesets.

The tile jobs are a model's tiles (:func:`cim.layers.bim.tiles.tile_job`), each a function of the
model's spooled meshes and attribute block and one tile of its plan, run on the engine's pool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from cim import warnings as cim_warnings
from cim.crs import crs_label, parse_crs
from cim.errors import CimInputError, CimIOError
from cim.formats.tileset import box_from_bounds, tileset_document, transform_list
from cim.kernels.frames import LocalFrame, ecef_to_geodetic
from cim.layers.base import LayerBuilder, LayerInfo, LayerOutput, LayerPlan, LayerRun
from cim.layers.bim.model import Placing, convert_model
from cim.layers.bim.options import VIEWER_PROPERTIES, BimOptions
from cim.layers.bim.placement import ModelPlacement, frame_for_model, resolve_placement
from cim.layers.bim.spool import convex_hull_xy
from cim.layers.bim.tiles import DETAIL_CLASSES, ENVELOPE_CLASSES, plan_model_tiles
from cim.searchindex import SearchRows
from cim.sources.ifc import GeometryStream, open_ifc, schema_name
from cim.sources.ifc.integrity import check_integrity, product_classes
from cim.store import build_key, file_fingerprint

__all__ = [
    "BimLayer",
    "BimOptions",
    "BimInfo",
    "BimPlan",
    "DETAIL_CLASSES",
    "ENVELOPE_CLASSES",
    "VIEWER_PROPERTIES",
    "ModelPlacement",
    "convex_hull_xy",
    "frame_for_model",
    "ifc_files",
    "plan_model_tiles",
    "resolve_placement",
]


@dataclass
class BimInfo(LayerInfo):
    """What a BIM layer adds to its ``city.json`` entry."""

    #: each model's convex footprint: ``{"model", "wkt", "crs"}`` in the CRS it was placed
    #: through (its map conversion's, or the layer's with an ``origin``), else EPSG:4326; the
    #: buildings layer drops the LOD1 buildings they replace
    footprints: list[dict[str, str]]
    #: per-model summaries (placement, counts, failures, storeys)
    models: list[dict[str, Any]]
    viewer_properties: dict[str, str]
    #: the IFC classes of the elements, sorted
    classes: list[str]
    #: the storeys' names in elevation order
    storey_names: list[str]
    #: the property that names an element in tiles and search results (the viewer and exporters
    #: match features by it)
    id_property: str = "GlobalId"


@dataclass
class BimPlan(LayerPlan):
    files: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    placing: Placing | None = None
    options: BimOptions = field(default_factory=BimOptions)


def ifc_files(sources: list[Path]) -> list[Path]:
    """Files and folders (their ``*.ifc``, sorted) as one list of IFC files."""
    files = [q for p in sources for q in (sorted(p.glob("*.ifc")) if p.is_dir() else [p])]
    if not files:
        raise CimInputError(f"no .ifc file in {', '.join(map(str, sources))}")
    for f in files:
        if not f.is_file():
            raise CimIOError(f"{f}: no such IFC file")
    return files


class BimLayer(LayerBuilder[BimOptions, BimPlan]):
    """IFC models (IFC2x3, IFC4, IFC4X3) → one 3D Tiles layer: a root with one child tileset per
    model (``models/<model>/tileset.json`` and its ``tiles/*.glb``).

    Models are placed by their georeference (IfcMapConversion, ePSet_MapConversion, IfcSite
    latitude/longitude), or by the ``origin``/``rotation`` options. A model with none of these
    is placed at the city's origin (with a warning) when the city has one; a conversion on its
    own, where the model itself would fix the city's origin, refuses it.
    """

    kind = "bim"
    Options = BimOptions
    content = ("models",)
    order = 30
    cim_level = 6
    multiple_sources = True
    summary = "Convert IFC models (IFC2x3, IFC4, IFC4X3; files or folders) into georeferenced 3D Tiles."

    def plan(self, sources: list[Path], options: BimOptions, run: LayerRun) -> BimPlan:
        files = ifc_files(sources)
        crs_text = run.crs(options.crs)
        crs = parse_crs(crs_text, what=f"layer {run.id}: crs") if crs_text is not None else None  # refused before any file is read
        require_georef = run.frame is None
        frame = run.propose_frame(lambda: frame_for_model(files[0], crs=crs, origin=options.origin, rotation=options.rotation))
        placing = Placing(frame, crs, options.origin, options.rotation, require_georef)
        key = build_key(
            "bim-4",
            [file_fingerprint(s) for s in files],
            frame.to_dict(),
            str(crs),
            options.origin,
            options.rotation,
            require_georef,
            options.key(),
        )
        taken: set[str] = set()
        names = [_model_name(p, taken) for p in files]
        return BimPlan(key, names, files=files, names=names, placing=placing, options=options)

    def build(self, plan: BimPlan, run: LayerRun) -> LayerOutput:
        assert run.store is not None and plan.placing is not None
        store, opts, frame = run.store, plan.options, plan.placing.frame
        by_name: dict[str, dict | None] = {}
        for name in plan.names:  # models finished by an earlier run of the same build are read back
            finished = store.is_done(f"models/{name}/tileset.json") and store.is_done(f"models/{name}/search.json")
            by_name[name] = _load_summary(run.out, name) if finished else None
        jobs = [(p, n) for p, n in zip(plan.files, plan.names) if by_name[n] is None]
        geometry = opts.geometry()
        # one geometry process at a time; the next model's starts when the current model's geometry
        # is in, behind its tiling (it then parses its file itself); the first forks after this
        # process has parsed the file, and shares the parsed model
        streams: dict[int, GeometryStream] = {}

        def start(k: int) -> None:
            if k < len(jobs) and k not in streams:
                streams[k] = GeometryStream(jobs[k][0], geometry)

        try:
            for k, (path, name) in enumerate(jobs):
                f = open_ifc(path)
                integrity = check_integrity(path, product_classes(schema_name(f)))
                if not integrity.whole:
                    run.warn(cim_warnings.GeometryWarning, f"{path.name}: {integrity.message()}")
                if k not in streams:
                    streams[k] = GeometryStream(path, geometry, file=f)
                by_name[name] = convert_model(
                    streams[k],
                    f,
                    path,
                    name,
                    run,
                    opts,
                    plan.placing,
                    geometry_done=(lambda k=k: start(k + 1)) if k + 1 < len(jobs) else None,
                )
                streams.pop(k).close()
        finally:
            for stream in streams.values():
                stream.close()
        summaries: list[dict] = [s for s in (by_name[n] for n in plan.names) if s is not None]

        children: list[dict[str, Any]] = []
        los, his = [], []
        for s in summaries:
            lo, hi = np.array(s["bounds_enu"][0]), np.array(s["bounds_enu"][1])
            los.append(lo)
            his.append(hi)
            children.append(
                {
                    "boundingVolume": {"box": box_from_bounds(lo, hi)},
                    "geometricError": round(float(np.linalg.norm(hi - lo)), 3),
                    "refine": "REPLACE",
                    "content": {"uri": f"models/{s['model']}/tileset.json"},
                }
            )
        lo, hi = np.min(los, axis=0), np.max(his, axis=0)
        root: dict[str, Any] = {
            "boundingVolume": {"box": box_from_bounds(lo, hi)},
            "geometricError": max(c["geometricError"] for c in children),
            "refine": "ADD",
            "transform": transform_list(frame.matrix()),
            "children": children,
        }

        # bounds from each model's box corners (models may lie far apart)
        corners = np.array([[x, y, z] for a, b in zip(los, his) for x in (a[0], b[0]) for y in (a[1], b[1]) for z in (a[2], b[2])])
        lon, lat, h = ecef_to_geodetic(frame.to_ecef(corners))
        schema: dict[str, str] = {}
        for s in summaries:
            for k, t in s["schema_types"].items():
                schema[k] = t if schema.get(k, t) == t else "STRING"
        for s in summaries:
            for category, message in s["warnings"]:
                run.warn(getattr(cim_warnings, category, cim_warnings.CimWarning), message)
        search = _search_rows(run.id, summaries, frame)
        props = [p for s in summaries for p in s["search"]["properties"]]
        storeys = {str(p["Storey"]): p.get("StoreyElevation") or 0.0 for p in props if p.get("Storey")}
        return LayerOutput(
            index=tileset_document(root, root["geometricError"]),
            count=sum(s["elements"] for s in summaries),
            tiles=sum(s["tiles"] for s in summaries),
            triangles=sum(s["triangles"] for s in summaries),
            bounds={
                "west": float(lon.min()),
                "south": float(lat.min()),
                "east": float(lon.max()),
                "north": float(lat.max()),
                "min_height": float(h.min()),
                "max_height": float(h.max()),
            },
            schema=schema,
            skipped=sum(len(s["failed"]) + len(s["timed_out"]) for s in summaries),
            crs=crs_label(plan.placing.crs) if plan.placing.crs is not None else None,
            search=search,
            info=BimInfo(
                footprints=[_footprint(s) for s in summaries],
                models=[_model_entry(s) for s in summaries],
                viewer_properties=dict(VIEWER_PROPERTIES),
                classes=sorted({str(p.get("IfcClass")) for p in props if p.get("IfcClass")}),
                storey_names=sorted(storeys, key=lambda n: (storeys[n], n)),
            ),
        )


def _model_name(path: Path, taken: set[str]) -> str:
    """A folder name for a model: its file's stem, each run of characters other than ASCII
    letters, digits, ``_.-`` made one ``_``, unique among ``taken``."""
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


def _model_entry(s: dict) -> dict:
    """A model's entry in the manifest (failure lists capped: city.json stays small)."""
    out = {
        k: s.get(k)
        for k in ("model", "source", "schema", "elements", "expected", "triangles", "tiles", "placement", "storeys", "kernel_peak_mb")
    }
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


def _footprint(summary: dict) -> dict:
    """``{"model", "wkt", "crs"}`` of a model's footprint."""
    fp = summary["footprint"]
    xy = np.asarray(fp["xy"], dtype=np.float64).reshape(-1, 2)
    geom = shapely.Polygon(xy) if len(xy) >= 4 else shapely.Point(xy[0]).buffer(0.5)
    return {
        "model": summary["model"],
        "wkt": shapely.to_wkt(geom, rounding_precision=3 if fp["crs"] != "EPSG:4326" else 9),
        "crs": fp["crs"],
    }


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
    texts = np.array(
        [" ".join(str(p[k]) for k in ("IfcClass", "Type", "Storey", "Material", "Model", "ObjectType") if p.get(k)) for p in props],
        dtype=object,
    )
    return SearchRows(
        layer_id,
        ids,
        titles,
        texts,
        lon[2 * n :],
        lat[2 * n :],
        np.minimum(lon[:n], lon[n : 2 * n]),
        np.minimum(lat[:n], lat[n : 2 * n]),
        np.maximum(lon[:n], lon[n : 2 * n]),
        np.maximum(lat[:n], lat[n : 2 * n]),
        np.minimum(h[:n], h[n : 2 * n]),
        np.maximum(h[:n], h[n : 2 * n]),
        props,
    )
