"""Imagery tiles: placement, transparency, pyramid completeness, bad input."""

import json

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

import cim
from cim.errors import CimCRSError, CimInputError
from cim.formats.imagery import decode_tile
from cim.layers.imagery import ImageryInfo
from cim.tiling.webmercator import ORIGIN, TILE_SIZE, tiles_covering


def _pixel_of(lon, lat, z):
    """(tile x, tile y, column, row) of a point in the XYZ grid."""
    mx, my = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    size = 2 * ORIGIN / (1 << z)
    fx, fy = (mx + ORIGIN) / size, (ORIGIN - my) / size
    x, y = int(fx), int(fy)
    return x, y, int((fx - x) * TILE_SIZE), int((fy - y) * TILE_SIZE)


@pytest.mark.realdata
def test_real_rgb_lands_in_the_right_place_with_nodata_transparent(realdata, tmp_path):
    src_path = realdata / "raster" / "rasterio_RGB.byte.tif"
    layer = cim.build_layer("imagery", src_path, tmp_path / "img", format="png", max_zoom=10)
    assert isinstance(layer.info, ImageryInfo) and layer.info.maxzoom == 10 and layer.info.image_format == "png"
    z = 10
    cache = {}

    def tile(x, y):
        if (x, y) not in cache:
            cache[(x, y)] = decode_tile((tmp_path / "img" / "tiles" / str(z) / str(x) / f"{y}.png").read_bytes())
        return cache[(x, y)]

    with rasterio.open(src_path) as src:
        data = src.read()
        to_ll = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
        rng = np.random.default_rng(1)
        rows = rng.integers(50, src.height - 50, 400)
        cols = rng.integers(50, src.width - 50, 400)
        checked_data = checked_nodata = 0
        for r, c in zip(rows, cols):
            window = data[:, r - 3 : r + 4, c - 3 : c + 4]
            flat_data = (window > 0).all()
            flat_void = (window == 0).all()
            if not (flat_data or flat_void):
                continue
            x, y = src.xy(r, c)
            lon, lat = to_ll.transform(x, y)
            tx, ty, px, py = _pixel_of(lon, lat, z)
            got = tile(tx, ty)[py, px]
            if flat_void:
                assert got[3] == 0, (r, c, got)
                checked_nodata += 1
            else:
                assert got[3] == 255
                # the source is 300 m pixels, tiles ~140 m: compare with the 7x7 neighbourhood's range
                lo, hi = window.reshape(3, -1).min(1), window.reshape(3, -1).max(1)
                assert (got[:3] >= lo.astype(int) - 3).all() and (got[:3] <= hi.astype(int) + 3).all(), (r, c, got, lo, hi)
                checked_data += 1
    assert checked_data > 50 and checked_nodata > 20


def test_every_tile_in_the_extent_exists_at_every_level(tiny_sources, tmp_path):
    layer = cim.build_layer("imagery", tiny_sources.ortho, tmp_path / "img")
    meta = json.loads((tmp_path / "img" / "imagery.json").read_text())
    assert meta["format"] == "webp" and meta["scheme"] == "xyz" and meta["maxzoom"] == 18
    west, south, east, north = meta["bounds"]
    assert 105.70 < west < east < 105.71 and 34.57 < south < north < 34.59
    total = 0
    for z in range(meta["minzoom"], meta["maxzoom"] + 1):
        x0, y0, x1, y1 = tiles_covering(west, south, east, north, z)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                assert (tmp_path / "img" / "tiles" / str(z) / str(x) / f"{y}.webp").exists(), (z, x, y)
                total += 1
    assert layer.tiles == total
    assert (layer.info.minzoom, layer.info.maxzoom, layer.info.image_format) == (meta["minzoom"], meta["maxzoom"], "webp")
    # the coarsest tile is mostly opaque ground, not blank
    x0, y0, _, _ = tiles_covering(west, south, east, north, meta["minzoom"])
    rgba = decode_tile((tmp_path / "img" / "tiles" / str(meta["minzoom"]) / str(x0) / f"{y0}.webp").read_bytes())
    assert rgba[..., 3].any() and len(np.unique(rgba[..., :3].reshape(-1, 3), axis=0)) > 50


def test_bad_imagery_is_a_clear_error(tmp_path):
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8") as ds:
        ds.write(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(CimCRSError, match="nocrs.tif"):
        cim.build_layer("imagery", nocrs, tmp_path / "a")
    floats = tmp_path / "floats.tif"
    with rasterio.open(
        floats,
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=1,
        dtype="float32",
        crs="EPSG:4544",
        transform=rasterio.transform.from_origin(566000, 3828000, 1, 1),
    ) as ds:
        ds.write(np.zeros((1, 8, 8), np.float32))
    with pytest.raises(CimInputError, match="8-bit"):
        cim.build_layer("imagery", floats, tmp_path / "b")
    text = tmp_path / "notes.tif"
    text.write_text("hello")
    with pytest.raises(CimInputError, match="notes.tif"):
        cim.build_layer("imagery", text, tmp_path / "c")
