"""DEM sampling through rasterio: read only the window the points need."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.windows import Window, from_bounds

from cim.crs import parse_crs, transformer
from cim.errors import CimCRSError, CimInputError, CimIOError
from cim.kernels.raster import bilinear_sample


def sample_dem(path: str | Path, x: np.ndarray, y: np.ndarray, crs: CRS) -> np.ndarray:
    """Heights of a DEM at points, bilinear; NaN outside the DEM or on no-data.

    Parameters
    ----------
    path : a single-band raster (GeoTIFF or anything GDAL reads)
    x, y : (n,) float, points in ``crs``
    crs : the points' CRS; reprojected to the DEM's when they differ

    Raises
    ------
    CimIOError, CimCRSError, CimInputError
    """
    path = Path(path)
    if not path.exists():
        raise CimIOError(f"{path}: no such DEM")
    try:
        ds = rasterio.open(path, num_threads="ALL_CPUS")  # GTiff decodes blocks on every core
    except rasterio.errors.RasterioIOError as exc:
        raise CimInputError(f"{path}: not a raster GDAL can read ({exc})") from None
    with ds:
        if ds.crs is None:
            raise CimCRSError(f"{path}: the DEM declares no CRS")
        t = ds.transform
        if t.b != 0 or t.d != 0:
            raise CimInputError(f"{path}: rotated geotransforms are not supported")
        dem_crs = parse_crs(ds.crs.to_wkt(), what=str(path))
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if not dem_crs.equals(crs):
            x, y = transformer(crs, dem_crs).transform(x, y)
            x, y = np.asarray(x), np.asarray(y)
        out = np.full(len(x), np.nan)
        if len(x) == 0:
            return out
        pad = 2 * max(abs(t.a), abs(t.e))
        win = from_bounds(x.min() - pad, y.min() - pad, x.max() + pad, y.max() + pad, t)
        win = win.round_offsets().round_lengths().intersection(Window(0, 0, ds.width, ds.height)) if _overlaps(win, ds) else None
        if win is None or win.width <= 0 or win.height <= 0:
            return out
        grid = ds.read(1, window=win)
        if grid.dtype.kind != "f":
            grid = grid.astype(np.float32)
        if ds.nodata is not None:
            grid[grid == ds.nodata] = np.nan
        wt = ds.window_transform(win)
        return bilinear_sample(grid, wt.c, wt.f, wt.a, -wt.e, x, y)


def _overlaps(win: Window, ds: rasterio.DatasetReader) -> bool:
    return win.col_off < ds.width and win.row_off < ds.height and win.col_off + win.width > 0 and win.row_off + win.height > 0
