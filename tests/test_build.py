"""The built tiny city: tileset structure, bounding volumes, metadata, validity, ground, resume."""

import json

import numpy as np
import pyogrio
import pytest

import cim
from cim.formats.glb import read_accessor, read_glb, read_property_table
from cim.formats.tileset import box_bounds
from cim.kernels.frames import LocalFrame
from cim.sources.dem import sample_dem
from cim.sources.footprints import read_footprints
from cim.warnings import OutsideDataWarning
from tests.helpers.gltf import validate_glbs


def _tiles(tile, parent=None):
    yield tile, parent
    for child in tile.get("children", []):
        yield from _tiles(child, tile)


def _content_positions(path):
    """ENU positions of a tile's GLB (node translation applied, glTF y-up turned to z-up)."""
    doc, binary = read_glb(path.read_bytes())
    prim = doc["meshes"][0]["primitives"][0]
    pos = read_accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
    pos = pos + np.array(doc["nodes"][0]["translation"])
    return np.stack([pos[:, 0], -pos[:, 2], pos[:, 1]], axis=1), doc, binary, prim


def test_tileset_is_3d_tiles_1_1_with_enu_root_transform(tiny_city):
    ts = json.loads((tiny_city / "buildings" / "tileset.json").read_text())
    manifest = json.loads((tiny_city / "city.json").read_text())
    assert ts["asset"]["version"] == "1.1"
    o = manifest["origin"]
    np.testing.assert_allclose(
        np.array(ts["root"]["transform"]).reshape(4, 4).T, LocalFrame(o["lon"], o["lat"], o["height"]).matrix(), atol=1e-6
    )
    assert 105.6 < o["lon"] < 105.8 and 34.5 < o["lat"] < 34.7 and 1050 < o["height"] < 1200
    tiles = list(_tiles(ts["root"]))
    assert len(tiles) > 4, "the small-tile tiny city should have levels of detail"
    assert all(t["refine"] == "REPLACE" for t, _ in tiles)
    assert ts["geometricError"] >= ts["root"]["geometricError"] > 0
    for tile, parent in tiles:
        assert (tiny_city / "buildings" / tile["content"]["uri"]).exists()
        if "children" not in tile:
            assert tile["geometricError"] == 0
        if parent is not None:
            assert tile["geometricError"] < parent["geometricError"]
    files = {p.relative_to(tiny_city / "buildings").as_posix() for p in (tiny_city / "buildings" / "tiles").iterdir()}
    assert files == {t["content"]["uri"] for t, _ in tiles}  # no stray files, none missing


def test_bounding_boxes_contain_content_and_children(tiny_city):
    ts = json.loads((tiny_city / "buildings" / "tileset.json").read_text())
    for tile, parent in _tiles(ts["root"]):
        lo, hi = box_bounds(tile["boundingVolume"]["box"])
        pos, *_ = _content_positions(tiny_city / "buildings" / tile["content"]["uri"])
        assert (pos >= lo - 1e-6).all() and (pos <= hi + 1e-6).all(), tile["content"]["uri"]
        if parent is not None:
            plo, phi = box_bounds(parent["boundingVolume"]["box"])
            assert (lo >= plo - 1e-6).all() and (hi <= phi + 1e-6).all()


