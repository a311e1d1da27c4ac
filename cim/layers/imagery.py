"""The imagery layer: an orthophoto (any CRS, any size) → Web Mercator XYZ tiles with an
overview pyramid, no-data transparent.

The finest level is warped from the source by GDAL (rasterio ``WarpedVRT``, one small VRT per
tile, bilinear), reading only the source windows each tile needs. Coarser levels are made from
their four children by alpha-weighted 2×2 averaging, depth first, so memory holds one path of
the pyramid, never a whole level.
"""

from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from cim.errors import CimCRSError, CimInputError, CimIOError
from cim.formats.imagery import EXTENSIONS, FORMATS, downsample_2x, encode_tile
from cim.layers.base import LayerResult, Progress
from cim.store import TileStore, build_key, file_fingerprint
from cim.tiling.webmercator import TILE_SIZE, tile_bounds, tiles_covering, zoom_for_resolution

log = logging.getLogger("cim.imagery")
METADATA = "imagery.json"


def _open(path: Path) -> rasterio.DatasetReader:
    if not path.exists():
        raise CimIOError(f"{path}: no such file")
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise CimInputError(f"{path}: not a raster GDAL can read ({exc})") from None
    if ds.crs is None:
        ds.close()
        raise CimCRSError(f"{path}: the image declares no CRS")
    if ds.transform.b != 0 or ds.transform.d != 0:
        ds.close()
        raise CimInputError(f"{path}: rotated geotransforms are not supported")
    if ds.count not in (1, 3, 4) or ds.dtypes[0] != "uint8":
        ds.close()
        raise CimInputError(f"{path}: imagery must be 8-bit grey, RGB or RGBA (got {ds.count} band(s) of {ds.dtypes[0]})")
    return ds


def _lonlat_bounds(ds: rasterio.DatasetReader) -> tuple[float, float, float, float]:
    return transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)


