import hashlib

import numpy as np
import pyogrio
import rasterio
import shapely

import cim
from cim.samplecity.terrain import CENTRE_E, RIVER_HALF_WIDTH, WATER_DEPTH, ground_height, in_river, valley_centre, water_level


def _digest(path):
    meta, _, wkb, fields = pyogrio.raw.read(path)
    h = hashlib.sha256()
    for g in wkb:
        h.update(g)
    for col in fields:
        h.update(repr(list(col)).encode())
    return h.hexdigest()


def test_tiny_is_deterministic_and_a_window_of_the_city(tiny_sources, tmp_path):
    again = cim.sample("tiny", tmp_path / "again")
    assert _digest(again.buildings) == _digest(tiny_sources.buildings)
    with rasterio.open(again.dem) as a, rasterio.open(tiny_sources.dem) as b:
        assert np.array_equal(a.read(1), b.read(1))
    # every file, byte for byte: IFC GlobalIds, relationship sets, header and GeoPackage time
    # stamps included
    written = sorted(p.relative_to(again.root) for p in again.root.rglob("*") if p.is_file())
    assert len(written) > 20
    assert [rel for rel in written if (again.root / rel).read_bytes() != (tiny_sources.root / rel).read_bytes()] == []
    other = cim.sample("tiny", tmp_path / "seed1", seed=1)
    assert _digest(other.buildings) != _digest(tiny_sources.buildings)


def test_dem_is_a_valley_in_cgcs2000(tiny_sources):
    with rasterio.open(tiny_sources.dem) as ds:
        assert ds.crs.to_epsg() == 4544
        assert ds.res == (1.0, 1.0)
        z = ds.read(1)
        assert 1080 < z.min() < z.max() < 1300
    # the whole city: valley floor about 1,100 m, hills to about 1,700 m
    x = np.linspace(566062 - 7500, 566062 + 7500, 200)
    y = np.linspace(3828235 - 4000, 3828235 + 4000, 200)
    gx, gy = np.meshgrid(x, y)
    z = ground_height(gx, gy)
    assert 1080 < z.min() < 1120 and 1600 < z.max() < 1800
    # the centre (the valley) is low, north and south edges are high
    assert z[100].mean() < z[0].mean() - 300 and z[100].mean() < z[-1].mean() - 300


def test_the_dems_river_is_in_river_along_the_whole_city():
    """The DEM's channel holds the river that the orthophoto and the lidar show: the ground lies
    below the water surface exactly where ``in_river``, on both banks, from one end of the city
    to the other, whatever the seed."""
    assert 30.0 < RIVER_HALF_WIDTH < 35.0  # a river about 64 m wide
    x = np.linspace(CENTRE_E - 7500, CENTRE_E + 7500, 151)
    off = np.arange(-200.0, 200.0, 0.25) + 0.125
    gx, gy = np.meshgrid(x, off)
    gy = gy + valley_centre(gx)
    shore = np.abs(np.abs(off) - RIVER_HALF_WIDTH)[:, None] < 0.01
    for seed in (0, 1):
        wet = ground_height(gx, gy, seed) < water_level(gx)
        assert (wet == in_river(gx, gy))[~np.broadcast_to(shore, wet.shape)].all()
        # the water is WATER_DEPTH deep at the centreline
        np.testing.assert_allclose(water_level(x) - ground_height(x, valley_centre(x), seed), WATER_DEPTH, atol=1e-9)


def test_footprints_are_realistic(tiny_sources):
    meta, _, wkb, fields = pyogrio.raw.read(tiny_sources.buildings)
    cols = dict(zip(meta["fields"], fields))
    assert meta["crs"] == "EPSG:4544"
    assert list(cols) == [
        "id",
        "name",
        "name_en",
        "use",
        "floors",
        "height",
        "year_built",
        "address",
        "address_en",
        "district",
        "district_en",
    ]
    geoms = shapely.from_wkb(wkb)
    assert shapely.is_valid(geoms).all()
    assert len(set(cols["id"])) == len(geoms) == tiny_sources.n_buildings
    assert {"residential", "commercial"} <= set(cols["use"])
    assert (cols["height"] >= cols["floors"] * 2.9).all() and (cols["height"] < cols["floors"] * 7).all()
    assert (cols["year_built"] >= 1950).all() and (cols["year_built"] <= 2025).all()
    # no two buildings overlap
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="overlaps")
    assert len(a) == 0
    assert (shapely.get_num_interior_rings(geoms[shapely.get_type_id(geoms) == 3]) > 0).any()
    assert (shapely.get_type_id(geoms) == 6).any()


