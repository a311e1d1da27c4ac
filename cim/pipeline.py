"""The library's top-level operations: ``build`` a city from a recipe, ``convert_buildings``.

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cim._version import __version__
from cim.crs import crs_label, parse_crs
from cim.errors import CimInputError
from cim.kernels.frames import LocalFrame
from cim.formats.glb import property_id
from cim.layers.base import LayerResult, Progress
from cim.recipe import DEFAULT_CIM_LEVEL, LayerSpec, Recipe, load_recipe
from cim.runtime import paused_gc
from cim.searchindex import INDEX_NAME, SearchIndexWriter, write_search_index
from cim.store import atomic_write_json

if TYPE_CHECKING:
    from cim.layers.buildings import BuildingOptions
    from cim.sources.dem import DemPrefetch

# Each layer's modules are imported by the function that builds it, so that converting a point
# cloud does not import GDAL, GEOS and the building kernels first (0.3 s of the command).

MANIFEST = "city.json"


@dataclass
class BuildReport:
    """What :func:`build` or :func:`convert_buildings` made."""

    out: Path
    layers: list[LayerResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bytes(self) -> int:
        return sum(layer.bytes for layer in self.layers)

    def summary(self) -> str:
        parts = [f"{lr.id}: {lr.tiles:,} tiles" if lr.kind in ("imagery", "terrain") else f"{lr.id}: {lr.count:,} features, {lr.tiles:,} tiles" for lr in self.layers]
        return f"{'; '.join(parts)}; {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s → {self.out}"


def _check_options(spec: LayerSpec, known: set[str]) -> None:
    """A recipe layer's options must all be ones its kind knows: a typo is an error, not ignored."""
    unknown = set(spec.options) - known
    if unknown:
        raise CimInputError(f"layer {spec.id}: unknown option(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")


def _building_options(spec: LayerSpec) -> BuildingOptions:
    from cim.layers.buildings import BuildingOptions

    o = spec.options
    known = {"height", "floors", "storey_height", "default_height", "dem", "max_features", "crs", "layer", "id_attr"}
    _check_options(spec, known)
    return BuildingOptions(
        height=o.get("height", "height"),
        floors=o.get("floors", "floors"),
        storey_height=float(o.get("storey_height", 3.0)),
        default_height=float(o.get("default_height", 10.0)),
        dem=Path(o["dem"]) if o.get("dem") else None,
        max_features=int(o.get("max_features", 2000)),
    )


@paused_gc
def build(recipe: str | Path | Recipe, out: str | Path, *, progress: Progress | None = None) -> BuildReport:
    """Build every layer of a city recipe into ``out`` and write ``out/city.json``.

    Parameters
    ----------
    recipe : a ``city.toml`` path or a loaded :class:`~cim.recipe.Recipe`
    out : the city's output folder, e.g. ``tiles/tianshui``
    progress : called as ``progress(stage, done, total)`` while tiles are written

    Examples
    --------
    >>> report = cim.build("sample_city/city.toml", "tiles/tianshui")   # doctest: +SKIP
    >>> print(report.summary())                                        # doctest: +SKIP
    """
    t0 = time.perf_counter()
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = BuildContext(rec, out, LocalFrame(*rec.origin) if rec.origin else None, progress)
    report = BuildReport(out)
    results: dict[str, LayerResult] = {}
    with SearchIndexWriter(out / INDEX_NAME) as search:
        ctx.search = search
        # ground first (terrain decides how buildings sit on it), buildings last; listed in recipe order
        for spec in sorted(rec.layers, key=lambda s: BUILD_ORDER.index(s.kind)):
            results[spec.id] = LAYER_BUILDERS[spec.kind](spec, ctx)
            ctx.built[spec.id] = results[spec.id]
            if results[spec.id].search is not None and not search.has(results[spec.id].search):
                search.add(results[spec.id].search)  # indexed while the next layer builds
        report.layers = [results[spec.id] for spec in rec.layers]
        if ctx.frame is None:
            raise CimInputError(f"{rec.path or 'recipe'}: no layer fixed the city origin; give [city] origin = [lon, lat, height]")
        rows = [lr.search for lr in report.layers if lr.search is not None]
        if rows:
            search.finish()
    report.seconds = time.perf_counter() - t0
    write_manifest(out, rec.name, rec.title, rec.crs, ctx.frame, report.layers, {spec.id: spec for spec in rec.layers}, search=bool(rows))
    return report


