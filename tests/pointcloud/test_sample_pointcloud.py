"""The sample city's lidar agrees with its DEM, its footprints, its river and its orthophoto."""

from __future__ import annotations

from pathlib import Path

import laspy
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from cim.samplecity.ortho import write_orthophoto
from cim.samplecity.pointcloud import write_sample_pointcloud
from cim.samplecity.terrain import RIVER_HALF_WIDTH, dem_grid, in_river, river_distance, valley_centre, water_level
from cim.sources.dem import sample_dem
from cim.sources.footprints import read_footprints

# a window across the river, 300 x 240 m, east of the city centre
X0, Y0 = 566600.0, 3827900.0
W, H = 300.0, 240.0


@pytest.fixture(scope="module")
def river_window(tmp_path_factory) -> tuple[Path, Path, Path, list[Path]]:
    """DEM, footprints, folder and lidar tiles (100 m, 8 pts/m²) of the window; the orthophoto
    is ``folder / "ortho.tif"``."""
    d = tmp_path_factory.mktemp("riverwindow")
    yc = float(valley_centre(np.array(X0 + W / 2)))
    xmin, ymin = X0, round(yc - H / 2)
    xmax, ymax = xmin + W, ymin + H
    dem = d / "dem.tif"
    grid = dem_grid(xmin - 20, ymin - 20, xmax + 20, ymax + 20, 1.0)
    with rasterio.open(
        dem,
        "w",
        driver="GTiff",
        width=grid.shape[1],
        height=grid.shape[0],
        count=1,
        dtype="float32",
        crs="EPSG:4544",
        transform=from_origin(xmin - 20, ymax + 20, 1.0, 1.0),
    ) as ds:
        ds.write(grid, 1)
    # two buildings on the north bank, away from the water
    boxes = [shapely.box(xmin + 20, ymax - 70, xmin + 60, ymax - 30), shapely.box(xmin + 150, ymax - 80, xmin + 175, ymax - 40)]
    gpkg = d / "buildings.gpkg"
    pyogrio.raw.write(
        str(gpkg),
        geometry=shapely.to_wkb(np.array(boxes, dtype=object)),
        field_data=[np.array(["b1", "b2"], dtype=object), np.array([18.0, 45.5])],
        fields=["id", "height"],
        layer="buildings",
        driver="GPKG",
        geometry_type="Polygon",
        crs="EPSG:4544",
    )
    write_orthophoto(d / "ortho.tif", (xmin - 20, ymin - 20, xmax + 20, ymax + 20), 0.5, boxes, np.array(["residential"] * 2), dem)
    files = write_sample_pointcloud(d / "lidar", (xmin, ymin, xmax, ymax), dem, gpkg, d / "ortho.tif", 8.0, 100.0, 0)
    return dem, gpkg, d, files


def _columns(files: list[Path]) -> dict[str, np.ndarray]:
    cols: dict[str, list] = {k: [] for k in ("x", "y", "z", "cls", "ret", "nret", "inten", "r", "g", "b")}
    for f in files:
        las = laspy.read(f)
        for k, v in (
            ("x", las.x),
            ("y", las.y),
            ("z", las.z),
            ("cls", las.classification),
            ("ret", las.return_number),
            ("nret", las.number_of_returns),
            ("inten", las.intensity),
            ("r", las.red),
            ("g", las.green),
            ("b", las.blue),
        ):
            cols[k].append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in cols.items()}


def test_tiles_headers_and_density(river_window):
    _, _, _, files = river_window
    assert len(files) >= 6 and all(f.suffix == ".laz" for f in files)
    total = 0
    for f in files:
        with laspy.open(f) as r:
            h = r.header
            assert (h.version.major, h.version.minor) == (1, 4) and h.point_format.id == 7
            assert h.parse_crs().to_epsg() == 4544
            assert any(v.__class__.__name__ == "WktCoordinateSystemVlr" for v in h.vlrs)
            x0, y0 = (int(v) for v in f.stem.split("_")[1:3])
            assert x0 % 100 == 0 and y0 % 100 == 0
            assert x0 - 1e-6 <= h.mins[0] and h.maxs[0] <= x0 + 100 + 1e-6
            total += h.point_count
    # 8 points/m² (less where water swallows most returns)
    assert 0.75 * 8 * W * H < total < 1.05 * 8 * W * H


