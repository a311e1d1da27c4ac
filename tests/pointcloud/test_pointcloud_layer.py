"""The point-cloud layer end to end: lossless, nested, valid, placed right, parallel without deadlock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import laspy
import numpy as np
import pytest
from pyproj import CRS

import cim
from cim.errors import CimCRSError
from cim.formats.tileset import box_bounds
from cim.kernels.frames import LocalFrame
from cim.layers.pointcloud import PointCloudInfo
from cim.sources.pointcloud import exact_enu, open_pointcloud
from cim.warnings import OutsideDataWarning
from tests.helpers import REPO
from tests.helpers.gltf import validate_glbs
from tests.helpers.pointcloud import id_points, load_layer, nearest_distance, quantization_step, walk, write_las

FRAME = LocalFrame(105.7208, 34.5802, 1150.0)


@pytest.fixture(scope="module")
def id_cloud(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """30,000 points, each with its id in its colour, split over two files."""
    d = tmp_path_factory.mktemp("idcloud")
    xyz, rgb = id_points(30_000)
    rng = np.random.default_rng(1)
    cls = rng.choice(np.array([2, 3, 5, 6, 9], np.uint8), 30_000)
    ret = rng.integers(1, 4, 30_000).astype(np.uint8)
    inten = rng.integers(0, 65536, 30_000).astype(np.uint16)
    write_las(
        d / "a.las", xyz[:20_000], rgb=rgb[:20_000], intensity=inten[:20_000], classification=cls[:20_000], return_number=ret[:20_000]
    )
    write_las(
        d / "b.laz", xyz[20_000:], rgb=rgb[20_000:], intensity=inten[20_000:], classification=cls[20_000:], return_number=ret[20_000:]
    )
    attrs = np.stack([cls, ret, inten.astype(np.int64)], axis=1)
    return d, xyz, attrs


@pytest.fixture(scope="module")
def built(id_cloud, tmp_path_factory):
    d, _, _ = id_cloud
    out = tmp_path_factory.mktemp("layer") / "points"
    result = cim.build_layer("pointcloud", [d], out, frame=FRAME, workers=1, leaf_points=2_000, chunk_points=6_000)
    return out, result


def _ids(tile: dict[str, np.ndarray]) -> np.ndarray:
    c = tile["colors"].astype(np.int64)
    return c[:, 0] | c[:, 1] << 8 | c[:, 2] << 16


def test_every_point_appears_exactly_once_where_it_belongs(id_cloud, built):
    d, xyz, attrs = id_cloud
    out, result = built
    assert result.count == 30_000 and result.kind == "pointcloud" and result.format == "3dtiles" and result.url == "tileset.json"
    _, tiles = load_layer(out)
    ids = np.concatenate([_ids(t) for t in tiles.values()])
    assert len(ids) == 30_000 and len(np.unique(ids)) == 30_000  # lossless: each input point once
    enu = exact_enu(CRS.from_epsg(4544), FRAME, xyz[:, 0], xyz[:, 1], xyz[:, 2])
    for uri, t in tiles.items():
        i = _ids(t)
        step = quantization_step((out / uri).read_bytes())
        # positions: within half a quantization step (plus the 0.1 mm staging grid and LAS 1 mm)
        assert np.abs(t["positions"] - enu[i]).max() <= step / 2 + 1e-3, uri
        np.testing.assert_array_equal(t["classification"], attrs[i, 0])
        np.testing.assert_array_equal(t["return_number"], attrs[i, 1])
        np.testing.assert_array_equal(t["intensity"], attrs[i, 2])


def test_tileset_structure(built):
    out, result = built
    ts, tiles = load_layer(out)
    assert ts["asset"]["version"] == "1.1"
    np.testing.assert_allclose(np.array(ts["root"]["transform"]).reshape(4, 4).T, FRAME.matrix())
    all_tiles = list(walk(ts["root"]))
    assert len(all_tiles) > 8 and max(len(Path(uri).stem) for uri in tiles) >= 4  # a real tree, 3 levels deep or more
    for tile, parent in all_tiles:
        assert tile["refine"] == "ADD"
        if parent is not None:
            assert tile["geometricError"] < parent["geometricError"]
        if "children" not in tile:
            assert tile["geometricError"] == 0
            assert len(tiles[tile["content"]["uri"]]["positions"]) <= 2_000
    assert ts["geometricError"] > ts["root"]["geometricError"] > 0
    files = {p.relative_to(out).as_posix() for p in (out / "tiles").iterdir()}
    assert files == set(tiles)  # nothing missing, nothing stray
    assert not [p for p in out.iterdir() if p.name.startswith(".cim-tmp")]  # spill files removed
    assert result.tiles == len(tiles)
    assert abs(result.bytes / result.count) < 16


def test_boxes_contain_points_and_children(built):
    out, _ = built
    ts, tiles = load_layer(out)
    for tile, parent in walk(ts["root"]):
        lo, hi = box_bounds(tile["boundingVolume"]["box"])
        if "content" in tile:
            p = tiles[tile["content"]["uri"]]["positions"]
            assert (p >= lo - 1e-6).all() and (p <= hi + 1e-6).all(), tile["content"]["uri"]
        if parent is not None:
            plo, phi = box_bounds(parent["boundingVolume"]["box"])
            assert (lo >= plo - 1e-6).all() and (hi <= phi + 1e-6).all()


def test_tiles_are_valid_gltf(built):
    out, _ = built
    reports = validate_glbs(sorted((out / "tiles").glob("*.glb")))
    bad = [r for r in reports if r["errors"] or r["warnings"]]
    assert not bad, bad[:3]


def test_sample_survey_stays_under_10_bytes_a_point(tiny_sources, tmp_path):
    """Colour (16-bit linear), class, intensity and return number in under 10 bytes a point on the
    tiny preset's survey (1 point/m²; denser surveys compress better): 9.7 measured, 7.9 when
    colours were stored as their 8-bit sRGB bytes. The earlier layout, float32 positions for nodes
    too large for 16 bits and 2.5 kB of JSON a tile, took 9.3 with those 8-bit colours."""
    r = cim.build_layer("pointcloud", [tiny_sources.lidar[0].parent], tmp_path / "tiny", workers=1)
    assert r.count > 150_000
    assert r.bytes / r.count < 10.0


def test_chunking_does_not_change_the_tree(id_cloud, built, tmp_path):
    d, _, _ = id_cloud
    out, _ = built
    one = cim.build_layer("pointcloud", [d], tmp_path / "one", frame=FRAME, workers=1, leaf_points=2_000, chunk_points=10**9)
    _, a = load_layer(out)
    _, b = load_layer(tmp_path / "one")
    assert set(a) == set(b)
    for uri in a:
        assert set(_ids(a[uri]).tolist()) == set(_ids(b[uri]).tolist()), uri
    assert one.count == 30_000


def test_manifest_facts(built):
    _, result = built
    b = result.bounds
    assert 105.71 < b["west"] < b["east"] < 105.73 and 34.57 < b["south"] < b["north"] < 34.59
    assert 1100 < b["min_height"] < b["max_height"] < 1200
    assert result.schema == {"intensity": "UINT16", "classification": "UINT8", "return_number": "UINT8"}
    info = result.info
    assert isinstance(info, PointCloudInfo) and info.points == 30_000 and info.has_color and info.crs == ["EPSG:4544"] and info.spacing > 0
    assert info.attributes == {"intensity": "_INTENSITY", "classification": "_CLASSIFICATION", "return_number": "_RETURN_NUMBER"}
    assert set(info.classes) == {"2", "3", "5", "6", "9"}
    assert info.classes["6"]["name"] == "building"
    assert sum(c["count"] for c in info.classes.values()) == 30_000


def test_rebuild_replaces_stale_tiles(id_cloud, tmp_path):
    d, _, _ = id_cloud
    out = tmp_path / "re"
    cim.build_layer("pointcloud", [d / "a.las"], out, frame=FRAME, workers=1, leaf_points=1_000)
    many = {p.name for p in (out / "tiles").iterdir()}
    cim.build_layer("pointcloud", [d / "a.las"], out, frame=FRAME, workers=1, leaf_points=50_000)
    few = {p.name for p in (out / "tiles").iterdir()}
    assert few < many
    _, tiles = load_layer(out)
    assert sum(len(t["positions"]) for t in tiles.values()) == 20_000


def test_default_frame_is_the_data_centre(id_cloud, tmp_path):
    d, xyz, _ = id_cloud
    cim.build_layer("pointcloud", [d / "a.las"], tmp_path / "c", workers=1)
    ts = json.loads((tmp_path / "c" / "tileset.json").read_text())
    m = np.array(ts["root"]["transform"]).reshape(4, 4).T
    from cim.kernels.frames import ecef_to_geodetic

    lon, lat, h = ecef_to_geodetic(m[:3, 3][None, :])
    assert abs(lon[0] - 105.7208) < 0.005 and abs(lat[0] - 34.5802) < 0.005 and 1100 < h[0] < 1200


def test_header_bounds_that_lie_cost_time_not_points(id_cloud, tmp_path):
    """A header box smaller than the points: those points are reprojected exactly and the cube
    is sized again from the points themselves."""
    _, xyz, _ = id_cloud
    path = write_las(tmp_path / "liar.las", xyz[:5000], rgb=id_points(5000)[1])
    data = bytearray(path.read_bytes())
    import struct

    maxx, minx, maxy, miny = struct.unpack_from("<dddd", data, 179)
    struct.pack_into("<dddd", data, 179, minx + 1.0, minx, miny + 1.0, miny)  # a 1 m box
    path.write_bytes(bytes(data))
    with pytest.warns(OutsideDataWarning, match="header bounds"):
        r = cim.build_layer("pointcloud", [path], tmp_path / "out", frame=FRAME, workers=1)
    assert [type(w) for w in r.warnings if "header bounds" in str(w)] == [OutsideDataWarning]
    _, tiles = load_layer(tmp_path / "out")
    ids = np.concatenate([_ids(t) for t in tiles.values()])
    assert sorted(ids.tolist()) == list(range(5000))
    enu = exact_enu(CRS.from_epsg(4544), FRAME, xyz[:5000, 0], xyz[:5000, 1], xyz[:5000, 2])
    for uri, t in tiles.items():
        step = quantization_step((tmp_path / "out" / uri).read_bytes())
        assert np.abs(t["positions"] - enu[_ids(t)]).max() <= step / 2 + 1e-3


def test_missing_crs_names_the_file(tmp_path):
    path = write_las(tmp_path / "anon.las", np.array([[1.0, 2.0, 3.0]] * 5), crs=None)
    with pytest.raises(CimCRSError, match="anon.las"):
        cim.build_layer("pointcloud", [path], tmp_path / "out")


@pytest.mark.parametrize("engine", ["local", "processes"])
def test_laz_with_workers_does_not_deadlock(tmp_path, engine):
    """lazrs' threads and fork() deadlock: the build must never fork after lazrs has started its
    thread pool (its workers are threads). A child process runs the build with two workers on LAZ
    input, under a timeout, with forking allowed as the ``cim`` command allows it, on the default
    engine and on forked worker processes."""
    xyz, rgb = id_points(120_000, seed=3, size=500.0)
    write_las(tmp_path / "x.laz", xyz[:60_000], rgb=rgb[:60_000])
    write_las(tmp_path / "y.laz", xyz[60_000:], rgb=rgb[60_000:])
    code = textwrap.dedent(
        f"""
        import laspy
        import cim
        from cim.runtime import process_policy
        if __name__ == "__main__":
            with laspy.open({str(tmp_path / "x.laz")!r}, laz_backend=laspy.LazBackend.LazrsParallel) as r:
                r.read_points(-1)  # lazrs' thread pool now exists in this process
            with process_policy(fork=True, pause_gc=True):
                r = cim.build_layer("pointcloud", [{str(tmp_path)!r}], {str(tmp_path / "out")!r}, engine={engine!r}, workers=2, chunk_points=40_000)
            print("POINTS", r.count)
        """
    )
    script = tmp_path / "run.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}  # this checkout's cim
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "POINTS 120000" in proc.stdout
    _, tiles = load_layer(tmp_path / "out")
    ids = np.concatenate([_ids(t) for t in tiles.values()])
    assert len(np.unique(ids)) == 120_000


# --- real third-party files ----------------------------------------------------------------------


def _check_against_input(path: Path, out: Path, frame: LocalFrame, src_kwargs: dict) -> None:
    """Counts, attribute multisets and positions (nearest input point within a quantization step,
    both ways) of a layer against its input file."""
    src = open_pointcloud(path, **src_kwargs)
    las = laspy.read(path)
    enu = exact_enu(src.crs, frame, np.asarray(las.x), np.asarray(las.y), np.asarray(las.z), src.z_factor)
    ts, tiles = load_layer(out)
    pos = np.concatenate([t["positions"] for t in tiles.values()])
    assert len(pos) == len(las.points)
    steps = max(quantization_step((out / uri).read_bytes()) for uri in tiles)
    tol = steps / 2 * np.sqrt(3) + 2e-3
    assert nearest_distance(pos, enu, tol).max() <= tol
    assert nearest_distance(enu, pos, tol).max() <= tol
    got = np.concatenate([np.stack([t["classification"], t["return_number"], t["intensity"]], 1) for t in tiles.values()]).astype(np.int64)
    want = np.stack([np.asarray(las.classification), np.asarray(las.return_number), np.asarray(las.intensity)], 1).astype(np.int64)
    np.testing.assert_array_equal(np.unique(got, axis=0, return_counts=True)[1], np.unique(want, axis=0, return_counts=True)[1])
    reports = validate_glbs(sorted((out / "tiles").glob("*.glb")))
    assert all(r["errors"] == 0 for r in reports)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["laspy_simple.las", "laspy_simple.laz"])
def test_real_simple_needs_and_uses_the_given_crs(realpc, tmp_path, name):
    with pytest.raises(CimCRSError, match=name):
        cim.build_layer("pointcloud", [realpc / name], tmp_path / "x")
    frame = LocalFrame(-123.07, 44.05, 130.0)
    r = cim.build_layer("pointcloud", [realpc / name], tmp_path / "a", frame=frame, crs="EPSG:2994")
    assert r.count == 1065
    assert -123.08 < r.bounds["west"] < r.bounds["east"] < -123.05 and 44.04 < r.bounds["south"] < r.bounds["north"] < 44.07
    _check_against_input(realpc / name, tmp_path / "a", frame, {"crs": "EPSG:2994"})
    # another CRS puts the same numbers elsewhere: the argument is applied, not ignored
    other = cim.build_layer("pointcloud", [realpc / name], tmp_path / "b", crs="EPSG:32610")  # UTM 10N, metres
    assert abs(other.bounds["south"] - r.bounds["south"]) > 30  # about 7.7° N instead of 44°


@pytest.mark.realdata
def test_real_autzen_lands_in_eugene(realpc, tmp_path):
    r = cim.build_layer("pointcloud", [realpc / "laspy_autzen_trim.laz"], tmp_path / "autzen")
    assert r.count == 110_000
    assert -123.08 < r.bounds["west"] < r.bounds["east"] < -123.06
    assert 44.04 < r.bounds["south"] < r.bounds["north"] < 44.06
    assert 100 < r.bounds["min_height"] < r.bounds["max_height"] < 200  # feet turned into metres
    ts = json.loads((tmp_path / "autzen" / "tileset.json").read_text())
    frame_m = np.array(ts["root"]["transform"]).reshape(4, 4).T
    from cim.kernels.frames import ecef_to_geodetic

    lon, lat, h = ecef_to_geodetic(frame_m[:3, 3][None, :])
    _check_against_input(realpc / "laspy_autzen_trim.laz", tmp_path / "autzen", LocalFrame(lon[0], lat[0], h[0]), {})


@pytest.mark.realdata
def test_real_las_1_4_format_7(realpc, tmp_path):
    path = realpc / "laspy_simple1_4.las"
    # its header says WGS 84 about coordinates up to 226° and 100°: refused, not misplaced
    with pytest.raises(CimCRSError, match="laspy_simple1_4.las"):
        cim.build_layer("pointcloud", [path], tmp_path / "x")
    frame = LocalFrame(3.0, 0.0, 0.0)
    r = cim.build_layer("pointcloud", [path], tmp_path / "a", frame=frame, crs="EPSG:32631", crs_override=True)
    assert r.count == 22_600 and r.info.has_color
    _check_against_input(path, tmp_path / "a", frame, {"crs": "EPSG:32631", "crs_override": True})


def test_files_of_two_places_in_one_layer_are_refused(tmp_path):
    """A folder holding surveys of two places (here 300 km apart) is one error naming both
    groups, not an octree hundreds of kilometres wide; raising max_gap builds it."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "surveys"
    folder.mkdir()
    for name, (x, y) in {
        "tianshui_a.las": (566_000, 3_828_000),
        "tianshui_b.las": (566_400, 3_828_000),
        "far.las": (566_000, 4_128_000),
    }.items():
        xyz = np.column_stack([x + rng.uniform(0, 300, 2000), y + rng.uniform(0, 300, 2000), 1100 + rng.uniform(0, 10, 2000)])
        write_las(folder / name, xyz)
    with pytest.raises(cim.CimInputError) as err:
        cim.convert("pointcloud", folder, tmp_path / "out")
    message = str(err.value)
    assert "point-cloud files of 2 places in one layer" in message
    assert (
        "2 file(s) near" in message and "tianshui_a.las, tianshui_b.las" in message and "1 file(s) near" in message and "far.las" in message
    )
    assert "max_gap" in message
    assert not list((tmp_path / "out").rglob("*.glb"))
    report = cim.convert("pointcloud", folder, tmp_path / "out2", max_gap=400_000.0)
    assert report.layers