def test_leaves_hold_every_building_once_with_its_source_attributes(tiny_city, tiny_sources):
    ts = json.loads((tiny_city / "buildings" / "tileset.json").read_text())
    _, _, _, fields = pyogrio.raw.read(tiny_sources.buildings)[0:4]
    meta, _, _, data = pyogrio.raw.read(tiny_sources.buildings)
    source = {str(row[0]): dict(zip(meta["fields"], row)) for row in zip(*data)}
    seen = {}
    for tile, _ in _tiles(ts["root"]):
        pos, doc, binary, prim = _content_positions(tiny_city / "buildings" / tile["content"]["uri"])
        fids = read_accessor(doc, binary, prim["attributes"]["_FEATURE_ID_0"])
        props = read_property_table(doc, binary)
        ext = prim["extensions"]["EXT_mesh_features"]["featureIds"][0]
        assert ext["featureCount"] == len(props["id"]) and fids.max() < ext["featureCount"]
        if "children" in tile:
            continue
        for i, fid in enumerate(props["id"]):
            assert fid not in seen
            seen[fid] = {k: v[i] for k, v in props.items()}
    manifest = json.loads((tiny_city / "city.json").read_text())
    buildings = next(l for l in manifest["layers"] if l["kind"] == "buildings")
    replaced = set(source) - set(seen)
    assert set(seen) <= set(source) and len(replaced) == buildings.get("replaced_by_bim", 0) == 2
    # the replaced buildings are those under the BIM models' footprints
    import shapely

    bim = next(l for l in manifest["layers"] if l["kind"] == "bim")
    models = shapely.union_all([shapely.from_wkt(f["wkt"]) for f in bim["footprints"]])
    table = read_footprints(tiny_sources.buildings)
    for fid, g in zip(table.ids, table.geometries):
        assert (fid in replaced) == (shapely.area(shapely.intersection(g, models)) > 0.5 * g.area), fid
    for fid, got in seen.items():
        want = source[fid]
        assert got["name"] == want["name"] and got["use"] == want["use"] and got["address"] == want["address"]
        assert got["floors"] == want["floors"] and got["year_built"] == want["year_built"]
        assert got["height"] == pytest.approx(want["height"])
    schema = next(l for l in json.loads((tiny_city / "city.json").read_text())["layers"] if l["kind"] == "buildings")["schema"]
    assert schema["height"] == "FLOAT64" and schema["floors"] == "INT32" and schema["id"] == "STRING"


def test_every_glb_passes_the_khronos_validator(tiny_city):
    glbs = sorted((tiny_city / "buildings" / "tiles").glob("*.glb"))
    reports = validate_glbs(glbs)
    bad = [r for r in reports if r["errors"]]
    assert not bad, bad[:3]
    assert all(r["warnings"] == 0 for r in reports), [r for r in reports if r["warnings"]][:3]