def test_classes_agree_with_dem_footprints_and_river(river_window):
    dem, gpkg, _, files = river_window
    c = _columns(files)
    classes = set(np.unique(c["cls"]).tolist())
    assert {2, 3, 5, 6, 9} <= classes
    ground = sample_dem(dem, c["x"], c["y"], read_footprints(gpkg).crs)
    g = c["cls"] == 2
    assert np.abs(c["z"][g] - ground[g]).max() < 0.15
    # roofs: inside a footprint, at the base (lowest ground under its corners) plus its height
    table = read_footprints(gpkg)
    roof = c["cls"] == 6
    for geom, height in zip(table.geometries, table.columns["height"]):
        inside = shapely.contains_xy(geom, c["x"], c["y"])
        assert (c["cls"][inside] == 6).mean() > 0.99
        corners = shapely.get_coordinates(geom)
        base = np.nanmin(sample_dem(dem, corners[:, 0], corners[:, 1], table.crs))
        np.testing.assert_allclose(c["z"][inside & roof], base + height, atol=0.15)
    # water: exactly the river, on its flat surface, which the DEM's channel holds: the DEM is
    # below the water inside the shore and above it outside (both within centimetres of the water
    # in the half metre either side of the shore)
    w = c["cls"] == 9
    river = in_river(c["x"], c["y"])
    assert w.sum() > 1000 and (w == (river & ~roof)).all()
    level = water_level(c["x"])
    assert np.abs(c["z"][w] - level[w]).max() < 0.1
    dr = river_distance(c["x"], c["y"])
    assert ((ground < level) == river)[np.abs(dr - RIVER_HALF_WIDTH) >= 0.5].all()
    # the lowest surface around: every ground point 2 m beyond its shore stands above it
    beyond = g & (dr > RIVER_HALF_WIDTH + 2.0)
    assert (c["z"][beyond] - level[beyond]).min() > 0.05
    # high vegetation stands above the ground
    hv = c["cls"] == 5
    assert (c["z"][hv] - ground[hv]).min() > 2.0


def test_colours_intensities_and_returns_are_plausible(river_window):
    _, _, _, files = river_window
    c = _columns(files)
    r, g, b = (c[k].astype(np.float64) / 257.0 for k in ("r", "g", "b"))
    mean = lambda cls, a: a[c["cls"] == cls].mean()  # noqa: E731
    assert r[c["cls"] == 2].mean() > b[c["cls"] == 2].mean()  # tan loess, paving, grassy banks
    assert mean(5, g) > mean(5, r) and mean(5, g) > mean(5, b)  # green canopy
    assert mean(9, b) > mean(9, r)  # dark, bluish water
    assert mean(6, c["inten"]) > mean(2, c["inten"]) > mean(9, c["inten"])
    assert (c["ret"] >= 1).all() and (c["ret"] <= c["nret"]).all()
    assert (c["ret"][c["cls"] == 5] == 1).all()  # canopy: first returns
    assert (c["ret"] == 2).any()  # some pulses reach the ground under the trees


def test_same_seed_same_points(river_window, tmp_path):
    dem, gpkg, d, files = river_window
    with rasterio.open(dem) as ds:
        bb = ds.bounds
    first = files[0]
    x0, y0 = (float(v) for v in first.stem.split("_")[1:3])
    # a smaller window over the first tile gives exactly its points
    window = (max(x0, bb.left + 20), max(y0, bb.bottom + 20), min(x0 + 100, bb.right - 20), min(y0 + 100, bb.top - 20))
    again = write_sample_pointcloud(tmp_path, window, dem, gpkg, d / "ortho.tif", 8.0, 100.0, 0)
    a, b = laspy.read(first), laspy.read(again[0])
    np.testing.assert_array_equal(a.points.array, b.points.array)


def test_merged_las(river_window, tmp_path):
    dem, gpkg, d, files = river_window
    with rasterio.open(dem) as ds:
        b = ds.bounds
    bounds = (b.left + 20, b.bottom + 20, b.right - 20, b.top - 20)
    merged = write_sample_pointcloud(tmp_path, bounds, dem, gpkg, d / "ortho.tif", 8.0, 100.0, 0, compress=False, merge="all.las")
    assert [p.name for p in merged] == ["all.las"]
    with laspy.open(merged[0]) as r:
        assert not r.header.are_points_compressed
        assert r.header.point_count == sum(laspy.open(f).header.point_count for f in files)