def test_crs_override_replaces_a_wrong_header_crs_with_a_warning(tmp_path):
    """A header declaring the wrong CRS (UTM 48N for Gauss-Kruger numbers) is read in the CRS the
    user names, when they say so explicitly, and the result says it was."""
    rng = np.random.default_rng(2)
    xyz = np.column_stack([566_000 + rng.uniform(0, 50, 500), 3_828_000 + rng.uniform(0, 50, 500), 1100 + rng.uniform(0, 5, 500)])
    path = write_las(tmp_path / "wrong.las", xyz, crs="EPSG:32648")
    with pytest.warns(cim.warnings.GeoreferenceWarning, match=r"1 file\(s\) read as EPSG:4544 instead of .*: wrong.las"):
        report = cim.convert("pointcloud", path, tmp_path / "out", crs="EPSG:4544", crs_override=True)
    city = json.loads((tmp_path / "out" / "city.json").read_text())
    lon = (city["bounds"]["west"] + city["bounds"]["east"]) / 2
    assert 105.5 < lon < 106.0  # Tianshui, where the numbers say; UTM 48N would put it near 102.6°E
    assert report.layers
    with pytest.raises(cim.CimInputError, match="crs_override needs the layer's own crs"):
        cim.convert("pointcloud", path, tmp_path / "out2", crs_override=True)
