"""The sample city's airborne lidar: classified, coloured LAZ survey tiles that agree with the
DEM, the building footprints and the river.

Each survey tile is drawn from its own seeded generator, so a window of the city gives the same
points as the whole city where they overlap. Per point: ground (class 2) on the DEM; roofs
(class 6) at the building's base (the lowest ground under its corners, as the buildings layer
stands it) plus its ``height``; water (class 9, sparse: water absorbs the laser) on a flat
surface 2.5 m above the channel bed where the valley is lowest; trees (high vegetation, 5: first
returns on the crown, last returns reaching the ground under it) and shrubs and grass (4, 3) in
green patches. Colours and intensities are plausible for each class; return numbers follow
the pulses (canopy first return, ground second). LAS 1.4, point format 7, EPSG:4544 as WKT.
"""

from __future__ import annotations

import logging
from pathlib import Path

import laspy
import numpy as np
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS

from cim.samplecity.terrain import _hash01, valley_centre, value_noise
from cim.sources.dem import read_dem_window
from cim.sources.footprints import read_footprints
from cim.store import atomic_path

log = logging.getLogger("cim.sample")

SAMPLE_CRS = "EPSG:4544"
TREE_CELL = 10.0  # one possible tree per 10 m cell; crowns stay inside their cell
#: typical return strength per class (16-bit): bright roofs, dark water
_INTENSITY = np.full(256, 24000.0)
_INTENSITY[[2, 3, 4, 5, 6, 9]] = [30000.0, 21000.0, 19000.0, 16000.0, 41000.0, 5000.0]
ROOF_PALETTE = np.array(
    [[150, 150, 152], [96, 96, 102], [158, 78, 60], [84, 104, 140], [192, 182, 160], [120, 128, 118], [176, 110, 84]],
    dtype=np.float64,
)


class _Buildings:
    """Footprints with their roof heights, for rasterizing tile by tile."""

    def __init__(self, footprints_path: Path, dem_path: Path, bounds: tuple[float, float, float, float]) -> None:
        table = read_footprints(footprints_path)
        self.crs = table.crs
        geoms = table.geometries
        height = np.asarray(table.columns.get("height", np.full(len(geoms), 10.0)), dtype=np.float64)
        height = np.where(np.isfinite(height) & (height > 0), height, 10.0)
        coords, index = shapely.get_coordinates(geoms, return_index=True)
        xmin, ymin, xmax, ymax = bounds
        dem = read_dem_window(dem_path, (min(xmin, coords[:, 0].min()), min(ymin, coords[:, 1].min()),
                                         max(xmax, coords[:, 0].max()), max(ymax, coords[:, 1].max())), self.crs)
        z = dem.sample(coords[:, 0], coords[:, 1], self.crs)
        base = np.full(len(geoms), np.inf)
        np.fmin.at(base, index, z)
        base[~np.isfinite(base)] = np.nanmedian(z)
        self.geoms = geoms
        self.roof = base + height
        self.tree = shapely.STRtree(geoms)

    def ids(self, x0: float, y0: float, size: float, res: float) -> tuple[np.ndarray, float, float]:
        """Raster of building index + 1 (0: none) over a tile, at ``res`` metres."""
        hits = self.tree.query(shapely.box(x0, y0, x0 + size, y0 + size))
        n = int(round(size / res))
        if len(hits) == 0:
            return np.zeros((n, n), dtype=np.int32), x0, y0 + size
        shapes = ((self.geoms[i], int(i) + 1) for i in hits)
        grid = rasterio.features.rasterize(
            shapes, out_shape=(n, n), transform=Affine(res, 0, x0, 0, -res, y0 + size), fill=0, dtype="int32"
        )
        return grid, x0, y0 + size