def test_orthophoto_agrees_with_footprints_and_dem(tiny_sources):
    from cim.samplecity.ortho import ROOF_COLOURS

    with rasterio.open(tiny_sources.ortho) as ortho, rasterio.open(tiny_sources.dem) as dem:
        assert ortho.crs.to_epsg() == 4544 and ortho.count == 3 and ortho.res == (0.5, 0.5)
        assert tuple(round(v) for v in ortho.bounds) == tuple(round(v) for v in dem.bounds)
        rgb = ortho.read()
        meta, _, wkb, fields = pyogrio.raw.read(tiny_sources.buildings)
        uses = dict(zip(meta["fields"], fields))["use"]
        geoms = shapely.from_wkb(wkb)
        points = shapely.point_on_surface(geoms)
        rows, cols = rasterio.transform.rowcol(ortho.transform, shapely.get_x(points), shapely.get_y(points))
        matched = 0
        for r, c, use in zip(rows, cols, uses):
            got = rgb[:, r, c].astype(float)
            want = np.array(ROOF_COLOURS[use], dtype=float)
            # the roof colour up to a brightness jitter of ±15 % (and JPEG loss)
            scale = got.sum() / want.sum()
            if 0.8 < scale < 1.2 and np.abs(got - want * scale).max() < 14:
                matched += 1
        assert matched >= 0.95 * len(geoms)


def test_survey_preset_flies_the_whole_city_at_survey_density():
    from cim.samplecity.generate import PRESETS
    from cim.samplecity.sites import lidar_bounds

    survey, city = PRESETS["survey"], PRESETS["city"]
    assert (survey.width, survey.height) == (city.width, city.height) == (15000.0, 8000.0)
    assert (survey.dem_res, survey.ortho_res, survey.lidar_density) == (1.0, 0.5, 8.0)
    bounds = (0.0, 0.0, 15000.0, 8000.0)
    assert lidar_bounds(bounds, "survey") == bounds  # the whole city, not city's valley strip
    w, s, e, n = lidar_bounds(bounds, "city")
    assert (e - w) * (n - s) == 12.5e6
    # 120 km² at 8 pts/m², less the river's swallowed returns, at 8.4 bytes a point
    assert 0.8 * 120e6 * 8 * 8.4 < survey.disk < 120e6 * 8 * 8.4 * 1.05


def test_a_preset_the_disk_cannot_hold_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    import pytest

    from cim.errors import CimIOError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**10, 10**10 - 10**9, 10**9))
    with pytest.raises(CimIOError, match=r"survey preset needs about 8\.2 GB of disk, and only 1\.0 GB is free"):
        cim.sample("survey", tmp_path / "survey")
    assert not any((tmp_path / "survey" / "data").iterdir())  # nothing written


def test_the_worker_pipeline_writes_the_same_bytes(tiny_sources, tmp_path, monkeypatch):
    """Past the small presets the DEM, the BIM models and the lidar's tiles are made in two
    worker processes, beside the footprints, the orthophoto and the mesh: ``tiny`` made that way
    is the ``tiny`` made in one process, byte for byte, and every stage reports when it ran."""
    import laspy

    import cim.samplecity.generate as generate

    monkeypatch.setattr(generate, "BIM_ASIDE_PIXELS", 0)  # the pool, as for district and up
    pooled = cim.sample("tiny", tmp_path / "pooled")
    written = sorted(p.relative_to(pooled.root) for p in pooled.root.rglob("*") if p.is_file())
    made = sorted(p.relative_to(tiny_sources.root) for p in tiny_sources.root.rglob("*") if p.is_file())
    assert written == [rel for rel in made if rel.name != "city-small-tiles.toml"]  # (the tiny_city fixture's recipe)
    assert [rel for rel in written if (pooled.root / rel).read_bytes() != (tiny_sources.root / rel).read_bytes()] == []
    for city in (pooled, tiny_sources):
        stages = city.stages
        assert set(stages) == {"dem", "footprints", "ortho", "bim", "lidar", "mesh"}
        assert all(s.start <= s.end and s.cpu >= 0.0 for s in stages.values())
        # the orthophoto waits for the DEM; the lidar for the orthophoto
        assert stages["dem"].end <= stages["ortho"].start and stages["ortho"].end <= stages["lidar"].start
        assert stages["lidar"].cpu > 0.0  # its tiles' CPU, wherever they were made
    points = sum(laspy.open(f).header.point_count for f in pooled.lidar)
    assert points > 100_000