def _srgb_eotf(c):
    """The sRGB transfer function, written out here rather than taken from cim."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def test_building_material_is_the_linear_value_of_its_display_colour(tiny_city):
    """glTF's baseColorFactor is linear: the LOD1 buildings' warm off-white (sRGB 0.86, 0.84,
    0.80) is written as its linear value, which clients turn back into that sRGB colour."""
    for path in sorted((tiny_city / "buildings" / "tiles").glob("*.glb"))[:5]:
        doc, _ = read_glb(path.read_bytes())
        (material,) = doc["materials"]
        factor = material["pbrMetallicRoughness"]["baseColorFactor"]
        np.testing.assert_allclose(factor, [*_srgb_eotf([0.86, 0.84, 0.80]), 1.0], atol=1e-6)


def test_lidar_tiles_hold_the_las_colours_made_linear(tiny_city, tiny_sources):
    """glTF's COLOR_0 is linear: every point of the lidar tiles, matched to its LAS point by
    position, holds the LAS file's sRGB colour through the sRGB transfer function (to 16 bits),
    and decodes back to the LAS colour; the tiles stay valid glTF."""
    import laspy
    from pyproj import CRS

    from cim.formats.points import decode_points_glb
    from cim.sources.pointcloud import exact_enu

    manifest = json.loads((tiny_city / "city.json").read_text())
    o = manifest["origin"]
    frame = LocalFrame(lon=o["lon"], lat=o["lat"], h=o["height"])
    ts = json.loads((tiny_city / "lidar" / "tileset.json").read_text())
    np.testing.assert_allclose(np.array(ts["root"]["transform"]).reshape(4, 4).T, frame.matrix(), atol=1e-6)
    las = [laspy.read(p) for p in tiny_sources.lidar]
    xyz = np.concatenate([np.stack([f.x, f.y, f.z], axis=1) for f in las])
    rgb = np.concatenate([np.stack([f.red, f.green, f.blue], axis=1) for f in las]).astype(np.int64)
    rgb >>= 8 if rgb.max() > 255 else 0  # 16-bit LAS colours: the high byte
    enu = exact_enu(CRS.from_epsg(4544), frame, xyz[:, 0], xyz[:, 1], xyz[:, 2])
    order = np.argsort(enu[:, 0])
    xs = enu[order, 0]
    glbs = sorted((tiny_city / "lidar" / "tiles").glob("*.glb"))
    seen = 0
    for path in glbs:
        t = decode_points_glb(path.read_bytes())
        p = t["positions"]
        # each point's LAS point: the nearest within 1 cm in x, then in space (1 point/m²: unique)
        lo = np.searchsorted(xs, p[:, 0] - 0.01)
        hi = np.searchsorted(xs, p[:, 0] + 0.01, side="right")
        assert (hi > lo).all()
        owner = np.repeat(np.arange(len(p)), hi - lo)
        cand = order[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])]
        d = np.linalg.norm(enu[cand] - p[owner], axis=1)
        best = np.full(len(p), np.inf)
        np.minimum.at(best, owner, d)
        match = np.full(len(p), -1)
        match[owner[d == best[owner]]] = cand[d == best[owner]]
        assert best.max() < 0.005, path.name
        np.testing.assert_allclose(t["linear_colors"], _srgb_eotf(rgb[match] / 255.0), atol=0.5 / 65535, err_msg=path.name)
        np.testing.assert_array_equal(t["colors"], rgb[match])
        seen += len(p)
    assert seen == len(xyz) == next(l for l in manifest["layers"] if l["id"] == "lidar")["points"]
    reports = validate_glbs(glbs)
    assert not [r for r in reports if r["errors"] or r["warnings"]], reports[:3]


def test_buildings_stand_on_the_dem(tiny_city, tiny_sources):
    """Each building's lowest vertex is the lowest ground under its corners, less the terrain's
    finest error bound (the rendered ground lies within it): not floating, not sunk."""
    ts = json.loads((tiny_city / "buildings" / "tileset.json").read_text())
    manifest = json.loads((tiny_city / "city.json").read_text())
    terrain = next(l for l in manifest["layers"] if l["kind"] == "terrain")
    sink = terrain["max_error"][str(terrain["maxzoom"])]
    assert 0 < sink < 0.5
    frame = LocalFrame(lon=manifest["origin"]["lon"], lat=manifest["origin"]["lat"], h=manifest["origin"]["height"])
    table = read_footprints(tiny_sources.buildings)
    import shapely

    ground = {}
    for fid, g in zip(table.ids, table.geometries):
        xy = shapely.get_coordinates(g)
        ground[fid] = np.nanmin(sample_dem(tiny_sources.dem, xy[:, 0], xy[:, 1], table.crs))
    checked = 0
    for tile, _ in _tiles(ts["root"]):
        if "children" in tile:
            continue
        pos, doc, binary, prim = _content_positions(tiny_city / "buildings" / tile["content"]["uri"])
        fids = read_accessor(doc, binary, prim["attributes"]["_FEATURE_ID_0"]).astype(int)
        ids = read_property_table(doc, binary)["id"]
        from cim.kernels.frames import ecef_to_geodetic

        _, _, h = ecef_to_geodetic(frame.to_ecef(pos))
        for i, fid in enumerate(ids):
            assert h[fids == i].min() == pytest.approx(ground[fid] - sink, abs=0.01)
            checked += 1
    replaced = next(l for l in manifest["layers"] if l["kind"] == "buildings").get("replaced_by_bim", 0)
    assert checked == len(table) - replaced


def test_rebuild_resumes_and_replaces_atomically(tiny_sources, tmp_path):
    out = tmp_path / "city"
    first = cim.build(tiny_sources.recipe, out)
    layer = lambda report, kind: next(lr for lr in report.layers if lr.kind == kind)  # noqa: E731
    tile = next((out / "buildings" / "tiles").glob("*.glb"))
    mtime = tile.stat().st_mtime_ns
    second = cim.build(tiny_sources.recipe, out)
    assert layer(second, "buildings").resumed_tiles == layer(first, "buildings").tiles
    assert layer(second, "terrain").resumed_tiles == layer(first, "terrain").tiles
    assert tile.stat().st_mtime_ns == mtime  # finished tiles are not rewritten
    # an interrupted build: one tile lost, the log torn mid-line
    tile.unlink()
    log = out / "buildings" / ".cim-build.jsonl"
    log.write_text(log.read_text() + '{"file": "tiles/x')
    third = cim.build(tiny_sources.recipe, out)
    assert tile.exists() and layer(third, "buildings").resumed_tiles == layer(first, "buildings").tiles - 1
    assert not list(out.rglob(".*.glb*")), "no temporary files left behind"


def test_buildings_off_the_dem_are_reported_and_placed_on_median_ground(tiny_sources, tmp_path):
    """A footprint beyond the DEM's edge still converts, on the layer's median ground, with a warning naming it."""
    import shapely
    from shapely.geometry import Polygon

    meta, _, wkb, fields = pyogrio.raw.read(tiny_sources.buildings)
    geoms = list(shapely.from_wkb(wkb))
    xmin, ymin, xmax, ymax = tiny_sources.bounds
    geoms.append(Polygon([(xmax + 500, ymin), (xmax + 520, ymin), (xmax + 520, ymin + 20), (xmax + 500, ymin + 20)]))
    far = {"id": "FAR-1", "name": "Far", "use": "residential", "floors": 3, "height": 9.5, "year_built": 2000}
    data = [np.append(np.asarray(col, dtype=object), far.get(name, "x")).astype(col.dtype) for name, col in zip(meta["fields"], fields)]
    path = tmp_path / "with-far.gpkg"
    pyogrio.raw.write(
        str(path),
        shapely.to_wkb(np.array(geoms, dtype=object)),
        data,
        list(meta["fields"]),
        driver="GPKG",
        geometry_type="Unknown",
        crs="EPSG:4544",
        promote_to_multi=False,
    )
    with pytest.warns(OutsideDataWarning, match=r"1 building\(s\) lie outside the DEM dem\.tif.*FAR-1"):
        report = cim.convert_buildings(path, tmp_path / "out", dem=tiny_sources.dem)
    layer = report.layers[0]
    assert layer.count == tiny_sources.n_buildings + 1
    outside = [w for w in layer.warnings if isinstance(w, OutsideDataWarning)]
    assert len(outside) == 1 and "1 building(s) lie outside the DEM dem.tif" in str(outside[0]) and "FAR-1" in str(outside[0])
    table = read_footprints(tiny_sources.buildings)
    xy = shapely.get_coordinates(table.geometries)
    ground = sample_dem(tiny_sources.dem, xy[:, 0], xy[:, 1], table.crs)
    assert np.nanmin(ground) - 1 < layer.bounds["min_height"] < np.nanmax(ground)


def test_dem_in_another_crs_gives_the_same_bases(tiny_sources, tmp_path):
    """Footprints in EPSG:4544 on a DEM in EPSG:4326: sample points are reprojected, not the grid."""
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    dst = tmp_path / "dem4326.tif"
    with rasterio.open(tiny_sources.dem) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        profile = src.profile | {"crs": "EPSG:4326", "transform": transform, "width": width, "height": height}
        with rasterio.open(dst, "w", **profile) as out:
            reproject(rasterio.band(src, 1), rasterio.band(out, 1), resampling=Resampling.bilinear)
    a = cim.convert_buildings(tiny_sources.buildings, tmp_path / "a", dem=tiny_sources.dem).layers[0]
    b = cim.convert_buildings(tiny_sources.buildings, tmp_path / "b", dem=dst).layers[0]
    assert not b.warnings
    assert b.bounds["min_height"] == pytest.approx(a.bounds["min_height"], abs=0.3)
    assert b.bounds["max_height"] == pytest.approx(a.bounds["max_height"], abs=0.3)


def test_first_build_writes_tiles_in_place_a_rebuild_atomically(tiny_sources, tmp_path, monkeypatch):
    """Until tileset.json exists nothing names the tiles, so they are written without a rename;
    over a published tileset every rewritten tile goes through a temporary name."""
    from cim import store

    calls: list[str] = []
    for name in ("write_new_bytes", "atomic_write_bytes"):
        real = getattr(store, name)

        def write(path, data, _real=real, _name=name):
            if str(path).endswith(".glb"):  # the tiles (not the index, the build log or city.json)
                calls.append(_name)
            return _real(path, data)

        monkeypatch.setattr(store, name, write)
    out = tmp_path / "b"
    first = cim.convert_buildings(tiny_sources.buildings, out, dem=tiny_sources.dem)
    assert calls and set(calls) == {"write_new_bytes"} and len(calls) == first.layers[0].tiles
    calls.clear()
    tile = next((out / "tiles").glob("*.glb"))
    tile.unlink()  # lost: the rebuild redoes it while the old tileset.json is still served
    cim.convert_buildings(tiny_sources.buildings, out, dem=tiny_sources.dem)
    assert calls == ["atomic_write_bytes"] and tile.exists()


def test_every_file_of_a_built_city_is_readable_by_other_users(tiny_city):
    """A static server (nginx as www-data) must be able to serve what `cim build` wrote: no file
    left with a temporary file's 0600 (search.sqlite was). The private .cim folder aside."""
    unreadable = [
        str(p.relative_to(tiny_city))
        for p in tiny_city.rglob("*")
        if ".cim" not in p.relative_to(tiny_city).parts and not p.stat().st_mode & (0o004 if p.is_file() else 0o005)
    ]
    assert not unreadable, unreadable
