"""The library's top-level operations: ``build`` a city from a recipe, ``convert`` one source into a
standalone city, ``build_layer`` one layer on its own.

All three run layers through the same skeleton (:func:`cim.layers.base.run_layer`) on an engine
(:mod:`cim.engines`); ``build`` and ``convert`` also write the city's search index and
``city.json``, so ``cim serve`` shows the result either way. The CLI is a thin layer over them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cim._version import __version__
from cim.crs import crs_label, parse_crs
from cim.engines import Engine, engine_from
from cim.errors import CimInputError
from cim.layers import registry
from cim.layers.base import City, LayerOptions, LayerResult, Progress, run_layer
from cim.recipe import LayerSpec, Recipe, load_recipe
from cim.searchindex import INDEX_NAME, SearchIndexWriter
from cim.sources.pointcloud.kept import KEPT_DIR, drop_kept
from cim.store import atomic_write_json, atomic_write_text, build_key, make_output_dir, remove_stale_temporaries

__all__ = ["MANIFEST", "BuildReport", "build", "convert", "build_layer", "write_manifest", "convert_function"]

log = logging.getLogger("cim.build")

MANIFEST = "city.json"


@dataclass
class BuildReport:
    """What :func:`build` or :func:`convert` made."""

    out: Path
    layers: list[LayerResult] = field(default_factory=list)
    seconds: float = 0.0
    #: the version this build recorded (:mod:`cim.versions`), for builds of a recipe
    version: str | None = None

    @property
    def bytes(self) -> int:
        return sum(layer.bytes for layer in self.layers)

    @property
    def rewritten(self) -> int:
        """Files of the layers this build wrote (a rebuild leaves files whose bytes are unchanged)."""
        return sum(layer.rewritten for layer in self.layers)

    @property
    def files(self) -> int:
        """Files of the layers, as this build published them."""
        return sum(layer.files for layer in self.layers)

    def summary(self) -> str:
        parts = [
            f"{lr.id}: {lr.count:,} features, {lr.tiles:,} tiles" if lr.format == "3dtiles" else f"{lr.id}: {lr.tiles:,} tiles"
            for lr in self.layers
        ]
        version = f" (version {self.version})" if self.version else ""
        return (
            f"{'; '.join(parts)}; {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s → {self.out}{version}; "
            f"files rewritten {self.rewritten:,} / {self.files:,}"
        )


def build(
    recipe: str | Path | Recipe,
    out: str | Path,
    *,
    engine: Engine | str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    scheduler: str | None = None,
) -> BuildReport:
    """Build every layer of a city recipe into ``out`` and write ``out/city.json``.

    Every layer's options are checked before the first layer starts. Layers build in their
    kinds' order (terrain before the buildings that stand on it), each into ``out/<layer id>``.

    Parameters
    ----------
    recipe : a ``city.toml`` path or a loaded :class:`~cim.recipe.Recipe`
    out : the city's output folder, e.g. ``tiles/tianshui``
    engine : where tile jobs run (an :class:`~cim.engines.Engine`, or ``"local"``, ``"dask"``);
        default local
    workers : jobs at once on the local engine, or worker processes of a local Dask cluster
        (default: the number of cores)
    progress : called as ``progress(stage, done, total)`` while tiles are written
    scheduler : with ``engine="dask"``, the Dask scheduler's address (``tcp://host:8786``);
        without it a local cluster is started. Sources and ``out`` must then be on a
        filesystem every worker sees at the same path

    Examples
    --------
    >>> report = cim.build("sample_city/city.toml", "tiles/tianshui")   # doctest: +SKIP
    >>> print(report.summary())                                        # doctest: +SKIP
    """
    t0 = time.perf_counter()
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    out = Path(out)
    where = str(rec.path) if rec.path else "recipe"
    layers = [(spec, *_checked(spec, where)) for spec in rec.layers]
    from cim.kernels.frames import LocalFrame

    engine_ = engine_from(engine, workers=workers, scheduler=scheduler)
    out = out if engine_.shares_memory else out.absolute()  # workers elsewhere have another cwd
    city = City(
        out,
        engine_,
        crs=rec.crs,
        frame=LocalFrame(*rec.origin) if rec.origin else None,
        progress=progress,
        vertical_datum=rec.vertical_datum,
        cache=True,
        keep_building_points=any(_links_points(o) for _, _, o in layers),
    )
    make_output_dir(out)
    remove_stale_temporaries(out, every=True)  # a killed build's search index, city.json
    results: dict[str, LayerResult] = {}
    inputs = [spec.source for spec in rec.layers] + [p for _, _, o in layers for p in _option_paths(o)]
    try:
        with city.engine.building(out, inputs), SearchIndexWriter(out / INDEX_NAME) as search:
            city.search = search
            for spec, builder, options in sorted(layers, key=lambda t: t[1].order):
                result = results[spec.id] = run_layer(builder, spec.id, [spec.source], options, city)
                if result.search is not None and not search.has(result.search):
                    search.add(result.search)  # indexed while the next layer builds
            if any(r.search is not None for r in results.values()):
                search.finish()
    finally:
        for r in city.results("pointcloud"):  # building points kept for a link that did not run
            drop_kept(r.path / KEPT_DIR)
        if not isinstance(engine, Engine):
            city.engine.close()
    assert city.frame is not None  # run_layer fixes it
    report = BuildReport(out, [results[spec.id] for spec in rec.layers], time.perf_counter() - t0)
    write_manifest(
        out,
        rec.name,
        rec.title,
        crs_label(parse_crs(rec.crs)) if rec.crs else None,
        city.frame,
        report.layers,
        {spec.id: spec for spec in rec.layers},
        search=(out / INDEX_NAME).exists() and any(r.search is not None for r in report.layers),
        vertical_datum=rec.vertical_datum,
    )
    if any(spec.kind in ("buildings", "terrain") for spec in rec.layers):
        _surface_model(rec, out, report)
    report.version = _record(out, rec, report).id
    report.seconds = time.perf_counter() - t0
    return report


def _links_points(options: object) -> bool:
    """Whether a layer's options link it to the city's building points (a buildings layer's
    ``link_points`` without heights from points)."""
    return bool(getattr(options, "link_points", False)) and not getattr(options, "uses_points", False)


def _surface_model(rec: Recipe, out: Path, report: BuildReport) -> None:
    """Build the surface model the planning analyses run on (``out/analysis/``), unless the
    layers it is made from are the ones it was last built from.

    Its key is the digests of every file of the city's buildings, terrain and BIM layers (the
    model is made from their sources: footprints, heights, uses, the DEM, the models; whatever
    changes those changes the layers' tiles) and the model's format version. Keyed on the layers' outputs rather than
    their sources so that a layer skipped as unchanged costs nothing here either: rebuilding the
    model of the ``city`` preset takes about 15 s.
    """
    from cim.analysis.files import MODEL_DIR, MODEL_VERSION, build_model

    parts = [f"model {MODEL_VERSION}"]
    for lr in sorted(report.layers, key=lambda r: r.id):
        if lr.kind in ("buildings", "terrain", "bim"):
            parts.append(f"{lr.kind} {lr.id} " + build_key(sorted(lr.digests.items())))
    key = build_key(parts)
    key_file = out / ".cim" / "analysis.key"
    with contextlib.suppress(OSError):
        if key_file.read_text(encoding="utf-8") == key and (out / MODEL_DIR / "model.json").is_file():
            log.info("surface model: its layers are unchanged since it was built: kept")
            return
    build_model(rec, out)
    key_file.parent.mkdir(mode=0o700, exist_ok=True)  # CITY/.cim is private (cim.access)
    atomic_write_text(key_file, key)


def _option_paths(options: LayerOptions) -> list[Path]:
    """The files and folders a layer's options name (a DEM beside the footprints...)."""
    return [v for f in fields(options) if isinstance(v := getattr(options, f.name), Path)]


