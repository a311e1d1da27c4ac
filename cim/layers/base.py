"""The layer contract: what every layer kind implements, and the one skeleton that runs them.

A **layer kind** (buildings, terrain, imagery, point clouds, BIM, or one a plugin adds) is a
:class:`LayerBuilder`:

- ``Options``: a dataclass of the kind's options (a :class:`LayerOptions`). The recipe's keys
  and the command line's flags are its fields; :meth:`LayerOptions.from_mapping` checks them
  (an unknown or mistyped key is a :class:`~cim.errors.CimInputError` naming the key);
- ``plan(sources, options, run)``: reads what the layer needs to know before any tile is
  made and lists the tile jobs (a :class:`LayerPlan`, with the build key that decides whether
  an interrupted build resumes);
- ``build(plan, run)``: runs the jobs through the engine (:meth:`LayerRun.map`) and returns a
  :class:`LayerOutput`: the layer's index document and what it counted.

:func:`run_layer` owns everything around them: the :class:`~cim.store.TileStore` (opened with
the plan's key; the index written last by ``finish``), the engine's pool, timing, progress,
typed warnings (:mod:`cim.warnings`) and the :class:`LayerResult`. Kinds are found through
:mod:`cim.layers.registry`.

Data flow of one layer::

    sources ──plan──▶ LayerPlan (key, jobs) ──build──▶ job(state, key) on the engine ──▶ TileSink
                                                  │                                         │
                                                  ▼                                         ▼
                                          LayerOutput (index) ──▶ TileStore.finish ◀── journal
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import time
import types
import typing
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, get_args, get_origin, get_type_hints

import numpy as np

from cim.errors import CimInputError
from cim.store import TileStore, build_key, journaled
from cim.warnings import CimWarning

if TYPE_CHECKING:
    from pyproj import CRS

    from cim.datum import HeightConversion
    from cim.engines import Engine, TaskPool
    from cim.kernels.frames import LocalFrame
    from cim.searchindex import SearchIndexWriter, SearchRows

__all__ = [
    "Progress",
    "LayerOptions",
    "option",
    "LayerInfo",
    "LayerPlan",
    "LayerOutput",
    "LayerResult",
    "City",
    "LayerRun",
    "LayerBuilder",
    "run_layer",
]

log = logging.getLogger("cim.layers")

#: progress callback: ``progress(stage, done, total)``; the CLI draws it as a bar
Progress = Callable[[str, int, int], None]

O = TypeVar("O", bound="LayerOptions")
P = TypeVar("P", bound="LayerPlan")


# -- options -------------------------------------------------------------------------------------


def option(
    default: Any = dataclasses.MISSING, *, help: str, cli: str | None = None, key: bool = True, default_factory: Any = dataclasses.MISSING
) -> Any:
    """A field of a layer's :class:`LayerOptions`: ``help`` is shown by ``cim convert KIND --help``,
    ``cli`` names the command-line flag when it is not ``--<field-name>``; ``key=False`` for an
    option that changes how the work is done but never its output (threads, memory budgets), so
    that changing it still resumes an interrupted build (see :meth:`LayerOptions.key`)."""
    metadata = {"help": help, "cli": cli, "key": key}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class LayerOptions:
    """Base class of a layer kind's options (a dataclass; every field has a default).

    Field types say how a recipe or command-line value is read: ``str``, ``int``, ``float``,
    ``bool``, ``Path`` (relative paths are taken from the recipe's folder), a ``Literal`` of
    choices, a ``tuple`` of numbers, each optionally ``| None``.
    """

    @classmethod
    def from_mapping(cls: type[O], values: Mapping[str, Any], *, where: str = "options", base: Path | None = None) -> O:
        """Options from a recipe table or keyword arguments, checked.

        Raises
        ------
        CimInputError
            An unknown key (with the closest known one), or a value of the wrong type or out of
            range; the message starts with ``where`` and names the key.
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise CimInputError(f"{where}: unknown option {key!r}{hint} (known: {', '.join(sorted(known))})")
        hints = _type_hints(cls)
        kwargs = {key: _coerce(value, hints[key], f"{where}: option {key!r}", base) for key, value in values.items()}
        options = cls(**kwargs)
        options.check(where)
        return options

    def check(self, where: str) -> None:
        """Check values together (ranges, combinations); raise CimInputError naming the key."""

    def key(self) -> dict[str, Any]:
        """The options that decide the output, for the build key (those made with ``key=False``
        left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("key", True)}

    def changed(self) -> dict[str, Any]:
        """The fields whose value differs from the default."""
        out = {}
        for f in dataclasses.fields(self):
            if f.default is not dataclasses.MISSING:
                default = f.default
            else:
                assert f.default_factory is not dataclasses.MISSING  # every field has a default
                default = f.default_factory()
            value = getattr(self, f.name)
            if value != default:
                out[f.name] = value
        return out


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of an options class (evaluated once a class: each evaluation
    compiles every annotation anew)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def _coerce(value: Any, hint: Any, where: str, base: Path | None) -> Any:
    """``value`` read as ``hint`` (see :class:`LayerOptions`)."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in get_args(hint) if a is not type(None)]
        if value is None and len(members) < len(get_args(hint)):
            return None
        errors = []
        for arg in members:
            try:
                return _coerce(value, arg, where, base)
            except CimInputError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise CimInputError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise CimInputError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise CimInputError(f"{where}: expected a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise CimInputError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, Path)):
            return str(value)
        raise CimInputError(f"{where}: expected text, got {value!r}")
    if hint is Path:
        if isinstance(value, (str, Path)) and str(value):
            p = Path(value)
            return (base / p).resolve() if base is not None and not p.is_absolute() else p
        raise CimInputError(f"{where}: expected a path, got {value!r}")
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise CimInputError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where, base) for v in value)
        if len(value) != len(args):
            raise CimInputError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where, base) for v, a in zip(value, args))
    raise TypeError(f"{where}: options of type {hint!r} are not supported")  # a builder's mistake


