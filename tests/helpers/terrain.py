"""Terrain test helpers: synthetic DEMs of the sample city, and independent checks of decoded
terrain tiles (interpolation, DEM truth, Cesium's horizon test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from cim.kernels.raster import bilinear_sample
from cim.samplecity.terrain import CENTRE_E, CENTRE_N, dem_grid

QMAX = 32767


def write_dem(path: Path, grid: np.ndarray, x0: float, y0: float, res: float, *, crs="EPSG:4544", nodata=-9999.0, **extra) -> Path:
    """A single-band GeoTIFF, north-up, ``(x0, y0)`` its north-west corner."""
    profile = {
        "driver": "GTiff",
        "width": grid.shape[1],
        "height": grid.shape[0],
        "count": 1,
        "dtype": grid.dtype.name,
        "crs": crs,
        "transform": from_origin(x0, y0, res, res),
        "nodata": nodata,
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(grid, 1)
    return path


def hills(width_m: float, height_m: float, res: float, dx: float = -400.0, dy: float = 2300.0) -> tuple[np.ndarray, float, float]:
    """The sample city's loess hills north of the river around (105.72 E, 34.60 N): grid, west, north."""
    xmin, ymin = CENTRE_E + dx, CENTRE_N + dy
    return dem_grid(xmin, ymin, xmin + width_m, ymin + height_m, res), xmin, ymin + height_m


def tiles_on_disk(root: Path) -> dict[tuple[int, int, int], Path]:
    """Every ``z/x/y.terrain`` under a layer folder."""
    out = {}
    for p in root.glob("*/*/*.terrain"):
        out[(int(p.parent.parent.name), int(p.parent.name), int(p.stem))] = p
    return out


def interpolate(u: np.ndarray, v: np.ndarray, h: np.ndarray, tri: np.ndarray, qu: np.ndarray, qv: np.ndarray) -> np.ndarray:
    """Heights of a TIN at query points (same u/v units), by barycentric coordinates; NaN outside."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    x0, y0 = u[a][None, :].astype(float), v[a][None, :].astype(float)
    x1, y1 = u[b][None, :] - x0, v[b][None, :] - y0
    x2, y2 = u[c][None, :] - x0, v[c][None, :] - y0
    px, py = qu[:, None] - x0, qv[:, None] - y0
    det = x1 * y2 - x2 * y1
    l1 = (px * y2 - x2 * py) / det
    l2 = (x1 * py - px * y1) / det
    l0 = 1 - l1 - l2
    inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
    h = np.asarray(h, dtype=np.float64)
    out = np.full((len(qu), *h.shape[1:]), np.nan)
    rows, cols = np.nonzero(inside)
    first = np.unique(rows, return_index=True)
    r, k = first[0], cols[first[1]]
    w = [lam[r, k].reshape((-1,) + (1,) * (h.ndim - 1)) for lam in (l0, l1, l2)]
    out[r] = w[0] * h[a[k]] + w[1] * h[b[k]] + w[2] * h[c[k]]
    return out


def drawn_errors(q, bounds, i: np.ndarray, j: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Vertical distance from true points to the surface a client draws (flat ECEF triangles).

    ``i, j`` are lattice indices (0…64) of the tile, ``heights`` the true heights there.
    """
    from cim.kernels.frames import geodetic_to_ecef, up_vectors

    west, south, east, north = bounds
    llh = q.lonlat_heights(bounds)
    ecef = geodetic_to_ecef(llh[:, 0], llh[:, 1], llh[:, 2])
    drawn = interpolate(q.u, q.v, ecef, q.triangles, i * QMAX / 64.0, j * QMAX / 64.0)
    lon, lat = west + i / 64.0 * (east - west), south + j / 64.0 * (north - south)
    true = geodetic_to_ecef(lon, lat, heights)
    return np.abs(((drawn - true) * up_vectors(lon, lat)).sum(axis=1))


class DemTruth:
    """The DEM's own bilinear heights at longitudes/latitudes (pyproj + cim.kernels.raster)."""

    def __init__(self, path: Path) -> None:
        with rasterio.open(path) as ds:
            grid = ds.read(1).astype(np.float64)
            if ds.nodata is not None:
                grid[grid == ds.nodata] = np.nan
            self.grid, self.t = grid, ds.transform
            self.to_dem = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)

    def __call__(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        x, y = self.to_dem.transform(lon, lat)
        return bilinear_sample(self.grid, self.t.c, self.t.f, self.t.a, -self.t.e, np.asarray(x), np.asarray(y))


def scaled_visible(point: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """CesiumJS's EllipsoidalOccluder.isScaledSpacePointVisible, both in the ellipsoid-scaled frame."""
    vh2 = (camera * camera).sum(-1) - 1.0
    vt = point - camera
    vt_dot_vc = -(vt * camera).sum(-1)
    occluded = (vt_dot_vc > vh2) & (vt_dot_vc * vt_dot_vc / (vt * vt).sum(-1) > vh2)
    return ~occluded
