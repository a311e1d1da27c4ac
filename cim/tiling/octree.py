"""Out-of-core octree of a point cloud, in the spirit of PotreeConverter 2.

1. **Stage** (:func:`stage_batch`): each batch of points, already in the city's ENU frame as
   integers of ``grid.unit`` metres, is sorted by Morton code (hence by its cell of depth
   ``grid.count_depth``, 128³ cells over the cube) and kept as a run of fixed 20-byte records
   (:class:`SpillFile`: in memory within a budget, else in a file); the batch's cell counts are
   kept (a few kB). One pass over the input does the counting and the distribution.
2. **Plan** (:func:`plan_chunks`): from the summed counts, the cube is split top-down into
   chunks, the largest octree cells holding at most ``chunk_max`` points. A chunk reads its
   points back as one contiguous slice of every batch (batches are sorted by cell).
3. **Index** (:func:`index_chunk`), independently per chunk, in parallel: Morton sort, grid
   subsampling levels (:mod:`cim.kernels.octree`), leaves by point count, one gather into node
   order. Points whose level lies above the chunk go to its ancestors, which the caller
   assembles from every chunk's share.

Pure functions of arrays except :class:`SpillFile` and :func:`read_slices`, the out-of-core part:
raw records kept in memory up to a budget (:class:`MemoryBudget`), beyond it in temporary files.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cim.kernels.octree import (
    WORDS,
    cell_corner,
    chunk_keys,
    code_levels,
    common_depth,
    gather_sorted,
    index_bits,
    leaf_ranges,
    node_is_leaf,
    node_order,
    stage_points,
)

__all__ = [
    "STAGE_DTYPE",
    "Scratch",
    "OctreeGrid",
    "IDENTITY",
    "StagedBatch",
    "stage_batch",
    "Run",
    "Chunk",
    "node_name",
    "merge_counts",
    "plan_chunks",
    "ancestors",
    "attach_runs",
    "group_chunks",
    "ChunkIndex",
    "index_chunk",
    "MemoryBudget",
    "SpillFile",
    "read_slices",
]

#: a staged point: ENU position in grid units, colour, class, intensity, return number
STAGE_DTYPE = np.dtype(
    [
        ("xyz", "<i4", (3,)),
        ("rgb", "u1", (3,)),
        ("classification", "u1"),
        ("intensity", "<u2"),
        ("return_number", "u1"),
        ("flags", "u1"),
    ]
)
assert STAGE_DTYPE.itemsize == 20


class Scratch:
    """Reusable work arrays of one worker thread.

    A fresh large numpy array costs the kernel's zeroing of its pages when first written, and a
    build would make such temporaries for every batch and chunk. Arrays handed out are views of
    buffers that grow as needed and are reused by the thread's next batch or chunk, so a caller
    must be done with one before asking for the same name again.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype: np.dtype | type, width: int | None = None) -> np.ndarray:
        """An uninitialised ``(n,)`` (or ``(n, width)``) array of ``dtype``."""
        dtype = np.dtype(dtype)
        buf = self._bufs.get(name)
        if buf is None or buf.shape[0] < n or buf.dtype != dtype or (buf.shape[1:] != ((width,) if width else ())):
            size = max(n, int(buf.shape[0] * 1.25) if buf is not None else 0)
            buf = np.empty((size, width) if width else size, dtype=dtype)
            self._bufs[name] = buf
        return buf[:n]


