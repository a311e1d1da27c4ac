"""Building heights from the point cloud (issue 16): the tiny sample city's footprints with their
heights removed get them back from its lidar.

What the sample's lidar holds (cim.samplecity.pointcloud): roofs (class 6) at the building's base
(the lowest DEM height at its corners, as the buildings layer stands it) plus its ``height``, with
N(0, 0.03 m) noise; ground (class 2) on the DEM with N(0, 0.02 m) noise. So:

- ``h_roof_50`` is the roof within 0.05 m: the median of n >= 37 roof points has a standard error
  of 1.25 * 0.03 / sqrt(37) = 0.006 m; 0.05 m leaves room for the roof raster's 0.5 m cells
  giving a neighbour's roof to a point on a shared edge;
- ``h_roof_90`` is the roof plus the noise's 90th percentile (1.2816 * 0.03 = 0.038 m), within the
  same 0.05 m;
- with ``ground_from = "dem"`` the height (roof median minus the same DEM base) is the generated
  height within 0.05 m;
- ``h_ground`` from ground points lies between the lowest and highest DEM height in the
  footprint's ring (sampled on a 0.25 m lattice), give or take 0.1 m (5 sigma of the noise).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import laspy
import numpy as np
import pyogrio
import pytest
import shapely
from pyproj import CRS, Transformer

import cim
from cim.engines import engine_from
from cim.errors import CimCRSError, CimInputError, CimIOError
from cim.layers import registry
from cim.layers.base import City, LayerRun
from cim.sources.dem import read_dem_window
from cim.sources.footprints import footprint_rings, read_footprints
from cim.sources.pointcloud.heights import footprint_heights
from cim.warnings import DefaultValueWarning
from tests.helpers import REPO
from tests.helpers.gltf import validate_glbs

pytestmark = pytest.mark.filterwarnings("ignore::cim.warnings.OutsideDataWarning")  # X0 lies off the DEM on purpose

TOOL = REPO.parent / "shared" / "tools" / "validate-3dtiles"
ROOF_TOL = 0.05
GROUND_TOL = 0.1
#: float32 heights relative to the floor of the lowest z: 2**-24 of at most 2 km
KEY_BOUND = 2.0**-24 * 2000.0


def _strip_heights(src: Path, dst: Path, extra: tuple[shapely.Geometry, ...] = (), strip: tuple[str, ...] = ("height", "floors")) -> Path:
    """The footprints without ``height`` and ``floors`` (plus ``extra`` footprints, ids X0, X1...,
    with the first footprint's other attributes)."""
    meta, _, wkb, fields = pyogrio.raw.read(src)
    names = list(meta["fields"])
    keep = [i for i, n in enumerate(names) if n not in strip]
    data = [np.asarray(fields[i]) for i in keep]
    if extra:
        wkb = np.concatenate([wkb, shapely.to_wkb(np.array(extra, dtype=object))])
        for j, i in enumerate(keep):
            add = [f"X{k}" for k in range(len(extra))] if names[i] == "id" else [data[j][0]] * len(extra)
            data[j] = np.concatenate([data[j], np.array(add, dtype=data[j].dtype)])
    pyogrio.raw.write(dst, wkb, data, [names[i] for i in keep], crs=meta["crs"], geometry_type=meta["geometry_type"], driver="GPKG")
    return dst


@pytest.fixture(scope="module")
def sample(tiny_sources, tmp_path_factory):
    """(sources, footprints without heights plus one footprint away from the lidar, truth)."""
    root = tmp_path_factory.mktemp("heights")
    table = read_footprints(tiny_sources.buildings)
    lidar_box = _lidar_box(tiny_sources.lidar)
    away = shapely.box(lidar_box[2] + 50, lidar_box[3] + 50, lidar_box[2] + 70, lidar_box[3] + 60)
    stripped = _strip_heights(tiny_sources.buildings, root / "no-heights.gpkg", (away,))
    xy, ro, po, pf = footprint_rings(table.geometries)
    starts = ro[po[np.searchsorted(pf, np.arange(len(table)))]]
    dem = read_dem_window(tiny_sources.dem, table.bounds, table.crs)
    base = np.fmin.reduceat(dem.sample(xy[:, 0], xy[:, 1], table.crs), starts)
    truth = {"ids": table.ids, "base": base, "height": np.asarray(table.columns["height"], dtype=np.float64)}
    return tiny_sources, stripped, truth


def _lidar_box(files: list[Path]) -> tuple[float, float, float, float]:
    heads = [laspy.open(f).header for f in files]
    return (min(h.mins[0] for h in heads), min(h.mins[1] for h in heads), max(h.maxs[0] for h in heads), max(h.maxs[1] for h in heads))


def _plan(source: Path, out: Path, **options):
    """The buildings layer's plan (heights, columns, warnings) without writing tiles."""
    builder = registry.get("buildings")
    opts = builder.options(options, where="test")
    run = LayerRun("buildings", "buildings", out, City(out, engine_from(None, workers=1)))
    return builder.plan([source], opts, run)


def _rows(plan, ids):
    index = {fid: i for i, fid in enumerate(plan.table.ids)}
    return np.array([index[i] for i in ids])


def test_heights_match_the_generated_ones(sample, tmp_path):
    src, stripped, truth = sample
    plan = _plan(stripped, tmp_path, heights_from=src.lidar[0].parent, dem=src.dem, ground_from="dem")
    rows = _rows(plan, truth["ids"])
    cols = plan.table.columns
    roof = truth["base"] + truth["height"]
    assert np.all(cols["n_points"][rows] >= 37)
    np.testing.assert_allclose(cols["h_roof_50"][rows], roof, atol=ROOF_TOL, rtol=0)
    np.testing.assert_allclose(cols["h_roof_90"][rows], roof + 1.2816 * 0.03, atol=ROOF_TOL, rtol=0)
    np.testing.assert_allclose(cols["h_ground"][rows], truth["base"], atol=1e-9, rtol=0)
    height = plan.prep.top - plan.prep.base
    np.testing.assert_allclose(height[rows], truth["height"], atol=ROOF_TOL, rtol=0)


def test_ground_from_points_lies_in_the_rings_dem_range(sample, tmp_path):
    src, stripped, truth = sample
    plan = _plan(stripped, tmp_path, heights_from=src.lidar[0].parent, ground_buffer=3.0)
    table = plan.table
    rows = _rows(plan, truth["ids"])
    ground = table.columns["h_ground"][rows]
    dem = read_dem_window(src.dem, table.bounds, table.crs)
    checked = 0
    for k, i in enumerate(rows):
        g = table.geometries[i]
        if not np.isfinite(ground[k]):
            continue
        x0, y0, x1, y1 = g.bounds
        gx, gy = np.meshgrid(np.arange(x0 - 3, x1 + 3, 0.25), np.arange(y0 - 3, y1 + 3, 0.25))
        pts = shapely.points(gx.ravel(), gy.ravel())
        ring = shapely.dwithin(g, pts, 3.0) & ~shapely.covers(g, pts)
        z = dem.sample(gx.ravel()[ring], gy.ravel()[ring], table.crs)
        assert np.nanmin(z) - GROUND_TOL <= ground[k] <= np.nanmax(z) + GROUND_TOL, table.ids[i]
        checked += 1
    assert checked >= len(rows) - 1
    # the height is the roof median over that ground; stood on it without a DEM
    height = plan.prep.top - plan.prep.base
    ok = np.isfinite(ground) & np.isfinite(table.columns["h_roof_50"][rows])
    assert ok.sum() == len(rows) - 1  # TS000069 has one ground point in its ring
    np.testing.assert_allclose(height[rows][ok], (table.columns["h_roof_50"][rows] - ground)[ok], rtol=0, atol=1e-9)
    np.testing.assert_allclose(plan.prep.base[rows][ok], ground[ok], rtol=0, atol=1e-9)


def test_percentiles_are_numpys_on_the_points_shapely_selects(sample):
    src, stripped, _ = sample
    table = read_footprints(stripped)
    found = footprint_heights(
        table.geometries, table.crs, [src.lidar[0].parent], roof_percentiles=(50.0, 90.0), ground_percentile=10.0, buffer=3.0
    )
    las = [laspy.read(f) for f in src.lidar]
    x = np.concatenate([np.asarray(a.x) for a in las])
    y = np.concatenate([np.asarray(a.y) for a in las])
    z = np.concatenate([np.asarray(a.z) for a in las])
    cls = np.concatenate([np.asarray(a.classification) for a in las])
    pts = shapely.points(x, y)
    tree = shapely.STRtree(pts)
    for i, g in enumerate(table.geometries):
        near = tree.query(g, predicate="dwithin", distance=3.0)
        inside = shapely.covers(g, pts[near])
        roof = z[near[inside & (cls[near] == 6)]]
        ground = z[near[~inside & (cls[near] == 2)]]
        assert found.n_roof[i] == len(roof) and found.n_ground[i] == len(ground), table.ids[i]
        if len(roof):
            np.testing.assert_allclose(found.roof[i], np.percentile(roof, [50.0, 90.0]), atol=KEY_BOUND, rtol=0)
        else:
            assert np.isnan(found.roof[i]).all()
        if len(ground):
            assert abs(found.ground[i] - np.percentile(ground, 10.0)) <= KEY_BOUND
        else:
            assert np.isnan(found.ground[i])


def test_too_few_points_take_the_default_and_are_counted(sample, tmp_path):
    src, stripped, _ = sample
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = _plan(stripped, tmp_path, heights_from=src.lidar[0].parent, default_height=7.5, min_points=3)
    cols = plan.table.columns
    found = footprint_heights(plan.table.geometries, plan.table.crs, [src.lidar[0].parent])
    expect = (found.n_roof < 3) | (found.n_ground < 3)
    assert np.array_equal(np.isnan(cols["h_roof_50"]), found.n_roof < 3)
    assert np.array_equal(np.isnan(cols["h_ground"]), found.n_ground < 3)
    away = np.flatnonzero(plan.table.ids == "X0")[0]
    assert expect[away] and cols["n_points"][away] == 0 and np.isnan(cols["h_roof_50"][away])
    height = plan.prep.top - plan.prep.base
    assert np.all(height[expect] == 7.5)
    assert np.all(height[~expect] != 7.5)
    notes = [m for c, m in plan.prep.warnings if c is DefaultValueWarning]
    assert len(notes) == 1 and notes[0].startswith(f"{int(expect.sum())} of {len(plan.table)} building(s)"), notes
    assert "X0" in notes[0]
    assert not caught  # reported by the build, through LayerRun.warn


def test_determinism_across_memory_workers_and_builds(sample, tmp_path):
    src, stripped, _ = sample
    table = read_footprints(stripped)
    runs = [
        footprint_heights(table.geometries, table.crs, [src.lidar[0].parent]),
        footprint_heights(table.geometries, table.crs, list(reversed(src.lidar)), memory=1 << 14, batch=5000, workers=1),
    ]
    for a in ("roof", "ground", "n_roof", "n_ground"):
        assert np.array_equal(getattr(runs[0], a), getattr(runs[1], a), equal_nan=True), a
    outs = []
    for k, workers in enumerate((1, 2)):
        out = tmp_path / f"b{k}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DefaultValueWarning)
            cim.convert("buildings", stripped, out, heights_from=src.lidar[0].parent, dem=src.dem, workers=workers)
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file() and p.suffix in (".glb", ".json"))
    assert files
    for rel in files:
        if rel.name == "city.json":
            continue
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel


