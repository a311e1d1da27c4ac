"""Building heights from a classified point cloud (3dfier-style LOD1.2): per footprint, the
ground from ground-class (2) points in a ring around it and the roof from building-class (6)
points inside it, as exact percentiles.

One streaming pass over the LAS/LAZ files (laspy batches of x, y, z and classification; only
classes 2 and 6 near the footprints are kept): each batch is matched to the footprints in one
compiled call (:func:`cim.kernels.footprint_points.assign_points`) and reduced to one 8-byte
key per (point, footprint) pair. The keys stay in memory up to ``memory`` bytes; beyond that
they spill to temporary files, one per range of footprints, and each range is sorted and reduced
on its own at the end. Ranges are as many as make one range's keys about a quarter of the
budget (from the points' count), and footprints are numbered in a shuffled order so that the
keys of a survey that covers a part of the city still spread evenly over them. Memory is then
bounded by about 1.5 x ``memory`` (the keys held, and the copy a spill sorts) plus the batches in
flight, whatever the number of points.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import laspy
import numpy as np
from pyproj import CRS

from cim.crs import crs_label, transformer
from cim.engines import helper_threads
from cim.errors import CimCRSError, CimInputError, CimIOError
from cim.kernels.footprint_points import (
    FootprintGrid,
    assign_points,
    decode_keys,
    feature_rings,
    group_percentiles,
    height_keys,
    select_points,
)
from cim.sources.footprints import footprint_rings
from cim.sources.pointcloud.kept import KeptPart, kept_blocks
from cim.sources.pointcloud.las import PointCloudSource, list_pointcloud_files, open_pointcloud, read_batches

__all__ = ["GROUND", "BUILDING", "FootprintHeights", "footprint_heights", "expand_sources"]

log = logging.getLogger("cim.heights")

GROUND, BUILDING = 2, 6  # ASPRS classes
#: the fields of a LAZ file decoded (point formats 6-10 store them apart and skip the rest)
_FIELDS = laspy.DecompressionSelection.XY_RETURNS_CHANNEL | laspy.DecompressionSelection.Z | laspy.DecompressionSelection.CLASSIFICATION
#: fewest footprint ranges keys spill to (more for inputs large beside the memory budget)
_RANGES = 64
#: most ranges (spill files of one kind)
_MAX_RANGES = 4096


@dataclass
class FootprintHeights:
    """Heights of each footprint from the points (NaN where a footprint has no such point).

    Attributes
    ----------
    ground : (n,) float64, the ground percentile of ground points in the footprint's ring
    roof : (n, k) float64, the roof percentiles of building points covered by the footprint
    roof_percentiles : the k percentiles of ``roof``
    n_roof, n_ground : (n,) int64, the points behind each value
    points : points read; ``used`` of them were ground or building points near a footprint
    files : the files read; ``skipped``: files whose box misses every footprint
    """

    ground: np.ndarray
    roof: np.ndarray
    roof_percentiles: tuple[float, ...]
    n_roof: np.ndarray
    n_ground: np.ndarray
    points: int = 0
    used: int = 0
    files: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def expand_sources(sources: Sequence[str | Path]) -> list[Path]:
    """Files, folders and glob patterns (``data/lidar/*.laz``) → LAS/LAZ files, sorted within
    each source, in the order given.

    Raises
    ------
    CimIOError
        A path that does not exist, a pattern that matches nothing, a folder with no LAS/LAZ.
    """
    files: list[Path] = []
    for s in sources:
        p = Path(s)
        if any(ch in str(p) for ch in "*?["):
            anchor = Path(p.anchor) if p.is_absolute() else Path()
            matched = sorted(anchor.glob(str(p.relative_to(anchor)) if p.is_absolute() else str(p)))
            if not matched:
                raise CimIOError(f"{p}: no file matches this pattern")
            files += list_pointcloud_files(matched)
        else:
            files += list_pointcloud_files([p])
    return files


class _Keys:
    """The (footprint, height) keys of one kind of point: in memory up to a budget, then
    spilled to one file per range of footprints (``ranges`` ranges of consecutive footprint
    numbers: footprints are numbered in a shuffled order, so that a survey covering a part of
    the city still spreads its keys evenly over the ranges)."""

    def __init__(self, n: int, budget: int, folder: Callable[[], Path], name: str, ranges: int) -> None:
        self.n = n
        self.budget = budget
        self.folder = folder
        self.name = name
        self.parts: list[np.ndarray] = []
        self.held = 0
        self.spilled = False
        self.ranges = ranges
        self.bounds = (np.arange(ranges + 1, dtype=np.uint64) * np.uint64(-(-n // ranges))) << np.uint64(32)

    def add(self, keys: np.ndarray) -> None:
        if len(keys):
            self.parts.append(keys)
            self.held += keys.nbytes
            if self.held > self.budget:
                self.spill()

    def _file(self, r: int) -> Path:
        return self.folder() / f"{self.name}-{r:05d}.u64"

    def spill(self) -> None:
        if not self.parts:
            return
        keys = np.concatenate(self.parts)
        self.parts, self.held, self.spilled = [], 0, True
        keys.sort()  # in place: the held parts are freed first
        cut = np.searchsorted(keys, self.bounds)
        for r in range(self.ranges):
            if cut[r + 1] > cut[r]:
                with open(self._file(r), "ab") as f:
                    keys[cut[r] : cut[r + 1]].tofile(f)

    def runs(self) -> Iterator[np.ndarray]:
        """Sorted keys, one footprint range after another (or all at once when nothing spilled)."""
        if not self.spilled:
            keys = np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.uint64)
            self.parts = []
            keys.sort()
            yield keys
            return
        self.spill()
        for r in range(self.ranges):
            path = self._file(r)
            if path.exists():
                keys = np.fromfile(path, dtype=np.uint64)
                path.unlink()
                keys.sort()
                yield keys

    def reduce(self, q: Sequence[float], z_ref: float) -> tuple[np.ndarray, np.ndarray]:
        """(n, len(q)) percentiles and (n,) counts of every footprint."""
        values = np.full((self.n, len(q)), np.nan)
        count = np.zeros(self.n, dtype=np.int64)
        for keys in self.runs():
            if not len(keys):
                continue
            feature, z = decode_keys(keys, z_ref)
            # the run's footprints numbered 0, 1, ... (a run holds a few of the n)
            change = np.empty(len(feature), dtype=bool)
            change[0] = True
            np.not_equal(feature[1:], feature[:-1], out=change[1:])
            present = feature[change]
            v, c = group_percentiles(np.cumsum(change) - 1, z, len(present), np.asarray(q, dtype=np.float64))
            values[present], count[present] = v, c
        return values, count


def _working_crs(footprint_crs: CRS, srcs: list[PointCloudSource], where: str) -> CRS:
    """A projected CRS to match points and footprints in: the footprints' own, else the first
    point cloud's (a ring buffer in degrees would mean nothing)."""
    if not footprint_crs.is_geographic:
        return footprint_crs
    for s in srcs:
        if not s.crs.is_geographic:
            return s.crs
    raise CimCRSError(f"{where}: the footprints and the point clouds are all in geographic CRSs; give footprints in a projected CRS")


def _to(src: CRS, dst: CRS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if src.equals(dst):
        return x, y
    return transformer(src, dst).transform(x, y)


def _raw_batches(
    src: PointCloudSource, part: KeptPart | None, batch: int, classes: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]]:
    """A file's raw records batch by batch: ``(X, Y, Z, classification byte, class mask,
    points read)``, from the file, or from the building points kept of it (then the whole
    file's points and class counts are counted once, with its last block)."""
    if part is None:
        for b in read_batches(src, batch=batch, selection=_FIELDS):
            yield b.X, b.Y, b.Z, b.classification_raw, b.class_mask, len(b)
        return
    for X, Y, Z in kept_blocks(part, classes):
        yield X, Y, Z, np.full(len(X), BUILDING, dtype=np.uint8), 0xFF, 0
    yield _EMPTY, _EMPTY, _EMPTY, _EMPTY.view(np.uint8)[:0], 0xFF, part.points


_EMPTY = np.zeros(0, dtype=np.int32)


def footprint_heights(
    geometries: np.ndarray,
    footprint_crs: CRS,
    sources: Sequence[str | Path],
    *,
    crs: object = None,
    roof_percentiles: Sequence[float] = (50.0, 90.0),
    ground_percentile: float = 10.0,
    buffer: float = 3.0,
    need_ground: bool = True,
    memory: int = 256 << 20,
    batch: int = 1 << 19,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    where: str = "heights",
    kept: Sequence[KeptPart] | None = None,
) -> FootprintHeights:
    """Ground and roof percentiles of every footprint from classified LAS/LAZ files.

    Parameters
    ----------
    geometries : (n,) valid Polygon/MultiPolygon footprints in ``footprint_crs``
    footprint_crs : their CRS
    sources : LAS/LAZ files, folders of them, or glob patterns
    crs : the CRS of point files that declare none
    roof_percentiles : percentiles (0-100) of building points (class 6) covered by a footprint
    ground_percentile : percentile of ground points (class 2) within ``buffer`` of a footprint
        and outside it
    buffer : the ground ring's width, metres (units of the working CRS)
    need_ground : ground points are required (False when the ground comes from a DEM)
    memory : bytes of keys held in memory before spilling to temporary files
    batch : points read at once
    workers : threads matching batches while the next one is read
    progress : called with (files done, files)
    where : the layer, for messages
    kept : the building points of each file of ``sources`` (in their order) as a point-cloud
        layer kept them (:func:`~cim.sources.pointcloud.kept.kept_parts`), read instead of the
        files: the same result without decoding them again; only without ``need_ground``

    Raises
    ------
    CimIOError
        A missing file or folder.
    CimCRSError
        A file declares no CRS and none is given; no file overlaps the footprints (the message
        names each file's CRS and box).
    CimInputError
        Not a LAS/LAZ file; the points hold no building (6), or no ground (2), class.
    """
    files = expand_sources(sources)
    srcs = [open_pointcloud(f, crs) for f in files]
    if kept is not None and (need_ground or len(kept) != len(files)):
        raise ValueError("kept building points serve roofs only, one entry a file")
    part_of = {id(s): kept[i] for i, s in enumerate(srcs)} if kept is not None else {}
    n = len(geometries)
    work = _working_crs(footprint_crs, srcs, where)
    xy, ring_offsets, polygon_offsets, polygon_feature = footprint_rings(geometries)
    if not work.equals(footprint_crs):
        xy = np.column_stack(_to(footprint_crs, work, xy[:, 0].copy(), xy[:, 1].copy()))
    rings_of = feature_rings(ring_offsets, polygon_offsets, polygon_feature, n)
    grid = FootprintGrid.build(xy, ring_offsets, rings_of, buffer if need_ground else 0.0)
    x0, y0 = grid.x0, grid.y0
    x1, y1 = x0 + grid.nx * grid.cell, y0 + grid.ny * grid.cell

    # files whose header box (in the working CRS) misses the footprints are not read
    use: list[PointCloudSource] = []
    skipped: list[Path] = []
    for s in srcs:
        gx = np.linspace(s.mins[0], s.maxs[0], 5)
        gy = np.linspace(s.mins[1], s.maxs[1], 5)
        bx, by = _to(s.crs, work, *np.meshgrid(gx, gy))
        bx, by = np.asarray(bx), np.asarray(by)
        ok = np.isfinite(bx) & np.isfinite(by)
        if ok.any() and bx[ok].min() <= x1 and bx[ok].max() >= x0 and by[ok].min() <= y1 and by[ok].max() >= y0:
            use.append(s)
        else:
            skipped.append(s.path)
    if not use:
        boxes = "; ".join(
            f"{s.path.name}: {crs_label(s.crs)} x {s.mins[0]:.1f}..{s.maxs[0]:.1f}, y {s.mins[1]:.1f}..{s.maxs[1]:.1f}" for s in srcs
        )
        raise CimCRSError(
            f"{where}: no point cloud overlaps the footprints ({crs_label(footprint_crs)} x {x0:.1f}..{x1:.1f}, "
            f"y {y0:.1f}..{y1:.1f}); {boxes}. Are the CRSs right?"
        )
    z_ref = float(np.floor(min(s.mins[2] * s.z_factor for s in use)))

    tmp: list[tempfile.TemporaryDirectory] = []

    def folder() -> Path:
        if not tmp:
            tmp.append(tempfile.TemporaryDirectory(prefix="cim-heights-"))
        return Path(tmp[0].name)

    # one range's keys are sorted in memory at the end: aim at a quarter of the budget each,
    # assuming as many (point, footprint) pairs of a kind as points read
    total = sum(s.count for s in use)
    ranges = int(min(max(_RANGES, np.ceil(4 * 8 * total / (memory // 2))), _MAX_RANGES, n))
    # footprints numbered in a fixed shuffled order (see _Keys)
    number = np.random.default_rng(0).permutation(n).astype(np.int64)
    roofs = _Keys(n, memory // 2, folder, "roof", ranges)
    grounds = _Keys(n, memory // 2, folder, "ground", ranges)
    classes = np.zeros(256, dtype=np.int64)
    points = used = 0

    def match(x: np.ndarray, y: np.ndarray, z: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rp, rf, gp, gf = assign_points(grid, xy, ring_offsets, rings_of, x, y, kind)
        return height_keys(number[rf], z[rp], z_ref), height_keys(number[gf], z[gp], z_ref)

    try:
        with helper_threads(max(1, workers), "heights") as pool:
            pending: list = []
            for i, s in enumerate(use):
                same = s.crs.equals(work)
                box = (x0, y0, x1, y1) if same else (-np.inf, -np.inf, np.inf, np.inf)
                for X, Y, Z, cls_raw, cls_mask, counted in _raw_batches(s, part_of.get(id(s)), batch, classes):
                    points += counted
                    # new arrays: an uncompressed file's batch is reused by the next one
                    x, y, z, kind = select_points(
                        X,
                        Y,
                        Z,
                        cls_raw,
                        cls_mask,
                        s.scales,
                        s.offsets,
                        s.z_factor,
                        box,
                        classes if counted else np.zeros(256, dtype=np.int64),
                        BUILDING,
                        GROUND if need_ground else None,
                    )
                    if not same:
                        x, y = _to(s.crs, work, x, y)
                        near = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
                        x, y, z, kind = x[near], y[near], z[near], kind[near]
                    if not len(x):
                        continue
                    used += len(x)
                    pending.append(pool.submit(match, x, y, z, kind))
                    while len(pending) > max(1, workers):
                        r, g = pending.pop(0).result()
                        roofs.add(r)
                        grounds.add(g)
                if progress is not None:
                    progress(i + 1, len(use))
            for fut in pending:
                r, g = fut.result()
                roofs.add(r)
                grounds.add(g)
        if classes[BUILDING] == 0 or (need_ground and classes[GROUND] == 0):
            found = ", ".join(f"{c}: {classes[c]:,}" for c in np.flatnonzero(classes)) or "none"
            missing = "building (6)" if classes[BUILDING] == 0 else "ground (2)"
            raise CimInputError(
                f"{where}: {', '.join(s.path.name for s in use)} hold no {missing} points (classes found: {found}); "
                "heights need a classified point cloud"
            )
        roof, n_roof = roofs.reduce(list(roof_percentiles), z_ref)
        roof, n_roof = roof[number], n_roof[number]
        if need_ground:
            ground, n_ground = grounds.reduce([ground_percentile], z_ref)
            ground, n_ground = ground[number], n_ground[number]
        else:
            ground, n_ground = np.full((n, 1), np.nan), np.zeros(n, dtype=np.int64)
    finally:
        for t in tmp:
            t.cleanup()
    log.info("%s: %d points read, %d near footprints, %d files skipped", where, points, used, len(skipped))
    return FootprintHeights(ground[:, 0], roof, tuple(roof_percentiles), n_roof, n_ground, points, used, [s.path for s in use], skipped)
