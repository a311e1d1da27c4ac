"""DEMs read for terrain: checked once, then sampled window by window on geographic lattices.

Any CRS: the lattice's longitudes/latitudes go through pyproj (``always_xy``) at control points
every 16 samples, and the DEM is sampled bilinearly at the interpolated positions, so each sample is
the DEM's own bilinear height at that longitude/latitude. Only the window under a lattice block is
read, so a DEM larger than memory streams. Heights are taken as the DEM gives them (for the city,
heights above the WGS84/CGCS2000 ellipsoid: no geoid is applied).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.windows import Window

from cim.crs import GEODETIC, check_area_of_use, crs_label, parse_crs, to_lonlat, transformer
from cim.errors import CimCRSError, CimInputError, CimIOError
from cim.kernels.heightfield import lattice_bilinear, raster_heights
from cim.sources.plausible import check_heights
from cim.sources.raster_size import gdal_reason

__all__ = ["CONTROL_STEP", "TerrainDem", "damaged_block"]

#: lattice samples between two pyproj-transformed control points
CONTROL_STEP = 16


class TerrainDem:
    """A single-band DEM opened for terrain building (one dataset handle per thread).

    Parameters
    ----------
    path : a raster GDAL reads, with a north-up (unrotated) geotransform
    crs : the CRS of a DEM that declares none
    crs_override : read the DEM in ``crs`` even when it declares one (a header known to be wrong)

    Raises
    ------
    CimIOError
        The file does not exist.
    CimInputError
        Not a raster, a rotated geotransform, or a band that is not numeric.
    CimCRSError
        The raster has no CRS, or one pyproj cannot use.
    """

    def __init__(self, path: str | Path, crs: object = None, *, crs_override: bool = False) -> None:
        self.path = Path(path)
        self._given = crs
        self._override = crs_override
        #: the CRS the file declares, when ``crs`` replaced it (crs_override)
        self.replaced: str | None = None
        #: "file" (the DEM's own CRS) or "given" (``crs``, for a DEM declaring none or overridden)
        self.crs_from = "file"
        #: metres added to every height (the city's vertical datum less the DEM's, at its centre)
        self.shift = 0.0
        if not self.path.exists():
            raise CimIOError(f"{self.path}: no such DEM")
        try:
            with rasterio.Env(GTIFF_REPORT_COMPD_CS=True):  # a vertical CRS too, when the file has one
                ds = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise CimInputError(f"{self.path}: not a raster GDAL can read ({exc})") from None
        self._local = threading.local()
        self._handles: list[rasterio.DatasetReader] = [ds]
        self._lock = threading.Lock()
        self._local.ds = ds
        try:
            self._check(ds)
        except BaseException:
            ds.close()
            raise

    def _check(self, ds: rasterio.DatasetReader) -> None:
        if ds.count < 1:
            raise CimInputError(f"{self.path}: the raster has no band")
        if np.dtype(ds.dtypes[0]).kind not in "iuf":
            raise CimInputError(f"{self.path}: band 1 is {ds.dtypes[0]}, not heights")
        if self._override and self._given is None:
            raise CimInputError(f"{self.path}: crs_override needs the layer's own crs (the CRS to use instead of the file's)")
        if ds.crs is None and self._given is None:
            raise CimCRSError(f"{self.path}: the DEM declares no CRS; give one (--crs EPSG:XXXX, or crs= in the recipe)")
        t = ds.transform
        if t.b != 0 or t.d != 0:
            raise CimInputError(f"{self.path}: rotated geotransforms are not supported (transform {tuple(t)[:6]})")
        if t.a == 0 or t.e == 0:
            raise CimInputError(f"{self.path}: degenerate geotransform {tuple(t)[:6]}")
        if ds.width < 2 or ds.height < 2:
            raise CimInputError(f"{self.path}: {ds.width} × {ds.height} cells: a DEM needs at least 2 × 2 cells to make a surface")
        declared = parse_crs(ds.crs.to_wkt(), what=str(self.path)) if ds.crs is not None else None
        if declared is not None and not self._override:
            full = declared
        else:
            full = parse_crs(self._given, what=f"{self.path}: crs")
            self.replaced = crs_label(declared) if declared is not None else None
            self.crs_from = "given"
        #: the CRS as declared or given, its vertical part included (see cim.datum)
        self.full_crs: CRS = full
        self.crs: CRS = full.sub_crs_list[0] if full.is_compound else full
        # kept: cim.crs.from_lonlat looks its transformer up by WKT, and writing the two WKTs took
        # longer than transforming a block's control points
        self._from_lonlat = transformer(GEODETIC, self.crs)
        self.transform = t
        self.width, self.height = ds.width, ds.height
        self.nodata = ds.nodata
        self.dtype = np.dtype(ds.dtypes[0])
        # the footprint in longitude/latitude, from points along the raster's outer edges
        k = np.linspace(0.0, 1.0, 65)
        cols = np.concatenate([k, np.ones_like(k), k[::-1], np.zeros_like(k)]) * self.width
        rows = np.concatenate([np.zeros_like(k), k, np.ones_like(k), k[::-1]]) * self.height
        x, y = t * (cols, rows)
        lon, lat = to_lonlat(np.asarray(x), np.asarray(y), self.crs)
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise CimCRSError(f"{self.path}: the DEM's extent does not project to longitude/latitude in {crs_label(self.crs)}")
        self.bounds = (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
        if not (-180.0 <= self.bounds[0] < self.bounds[2] <= 180.0 and -90.0 <= self.bounds[1] < self.bounds[3] <= 90.0):
            raise CimCRSError(f"{self.path}: extent {self.bounds} is not a valid longitude/latitude box (wrong CRS?)")
        check_area_of_use(self.crs, self.bounds, str(self.path))
        self.centre_lat = (self.bounds[1] + self.bounds[3]) / 2.0
        self.cell_size = self._cell_size()

    def _cell_size(self) -> float:
        """Geometric mean of the cell's width and height, in metres."""
        a, e = abs(self.transform.a), abs(self.transform.e)
        if self.crs.is_geographic:
            lat = math.radians(self.centre_lat)
            return math.sqrt(math.radians(a) * 6378137.0 * math.cos(lat) * math.radians(e) * 6356752.3)
        factor = self.crs.axis_info[0].unit_conversion_factor if self.crs.axis_info else 1.0
        return math.sqrt(a * e) * factor

    def _dataset(self) -> rasterio.DatasetReader:
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = rasterio.open(self.path)
            self._local.ds = ds
            with self._lock:
                self._handles.append(ds)
        return ds

    def sample(
        self, lon0: float, lat0: float, step_deg: float, shape: tuple[int, int], out: np.ndarray | None = None, at: tuple[int, int] = (0, 0)
    ) -> np.ndarray:
        """Heights on a lattice ``lon0 + i·step, lat0 + j·step`` (``i < shape[1]``, ``j < shape[0]``).

        ``out`` and ``at``: write sample ``(j, i)`` to ``out[at[0] + j, at[1] + i]`` of a C-contiguous
        float64 grid instead of a new array (see :func:`cim.kernels.heightfield.lattice_bilinear`).

        Returns
        -------
        (nj, ni) float64, row 0 southernmost; NaN outside the DEM and on no-data (a view of ``out``
        when given).
        """
        nj, ni = shape
        if out is None:
            out, at = np.empty(shape), (0, 0)
        view = out[at[0] : at[0] + nj, at[1] : at[1] + ni]
        if nj == 0 or ni == 0:
            return view
        kj = np.arange(0, nj - 1 + CONTROL_STEP, CONTROL_STEP)
        ki = np.arange(0, ni - 1 + CONTROL_STEP, CONTROL_STEP)
        if len(kj) < 2:
            kj = np.array([0, CONTROL_STEP])
        if len(ki) < 2:
            ki = np.array([0, CONTROL_STEP])
        glon, glat = np.meshgrid(lon0 + ki * step_deg, lat0 + kj * step_deg)
        x, y = self._from_lonlat.transform(glon.ravel(), glat.ravel())
        col, row = ~self.transform * (np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        col = np.asarray(col).reshape(glon.shape)
        row = np.asarray(row).reshape(glon.shape)
        ok = np.isfinite(col) & np.isfinite(row)
        if not ok.any():
            view[...] = np.nan
            return view
        c0 = max(0, int(math.floor(col[ok].min())) - 2)
        r0 = max(0, int(math.floor(row[ok].min())) - 2)
        c1 = min(self.width, int(math.ceil(col[ok].max())) + 2)
        r1 = min(self.height, int(math.ceil(row[ok].max())) + 2)
        if c1 <= c0 or r1 <= r0:
            view[...] = np.nan
            return view
        window = self._read(Window(c0, r0, c1 - c0, r1 - r0))
        # control points whose projection failed cannot be interpolated: keep them out of the raster
        col = np.where(ok, col - c0, -1e9)
        row = np.where(ok, row - r0, -1e9)
        return lattice_bilinear(window, col, row, CONTROL_STEP, shape, out=out, at=at)

    def _read(self, window: Window) -> np.ndarray:
        """A window of band 1 as float32, NaN for no data.

        Raises
        ------
        CimInputError
            A block of the window cannot be decoded (a truncated or corrupt file), or holds
            heights no place on Earth has.
        """
        try:
            data = self._dataset().read(1, window=window)
        except rasterio.errors.RasterioError as exc:
            raise CimInputError(f"{self.path}: {damaged_block(window, exc)}") from None
        where = f"{self.path} (rows {window.row_off}-{window.row_off + window.height}, columns {window.col_off}-{window.col_off + window.width})"
        use_nodata = self.nodata is not None and not np.isnan(self.nodata)
        if data.dtype.kind == "f" and not (use_nodata and np.isinf(self.nodata)):
            check_heights(data[np.isinf(data)], where)  # infinities are not no-data unless declared so
        grid = data if data.dtype == np.float32 else np.empty(data.shape, np.float32)
        grid = raster_heights(data, self.nodata if use_nodata else 0.0, use_nodata, grid)
        check_heights(grid, where)
        if self.shift:
            grid += np.float32(self.shift)
        return grid

    def close(self) -> None:
        with self._lock:
            for ds in self._handles:
                ds.close()
            self._handles.clear()
        self._local = threading.local()

    def __reduce__(self) -> tuple[type[TerrainDem], tuple[Path]]:
        """Pickled as its path: a worker process elsewhere (:mod:`cim.engines_dask`) opens its
        own handles."""
        return type(self), (self.path,)

    def __enter__(self) -> TerrainDem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def damaged_block(window: Window, exc: BaseException) -> str:
    """What to say of a window GDAL could not read: where, and GDAL's own reason."""
    return (
        f"cannot read rows {int(window.row_off)}-{int(window.row_off + window.height)}, columns "
        f"{int(window.col_off)}-{int(window.col_off + window.width)}: the file is truncated or corrupt ({gdal_reason(exc)})"
    )