def test_layer_output_validates_and_carries_the_attributes(sample, tmp_path):
    src, stripped, _ = sample
    out = tmp_path / "city"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DefaultValueWarning)
        report = cim.convert("buildings", stripped, out, heights_from=src.lidar[0].parent, dem=src.dem, max_features=40)
    layer = report.layers[0]
    for name, kind in (("h_ground", "FLOAT64"), ("h_roof_50", "FLOAT64"), ("h_roof_90", "FLOAT64"), ("n_points", "INT32")):
        assert layer.schema[name] == kind
    assert any(isinstance(w, DefaultValueWarning) and "X0" in str(w) for w in layer.warnings)
    glbs = sorted(out.rglob("*.glb"))
    assert glbs
    reports = validate_glbs(glbs)
    assert not [r for r in reports if r["errors"] or r["warnings"]], reports[:3]
    if not TOOL.exists() or shutil.which("npm") is None:
        pytest.skip(f"the CesiumGS 3d-tiles-validator is not at {TOOL} or npm is missing")
    proc = subprocess.run(
        [str(TOOL), str(out / "tileset.json"), str(tmp_path / "report.json")], capture_output=True, text=True, timeout=900
    )
    assert proc.stdout.startswith("errors=0 "), proc.stdout + proc.stderr


def test_recipe_takes_a_pointcloud_layers_source(sample, tmp_path):
    src, stripped, truth = sample
    recipe = tmp_path / "city.toml"
    recipe.write_text(
        f"""[city]
name = "t"
crs = "EPSG:4544"
[[layers]]
id = "lidar"
kind = "pointcloud"
source = "{src.lidar[0].parent}"
[[layers]]
id = "buildings"
kind = "buildings"
source = "{stripped}"
heights_layer = "lidar"
dem = "{src.dem}"
ground_from = "dem"
"""
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DefaultValueWarning)
        report = cim.build(recipe, tmp_path / "out")
    assert {r.id for r in report.layers} == {"lidar", "buildings"}
    assert "h_roof_50" in report.layers[1].schema
    bad = recipe.read_text().replace('heights_layer = "lidar"', 'heights_layer = "lidr"')
    recipe.write_text(bad)
    with pytest.raises(CimInputError, match="heights_layer 'lidr' is not a point-cloud layer.*lidar"):
        cim.build(recipe, tmp_path / "out2")


