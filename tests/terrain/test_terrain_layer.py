"""The terrain layer end to end: decode every tile written from a synthetic DEM and check it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import cim
from cim.formats.quantized_mesh import decode_quantized_mesh
from cim.kernels.frames import geodetic_to_ecef, up_vectors
from cim.layers.terrain import TerrainInfo, level_error
from cim.tiling.geographic import INTERVALS, level_max_error, sample_degrees, tile_bounds
from tests.helpers.terrain import QMAX, DemTruth, drawn_errors, hills, scaled_visible, tiles_on_disk, write_dem

WGS84_RADII = np.array([6378137.0, 6378137.0, 6356752.314245179])


def _ecef(q, bounds):
    llh = q.lonlat_heights(bounds)
    return geodetic_to_ecef(llh[:, 0], llh[:, 1], llh[:, 2]), llh


def test_result_and_layer_json(hills_terrain, hills_dem):
    result, out = hills_terrain
    doc = json.loads((out / "layer.json").read_text())
    assert result.kind == "terrain" and result.format == "quantized-mesh" and result.url == ""
    assert isinstance(result.info, TerrainInfo) and result.info.minzoom == 0 and result.info.dem_cell_size == pytest.approx(2.0)
    assert result.info.maxzoom == 17  # a 2 m DEM at 34.6° N: level 17's lattice is 2.39 × 1.97 m
    assert doc["tilejson"] == "2.1.0" and doc["format"] == "quantized-mesh-1.0"
    assert doc["scheme"] == "tms" and doc["projection"] == "EPSG:4326"
    assert doc["extensions"] == ["octvertexnormals"]
    assert doc["tiles"] == ["{z}/{x}/{y}.terrain?v={version}"]
    assert doc["minzoom"] == 0 and doc["maxzoom"] == 17 and len(doc["available"]) == 18
    w, s, e, n = doc["bounds"]
    assert 105.71 < w < e < 105.73 and 34.59 < s < n < 34.61
    b = result.bounds
    assert (b["west"], b["south"], b["east"], b["north"]) == pytest.approx((w, s, e, n))
    assert 1100 < b["min_height"] < b["max_height"] < 1800
    assert result.tiles == len(tiles_on_disk(out))
    measured = result.info.measured_error
    assert set(measured) == {str(z) for z in range(6, 18)}  # levels 0-5 are regular grids
    assert all(0 < measured[z] <= result.info.max_error[z] for z in measured)
    # layer.json is written after every tile
    assert (out / "layer.json").stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in tiles_on_disk(out).values())


def test_available_matches_files_and_dem(hills_terrain):
    result, out = hills_terrain
    doc = json.loads((out / "layer.json").read_text())
    listed = set()
    for z, rects in enumerate(doc["available"]):
        for r in rects:
            listed |= {(z, x, y) for x in range(r["startX"], r["endX"] + 1) for y in range(r["startY"], r["endY"] + 1)}
    files = set(tiles_on_disk(out))
    assert listed == files
    assert {(0, 0, 0), (0, 1, 0)} <= files  # CesiumJS cannot upsample a missing root
    w, s, e, n = doc["bounds"]
    for z, x, y in files:
        if z > 0:
            assert (z - 1, x >> 1, y >> 1) in files
            tw, ts, te, tn = tile_bounds(z, x, y)
            assert tw < e and te > w and ts < n and tn > s, f"tile {z}/{x}/{y} lies outside the DEM"
    # and every tile of the deepest level that the DEM touches is there
    z = doc["maxzoom"]
    d = 180.0 / (1 << z)
    xs = range(int((w + 180) // d), int((e + 180) // d) + 1)
    ys = range(int((s + 90) // d), int((n + 90) // d) + 1)
    assert {(z, x, y) for x in xs for y in ys} <= files


def test_decode_every_tile(hills_terrain):
    result, out = hills_terrain
    rng = np.random.default_rng(7)
    checked = 0
    for (z, x, y), path in sorted(tiles_on_disk(out).items()):
        data = path.read_bytes()
        assert data[:2] == b"\x1f\x8b", "tiles are stored gzip-compressed"
        q = decode_quantized_mesh(data)
        u, v, t = q.u, q.v, q.triangles
        n = len(u)
        assert 4 <= n <= 65 * 65
        assert u.min() >= 0 and u.max() <= QMAX and v.min() >= 0 and v.max() <= QMAX
        assert q.h.min() >= 0 and q.h.max() <= QMAX
        heights = q.heights()
        assert q.min_height <= heights.min() and heights.max() <= q.max_height
        assert t.min() >= 0 and t.max() < n and len(np.unique(t)) == n
        area2 = (u[t[:, 1]] - u[t[:, 0]]) * (v[t[:, 2]] - v[t[:, 0]]) - (v[t[:, 1]] - v[t[:, 0]]) * (u[t[:, 2]] - u[t[:, 0]])
        assert (area2 > 0).all(), f"{z}/{x}/{y}: triangles must be counter-clockwise seen from above"
        assert area2.sum() == 2 * QMAX * QMAX, f"{z}/{x}/{y}: triangles must tile the square exactly"
        for edge, on, along in ((q.west, u == 0, v), (q.south, v == 0, u), (q.east, u == QMAX, v), (q.north, v == QMAX, u)):
            assert set(edge.tolist()) == set(np.flatnonzero(on).tolist())
            assert (np.diff(along[edge]) > 0).all()
        bounds = tile_bounds(z, x, y)
        ecef, llh = _ecef(q, bounds)
        dist = np.linalg.norm(ecef - q.sphere_center, axis=1)
        assert dist.max() <= q.sphere_radius
        assert np.linalg.norm(q.center - q.sphere_center) <= q.sphere_radius + 1.0
        # normals: unit, upward, and close to the surface the TIN draws
        nrm = q.normals
        assert nrm is not None and np.allclose(np.linalg.norm(nrm, axis=1), 1.0)
        up = up_vectors(llh[:, 0], llh[:, 1])
        assert ((nrm * up).sum(axis=1) > 0.5).all()
        if z == result.info.maxzoom:
            face = np.cross(ecef[t[:, 1]] - ecef[t[:, 0]], ecef[t[:, 2]] - ecef[t[:, 0]])
            vert = np.zeros_like(ecef)
            for k in range(3):
                np.add.at(vert, t[:, k], face)
            vert /= np.linalg.norm(vert, axis=1, keepdims=True)
            angle = np.degrees(np.arccos(np.clip((vert * nrm).sum(axis=1), -1, 1)))
            assert np.median(angle) < 10.0, f"{z}/{x}/{y}: normals disagree with the mesh ({np.median(angle):.1f}°)"
        # horizon occlusion point: whenever CesiumJS would cull it, every vertex is behind the horizon
        hop = q.horizon_occlusion
        scaled = ecef / WGS84_RADII
        direction = q.sphere_center / np.linalg.norm(q.sphere_center)
        cams = direction * rng.uniform(1.0002, 4.0, (400, 1)) + rng.normal(0, 0.6, (400, 3))
        cams = cams[np.linalg.norm(cams, axis=1) > 1.0001]
        culled = ~scaled_visible(hop[None, :], cams)
        if culled.any() and z > 0:
            hidden = ~scaled_visible(scaled[None, :, :], cams[culled][:, None, :])
            assert hidden.all(), f"{z}/{x}/{y}: the horizon occlusion point culls a visible vertex"
        checked += 1
    assert checked == result.tiles


def test_heights_match_the_dem_within_the_level_error(hills_terrain, hills_dem):
    """At lattice samples (where the bound is stated), the surface a client draws from the decoded
    tiles (flat triangles between ECEF vertices) lies within the level's error of the DEM's heights."""
    result, out = hills_terrain
    truth = DemTruth(hills_dem)
    rng = np.random.default_rng(3)
    worst_ratio = {}
    for (z, x, y), path in sorted(tiles_on_disk(out).items()):
        if z < 10:
            continue
        q = decode_quantized_mesh(path.read_bytes())
        i = rng.integers(0, INTERVALS + 1, 300)
        j = rng.integers(0, INTERVALS + 1, 300)
        w, s, _, _ = tile_bounds(z, x, y)
        step = sample_degrees(z)
        dem = truth(w + i * step, s + j * step)
        ok = np.isfinite(dem)
        if not ok.any():
            continue
        err = drawn_errors(q, tile_bounds(z, x, y), i[ok], j[ok], dem[ok])
        quantum = (q.max_height - q.min_height) / QMAX
        bound = level_error(z) + quantum + 0.01
        assert err.max() <= bound, f"{z}/{x}/{y}: {err.max():.3f} m off the DEM, bound {bound:.3f} m"
        worst_ratio[z] = max(worst_ratio.get(z, 0.0), err.max() / level_error(z))
    assert set(worst_ratio) >= {15, 16, 17}
    # the TINs are simplified up to their bound, not far below it
    assert worst_ratio[17] > 0.5


def test_error_factor_scales_the_bound(hills_dem, tmp_path):
    coarse = cim.build_layer("terrain", hills_dem, tmp_path / "coarse", error_factor=1.5, min_zoom=14)
    doc = json.loads((tmp_path / "coarse" / "layer.json").read_text())
    assert doc["minzoom"] == 14 and all(not doc["available"][z] for z in range(14))
    assert doc["cim"]["maxError"]["17"] == pytest.approx(1.5 * level_max_error(17), rel=1e-3)
    assert not (tmp_path / "coarse" / "0").exists()
    assert coarse.tiles == len(tiles_on_disk(tmp_path / "coarse"))


def test_threads_give_identical_tiles_and_resume(hills_dem, tmp_path):
    a = cim.build_layer("terrain", hills_dem, tmp_path / "a", workers=1, min_zoom=12)
    b = cim.build_layer("terrain", hills_dem, tmp_path / "b", workers=2, min_zoom=12)
    ta, tb = tiles_on_disk(tmp_path / "a"), tiles_on_disk(tmp_path / "b")
    assert ta.keys() == tb.keys() and a.tiles == b.tiles
    assert all(ta[k].read_bytes() == tb[k].read_bytes() for k in ta)
    # an interrupted build: one tile and layer.json missing; the rerun resumes the rest
    victim = sorted(ta)[len(ta) // 2]
    before = ta[victim].read_bytes()
    ta[victim].unlink()
    (tmp_path / "a" / "layer.json").unlink()
    again = cim.build_layer("terrain", hills_dem, tmp_path / "a", workers=1, min_zoom=12)
    assert again.resumed_tiles == len(ta) - 1
    assert ta[victim].read_bytes() == before
    assert (tmp_path / "a" / "layer.json").exists()
    # a build with other options replaces the tiles and removes those it no longer makes
    stray = tmp_path / "a" / "12" / "1" / "1.terrain"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"old")
    cim.build_layer("terrain", hills_dem, tmp_path / "a", workers=1, min_zoom=13)
    assert not stray.exists() and not any((tmp_path / "a" / "12").rglob("*.terrain"))


def test_large_dem_is_read_window_by_window(tmp_path, monkeypatch):
    """A DEM wider than a block (16 tiles of the deepest level) is never read whole."""
    from cim.sources import dem_grid

    grid, west, north = hills(20000.0, 2600.0, 10.0, dx=-6000.0, dy=2000.0)
    path = write_dem(tmp_path / "wide.tif", grid.astype(np.int16), west, north, 10.0, nodata=-32768)
    sizes = []
    real = dem_grid.TerrainDem._read

    def spy(self, window):
        sizes.append(int(window.width * window.height))
        return real(self, window)

    monkeypatch.setattr(dem_grid.TerrainDem, "_read", spy)
    result = cim.build_layer("terrain", path, tmp_path / "t")
    assert result.info.maxzoom == 15
    assert len(sizes) >= 3 and max(sizes) < 0.6 * grid.size
    truth = DemTruth(path)
    files = tiles_on_disk(tmp_path / "t")
    for z, x, y in [k for k in sorted(files) if k[0] == 15][::7]:
        q = decode_quantized_mesh(files[(z, x, y)].read_bytes())
        i, j = np.meshgrid(np.arange(0, 65, 4), np.arange(0, 65, 4))
        w, s, _, _ = tile_bounds(z, x, y)
        dem = truth(w + i.ravel() * sample_degrees(z), s + j.ravel() * sample_degrees(z))
        ok = np.isfinite(dem)
        err = drawn_errors(q, tile_bounds(z, x, y), i.ravel()[ok], j.ravel()[ok], dem[ok])
        assert err.max() <= level_error(z) + (q.max_height - q.min_height) / QMAX + 0.01


def test_tiny_sample_city(tmp_path):
    """The sample's own DEM (data/dem.tif of the tiny preset) builds, with its level from its 1 m cells."""
    city = cim.sample("tiny", tmp_path / "tiny")
    result = cim.build_layer("terrain", city.dem, tmp_path / "terrain")
    assert result.info.maxzoom == 18
    for path in tiles_on_disk(tmp_path / "terrain").values():
        decode_quantized_mesh(path.read_bytes())
    shutil.rmtree(tmp_path / "tiny")