def _record(out: Path, rec: Recipe, report: BuildReport) -> Any:
    """Record the build as the city's next version (see :mod:`cim.versions`)."""
    from cim.versions import record_version

    known: dict[str, str] = {}
    for lr in report.layers:
        prefix = lr.path.relative_to(out).as_posix() + "/" if lr.path != out else ""
        known.update({prefix + rel: digest for rel, digest in lr.digests.items()})
    layers = {
        lr.id: {"rewritten": lr.rewritten, "made": lr.made, "files": lr.files, "seconds": round(lr.seconds, 3)} for lr in report.layers
    }
    sources = {spec.source for spec in rec.layers}
    for spec in rec.layers:  # files an option names (a DEM the buildings stand on)
        for value in spec.options.values():
            if isinstance(value, str) and spec.base is not None and (spec.base / value).is_file():
                sources.add((spec.base / value).resolve())
    return record_version(
        out, known=known, recipe=rec.path, sources=sorted(sources, key=str), layers=layers, generator=f"cim {__version__}"
    )


def _checked(spec: LayerSpec, where: str) -> tuple[Any, LayerOptions]:
    builder = registry.get(spec.kind)
    return builder, builder.options(spec.options, where=f"{where}: layer {spec.id}", base=spec.base)


def convert(
    kind: str,
    sources: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    city_origin: tuple[float, float, float] | None = None,
    layer_id: str | None = None,
    engine: Engine | str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    scheduler: str | None = None,
    **options: Any,
) -> BuildReport:
    """Convert one source (or several files of one layer) into a standalone city in ``out``: the
    layer's files, its search index and a one-layer ``city.json``, so that ``cim serve out``
    shows it.

    Parameters
    ----------
    kind : a layer kind (``cim.layers.registry.kinds()``)
    sources : a file or folder, or a list of them for kinds that take several
    out : the output folder (the layer's files go straight into it)
    city_origin : the city's local frame origin (longitude, latitude, height); default: the data's
    layer_id : the layer's id in ``city.json`` (default: the kind)
    engine, workers, progress, scheduler : as for :func:`build`
    options : the kind's options (see ``cim convert KIND --help``); unknown ones are an error

    Examples
    --------
    >>> cim.convert("buildings", "footprints.gpkg", "tiles/fp", height="HEIGHT")   # doctest: +SKIP
    >>> cim.convert("pointcloud", ["a.laz", "b.laz"], "tiles/lidar", crs="EPSG:4544")   # doctest: +SKIP
    """
    t0 = time.perf_counter()
    builder = registry.get(kind)
    opts = builder.options(options, where=f"convert {kind}")
    paths = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
    if not paths:
        raise CimInputError(f"convert {kind}: no source given")
    out = Path(out)
    from cim.kernels.frames import LocalFrame

    engine_ = engine_from(engine, workers=workers, scheduler=scheduler)
    if not engine_.shares_memory:  # workers elsewhere have another cwd
        out, paths = out.absolute(), [p.absolute() for p in paths]
    city = City(out, engine_, frame=LocalFrame(*city_origin) if city_origin else None, progress=progress)
    make_output_dir(out)
    try:
        with city.engine.building(out, paths + _option_paths(opts)), SearchIndexWriter(out / INDEX_NAME) as search:
            city.search = search
            result = run_layer(builder, layer_id or kind, paths, opts, city, out=out)
            if result.search is not None:
                if not search.has(result.search):
                    search.add(result.search, wait=True)
                search.finish()
    finally:
        if not isinstance(engine, Engine):
            city.engine.close()
    assert city.frame is not None
    stem = paths[0].stem if paths[0].suffix else paths[0].name
    given = getattr(opts, "crs", None)
    crs = crs_label(parse_crs(given)) if given else result.crs
    write_manifest(out, _safe_name(stem), stem, crs, city.frame, [result], search=result.search is not None)
    from cim.analysis.files import record_conversion

    record_conversion(out, kind, paths[0], options, name=_safe_name(stem), crs=crs)  # its surface model is built on first use
    return BuildReport(out, [result], time.perf_counter() - t0)