def test_options_are_checked():
    builder = registry.get("buildings")
    with pytest.raises(CimInputError, match="roof_height"):
        builder.options({"heights_from": "x.laz", "roof_height": "h_roof_75"})
    with pytest.raises(CimInputError, match="0..100"):
        builder.options({"roof_percentiles": [50, 120]})
    with pytest.raises(CimInputError, match="ground_from"):
        builder.options({"ground_from": "lidar"})
    opts = builder.options({"heights_from": ["a.laz", "b/"], "roof_percentiles": [25, 75], "roof_height": "h_roof_75"}, base=Path("/data"))
    assert opts.heights_from == (Path("/data/a.laz"), Path("/data/b"))


# -- bad inputs ---------------------------------------------------------------------------------


def test_missing_point_file(sample, tmp_path):
    _, stripped, _ = sample
    with pytest.raises(CimIOError, match="nowhere.laz: no such file"):
        _plan(stripped, tmp_path, heights_from=tmp_path / "nowhere.laz")
    with pytest.raises(CimIOError, match=r"\*.laz: no file matches"):
        _plan(stripped, tmp_path, heights_from=tmp_path / "*.laz")


def test_unclassified_points(sample, tmp_path):
    src, stripped, _ = sample
    las = laspy.read(src.lidar[1])
    las.classification = np.ones(len(las.points), dtype=np.uint8)  # "unclassified"
    las.write(tmp_path / "unclassified.las")
    with pytest.raises(CimInputError, match=r"unclassified.las hold no building \(6\) points \(classes found: 1: .*classified point cloud"):
        _plan(stripped, tmp_path, heights_from=tmp_path / "unclassified.las")