def test_unpublished_tiles_are_written_in_place_and_a_torn_one_is_redone(hills_dem, tmp_path, monkeypatch):
    """Before layer.json exists nothing names a tile, so tiles go straight to their names; the log
    records each tile's size once it is whole, so a resumed build redoes a tile cut short. Once
    layer.json exists, a rebuild replaces tiles atomically (temporary name, then rename)."""
    from cim import store

    calls = {"atomic": 0, "direct": 0}

    def counting(kind, real):
        def write(path, data):
            if str(path).endswith(".terrain"):
                calls[kind] += 1
            return real(path, data)

        return write

    monkeypatch.setattr(store, "atomic_write_bytes", counting("atomic", store.atomic_write_bytes))
    monkeypatch.setattr(store, "write_new_bytes", counting("direct", store.write_new_bytes))
    out = tmp_path / "t"
    first = cim.build_layer("terrain", hills_dem, out, min_zoom=12)
    assert calls == {"atomic": 0, "direct": first.tiles}
    assert first.bytes == sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
    log = [json.loads(line) for line in (out / ".cim-build.jsonl").read_text().splitlines()[1:]]
    assert len(log) == first.tiles and all((out / e["file"]).stat().st_size == e["size"] for e in log)
    # interrupted: one tile torn (logged whole, now short) and layer.json not yet written
    tiles = tiles_on_disk(out)
    victim = sorted(tiles)[len(tiles) // 3]
    whole = tiles[victim].read_bytes()
    tiles[victim].write_bytes(whole[: len(whole) // 2])
    (out / "layer.json").unlink()
    again = cim.build_layer("terrain", hills_dem, out, min_zoom=12)
    assert again.resumed_tiles == first.tiles - 1 and tiles[victim].read_bytes() == whole
    assert calls["direct"] == first.tiles + 1 and calls["atomic"] == 0
    # published: other options rewrite every tile through a temporary name
    cim.build_layer("terrain", hills_dem, out, min_zoom=12, error_factor=1.2)
    assert calls["atomic"] > 0 and calls["direct"] == first.tiles + 1
    assert not list(out.rglob(".*.tmp")), "no temporary files left behind"
