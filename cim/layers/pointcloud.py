"""The point-cloud layer: LAS/LAZ files → octree of GLB point tiles (3D Tiles 1.1, refine ADD).

Three passes over jobs shared by worker processes and this one (:class:`Workers`; forkserver,
else spawn: never ``fork`` after lazrs has started threads):

1. **stage**: every file is cut into point ranges; a job reads its range in batches, reprojects
   each batch into the city's ENU frame with the file's checked quadratic fit
   (:class:`~cim.sources.pointcloud.PiecewiseFit`, made once here with pyproj), sorts it by
   counting cell and appends it to its spill file (:func:`~cim.tiling.octree.stage_batch`);
2. **index**: the summed counts split the cube into chunks of at most ``chunk_points``; a job
   reads a chunk's slices back, builds its octree (:func:`~cim.tiling.octree.index_chunk`),
   encodes and writes its tiles;
3. **top**: the few nodes above the chunks are assembled from the points each chunk passed up
   and written by the same jobs; ``tileset.json`` is written last.

Memory is bounded by the batch and chunk sizes, whatever the input size; the spill files live in
a temporary folder inside ``out_dir``, removed at the end. Every point is in exactly one tile:
the build checks the count.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cim.crs import crs_label
from cim.errors import CimInputError
from cim.formats.points import POINT_PROPERTIES, encode_points_glb, position_bounds
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
from cim.tiling.octree import (
    IDENTITY,
    STAGE_DTYPE,
    Chunk,
    OctreeGrid,
    Run,
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

#: below this many points a build runs in the calling process unless ``workers`` asks for more
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
    chunk_points : most points a worker indexes at once (bounds its memory)
    batch_points : points read and staged at once (bounds a reader's memory)
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
    chunk_points: int = 2_000_000
    batch_points: int = 1 << 19
    tolerance: float = 1e-3
    max_step: float = 0.005
    precision: float | None = None
    meshopt: bool = True
    crs_override: bool = False


# --- process pool ---------------------------------------------------------------------------

_SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}


class Workers:
    """Worker processes that boot in the background, and a way to run jobs on them.

    A pool's first task waits a second for its workers to start (a forkserver imports numpy,
    numba, laspy and pyproj once, then forks): meanwhile this process runs jobs itself. The
    forkserver (spawn where the platform has none) never inherits lazrs' threads, so LAZ
    decoding cannot deadlock in a worker.

    Parameters
    ----------
    n : worker processes; 1 runs everything in this process
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.ready = threading.Event()
        self.pool: ProcessPoolExecutor | None = None
        if n <= 1:
            self.ready.set()
            return
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        if method == "forkserver":
            # the server imports this module and loads the compiled kernels once (see the end of
            # the module); every worker it forks starts warm
            ctx.set_forkserver_preload([__name__])
        self.pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx)

        def boot() -> None:
            assert self.pool is not None
            os.environ[_WARM_ENV] = "1"  # read by the forkserver when it starts, if it does now
            try:
                for _ in range(n):  # blocks until the server is up
                    self.pool.submit(_warm_up)  # a no-op where the server warmed up already
            finally:
                os.environ.pop(_WARM_ENV, None)
                self.ready.set()

        threading.Thread(target=boot, name="cim-pointcloud-boot", daemon=True).start()

    def run(self, fn: Callable, jobs: Sequence[tuple], sizes: Sequence[int] | None = None) -> Iterator:
        """``fn(*job)`` for every job, results in job order.

        Jobs go out largest first, so the pool's last minutes are short jobs; this process runs
        jobs itself, from the small end, until the pool is up and again while it waits for it.
        """
        order = sorted(range(len(jobs)), key=lambda i: -(sizes[i] if sizes is not None else 0))
        local: dict[int, object] = {}
        while order and (self.pool is None or not self.ready.is_set()):
            i = order.pop()
            local[i] = fn(*jobs[i])
        futures: dict[int, Future] = {}
        if self.pool is not None:
            futures = {i: self.pool.submit(fn, *jobs[i]) for i in order}
            for i in reversed(order):
                if futures[i].cancel():  # not yet handed to a worker: run it here
                    local[i] = fn(*jobs[i])
        for i in range(len(jobs)):
            yield local[i] if i in local else futures[i].result()

    def close(self) -> None:
        if self.pool is not None:
            self.ready.wait()
            self.pool.shutdown(wait=True, cancel_futures=True)


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
    with SpillFile(job.spill) as spill:
        quad = job.fit.single_quadratic(job.src.scales, job.src.offsets)
        for b in read_batches(job.src, job.start, job.count, job.batch):
            attrs = (b.colors_raw, b.color_shift, b.intensity, b.classification_raw, b.class_mask, b.bit_fields, b.return_mask, job.grid)
            st = None
            if quad is not None:
                st = stage_batch(b.X, b.Y, b.Z, *quad, *attrs)
                if st.off_box:
                    st = None  # the header box lied: these points need the slow path
            if st is None:  # several fitted boxes, exact pyproj, or points outside the fit
                X, Y, Z = job.fit.apply_raw(b.X, b.Y, b.Z, b.scales, b.offsets)
                st = stage_batch(X, Y, Z, np.ones(3), np.zeros(3), IDENTITY, *attrs)
            off = spill.append(st.records)
            cum = np.zeros(len(st.counts) + 1, dtype=np.int64)
            np.cumsum(st.counts, out=cum[1:])
            runs.append(Run(job.spill, off, len(st.records), st.cells, cum))
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
    """One node's GLB from its staging records."""
    return encode_points_glb(
        records["xyz"],
        grid.unit,
        records["rgb"] if colors else None,
        records["intensity"],
        records["classification"],
        records["return_number"],
        max_step=max_step,
        precision=precision,
        meshopt=meshopt,
        bounds=bounds,
    )