def test_points_in_another_crs_are_reprojected(sample, tmp_path):
    """The same lidar in UTM 48N (EPSG:32648) gives the same roofs (x, y reprojected; z kept)."""
    src, stripped, _ = sample
    t = Transformer.from_crs("EPSG:4544", "EPSG:32648", always_xy=True)
    folder = tmp_path / "utm"
    folder.mkdir()
    for f in src.lidar:
        las = laspy.read(f)
        x, y = t.transform(np.asarray(las.x), np.asarray(las.y))
        header = laspy.LasHeader(point_format=las.header.point_format.id, version="1.4")
        header.offsets = [float(np.floor(x.min())), float(np.floor(y.min())), 0.0]
        header.scales = [0.001, 0.001, 0.001]
        header.add_crs(CRS("EPSG:32648"))
        out = laspy.LasData(header)
        out.x, out.y, out.z = x, y, np.asarray(las.z)
        out.classification = np.asarray(las.classification)
        out.write(folder / f.name.replace(".laz", ".las"))
    table = read_footprints(stripped)
    a = footprint_heights(table.geometries, table.crs, [src.lidar[0].parent])
    b = footprint_heights(table.geometries, table.crs, [folder])
    ok = a.n_roof > 50
    assert ok.sum() > 100
    np.testing.assert_allclose(b.roof[ok], a.roof[ok], atol=0.02, rtol=0)


def test_real_las_without_crs_or_elsewhere(realdata, sample, tmp_path):
    """Real files: laspy's simple.las declares no CRS; autzen (Oregon, NAD83 HARN) does not
    overlap Tianshui, nor do the real footprints (Washington DC): no real pair overlaps."""
    _, stripped, _ = sample
    with pytest.raises(CimCRSError, match="laspy_simple.las: the LAS header declares no CRS"):
        _plan(stripped, tmp_path, heights_from=realdata / "pointcloud" / "laspy_simple.las")
    with pytest.raises(
        CimCRSError, match=r"no point cloud overlaps the footprints \(EPSG:4544.*laspy_autzen_trim.laz: .*Are the CRSs right\?"
    ):
        _plan(stripped, tmp_path, heights_from=realdata / "pointcloud" / "laspy_autzen_trim.laz")
    dc = realdata / "vector" / "osgearth_dcbuildings.shp"
    with pytest.raises(CimCRSError, match="no point cloud overlaps the footprints"):
        _plan(dc, tmp_path, heights_from=realdata / "pointcloud" / "laspy_autzen_trim.laz")