# -- what a layer produces -----------------------------------------------------------------------


@dataclass
class LayerInfo:
    """Kind-specific facts a layer reports (its zoom levels, classes, models...); each kind has
    a subclass with typed fields. :meth:`manifest` gives the keys ``city.json`` carries."""

    def manifest(self) -> dict[str, Any]:
        """The entries this info adds to the layer's entry in ``city.json`` (None left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class LayerPlan:
    """What :meth:`LayerBuilder.plan` decided: a kind subclasses it with its own fields.

    Attributes
    ----------
    key : the build key (see :func:`cim.store.build_key`): the same inputs and options give the
        same key, and a build with the key of an interrupted one resumes it
    jobs : the keys of the tile jobs of the layer's (first) pass
    small : the input is small enough to run its jobs in the calling thread
    """

    key: str
    jobs: Sequence[Any] = ()
    small: bool = False


@dataclass
class LayerOutput:
    """What :meth:`LayerBuilder.build` made; :func:`run_layer` adds the store's numbers."""

    index: dict[str, Any]
    count: int
    tiles: int
    bounds: dict[str, float]
    triangles: int = 0
    schema: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    repaired: int = 0
    url: str | None = None
    crs: str | None = None
    info: LayerInfo | None = None
    search: SearchRows | None = None


@dataclass
class LayerResult:
    """What a layer build produced, for the city manifest and the command line's summary."""

    id: str
    kind: str
    path: Path
    count: int
    tiles: int
    triangles: int
    bytes: int
    bounds: dict[str, float]
    schema: dict[str, str]
    seconds: float
    resumed_tiles: int = 0
    skipped: int = 0
    repaired: int = 0
    warnings: list[CimWarning] = field(default_factory=list)
    #: how city.json links the layer: "3dtiles" (url to tileset.json), "quantized-mesh" (url to
    #: the folder holding layer.json), "imagery" (url template)
    format: str = "3dtiles"
    url: str = "tileset.json"
    #: the CRS of the layer's sources (a label such as ``EPSG:4544``), when they share one
    crs: str | None = None
    info: LayerInfo | None = None
    #: the files and folders the layer was built from
    sources: list[Path] = field(default_factory=list)
    #: rows for the city's search index, when the layer has features
    search: SearchRows | None = field(default=None, repr=False)
    #: how the layer's heights reached the city's datum: "as given", "converted from EPSG:...",
    #: or "NOT converted from EPSG:..." (a warning says why)
    heights: str = "as given"
    #: files this build wrote, and files the layer has: a rebuild leaves unchanged ones alone
    rewritten: int = 0
    files: int = 0
    #: files this build made (encoded); the others were resumed from an interrupted run of the
    #: same build, kept from the previous build for their unchanged inputs (tile by tile, see
    #: :meth:`cim.store.TileSink.reuse`), or the whole layer was skipped (:mod:`cim.layers.cache`)
    made: int = 0
    #: the SHA-256 digest of each of the layer's files (paths relative to its folder)
    digests: dict[str, str] = field(default_factory=dict, repr=False)


