"""A raster header that declares far more than its file holds is refused before any work (issue 12).

The case seen: a small GeoTIFF declaring 65535 × 65535 cells wrote 572,084 terrain tiles and
2.3 GB before it was stopped. Here a sparse GeoTIFF (one real block) declares as much.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

import cim
from cim.errors import CimInputError


def sparse_raster(path, size: int, *, count: int = 1, dtype: str = "float32", noise: bool = False) -> None:
    profile = dict(
        driver="GTiff", width=size, height=size, count=count, dtype=dtype, crs="EPSG:4544",
        transform=from_origin(566000, 3828000, 0.5, 0.5), tiled=True, blockxsize=256, blockysize=256,
        compress="deflate", SPARSE_OK=True,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        block = np.full((count, 256, 256), 100, dtype)
        if noise:  # measured heights, not a constant that deflates to nothing
            block += np.random.default_rng(0).random(block.shape).astype(dtype)
        ds.write(block, window=((0, 256), (0, 256)))


@pytest.mark.parametrize("kind", ["terrain", "imagery"])
def test_a_header_declaring_billions_of_cells_is_refused(tmp_path, kind):
    path = tmp_path / "huge.tif"
    sparse_raster(path, 65535, count=1 if kind == "terrain" else 3, dtype="float32" if kind == "terrain" else "uint8")
    with pytest.raises(CimInputError, match=r"huge\.tif: declares 65535 × 65535 = 4,294,836,225 cells, more than the limit"):
        cim.convert(kind, path, tmp_path / "out")
    # allowed that many, the file still holds a ten-thousandth of what it declares
    with pytest.raises(CimInputError, match=r"huge\.tif: declares 65535 × 65535 cells .* but holds only [\d,]+ bytes"):
        cim.convert(kind, path, tmp_path / "out", max_cells=5_000_000_000)
    assert not list((tmp_path / "out").rglob("*.terrain")) and not list((tmp_path / "out").rglob("*.webp"))


def test_a_sparse_but_plausible_dem_is_built(tmp_path):
    """One block of real heights in a 2048² raster is 1/64 of it: sparse, not lying."""
    path = tmp_path / "dem.tif"
    sparse_raster(path, 2048, noise=True)
    report = cim.convert("terrain", path, tmp_path / "out")
    assert report.layers and (tmp_path / "out").exists()
