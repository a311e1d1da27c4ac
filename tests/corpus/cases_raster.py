"""Damaged rasters: DEMs for the terrain kind, orthophotos for the imagery kind."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from tests.corpus.bases import TINY_CRS, Bases, write_raster
from tests.corpus.make_corpus import ANY, ERROR, LOSSY, OK, Made, byte_damage, case, output_cases

__all__: list[str] = []

X0, Y0 = 564502.0, 3828305.0


def _dem_grid(b: Bases) -> np.ndarray:
    import rasterio

    with rasterio.open(b.dem) as ds:
        return ds.read()


def _ortho_bands(b: Bases) -> np.ndarray:
    import rasterio

    with rasterio.open(b.ortho) as ds:
        return ds.read()


def _first_block(path: Path) -> tuple[int, int]:
    """(offset, size) of a GeoTIFF's first block."""
    import rasterio

    with rasterio.open(path) as ds:
        off = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    return off, size


def _patch_tiff_dims(data: bytes, width: int, height: int) -> bytes:
    """A classic little-endian TIFF with its first IFD's ImageWidth/ImageLength rewritten."""
    b = bytearray(data)
    assert b[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", b, 4)[0]
    n = struct.unpack_from("<H", b, ifd)[0]
    for k in range(n):
        e = ifd + 2 + 12 * k
        tag, typ = struct.unpack_from("<HH", b, e)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if typ == 3:
                struct.pack_into("<HHIH", b, e, tag, 3, 1, value & 0xFFFF)
            else:
                struct.pack_into("<HHII", b, e, tag, 4, 1, value)
    return bytes(b)


def raster_cases(kind: str, base_name: str) -> None:
    """The cases every raster reader must survive (``kind`` terrain or imagery)."""
    dem = kind == "terrain"

    def base(b: Bases) -> Path:
        return b.dem if dem else b.ortho

    def bands(b: Bases) -> np.ndarray:
        return _dem_grid(b) if dem else _ortho_bands(b)

    cell = 4.0 if dem else 2.0
    nodata = -9999.0 if dem else None

    byte_damage(kind, base_name, base, header=400, truncated=LOSSY, seed=11 if dem else 12)

    def write(folder: Path, arr: np.ndarray, *, crs: str | None = TINY_CRS, origin=(X0, Y0, cell), **kw) -> Made:
        p = write_raster(folder / f"{base_name}.tif", arr, origin, crs, nodata=kw.pop("nodata", nodata), **kw)
        return Made([p], [], (p.name,))

    @case(kind, "corrupt-block", LOSSY)
    def _(b: Bases, folder: Path) -> Made:
        data = bytearray(base(b).read_bytes())
        off, size = _first_block(base(b))
        data[off : off + size] = bytes((i * 37 + 11) & 0xFF for i in range(size))
        p = folder / f"{base_name}.tif"
        p.write_bytes(bytes(data))
        return Made([p], [], (p.name,))

    @case(kind, "lying-size", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        p = folder / f"{base_name}.tif"
        p.write_bytes(_patch_tiff_dims(base(b).read_bytes(), 65535, 65535))
        return Made([p], [], (p.name,))

    @case(kind, "lying-size-small", ERROR)
    def _(b: Bases, folder: Path) -> Made:  # a little bigger than its blocks: the missing ones
        p = folder / f"{base_name}.tif"
        p.write_bytes(_patch_tiff_dims(base(b).read_bytes(), 400, 300))
        return Made([p], [], (p.name,))

    @case(kind, "1x1", ERROR if dem else ANY)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b)[:, :1, :1], compress=None)

    @case(kind, "1x2", ERROR if dem else ANY)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b)[:, :1, :2], compress=None)

    @case(kind, "3x3", ANY)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b)[:, :3, :3], compress=None)

    @case(kind, "no-crs", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b), crs=None)

    @case(kind, "metres-tagged-4326", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b), crs="EPSG:4326")

    @case(kind, "longitude-200", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b), crs="EPSG:4326", origin=(200.0, 34.5, 1e-5))

    @case(kind, "latitude-95", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b), crs="EPSG:4326", origin=(105.0, 95.0, 1e-5))

    @case(kind, "outside-area-of-use", ERROR)
    def _(b: Bases, folder: Path) -> Made:  # a Gauss-Kruger zone 60° wide of its meridian
        return write(folder, bands(b), origin=(9.5e6, 3.8e6, cell))

    @case(kind, "cells-of-1000-km", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b), origin=(X0, Y0, 1e6))

    @case(kind, "rotated", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        from rasterio.transform import Affine

        return write(folder, bands(b), transform=Affine(cell, 0.5, X0, 0.5, -cell, Y0))

    @case(kind, "south-up", ANY)
    def _(b: Bases, folder: Path) -> Made:
        from rasterio.transform import Affine

        arr = bands(b)[:, ::-1, :].copy()
        return write(folder, arr, transform=Affine(cell, 0.0, X0, 0.0, cell, Y0 - 32 * cell))

    @case(kind, "wrong-crs-3857", ANY)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b), crs="EPSG:3857")

    @case(kind, "lzw", OK)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b), compress="lzw")

    @case(kind, "striped-uncompressed", OK)
    def _(b: Bases, folder: Path) -> Made:
        return write(folder, bands(b), compress=None, block=10**6)

    @case(kind, "max-cells-1000", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        return Made([base(b)], ["--max-cells", "1000"], (base(b).name,))

    @case(kind, "a-folder", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        (folder / "x.tif").mkdir()
        return Made([folder / "x.tif"], [], ("x.tif",))

    @case(kind, "png-without-georeference", ERROR)
    def _(b: Bases, folder: Path) -> Made:
        from PIL import Image

        p = folder / f"{base_name}.png"
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(p)
        return Made([p], [], (p.name,))

    if dem:

        @case(kind, "all-nodata", ERROR)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, np.full_like(bands(b), -9999.0))

        @case(kind, "all-nan", ERROR)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, np.full_like(bands(b), np.nan), nodata=None)

        @case(kind, "some-nan", ANY)
        def _(b: Bases, folder: Path) -> Made:
            arr = bands(b).copy()
            arr[0, 5:9, 5:9] = np.nan
            return write(folder, arr, nodata=None)

        for name, value in (("inf", np.inf), ("minus-inf", -np.inf), ("3e38", 3e38), ("1e12", 1e12), ("minus-1e12", -1e12)):

            @case(kind, f"heights-{name}", LOSSY)
            def _(b: Bases, folder: Path, value: float = value) -> Made:
                arr = bands(b).copy()
                arr[0, 10:12, 10:12] = value
                return write(folder, arr)

        @case(kind, "every-height-1e12", ERROR)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, bands(b) * 0 + 1e12)

        @case(kind, "int16-nodata", OK)
        def _(b: Bases, folder: Path) -> Made:
            arr = bands(b).astype(np.int16)
            arr[0, :3, :3] = -32768
            return write(folder, arr, nodata=-32768)

        @case(kind, "uint8", OK)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, (bands(b) - 1000).clip(0, 255).astype(np.uint8), nodata=None)

        @case(kind, "three-bands", ANY)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, np.concatenate([bands(b)] * 3))

        @case(kind, "complex64", ERROR)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, bands(b).astype(np.complex64), nodata=None)

        @case(kind, "nodata-nan", OK)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, bands(b), nodata=float("nan"))

        @case(kind, "real-lyon-cut", LOSSY, realdata=True)
        def _(b: Bases, folder: Path) -> Made:
            data = b.real("raster/oslandia_lyon_dem.tif").read_bytes()
            p = folder / "oslandia_lyon_dem.tif"
            p.write_bytes(data[: len(data) // 2])
            return Made([p], [], (p.name,))

        @case(kind, "real-lyon-flip", ANY, realdata=True)
        def _(b: Bases, folder: Path) -> Made:
            data = bytearray(b.real("raster/oslandia_lyon_dem.tif").read_bytes())
            data[100] ^= 0xFF
            p = folder / "oslandia_lyon_dem.tif"
            p.write_bytes(bytes(data))
            return Made([p], [], (p.name,))

    else:

        @case(kind, "one-band", ANY)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, bands(b)[:1])

        @case(kind, "two-bands", ANY)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, bands(b)[:2])

        @case(kind, "rgba", OK)
        def _(b: Bases, folder: Path) -> Made:
            alpha = np.full_like(bands(b)[:1], 255)
            return write(folder, np.concatenate([bands(b), alpha]))

        @case(kind, "uint16", ANY)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, bands(b).astype(np.uint16) * 200)

        @case(kind, "float32", ANY)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, bands(b).astype(np.float32) / 255)

        @case(kind, "float-nan-inf", ANY)
        def _(b: Bases, folder: Path) -> Made:
            arr = bands(b).astype(np.float32)
            arr[:, :4, :4] = np.nan
            arr[:, 5:8, 5:8] = np.inf
            return write(folder, arr)

        @case(kind, "all-nodata", ANY)
        def _(b: Bases, folder: Path) -> Made:
            return write(folder, np.zeros_like(bands(b)), nodata=0)

        @case(kind, "real-rgb-cut", LOSSY, realdata=True)
        def _(b: Bases, folder: Path) -> Made:
            data = b.real("raster/rasterio_rgb-byte-tenth.tif").read_bytes()
            p = folder / "rasterio_rgb-byte-tenth.tif"
            p.write_bytes(data[: len(data) * 2 // 3])
            return Made([p], [], (p.name,))

        @case(kind, "real-rgb", OK, realdata=True)
        def _(b: Bases, folder: Path) -> Made:
            p = b.real("raster/rasterio_rgb-byte-tenth.tif")
            return Made([p], [], (p.name,))

    output_cases(kind, base)


raster_cases("terrain", "dem")
raster_cases("imagery", "ortho")
