"""The sample city's lidar agrees with its DEM, its footprints and its river."""

from __future__ import annotations

from pathlib import Path

import laspy
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from cim.samplecity.pointcloud import write_sample_pointcloud
from cim.samplecity.terrain import dem_grid, valley_centre
from cim.sources.dem import sample_dem
from cim.sources.footprints import read_footprints

# a window across the river, 300 x 240 m, east of the city centre
X0, Y0 = 566600.0, 3827900.0
W, H = 300.0, 240.0


@pytest.fixture(scope="module")
def river_window(tmp_path_factory) -> tuple[Path, Path, Path, list[Path]]:
    d = tmp_path_factory.mktemp("riverwindow")
    yc = float(valley_centre(np.array(X0 + W / 2)))
    xmin, ymin = X0, round(yc - H / 2)
    xmax, ymax = xmin + W, ymin + H
    dem = d / "dem.tif"
    grid = dem_grid(xmin - 20, ymin - 20, xmax + 20, ymax + 20, 1.0)
    with rasterio.open(dem, "w", driver="GTiff", width=grid.shape[1], height=grid.shape[0], count=1, dtype="float32",
                       crs="EPSG:4544", transform=from_origin(xmin - 20, ymax + 20, 1.0, 1.0)) as ds:
        ds.write(grid, 1)
    # two buildings on the north bank, away from the water
    boxes = [shapely.box(xmin + 20, ymax - 70, xmin + 60, ymax - 30), shapely.box(xmin + 150, ymax - 80, xmin + 175, ymax - 40)]
    gpkg = d / "buildings.gpkg"
    pyogrio.raw.write(str(gpkg), geometry=shapely.to_wkb(np.array(boxes, dtype=object)),
                      field_data=[np.array(["b1", "b2"], dtype=object), np.array([18.0, 45.5])], fields=["id", "height"],
                      layer="buildings", driver="GPKG", geometry_type="Polygon", crs="EPSG:4544")
    files = write_sample_pointcloud(d / "lidar", (xmin, ymin, xmax, ymax), dem, gpkg, 8.0, 100.0, 0)
    return dem, gpkg, d, files


def _columns(files: list[Path]) -> dict[str, np.ndarray]:
    cols: dict[str, list] = {k: [] for k in ("x", "y", "z", "cls", "ret", "nret", "inten", "r", "g", "b")}
    for f in files:
        las = laspy.read(f)
        for k, v in (("x", las.x), ("y", las.y), ("z", las.z), ("cls", las.classification), ("ret", las.return_number),
                     ("nret", las.number_of_returns), ("inten", las.intensity), ("r", las.red), ("g", las.green), ("b", las.blue)):
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
    # water: where the valley is lowest, on a flat surface above the bed
    w = c["cls"] == 9
    assert (np.abs(c["y"][w] - valley_centre(c["x"][w])) < 32.0).all()
    assert c["z"][w].std() < 0.5
    assert (c["z"][w] < np.percentile(c["z"][g], 20)).mean() > 0.9  # the lowest surface around
    # high vegetation stands above the ground
    hv = c["cls"] == 5
    assert (c["z"][hv] - ground[hv]).min() > 2.0


def test_colours_intensities_and_returns_are_plausible(river_window):
    _, _, _, files = river_window
    c = _columns(files)
    r, g, b = (c[k].astype(np.float64) / 257.0 for k in ("r", "g", "b"))
    mean = lambda cls, a: a[c["cls"] == cls].mean()  # noqa: E731
    assert mean(2, r) > mean(2, b)  # tan loess
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
    again = write_sample_pointcloud(tmp_path, window, dem, gpkg, 8.0, 100.0, 0)
    a, b = laspy.read(first), laspy.read(again[0])
    np.testing.assert_array_equal(a.points.array, b.points.array)


def test_merged_las(river_window, tmp_path):
    dem, gpkg, _, files = river_window
    with rasterio.open(dem) as ds:
        b = ds.bounds
    bounds = (b.left + 20, b.bottom + 20, b.right - 20, b.top - 20)
    merged = write_sample_pointcloud(tmp_path, bounds, dem, gpkg, 8.0, 100.0, 0, compress=False, merge="all.las")
    assert [p.name for p in merged] == ["all.las"]
    with laspy.open(merged[0]) as r:
        assert not r.header.are_points_compressed
        assert r.header.point_count == sum(laspy.open(f).header.point_count for f in files)
