"""The sample generator's fast paths give the same bits as the plain per-point formulas they
replace (the sample city's sources must not change when the generator gets faster)."""

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize

from cim.samplecity.ortho import ROOF_COLOURS, USE_CODES, write_orthophoto
from cim.samplecity.terrain import CENTRE_E, CENTRE_N, dem_grid, ground_height, lattice_uniform, value_noise


def test_value_noise_on_a_grid_is_the_noise_of_every_point():
    xs = CENTRE_E - 700.0 + 0.37 + np.arange(900) * 0.5
    ys = CENTRE_N + 300.0 - np.arange(300) * 1.5
    gx, gy = np.meshgrid(xs, ys)
    for scale in (35.0, 240.0, 0.3):  # 0.3 m: the lattice is finer than the grid (the per-point path)
        fast = value_noise(xs[None, :], ys[:, None], scale, 11)
        plain = value_noise(gx, gy, scale, 11)
        assert fast.shape == plain.shape == (300, 900)
        assert np.array_equal(fast.view(np.uint64), plain.view(np.uint64))


def test_dem_grid_is_ground_height_at_every_cell_centre():
    # several strips (threads), the valley floor, the river and a hillside
    x0, y0, res = CENTRE_E - 400.0, CENTRE_N - 1900.0, 4.0
    grid = dem_grid(x0, y0, x0 + 800.0, y0 + 2400.0, res, seed=2, rows_per_strip=128)
    gx, gy = np.meshgrid(x0 + (np.arange(200) + 0.5) * res, y0 + 2400.0 - (np.arange(600) + 0.5) * res)
    assert np.array_equal(grid.view(np.uint32), ground_height(gx, gy, 2).astype(np.float32).view(np.uint32))


def test_orthophoto_strips_paint_every_roof_with_its_own_id(tmp_path):
    # strips rasterize only the footprints reaching them: a roof cut by a strip boundary keeps
    # its colour on both sides, exactly where a rasterization of all the footprints puts it
    x0, y0, res = CENTRE_E - 200.0, CENTRE_N + 100.0, 1.0
    bounds = (x0, y0, x0 + 200.0, y0 + 100.0)
    dem = tmp_path / "dem.tif"
    z = dem_grid(*bounds, 1.0)
    profile = {"driver": "GTiff", "width": 200, "height": 100, "count": 1, "dtype": "float32", "crs": "EPSG:4544"}
    with rasterio.open(dem, "w", transform=rasterio.transform.from_origin(x0, y0 + 100.0, 1.0, 1.0), **profile) as ds:
        ds.write(z, 1)
    roofs = [shapely.box(x0 + 10 + 30 * i, y0 + 20 + 7 * i, x0 + 35 + 30 * i, y0 + 60 + 7 * i) for i in range(6)]
    uses = np.array(list(USE_CODES))[:6]
    write_orthophoto(tmp_path / "a.tif", bounds, res, roofs, uses, dem, rows_per_strip=16)
    write_orthophoto(tmp_path / "b.tif", bounds, res, roofs, uses, dem, rows_per_strip=100)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        strips, whole = a.read().astype(np.int16), b.read().astype(np.int16)
    ids = rasterize(zip(roofs, range(1, 7)), out_shape=(100, 200), transform=rasterio.transform.from_origin(x0, y0 + 100.0, res, res))
    # roofs' insides, away from their edges (JPEG blurs edges, the hillshade's gradient differs
    # at strip boundaries): the same colours with 16-row strips (each roof cut by 2-3 strips) as
    # with one strip
    inner = ids.copy()
    for axis in (0, 1):
        for shift in (-3, 3):
            inner[np.roll(ids, shift, axis=axis) != ids] = 0
    assert (inner > 0).sum() > 2000
    assert np.abs(strips - whole)[:, inner > 0].max() <= 4
    # and each roof is painted its own colour (its use's, jittered per roof), not the ground's
    jitter = 0.85 + 0.3 * lattice_uniform(np.arange(1, 7), np.full(6, 7), 21)
    for i in range(1, 7):
        expected = np.array(ROOF_COLOURS[str(uses[i - 1])]) * jitter[i - 1]
        assert np.abs(strips[:, inner == i].mean(axis=1) - expected).max() < 4