# -- the city a layer is part of -------------------------------------------------------------------


@dataclass
class City:
    """What the layers of one build share.

    Attributes
    ----------
    out : the city's folder
    crs : the CRS of sources that declare none (the recipe's ``[city] crs``)
    frame : the city's local frame: fixed by the recipe, or by the first layer that knows where
        the city is (see :meth:`LayerRun.propose_frame`)
    engine : where tile jobs run
    progress : the progress callback
    search : the city's search index, written while the layers build
    built : the layers built so far, in build order
    vertical_datum : the datum every layer's heights are brought to
    cache : skip layers whose inputs are unchanged (see the field)
    """

    out: Path
    engine: Engine
    crs: str | None = None
    frame: LocalFrame | None = None
    progress: Progress | None = None
    search: SearchIndexWriter | None = None
    built: list[LayerResult] = field(default_factory=list)
    #: the city's height datum: "ellipsoidal" or a vertical CRS label (see :mod:`cim.datum`)
    vertical_datum: str = "ellipsoidal"
    #: keep each layer's result in ``out/.cim/layers`` and skip a layer whose inputs are those
    #: of its last published build (:mod:`cim.layers.cache`; what :func:`cim.build` does)
    cache: bool = False
    #: a later layer links to the building points: point-cloud layers keep them on the side
    #: (:mod:`cim.sources.pointcloud.kept`)
    keep_building_points: bool = False

    def results(self, kind: str) -> list[LayerResult]:
        """The layers of a kind built so far."""
        return [r for r in self.built if r.kind == kind]


class LayerRun:
    """One layer's build in progress: what ``plan`` and ``build`` use besides their inputs.

    Attributes
    ----------
    id, kind : the layer's id and kind
    out : the layer's folder
    city : the :class:`City` the layer is part of
    store : the layer's :class:`~cim.store.TileStore` (from the end of ``plan`` on)
    warnings : what the layer reported so far
    """

    def __init__(self, layer_id: str, kind: str, out: Path, city: City) -> None:
        self.id = layer_id
        self.kind = kind
        self.out = out
        self.city = city
        self.warnings: list[CimWarning] = []
        self.store: TileStore | None = None
        self._pool: TaskPool | None = None
        self.heights = "as given"
        self._conversions: dict[str, HeightConversion | None] = {}
        self._rows: list[SearchRows] = []  # handed to the search index while building

    @property
    def frame(self) -> LocalFrame | None:
        """The city's frame, if one is fixed yet."""
        return self.city.frame

    def crs(self, given: str | None) -> str | None:
        """The CRS of sources that declare none: the layer's own ``crs`` option when given, else
        the city's."""
        return given if given is not None else self.city.crs

    def propose_frame(self, frame: LocalFrame | Callable[[], LocalFrame]) -> LocalFrame:
        """The city's frame: the one fixed already, else ``frame`` (or what it returns), which
        becomes the city's."""
        if self.city.frame is None:
            self.city.frame = frame() if callable(frame) else frame
        return self.city.frame

    def progress(self, stage: str, done: int, total: int) -> None:
        """Report progress of one stage (labelled with the layer's id)."""
        if self.city.progress is not None:
            self.city.progress(f"{self.id}: {stage}", done, total)

    def height_offset(self, crs: CRS | None, lon: np.ndarray, lat: np.ndarray, what: str) -> np.ndarray | None:
        """Metres to add to heights given in ``crs`` at ``lon``, ``lat`` to bring them to the
        city's vertical datum; None when they are in it already (a CRS naming no vertical datum
        is taken as the city's) or cannot be converted: then a warning names the source, once.

        Parameters
        ----------
        crs : the source's CRS (a pyproj CRS, compound with a vertical CRS or not)
        lon, lat : where (degrees, arrays of one shape)
        what : the source, for the warning
        """
        from cim.datum import height_conversion
        from cim.warnings import GeoreferenceWarning

        key = crs.to_wkt() if crs is not None else ""
        if key not in self._conversions:
            self._conversions[key] = conv = height_conversion(crs, self.city.vertical_datum)
            if conv is not None and conv.offset is None:
                self.heights = f"NOT converted from {conv.source}"
                self.warn(
                    GeoreferenceWarning,
                    f"{what} gives heights in {conv.source}, the city's are {conv.target}: not converted, "
                    f"{conv.problem}; they may lie tens of metres off the other layers'",
                )
            elif conv is not None:
                self.heights = f"converted from {conv.source}"
        found = self._conversions[key]
        if found is None or not callable(found.offset):
            return None
        return np.asarray(found.offset(lon, lat), dtype=np.float64)

    def warn(self, category: type[CimWarning], message: str) -> None:
        """Report something the layer noticed and carried on with: kept in the result and
        issued as a Python warning of ``category`` (callers filter or escalate it)."""
        w = category(f"{self.id}: {message}")
        self.warnings.append(w)
        warnings.warn(w, stacklevel=2)

    def add_search(self, rows: SearchRows) -> None:
        """Hand the layer's rows to the city's search index now, so that it indexes them while
        the tiles are made (rows returned only in the :class:`LayerOutput` are indexed by the
        caller of :func:`run_layer` once the layer is done)."""
        self._rows.append(rows)
        if self.city.search is not None and not self.city.search.has(rows):
            self.city.search.add(rows)

    def map(
        self,
        job: Callable[[Any, Any], Any],
        state: Any,
        keys: Iterable[Any],
        *,
        sizes: Sequence[float] | None = None,
        stage: str | None = None,
    ) -> Iterator[Any]:
        """Run tile jobs ``job(state, key)`` on the engine's pool; yield their results in key
        order. The files each job wrote through the store's :class:`~cim.store.TileSink` are
        logged in the store as its result arrives; ``stage`` reports progress job by job."""
        if self._pool is None or self.store is None:
            raise RuntimeError("LayerRun.map is for LayerBuilder.build")
        keys = list(keys)
        store = self.store
        for i, (result, files) in enumerate(self._pool.map(journaled, (job, state), keys, sizes=sizes)):
            store.record(files)
            if stage is not None:
                self.progress(stage, i + 1, len(keys))
            yield result