def test_colours_are_the_orthophoto_and_vegetation_grows_where_it_is_green(river_window):
    _, _, d, files = river_window
    c = _columns(files)
    with rasterio.open(d / "ortho.tif") as ds:
        rgb = ds.read()
        t = ds.transform
    cols = np.floor((c["x"] - t.c) / t.a).astype(np.int64)
    rows = np.floor((c["y"] - t.f) / t.e).astype(np.int64)
    want = rgb[:, rows, cols].T.astype(np.int64) * 257
    got = np.stack([c["r"], c["g"], c["b"]], axis=1).astype(np.int64)
    # the pixel under the point (a point on a pixel edge may take its neighbour)
    assert (got == want).all(axis=1).mean() > 0.999
    r, g, b = (want[:, k] // 257 for k in range(3))
    low = np.isin(c["cls"], [3, 4]) & (c["ret"] == 1) & (c["nret"] == 1)  # grass and shrubs
    assert ((g > r + 6) & (g > b + 6))[low].all()


def test_scan_order_and_windows_inside_a_tile(river_window, tmp_path):
    """Points come band by band (GPS time increasing), and a window that cuts a tile's bands gives
    exactly the tile's points inside it."""
    dem, gpkg, d, files = river_window
    tile = laspy.read(files[0])
    t = np.asarray(tile.gps_time)
    assert (np.diff(t) >= 0).all()
    x0, y0 = (float(v) for v in files[0].stem.split("_")[1:3])
    xs, ys = np.asarray(tile.x), np.asarray(tile.y)
    lo_x, lo_y = max(x0, xs.min()) + 13.3, max(y0, ys.min()) + 21.7
    window = (lo_x, lo_y, lo_x + 40.0, lo_y + 30.0)
    part = laspy.read(write_sample_pointcloud(tmp_path, window, dem, gpkg, d / "ortho.tif", 8.0, 100.0, 0)[0])
    inside = (xs >= window[0]) & (xs < window[2]) & (ys >= window[1]) & (ys < window[3])
    assert inside.sum() > 5000
    np.testing.assert_array_equal(part.points.array, tile.points.array[inside])


def _watery(rgb: np.ndarray) -> np.ndarray:
    """bool: the orthophoto's water colour (blue-grey; the banks, fields and roofs are redder)."""
    r, b = rgb[..., 0].astype(np.int16), rgb[..., 2].astype(np.int16)
    return b > r + 15


def test_orthophoto_dem_and_lidar_agree_on_the_river_up_to_its_shore(river_window):
    """Across the river, every 5 m: the orthophoto paints water exactly where the DEM lies below
    the water and the lidar finds water (class 9), but within a pixel or two of the shore."""
    dem, gpkg, d, files = river_window
    with rasterio.open(d / "ortho.tif") as ds:
        rgb = np.moveaxis(ds.read(), 0, -1)
        t = ds.transform
    rows = np.arange(rgb.shape[0])
    cols = np.arange(0, rgb.shape[1], 10)
    px = t.c + (cols + 0.5) * t.a
    py = t.f + (rows + 0.5) * t.e
    gx, gy = np.meshgrid(px, py)
    painted = _watery(rgb[:, cols])
    river = in_river(gx, gy)
    dr = river_distance(gx, gy)
    near_shore = np.abs(dr - RIVER_HALF_WIDTH) < 2 * t.a
    assert river.sum() > 1000 and (~river & (dr < 100)).sum() > 1000
    # the orthophoto's river is terrain's river: no water colour on the dry banks, no dry strip
    assert (painted == river)[~near_shore & (dr < 100)].all()
    # and the DEM's: below the water surface inside the shore, above it outside
    ground = sample_dem(dem, gx.ravel(), gy.ravel(), read_footprints(gpkg).crs).reshape(gx.shape)
    assert ((ground < water_level(gx)) == river)[~near_shore].all()
    # the lidar's water (class 9) is what the orthophoto paints under it
    c = _columns(files)
    col = np.floor((c["x"] - t.c) / t.a).astype(np.int64)
    row = np.floor((c["y"] - t.f) / t.e).astype(np.int64)
    under = _watery(rgb[row, col])
    far = np.abs(river_distance(c["x"], c["y"]) - RIVER_HALF_WIDTH) >= 2 * t.a
    assert (c["cls"] == 9).sum() > 1000
    assert ((c["cls"] == 9) == under)[far].all()


def _plain_records(tile, x, y, t, u, g) -> np.ndarray:
    """The per-point formulas of the lidar as plain numpy passes over the block (what the
    compiled passes replaced, kept here as their reference)."""
    from cim.samplecity.pointcloud import _INTENSITY, _RECORD, ROOF_RES, TREE_CELL, _green

    job, n = tile.job, len(x)
    ground = tile.ground(x, y)
    z = ground + 0.02 * g[:, 0]
    cls = np.full(n, 2, dtype=np.uint8)
    ret, nret = np.ones(n, dtype=np.uint8), np.ones(n, dtype=np.uint8)
    roof = np.zeros(n, dtype=bool)
    if tile.roof_ids is not None:
        rows, cols = tile.roof_shape
        c = np.minimum(((x - tile.roof_x0) * (1.0 / ROOF_RES)).astype(np.int64), cols - 1)
        r = np.minimum(((tile.roof_y1 - y) * (1.0 / ROOF_RES)).astype(np.int64), rows - 1)
        bid = tile.roof_ids[r * cols + c] - 1
        roof = bid >= 0
        z[roof] = job.roof_z[bid[roof]] + 0.03 * g[roof, 0]
        cls[roof] = 6
    water = np.zeros(n, dtype=bool)
    near = np.flatnonzero((y > tile.river[0]) & (y < tile.river[1]) & ~roof)
    near = near[in_river(x[near], y[near])]
    water[near] = True
    z[near] = water_level(x[near]) + 0.015 * g[near, 0]
    cls[near] = 9
    red, green, blue = tile.colours(x, y)
    free = ~roof & ~water
    cell = (np.floor(y / TREE_CELL).astype(np.int64) - tile.c0y) * tile.ncx + (np.floor(x / TREE_CELL).astype(np.int64) - tile.c0x)
    k = np.flatnonzero(free & tile.has_tree[cell])
    kc = cell[k]
    dist = np.hypot(x[k] - tile.tree_x[kc], y[k] - tile.tree_y[kc]) / tile.radius[kc]
    k, kc, dist = k[dist < 1.0], kc[dist < 1.0], dist[dist < 1.0]
    in_crown = np.zeros(n, dtype=bool)
    in_crown[k] = True
    first = u[k, 1] < 45875
    top, th = k[first], tile.height[kc[first]]
    z[top] = ground[top] + th - 0.45 * th * dist[first] ** 2 + 0.25 * g[top, 1]
    cls[top] = np.where(th > 7.0, 5, 4)
    nret[k] = np.where(u[k, 2] < 32768, 2, 3)
    ret[k] = np.where(first, 1, nret[k])
    low = np.flatnonzero(free & ~in_crown & _green(red, green, blue))
    shrub = u[low, 3] < 16384
    grass, shrub = low[~shrub], low[shrub]
    z[grass] += 0.05 + 0.3 / 65536.0 * u[grass, 3]
    cls[grass] = 3
    z[shrub] += 0.5 + 1.5 / 65536.0 * u[shrub, 2]
    cls[shrub] = 4
    bright = (red.astype(np.float32) + green + blue) * np.float32(1 / 384.0) - np.float32(1.0)
    intensity = _INTENSITY[cls] * (1.0 + 0.25 * bright) * np.where(ret > 1, 0.6, 1.0) + 1500.0 * g[:, 1]
    idx = np.flatnonzero(~water | (u[:, 0] < 19661))
    out = np.zeros(len(idx), dtype=_RECORD)
    ox, oy, oz = job.offsets
    out["X"], out["Y"], out["Z"] = np.rint((x[idx] - ox) * 1000.0), np.rint((y[idx] - oy) * 1000.0), np.rint((z[idx] - oz) * 1000.0)
    out["intensity"] = np.clip(intensity[idx], 0, 65535)
    out["bit_fields"] = ret[idx] | (nret[idx] << 4)
    out["classification"] = cls[idx]
    out["red"], out["green"], out["blue"] = red[idx] * np.uint16(257), green[idx] * np.uint16(257), blue[idx] * np.uint16(257)
    out["gps_time"] = ((job.ty % 1000) * 1000 + job.tx % 1000) * 1000.0 + t[idx]
    return out


def test_compiled_records_are_the_plain_formulas_bit_for_bit(river_window):
    """The lidar's compiled per-point passes give the records of the plain numpy formulas, every
    byte, on tiles with roofs, the river, trees, grass and shrubs (the sample city's lidar did
    not change when they replaced them)."""
    from cim.samplecity.pointcloud import _bands, _Tile, survey_jobs

    dem, gpkg, d, _ = river_window
    with rasterio.open(dem) as ds:
        b = ds.bounds
    jobs = survey_jobs(d / "unused", (b.left + 20, b.bottom + 20, b.right - 20, b.top - 20), dem, gpkg, d / "ortho.tif", 8.0, 100.0, 0)
    seen: set[int] = set()
    for job in jobs:
        tile = _Tile(job)
        for block in _bands(job):
            got, want = tile.records(*block), _plain_records(tile, *block)
            assert got.dtype == want.dtype and len(got) == len(want) > 0
            assert got.tobytes() == want.tobytes()
            seen |= set(np.unique(got["classification"]).tolist())
    assert {2, 3, 4, 5, 6, 9} <= seen