def build_layer(
    kind: str,
    sources: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    frame: Any = None,
    layer_id: str | None = None,
    engine: Engine | str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> LayerResult:
    """Build one layer into ``out`` and nothing else (no search index, no ``city.json``): for
    developers composing their own pipeline, and for tests.

    ``frame`` is the city's :class:`~cim.kernels.frames.LocalFrame` (default: the layer picks
    one from its data); the other parameters are those of :func:`convert`.
    """
    builder = registry.get(kind)
    opts = builder.options(options, where=f"layer {layer_id or kind}")
    paths = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
    engine_ = engine_from(engine, workers=workers)
    out = Path(out)
    if not engine_.shares_memory:  # workers elsewhere have another cwd
        out, paths = out.absolute(), [p.absolute() for p in paths]
    city = City(out, engine_, frame=frame, progress=progress)
    try:
        with city.engine.building(out, paths + _option_paths(opts)):
            return run_layer(builder, layer_id or kind, paths, opts, city, out=out)
    finally:
        if not isinstance(engine, Engine):
            city.engine.close()


def convert_function(kind: str) -> Callable[..., BuildReport]:
    """``cim.convert_<kind>``: :func:`convert` for one kind, with the kind's options as keyword
    parameters (so ``help()`` and editors show them)."""
    builder = registry.get(kind)

    @functools.wraps(convert)
    def run(sources: str | Path | Sequence[str | Path], out: str | Path, **kwargs: Any) -> BuildReport:
        return convert(kind, sources, out, **kwargs)

    params = [
        inspect.Parameter("sources", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("out", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ]
    common = ("city_origin", "layer_id", "engine", "workers", "progress", "scheduler")
    params += [p for name, p in inspect.signature(convert).parameters.items() if name in common]
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=_default(f)) for f in fields(builder.Options)]
    run.__signature__ = inspect.Signature(params, return_annotation=BuildReport)  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = f"convert_{kind}"
    opts = "\n".join(f"    {f.name} : {f.metadata.get('help', '')}" for f in fields(builder.Options))
    run.__doc__ = f"{builder.summary}\n\n``cim.convert({kind!r}, sources, out, **options)``; options:\n\n{opts}\n"
    return run


def _default(f: Any) -> Any:
    from dataclasses import MISSING

    return f.default if f.default is not MISSING else f.default_factory()


def write_manifest(
    out: Path,
    name: str,
    title: str,
    crs: str | None,
    frame: Any,
    layers: list[LayerResult],
    specs: dict[str, LayerSpec] | None = None,
    search: bool = False,
    vertical_datum: str = "ellipsoidal",
) -> dict:
    """Write ``city.json``: the layers, their kinds, bounds, schemas, CIM levels and counts
    (``crs``: the city's CRS as a label, e.g. ``EPSG:4544``, written as it is), and the
    heights' datum (``vertical_datum``: the city's, whether PROJ's geoid grids were found, and
    how each layer's heights reached it)."""
    from cim.datum import geoid_grids_available
    from cim.formats.glb import property_id

    entries = []
    for lr in layers:
        spec = (specs or {}).get(lr.id)
        prefix = lr.path.relative_to(out).as_posix() + "/" if lr.path != out else ""
        level = spec.cim_level if spec is not None and spec.cim_level is not None else registry.get(lr.kind).cim_level
        entry = {
            "id": lr.id,
            "kind": lr.kind,
            "title": spec.title if spec else lr.id.title(),
            "cim_level": level,
            "format": lr.format,
            "url": prefix + lr.url,
            "bounds": lr.bounds,
            "count": lr.count,
            "schema": lr.schema,
            "properties": {name: property_id(name) for name in lr.schema},
            "heights": lr.heights,
            "stats": {
                "tiles": lr.tiles,
                "triangles": lr.triangles,
                "bytes": lr.bytes,
                "seconds": round(lr.seconds, 3),
                "skipped": lr.skipped,
                "repaired": lr.repaired,
            },
        }
        if lr.info is not None:
            entry.update(lr.info.manifest())
        if spec is not None and not spec.visible:
            entry["visible"] = False
        entries.append(entry)
    solid = [lr for lr in layers if lr.format != "imagery"]  # imagery has no heights of its own
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
        "crs": crs,
        "generator": f"cim {__version__}",
        "origin": frame.to_dict(),
        "vertical_datum": {"datum": vertical_datum, "geoid_grids": geoid_grids_available()},
        "bounds": bounds,
        "layers": entries,
    }
    if search:
        doc["search"] = {"url": INDEX_NAME, "api": "/api/search"}
    atomic_write_json(out / MANIFEST, doc)
    return doc


def _safe_name(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem) or "city"