def _write_node(records: np.ndarray, depth: int, prefix: int, enc: _Encoding) -> _NodeMeta:
    lo, hi = position_bounds(records["xyz"])
    glb = encode_tile(records, enc.grid, enc.colors, enc.max_step, enc.precision, enc.meshopt, (lo, hi))
    atomic_write_bytes(Path(enc.tiles_dir) / f"{node_name(depth, prefix)}.glb", glb)
    return _NodeMeta(depth, prefix, len(records), tuple(lo.tolist()), tuple(hi.tolist()), False, len(glb))


def _index(chunks: list[Chunk], leaf_points: int, enc: _Encoding) -> list[_ChunkResult]:
    out = []
    for chunk in chunks:
        cpu = time.process_time()
        t0 = time.time()
        records = read_slices(chunk.slices)
        ix = index_chunk(records, chunk, enc.grid, leaf_points)
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


_WARM_ENV = "CIM_POINTCLOUD_WARM_UP"
_warm = False


def _warm_up() -> None:
    """Load the compiled kernels (numba's cache) before the first real job needs them."""
    global _warm
    if _warm:
        return
    _warm = True
    g = OctreeGrid((0, 0, 0), 21, 1e-4)
    las = np.zeros(4, dtype=[("X", "<i4"), ("Y", "<i4"), ("Z", "<i4"), ("i", "<u2"), ("c", "u1"), ("b", "u1"), ("r", "<u2")])
    # the variants of a coloured cloud (the common case); others load on first use
    st = stage_batch(las["X"], las["Y"], las["Z"], np.ones(3), np.zeros(3), IDENTITY, (las["r"],) * 3, 0, las["i"], las["c"], 0xFF, las["b"], 0x0F, g)
    ix = index_chunk(st.records, Chunk(0, 0, 4, 0, 1 << 21), g, 2)
    encode_tile(ix.records, g, True, 0.005, 0.001, True)


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
    workers : processes (default: one per core; inputs under a million points run in this
        process). Worker processes are started with forkserver (else spawn): a script calling
        this function needs the usual ``if __name__ == "__main__":`` guard.
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
    saved_env = {k: os.environ.get(k) for k in _SINGLE_THREAD_ENV}
    os.environ.update(_SINGLE_THREAD_ENV)  # workers: one thread each (BLAS, lazrs)
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
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
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
    jobs = [
        _StageJob(s, a, n, fit_of[id(s)], grid, str(tmp / f"stage-{i:05d}.bin"), opts.batch_points)
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


if os.environ.get(_WARM_ENV) == "1":  # imported by the forkserver of a point-cloud build
    _warm_up()
