"""The point-cloud layer: LAS/LAZ files → octree of GLB point tiles (3D Tiles 1.1, refine ADD).

Three passes over jobs run by worker threads (:class:`Workers`: the kernels release the GIL;
no process is forked, so lazrs' threads cannot deadlock one):

1. **stage**: every file is cut into point ranges; a job reads its range in batches, reprojects
   each batch into the city's ENU frame with the file's checked quadratic fit
   (:class:`~cim.sources.pointcloud_transform.PiecewiseFit`, made once here with pyproj), sorts it by
   Morton code and keeps it as a run (:func:`~cim.tiling.octree.stage_batch`): in memory up to
   ``stage_memory`` bytes for the whole build, beyond that in the job's spill file;
2. **index**: the summed counts split the cube into chunks of at most ``chunk_points``; a job
   gathers a chunk's slices of every run, builds its octree
   (:func:`~cim.tiling.octree.index_chunk`), encodes and writes its tiles;
3. **top**: the few nodes above the chunks are assembled from the points each chunk passed up
   and written by the same jobs; ``tileset.json`` is written last.

Memory is bounded by ``stage_memory`` and the batch and chunk sizes, whatever the input size
(peak RSS 0.52 GB at 10 M points, 0.59 GB at 30 M); the spill files live in a temporary folder
inside ``out_dir``, removed at the end. Every point is in exactly one tile: the build checks the
count.

Where the time goes (10 M points of the sample city, CPU a point, one thread, a shared machine):
reading 9–11 ns, staging (reprojection, quantization, Morton key) 32–54, sorting 17–25, gathering
runs into chunks 6–12, indexing (chunk keys, merge, node order) 40–48, packing and
meshopt-encoding tiles 65–80, writing files 17–22; two threads spend about 30 % more CPU a point
(memory bandwidth) for 1.5–1.7x the throughput. Fixed costs dominate small inputs: importing
numpy, numba, laspy and pyproj 0.65–0.75 s, CRS setup 0.2 s, numba's first call (it imports its
typing registries) 0.35 s, and 0.4–0.5 s at interpreter exit, where Python's final collection
walks numba's objects (the ``cim`` command freezes the collector before it exits, which takes
that to 0.05 s; a library cannot choose that for its caller).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cim.crs import crs_label
from cim.errors import CimInputError
from cim.formats.points import POINT_DESCRIPTIONS, POINT_PROPERTIES, encode_point_words, position_bounds
from cim.formats.tileset import box_from_bounds, tileset_document, transform_list
from cim.kernels.frames import LocalFrame, ecef_to_geodetic
from cim.layers.base import LayerResult, Progress
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
from cim.store import TileStore, atomic_write_bytes, build_key, file_fingerprint
from cim.kernels.octree import WORDS
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

log = logging.getLogger("cim.pointcloud")

#: below this many points a build runs in the calling thread unless ``workers`` asks for more
IN_PROCESS_POINTS = 1_000_000
#: ASPRS class names for the manifest
LAS_CLASSES = {
    0: "never classified", 1: "unclassified", 2: "ground", 3: "low vegetation", 4: "medium vegetation",
    5: "high vegetation", 6: "building", 7: "low point (noise)", 8: "model key point", 9: "water",
    10: "rail", 11: "road surface", 12: "overlap", 13: "wire guard", 14: "wire conductor",
    15: "transmission tower", 16: "wire connector", 17: "bridge deck", 18: "high noise",
}


@dataclass
class PointCloudOptions:
    """How the octree is cut and the tiles encoded.

    Attributes
    ----------
    leaf_points : most points in a leaf tile
    node_bits : a node keeps one point per cell of a ``2**node_bits`` grid over its cube
        (7: 128 cells a side, Potree's spacing)
    chunk_points : most points a worker indexes at once (bounds its memory; 1 M measured the same
        CPU as 2 M, 70–100 MB less peak memory and finer jobs to share between threads)
    batch_points : points read and staged at once (bounds a reader's memory)
    stage_memory : bytes of staged points (20 a point) kept in memory; the rest spill to
        temporary files. Bounds the build's memory whatever the input size
    tolerance : largest reprojection error (m) accepted from a local fit before exact pyproj
    max_step : largest 16-bit quantization step (m); coarser nodes store float32 positions
    precision : position quantization step (m) where 16 bits over a node would be finer; None:
        the inputs' own resolution (their LAS scale), kept between 0.1 mm and 1 cm. Finer steps
        only store noise, which costs bytes once compressed
    meshopt : compress tiles with EXT_meshopt_compression
    crs_override : use ``crs`` even for files that declare one
    """

    leaf_points: int = 60_000
    node_bits: int = 7
    chunk_points: int = 1_000_000
    batch_points: int = 1 << 19
    stage_memory: int = 256 << 20
    tolerance: float = 1e-3
    max_step: float = 0.005
    precision: float | None = None
    meshopt: bool = True
    crs_override: bool = False


# --- worker threads -------------------------------------------------------------------------

class Workers:
    """Threads that run jobs: every heavy step (LAS reading, the numba kernels, numpy's sort,
    meshopt encoding, file writes) releases the GIL, and the Python between them is a few per
    cent of the time.

    Measured against the earlier pool of forkserver processes on 2 cores, same code otherwise,
    alternating runs at 10 M points: best wall 6.3 → 4.0 s, CPU 6.0 → 4.4 s, peak RSS summed over
    the processes 0.75 → 0.37 GB. Threads save what the forkserver and its workers spent
    importing numpy, numba, laspy and pyproj again and loading the compiled kernels (about 1.3 s
    of CPU), and pickling points between processes. No process is forked, so lazrs' threads
    cannot deadlock one. LAZ decoding is the exception to the GIL: lazrs holds it, so its
    multi-threaded decoder is used instead (:func:`~cim.sources.pointcloud.read_batches`).

    Parameters
    ----------
    n : threads; 1 runs everything in the calling thread
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="cim-pointcloud") if n > 1 else None

    def run(self, fn: Callable, jobs: Sequence[tuple], sizes: Sequence[int] | None = None) -> Iterator:
        """``fn(*job)`` for every job, results in job order; jobs start largest first, so the
        last moments are short jobs."""
        order = sorted(range(len(jobs)), key=lambda i: -(sizes[i] if sizes is not None else 0))
        if self.pool is None:
            for i in range(len(jobs)):
                yield fn(*jobs[i])
            return
        futures: dict[int, Future] = {i: self.pool.submit(fn, *jobs[i]) for i in order}
        try:
            for i in range(len(jobs)):
                yield futures[i].result()
        finally:
            for f in futures.values():
                f.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


_local = threading.local()


def _scratch() -> Scratch:
    """The calling thread's reusable work arrays (freed with the thread: the pool's threads end
    with the build; the calling thread keeps its arrays only while the build runs)."""
    s = getattr(_local, "scratch", None)
    if s is None:
        s = _local.scratch = Scratch()
    return s


# --- stage jobs -------------------------------------------------------------


@dataclass
class _StageJob:
    src: PointCloudSource
    start: int
    count: int
    fit: PiecewiseFit
    grid: OctreeGrid
    spill: str
    batch: int
    budget: MemoryBudget


@dataclass
class _StageResult:
    runs: list[Run]
    lo: np.ndarray
    hi: np.ndarray
    outside: bool
    classes: np.ndarray
    points: int
    cpu: float
    span: tuple[int, float, float]  # process id, start and end (epoch seconds)


def _stage(job: _StageJob) -> _StageResult:
    cpu = time.process_time()
    t0 = time.time()
    runs: list[Run] = []
    lo = np.full(3, np.iinfo(np.int64).max)
    hi = np.full(3, np.iinfo(np.int64).min)
    outside = False
    classes = np.zeros(256, dtype=np.int64)
    points = 0
    scratch = _scratch()
    buffer = scratch.get("las", job.batch * job.src.record_size, np.uint8) if job.src.record_size else None
    with SpillFile(job.spill, job.budget) as spill:
        quad = job.fit.single_quadratic(job.src.scales, job.src.offsets)
        for b in read_batches(job.src, job.start, job.count, job.batch, buffer):
            attrs = (b.colors_raw, b.color_shift, b.intensity, b.classification_raw, b.class_mask, b.bit_fields, b.return_mask, job.grid, scratch)
            st = None
            if quad is not None:
                st = stage_batch(b.X, b.Y, b.Z, *quad, *attrs)
                if st.off_box:
                    st = None  # the header box lied: these points need the slow path
            if st is None:  # several fitted boxes, exact pyproj, or points outside the fit
                X, Y, Z = job.fit.apply_raw(b.X, b.Y, b.Z, b.scales, b.offsets)
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
    return _StageResult(runs, lo, hi, outside, classes, points, time.process_time() - cpu, (os.getpid(), t0, time.time()))


# --- index jobs -------------------------------------------------------------


@dataclass
class _Encoding:
    grid: OctreeGrid
    tiles_dir: str
    colors: bool
    max_step: float
    precision: float
    meshopt: bool


@dataclass
class _NodeMeta:
    depth: int
    prefix: int
    count: int
    lo: tuple[int, int, int] | None
    hi: tuple[int, int, int] | None
    leaf: bool
    bytes: int = 0


@dataclass
class _ChunkResult:
    chunk: Chunk
    nodes: list[_NodeMeta]
    up_records: np.ndarray  # points for the ancestors, grouped by depth
    up_counts: np.ndarray  # per ancestor depth 0..chunk.depth-1
    cpu: float = 0.0
    span: tuple[int, float, float] = (0, 0.0, 0.0)


def encode_tile(
    records: np.ndarray, grid: OctreeGrid, colors: bool, max_step: float, precision: float, meshopt: bool,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """One node's GLB from its staging records (STAGE_DTYPE, whose words the encoder reads)."""
    words = records.view(np.uint32).reshape(len(records), WORDS)
    return encode_point_words(
        words, grid.unit, colors, max_step=max_step, precision=precision, meshopt=meshopt, bounds=bounds,
    )


def _write_node(records: np.ndarray, depth: int, prefix: int, enc: _Encoding) -> _NodeMeta:
    lo, hi = position_bounds(records.view(np.uint32).reshape(len(records), WORDS))
    glb = encode_tile(records, enc.grid, enc.colors, enc.max_step, enc.precision, enc.meshopt, (lo, hi))
    atomic_write_bytes(Path(enc.tiles_dir) / f"{node_name(depth, prefix)}.glb", glb)
    return _NodeMeta(depth, prefix, len(records), tuple(lo.tolist()), tuple(hi.tolist()), False, len(glb))


def _index(chunks: list[Chunk], leaf_points: int, enc: _Encoding) -> list[_ChunkResult]:
    out = []
    for chunk in chunks:
        cpu = time.process_time()
        t0 = time.time()
        scratch = _scratch()
        records = read_slices(chunk.slices, scratch)
        ix = index_chunk(records, chunk, enc.grid, leaf_points, scratch)
        del records
        nodes = []
        for i in range(len(ix.depth)):
            d, p, a, b = int(ix.depth[i]), int(ix.prefix[i]), int(ix.start[i]), int(ix.stop[i])
            if b > a:
                meta = _write_node(ix.records[a:b], d, p, enc)
            elif ix.leaf[i]:
                continue  # an empty leaf: its points all went to ancestors
            else:
                meta = _NodeMeta(d, p, 0, None, None, False)
            meta.leaf = bool(ix.leaf[i])
            nodes.append(meta)
        n_up = int(ix.up_counts.sum())
        out.append(_ChunkResult(chunk, nodes, ix.records[:n_up].copy(), ix.up_counts, time.process_time() - cpu, (os.getpid(), t0, time.time())))
    return out


def _encode_nodes(nodes: list[tuple[int, int, list[np.ndarray]]], enc: _Encoding) -> list[_NodeMeta]:
    """Write nodes assembled from several chunks' shares (the nodes above the chunks)."""
    return [_write_node(np.concatenate(parts), d, p, enc) for d, p, parts in nodes]


# --- the layer ----------------------------------------------------------------------------------


def build_pointcloud_layer(
    sources: Sequence[str | Path] | str | Path,
    out_dir: str | Path,
    frame: LocalFrame | None = None,
    *,
    crs: object = None,
    workers: int | None = None,
    progress: Progress | None = None,
    layer_id: str = "pointcloud",
    options: PointCloudOptions | None = None,
    **overrides: object,
) -> LayerResult:
    """Convert LAS/LAZ files (or folders of them) into one 3D Tiles 1.1 point-cloud layer.

    Writes ``out_dir/tileset.json`` and ``out_dir/tiles/r*.glb`` (one GLB per octree node,
    refine ADD: every input point appears in exactly one tile).

    Parameters
    ----------
    sources : LAS/LAZ files and folders; all of them make one layer
    out_dir : the layer folder
    frame : the city's ENU frame (the tileset's root transform); default: the data's centre
    crs : the CRS of files whose header declares none (with ``crs_override=True``: of all files)
    workers : threads (default: one per core; inputs under a million points run in the calling
        thread)
    progress : called as ``progress(stage, done, total)`` with stages ``"read"`` and ``"tiles"``
    layer_id : the layer's id in the manifest
    options, overrides : :class:`PointCloudOptions`, or its fields as keywords

    Raises
    ------
    CimCRSError
        A file declares no CRS and ``crs`` is not given (the message names the file).
    """
    t0 = time.perf_counter()
    opts = PointCloudOptions(**{**asdict(options or PointCloudOptions()), **overrides})
    out_dir = Path(out_dir)
    files = list_pointcloud_files(sources)
    srcs = [open_pointcloud(f, crs, crs_override=opts.crs_override) for f in files]
    total = sum(s.count for s in srcs)
    if total == 0:
        raise CimInputError(f"{', '.join(map(str, files))}: no points")
    n_workers = workers if workers is not None else (os.cpu_count() or 1) if total >= IN_PROCESS_POINTS else 1
    n_workers = max(1, int(n_workers))
    workers_ = Workers(n_workers)
    tmp: Path | None = None
    times: dict[str, float] = {}
    spans: list[tuple[str, int, float, float]] = []
    epoch0 = time.time()
    try:
        if frame is None:
            frame = frame_for(srcs)
        boxes = [header_box_enu(s, frame) for s in srcs]
        fits = [source_transform(s, frame, opts.tolerance).piecewise(np.array(s.mins), np.array(s.maxs)) for s in srcs]
        grid = OctreeGrid.around(np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0), node_bits=opts.node_bits)
        key = build_key("pointcloud-1", [file_fingerprint(f) for f in files], [s.crs_wkt for s in srcs], asdict(opts), frame.to_dict())
        store = TileStore(out_dir, key)
        tiles_dir = out_dir / "tiles"
        tiles_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".cim-tmp-", dir=out_dir))
        times["setup"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        stage = _run_stage(workers_, srcs, fits, grid, tmp, opts, n_workers, total, progress)
        if stage.outside:
            # a header box was wrong: stage again inside a cube around the points themselves
            grid = OctreeGrid.around(stage.lo * grid.unit, stage.hi * grid.unit, node_bits=opts.node_bits)
            stage.runs.clear()  # frees the runs kept in memory
            for p in tmp.iterdir():
                p.unlink()
            stage = _run_stage(workers_, srcs, fits, grid, tmp, opts, n_workers, total, progress)
            stage.restaged = True
        times["stage"] = time.perf_counter() - t1
        times["stage cpu"] = stage.cpu
        spans += [("stage", *sp) for sp in stage.spans]

        t1 = time.perf_counter()
        cells, counts = merge_counts([r.cells for r in stage.runs], [np.diff(r.cum) for r in stage.runs])
        chunks = plan_chunks(cells, counts, grid.count_depth, max(opts.chunk_points, opts.leaf_points))
        attach_runs(chunks, stage.runs)
        target = max(opts.leaf_points, min(opts.chunk_points, total // (3 * n_workers) + 1))
        precision = opts.precision if opts.precision is not None else min(max(min(s.resolution for s in srcs), 1e-4), 0.01)
        enc = _Encoding(grid, str(tiles_dir), any(s.has_rgb for s in srcs), opts.max_step, precision, opts.meshopt)
        metas: dict[tuple[int, int], _NodeMeta] = {}
        up: dict[tuple[int, int], list[np.ndarray]] = {}
        done = 0
        index_jobs = [(job, opts.leaf_points, enc) for job in group_chunks(chunks, target)]
        for results in workers_.run(_index, index_jobs, [sum(c.count for c in job[0]) for job in index_jobs]):
            for res in results:
                for m in res.nodes:
                    metas[(m.depth, m.prefix)] = m
                a = 0
                for d, n in enumerate(res.up_counts.tolist()):
                    if n:
                        up.setdefault((d, res.chunk.prefix >> (3 * (res.chunk.depth - d))), []).append(res.up_records[a : a + n])
                    a += n
                done += 1
                times["index cpu"] = times.get("index cpu", 0.0) + res.cpu
                spans.append(("index", *res.span))
                if progress:
                    progress("tiles", done, len(chunks))
        times["index"] = time.perf_counter() - t1
        stage.runs.clear()  # the staged points are in the tiles now (the ancestors' shares in ``up``)
        for c in chunks:
            c.slices = []

        # the nodes above the chunks, each from every chunk's share (chunks came in Morton order)
        t1 = time.perf_counter()
        tops = sorted(ancestors(chunks))
        for key_ in tops:
            if key_ not in up:
                metas[key_] = _NodeMeta(key_[0], key_[1], 0, None, None, False)
        shares = [(d, p, up[(d, p)]) for d, p in tops if (d, p) in up]
        size = max(1, sum(sum(len(x) for x in parts) for _, _, parts in shares) // (2 * n_workers))
        groups: list[list] = [[]]
        for item in shares:
            if groups[-1] and sum(sum(len(x) for x in q[2]) for q in groups[-1]) >= size:
                groups.append([])
            groups[-1].append(item)
        for metas_ in workers_.run(_encode_nodes, [(g, enc) for g in groups if g]):
            for m in metas_:
                metas[(m.depth, m.prefix)] = m
        written = {f"tiles/{node_name(m.depth, m.prefix)}.glb" for m in metas.values() if m.count}
        store.written |= written
        store.bytes_written = sum(m.bytes for m in metas.values())
        root, lo, hi = _tile_json(metas, grid, (0, 0))
        root["transform"] = transform_list(frame.matrix())
        doc = tileset_document(root, max(grid.spacing(0) * 4.0, float(np.linalg.norm(hi - lo))))
        store.finish("tileset.json", doc)
        times["top"] = time.perf_counter() - t1
    finally:
        workers_.close()
        _local.__dict__.pop("scratch", None)  # this thread's work arrays, when it ran jobs itself
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    warnings = []
    for src, fit in zip(srcs, fits):
        if fit.exact.any():
            warnings.append(f"{src.path.name}: {int(fit.exact.sum())} of {len(fit.lo)} area(s) reprojected point by point (no quadratic within {opts.tolerance} m)")
    if stage.restaged:
        warnings.append("points lie outside their files' header bounds: the octree cube was sized from the points")
    for w in warnings:
        log.warning("%s: %s", layer_id, w)
    counted = sum(m.count for m in metas.values())
    if counted != total:
        raise RuntimeError(f"point count mismatch: {total} read, {counted} written")  # a bug, never input
    seconds = time.perf_counter() - t0
    bounds = _geodetic_bounds(frame, lo, hi)
    classes = {int(c): int(n) for c, n in enumerate(stage.classes) if n}
    result = LayerResult(
        id=layer_id,
        kind="pointcloud",
        path=out_dir,
        count=total,
        tiles=len(written),
        triangles=0,
        bytes=store.size_on_disk(),
        bounds=bounds,
        schema={pid: ctype for pid, (_, ctype, _) in POINT_PROPERTIES.items()},
        seconds=seconds,
        warnings=warnings,
        format="3dtiles",
        url="tileset.json",
        extra={
            "points": total,
            "attributes": {pid: sem for pid, (sem, _, _) in POINT_PROPERTIES.items()},
            "descriptions": dict(POINT_DESCRIPTIONS),
            "classes": {str(c): {"name": LAS_CLASSES.get(c, "user defined"), "count": n} for c, n in classes.items()},
            "has_color": enc.colors,
            "crs": sorted({crs_label(s.crs) for s in srcs}),
            "spacing": grid.spacing(0),
        },
    )
    log.debug("pointcloud %s: %s", layer_id, ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
    for what, pid, a, b in spans:
        log.debug("pointcloud %s: %s job in %s from %.2f to %.2f s", layer_id, what, "this process" if pid == os.getpid() else f"worker {pid}", a - epoch0, b - epoch0)
    log.info(
        "pointcloud %s: %d points, %d tiles, %.1f MB (%.1f B/point), %.2f s (%.2f M points/s); reprojection: %d fitted "
        "box(es), largest error %.2g m, %d exact box(es)",
        layer_id, total, result.tiles, result.bytes / 1e6, result.bytes / total, seconds, total / seconds / 1e6,
        sum(len(f.lo) for f in fits), max(f.error for f in fits), sum(int(f.exact.sum()) for f in fits),
    )
    return result


@dataclass
class _Staged:
    runs: list[Run] = field(default_factory=list)
    lo: np.ndarray = field(default_factory=lambda: np.full(3, np.iinfo(np.int64).max))
    hi: np.ndarray = field(default_factory=lambda: np.full(3, np.iinfo(np.int64).min))
    outside: bool = False
    classes: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    cpu: float = 0.0
    spans: list[tuple[int, float, float]] = field(default_factory=list)
    restaged: bool = False


def _ranges(srcs: Sequence[PointCloudSource], total: int, workers: int, batch: int) -> Iterable[tuple[PointCloudSource, int, int]]:
    """Cut files into point ranges: about three per worker, LAZ ranges on chunk boundaries."""
    size = max(batch, -(-total // (3 * workers)))
    for s in srcs:
        step = size
        if s.compressed:
            if not s.laz_chunk:
                yield s, 0, s.count
                continue
            step = max(s.laz_chunk, (size // s.laz_chunk) * s.laz_chunk)
        for a in range(0, s.count, step):
            yield s, a, min(step, s.count - a)


def _run_stage(
    workers: Workers, srcs: Sequence[PointCloudSource], fits: Sequence[PiecewiseFit], grid: OctreeGrid, tmp: Path,
    opts: PointCloudOptions, n_workers: int, total: int, progress: Progress | None,
) -> _Staged:
    fit_of = {id(s): f for s, f in zip(srcs, fits)}
    budget = MemoryBudget(opts.stage_memory)
    jobs = [
        _StageJob(s, a, n, fit_of[id(s)], grid, str(tmp / f"stage-{i:05d}.bin"), opts.batch_points, budget)
        for i, (s, a, n) in enumerate(_ranges(srcs, total, n_workers + 1, opts.batch_points))
    ]
    out = _Staged()
    done = 0
    if progress:
        progress("read", 0, total)
    for r in workers.run(_stage, [(j,) for j in jobs], [j.count for j in jobs]):
        out.runs += r.runs
        out.lo = np.minimum(out.lo, r.lo)
        out.hi = np.maximum(out.hi, r.hi)
        out.outside |= r.outside
        out.classes += r.classes
        out.cpu += r.cpu
        out.spans.append(r.span)
        done += r.points
        if progress:
            progress("read", done, total)
    return out


def _tile_json(metas: dict[tuple[int, int], _NodeMeta], grid: OctreeGrid, key: tuple[int, int]) -> tuple[dict, np.ndarray, np.ndarray]:
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
        "west": float(lon.min()), "south": float(lat.min()), "east": float(lon.max()), "north": float(lat.max()),
        "min_height": float(h.min()), "max_height": float(h.max()),
    }