def build_imagery_layer(
    source: str | Path,
    out_dir: str | Path,
    *,
    fmt: str = "webp",
    max_zoom: int | None = None,
    min_zoom: int | None = None,
    quality: int = 85,
    workers: int | None = None,
    layer_id: str = "imagery",
    progress: Progress | None = None,
) -> LayerResult:
    """Tile an orthophoto into ``out_dir/tiles/{z}/{x}/{y}.<ext>`` plus ``out_dir/imagery.json``.

    Parameters
    ----------
    source : an 8-bit grey, RGB or RGBA raster with a CRS (no-data or an alpha band → transparent)
    out_dir : the layer folder
    fmt : ``"webp"`` (default: small, with alpha), ``"png"`` or ``"jpeg"`` (no transparency)
    max_zoom : finest zoom; default from the source's resolution
    min_zoom : coarsest zoom; default: where the extent fits in at most 2 × 2 tiles
    """
    t0 = time.perf_counter()
    source = Path(source)
    out_dir = Path(out_dir)
    if fmt not in FORMATS:
        raise CimInputError(f"imagery format {fmt!r} is not one of {', '.join(FORMATS)}")
    with _open(source) as ds:
        west, south, east, north = _lonlat_bounds(ds)
        lat = (south + north) / 2.0
        # the source's ground resolution in metres (projected CRS in metres, or degrees)
        res = abs(ds.transform.a) * (111_320.0 * math.cos(math.radians(lat)) if ds.crs.is_geographic else ds.crs.linear_units_factor[1])
        has_nodata = ds.nodata is not None or ds.count == 4 or any(m != rasterio.enums.MaskFlags.all_valid for m in ds.mask_flag_enums[0])
    zmax = max_zoom if max_zoom is not None else zoom_for_resolution(res, lat)
    zmin = min_zoom if min_zoom is not None else _coarsest(west, south, east, north, zmax)
    zmin = min(zmin, zmax)
    ext = EXTENSIONS[fmt]
    key = build_key("imagery-1", file_fingerprint(source), fmt, zmin, zmax, quality)
    store = TileStore(out_dir, key)
    counts = {"tiles": 0, "pixels": 0}

    # split the pyramid into subtrees rooted a few levels below zmin, for the thread pool
    split = min(zmax, zmin + 2)
    x0, y0, x1, y1 = tiles_covering(west, south, east, north, split)
    roots = [(split, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    total_leaves = _count_tiles(west, south, east, north, zmax)
    done = [0]

    def render(z: int, x: int, y: int, src: rasterio.DatasetReader) -> np.ndarray | None:
        bx0, by0, bx1, by1 = tiles_covering(west, south, east, north, z)
        if not (bx0 <= x <= bx1 and by0 <= y <= by1):
            return None
        if z == zmax:
            rgba = _warp_tile(src, x, y, z)
            done[0] += 1
            if progress and done[0] % 16 == 0:
                progress("imagery", done[0], total_leaves)
        else:
            kids = [[render(z + 1, 2 * x + dx, 2 * y + dy, src) for dx in (0, 1)] for dy in (0, 1)]
            if all(k is None for row in kids for k in row):
                return None
            big = np.zeros((2 * TILE_SIZE, 2 * TILE_SIZE, 4), dtype=np.uint8)
            for dy in (0, 1):
                for dx in (0, 1):
                    if kids[dy][dx] is not None:
                        big[dy * TILE_SIZE : (dy + 1) * TILE_SIZE, dx * TILE_SIZE : (dx + 1) * TILE_SIZE] = kids[dy][dx]
            rgba = downsample_2x(big)
        # fully transparent tiles inside the extent are written too: a client asks for every
        # tile in the layer's rectangle, and a 404 there is an error in its console
        rel = f"tiles/{z}/{x}/{y}.{ext}"
        if not store.is_done(rel):
            store.write(rel, encode_tile(rgba, fmt, quality))
        counts["tiles"] += 1
        counts["pixels"] += int(TILE_SIZE * TILE_SIZE) if z == zmax else 0
        return rgba

    def run_root(root: tuple[int, int, int]) -> tuple[tuple[int, int, int], np.ndarray | None]:
        with rasterio.open(source) as src:  # GDAL datasets are not shared across threads
            return root, render(*root, src)

    n_workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        arrays = dict(pool.map(run_root, roots))

    # the levels above the split, from the subtrees' top tiles
    for z in range(split - 1, zmin - 1, -1):
        bx0, by0, bx1, by1 = tiles_covering(west, south, east, north, z)
        upper: dict[tuple[int, int, int], np.ndarray | None] = {}
        for x in range(bx0, bx1 + 1):
            for y in range(by0, by1 + 1):
                big = np.zeros((2 * TILE_SIZE, 2 * TILE_SIZE, 4), dtype=np.uint8)
                any_kid = False
                for dy in (0, 1):
                    for dx in (0, 1):
                        kid = arrays.get((z + 1, 2 * x + dx, 2 * y + dy))
                        if kid is not None:
                            big[dy * TILE_SIZE : (dy + 1) * TILE_SIZE, dx * TILE_SIZE : (dx + 1) * TILE_SIZE] = kid
                            any_kid = True
                if not any_kid:
                    continue
                rgba = downsample_2x(big)
                rel = f"tiles/{z}/{x}/{y}.{ext}"
                if not store.is_done(rel):
                    store.write(rel, encode_tile(rgba, fmt, quality))
                counts["tiles"] += 1
                upper[(z, x, y)] = rgba
        arrays = upper
    if progress:
        progress("imagery", total_leaves, total_leaves)

    meta = {
        "tilejson": "3.0.0",
        "name": layer_id,
        "scheme": "xyz",
        "tiling": "WebMercator",
        "crs": "EPSG:3857",
        "format": fmt,
        "content_type": FORMATS[fmt],
        "tile_size": TILE_SIZE,
        "minzoom": zmin,
        "maxzoom": zmax,
        "bounds": [west, south, east, north],
        "tiles": [f"tiles/{{z}}/{{x}}/{{y}}.{ext}"],
        "transparent": has_nodata,
        "source": source.name,
    }
    store.finish(METADATA, meta)
    result = LayerResult(
        id=layer_id,
        kind="imagery",
        path=out_dir,
        count=counts["tiles"],
        tiles=counts["tiles"],
        triangles=0,
        bytes=store.size_on_disk(),
        bounds={"west": west, "south": south, "east": east, "north": north, "min_height": 0.0, "max_height": 0.0},
        schema={},
        seconds=time.perf_counter() - t0,
        resumed_tiles=store.resumed,
        format="imagery",
        url=f"tiles/{{z}}/{{x}}/{{y}}.{ext}",
        extra={"tiling": "WebMercator", "scheme": "xyz", "minzoom": zmin, "maxzoom": zmax, "image_format": fmt, "pixels": counts["pixels"]},
    )
    log.info("imagery %s: %d tiles, zoom %d–%d, %.1f MB, %.2f s", layer_id, result.tiles, zmin, zmax, result.bytes / 1e6, result.seconds)
    return result


def _warp_tile(src: rasterio.DatasetReader, x: int, y: int, z: int) -> np.ndarray:
    """One 256 × 256 RGBA tile warped from the source (alpha 0 where the source has no data)."""
    xmin, ymin, xmax, ymax = tile_bounds(x, y, z)
    transform = from_bounds(xmin, ymin, xmax, ymax, TILE_SIZE, TILE_SIZE)
    add_alpha = src.count != 4 and src.nodata is None
    with WarpedVRT(
        src, crs="EPSG:3857", transform=transform, width=TILE_SIZE, height=TILE_SIZE,
        resampling=Resampling.bilinear, add_alpha=add_alpha,
    ) as vrt:
        bands = vrt.read()
        mask = vrt.dataset_mask()
    rgba = np.empty((TILE_SIZE, TILE_SIZE, 4), dtype=np.uint8)
    if src.count == 1:
        rgba[..., :3] = bands[0][..., None]
    else:
        rgba[..., :3] = np.moveaxis(bands[:3], 0, -1)
    rgba[..., 3] = mask
    return rgba


def _count_tiles(west: float, south: float, east: float, north: float, z: int) -> int:
    x0, y0, x1, y1 = tiles_covering(west, south, east, north, z)
    return (x1 - x0 + 1) * (y1 - y0 + 1)


def _coarsest(west: float, south: float, east: float, north: float, zmax: int) -> int:
    """The finest zoom at which the whole extent fits in at most 2 × 2 tiles (CesiumJS asks for
    few tiles at an imagery provider's minimum level)."""
    z = zmax
    while z > 0 and _count_tiles(west, south, east, north, z) > 4:
        z -= 1
    return z