@dataclass(frozen=True)
class OctreeGrid:
    """The cube of the octree on an integer grid.

    Attributes
    ----------
    origin : (3,) int, the cube's lower corner in grid units (ENU)
    bits : the cube is ``2**bits`` units a side
    unit : metres per grid unit
    node_bits : ``k``: a node samples its cube on a ``2**k`` grid (one point per cell)
    count_depth : depth of the counting cells (``2**count_depth`` a side)
    """

    origin: tuple[int, int, int]
    bits: int
    unit: float
    node_bits: int = 7
    count_depth: int = 7

    @property
    def size(self) -> float:
        """Side of the cube in metres."""
        return float(2**self.bits) * self.unit

    def spacing(self, depth: int) -> float:
        """Point spacing (m) of the levels ``<= depth``: the sampling cell of a node."""
        return self.size / 2 ** (depth + self.node_bits)

    def cell_box(self, depth: int, prefix: int) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) metres of an octree cell."""
        ix, iy, iz = cell_corner(prefix, depth)
        step = 2 ** (self.bits - depth)
        lo = (np.array(self.origin) + np.array([ix, iy, iz]) * step) * self.unit
        return lo, lo + step * self.unit

    @classmethod
    def around(cls, lo: np.ndarray, hi: np.ndarray, unit: float | None = None, **kw) -> OctreeGrid:
        """A grid holding the ENU box ``[lo, hi]`` (metres), padded a little.

        The unit is 0.1 mm unless the box lies so far from the frame origin that int32
        positions would overflow (then 1 mm, 1 cm).
        """
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        pad = 0.01 * float(np.max(hi - lo)) + 1.0
        lo, hi = lo - pad, hi + pad
        reach = float(np.max(np.abs(np.concatenate([lo, hi]))))
        if unit is None:
            unit = 1e-4
            while reach / unit > 2**31 - 2**24 or float(np.max(hi - lo)) / unit > 2**32 - 1:
                unit *= 10.0
        origin = np.floor(lo / unit).astype(np.int64)
        extent = int(np.ceil(float(np.max(hi - lo)) / unit)) + 1
        bits = max(21, math.ceil(math.log2(extent)))
        x, y, z = (int(v) for v in origin)
        return cls((x, y, z), bits, unit, **kw)


#: the quadratic that returns its input (u, v, w): for points already in ENU metres
IDENTITY = np.zeros((3, 9))
IDENTITY[0, 1] = IDENTITY[1, 2] = IDENTITY[2, 3] = 1.0


@dataclass
class StagedBatch:
    """One staged batch: records sorted by counting cell, and the cells' counts."""

    records: np.ndarray  # (n,) STAGE_DTYPE
    cells: np.ndarray  # (m,) uint64 sorted unique counting cells
    counts: np.ndarray  # (m,) int64
    lo: np.ndarray  # (3,) int64 min grid units
    hi: np.ndarray  # (3,) int64 max grid units
    outside: int  # points outside the cube
    off_box: int  # points outside the fitted box (the quadratic extrapolated them)
    classes: np.ndarray  # (256,) points of each class


