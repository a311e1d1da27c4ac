"""The terrain layer: a DEM → quantized-mesh-1.0 tiles in the geographic TMS pyramid → ``layer.json``.

How it is made
--------------
- **Levels.** The deepest level is the one whose 65-sample lattice spacing best matches the DEM's
  cell size (:func:`cim.tiling.geographic.level_for_resolution`); ``min_zoom`` (default 0) is the
  coarsest. Every level's samples are a subset of the deepest level's (every 2^k-th), and each is
  the DEM's bilinear height at its longitude/latitude (no low-pass filter): the error bound below
  holds against the DEM itself at every sample of every level.
- **Error rule.** A level-``z`` tile is an error-bounded TIN within
  ``error_factor × LEVEL_ZERO_ERROR / 2**z`` metres of every lattice sample it covers, where
  ``LEVEL_ZERO_ERROR`` = 77,067 m is CesiumJS's own geometric error of a level-0 height map (a
  quarter of the level's equatorial sample spacing): 0.59 m at level 17, 2.35 m at level 15. With
  ``error_factor = 1`` the error CesiumJS assumes when it picks a level is the error the tile has.
- **Cracks.** Neighbouring tiles triangulate independently, so their shared edges differ by up to
  twice the error (three times between levels). CesiumJS hides that: CesiumTerrainProvider hangs a
  skirt of five times the level's geometric error from every vertex in a tile's west/south/east/
  north edge lists (createQuantizedMeshTerrainData, ``skirtHeight``). Hence ``error_factor ≤ 1.6``.
- **No data.** Holes and the parts of border tiles beyond the DEM are filled along rows, then
  columns (:func:`cim.kernels.heightfield.fill_nodata`): linear across holes, constant beyond the
  DEM's edge, so the surface stays continuous with the data. Tiles with no DEM sample are not
  written and not ``available``, except the two level-0 tiles: CesiumJS cannot upsample a missing
  root tile (GlobeSurfaceTile: "Trying to upsample from a root tile. No can do."), so both are
  always written.
- **Curvature.** A client draws flat triangles between ECEF vertices; the TINs bound the
  distance from each sample to that drawn surface along the tile's up direction, so large tiles get
  the vertices the Earth's curvature needs. Levels 0–5 (tiles of 5.6° and more) are regular
  17 × 17 grids instead: there the curvature, not the heights, sets the mesh.
- **Streaming.** The deepest level is processed in blocks of 16 × 16 tiles (4 levels) read as
  one DEM window each, on a thread pool; the coarser levels are made from the blocks' coarsest
  grids. Tiles are written through the tile store, ``layer.json`` last, and logged as they are
  finished, so an interrupted build resumes. While the folder has no ``layer.json`` nothing names
  a tile, so each is written straight to its name; a build over a published layer replaces each
  tile atomically (temporary name, rename) instead (see :mod:`cim.store`).
- **Where the time goes** (the ``city`` preset, 30 M DEM cells, 8,674 tiles, one core's CPU
  seconds, measured with everything else quiet): meshing 0.8, reading and decoding the DEM 0.5
  (zstd with a floating-point predictor), filling no-data 0.3, sampling the lattice 0.25, gzip
  0.25, creating the files 0.5–0.6 of system time, the rest (Python between kernels) about 0.5.
  Every stage but the Python between them releases the GIL (numba ``nogil`` kernels, GDAL, zlib,
  file writes), so two threads keep both cores busy (1.8 cores on average): 2.2–2.8 s on the
  wall clock. Two things on these shared machines cost more than the work: touching fresh memory
  (3–10 µs a page: a block's buffers are kept per thread and reused, never reallocated) and
  creating files while the file system is busy removing others (up to 1 ms a file).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cim.errors import CimInputError
from cim.formats.quantized_mesh import layer_document
from cim.kernels.heightfield import fill_nodata, lattice_coverage
from cim.layers.base import LayerResult, Progress
from cim.sources.dem_grid import TerrainDem
from cim.store import TileStore, atomic_write_json, build_key, file_fingerprint
from cim.tiling.geographic import INTERVALS, MAX_LEVEL, availability, level_for_resolution, sample_degrees, tiles_covering
from cim.tiling.terrain_jobs import GRID_LEVELS, LevelTiles, encode_terrain_tiles, level_error

log = logging.getLogger("cim.terrain")

#: levels processed together from one DEM window (a block is 2^BLOCK_LEVELS tiles square)
BLOCK_LEVELS = 4
#: tiles a writer task writes and logs together
WRITE_BATCH = 64
MAX_ERROR_FACTOR = 1.6
FORMAT_VERSION = "terrain-1"


class _Writer:
    """Writes batches of tiles through the store on threads of their own, a bounded number in flight.

    Creating a file costs 20 µs to 2 ms on these disks (it depends on what else the machine is doing
    to the file system), mostly in the kernel with the GIL released: overlapping the writes with
    meshing keeps the cores busy. A batch is logged in one append (:meth:`TileStore.write_many`).
    """

    def __init__(self, store: TileStore, *, atomic: bool, threads: int = 2, in_flight: int = 32) -> None:
        self.store = store
        self.atomic = atomic
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cim-terrain-io")
        self.slots = threading.BoundedSemaphore(in_flight)
        self.error: BaseException | None = None

    def submit(self, items: list[tuple[str, bytes]]) -> None:
        if self.error is not None:
            raise self.error
        for i in range(0, len(items), WRITE_BATCH):
            self.slots.acquire()
            self.pool.submit(self._write, items[i : i + WRITE_BATCH])

    def _write(self, items: list[tuple[str, bytes]]) -> None:
        try:
            self.store.write_many(items, atomic=self.atomic)
        except BaseException as exc:  # noqa: BLE001 - handed to the building thread
            self.error = self.error or exc
        finally:
            self.slots.release()

    def close(self) -> None:
        """Wait for every write; raise the first error."""
        self.pool.shutdown(wait=True)
        if self.error is not None:
            raise self.error


@dataclass
class _Build:
    """A terrain build's shared state."""

    dem: TerrainDem
    store: TileStore
    writer: _Writer
    max_zoom: int
    min_zoom: int
    block_zoom: int
    error_factor: float
    tiles: dict[int, set[tuple[int, int]]] = field(default_factory=dict)
    triangles: int = 0
    vertices: int = 0
    worst: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    scratch: threading.local = field(default_factory=threading.local)  # per-thread buffers

    def write(self, parts: list[LevelTiles]) -> None:
        """Mesh, encode and write the parts' tiles (skipping those an earlier run finished)."""
        todo = []
        for p in parts:
            keep = [i for i, (x, y) in enumerate(p.tiles) if not self.store.is_done(f"{p.z}/{x}/{y}.terrain")]
            if keep:
                todo.append(LevelTiles(p.grid, p.z, [p.tiles[i] for i in keep], np.asarray(p.rows0)[keep], np.asarray(p.cols0)[keep]))
        data, errors, counts = encode_terrain_tiles(todo, self.error_factor)
        names = [(p.z, x, y) for p in todo for x, y in p.tiles]
        self.writer.submit([(f"{z}/{x}/{y}.terrain", blob) for (z, x, y), blob in zip(names, data)])
        levels = np.array([z for z, _, _ in names])
        with self.lock:
            for z in set(levels.tolist()):
                if z > GRID_LEVELS:
                    self.worst[z] = max(self.worst.get(z, 0.0), float(errors[levels == z].max()))
            at_max = levels == self.max_zoom
            self.vertices += int(counts[at_max, 0].sum())
            self.triangles += int(counts[at_max, 1].sum())


