"""The point-cloud layer: LAS/LAZ files → octree of GLB point tiles (3D Tiles 1.1, refine ADD).

Three passes of tile jobs, each a function of the pass's shared state and one key, run on the
engine's pool (threads by default: the kernels release the GIL, and lazrs' decoder threads
must never meet a fork):

1. **stage**: every file is cut into point ranges; a job reads its range in batches, reprojects
   each batch into the city's ENU frame with the file's checked quadratic fit
   (:class:`~cim.sources.pointcloud.transform.PiecewiseFit`, made once here with pyproj), sorts it by
   Morton code and keeps it as a run (:func:`~cim.tiling.octree.stage_batch`): in memory up to
   ``stage_memory`` bytes for the whole build, beyond that in the job's spill file;
2. **index**: the summed counts split the cube into chunks of at most ``chunk_points``; a job
   gathers a chunk's slices of every run, builds its octree
   (:func:`~cim.tiling.octree.index_chunk`), encodes and writes its tiles;
3. **top**: the few nodes above the chunks are assembled from the points each chunk passed up
   and written by the same jobs; ``tileset.json`` is written last.

Tiles are written through the store's sink and logged, like every layer's, each with the hash
of its inputs (its points' staged records and the encoding's options, see :func:`node_inputs`):
a rebuild after one file changed still stages and indexes every point, but encodes only the
nodes whose points changed and keeps the others' tiles (:meth:`cim.store.TileSink.reuse`).

Memory is bounded by ``stage_memory`` and the batch and chunk sizes, whatever the input size
(measured peaks: ``benchmarks/README.md``); the spill files live in a temporary folder inside
``out_dir``, removed at the end. Every point is in exactly one tile: the build checks the
count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cim._version import __version__
from cim.crs import crs_label, to_lonlat
from cim.errors import CimInputError
from cim.formats.points import POINT_DESCRIPTIONS, POINT_PROPERTIES, encode_point_words, position_bounds
from cim.formats.tileset import box_from_bounds, tileset_document, transform_list
from cim.kernels.clusters import box_groups
from cim.kernels.frames import LocalFrame, ecef_to_geodetic
from cim.kernels.octree import WORDS, cell_corner
from cim.layers.base import LayerBuilder, LayerInfo, LayerOptions, LayerOutput, LayerPlan, LayerRun, option
from cim.sources.plausible import MAX_HEIGHT, MIN_HEIGHT
from cim.sources.pointcloud import (
    PiecewiseFit,
    PointCloudSource,
    frame_for,
    header_box_enu,
    list_pointcloud_files,
    open_pointcloud,
    read_batches,
    source_transform,
)
from cim.sources.pointcloud.kept import KEPT_DIR, KeptWriter, write_kept_manifest
from cim.store import TileSink, build_key, file_fingerprint
from cim.tiling.implicit import CONTENT_URI, implicit_tiling, subtree_files
from cim.tiling.octree import (
    IDENTITY,
    Chunk,
    MemoryBudget,
    OctreeGrid,
    Run,
    Scratch,
    SpillFile,
    ancestors,
    attach_runs,
    group_chunks,
    index_chunk,
    merge_counts,
    node_name,
    plan_chunks,
    read_slices,
    stage_batch,
)
from cim.warnings import GeoreferenceWarning, OutsideDataWarning, ReprojectionWarning

__all__ = [
    "PointCloudLayer",
    "PointCloudOptions",
    "PointCloudInfo",
    "PointCloudPlan",
    "LAS_CLASSES",
    "encode_tile",
    "stage_job",
    "index_job",
    "top_job",
    "implicit",
    "node_inputs",
    "tile_path",
]

#: bump when a point tile's encoding changes in a way the package version does not tell
TILE_FORMAT = 1

log = logging.getLogger("cim.pointcloud")

#: below this many points a build runs in the calling thread unless ``workers`` asks for more
IN_PROCESS_POINTS = 1_000_000
#: ASPRS class names for the manifest
LAS_CLASSES = {
    0: "never classified",
    1: "unclassified",
    2: "ground",
    3: "low vegetation",
    4: "medium vegetation",
    5: "high vegetation",
    6: "building",
    7: "low point (noise)",
    8: "model key point",
    9: "water",
    10: "rail",
    11: "road surface",
    12: "overlap",
    13: "wire guard",
    14: "wire conductor",
    15: "transmission tower",
    16: "wire connector",
    17: "bridge deck",
    18: "high noise",
}


@dataclass
class PointCloudOptions(LayerOptions):
    """Options of a point-cloud layer."""

    crs: str | None = option(None, help="CRS of files that declare none, e.g. EPSG:4544 [default: the city's].")
    crs_override: bool = option(False, help="Use --crs even for files that declare one.")
    max_gap: float = option(
        20_000.0, help="Largest gap (m) between files of one layer; files farther apart are of different places: an error."
    )
    leaf_points: int = option(60_000, help="Most points in a leaf tile.")
    node_bits: int = option(7, help="A node keeps one point per cell of a 2^node_bits grid over its cube (7: Potree's spacing).")
    chunk_points: int = option(1_000_000, help="Most points a job indexes at once (bounds its memory).")
    batch_points: int = option(1 << 19, help="Points read and staged at once (bounds a reader's memory).", key=False)
    stage_memory: int = option(256 << 20, help="Bytes of staged points kept in memory; the rest spill to temporary files.", key=False)
    tolerance: float = option(1e-3, help="Largest reprojection error (m) accepted from a local fit before exact pyproj.")
    max_step: float = option(0.005, help="Largest 16-bit quantization step (m); coarser nodes store float32 positions.")
    precision: float | None = option(None, help="Position quantization step (m) [default: the files' LAS scale, 0.1 mm to 1 cm].")
    meshopt: bool = option(True, help="Compress tiles with EXT_meshopt_compression.")
    implicit_tiles: int = option(
        4000,
        help="Write the octree with 3D Tiles implicit tiling (subtree files; tileset.json stays a few KB) when it is "
        "estimated to have more tiles than this (2 x points / leaf_points, known before any tile is written); -1: never.",
    )
    subtree_levels: int = option(4, help="Levels of each subtree file of an implicit octree.")

    def check(self, where: str) -> None:
        for name in ("leaf_points", "chunk_points", "batch_points", "stage_memory"):
            if getattr(self, name) < 1:
                raise CimInputError(f"{where}: option {name!r} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.node_bits <= 10:
            raise CimInputError(f"{where}: option 'node_bits' must be in 1..10, got {self.node_bits}")
        for name in ("tolerance", "max_step"):
            if not getattr(self, name) > 0:
                raise CimInputError(f"{where}: option {name!r} must be positive, got {getattr(self, name)}")
        if self.implicit_tiles < -1:
            raise CimInputError(f"{where}: option 'implicit_tiles' must be -1 (never) or more, got {self.implicit_tiles}")
        if not 1 <= self.subtree_levels <= 10:
            raise CimInputError(f"{where}: option 'subtree_levels' must be in 1..10, got {self.subtree_levels}")
        if self.precision is not None and not self.precision > 0:
            raise CimInputError(f"{where}: option 'precision' must be positive, got {self.precision}")


@dataclass
class PointCloudInfo(LayerInfo):
    """What a point-cloud layer adds to its ``city.json`` entry."""

    points: int
    #: property id → the glTF attribute semantic holding it
    attributes: dict[str, str]
    descriptions: dict[str, str]
    #: ASPRS class code (as text) → {"name", "count"}
    classes: dict[str, dict]
    has_color: bool
    crs: list[str]
    #: the root node's point spacing, metres
    spacing: float


@dataclass
class PointCloudPlan(LayerPlan):
    srcs: list[PointCloudSource] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    fits: list[PiecewiseFit] = field(default_factory=list)
    grid: OctreeGrid | None = None
    frame: LocalFrame | None = None
    total: int = 0
    workers: int = 1
    options: PointCloudOptions = field(default_factory=PointCloudOptions)


def _one_place(files: list[Path], boxes: list[tuple[np.ndarray, np.ndarray]], frame: LocalFrame, gap: float) -> None:
    """Refuse files of different places in one layer (a folder holding surveys of two cities
    would make one octree thousands of kilometres wide, every point of a city in one leaf)."""
    if len(files) < 2:
        return
    lo = np.array([b[0][:2] for b in boxes])
    hi = np.array([b[1][:2] for b in boxes])
    labels = box_groups(lo, hi, gap)
    if labels.max() == 0:
        return
    parts = []
    for g in range(int(labels.max()) + 1):
        members = [f for f, label in zip(files, labels) if label == g]
        centre = (lo[labels == g].min(axis=0) + hi[labels == g].max(axis=0)) / 2.0
        lon, lat, _ = ecef_to_geodetic(frame.to_ecef(np.array([[centre[0], centre[1], 0.0]])))
        shown = ", ".join(f.name for f in members[:3]) + (f" and {len(members) - 3} more" if len(members) > 3 else "")
        parts.append(f"{len(members)} file(s) near {float(lon[0]):.3f}°E {float(lat[0]):.3f}°N ({shown})")
    span = float(np.linalg.norm(hi.max(axis=0) - lo.min(axis=0))) / 1000.0
    raise CimInputError(
        f"point-cloud files of {len(parts)} places in one layer, {span:,.0f} km across: {'; '.join(parts)}. "
        f"Give each place its own layer (or raise the layer's option 'max_gap', now {gap:,.0f} m, if they are one survey)"
    )


def _in_city_datum(src: PointCloudSource, run: LayerRun) -> PointCloudSource:
    """``src`` with its heights brought to the city's vertical datum: the header's z offset and
    bounds shifted by the datum offset at the file's centre (a survey tile spans a kilometre or
    two, over which the geoid's slope moves heights by centimetres)."""
    from pyproj import CRS

    full = CRS.from_wkt(src.full_crs_wkt) if src.full_crs_wkt else None
    if full is None or not full.is_compound:
        run.height_offset(full, np.zeros(1), np.zeros(1), src.path.name)  # records "as given"
        return src
    cx, cy = (src.mins[0] + src.maxs[0]) / 2.0, (src.mins[1] + src.maxs[1]) / 2.0
    lon, lat = to_lonlat(np.array([cx]), np.array([cy]), src.crs)
    dz = run.height_offset(full, lon, lat, src.path.name)
    if dz is None:
        return src
    shift = float(dz[0]) / src.z_factor
    return dataclasses.replace(
        src,
        offsets=(src.offsets[0], src.offsets[1], src.offsets[2] + shift),
        mins=(src.mins[0], src.mins[1], src.mins[2] + shift),
        maxs=(src.maxs[0], src.maxs[1], src.maxs[2] + shift),
    )


