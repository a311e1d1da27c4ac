"""Fixtures for the terrain tests: small synthetic DEMs of the sample city, and their terrain layers."""

from __future__ import annotations

from pathlib import Path

import pytest

import cim
from tests.helpers import REALDATA
from tests.helpers.terrain import hills, write_dem


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
    return cim.build_layer("terrain", hills_dem, out), out


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    if not (REALDATA / "raster" / "oslandia_lyon_dem.tif").exists():
        pytest.skip(f"real third-party data not found at {REALDATA} (the ../shared folder beside the checkout)")
    return REALDATA