# -- the contract --------------------------------------------------------------------------------


class LayerBuilder(ABC, Generic[O, P]):
    """A layer kind (see the module notes). Subclasses set the class attributes and implement
    :meth:`plan` and :meth:`build`; instances hold no state of a build.

    Attributes
    ----------
    kind : the name recipes and ``cim convert`` use
    Options : the options dataclass
    index : the index file :meth:`build` returns and the store writes last
    content : folders of the layer's files (earlier builds' leftovers there are removed)
    format, url : how ``city.json`` links the layer (see :class:`LayerResult`)
    order : build order within a city, lower first (terrain 10 ... buildings 50): a kind that
        uses another's results builds after it
    cim_level : the layer's CIM level when the recipe gives none
    multiple_sources : accepts several files or folders (``cim convert KIND A B OUT``)
    summary : one line for ``cim convert --help``
    """

    kind: ClassVar[str]
    Options: ClassVar[type[LayerOptions]]
    index: ClassVar[str] = "tileset.json"
    pretty_index: ClassVar[bool] = False
    content: ClassVar[tuple[str, ...]] = ("tiles",)
    format: ClassVar[str] = "3dtiles"
    url: ClassVar[str] = "tileset.json"
    order: ClassVar[int] = 50
    cim_level: ClassVar[int] = 2
    multiple_sources: ClassVar[bool] = False
    summary: ClassVar[str] = ""

    @abstractmethod
    def plan(self, sources: list[Path], options: O, run: LayerRun) -> P:
        """Read what the layer needs before any tile is made; list its jobs."""

    @abstractmethod
    def build(self, plan: P, run: LayerRun) -> LayerOutput:
        """Make the tiles (through :meth:`LayerRun.map`) and return the index and counts."""

    def options(self, values: Mapping[str, Any], *, where: str = "options", base: Path | None = None) -> LayerOptions:
        """The kind's options from a mapping (see :meth:`LayerOptions.from_mapping`)."""
        return self.Options.from_mapping(values, where=where, base=base)