def test_cli_convert_heights_from(sample, tmp_path):
    """``cim convert buildings --heights-from GLOB``, as a user runs it (a fresh process)."""
    src, stripped, _ = sample
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pattern = str(src.lidar[0].parent / "*.laz")
    args = ["convert", "buildings", "--heights-from", pattern, "--roof-percentiles", "50,95,99", "--roof-height", "h_roof_95"]
    proc = subprocess.run(
        [sys.executable, "-m", "cim", *args, str(stripped), str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 of 129 building(s) have fewer than 3 roof points" in proc.stderr  # TS000069 and X0
    manifest = json.loads((tmp_path / "out" / "city.json").read_text())
    assert {"h_ground", "h_roof_50", "h_roof_95", "h_roof_99", "n_points"} <= set(manifest["layers"][0]["schema"])
    proc = subprocess.run(
        [sys.executable, "-m", "cim", *args[:3], str(tmp_path / "none.laz"), str(stripped), str(tmp_path / "out2")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "none.laz: no such file" in proc.stderr


def test_footprints_in_degrees_match_in_the_points_crs(sample, tmp_path):
    """Footprints in EPSG:4326 (GeoJSON's habit) are matched in the lidar's projected CRS: a ring
    buffer in degrees would mean nothing. Same counts as in EPSG:4544 but for points within
    reprojection round-off of an edge; same roofs within a millimetre."""
    src, stripped, _ = sample
    table = read_footprints(stripped)
    degrees = shapely.transform(table.geometries, lambda xy: np.column_stack(_lonlat(xy)))
    a = footprint_heights(table.geometries, table.crs, [src.lidar[0].parent])
    b = footprint_heights(degrees, CRS("EPSG:4326"), [src.lidar[0].parent])
    assert np.abs(a.n_roof - b.n_roof).max() <= 2
    ok = a.n_roof > 50
    np.testing.assert_allclose(b.roof[ok], a.roof[ok], atol=1e-3, rtol=0)


def _lonlat(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return Transformer.from_crs("EPSG:4544", "EPSG:4326", always_xy=True).transform(xy[:, 0], xy[:, 1])


def test_build_key_follows_the_height_options(sample, tmp_path):
    """A change of what decides the heights rebuilds; a change of the memory budget resumes."""
    src, stripped, _ = sample
    lidar = src.lidar[0].parent
    keys = {
        "base": _plan(stripped, tmp_path, heights_from=lidar).key,
        "memory": _plan(stripped, tmp_path, heights_from=lidar, heights_memory=1 << 20).key,
        "p90": _plan(stripped, tmp_path, heights_from=lidar, roof_height="h_roof_90").key,
        "buffer": _plan(stripped, tmp_path, heights_from=lidar, ground_buffer=4.0).key,
        "attributes": _plan(stripped, tmp_path).key,
    }
    assert keys["memory"] == keys["base"]
    assert len({keys[k] for k in ("base", "p90", "buffer", "attributes")}) == 4


def test_fallback_to_the_attributes(sample, tmp_path):
    """``heights_fallback = "attributes"``: a building with too few points keeps its ``height``
    attribute (TS000069 has one ground point in its ring; X0 lies away from the survey)."""
    src, _, truth = sample
    lidar_box = _lidar_box(src.lidar)
    away = shapely.box(lidar_box[2] + 50, lidar_box[3] + 50, lidar_box[2] + 70, lidar_box[3] + 60)
    with_heights = _strip_heights(src.buildings, tmp_path / "with-heights.gpkg", (away,), strip=())
    plan = _plan(with_heights, tmp_path, heights_from=src.lidar[0].parent, heights_fallback="attributes")
    height = plan.prep.top - plan.prep.base
    ids = list(plan.table.ids)
    attr = plan.table.columns["height"]
    for fid in ("TS000069", "X0"):
        i = ids.index(fid)
        assert height[i] == pytest.approx(attr[i], abs=1e-9) and attr[i] != 10.0
    rows = _rows(plan, [f for f in truth["ids"] if f != "TS000069"])
    np.testing.assert_allclose(height[rows], (plan.table.columns["h_roof_50"] - plan.table.columns["h_ground"])[rows], rtol=0, atol=1e-9)
    notes = [m for _, m in plan.prep.warnings]
    assert notes[0].startswith("2 of 129 building(s) have fewer than 3 roof points") and "used their attributes (TS000069, X0)" in notes[0]
    default = _plan(with_heights, tmp_path, heights_from=src.lidar[0].parent)
    assert (default.prep.top - default.prep.base)[ids.index("X0")] == pytest.approx(10.0, abs=1e-9)