@dataclass
class BuildContext:
    """What layer builders of one city share: the recipe, the output folder, the city frame
    (fixed by the recipe or by the first layer that knows where the city is) and progress."""

    recipe: Recipe
    out: Path
    frame: LocalFrame | None
    progress: Progress | None = None
    built: dict[str, LayerResult] = field(default_factory=dict)
    #: footprints of BIM models (shapely polygons, CRS) that replace LOD1 buildings
    replaced_by_bim: list[tuple[object, object]] = field(default_factory=list)
    #: the city's search index, written while layers build
    search: SearchIndexWriter | None = None

    def terrain_error_for(self, dem: Path | None) -> float:
        """The finest error bound of a terrain layer built from ``dem`` (0 when there is none)."""
        if dem is None:
            return 0.0
        for spec in self.recipe.layers:
            lr = self.built.get(spec.id)
            if spec.kind == "terrain" and lr is not None and Path(spec.source).resolve() == Path(dem).resolve():
                return float(lr.extra["max_error"][str(lr.extra["maxzoom"])])
        return 0.0


def _build_buildings(spec: LayerSpec, ctx: BuildContext) -> LayerResult:
    from cim.layers.buildings import build_buildings_layer, prefetch_dem_for, warm_up_kernels
    from cim.sources.footprints import read_footprints

    opts = _building_options(spec)
    opts.ground_offset = -ctx.terrain_error_for(opts.dem)
    crs, layer = spec.options.get("crs", ctx.recipe.crs), spec.options.get("layer")
    warm_up_kernels()
    prefetch = prefetch_dem_for(spec.source, opts.dem, crs, layer)
    table = read_footprints(spec.source, crs=crs, layer=layer, id_attr=spec.options.get("id_attr", "id"))
    if ctx.frame is None:
        ctx.frame = _city_frame(ctx.recipe, table, opts, prefetch)
    replaced = _drop_replaced(table, ctx.replaced_by_bim)
    if len(replaced):
        table = table.take(np.setdiff1d(np.arange(len(table)), replaced))
    result = build_buildings_layer(
        table, ctx.out / spec.id, ctx.frame, opts, layer_id=spec.id, progress=ctx.progress, dem_prefetch=prefetch,
        search_sink=ctx.search.add if ctx.search is not None else None,
    )
    if table.skipped:
        result.warnings.insert(0, f"{len(table.skipped)} footprint(s) skipped")
    if len(replaced):
        result.extra["replaced_by_bim"] = len(replaced)
    return result


def _drop_replaced(table, footprints: list[tuple[object, object]]) -> np.ndarray:
    """Rows of ``table`` whose footprint lies mostly (> 50 % of its area) under a BIM model."""
    import shapely
    from pyproj import CRS

    from cim.crs import transformer

    if not footprints:
        return np.empty(0, dtype=np.int64)
    tree = shapely.STRtree(table.geometries)
    rows: set[int] = set()
    for geom, crs in footprints:
        if crs is not None and not CRS.from_user_input(crs).equals(table.crs):
            t = transformer(CRS.from_user_input(crs), table.crs)
            geom = shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        for i in tree.query(geom):
            g = table.geometries[i]
            if shapely.area(shapely.intersection(g, geom)) > 0.5 * shapely.area(g):
                rows.add(int(i))
    return np.array(sorted(rows), dtype=np.int64)


def _build_bim(spec: LayerSpec, ctx: BuildContext) -> LayerResult:
    import shapely

    from cim.layers.bim import BimOptions, build_bim_layer, frame_for_model
    from cim.sources.ifc import GeometryOptions

    o = dict(spec.options)
    known = {"crs", "origin", "rotation", "element_timeout", "max_voids", "threads", "max_triangles"}
    _check_options(spec, known)
    src = Path(spec.source)
    sources = sorted(src.glob("*.ifc")) if src.is_dir() else [src]
    if not sources:
        raise CimInputError(f"layer {spec.id}: no .ifc file in {src}")
    crs = o.get("crs", ctx.recipe.crs)
    crs = parse_crs(crs, what=f"layer {spec.id}: crs") if crs is not None else None  # refused before any file is read
    origin = tuple(o["origin"]) if "origin" in o else None
    if ctx.frame is None:
        ctx.frame = frame_for_model(sources[0], crs=crs, origin=origin, rotation=o.get("rotation"))
    geometry = GeometryOptions(**{k: o[k] for k in ("element_timeout", "max_voids", "threads") if k in o})
    options = BimOptions(geometry=geometry, **({"max_triangles": int(o["max_triangles"])} if "max_triangles" in o else {}))
    result = build_bim_layer(
        sources, ctx.out / spec.id, ctx.frame, crs=crs, origin=origin, rotation=o.get("rotation"),
        layer_id=spec.id, progress=ctx.progress, options=options,
    )
    for fp in result.extra.get("footprints", []):
        ctx.replaced_by_bim.append((shapely.from_wkt(fp["wkt"]), fp.get("crs")))
    # what the viewer's filters offer: IFC classes, and storeys in elevation order
    rows = result.search.properties if result.search is not None else []
    result.extra["classes"] = sorted({str(p.get("IfcClass")) for p in rows if p.get("IfcClass")})
    storeys = {str(p["Storey"]): p.get("StoreyElevation") or 0.0 for p in rows if p.get("Storey")}
    result.extra["storey_names"] = sorted(storeys, key=lambda n: (storeys[n], n))
    return result


