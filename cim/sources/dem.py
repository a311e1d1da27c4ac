"""DEM sampling through rasterio: read only the window the points need, once."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.windows import Window, from_bounds

from cim.crs import parse_crs, transformer
from cim.engines import background
from cim.errors import CimCRSError, CimInputError, CimIOError
from cim.kernels.raster import bilinear_sample
from cim.sources.raster_size import gdal_reason

__all__ = ["DemWindow", "READ_CACHE_MB", "read_dem_window", "DemPrefetch", "sample_dem"]


@dataclass
class DemWindow:
    """A window of a DEM in memory: a north-up grid (NaN for no data) and where it lies."""

    grid: np.ndarray
    x0: float
    y0: float
    dx: float
    dy: float
    crs: CRS
    path: Path

    def sample(self, x: np.ndarray, y: np.ndarray, crs: CRS) -> np.ndarray:
        """Bilinear heights at points given in ``crs``; NaN outside the window or on no-data."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if not self.crs.equals(crs):
            x, y = (np.asarray(a) for a in transformer(crs, self.crs).transform(x, y))
        if self.grid.size == 0:
            return np.full(len(x), np.nan)
        return bilinear_sample(self.grid, self.x0, self.y0, self.dx, self.dy, x, y)


def _open(path: Path, threads: int | str = "ALL_CPUS") -> rasterio.DatasetReader:
    if not path.exists():
        raise CimIOError(f"{path}: no such DEM")
    try:
        return rasterio.open(path, num_threads=threads)  # GTiff decodes blocks on that many cores
    except rasterio.errors.RasterioIOError as exc:
        raise CimInputError(f"{path}: not a raster GDAL can read ({exc})") from None


#: GDAL's block cache (MB) while a window is read. A window is read once, block by block, so a
#: cache that holds every decoded block (GDAL's default: 5 % of the RAM) only adds a second copy
#: of the window in fresh pages, each a page fault.
READ_CACHE_MB = 64


def read_dem_window(path: str | Path, bounds: tuple[float, float, float, float], crs: CRS, *, threads: int | str = "ALL_CPUS") -> DemWindow:
    """Read the part of a DEM under ``bounds`` (xmin, ymin, xmax, ymax in ``crs``), decoding
    compressed blocks on ``threads`` cores.

    Raises
    ------
    CimIOError, CimCRSError, CimInputError
        Missing file, no CRS, not a raster, or a rotated geotransform.
    """
    path = Path(path)
    with rasterio.Env(GDAL_CACHEMAX=READ_CACHE_MB), _open(path, threads) as ds:
        if ds.crs is None:
            raise CimCRSError(f"{path}: the DEM declares no CRS")
        t = ds.transform
        if t.b != 0 or t.d != 0:
            raise CimInputError(f"{path}: rotated geotransforms are not supported")
        dem_crs = parse_crs(ds.crs.to_wkt(), what=str(path))
        xmin, ymin, xmax, ymax = bounds
        if not dem_crs.equals(crs):
            xs = np.linspace(xmin, xmax, 21)
            ys = np.linspace(ymin, ymax, 21)
            gx, gy = np.meshgrid(xs, ys)
            tx, ty = transformer(crs, dem_crs).transform(gx.ravel(), gy.ravel())
            xmin, ymin, xmax, ymax = float(np.min(tx)), float(np.min(ty)), float(np.max(tx)), float(np.max(ty))
        pad = 2 * max(abs(t.a), abs(t.e))
        win = from_bounds(xmin - pad, ymin - pad, xmax + pad, ymax + pad, t).round_offsets().round_lengths()
        col0, row0 = max(0, int(win.col_off)), max(0, int(win.row_off))
        col1, row1 = min(ds.width, int(win.col_off + win.width)), min(ds.height, int(win.row_off + win.height))
        if col1 <= col0 or row1 <= row0:
            return DemWindow(np.empty((0, 0), np.float32), 0.0, 0.0, 1.0, 1.0, dem_crs, path)
        win = Window(col0, row0, col1 - col0, row1 - row0)
        try:
            grid = ds.read(1, window=win)
        except rasterio.errors.RasterioError as exc:
            raise CimInputError(
                f"{path}: cannot read the DEM under the features: the file is truncated or corrupt ({gdal_reason(exc)})"
            ) from None
        if grid.dtype.kind != "f":
            grid = grid.astype(np.float32)
        if ds.nodata is not None:
            grid[grid == ds.nodata] = np.nan
        wt = ds.window_transform(win)
        return DemWindow(grid, wt.c, wt.f, wt.a, -wt.e, dem_crs, path)


class DemPrefetch:
    """A DEM window read on a background thread while the caller does other work.

    GDAL decodes the window's blocks without the GIL, so reading the DEM under a footprint
    file's declared extent overlaps with parsing and validating the footprints. The prefetch
    decodes on one thread, leaving the other cores to the caller (see ``benchmarks/README.md``).
    :meth:`window` hands the result over when the extent it was read for covers the bounds
    asked for (a stale declared extent falls back to a fresh read), so the result never
    depends on the prefetch.
    """

    def __init__(self, path: str | Path, bounds: tuple[float, float, float, float], crs: CRS) -> None:
        self.path = Path(path)
        self.bounds = tuple(float(v) for v in bounds)
        self.crs = crs
        self._future = background(functools.partial(read_dem_window, threads=1), self.path, self.bounds, crs, name="dem-prefetch")

    def window(self, bounds: tuple[float, float, float, float], crs: CRS) -> DemWindow:
        """The DEM window under ``bounds`` (in ``crs``): the prefetched one when it covers them."""
        try:
            window = self._future.result()
        except Exception:
            window = None
        xmin, ymin, xmax, ymax = bounds
        a = self.bounds
        # a file's declared extent and the extent of its geometries can differ in the last bits
        # (GeoPackage stores it as text or float): the window is padded by two cells anyway
        slack = 1e-9 * max(abs(v) for v in a) + 1e-9
        covers = a[0] - slack <= xmin and a[1] - slack <= ymin and xmax <= a[2] + slack and ymax <= a[3] + slack
        if window is not None and crs.equals(self.crs) and covers:
            return window
        return read_dem_window(self.path, bounds, crs)


def sample_dem(path: str | Path, x: np.ndarray, y: np.ndarray, crs: CRS) -> np.ndarray:
    """Heights of a DEM at points, bilinear; NaN outside the DEM or on no-data.

    Parameters
    ----------
    path : a single-band raster (GeoTIFF or anything GDAL reads)
    x, y : (n,) float, points in ``crs``
    crs : the points' CRS; reprojected to the DEM's when they differ
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) == 0:
        return np.empty(0)
    window = read_dem_window(path, (float(x.min()), float(y.min()), float(x.max()), float(y.max())), crs)
    return window.sample(x, y, crs)
