"""The imagery layer: an orthophoto (any CRS, any size) → Web Mercator XYZ tiles with an
overview pyramid, no-data transparent.

The finest level is warped from the source by GDAL (rasterio ``WarpedVRT``, one small VRT per
tile, bilinear), reading only the source windows each tile needs. Coarser levels are made from
their four children by alpha-weighted 2×2 averaging, depth first, so memory holds one path of
the pyramid, never a whole level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from cim.crs import check_area_of_use, crs_label, parse_crs
from cim.errors import CimCRSError, CimInputError, CimIOError
from cim.formats.imagery import EXTENSIONS, FORMATS, downsample_2x, encode_tile
from cim.layers.base import LayerBuilder, LayerInfo, LayerOptions, LayerOutput, LayerPlan, LayerRun, option
from cim.sources.raster_size import DEFAULT_MAX_CELLS, check_declared_size, gdal_reason
from cim.store import TileSink, build_key, file_fingerprint
from cim.tiling.webmercator import TILE_SIZE, tile_bounds, tiles_covering, zoom_for_resolution
from cim.warnings import GeoreferenceWarning

__all__ = ["ImageryLayer", "ImageryOptions", "ImageryInfo", "ImageryPlan", "METADATA"]

METADATA = "imagery.json"
#: the finest zoom an option may ask for (about 2 cm a pixel at the equator)
MAX_ZOOM = 24


def _open(path: Path, assume_crs: bool = False) -> rasterio.DatasetReader:
    """Open an orthophoto; ``assume_crs``: a CRS is given for it, so declaring none is no error."""
    if not path.exists():
        raise CimIOError(f"{path}: no such file")
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise CimInputError(f"{path}: not a raster GDAL can read ({exc})") from None
    if ds.crs is None and not assume_crs:
        ds.close()
        raise CimCRSError(f"{path}: the image declares no CRS; give one (--crs EPSG:XXXX, or crs= in the recipe)")
    if ds.transform.b != 0 or ds.transform.d != 0:
        ds.close()
        raise CimInputError(f"{path}: rotated geotransforms are not supported")
    if ds.count not in (1, 3, 4) or ds.dtypes[0] != "uint8":
        ds.close()
        raise CimInputError(f"{path}: imagery must be 8-bit grey, RGB or RGBA (got {ds.count} band(s) of {ds.dtypes[0]})")
    return ds


def _source_crs(ds: rasterio.DatasetReader, path: Path, crs: str | None, override: bool) -> tuple[CRS, str | None]:
    """(the CRS the image is read in, the declared CRS it replaced or None): the file's own,
    else ``crs``; ``crs`` over the file's own with ``override``.

    Raises
    ------
    CimCRSError
    """
    if override and crs is None:
        raise CimInputError(f"{path}: crs_override needs the layer's own crs (the CRS to use instead of the file's)")
    declared = parse_crs(ds.crs.to_wkt(), what=str(path)) if ds.crs is not None else None
    if declared is not None and not override:
        return declared, None
    if crs is None:
        raise CimCRSError(f"{path}: the image declares no CRS; give one (--crs EPSG:XXXX, or crs= in the recipe)")
    return parse_crs(crs, what=f"{path}: crs"), crs_label(declared) if declared is not None else None


def _lonlat_bounds(ds: rasterio.DatasetReader, path: Path, crs: CRS | None = None) -> tuple[float, float, float, float]:
    """The image's extent in longitude/latitude, checked against its CRS's area of use (an
    image tagged EPSG:4326 whose numbers are metres, a longitude of 200, a wrong zone).

    Raises
    ------
    CimCRSError
    """
    crs = crs if crs is not None else parse_crs(ds.crs.to_wkt(), what=str(path))
    if crs.is_geographic:  # the numbers are degrees already: transform_bounds would clamp them
        left, bottom, right, top = ds.bounds
        bounds = (min(left, right), min(bottom, top), max(left, right), max(bottom, top))
    else:
        try:
            bounds = transform_bounds(crs.to_wkt(), "EPSG:4326", *ds.bounds, densify_pts=21)
        except rasterio.errors.RasterioError as exc:
            raise CimCRSError(f"{path}: its extent does not project to longitude/latitude ({exc})") from None
    check_area_of_use(crs, bounds, str(path))
    return bounds


@dataclass
class ImageryOptions(LayerOptions):
    """Options of an imagery layer."""

    format: Literal["webp", "png", "jpeg"] = option(
        "webp", help="Tile format: webp (small, with transparency), png, or jpeg (no transparency)."
    )
    max_zoom: int | None = option(None, help="Finest zoom [default: from the image's resolution].")
    min_zoom: int | None = option(None, help="Coarsest zoom [default: where the image fits in 2x2 tiles].")
    quality: int = option(85, help="WebP/JPEG quality, 1-100.")
    max_cells: int = option(DEFAULT_MAX_CELLS, help="Refuse an image declaring more pixels than this (a damaged or wrong file).")
    crs: str | None = option(None, help="CRS of an image that declares none, e.g. EPSG:4544 [default: the city's].")
    crs_override: bool = option(False, help="Use --crs even for an image that declares one (its header is wrong).")

    def check(self, where: str) -> None:
        if not 1 <= self.quality <= 100:
            raise CimInputError(f"{where}: option 'quality' must be in 1..100, got {self.quality}")
        for name in ("max_zoom", "min_zoom"):
            z = getattr(self, name)
            if z is not None and not 0 <= z <= MAX_ZOOM:
                raise CimInputError(f"{where}: option {name!r} must be in 0..{MAX_ZOOM}, got {z}")


@dataclass
class ImageryInfo(LayerInfo):
    """What an imagery layer adds to its ``city.json`` entry."""

    minzoom: int
    maxzoom: int
    image_format: str
    pixels: int
    tiling: str = "WebMercator"
    scheme: str = "xyz"


@dataclass
class ImageryPlan(LayerPlan):
    source: Path = Path()
    crs_wkt: str = ""  # the CRS the image is read in (its own, or the one given for it)
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # west, south, east, north
    zmin: int = 0
    zmax: int = 0
    split: int = 0  # the level of the subtrees' roots (the jobs)
    transparent: bool = False
    options: ImageryOptions = field(default_factory=ImageryOptions)


@dataclass(frozen=True)
class _Subtrees:
    """What every subtree job shares."""

    source: str
    crs_wkt: str
    bounds: tuple[float, float, float, float]
    zmax: int
    fmt: str
    quality: int
    sink: TileSink


class ImageryLayer(LayerBuilder[ImageryOptions, ImageryPlan]):
    """An orthophoto (8-bit grey/RGB/RGBA, any CRS) → Web Mercator XYZ tiles + ``imagery.json``."""

    kind = "imagery"
    Options = ImageryOptions
    index = METADATA
    format = "imagery"
    order = 20
    cim_level = 1
    summary = "Tile an orthophoto (any CRS, 8-bit) into Web Mercator XYZ tiles with an overview pyramid."

    def plan(self, sources: list[Path], options: ImageryOptions, run: LayerRun) -> ImageryPlan:
        source = sources[0]
        given = run.crs(options.crs)
        with _open(source, assume_crs=given is not None) as ds:
            check_declared_size(source, ds.width, ds.height, ds.count, ds.dtypes[0], max_cells=options.max_cells)
            crs, replaced = _source_crs(ds, source, given, options.crs_override)
            own = ds.crs is not None and replaced is None
            if replaced is not None:
                run.warn(GeoreferenceWarning, f"{source}: declares {replaced}; read as {crs_label(crs)} (crs_override)")
            west, south, east, north = _lonlat_bounds(ds, source, crs)
            lat = (south + north) / 2.0
            # the source's ground resolution in metres (projected CRS in metres, or degrees)
            unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
            res = abs(ds.transform.a) * (111_320.0 * math.cos(math.radians(lat)) if crs.is_geographic else unit)
            transparent = (
                ds.nodata is not None or ds.count == 4 or any(m != rasterio.enums.MaskFlags.all_valid for m in ds.mask_flag_enums[0])
            )
        zmax = options.max_zoom if options.max_zoom is not None else zoom_for_resolution(res, lat)
        zmin = options.min_zoom if options.min_zoom is not None else _coarsest(west, south, east, north, zmax)
        zmin = min(zmin, zmax)
        key = build_key(
            "imagery-1", file_fingerprint(source), options.format, zmin, zmax, options.quality, *([] if own else [crs.to_wkt()])
        )
        # the pyramid is cut into subtrees rooted a few levels below zmin: the jobs
        split = min(zmax, zmin + 2)
        x0, y0, x1, y1 = tiles_covering(west, south, east, north, split)
        roots = [(split, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
        return ImageryPlan(
            key,
            roots,
            source=source,
            crs_wkt=crs.to_wkt(),
            bounds=(west, south, east, north),
            zmin=zmin,
            zmax=zmax,
            split=split,
            transparent=transparent,
            options=options,
        )

    def build(self, plan: ImageryPlan, run: LayerRun) -> LayerOutput:
        assert run.store is not None
        opts = plan.options
        ext = EXTENSIONS[opts.format]
        state = _Subtrees(str(plan.source), plan.crs_wkt, plan.bounds, plan.zmax, opts.format, opts.quality, run.store.sink())
        arrays: dict[tuple[int, int, int], np.ndarray | None] = {}
        tiles = pixels = 0
        for root, (rgba, n, px) in zip(plan.jobs, run.map(_render_subtree, state, plan.jobs, stage="tiles")):
            arrays[root] = rgba
            tiles += n
            pixels += px
        # the levels above the subtrees, from their top tiles
        west, south, east, north = plan.bounds
        for z in range(plan.split - 1, plan.zmin - 1, -1):
            bx0, by0, bx1, by1 = tiles_covering(west, south, east, north, z)
            upper: dict[tuple[int, int, int], np.ndarray | None] = {}
            for x in range(bx0, bx1 + 1):
                for y in range(by0, by1 + 1):
                    kids = [[arrays.get((z + 1, 2 * x + dx, 2 * y + dy)) for dx in (0, 1)] for dy in (0, 1)]
                    if all(k is None for row in kids for k in row):
                        continue
                    rgba = _parent_tile(kids)
                    rel = f"tiles/{z}/{x}/{y}.{ext}"
                    if not run.store.is_done(rel):
                        run.store.write(rel, encode_tile(rgba, opts.format, opts.quality))
                    tiles += 1
                    upper[(z, x, y)] = rgba
            arrays = upper
        meta = {
            "tilejson": "3.0.0",
            "name": run.id,
            "scheme": "xyz",
            "tiling": "WebMercator",
            "crs": "EPSG:3857",
            "format": opts.format,
            "content_type": FORMATS[opts.format],
            "tile_size": TILE_SIZE,
            "minzoom": plan.zmin,
            "maxzoom": plan.zmax,
            "bounds": [west, south, east, north],
            "tiles": [f"tiles/{{z}}/{{x}}/{{y}}.{ext}"],
            "transparent": plan.transparent,
            "source": plan.source.name,
        }
        return LayerOutput(
            index=meta,
            count=tiles,
            tiles=tiles,
            bounds={"west": west, "south": south, "east": east, "north": north, "min_height": 0.0, "max_height": 0.0},
            url=f"tiles/{{z}}/{{x}}/{{y}}.{ext}",
            info=ImageryInfo(minzoom=plan.zmin, maxzoom=plan.zmax, image_format=opts.format, pixels=pixels),
        )


def _parent_tile(kids: list[list[np.ndarray | None]]) -> np.ndarray:
    """A tile from its four children (``kids[dy][dx]``, None where a child is outside the image)."""
    big = np.zeros((2 * TILE_SIZE, 2 * TILE_SIZE, 4), dtype=np.uint8)
    for dy in (0, 1):
        for dx in (0, 1):
            kid = kids[dy][dx]
            if kid is not None:
                big[dy * TILE_SIZE : (dy + 1) * TILE_SIZE, dx * TILE_SIZE : (dx + 1) * TILE_SIZE] = kid
    return downsample_2x(big)


def _render_subtree(state: _Subtrees, root: tuple[int, int, int]) -> tuple[np.ndarray | None, int, int]:
    """The tile job: render the subtree under ``root`` depth first (memory holds one path of the
    pyramid), write its tiles; returns the root's RGBA (None outside the image), the number of
    tiles and of finest-level pixels."""
    west, south, east, north = state.bounds
    ext = EXTENSIONS[state.fmt]
    counts = [0, 0]

    def render(z: int, x: int, y: int, src: rasterio.DatasetReader) -> np.ndarray | None:
        bx0, by0, bx1, by1 = tiles_covering(west, south, east, north, z)
        if not (bx0 <= x <= bx1 and by0 <= y <= by1):
            return None
        if z == state.zmax:
            rgba = _warp_tile(src, x, y, z, state.crs_wkt)
            counts[1] += TILE_SIZE * TILE_SIZE
        else:
            kids = [[render(z + 1, 2 * x + dx, 2 * y + dy, src) for dx in (0, 1)] for dy in (0, 1)]
            if all(k is None for row in kids for k in row):
                return None
            rgba = _parent_tile(kids)
        # fully transparent tiles inside the extent are written too: a client asks for every
        # tile in the layer's rectangle, and a 404 there is an error in its console
        rel = f"tiles/{z}/{x}/{y}.{ext}"
        if not state.sink.is_done(rel):
            state.sink.write(rel, encode_tile(rgba, state.fmt, state.quality))
        counts[0] += 1
        return rgba

    with rasterio.open(state.source) as src:  # a GDAL dataset is never shared between threads
        rgba = render(*root, src)
    return rgba, counts[0], counts[1]


def _warp_tile(src: rasterio.DatasetReader, x: int, y: int, z: int, src_crs: str = "") -> np.ndarray:
    """One 256 × 256 RGBA tile warped from the source (alpha 0 where the source has no data),
    read in ``src_crs`` (WKT; default: the file's own)."""
    xmin, ymin, xmax, ymax = tile_bounds(x, y, z)
    transform = from_bounds(xmin, ymin, xmax, ymax, TILE_SIZE, TILE_SIZE)
    add_alpha = src.count != 4 and src.nodata is None
    with WarpedVRT(
        src,
        src_crs=src_crs or src.crs,
        crs="EPSG:3857",
        transform=transform,
        width=TILE_SIZE,
        height=TILE_SIZE,
        resampling=Resampling.bilinear,
        add_alpha=add_alpha,
    ) as vrt:
        try:
            bands = vrt.read()
            mask = vrt.dataset_mask()
        except rasterio.errors.RasterioError as exc:
            raise CimInputError(
                f"{src.name}: cannot read the pixels of tile {z}/{x}/{y}: the file is truncated or corrupt ({gdal_reason(exc)})"
            ) from None
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
