"""Bad DEMs and options fail early with cim errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

import cim
from cim.errors import CimCRSError, CimInputError, CimIOError
from tests.helpers.terrain import hills, tiles_on_disk, write_dem


def test_no_crs(tmp_path):
    grid, west, north = hills(100.0, 100.0, 2.0)
    path = write_dem(tmp_path / "nocrs.tif", grid, west, north, 2.0, crs=None)
    with pytest.raises(CimCRSError, match="nocrs.tif.*no CRS"):
        cim.build_layer("terrain", path, tmp_path / "out")


def test_all_nodata(tmp_path):
    path = write_dem(tmp_path / "empty.tif", np.full((50, 60), -9999.0, np.float32), 566000.0, 3830000.0, 2.0)
    with pytest.raises(CimInputError, match="empty.tif.*no data"):
        cim.build_layer("terrain", path, tmp_path / "out")
    assert not (tmp_path / "out" / "layer.json").exists()


def test_rotated_geotransform(tmp_path):
    path = tmp_path / "rotated.tif"
    t = Affine.translation(566000.0, 3830000.0) * Affine.rotation(20.0) * Affine.scale(2.0, -2.0)
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=1, dtype="float32", crs="EPSG:4544", transform=t) as dst:
        dst.write(np.ones((20, 20), np.float32), 1)
    with pytest.raises(CimInputError, match="rotated.tif.*rotated"):
        cim.build_layer("terrain", path, tmp_path / "out")


def test_not_a_raster(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("this is not a GeoTIFF\n")
    with pytest.raises(CimInputError, match="notes.tif.*not a raster"):
        cim.build_layer("terrain", path, tmp_path / "out")


def test_missing_file(tmp_path):
    with pytest.raises(CimIOError, match="missing.tif"):
        cim.build_layer("terrain", tmp_path / "missing.tif", tmp_path / "out")


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"error_factor": 0.0}, "error_factor"),
        ({"error_factor": 3.0}, "error_factor"),
        ({"min_zoom": 18, "max_zoom": 17}, "min_zoom"),
        ({"max_zoom": 40}, "max_zoom"),
    ],
)
def test_bad_options(hills_dem, tmp_path, kwargs, named):
    with pytest.raises(CimInputError, match=named):
        cim.build_layer("terrain", hills_dem, tmp_path / "out", **kwargs)


def test_integer_dem_with_nodata(tmp_path):
    """int16 heights with a no-data corner: the corner is filled, the tiles still decode."""
    from cim.formats.quantized_mesh import decode_quantized_mesh

    grid, west, north = hills(300.0, 200.0, 2.0)
    g = np.round(grid).astype(np.int16)
    g[:40, :60] = -32768
    path = write_dem(tmp_path / "int.tif", g, west, north, 2.0, nodata=-32768)
    result = cim.build_layer("terrain", path, tmp_path / "out", min_zoom=10)
    assert result.bounds["min_height"] >= float(g[g > -32768].min())
    for p in tiles_on_disk(tmp_path / "out").values():
        q = decode_quantized_mesh(p.read_bytes())
        assert 1000 < q.min_height <= q.max_height < 1800