def _cached_output(builder: LayerBuilder, run: LayerRun, key: str) -> LayerOutput | None:
    """The output of the layer's last published build, when it had the cache key ``key`` (see
    :func:`run_layer`) and all its files are still there (see :mod:`cim.layers.cache`); its
    warnings are issued again."""
    import json as _json

    from cim.layers.cache import load_result

    store = run.store
    assert store is not None
    if not (store.published and store.resumed):
        return None
    cached = load_result(run.city.out, run.id, key, store.resumed)
    if cached is None:
        return None
    fields, info, search, rows, notes, run.heights = cached
    try:
        index = _json.loads((run.out / builder.index).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for w in notes:
        run.warnings.append(w)  # type: ignore[arg-type]
        warnings.warn(w, stacklevel=2)
    for r in rows:
        run.add_search(r)
    log.info("%s %s: inputs unchanged since its last build: skipped", builder.kind, run.id)
    return LayerOutput(index=index, info=info, search=search, **fields)


def run_layer(
    builder: LayerBuilder, layer_id: str, sources: Sequence[str | Path], options: LayerOptions, city: City, *, out: Path | None = None
) -> LayerResult:
    """Build one layer of ``city`` into ``out`` (default ``city.out / layer_id``).

    The skeleton every kind shares: plan, open the store with the plan's key, run the build on
    a pool of the city's engine, publish the index, count, and fix the city's frame from the
    layer's bounds when no layer has fixed it yet.
    """
    t0 = time.perf_counter()
    paths = [Path(s) for s in sources]
    if not paths:
        raise CimInputError(f"layer {layer_id}: no source given")
    if len(paths) > 1 and not builder.multiple_sources:
        raise CimInputError(f"layer {layer_id}: the {builder.kind} kind takes one source, got {len(paths)}")
    run = LayerRun(layer_id, builder.kind, Path(out) if out is not None else city.out / layer_id, city)
    plan = builder.plan(paths, options, run)
    run.store = TileStore(run.out, plan.key, index=builder.index, content=builder.content)
    # the cache's key: the plan's, every option that decides the output (some kinds leave a few
    # out of their plan's key), and the content of the layers built before this one (a kind may
    # use their results: buildings stand on the terrain, make way for BIM models)
    cache_key = build_key(plan.key, options.key(), [(r.id, build_key(sorted(r.digests.items()))) for r in city.built]) if city.cache else ""
    output = _cached_output(builder, run, cache_key) if city.cache else None
    made = output is None
    if output is None:
        if city.cache:
            from cim.layers.cache import drop_result

            drop_result(city.out, layer_id)
        try:
            with city.engine.pool(builder.kind, small=plan.small) as pool:
                run._pool = pool
                output = builder.build(plan, run)
        finally:
            run._pool = None
            run.store.close()
    run.store.finish(output.index, pretty=builder.pretty_index)
    if city.cache and made:
        from cim.layers.cache import save_result

        save_result(city.out, layer_id, cache_key, run.store.files - 1, output, run._rows, run.warnings, run.heights)
    result = LayerResult(
        id=layer_id,
        kind=builder.kind,
        path=run.out,
        count=output.count,
        tiles=output.tiles,
        triangles=output.triangles,
        bytes=run.store.size_on_disk(),
        bounds=output.bounds,
        schema=output.schema,
        seconds=time.perf_counter() - t0,
        resumed_tiles=run.store.resumed,
        skipped=output.skipped,
        repaired=output.repaired,
        warnings=run.warnings,
        format=builder.format,
        url=output.url if output.url is not None else builder.url,
        crs=output.crs,
        info=output.info,
        sources=paths,
        search=output.search,
        heights=run.heights,
        rewritten=run.store.rewritten,
        files=run.store.files,
        made=run.store.files - run.store.resumed - run.store.reused if made else 0,
        digests=run.store.digests(),
    )
    if city.frame is None:
        from cim.kernels.frames import LocalFrame

        b = result.bounds
        city.frame = LocalFrame((b["west"] + b["east"]) / 2, (b["south"] + b["north"]) / 2, b["min_height"])
    city.built.append(result)
    log.info(
        "%s %s: %d features, %d tiles, %.1f MB, %.2f s; files made %d, rewritten %d / %d",
        builder.kind,
        layer_id,
        result.count,
        result.tiles,
        result.bytes / 1e6,
        result.seconds,
        result.made,
        result.rewritten,
        result.files,
    )
    return result