def stage_batch(
    X: np.ndarray,
    Y: np.ndarray,
    Z: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    coef: np.ndarray,
    colors: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    color_shift: int,
    intensity: np.ndarray,
    classification: np.ndarray,
    class_mask: int,
    bit_fields: np.ndarray,
    return_mask: int,
    grid: OctreeGrid,
    scratch: Scratch | None = None,
) -> StagedBatch:
    """Reproject, quantize and pack one batch, sorted by counting cell (numba kernel
    :func:`~cim.kernels.octree.stage_points`, then one packed-key ``np.sort``).

    Parameters
    ----------
    X, Y, Z : (n,) raw LAS integers (any stride), normalised by ``u = X * a + b``, then mapped
        to ENU metres by the quadratic ``coef`` (3, 9); or ENU metres with ``a = 1, b = 0``
        and ``coef = IDENTITY``
    colors : raw (R, G, B) uint16 columns and the shift to 8 bits, or None
    intensity : (n,) uint16
    classification, bit_fields : (n,) uint8 with the masks of the class and the return number
    grid : the octree's cube
    scratch : the calling thread's work arrays (the returned records are always a new array)
    """
    n = len(X)
    ib = index_bits(n)
    scratch = scratch if scratch is not None else Scratch()
    words = scratch.get("stage_words", n, np.uint32, WORDS)
    keys = scratch.get("stage_keys", n, np.uint64)
    lohi = np.array([[np.iinfo(np.int64).max] * 3, [np.iinfo(np.int64).min] * 3], dtype=np.int64)
    classes = np.zeros(256, dtype=np.int64)
    empty = np.empty(0, dtype=np.uint16)
    R, G, B = colors if colors is not None else (empty, empty, empty)
    # sort by the code at 15 levels (10 cm cells in a 3 km cube), not just by counting cell: a
    # chunk then reads sorted runs, which it merges and gathers far faster than random order
    levels = min(15, (64 - ib) // 3, grid.bits)
    outside, off_box = stage_points(
        X,
        Y,
        Z,
        np.asarray(a, np.float64),
        np.asarray(b, np.float64),
        np.ascontiguousarray(coef, np.float64),
        1.0 / grid.unit,
        np.array(grid.origin, dtype=np.int64),
        grid.bits,
        levels,
        R,
        G,
        B,
        color_shift,
        intensity,
        classification,
        class_mask,
        bit_fields,
        return_mask,
        ib,
        words,
        keys,
        lohi,
        classes,
    )
    keys.sort()
    sorted_words = np.empty_like(words)
    cells = scratch.get("stage_cells", n, np.uint64)
    counts = scratch.get("stage_counts", n, np.int64)
    m = gather_sorted(words, keys, ib, ib + 3 * (levels - grid.count_depth), sorted_words, cells, counts)
    return StagedBatch(
        sorted_words.view(STAGE_DTYPE).reshape(n),
        cells[:m].copy(),
        counts[:m].copy(),
        lohi[0],
        lohi[1],
        int(outside),
        int(off_box),
        classes,
    )


# --- planning -----------------------------------------------------------------------------


@dataclass
class Run:
    """A staged batch: ``n`` records at record offset ``offset`` of its source, an array kept in
    memory or the path of a spill file."""

    source: str | np.ndarray
    offset: int
    n: int
    cells: np.ndarray  # sorted unique counting cells
    cum: np.ndarray  # (m + 1,) cumulative counts

    def rows(self, lo_cell: int, hi_cell: int) -> tuple[int, int]:
        """Record range ``[a, b)`` of the cells ``[lo_cell, hi_cell)`` within the run."""
        i0, i1 = np.searchsorted(self.cells, [lo_cell, hi_cell])
        return int(self.cum[i0]), int(self.cum[i1])


@dataclass
class Chunk:
    """An octree cell indexed on its own.

    ``first_diff`` is the depth at which the chunk's first point (in Morton order) first differs
    from the last point of the chunk before it (0 for the first chunk): it fixes that point's
    level as if the whole cloud had been sorted at once.
    """

    depth: int
    prefix: int
    count: int
    cell_lo: int
    cell_hi: int
    first_diff: int = 0
    slices: list[tuple[str | np.ndarray, int, int]] = field(default_factory=list)  # (source, record offset, n)

    @property
    def name(self) -> str:
        return node_name(self.depth, self.prefix)


def node_name(depth: int, prefix: int) -> str:
    """Potree-style node name: ``r`` then one octal digit per level (``r``, ``r0``, ``r07``...)."""
    return "r" + (format(prefix, f"0{depth}o") if depth else "")


def merge_counts(cells: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sum per-batch cell counts into one sorted (cells, counts)."""
    c = np.concatenate(cells) if cells else np.empty(0, np.uint64)
    k = np.concatenate(counts) if counts else np.empty(0, np.int64)
    order = np.argsort(c, kind="stable")
    c, k = c[order], k[order]
    if len(c) == 0:
        return c, k
    starts = np.flatnonzero(np.concatenate([[True], c[1:] != c[:-1]]))
    return c[starts], np.add.reduceat(k, starts)


def plan_chunks(cells: np.ndarray, counts: np.ndarray, count_depth: int, chunk_max: int) -> list[Chunk]:
    """Split the cube into chunks of at most ``chunk_max`` points (fewer where a counting cell
    alone holds more), in Morton order.

    Parameters
    ----------
    cells : (m,) sorted unique counting cells (Morton codes of depth ``count_depth``)
    counts : (m,) points in each
    """
    cum = np.zeros(len(cells) + 1, dtype=np.int64)
    np.cumsum(counts, out=cum[1:])
    chunks: list[Chunk] = []

    def visit(depth: int, prefix: int) -> None:
        shift = 3 * (count_depth - depth)
        lo, hi = prefix << shift, (prefix + 1) << shift
        i0, i1 = np.searchsorted(cells, [lo, hi])
        n = int(cum[i1] - cum[i0])
        if n == 0:
            return
        if n <= chunk_max or depth == count_depth:
            chunks.append(Chunk(depth, prefix, n, lo, hi))
            return
        for t in range(8):
            visit(depth + 1, prefix << 3 | t)

    visit(0, 0)
    for prev, cur in itertools.pairwise(chunks):
        cur.first_diff = common_depth(prev.prefix, prev.depth, cur.prefix, cur.depth) + 1
    return chunks


def ancestors(chunks: list[Chunk]) -> set[tuple[int, int]]:
    """(depth, prefix) of every proper ancestor of the chunks (nodes shared between chunks)."""
    out: set[tuple[int, int]] = set()
    for c in chunks:
        for d in range(c.depth):
            out.add((d, c.prefix >> (3 * (c.depth - d))))
    return out


def attach_runs(chunks: list[Chunk], runs: list[Run]) -> None:
    """Give each chunk its record slices in the staged runs."""
    for c in chunks:
        c.slices = []
        for r in runs:
            a, b = r.rows(c.cell_lo, c.cell_hi)
            if b > a:
                c.slices.append((r.source, r.offset + a, b - a))


def group_chunks(chunks: list[Chunk], target: int) -> list[list[Chunk]]:
    """Consecutive chunks grouped into jobs of about ``target`` points (fewer process calls)."""
    jobs: list[list[Chunk]] = []
    cur: list[Chunk] = []
    size = 0
    for c in chunks:
        if cur and size + c.count > target:
            jobs.append(cur)
            cur, size = [], 0
        cur.append(c)
        size += c.count
    if cur:
        jobs.append(cur)
    return jobs


# --- indexing -----------------------------------------------------------------------------


@dataclass
class ChunkIndex:
    """A chunk's points in node order and its nodes.

    ``records[start[i]:stop[i]]`` is the content of node ``(depth[i], prefix[i])`` (global
    depth and Morton prefix); ``records[:n_up]`` are the points the chunk gives to its
    ancestors, ``up_counts[d]`` of them to the ancestor of depth ``d``.
    """

    records: np.ndarray
    depth: np.ndarray
    prefix: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    leaf: np.ndarray
    up_counts: np.ndarray


def index_chunk(records: np.ndarray, chunk: Chunk, grid: OctreeGrid, leaf_max: int, scratch: Scratch | None = None) -> ChunkIndex:
    """Build the octree of one chunk: levels by grid subsampling, leaves by point count.

    Parameters
    ----------
    records : (n,) STAGE_DTYPE, the chunk's points in any order
    chunk : the chunk's cell and the first-difference depth of its first point
    grid : the octree's cube
    leaf_max : most points in a leaf (except at the deepest level the codes resolve)
    scratch : the calling thread's work arrays; the result's ``records`` is then one of them
    """
    n = len(records)
    dc = chunk.depth
    k = grid.node_bits
    levels = max(1, min(code_levels(n), grid.bits - dc))
    ib = index_bits(n)
    ix, iy, iz = cell_corner(chunk.prefix, dc)
    step = 2 ** (grid.bits - dc)
    corner = np.array(grid.origin, dtype=np.int64) + np.array([ix, iy, iz], dtype=np.int64) * step
    words = records.view(np.uint32).reshape(n, WORDS)
    scratch = scratch if scratch is not None else Scratch()
    keys = scratch.get("index_keys", n, np.uint64)
    chunk_keys(words, corner, grid.bits - dc - levels, levels, ib, keys)
    keys.sort(kind="stable")  # the chunk is a few runs sorted by code: a merge
    ndepth, nprefix, nstart, nstop = leaf_ranges(keys, levels, leaf_max, max(0, levels - k), ib)
    leaf = node_is_leaf(ndepth, nprefix)
    lorder = np.argsort(nstart[leaf], kind="stable")
    leaf_start = np.append(nstart[leaf][lorder], n).astype(np.int64)
    leaf_depth = ndepth[leaf][lorder].astype(np.int64)
    out_words = scratch.get("index_out", n, np.uint32, WORDS)
    rank = scratch.get("index_rank", n, np.int64)
    offsets = node_order(keys, ib, levels, chunk.first_diff - dc, k, dc, leaf_start, leaf_depth, words, out_words, rank)
    del keys
    out = out_words.view(STAGE_DTYPE).reshape(n)
    # each node's content: its depth group's entries whose code rank falls in its range
    start = np.empty(len(ndepth), dtype=np.int64)
    stop = np.empty(len(ndepth), dtype=np.int64)
    for d in np.unique(ndepth):
        g = dc + int(d)
        sel = np.flatnonzero(ndepth == d)
        a, b = offsets[g], offsets[g + 1]
        ranks = rank[a:b]
        start[sel] = a + np.searchsorted(ranks, nstart[sel])
        stop[sel] = a + np.searchsorted(ranks, nstop[sel])
    up = np.diff(offsets)[:dc].astype(np.int64)
    gprefix = (np.int64(chunk.prefix) << (3 * ndepth)) | nprefix
    return ChunkIndex(out, ndepth + dc, gprefix, start, stop, leaf, up)


# --- spill files (the out-of-core part) ------------------------------------------------------


class MemoryBudget:
    """Bytes of staged records that may stay in memory, shared by the threads that stage.

    Keeping a run in memory saves writing it to a spill file and reading it back (CPU time, and
    the kernel's write-back of the file): inputs up to the budget are staged without disk, larger
    ones keep the budget's worth and spill the rest, so peak memory stays bounded whatever the
    input size.
    """

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.used = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> tuple[int, int]:
        return self.limit, self.used

    def __setstate__(self, state: tuple[int, int]) -> None:  # a copy in another process: its own lock
        self.limit, self.used = state
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` if the budget allows."""
        with self._lock:
            if self.used + nbytes > self.limit:
                return False
            self.used += nbytes
            return True


class SpillFile:
    """Where a stage job's runs go: kept in memory while ``budget`` allows, else appended to a
    file (created on the first run that spills)."""

    def __init__(self, path: str | Path, budget: MemoryBudget | None = None) -> None:
        self.path = str(path)
        self.budget = budget
        self._f: BinaryIO | None = None
        self.records = 0

    def append(self, records: np.ndarray) -> tuple[str | np.ndarray, int]:
        """Store a run; returns its source (the array itself, or this file's path) and record
        offset."""
        if self.budget is not None and self.budget.take(records.nbytes):
            return records, 0
        if self._f is None:
            self._f = open(self.path, "wb")  # noqa: SIM115 (closed in close)
        off = self.records
        self._f.write(np.ascontiguousarray(records).data.cast("B"))
        self.records += len(records)
        return self.path, off

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    def __enter__(self) -> SpillFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_slices(slices: list[tuple[str | np.ndarray, int, int]], scratch: Scratch | None = None) -> np.ndarray:
    """Gather record slices ``(source, record offset, n)`` (arrays in memory or spill files)
    into one (sum n,) STAGE_DTYPE array (one of ``scratch``'s when given)."""
    total = sum(n for _, _, n in slices)
    if scratch is not None:
        out = scratch.get("chunk_records", total, np.uint32, WORDS).view(STAGE_DTYPE).reshape(total)
    else:
        out = np.empty(total, dtype=STAGE_DTYPE)
    buf = out.view(np.uint8).data
    words = out.view(np.uint32).reshape(total, WORDS)  # numpy copies structured rows field by field; words go in one pass
    pos = 0
    by_path: dict[str, list[tuple[int, int, int]]] = {}
    for source, off, n in slices:
        if isinstance(source, np.ndarray):
            words[pos : pos + n] = source.view(np.uint32).reshape(len(source), WORDS)[off : off + n]
        else:
            by_path.setdefault(source, []).append((off, n, pos))
        pos += n
    size = STAGE_DTYPE.itemsize
    for path, parts in by_path.items():
        fd = os.open(path, os.O_RDONLY)
        try:
            for off, n, at in parts:
                view = buf[at * size : (at + n) * size]
                got = os.preadv(fd, [view], off * size)
                if got != n * size:
                    raise OSError(f"{path}: short read ({got} of {n * size} bytes)")
        finally:
            os.close(fd)
    return out
