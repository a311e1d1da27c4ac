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
- **Jobs.** The deepest level is processed in blocks of 16 × 16 tiles (4 levels) read as one DEM
  window each: a block is a tile job (:func:`block_job`, a function of the shared
  :class:`TerrainState` and the block's key), run on the engine's pool, which meshes, encodes
  and writes the block's tiles through the store's sink and returns the block's coarsest grid.
  The coarser levels are made from those grids, in the layer's own thread. Tiles are logged as
  they are finished, so an interrupted build resumes, and ``layer.json`` is written last (see
  :mod:`cim.store`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from cim.crs import crs_label
from cim.errors import CimInputError
from cim.formats.quantized_mesh import layer_document
from cim.kernels.heightfield import fill_nodata, lattice_coverage
from cim.layers.base import LayerBuilder, LayerInfo, LayerOptions, LayerOutput, LayerPlan, LayerRun, option
from cim.layers.terrain.meshes import GRID_LEVELS, LevelTiles, encode_terrain_tiles, level_error
from cim.sources.dem_grid import TerrainDem
from cim.sources.raster_size import DEFAULT_MAX_CELLS, check_declared_size
from cim.store import TileSink, build_key, file_fingerprint
from cim.tiling.geographic import INTERVALS, MAX_LEVEL, availability, level_for_resolution, sample_degrees, tiles_covering
from cim.warnings import GeoreferenceWarning

__all__ = ["TerrainLayer", "TerrainOptions", "TerrainInfo", "TerrainPlan", "TerrainState", "block_job", "level_error", "MAX_ERROR_FACTOR"]

#: levels processed together from one DEM window (a block is 2^BLOCK_LEVELS tiles square)
BLOCK_LEVELS = 4
MAX_ERROR_FACTOR = 1.6
FORMAT_VERSION = "terrain-1"


@dataclass
class TerrainOptions(LayerOptions):
    """Options of a terrain layer."""

    max_zoom: int | None = option(None, help="Finest level [default: from the DEM's resolution].")
    min_zoom: int = option(0, help="Coarsest level written (keep 0 for CesiumJS, which needs the root tiles).")
    error_factor: float = option(
        1.0, help=f"Each level's TIN error bound as a multiple of CesiumJS's level error, in (0, {MAX_ERROR_FACTOR}]."
    )
    max_cells: int = option(DEFAULT_MAX_CELLS, help="Refuse a DEM declaring more cells than this (a damaged or wrong file).")
    crs: str | None = option(None, help="CRS of a DEM that declares none, e.g. EPSG:4544 [default: the city's].")
    crs_override: bool = option(False, help="Use --crs even for a DEM that declares one (its header is wrong).")

    def check(self, where: str) -> None:
        if not 0.0 < self.error_factor <= MAX_ERROR_FACTOR:
            raise CimInputError(f"{where}: option 'error_factor' must be in (0, {MAX_ERROR_FACTOR}], got {self.error_factor!r}")


@dataclass
class TerrainInfo(LayerInfo):
    """What a terrain layer adds to its ``city.json`` entry."""

    minzoom: int
    maxzoom: int
    #: the error bound of each level, metres (keys: levels as text)
    max_error: dict[str, float]
    #: the worst TIN of each level, metres
    measured_error: dict[str, float]
    dem_cell_size: float

    def finest_error(self) -> float:
        """The error bound of the finest level, metres."""
        return float(self.max_error[str(self.maxzoom)])


@dataclass
class TerrainPlan(LayerPlan):
    dem: TerrainDem | None = None
    max_zoom: int = 0
    min_zoom: int = 0
    block_zoom: int = 0
    error_factor: float = 1.0


@dataclass(frozen=True)
class TerrainState:
    """What every block job of a terrain build shares (read-only)."""

    dem: TerrainDem
    max_zoom: int
    block_zoom: int
    error_factor: float
    sink: TileSink


@dataclass
class BlockResult:
    """One block's tiles and what the coarser levels need of it."""

    bx: int
    by: int
    grid: np.ndarray  # the block level's filled lattice, with one sample of margin
    tiles: dict[int, list[tuple[int, int]]]
    low: float
    high: float
    stats: TileStats


class TerrainLayer(LayerBuilder[TerrainOptions, TerrainPlan]):
    """A DEM → quantized-mesh-1.0 terrain (``layer.json`` + ``{z}/{x}/{y}.terrain``, gzip).

    CesiumJS reads the folder with ``CesiumTerrainProvider.fromUrl(url, {requestVertexNormals:
    true})``; the server sends the tiles with ``Content-Encoding: gzip``. The DEM may be in any
    CRS, heights above the ellipsoid in metres.
    """

    kind = "terrain"
    Options = TerrainOptions
    index = "layer.json"
    pretty_index = True
    content = tuple(str(z) for z in range(MAX_LEVEL + 1))
    format = "quantized-mesh"
    url = ""
    order = 10
    cim_level = 1
    summary = "Mesh a DEM (any CRS, GeoTIFF or any GDAL raster) into quantized-mesh terrain."

    def plan(self, sources: list[Path], options: TerrainOptions, run: LayerRun) -> TerrainPlan:
        dem = TerrainDem(sources[0], run.crs(options.crs), crs_override=options.crs_override)
        try:
            if dem.replaced is not None:
                run.warn(GeoreferenceWarning, f"{dem.path}: declares {dem.replaced}; read as {crs_label(dem.crs)} (crs_override)")
            lon, lat = (dem.bounds[0] + dem.bounds[2]) / 2.0, (dem.bounds[1] + dem.bounds[3]) / 2.0
            dz = run.height_offset(dem.full_crs, np.array([lon]), np.array([lat]), dem.path.name)
            dem.shift = 0.0 if dz is None else float(dz[0])
            check_declared_size(dem.path, dem.width, dem.height, 1, str(dem.dtype), max_cells=options.max_cells)
            zmax = level_for_resolution(dem.cell_size, dem.centre_lat) if options.max_zoom is None else options.max_zoom
            zmax = max(zmax, 1) if options.max_zoom is None else zmax
            if not (0 <= options.min_zoom <= zmax <= MAX_LEVEL and zmax >= 1):
                raise CimInputError(
                    f"{dem.path}: need 0 <= min_zoom <= max_zoom <= {MAX_LEVEL} and max_zoom >= 1, got {options.min_zoom} and {zmax}"
                )
            # blocks sit at level 1 or deeper, so the roots come from the coarse pass (both are written)
            zb = max(options.min_zoom, zmax - BLOCK_LEVELS, 1)
            given = [dem.crs.to_wkt()] if dem.crs_from != "file" else []
            key = build_key(FORMAT_VERSION, file_fingerprint(dem.path), zmax, options.min_zoom, float(options.error_factor), *given)
            bx0, by0, bx1, by1 = tiles_covering(dem.bounds, zb)
            blocks = [(bx, by) for by in range(by0, by1 + 1) for bx in range(bx0, bx1 + 1)]
        except BaseException:
            dem.close()
            raise
        return TerrainPlan(
            key, blocks, dem=dem, max_zoom=zmax, min_zoom=options.min_zoom, block_zoom=zb, error_factor=float(options.error_factor)
        )

    def build(self, plan: TerrainPlan, run: LayerRun) -> LayerOutput:
        assert run.store is not None and plan.dem is not None
        dem = plan.dem
        try:
            state = TerrainState(dem, plan.max_zoom, plan.block_zoom, plan.error_factor, run.store.sink())
            blocks = [b for b in run.map(block_job, state, plan.jobs, stage="blocks") if b is not None]
            if not blocks:
                raise CimInputError(_no_block_message(dem, plan.max_zoom))
            tiles: dict[int, set[tuple[int, int]]] = {
                z: {t for b in blocks for t in b.tiles[z]} for z in range(plan.max_zoom, plan.block_zoom - 1, -1)
            }
            stats = TileStats({}, {}, {})
            for b in blocks:
                stats.add(b.stats)
            parts = _coarse_levels(blocks, tiles, plan.block_zoom, plan.min_zoom)
            items, coarse = _encode(parts, plan.error_factor, run.store.meta, run.store.is_done)
            run.store.write_many(items)
            stats.add(coarse)
        finally:
            dem.close()
            _thread_scratch.__dict__.clear()  # this thread's buffers, when it ran jobs itself
        zmax = plan.max_zoom
        available = [availability(np.array(sorted(tiles.get(z, ())))) for z in range(zmax + 1)]
        max_error = {str(z): round(level_error(z, plan.error_factor), 4) for z in range(plan.min_zoom, zmax + 1)}
        doc = layer_document(
            bounds=dem.bounds,
            available=available,
            minzoom=plan.min_zoom,
            maxzoom=zmax,
            version=plan.key[:12],
            name=run.id,
            description=f"terrain from {dem.path.name}",
            extra={"cim": {"errorFactor": plan.error_factor, "maxError": max_error, "demCellSize": round(dem.cell_size, 4)}},
        )
        low, high = min(b.low for b in blocks), max(b.high for b in blocks)
        return LayerOutput(
            index=doc,
            count=dem.width * dem.height,
            tiles=sum(len(t) for t in tiles.values()),
            triangles=stats.triangles.get(zmax, 0),
            bounds={
                "west": dem.bounds[0],
                "south": dem.bounds[1],
                "east": dem.bounds[2],
                "north": dem.bounds[3],
                "min_height": low,
                "max_height": high,
            },
            crs=crs_label(dem.crs),
            info=TerrainInfo(
                minzoom=plan.min_zoom,
                maxzoom=zmax,
                max_error=max_error,
                measured_error={str(z): round(e, 4) for z, e in sorted(stats.worst.items())},
                dem_cell_size=dem.cell_size,
            ),
        )


def _no_block_message(dem: TerrainDem, max_zoom: int) -> str:
    """Why no block holds a DEM sample: no data at all, or a lattice too coarse to hit the DEM."""
    step = sample_degrees(max_zoom)
    width, height = dem.bounds[2] - dem.bounds[0], dem.bounds[3] - dem.bounds[1]
    if min(width, height) < 2 * step:
        return (
            f"{dem.path}: max_zoom {max_zoom} is too coarse for this DEM: its samples lie {step * 111_320:.0f} m apart and the DEM "
            f"is {min(width, height) * 111_320:.0f} m across; leave max_zoom out (the DEM's cells suggest "
            f"{level_for_resolution(dem.cell_size, dem.centre_lat)}) or choose a finer one"
        )
    return f"{dem.path}: the DEM has no data (every cell is no-data or outside its extent)"


def _dem_index_range(bounds: tuple[float, float, float, float], z: int) -> tuple[int, int, int, int]:
    """Level-``z`` lattice indices ``(i0, j0, i1, j1)`` (inclusive) around the DEM, with 2 of margin."""
    s = sample_degrees(z)
    return (
        int(np.floor((bounds[0] + 180.0) / s)) - 2,
        int(np.floor((bounds[1] + 90.0) / s)) - 2,
        int(np.ceil((bounds[2] + 180.0) / s)) + 2,
        int(np.ceil((bounds[3] + 90.0) / s)) + 2,
    )


@dataclass
class TileStats:
    """What a set of terrain tiles adds to the layer's summary."""

    worst: dict[int, float]  # the worst TIN error of each meshed level (the grid levels have none)
    vertices: dict[int, int]  # per level
    triangles: dict[int, int]

    @classmethod
    def of(cls, metas: list[tuple[int, dict[str, Any]]]) -> TileStats:
        """From each tile's level and logged facts (``{"v", "t", "e"}``)."""
        stats = cls({}, {}, {})
        for z, m in metas:
            stats.vertices[z] = stats.vertices.get(z, 0) + int(m["v"])
            stats.triangles[z] = stats.triangles.get(z, 0) + int(m["t"])
            if z > GRID_LEVELS:
                stats.worst[z] = max(stats.worst.get(z, 0.0), float(m["e"]))
        return stats

    def add(self, other: TileStats) -> None:
        for z, e in other.worst.items():
            self.worst[z] = max(self.worst.get(z, 0.0), e)
        for z, n in other.vertices.items():
            self.vertices[z] = self.vertices.get(z, 0) + n
        for z, n in other.triangles.items():
            self.triangles[z] = self.triangles.get(z, 0) + n


def _encode(
    parts: list[LevelTiles], error_factor: float, meta_of: Callable[[str], dict[str, Any] | None], is_done: Callable[[str], bool]
) -> tuple[list[tuple[str, bytes, dict[str, Any]]], TileStats]:
    """Mesh and encode the parts' tiles, leaving out those an earlier run finished; returns the
    files to write, each with its facts (vertices, triangles, TIN error) for the build log, and the
    stats of every tile of the parts (those of finished tiles read back from the log, so a resumed
    build reports what an uninterrupted one does)."""
    todo = []
    metas: list[tuple[int, dict[str, Any]]] = []
    for p in parts:
        names = [f"{p.z}/{x}/{y}.terrain" for x, y in p.tiles]
        fresh = []
        for i, name in enumerate(names):
            done = meta_of(name) if is_done(name) else None
            if done is None:
                fresh.append(i)  # (a tile logged without its facts is made again)
            else:
                metas.append((p.z, done))
        if fresh:
            todo.append(LevelTiles(p.grid, p.z, [p.tiles[i] for i in fresh], np.asarray(p.rows0)[fresh], np.asarray(p.cols0)[fresh]))
    data, errors, counts = encode_terrain_tiles(todo, error_factor)
    tile_keys = [(p.z, x, y) for p in todo for x, y in p.tiles]
    items = []
    for (z, x, y), blob, err, (nv, nt) in zip(tile_keys, data, errors.tolist(), counts.tolist()):
        meta = {"v": int(nv), "t": int(nt), "e": float(err) if z > GRID_LEVELS else 0.0}
        items.append((f"{z}/{x}/{y}.terrain", blob, meta))
        metas.append((z, meta))
    return items, TileStats.of(metas)


_thread_scratch = threading.local()


def _scratch(name: str, shape: tuple[int, int]) -> np.ndarray:
    """A C-contiguous float64 array of ``shape`` from a buffer the calling thread keeps under
    ``name`` (a block's lattice is reused block after block: fresh pages are costly to touch)."""
    size = shape[0] * shape[1]
    buf = getattr(_thread_scratch, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size)
        setattr(_thread_scratch, name, buf)
    return buf[:size].reshape(shape)


def block_job(state: TerrainState, key: tuple[int, int]) -> BlockResult | None:
    """The tile job: sample one block of the deepest level, mesh, encode and write its tiles
    down to the block level; None when the block holds no DEM sample."""
    bx, by = key
    k_tiles = 1 << (state.max_zoom - state.block_zoom)
    n = INTERVALS * k_tiles
    margin = k_tiles
    size = n + 1 + 2 * margin
    i0, j0 = bx * n - margin, by * n - margin
    di0, dj0, di1, dj1 = _dem_index_range(state.dem.bounds, state.max_zoom)
    si0, sj0 = max(i0, di0), max(j0, dj0)
    si1, sj1 = min(i0 + size - 1, di1), min(j0 + size - 1, dj1)
    if si1 < si0 or sj1 < sj0:
        return None
    s = sample_degrees(state.max_zoom)
    raw = _scratch("raw", (size, size))
    wr0, wr1, wc0, wc1 = sj0 - j0, sj1 - j0 + 1, si0 - i0, si1 - i0 + 1
    raw[:wr0] = raw[wr1:] = np.nan
    raw[wr0:wr1, :wc0] = raw[wr0:wr1, wc1:] = np.nan
    state.dem.sample(-180.0 + si0 * s, -90.0 + sj0 * s, s, (wr1 - wr0, wc1 - wc0), out=raw, at=(wr0, wc0))
    # tiles with a valid sample (on or inside their outline), and the range of the data
    have, low, high = lattice_coverage(raw, margin, k_tiles, INTERVALS)  # have[ty, tx]
    if not have.any():
        return None
    tiles: dict[int, list[tuple[int, int]]] = {}
    parts = []
    for z in range(state.max_zoom, state.block_zoom - 1, -1):
        k = state.max_zoom - z
        step = 1 << k
        if k:
            have = cast(np.ndarray, have.reshape(have.shape[0] // 2, 2, have.shape[1] // 2, 2).any(axis=(1, 3)))  # 2-D, not a scalar
        m = margin // step
        nt = k_tiles >> k
        ty, tx = np.nonzero(have)
        tiles[z] = [(bx * nt + int(a), by * nt + int(c)) for a, c in zip(tx, ty)]
        # fill only the level's samples under the tiles it writes (and their margin)
        r0, c0 = m - 1 + ty.min() * INTERVALS, m - 1 + tx.min() * INTERVALS
        r1, c1 = m + 2 + (ty.max() + 1) * INTERVALS, m + 2 + (tx.max() + 1) * INTERVALS
        src = raw[::step, ::step][r0:r1, c0:c1]
        g = _scratch(f"fill{k}", src.shape)
        if np.isnan(src).all():  # the DEM lies between this level's samples: its mean height stands in
            g[...] = np.nanmean(raw)
        else:
            fill_nodata(src, out=g)
        parts.append(LevelTiles(g, z, tiles[z], m + ty * INTERVALS - r0, m + tx * INTERVALS - c0))
    items, stats = _encode(parts, state.error_factor, state.sink.meta, state.sink.is_done)
    for rel, data, meta in items:
        state.sink.write(rel, data, meta)
    # at the block level the one tile is the whole block: its grid is the block's, margin included
    return BlockResult(bx, by, g.copy(), tiles, low, high, stats)


def _coarse_levels(blocks: list[BlockResult], tiles: dict[int, set[tuple[int, int]]], zb: int, min_zoom: int) -> list[LevelTiles]:
    """The levels above the block level, from a mosaic of the blocks' coarsest grids (adds their
    tiles to ``tiles``)."""
    bxs = [blk.bx for blk in blocks]
    bys = [blk.by for blk in blocks]
    x0, y0 = min(bxs), min(bys)
    grid = np.full((INTERVALS * (max(bys) - y0 + 1) + 3, INTERVALS * (max(bxs) - x0 + 1) + 3), np.nan)
    for blk in blocks:
        r, c = (blk.by - y0) * INTERVALS, (blk.bx - x0) * INTERVALS
        grid[r : r + INTERVALS + 3, c : c + INTERVALS + 3] = blk.grid
    origin = (x0 * INTERVALS - 1, y0 * INTERVALS - 1)  # global level-zb index of grid[0, 0]
    level_tiles = tiles[zb]
    parts = []
    for z in range(zb - 1, min_zoom - 1, -1):
        level_tiles = {(x >> 1, y >> 1) for x, y in level_tiles}
        if z == 0:
            level_tiles |= {(0, 0), (1, 0)}  # CesiumJS needs both roots (see the module notes)
        xs, ys = [t[0] for t in level_tiles], [t[1] for t in level_tiles]
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
        tiles[z] = level_tiles
        order = sorted(level_tiles)
        rows0 = np.array([(y - ty0) * INTERVALS + 1 for _, y in order])
        cols0 = np.array([(x - tx0) * INTERVALS + 1 for x, _ in order])
        parts.append(LevelTiles(grid, z, order, rows0, cols0))
    return parts
