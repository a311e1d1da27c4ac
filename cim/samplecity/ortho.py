"""The sample city's orthophoto: an RGB GeoTIFF consistent with the DEM and the footprints.

Land cover is decided per pixel from the same functions that shaped the ground and the blocks:
the river where the DEM's channel holds it (:func:`terrain.in_river`), grassy banks, a patchwork
of fields on the valley floor, ochre loess slopes with scrub on the shaded (north-facing) sides,
asphalt streets around built blocks, paved yards, and roofs coloured by use. A hillshade of the
DEM lights the ground.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.transform import from_origin
from rasterio.windows import Window, from_bounds

from cim.samplecity.buildings import BLOCK_H, BLOCK_W, STREET
from cim.samplecity.terrain import CENTRE_E, CENTRE_N, in_river, lattice_uniform, river_distance, valley_half_width, value_noise
from cim.store import atomic_path

__all__ = ["ROOF_COLOURS", "USE_CODES", "write_orthophoto"]

ROOF_COLOURS = {
    "residential": (150, 92, 78),
    "commercial": (176, 184, 192),
    "mixed": (168, 150, 132),
    "public": (186, 170, 140),
    "education": (160, 120, 96),
    "industrial": (120, 140, 160),
}
USE_CODES = {name: i + 1 for i, name in enumerate(ROOF_COLOURS)}


def _hillshade(z: np.ndarray, res: float) -> np.ndarray:
    """Lambertian shading in [0.35, 1.15] for a sun in the south-east at 45°."""
    gy, gx = np.gradient(z.astype(np.float64), res)
    # rows go south, so -gy is the northward slope
    nx, ny, nz = -gx, gy, np.ones_like(gx)
    norm = np.sqrt(nx * nx + ny * ny + 1.0)
    sun = np.array([0.5, -0.5, 0.7071])
    shade = (nx * sun[0] + ny * sun[1] + nz * sun[2]) / norm
    return np.clip(0.35 + 0.8 * shade, 0.35, 1.15)


def write_orthophoto(
    path: Path,
    bounds: tuple[float, float, float, float],
    res: float,
    footprints: list,
    uses: np.ndarray,
    dem: Path,
    seed: int = 0,
    rows_per_strip: int = 1024,
) -> None:
    """Write an RGB orthophoto (EPSG:4544, JPEG-compressed tiles) over ``bounds`` at ``res`` m.

    Heights for the hillshade come from the written DEM (resampled bilinearly to ``res``), not
    from evaluating the terrain function again: that would double the city's generation time.
    """
    xmin, ymin, xmax, ymax = bounds
    width, height = int(round((xmax - xmin) / res)), int(round((ymax - ymin) / res))
    transform = from_origin(xmin, ymax, res, res)
    codes = np.array([USE_CODES.get(str(u), 1) for u in uses], dtype=np.int32)
    shapes = list(zip(footprints, np.arange(1, len(footprints) + 1)))
    centroids = np.array([g.centroid.coords[0] for g in footprints]) if footprints else np.empty((0, 2))
    built = set(zip(*np.floor((centroids - [CENTRE_E, CENTRE_N]) / [BLOCK_W, BLOCK_H]).astype(np.int64).T)) if len(centroids) else set()
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:4544",
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "jpeg",
        "jpeg_quality": 90,
        "photometric": "ycbcr",
        "interleave": "pixel",
    }
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst, rasterio.open(dem) as dem_ds:
        for r0 in range(0, height, rows_per_strip):
            r1 = min(height, r0 + rows_per_strip)
            ys = ymax - (np.arange(r0, r1) + 0.5) * res
            xs = xmin + (np.arange(width) + 0.5) * res
            gx, gy = np.meshgrid(xs, ys)
            window = from_bounds(xmin, ymax - r1 * res, xmax, ymax - r0 * res, dem_ds.transform)
            z = dem_ds.read(1, window=window, out_shape=(r1 - r0, width), resampling=Resampling.bilinear, boundless=True, fill_value=np.nan)
            shade = _hillshade(z, res)
            strip_transform = from_origin(xmin, ymax - r0 * res, res, res)
            roof_id = (
                rasterize(shapes, out_shape=(r1 - r0, width), transform=strip_transform, fill=0, dtype="int32")
                if shapes
                else np.zeros((r1 - r0, width), np.int32)
            )
            rgb = _ground_colour(gx, gy, z, shade, built, seed)
            _paint_roofs(rgb, roof_id, codes, seed)
            dst.write(np.moveaxis(rgb, -1, 0), window=Window(0, r0, width, r1 - r0))


def _ground_colour(x: np.ndarray, y: np.ndarray, z: np.ndarray, shade: np.ndarray, built: set, seed: int) -> np.ndarray:
    """Ground colours ``(h, w, 3) uint8`` at pixel centres ``x, y (h, w) float64`` (a meshgrid: every
    row holds the same eastings, so the river's curves are evaluated once a column)."""
    h, w = x.shape
    rgb = np.empty((h, w, 3), dtype=np.float32)
    columns = x[:1]
    dr = river_distance(columns, y)
    edge = dr - valley_half_width(columns)
    n1 = value_noise(x, y, 35.0, seed + 11)
    n2 = value_noise(x, y, 240.0, seed + 12)
    # loess slopes: ochre, with scrub where the noise is high and on shaded slopes
    loess = np.stack([196 + 14 * n1, 164 + 12 * n1, 112 + 10 * n1], -1)
    scrub = np.stack([92 + 10 * n1, 108 + 12 * n1, 64 + 8 * n1], -1)
    scrub_amt = np.clip((n2 + 0.2) * 1.5 + (1.0 - shade) * 0.8, 0, 1)[..., None]
    rgb[:] = loess * (1 - scrub_amt) + scrub * scrub_amt
    # valley floor: fields in 90 m × 60 m parcels with crop colours
    floor = edge < 60
    fx = np.floor((x - CENTRE_E) / 90.0).astype(np.int64) + (1 << 30)
    fy = np.floor((y - CENTRE_N) / 60.0).astype(np.int64) + (1 << 30)
    crop = lattice_uniform(fx, fy, seed + 13)
    crops = np.array([[118, 150, 72], [150, 170, 88], [196, 182, 110], [134, 112, 80], [96, 132, 70]], dtype=np.float32)
    field = crops[np.minimum((crop * len(crops)).astype(np.int64), len(crops) - 1)] * (1 + 0.06 * n1[..., None])
    rgb[floor] = field[floor]
    # built blocks: paved yards with some trees, asphalt streets on the block margins
    bx = np.floor((x - CENTRE_E) / BLOCK_W).astype(np.int64)
    by = np.floor((y - CENTRE_N) / BLOCK_H).astype(np.int64)
    in_built = np.zeros(x.shape, dtype=bool)
    if built:
        keys = bx * 1_000_003 + by
        built_keys = np.array([a * 1_000_003 + b for a, b in built], dtype=np.int64)
        in_built = np.isin(keys, built_keys)
    lx = (x - CENTRE_E) - (bx + 0.5) * BLOCK_W
    ly = (y - CENTRE_N) - (by + 0.5) * BLOCK_H
    street = in_built & ((np.abs(lx) > BLOCK_W / 2 - STREET / 2) | (np.abs(ly) > BLOCK_H / 2 - STREET / 2))
    yard = in_built & ~street
    paved = np.stack([172 + 10 * n1, 166 + 10 * n1, 156 + 10 * n1], -1)
    trees = np.stack([70 + 8 * n1, 100 + 10 * n1, 60 + 6 * n1], -1)
    rgb[yard] = np.where((n1[yard] > 0.45)[:, None], trees[yard], paved[yard])
    rgb[street] = np.stack([88 + 4 * n1, 90 + 4 * n1, 96 + 4 * n1], -1)[street]
    # the river (the DEM's and the lidar's: terrain.in_river) and its grassy banks
    bank = dr < 110
    rgb[bank] = np.stack([104 + 8 * n1, 136 + 10 * n1, 82 + 6 * n1], -1)[bank]
    water = in_river(columns, y)
    rgb[water] = np.stack([62 + 6 * n2, 96 + 6 * n2, 104 + 6 * n2], -1)[water]
    lit = rgb * np.where(water, 1.0, shade)[..., None]
    return np.clip(lit, 0, 255).astype(np.uint8)


def _paint_roofs(rgb: np.ndarray, roof_id: np.ndarray, codes: np.ndarray, seed: int) -> None:
    on = roof_id > 0
    if not on.any():
        return
    ids = roof_id[on]
    palette = np.array([(128, 128, 128), *list(ROOF_COLOURS.values())], dtype=np.float32)
    jitter = 0.85 + 0.3 * lattice_uniform(ids.astype(np.int64), np.full(len(ids), 7, np.int64), seed + 21)
    colour = palette[codes[ids - 1]] * jitter[:, None]
    rgb[on] = np.clip(colour, 0, 255).astype(np.uint8)
