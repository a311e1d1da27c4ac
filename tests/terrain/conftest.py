"""Fixtures for the terrain tests: small synthetic DEMs of the sample city, and their terrain layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cim.layers.terrain import build_terrain_layer
from cim.samplecity.terrain import CENTRE_E, CENTRE_N, dem_grid

REPO = Path(__file__).resolve().parents[2]
REALDATA = REPO.parent / "shared" / "realdata"


def write_dem(path: Path, grid: np.ndarray, x0: float, y0: float, res: float, *, crs="EPSG:4544", nodata=-9999.0, **extra) -> Path:
    """A single-band GeoTIFF, north-up, ``(x0, y0)`` its north-west corner."""
    profile = {
        "driver": "GTiff", "width": grid.shape[1], "height": grid.shape[0], "count": 1, "dtype": grid.dtype.name,
        "crs": crs, "transform": from_origin(x0, y0, res, res), "nodata": nodata, **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(grid, 1)
    return path


def hills(width_m: float, height_m: float, res: float, dx: float = -400.0, dy: float = 2300.0) -> tuple[np.ndarray, float, float]:
    """The sample city's loess hills north of the river around (105.72 E, 34.60 N): grid, west, north."""
    xmin, ymin = CENTRE_E + dx, CENTRE_N + dy
    return dem_grid(xmin, ymin, xmin + width_m, ymin + height_m, res), xmin, ymin + height_m


@pytest.fixture(scope="session")
def hills_dem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 × 500 m of hills at 2 m in EPSG:4544, float32, with a 30 × 24 m no-data hole."""
    grid, west, north = hills(800.0, 500.0, 2.0)
    grid[100:112, 200:215] = -9999.0
    return write_dem(tmp_path_factory.mktemp("dem") / "hills.tif", grid, west, north, 2.0)


@pytest.fixture(scope="session")
def hills_terrain(hills_dem: Path, tmp_path_factory: pytest.TempPathFactory):
    """The hills DEM built into a terrain layer: ``(layer result, folder)``."""
    out = tmp_path_factory.mktemp("terrain") / "terrain"
    return build_terrain_layer(hills_dem, out), out


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    if not (REALDATA / "raster" / "oslandia_lyon_dem.tif").exists():
        pytest.skip(f"real third-party data not found at {REALDATA} (the ../shared folder beside the checkout)")
    return REALDATA
