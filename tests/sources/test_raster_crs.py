"""A raster's CRS: given for a DEM or orthophoto that declares none, overriding one that is wrong
(with a warning), and refused where the numbers cannot be right for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

import cim
from cim.errors import CimCRSError, CimInputError
from cim.warnings import GeoreferenceWarning

X0, Y0 = 566000.0, 3827000.0  # EPSG:4544, about 105.73° E, 34.57° N


def write(path: Path, bands: np.ndarray, crs: str | None, cell: float = 4.0, x0: float = X0, y0: float = Y0) -> Path:
    count, h, w = bands.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=count,
        dtype=bands.dtype.name,
        crs=crs,
        transform=Affine(cell, 0.0, x0, 0.0, -cell, y0),
    ) as ds:
        ds.write(bands)
    return path


def dem(tmp_path: Path, crs: str | None, **kw) -> Path:
    yy, xx = np.mgrid[0:24, 0:32]
    return write(tmp_path / "dem.tif", (1100.0 + 0.5 * xx + 0.2 * yy)[None].astype(np.float32), crs, **kw)


def ortho(tmp_path: Path, crs: str | None, **kw) -> Path:
    rng = np.random.default_rng(3)
    return write(tmp_path / "ortho.tif", rng.integers(0, 255, size=(3, 24, 32), dtype=np.uint8), crs, **kw)


def centre(result) -> tuple[float, float]:
    b = result.bounds
    return (b["west"] + b["east"]) / 2.0, (b["south"] + b["north"]) / 2.0


@pytest.mark.parametrize("make,kind", [(dem, "terrain"), (ortho, "imagery")])
def test_a_raster_without_crs_takes_the_one_given(tmp_path, make, kind):
    with pytest.raises(CimCRSError, match="declares no CRS"):
        cim.build_layer(kind, [make(tmp_path, None)], tmp_path / "refused")
    result = cim.build_layer(kind, [make(tmp_path, None)], tmp_path / "out", crs="EPSG:4544")
    lon, lat = centre(result)
    assert lon == pytest.approx(105.73, abs=0.05) and lat == pytest.approx(34.57, abs=0.05)  # (terrain: tile bounds)
    assert not [w for w in result.warnings if isinstance(w, GeoreferenceWarning)]


@pytest.mark.parametrize("make,kind", [(dem, "terrain"), (ortho, "imagery")])
def test_a_wrong_crs_is_overridden_only_when_asked_with_a_warning(tmp_path, make, kind):
    wrong = make(tmp_path, "EPSG:3857")  # Gauss-Kruger numbers tagged Web Mercator: somewhere off Africa
    kept = cim.build_layer(kind, [wrong], tmp_path / "kept", crs="EPSG:4544")
    assert centre(kept)[0] == pytest.approx(5.08, abs=0.05)  # the file's own CRS wins without the override
    result = cim.build_layer(kind, [wrong], tmp_path / "out", crs="EPSG:4544", crs_override=True)
    lon, lat = centre(result)
    assert lon == pytest.approx(105.73, abs=0.05) and lat == pytest.approx(34.57, abs=0.05)  # (terrain: tile bounds)
    (w,) = [w for w in result.warnings if isinstance(w, GeoreferenceWarning)]
    assert "EPSG:3857" in str(w) and "EPSG:4544" in str(w) and "crs_override" in str(w)


@pytest.mark.parametrize("make,kind", [(dem, "terrain"), (ortho, "imagery")])
def test_crs_override_needs_a_crs(tmp_path, make, kind):
    with pytest.raises(CimInputError, match="crs_override needs"):
        cim.build_layer(kind, [make(tmp_path, "EPSG:3857")], tmp_path / "out", crs_override=True)


@pytest.mark.parametrize("make,kind", [(dem, "terrain"), (ortho, "imagery")])
@pytest.mark.parametrize(
    "where",
    [
        dict(crs="EPSG:4326"),  # metres tagged as degrees
        dict(crs="EPSG:4326", cell=1e-4, x0=200.0, y0=34.5),  # a longitude of 200
        dict(crs="EPSG:4544", x0=9_566_000.0),  # 60° from the zone's meridian
    ],
    ids=["metres-as-degrees", "longitude-200", "outside-the-zone"],
)
def test_numbers_that_cannot_be_right_for_the_crs_are_an_error(tmp_path, make, kind, where):
    with pytest.raises(CimCRSError, match="longitude/latitude"):
        cim.build_layer(kind, [make(tmp_path, **where)], tmp_path / "out")


@pytest.mark.parametrize("value", [3e38, 1e12, np.inf])
def test_heights_no_place_has_are_an_error(tmp_path, value):
    path = dem(tmp_path, "EPSG:4544")
    with rasterio.open(path, "r+") as ds:
        grid = ds.read()
        grid[0, 5:7, 5:7] = value
        ds.write(grid)
    with pytest.raises(CimInputError, match="outside -12,000..12,000 m"):
        cim.build_layer("terrain", [path], tmp_path / "out")