@dataclass
class _Block:
    bx: int
    by: int
    grid: np.ndarray  # the block's filled level-block_zoom lattice, with one sample of margin
    tiles: dict[int, list[tuple[int, int]]]
    low: float
    high: float


def _dem_index_range(bounds: tuple[float, float, float, float], z: int) -> tuple[int, int, int, int]:
    """Level-``z`` lattice indices ``(i0, j0, i1, j1)`` (inclusive) around the DEM, with 2 of margin."""
    s = sample_degrees(z)
    return (
        int(np.floor((bounds[0] + 180.0) / s)) - 2,
        int(np.floor((bounds[1] + 90.0) / s)) - 2,
        int(np.ceil((bounds[2] + 180.0) / s)) + 2,
        int(np.ceil((bounds[3] + 90.0) / s)) + 2,
    )


def _process_block(b: _Build, bx: int, by: int) -> _Block | None:
    """Sample one block of the deepest level, write its tiles down to the block level."""
    k_tiles = 1 << (b.max_zoom - b.block_zoom)
    n = INTERVALS * k_tiles
    margin = k_tiles
    size = n + 1 + 2 * margin
    i0, j0 = bx * n - margin, by * n - margin
    di0, dj0, di1, dj1 = _dem_index_range(b.dem.bounds, b.max_zoom)
    si0, sj0 = max(i0, di0), max(j0, dj0)
    si1, sj1 = min(i0 + size - 1, di1), min(j0 + size - 1, dj1)
    if si1 < si0 or sj1 < sj0:
        return None
    s = sample_degrees(b.max_zoom)
    # one lattice buffer per thread, reused block after block: touching fresh memory costs 3-10 µs
    # a page on these machines, 10-25 ms for a block's 10 MB
    raw = _scratch(b.scratch, "raw", (size, size))
    wr0, wr1, wc0, wc1 = sj0 - j0, sj1 - j0 + 1, si0 - i0, si1 - i0 + 1
    raw[:wr0] = raw[wr1:] = np.nan
    raw[wr0:wr1, :wc0] = raw[wr0:wr1, wc1:] = np.nan
    b.dem.sample(-180.0 + si0 * s, -90.0 + sj0 * s, s, (wr1 - wr0, wc1 - wc0), out=raw, at=(wr0, wc0))
    # tiles with a valid sample (on or inside their outline), and the range of the data
    have, low, high = lattice_coverage(raw, margin, k_tiles, INTERVALS)  # have[ty, tx]
    if not have.any():
        return None
    tiles: dict[int, list[tuple[int, int]]] = {}
    parts = []
    for z in range(b.max_zoom, b.block_zoom - 1, -1):
        k = b.max_zoom - z
        step = 1 << k
        if k:
            have = have.reshape(have.shape[0] // 2, 2, have.shape[1] // 2, 2).any(axis=(1, 3))
        m = margin // step
        nt = k_tiles >> k
        ty, tx = np.nonzero(have)
        tiles[z] = [(bx * nt + int(a), by * nt + int(c)) for a, c in zip(tx, ty)]
        # fill only the level's samples under the tiles it writes (and their margin)
        r0, c0 = m - 1 + ty.min() * INTERVALS, m - 1 + tx.min() * INTERVALS
        r1, c1 = m + 2 + (ty.max() + 1) * INTERVALS, m + 2 + (tx.max() + 1) * INTERVALS
        src = raw[::step, ::step][r0:r1, c0:c1]
        g = fill_nodata(src, out=_scratch(b.scratch, f"fill{k}", src.shape))
        parts.append(LevelTiles(g, z, tiles[z], m + ty * INTERVALS - r0, m + tx * INTERVALS - c0))
    b.write(parts)
    # at the block level the one tile is the whole block: its grid is the block's, margin included
    return _Block(bx, by, g.copy(), tiles, low, high)


def _scratch(local: threading.local, name: str, shape: tuple[int, int]) -> np.ndarray:
    """A C-contiguous float64 array of ``shape`` from a buffer this thread keeps under ``name``."""
    size = shape[0] * shape[1]
    buf = getattr(local, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size)
        setattr(local, name, buf)
    return buf[:size].reshape(shape)


def _coarse_levels(b: _Build, blocks: list[_Block]) -> None:
    """Write the levels above the block level from a mosaic of the blocks' coarsest grids."""
    zb = b.block_zoom
    bxs = [blk.bx for blk in blocks]
    bys = [blk.by for blk in blocks]
    x0, y0 = min(bxs), min(bys)
    grid = np.full((INTERVALS * (max(bys) - y0 + 1) + 3, INTERVALS * (max(bxs) - x0 + 1) + 3), np.nan)
    for blk in blocks:
        r, c = (blk.by - y0) * INTERVALS, (blk.bx - x0) * INTERVALS
        grid[r : r + INTERVALS + 3, c : c + INTERVALS + 3] = blk.grid
    origin = (x0 * INTERVALS - 1, y0 * INTERVALS - 1)  # global level-zb index of grid[0, 0]
    tiles = b.tiles[zb]
    parts = []
    for z in range(zb - 1, b.min_zoom - 1, -1):
        tiles = {(x >> 1, y >> 1) for x, y in tiles}
        if z == 0:
            tiles |= {(0, 0), (1, 0)}  # CesiumJS needs both roots (see the module notes)
        xs, ys = [t[0] for t in tiles], [t[1] for t in tiles]
        tx0, ty0 = min(xs), min(ys)
        new = np.full((INTERVALS * (max(ys) - ty0 + 1) + 3, INTERVALS * (max(xs) - tx0 + 1) + 3), np.nan)
        new_origin = (tx0 * INTERVALS - 1, ty0 * INTERVALS - 1)
        # level z index I is level z+1 index 2I
        pi, pj = origin
        ii = np.arange(new.shape[1]) + new_origin[0]
        jj = np.arange(new.shape[0]) + new_origin[1]
        ci, cj = 2 * ii - pi, 2 * jj - pj
        oki = (ci >= 0) & (ci < grid.shape[1])
        okj = (cj >= 0) & (cj < grid.shape[0])
        new[np.ix_(okj, oki)] = grid[np.ix_(cj[okj], ci[oki])]
        grid, origin = fill_nodata(new), new_origin
        b.tiles[z] = tiles
        order = sorted(tiles)
        rows0 = np.array([(y - ty0) * INTERVALS + 1 for _, y in order])
        cols0 = np.array([(x - tx0) * INTERVALS + 1 for x, _ in order])
        parts.append(LevelTiles(grid, z, order, rows0, cols0))
    b.write(parts)


def build_terrain_layer(
    dem: str | Path,
    out_dir: str | Path,
    *,
    max_zoom: int | None = None,
    min_zoom: int = 0,
    error_factor: float = 1.0,
    progress: Progress | None = None,
    layer_id: str = "terrain",
    workers: int | None = None,
) -> LayerResult:
    """Write a quantized-mesh terrain layer: ``out_dir/layer.json`` and ``out_dir/{z}/{x}/{y}.terrain``.

    Tiles are gzip-compressed on disk (the server sends them with ``Content-Encoding: gzip``).
    CesiumJS reads the folder with ``CesiumTerrainProvider.fromUrl(url, {requestVertexNormals: true})``.

    Parameters
    ----------
    dem : a single-band DEM GDAL reads, in any CRS, heights above the ellipsoid in metres
    out_dir : the layer folder
    max_zoom : the deepest level; default from the DEM's cell size
    min_zoom : the coarsest level written (keep 0 for CesiumJS, which needs the root tiles)
    error_factor : the TIN error bound as a multiple of CesiumJS's level error, in (0, 1.6]
    progress : called as ``progress("terrain", done, total)`` per block of tiles
    layer_id : the layer's id in the city manifest
    workers : threads (default: the number of cores)

    Raises
    ------
    CimIOError, CimInputError, CimCRSError
        A missing or unreadable DEM, no CRS, a rotated geotransform, no data at all, bad options.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if not (0.0 < float(error_factor) <= MAX_ERROR_FACTOR):
        raise CimInputError(f"error_factor must be in (0, {MAX_ERROR_FACTOR}], got {error_factor!r}")
    with TerrainDem(dem) as src:
        zmax = level_for_resolution(src.cell_size, src.centre_lat) if max_zoom is None else int(max_zoom)
        zmax = max(zmax, 1) if max_zoom is None else zmax
        if not (0 <= int(min_zoom) <= zmax <= MAX_LEVEL and zmax >= 1):
            raise CimInputError(f"{src.path}: need 0 <= min_zoom <= max_zoom <= {MAX_LEVEL} and max_zoom >= 1, got {min_zoom} and {zmax}")
        # blocks sit at level 1 or deeper, so the roots come from the coarse pass (both are written)
        zb = max(int(min_zoom), zmax - BLOCK_LEVELS, 1)
        key = build_key(FORMAT_VERSION, file_fingerprint(src.path), zmax, int(min_zoom), float(error_factor))
        # a fresh folder has no tiles of earlier builds to find and remove afterwards; with no
        # layer.json yet nothing names a tile before this build's layer.json does, so tiles are
        # written straight to their names (see cim.store); else each replaces its old self atomically
        store = TileStore(out_dir, key)
        b = _Build(src, store, _Writer(store, atomic=not store.unpublished("layer.json")), zmax, int(min_zoom), zb, float(error_factor))
        bx0, by0, bx1, by1 = tiles_covering(src.bounds, zb)
        jobs = [(bx, by) for by in range(by0, by1 + 1) for bx in range(bx0, bx1 + 1)]
        blocks: list[_Block] = []
        try:
            with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
                for i, blk in enumerate(pool.map(lambda j: _process_block(b, *j), jobs)):
                    if blk is not None:
                        blocks.append(blk)
                    if progress:
                        progress("terrain", i + 1, len(jobs))
            if not blocks:
                raise CimInputError(f"{src.path}: the DEM has no data (every cell is no-data or outside its extent)")
            for z in range(zmax, zb - 1, -1):
                b.tiles[z] = {t for blk in blocks for t in blk.tiles[z]}
            _coarse_levels(b, blocks)
        finally:
            b.writer.close()
        bounds = src.bounds
        cells = src.width * src.height
    version = key[:12]
    available = [availability(np.array(sorted(b.tiles.get(z, ())))) for z in range(zmax + 1)]
    errors = {str(z): round(level_error(z, b.error_factor), 4) for z in range(b.min_zoom, zmax + 1)}
    doc = layer_document(
        bounds=bounds, available=available, minzoom=b.min_zoom, maxzoom=zmax, version=version,
        name=layer_id, description=f"terrain from {Path(dem).name}",
        extra={"cim": {"errorFactor": b.error_factor, "maxError": errors, "demCellSize": round(src.cell_size, 4)}},
    )
    b.store.close()
    atomic_write_json(out_dir / "layer.json", doc)
    if b.store.fresh:  # only this build's files: no walk over thousands of them to sum or prune
        size = b.store.bytes_written + (out_dir / "layer.json").stat().st_size
    else:
        _remove_stale(out_dir, b.store.written)
        size = b.store.size_on_disk()
    low, high = min(blk.low for blk in blocks), max(blk.high for blk in blocks)
    n_tiles = sum(len(t) for t in b.tiles.values())
    result = LayerResult(
        id=layer_id,
        kind="terrain",
        path=out_dir,
        count=cells,
        tiles=n_tiles,
        triangles=b.triangles,
        bytes=size,
        bounds={"west": bounds[0], "south": bounds[1], "east": bounds[2], "north": bounds[3], "min_height": low, "max_height": high},
        schema={},
        seconds=time.perf_counter() - t0,
        resumed_tiles=b.store.resumed,
        format="quantized-mesh",
        url="",
        extra={
            "minzoom": b.min_zoom,
            "maxzoom": zmax,
            "max_error": errors,  # the bound of each level
            "measured_error": {str(z): round(e, 4) for z, e in sorted(b.worst.items())},  # the worst TIN of each level written now
            "dem_cell_size": src.cell_size,
        },
    )
    log.info(
        "terrain %s: levels %d-%d, %d tiles, %d triangles at level %d, %.1f MB, %.2f s",
        layer_id, b.min_zoom, zmax, n_tiles, b.triangles, zmax, result.bytes / 1e6, result.seconds,
    )
    return result


def _remove_stale(out_dir: Path, written: set[str]) -> None:
    """Remove ``.terrain`` files of earlier builds that this one did not write."""
    for level in out_dir.iterdir():
        if level.is_dir() and level.name.isdigit():
            for path in level.rglob("*.terrain"):
                if path.relative_to(out_dir).as_posix() not in written:
                    path.unlink()