def write_sample_pointcloud(
    out_dir: Path,
    bounds: tuple[float, float, float, float],
    dem_path: Path,
    footprints_path: Path,
    density: float,
    tile_size: float,
    seed: int,
    *,
    compress: bool = True,
    merge: str | None = None,
) -> list[Path]:
    """Write the sample city's lidar as survey tiles of ``tile_size`` metres.

    Parameters
    ----------
    out_dir : folder for the tiles (created)
    bounds : (xmin, ymin, xmax, ymax) in EPSG:4544
    dem_path : the city's DEM (ground heights)
    footprints_path : the city's footprints with a ``height`` attribute (metres)
    density : points per square metre
    tile_size : survey tile side (m); tiles are aligned on multiples of it
    seed : the city's seed
    compress : LAZ (True) or LAS
    merge : write every tile into this one file name instead (e.g. ``"city.las"``), tile after
        tile, as a merged survey

    Returns
    -------
    The files written, in tile order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xmin, ymin, xmax, ymax = bounds
    buildings = _Buildings(Path(footprints_path), Path(dem_path), bounds)
    tiles = []
    for ty in range(int(np.floor(ymin / tile_size)), int(np.ceil(ymax / tile_size))):
        for tx in range(int(np.floor(xmin / tile_size)), int(np.ceil(xmax / tile_size))):
            tiles.append((tx, ty))
    suffix = ".laz" if compress else ".las"
    written: list[Path] = []
    if merge is not None:
        header = _header(xmin, ymin)
        path = out_dir / merge
        with atomic_path(path) as tmp:
            with laspy.open(tmp, mode="w", header=header, do_compress=compress) as w:
                for tx, ty in tiles:
                    pts = _tile_points(tx, ty, tile_size, bounds, density, seed, Path(dem_path), buildings, header)
                    if pts is not None:
                        w.write_points(pts)
        return [path]
    for tx, ty in tiles:
        header = _header(tx * tile_size, ty * tile_size)
        pts = _tile_points(tx, ty, tile_size, bounds, density, seed, Path(dem_path), buildings, header)
        if pts is None:
            continue
        path = out_dir / f"tianshui_{int(tx * tile_size)}_{int(ty * tile_size)}{suffix}"
        with atomic_path(path) as tmp:
            with laspy.open(tmp, mode="w", header=header, do_compress=compress) as w:
                w.write_points(pts)
        written.append(path)
    log.info("sample point cloud: %d tile(s) in %s", len(written), out_dir)
    return written


def _header(x0: float, y0: float) -> laspy.LasHeader:
    h = laspy.LasHeader(point_format=7, version="1.4")
    h.scales = np.array([0.001, 0.001, 0.001])
    h.offsets = np.array([np.floor(x0 / 1000.0) * 1000.0, np.floor(y0 / 1000.0) * 1000.0, 0.0])
    h.add_crs(CRS.from_user_input(SAMPLE_CRS))
    h.system_identifier = "cim sample city"
    h.generating_software = "cim"
    return h


def _tile_points(
    tx: int, ty: int, size: float, bounds: tuple[float, float, float, float], density: float, seed: int,
    dem_path: Path, buildings: _Buildings, header: laspy.LasHeader,
) -> laspy.ScaleAwarePointRecord | None:
    x0, y0 = tx * size, ty * size
    # the part of the tile inside the bounds
    bx0, by0 = max(x0, bounds[0]), max(y0, bounds[1])
    bx1, by1 = min(x0 + size, bounds[2]), min(y0 + size, bounds[3])
    if bx1 <= bx0 or by1 <= by0:
        return None
    rng = np.random.default_rng([seed, 7, tx + 1_000_000, ty + 1_000_000])
    n_all = rng.poisson(density * size * size)
    x = x0 + rng.random(n_all) * size
    y = y0 + rng.random(n_all) * size
    inside = (x >= bx0) & (x < bx1) & (y >= by0) & (y < by1)
    x, y = x[inside], y[inside]
    u = rng.random((len(x), 4))
    n = len(x)
    if n == 0:
        return None
    dem = read_dem_window(dem_path, (bx0, by0, bx1, by1), buildings.crs)
    ground = dem.sample(x, y, buildings.crs)
    ground = np.where(np.isfinite(ground), ground, np.nanmedian(ground) if np.isfinite(ground).any() else 1100.0)
    z = ground + rng.normal(0.0, 0.02, n)
    cls = np.full(n, 2, dtype=np.uint8)
    ret = np.ones(n, dtype=np.uint8)
    nret = np.ones(n, dtype=np.uint8)

    # buildings: roofs at base + height
    res = 0.5
    ids, gx0, gy1 = buildings.ids(x0, y0, size, res)
    col = np.clip(((x - gx0) / res).astype(np.int64), 0, ids.shape[1] - 1)
    row = np.clip(((gy1 - y) / res).astype(np.int64), 0, ids.shape[0] - 1)
    bid = ids[row, col] - 1
    roof = bid >= 0
    z[roof] = buildings.roof[bid[roof]] + rng.normal(0.0, 0.03, int(roof.sum()))
    cls[roof] = 6

    # the river: a flat water surface where the valley is lowest; water returns are sparse
    centre = valley_centre(x)
    dr = np.abs(y - centre)
    water = (dr < 32.0) & ~roof
    if water.any():
        bed = dem.sample(x[water], centre[water], buildings.crs)
        bed = np.where(np.isfinite(bed), bed, ground[water])
        z[water] = bed + 2.5 + rng.normal(0.0, 0.015, int(water.sum()))
        cls[water] = 9
    keep = ~water | (u[:, 0] < 0.3)

    # vegetation: green patches (parks, slopes, river banks) with trees in 10 m cells
    free = ~roof & ~water
    green = value_noise(x, y, 180.0, seed + 31) + 0.35 * value_noise(x, y, 45.0, seed + 32) + np.clip(1.0 - dr / 250.0, 0.0, 1.0) * 0.6
    cx = np.floor(x / TREE_CELL).astype(np.int64) + (1 << 40)
    cy = np.floor(y / TREE_CELL).astype(np.int64) + (1 << 40)
    has_tree = _hash01(cx, cy, seed + 41) < np.clip(0.15 + 0.7 * green, 0.0, 0.92)
    tx_c = (np.floor(x / TREE_CELL) + 0.5 + 0.2 * (_hash01(cx, cy, seed + 42) - 0.5)) * TREE_CELL
    ty_c = (np.floor(y / TREE_CELL) + 0.5 + 0.2 * (_hash01(cx, cy, seed + 43) - 0.5)) * TREE_CELL
    radius = 2.2 + 2.3 * _hash01(cx, cy, seed + 44)
    t_height = 5.0 + 11.0 * _hash01(cx, cy, seed + 45)
    r = np.hypot(x - tx_c, y - ty_c)
    in_crown = free & has_tree & (r < radius)
    canopy = in_crown & (u[:, 1] < 0.7)
    crown_z = ground + t_height - 0.45 * t_height * (r / radius) ** 2
    z[canopy] = crown_z[canopy] + rng.normal(0.0, 0.25, int(canopy.sum()))
    cls[canopy] = np.where(t_height[canopy] > 7.0, 5, 4)
    nret[in_crown] = np.where(u[in_crown, 2] < 0.5, 2, 3)
    ret[canopy] = 1
    under = in_crown & ~canopy
    ret[under] = nret[under]
    # grass and shrubs in green areas outside crowns
    low = free & ~in_crown & (green > 0.15)
    shrub = low & (u[:, 3] < 0.25)
    z[low & ~shrub] += 0.05 + 0.3 * u[low & ~shrub, 3]
    cls[low & ~shrub] = 3
    z[shrub] += 0.5 + 1.5 * u[shrub, 2]
    cls[shrub] = 4

    # colours and intensities per class
    shade = 0.5 * value_noise(x, y, 70.0, seed + 51) + 0.5 * value_noise(x, y, 9.0, seed + 52)
    rgb = np.empty((n, 3))
    rgb[:] = np.array([176.0, 156.0, 118.0]) + 22.0 * shade[:, None]  # loess ground, roads and yards
    rgb[cls == 3] = np.array([126.0, 150.0, 74.0]) + 18.0 * shade[cls == 3, None]
    rgb[cls == 4] = np.array([92.0, 128.0, 62.0]) + 15.0 * shade[cls == 4, None]
    hv = cls == 5
    rgb[hv] = np.array([52.0, 96.0, 46.0]) + np.array([10.0, 22.0, 8.0]) * (_hash01(cx[hv], cy[hv], seed + 46)[:, None] - 0.5) * 2
    rgb[roof] = ROOF_PALETTE[(bid[roof].astype(np.int64) * 2654435761) % len(ROOF_PALETTE)]
    rgb[water] = np.array([44.0, 72.0, 88.0]) + 8.0 * shade[water, None]
    rgb += rng.normal(0.0, 6.0, (n, 3))
    rgb = np.clip(rgb, 0, 255)
    base_int = _INTENSITY[cls]
    intensity = np.clip(base_int * (1.0 + 0.25 * shade) * np.where(ret > 1, 0.6, 1.0) + rng.normal(0, 1500, n), 0, 65535)

    # scan order: lines 2 m apart across the tile, alternate directions, as a scanner sweeps
    line = np.floor((y - y0) / 2.0).astype(np.int64)
    along = np.where(line % 2 == 0, x, -x)
    order = np.lexsort((along, line))
    order = order[keep[order]]
    m = len(order)
    pts = laspy.ScaleAwarePointRecord.zeros(m, header=header)
    pts.x = x[order]
    pts.y = y[order]
    pts.z = z[order]
    pts.classification = cls[order]
    pts.return_number = ret[order]
    pts.number_of_returns = nret[order]
    pts.intensity = intensity[order].astype(np.uint16)
    for i, c in enumerate(("red", "green", "blue")):
        pts[c] = (rgb[order, i] * 257.0).astype(np.uint16)
    pts.gps_time = (ty * 100_000 + tx) * 1_000.0 + np.arange(m) * 1e-5
    return pts