def _plausible_spread(stage: _Staged, grid: OctreeGrid, files: list[Path], gap: float) -> None:
    """Refuse points that lie far outside their files' header boxes: beyond ``gap`` across, or
    over a height range no place has (a header whose offset or scale is wrong: NaN, 1e12, 3e38)."""
    span = (stage.hi - stage.lo).astype(np.float64) * grid.unit
    shown = ", ".join(str(f) for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    if not np.isfinite(span).all() or (stage.lo > stage.hi).any():
        raise CimInputError(f"{shown}: the points' coordinates are not numbers (a NaN or infinite scale or offset in the header?)")
    if span[0] > gap or span[1] > gap or span[2] > MAX_HEIGHT - MIN_HEIGHT:
        raise CimInputError(
            f"{shown}: points lie outside the header's bounding box and spread {span[0] / 1000:,.4g} × {span[1] / 1000:,.4g} km "
            f"over {span[2]:,.4g} m of height: the header's scales or offsets are wrong (or raise the layer's option 'max_gap', now {gap:,.0f} m)"
        )


class PointCloudLayer(LayerBuilder[PointCloudOptions, PointCloudPlan]):
    """LAS/LAZ files (or folders of them) → one octree of GLB point tiles, refine ADD: every input
    point appears in exactly one tile (``tileset.json`` + ``tiles/r*.glb``)."""

    kind = "pointcloud"
    Options = PointCloudOptions
    content = ("tiles", "subtrees")
    order = 40
    cim_level = 1
    multiple_sources = True
    summary = "Tile LAS/LAZ files (or folders of them) into one 3D Tiles 1.1 point cloud."

    def plan(self, sources: list[Path], options: PointCloudOptions, run: LayerRun) -> PointCloudPlan:
        files = list_pointcloud_files(sources)
        crs = run.crs(options.crs)
        if options.crs_override and options.crs is None:
            raise CimInputError(f"{files[0]}: crs_override needs the layer's own crs (the CRS to use instead of the files')")
        srcs = [_in_city_datum(open_pointcloud(f, crs, crs_override=options.crs_override), run) for f in files]
        overridden = [s.path.name for s in srcs if s.crs_from == "override"]
        if overridden:
            shown = ", ".join(overridden[:5]) + (f" and {len(overridden) - 5} more" if len(overridden) > 5 else "")
            run.warn(
                GeoreferenceWarning,
                f"{len(overridden)} file(s) read as {crs} instead of the CRS their header declares (crs_override): {shown}",
            )
        total = sum(s.count for s in srcs)
        if total == 0:
            raise CimInputError(f"{', '.join(map(str, files))}: no points")
        frame = run.frame if run.frame is not None else frame_for(srcs)
        boxes = [header_box_enu(s, frame) for s in srcs]
        _one_place(files, boxes, frame, options.max_gap)
        fits = [source_transform(s, frame, options.tolerance).piecewise(np.array(s.mins), np.array(s.maxs)) for s in srcs]
        grid = OctreeGrid.around(np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0), node_bits=options.node_bits)
        key = build_key("pointcloud-1", [file_fingerprint(f) for f in files], [s.crs_wkt for s in srcs], options.key(), frame.to_dict())
        small = total < IN_PROCESS_POINTS
        workers = run.city.engine.workers_for(small)
        ranges = list(_ranges(srcs, total, workers + 1, options.batch_points))
        run.propose_frame(frame)
        return PointCloudPlan(
            key, ranges, small, srcs=srcs, files=files, fits=fits, grid=grid, frame=frame, total=total, workers=workers, options=options
        )

    def build(self, plan: PointCloudPlan, run: LayerRun) -> LayerOutput:
        assert run.store is not None and plan.grid is not None and plan.frame is not None
        opts, srcs, frame, total, n_workers = plan.options, plan.srcs, plan.frame, plan.total, plan.workers
        grid = plan.grid
        tmp = Path(tempfile.mkdtemp(prefix=".cim-tmp-", dir=run.out))
        try:
            stage = _run_stage(run, plan, grid, tmp)
            if stage.outside:
                # a header box was wrong: stage again inside a cube around the points themselves
                _plausible_spread(stage, grid, sorted(stage.outside_files), opts.max_gap)
                grid = OctreeGrid.around(stage.lo * grid.unit, stage.hi * grid.unit, node_bits=opts.node_bits)
                stage.runs.clear()  # frees the runs kept in memory
                for f in tmp.iterdir():
                    f.unlink()
                stage = _run_stage(run, plan, grid, tmp)
                stage.restaged = True

            cells, counts = merge_counts([r.cells for r in stage.runs], [np.diff(r.cum) for r in stage.runs])
            chunks = plan_chunks(cells, counts, grid.count_depth, max(opts.chunk_points, opts.leaf_points))
            attach_runs(chunks, stage.runs)
            target = max(opts.leaf_points, min(opts.chunk_points, total // (3 * n_workers) + 1))
            precision = opts.precision if opts.precision is not None else min(max(min(s.resolution for s in srcs), 1e-4), 0.01)
            enc = Encoding(
                grid,
                any(s.has_rgb for s in srcs),
                opts.max_step,
                precision,
                opts.meshopt,
                opts.leaf_points,
                run.store.sink(),
                implicit(opts, total),
            )
            enc = dataclasses.replace(enc, salt=enc.salt_text().encode("utf-8"))
            metas: dict[tuple[int, int], NodeMeta] = {}
            up: dict[tuple[int, int], list[np.ndarray]] = {}
            done = 0
            groups = group_chunks(chunks, target)
            for results in run.map(index_job, enc, groups, sizes=[sum(c.count for c in g) for g in groups]):
                for res in results:
                    for m in res.nodes:
                        metas[(m.depth, m.prefix)] = m
                    a = 0
                    for d, n in enumerate(res.up_counts.tolist()):
                        if n:
                            up.setdefault((d, res.chunk.prefix >> (3 * (res.chunk.depth - d))), []).append(res.up_records[a : a + n])
                        a += n
                    done += 1
                    run.progress("tiles", done, len(chunks))
            stage.runs.clear()  # the staged points are in the tiles now (the ancestors' shares in ``up``)
            for c in chunks:
                c.slices = []

            # the nodes above the chunks, each from every chunk's share (chunks came in Morton order)
            tops = sorted(ancestors(chunks))
            for key in tops:
                if key not in up:
                    metas[key] = NodeMeta(key[0], key[1], 0, None, None, False)
            shares = [(d, p, up[(d, p)]) for d, p in tops if (d, p) in up]
            size = max(1, sum(sum(len(x) for x in parts) for _, _, parts in shares) // (2 * n_workers))
            top_groups: list[list] = [[]]
            for item in shares:
                if top_groups[-1] and sum(sum(len(x) for x in q[2]) for q in top_groups[-1]) >= size:
                    top_groups.append([])
                top_groups[-1].append(item)
            for metas_ in run.map(top_job, enc, [g for g in top_groups if g]):
                for m in metas_:
                    metas[(m.depth, m.prefix)] = m
        finally:
            _local.__dict__.pop("scratch", None)  # this thread's work arrays, when it ran jobs itself
            shutil.rmtree(tmp, ignore_errors=True)

        counted = sum(m.count for m in metas.values())
        if counted != total:
            raise RuntimeError(f"point count mismatch: {total} read, {counted} written")  # a bug, never input
        root, lo, hi = _tile_json(metas, grid, (0, 0))
        if enc.implicit:
            root = _implicit_root(metas, grid, opts.subtree_levels, run)
        root["transform"] = transform_list(frame.matrix())
        doc = tileset_document(root, max(grid.spacing(0) * 4.0, float(np.linalg.norm(hi - lo))))

        for src, fit in zip(srcs, plan.fits):
            if fit.exact.any():
                run.warn(
                    ReprojectionWarning,
                    f"{src.path.name}: {int(fit.exact.sum())} of {len(fit.lo)} area(s) reprojected point by point (no quadratic within {opts.tolerance} m)",
                )
        if stage.restaged:
            run.warn(OutsideDataWarning, "points lie outside their files' header bounds: the octree cube was sized from the points")
        classes = {int(c): int(n) for c, n in enumerate(stage.classes) if n}
        labels = sorted({crs_label(s.crs) for s in srcs})
        log.info(
            "pointcloud %s: %d points, reprojection: %d fitted box(es), largest error %.2g m, %d exact box(es)",
            run.id,
            total,
            sum(len(f.lo) for f in plan.fits),
            max(f.error for f in plan.fits),
            sum(int(f.exact.sum()) for f in plan.fits),
        )
        return LayerOutput(
            index=doc,
            count=total,
            tiles=sum(1 for m in metas.values() if m.count),
            bounds=_geodetic_bounds(frame, lo, hi),
            schema={pid: ctype for pid, (_, ctype, _) in POINT_PROPERTIES.items()},
            crs=labels[0] if len(labels) == 1 else None,
            info=PointCloudInfo(
                points=total,
                attributes={pid: sem for pid, (sem, _, _) in POINT_PROPERTIES.items()},
                descriptions=dict(POINT_DESCRIPTIONS),
                classes={str(c): {"name": LAS_CLASSES.get(c, "user defined"), "count": n} for c, n in classes.items()},
                has_color=enc.colors,
                crs=labels,
                spacing=grid.spacing(0),
            ),
        )


_local = threading.local()


def _scratch() -> Scratch:
    """The calling thread's reusable work arrays (freed with the thread: the pool's threads end
    with the layer; the layer's own thread drops its arrays at the end of the build)."""
    s = getattr(_local, "scratch", None)
    if s is None:
        s = _local.scratch = Scratch()
    return s


# --- stage jobs -------------------------------------------------------------


@dataclass(frozen=True)
class StageState:
    """What every stage job of a pass shares."""

    srcs: tuple[PointCloudSource, ...]
    fits: tuple[PiecewiseFit, ...]
    grid: OctreeGrid
    tmp: str
    batch: int
    budget: MemoryBudget
    #: the folder the building points are kept in for a later layer's link
    #: (:mod:`cim.sources.pointcloud.kept`), or None
    kept: str | None = None


@dataclass
class StageResult:
    runs: list[Run]
    lo: np.ndarray
    hi: np.ndarray
    outside: bool
    classes: np.ndarray
    points: int


def stage_job(state: StageState, key: tuple[int, int, int, int]) -> StageResult:
    """The stage pass's job: read the points ``[start, start + count)`` of file ``i`` in batches,
    reproject, quantize and Morton-sort each into a run (kept in memory while the budget allows,
    else spilled to the job's file). ``key``: (job number, file index, start, count)."""
    job, i, start, count = key
    src, fit, grid = state.srcs[i], state.fits[i], state.grid
    runs: list[Run] = []
    lo = np.full(3, np.iinfo(np.int64).max)
    hi = np.full(3, np.iinfo(np.int64).min)
    outside = False
    classes = np.zeros(256, dtype=np.int64)
    points = 0
    scratch = _scratch()
    buffer = scratch.get("las", state.batch * src.record_size, np.uint8) if src.record_size else None
    kept = KeptWriter(state.kept, job) if state.kept is not None else None
    with SpillFile(os.path.join(state.tmp, f"stage-{job:05d}.bin"), state.budget) as spill, _closing(kept):
        quad = fit.single_quadratic(src.scales, src.offsets)
        for b in read_batches(src, start, count, state.batch, buffer):
            attrs = (
                b.colors_raw,
                b.color_shift,
                b.intensity,
                b.classification_raw,
                b.class_mask,
                b.bit_fields,
                b.return_mask,
                grid,
                scratch,
            )
            st = None
            if quad is not None:
                st = stage_batch(b.X, b.Y, b.Z, quad[0], quad[1], quad[2], *attrs)  # (mypy maps one *tuple, not two)
                if st.off_box:
                    st = None  # the header box lied: these points need the slow path
            if st is None:  # several fitted boxes, exact pyproj, or points outside the fit
                X, Y, Z = fit.apply_raw(b.X, b.Y, b.Z, b.scales, b.offsets)
                st = stage_batch(X, Y, Z, np.ones(3), np.zeros(3), IDENTITY, *attrs)
            source, off = spill.append(st.records)
            cum = np.zeros(len(st.counts) + 1, dtype=np.int64)
            np.cumsum(st.counts, out=cum[1:])
            runs.append(Run(source, off, len(st.records), st.cells, cum))
            lo = np.minimum(lo, st.lo)
            hi = np.maximum(hi, st.hi)
            outside |= st.outside > 0
            classes += st.classes
            points += len(b)
            if kept is not None:
                kept.add(b.X, b.Y, b.Z, b.classification_raw, b.class_mask, st.classes)
    return StageResult(runs, lo, hi, outside, classes, points)


@contextlib.contextmanager
def _closing(kept: KeptWriter | None) -> Iterator[None]:
    """Close a kept-points part when its job finishes, drop it when the job fails."""
    try:
        yield
    except BaseException:
        if kept is not None:
            kept.abort()
        raise
    if kept is not None:
        kept.close()


@dataclass
class _Staged:
    runs: list[Run] = field(default_factory=list)
    lo: np.ndarray = field(default_factory=lambda: np.full(3, np.iinfo(np.int64).max))
    hi: np.ndarray = field(default_factory=lambda: np.full(3, np.iinfo(np.int64).min))
    outside: bool = False
    classes: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    restaged: bool = False
    outside_files: set[Path] = field(default_factory=set)


def _ranges(srcs: Sequence[PointCloudSource], total: int, workers: int, batch: int) -> Iterator[tuple[int, int, int, int]]:
    """Stage jobs' keys: files cut into point ranges, about three per worker, LAZ ranges on chunk
    boundaries; ``(job number, file index, start, count)``."""
    size = max(batch, -(-total // (3 * workers)))
    job = 0
    for i, s in enumerate(srcs):
        step = size
        if s.compressed:
            if not s.laz_chunk:
                yield job, i, 0, s.count
                job += 1
                continue
            step = max(s.laz_chunk, (size // s.laz_chunk) * s.laz_chunk)
        for a in range(0, s.count, step):
            yield job, i, a, min(step, s.count - a)
            job += 1


def _run_stage(run: LayerRun, plan: PointCloudPlan, grid: OctreeGrid, tmp: Path) -> _Staged:
    # jobs on other machines keep no run in memory: every run goes to its spill file in ``tmp``
    # (inside the layer's folder, which every worker sees), and the index jobs read it there
    budget = MemoryBudget(plan.options.stage_memory if run.city.engine.shares_memory else 0)
    kept = run.out / KEPT_DIR if run.city.keep_building_points else None
    state = StageState(
        tuple(plan.srcs), tuple(plan.fits), grid, str(tmp), plan.options.batch_points, budget, None if kept is None else str(kept)
    )
    out = _Staged()
    done = 0
    run.progress("read", 0, plan.total)
    for key, r in zip(plan.jobs, run.map(stage_job, state, plan.jobs, sizes=[k[3] for k in plan.jobs])):
        if r.outside:
            out.outside_files.add(plan.srcs[key[1]].path)
        out.runs += r.runs
        out.lo = np.minimum(out.lo, r.lo)
        out.hi = np.maximum(out.hi, r.hi)
        out.outside |= r.outside
        out.classes += r.classes
        done += r.points
        run.progress("read", done, plan.total)
    if kept is not None:
        write_kept_manifest(kept, plan.files, plan.jobs)
    return out


# --- index and top jobs -------------------------------------------------------


@dataclass(frozen=True)
class Encoding:
    """What every index and top job shares: how nodes become tiles, and where they go."""

    grid: OctreeGrid
    colors: bool
    max_step: float
    precision: float
    meshopt: bool
    leaf_points: int
    sink: TileSink
    #: tiles are named for implicit tiling (``tiles/{level}/{x}/{y}/{z}.glb``), see :func:`implicit`
    implicit: bool = False
    #: the part of every tile's input hash that the encoding decides (:meth:`salt_text`)
    salt: bytes = b""

    def salt_text(self) -> str:
        """The encoder's version and every option of this encoding a tile's bytes depend on."""
        return json.dumps(
            [
                "pointcloud",
                TILE_FORMAT,
                __version__,
                dataclasses.asdict(self.grid),
                self.colors,
                self.max_step,
                self.precision,
                self.meshopt,
            ],
            default=repr,
        )


@dataclass
class NodeMeta:
    depth: int
    prefix: int
    count: int
    lo: tuple[int, int, int] | None
    hi: tuple[int, int, int] | None
    leaf: bool
    bytes: int = 0


@dataclass
class ChunkResult:
    chunk: Chunk
    nodes: list[NodeMeta]
    up_records: np.ndarray  # points for the ancestors, grouped by depth
    up_counts: np.ndarray  # per ancestor depth 0..chunk.depth-1


def encode_tile(
    records: np.ndarray,
    grid: OctreeGrid,
    colors: bool,
    max_step: float,
    precision: float,
    meshopt: bool,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """One node's GLB from its staging records (STAGE_DTYPE, whose words the encoder reads)."""
    words = records.view(np.uint32).reshape(len(records), WORDS)
    return encode_point_words(
        words,
        grid.unit,
        colors,
        max_step=max_step,
        precision=precision,
        meshopt=meshopt,
        bounds=bounds,
    )


def _write_node(records: np.ndarray, depth: int, prefix: int, enc: Encoding) -> NodeMeta:
    lo, hi = position_bounds(records.view(np.uint32).reshape(len(records), WORDS))
    rel = tile_path(depth, prefix, enc.implicit)
    done = enc.sink.meta(rel) if enc.sink.is_done(rel) else None
    if done is not None and "bytes" in done:
        # an earlier run of the same build wrote this tile (a resumed build, or a layer that had
        # finished before the city's build was interrupted): neither encoded nor logged again
        size = int(done["bytes"])
    else:
        inputs = node_inputs(records, enc.salt)
        kept = enc.sink.reuse(rel, inputs, _size_meta)  # the previous build made it of the same points
        if kept is not None:
            size = kept
        else:
            glb = encode_tile(records, enc.grid, enc.colors, enc.max_step, enc.precision, enc.meshopt, (lo, hi))
            enc.sink.write(rel, glb, _size_meta(len(glb)), inputs=inputs)
            size = len(glb)
    return NodeMeta(depth, prefix, len(records), tuple(lo.tolist()), tuple(hi.tolist()), False, size)


def _size_meta(size: int) -> dict[str, int]:
    return {"bytes": size}


def node_inputs(records: np.ndarray, salt: bytes) -> str:
    """The input hash of a node's tile: its staged records (STAGE_DTYPE, in the node's order;
    the tile's bounds come from them) and the encoding's ``salt`` (see :meth:`Encoding.salt_text`)."""
    h = hashlib.blake2b(salt, digest_size=20)
    h.update(np.ascontiguousarray(records).view(np.uint8).data)
    return h.hexdigest()


def implicit(options: PointCloudOptions, points: int) -> bool:
    """Whether a layer of ``points`` is written with implicit tiling: decided before any tile is
    written (a tile's name depends on it), from an estimate of its tiles, ``2 × points /
    leaf_points`` (leaves hold up to ``leaf_points``, the levels above them about as many again)."""
    return options.implicit_tiles >= 0 and 2 * points // options.leaf_points > options.implicit_tiles


def tile_path(depth: int, prefix: int, implicit: bool) -> str:
    """A node's tile: ``tiles/r0123.glb`` (Potree's names), or its implicit tiling coordinates
    ``tiles/{level}/{x}/{y}/{z}.glb`` (z up, unlike the Morton digits' flipped z)."""
    if not implicit:
        return f"tiles/{node_name(depth, prefix)}.glb"
    x, y, z = cell_corner(prefix, depth)
    return CONTENT_URI.format(level=depth, x=x, y=y, z=z)


def _implicit_root(metas: dict[tuple[int, int], NodeMeta], grid: OctreeGrid, subtree_levels: int, run: LayerRun) -> dict:
    """The root of an implicit octree (the cube, its spacing as geometric error, the content and
    subtree templates) inside an explicit root that carries the frame's transform; writes the
    subtree files. Every node of ``metas`` is an available tile, those with points have content."""
    assert run.store is not None
    keys = sorted(metas)
    depth = np.array([d for d, _ in keys], dtype=np.int64)
    xyz = np.array([cell_corner(p, d) for d, p in keys], dtype=np.int64).reshape(-1, 3)
    content = np.array([metas[k].count > 0 for k in keys], dtype=bool)
    levels = int(depth.max()) + 1
    per = min(subtree_levels, levels)
    files = subtree_files(depth, xyz[:, 0], xyz[:, 1], xyz[:, 2], content, per)
    run.store.write_many([(path, data, None) for path, data in sorted(files.items())])
    lo, hi = grid.cell_box(0, 0)
    box = box_from_bounds(lo, hi, pad=0.0)
    error = round(grid.spacing(0), 4)
    tile = {
        "boundingVolume": {"box": box},
        "geometricError": error,
        "refine": "ADD",
        "content": {"uri": CONTENT_URI},
        "implicitTiling": implicit_tiling(True, per, levels),
    }
    return {"boundingVolume": {"box": box}, "geometricError": error, "refine": "ADD", "children": [tile]}


def index_job(enc: Encoding, chunks: list[Chunk]) -> list[ChunkResult]:
    """The index pass's job: gather each chunk's slices of every run, build its octree, write its
    nodes' tiles; returns, per chunk, its nodes and the points it passes up to its ancestors."""
    out = []
    for chunk in chunks:
        scratch = _scratch()
        records = read_slices(chunk.slices, scratch)
        ix = index_chunk(records, chunk, enc.grid, enc.leaf_points, scratch)
        del records
        nodes = []
        for i in range(len(ix.depth)):
            d, p, a, b = int(ix.depth[i]), int(ix.prefix[i]), int(ix.start[i]), int(ix.stop[i])
            if b > a:
                meta = _write_node(ix.records[a:b], d, p, enc)
            elif ix.leaf[i]:
                continue  # an empty leaf: its points all went to ancestors
            else:
                meta = NodeMeta(d, p, 0, None, None, False)
            meta.leaf = bool(ix.leaf[i])
            nodes.append(meta)
        n_up = int(ix.up_counts.sum())
        out.append(ChunkResult(chunk, nodes, ix.records[:n_up].copy(), ix.up_counts))
    return out


def top_job(enc: Encoding, nodes: list[tuple[int, int, list[np.ndarray]]]) -> list[NodeMeta]:
    """The top pass's job: write nodes assembled from several chunks' shares."""
    return [_write_node(np.concatenate(parts), d, p, enc) for d, p, parts in nodes]


def _tile_json(metas: dict[tuple[int, int], NodeMeta], grid: OctreeGrid, key: tuple[int, int]) -> tuple[dict, np.ndarray, np.ndarray]:
    """The tile of a node and its subtree, with boxes that contain the points and the children."""
    m = metas[key]
    d, p = key
    kids = []
    lo = np.array(m.lo, dtype=np.float64) * grid.unit if m.lo is not None else np.full(3, np.inf)
    hi = np.array(m.hi, dtype=np.float64) * grid.unit if m.hi is not None else np.full(3, -np.inf)
    for t in range(8):
        ck = (d + 1, p << 3 | t)
        if ck in metas:
            cj, clo, chi = _tile_json(metas, grid, ck)
            kids.append(cj)
            lo, hi = np.minimum(lo, clo), np.maximum(hi, chi)
    tile: dict = {
        "boundingVolume": {"box": box_from_bounds(lo, hi)},
        "geometricError": 0.0 if not kids else round(grid.spacing(d), 4),
        "refine": "ADD",
    }
    if m.count:
        tile["content"] = {"uri": f"tiles/{node_name(d, p)}.glb"}
    if kids:
        tile["children"] = kids
    return tile, lo, hi


def _geodetic_bounds(frame: LocalFrame, lo: np.ndarray, hi: np.ndarray) -> dict[str, float]:
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    lon, lat, h = ecef_to_geodetic(frame.to_ecef(corners))
    return {
        "west": float(lon.min()),
        "south": float(lat.min()),
        "east": float(lon.max()),
        "north": float(lat.max()),
        "min_height": float(h.min()),
        "max_height": float(h.max()),
    }