def _build_imagery(spec: LayerSpec, ctx: BuildContext) -> LayerResult:
    from cim.layers.imagery import build_imagery_layer

    o = dict(spec.options)
    known = {"format", "max_zoom", "min_zoom", "quality"}
    _check_options(spec, known)
    return build_imagery_layer(
        spec.source, ctx.out / spec.id, fmt=o.get("format", "webp"), max_zoom=o.get("max_zoom"), min_zoom=o.get("min_zoom"),
        quality=int(o.get("quality", 85)), layer_id=spec.id, progress=ctx.progress,
    )


def _build_terrain(spec: LayerSpec, ctx: BuildContext) -> LayerResult:
    from cim.layers.terrain import build_terrain_layer

    o = dict(spec.options)
    known = {"max_zoom", "min_zoom", "error_factor"}
    _check_options(spec, known)
    result = build_terrain_layer(
        spec.source, ctx.out / spec.id, max_zoom=o.get("max_zoom"), min_zoom=int(o.get("min_zoom", 0)),
        error_factor=float(o.get("error_factor", 1.0)), layer_id=spec.id, progress=ctx.progress,
    )
    if ctx.frame is None:
        b = result.bounds
        ctx.frame = LocalFrame((b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2, b["min_height"])
    return result


def _build_pointcloud(spec: LayerSpec, ctx: BuildContext) -> LayerResult:
    from cim.layers.pointcloud import build_pointcloud_layer

    o = dict(spec.options)
    crs = o.pop("crs", ctx.recipe.crs)
    workers = o.pop("workers", None)
    result = build_pointcloud_layer([spec.source], ctx.out / spec.id, ctx.frame, crs=crs, workers=workers, progress=ctx.progress, layer_id=spec.id, **o)
    if ctx.frame is None:
        b = result.bounds
        ctx.frame = LocalFrame((b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2, b["min_height"])
    return result


#: one builder per recipe kind: ``builder(spec, ctx) -> LayerResult``
LAYER_BUILDERS: dict[str, Callable[[LayerSpec, BuildContext], LayerResult]] = {
    "buildings": _build_buildings,
    "imagery": _build_imagery,
    "terrain": _build_terrain,
    "bim": _build_bim,
    "pointcloud": _build_pointcloud,
}
#: the order layers are built in (whatever their order in the recipe)
BUILD_ORDER = ("terrain", "imagery", "bim", "pointcloud", "buildings")


def _city_frame(rec: Recipe, table, opts: BuildingOptions, prefetch: DemPrefetch | None = None) -> LocalFrame:
    """The city origin: the recipe's, else the centre of the first layer on its ground (from
    the prefetched DEM window when there is one: opening the DEM again cost 0.1-0.3 s)."""
    from cim.layers.buildings import origin_for
    from cim.sources.dem import sample_dem

    if rec.origin is not None:
        return LocalFrame(*rec.origin)
    frame = origin_for(table)
    if opts.dem is not None:
        xmin, ymin, xmax, ymax = table.bounds
        x, y = np.array([(xmin + xmax) / 2]), np.array([(ymin + ymax) / 2])
        z = prefetch.window(table.bounds, table.crs).sample(x, y, table.crs) if prefetch is not None else sample_dem(opts.dem, x, y, table.crs)
        if np.isfinite(z[0]):
            frame = LocalFrame(frame.lon, frame.lat, float(z[0]))
    return frame


def write_manifest(
    out: Path,
    name: str,
    title: str,
    crs: str | None,
    frame: LocalFrame,
    layers: list[LayerResult],
    specs: dict[str, LayerSpec] | None = None,
    search: bool = False,
) -> dict:
    """Write ``city.json``: the layers, their kinds, bounds, schemas, CIM levels and counts."""
    entries = []
    for lr in layers:
        spec = (specs or {}).get(lr.id)
        prefix = lr.path.relative_to(out).as_posix() + "/" if lr.path != out else ""
        entry = {
            "id": lr.id,
            "kind": lr.kind,
            "title": spec.title if spec else lr.id.title(),
            "cim_level": spec.cim_level if spec else DEFAULT_CIM_LEVEL.get(lr.kind, 2),
            "format": lr.format,
            "url": prefix + lr.url,
            "bounds": lr.bounds,
            "count": lr.count,
            "schema": lr.schema,
            "properties": {name: property_id(name) for name in lr.schema},
            "stats": {"tiles": lr.tiles, "triangles": lr.triangles, "bytes": lr.bytes, "seconds": round(lr.seconds, 3), "skipped": lr.skipped, "repaired": lr.repaired},
        }
        if lr.kind == "buildings":
            entry["id_property"] = "id"
        if spec is not None and not spec.visible:
            entry["visible"] = False
        entry.update(lr.extra)
        entries.append(entry)
    solid = [lr for lr in layers if lr.kind != "imagery"]  # imagery has no heights of its own
    bounds = {
        "west": min(lr.bounds["west"] for lr in layers),
        "south": min(lr.bounds["south"] for lr in layers),
        "east": max(lr.bounds["east"] for lr in layers),
        "north": max(lr.bounds["north"] for lr in layers),
        "min_height": min((lr.bounds["min_height"] for lr in solid), default=0.0),
        "max_height": max((lr.bounds["max_height"] for lr in solid), default=0.0),
    }
    doc = {
        "name": name,
        "title": title,
        "crs": crs_label(parse_crs(crs)) if crs else None,
        "generator": f"cim {__version__}",
        "origin": frame.to_dict(),
        "bounds": bounds,
        "layers": entries,
    }
    if search:
        doc["search"] = {"url": INDEX_NAME, "api": "/api/search"}
    atomic_write_json(out / MANIFEST, doc)
    return doc


@paused_gc
def convert_buildings(
    source: str | Path,
    out: str | Path,
    *,
    crs: object = None,
    height: str | None = "height",
    floors: str | None = "floors",
    storey_height: float = 3.0,
    default_height: float = 10.0,
    dem: str | Path | None = None,
    max_features: int = 2000,
    id_attr: str = "id",
    origin: tuple[float, float, float] | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Convert one footprint file into a 3D Tiles 1.1 buildings tileset in ``out``.

    Writes ``out/tileset.json``, ``out/tiles/*.glb`` and a one-layer ``out/city.json`` so that
    ``cim serve out`` shows it.

    Examples
    --------
    >>> cim.convert_buildings("footprints.gpkg", "tiles/footprints", height="HEIGHT")   # doctest: +SKIP
    """
    from cim.layers.buildings import BuildingOptions, build_buildings_layer, prefetch_dem_for, warm_up_kernels
    from cim.sources.footprints import read_footprints

    t0 = time.perf_counter()
    out = Path(out)
    opts = BuildingOptions(height, floors, storey_height, default_height, Path(dem) if dem else None, max_features)
    warm_up_kernels()
    prefetch = prefetch_dem_for(source, opts.dem, crs)
    table = read_footprints(source, crs=crs, id_attr=id_attr)
    if origin is not None:
        frame = LocalFrame(*origin)
    else:
        rec = Recipe(Path(source).stem, Path(source).stem, None, None, [])
        frame = _city_frame(rec, table, opts, prefetch)
    with SearchIndexWriter(out / INDEX_NAME) as search:
        result = build_buildings_layer(table, out, frame, opts, layer_id="buildings", progress=progress, dem_prefetch=prefetch, search_sink=search.add)
        return _standalone(out, Path(source).stem, crs_label(table.crs), frame, result, t0, search)


def _standalone(
    out: Path, stem: str, crs: str | None, frame: LocalFrame, result: LayerResult, t0: float, search: SearchIndexWriter | None = None
) -> BuildReport:
    """Finish a one-layer conversion: its search index (if it has one; ``search`` may already
    hold its rows) and ``city.json``, so that ``cim serve out`` shows it like a city."""
    rows = [result.search] if result.search is not None else []
    if rows and search is not None:
        if not search.has(rows[0]):
            search.add(rows[0])
        search.finish()
    elif rows:
        write_search_index(out / INDEX_NAME, rows)
    write_manifest(out, _safe_name(stem), stem, crs, frame, [result], search=bool(rows))
    return BuildReport(out, [result], time.perf_counter() - t0)


def _safe_name(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem) or "city"


@paused_gc
def convert_imagery(
    source: str | Path,
    out: str | Path,
    *,
    fmt: str = "webp",
    max_zoom: int | None = None,
    min_zoom: int | None = None,
    quality: int = 85,
    progress: Progress | None = None,
) -> BuildReport:
    """Tile one orthophoto into ``out`` (``imagery.json`` + ``tiles/{z}/{x}/{y}.<ext>``).

    Examples
    --------
    >>> cim.convert_imagery("ortho.tif", "tiles/ortho", fmt="jpeg")   # doctest: +SKIP
    """
    from cim.layers.imagery import build_imagery_layer

    t0 = time.perf_counter()
    out = Path(out)
    result = build_imagery_layer(source, out, fmt=fmt, max_zoom=max_zoom, min_zoom=min_zoom, quality=quality, progress=progress)
    return BuildReport(out, [result], time.perf_counter() - t0)


@paused_gc
def convert_terrain(
    dem: str | Path,
    out: str | Path,
    *,
    max_zoom: int | None = None,
    min_zoom: int = 0,
    error_factor: float = 1.0,
    progress: Progress | None = None,
) -> BuildReport:
    """Mesh one DEM into quantized-mesh terrain in ``out`` (``layer.json`` + ``{z}/{x}/{y}.terrain``).

    Examples
    --------
    >>> cim.convert_terrain("dem.tif", "tiles/terrain")   # doctest: +SKIP
    """
    from cim.layers.terrain import build_terrain_layer

    t0 = time.perf_counter()
    out = Path(out)
    result = build_terrain_layer(dem, out, max_zoom=max_zoom, min_zoom=min_zoom, error_factor=error_factor, progress=progress)
    return BuildReport(out, [result], time.perf_counter() - t0)


@paused_gc
def convert_bim(
    sources: list[str | Path] | str | Path,
    out: str | Path,
    *,
    crs: object = None,
    origin: tuple[float, float, float] | None = None,
    rotation: float | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Convert IFC models into a standalone BIM layer in ``out`` (``tileset.json`` + ``city.json``).

    Models must be georeferenced (IfcMapConversion, ePSet_MapConversion or IfcSite lat/lon),
    or ``origin`` (E, N, H in ``crs``; lon, lat, h without) must place them.

    Examples
    --------
    >>> cim.convert_bim("tower.ifc", "tiles/tower")                                      # doctest: +SKIP
    >>> cim.convert_bim("shed.ifc", "tiles/shed", crs="EPSG:4544", origin=(566000, 3828000, 1120))  # doctest: +SKIP
    """
    from cim.layers.bim import build_bim_layer, frame_for_model

    t0 = time.perf_counter()
    out = Path(out)
    paths = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(p) for p in sources]
    paths = [q for p in paths for q in (sorted(p.glob("*.ifc")) if p.is_dir() else [p])]
    if not paths:
        raise CimInputError(f"no .ifc file in {sources}")
    crs = parse_crs(crs, what="crs") if crs is not None else None  # refused before any file is read
    frame = frame_for_model(paths[0], crs=crs, origin=origin, rotation=rotation)
    result = build_bim_layer(paths, out, frame, crs=crs, origin=origin, rotation=rotation, require_georef=True, progress=progress)
    return _standalone(out, paths[0].stem, crs_label(crs) if crs is not None else None, frame, result, t0)


@paused_gc
def convert_pointcloud(
    sources: list[str | Path] | str | Path,
    out: str | Path,
    *,
    crs: object = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Tile LAS/LAZ files (or folders) into one standalone point-cloud layer in ``out``.

    Examples
    --------
    >>> cim.convert_pointcloud(["survey/"], "tiles/lidar", crs="EPSG:4544")   # doctest: +SKIP
    """
    from cim.layers.pointcloud import build_pointcloud_layer

    t0 = time.perf_counter()
    out = Path(out)
    paths = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(p) for p in sources]
    result = build_pointcloud_layer(paths, out, None, crs=crs, workers=workers, progress=progress)
    b = result.bounds
    frame = LocalFrame((b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2, b["min_height"])
    return _standalone(out, paths[0].stem, crs_label(parse_crs(crs)) if crs else None, frame, result, t0)
