"""Real data: the Lyon DEM (EPSG:3946, int16, 10 m) from Oslandia's 3D workshop."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cim
from cim.formats.quantized_mesh import decode_quantized_mesh
from cim.layers.terrain import level_error
from cim.tiling.geographic import INTERVALS, sample_degrees, tile_bounds
from tests.helpers.terrain import QMAX, DemTruth, drawn_errors, tiles_on_disk

pytestmark = pytest.mark.realdata


def test_lyon_dem_tiles_match_the_dem(realdata_dir, tmp_path):
    dem = realdata_dir / "raster" / "oslandia_lyon_dem.tif"
    result = cim.build_layer("terrain", dem, tmp_path / "lyon")
    doc = json.loads((tmp_path / "lyon" / "layer.json").read_text())
    w, s, e, n = doc["bounds"]
    assert 4.7 < w < e < 5.0 and 45.6 < s < n < 45.9  # Lyon
    assert result.info.maxzoom == 15  # 10 m cells at 45.7° N
    assert 150 < result.bounds["min_height"] < result.bounds["max_height"] < 320
    truth = DemTruth(dem)
    rng = np.random.default_rng(11)
    compared = 0
    for (z, x, y), path in sorted(tiles_on_disk(tmp_path / "lyon").items()):
        if z < 11:
            continue
        q = decode_quantized_mesh(path.read_bytes())
        i = rng.integers(0, INTERVALS + 1, 400)
        j = rng.integers(0, INTERVALS + 1, 400)
        tw, ts, _, _ = tile_bounds(z, x, y)
        ref = truth(tw + i * sample_degrees(z), ts + j * sample_degrees(z))
        ok = np.isfinite(ref)
        if not ok.any():
            continue
        err = drawn_errors(q, tile_bounds(z, x, y), i[ok], j[ok], ref[ok])
        bound = level_error(z) + (q.max_height - q.min_height) / QMAX + 0.01
        assert err.max() <= bound, f"{z}/{x}/{y}: {err.max():.3f} m off the DEM (bound {bound:.3f} m)"
        compared += int(ok.sum())
    assert compared > 5000
