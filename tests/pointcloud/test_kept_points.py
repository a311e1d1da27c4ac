"""The building points a point-cloud layer keeps for the buildings layer's link
(:mod:`cim.sources.pointcloud.kept`): the link read from them is the link read from the files,
bit for bit; they are used only while they are the files' as they are now, and a build leaves
none behind."""

from __future__ import annotations

import os
import shutil

import laspy
import numpy as np
import pytest

from cim.engines import engine_from
from cim.layers.base import City, run_layer
from cim.layers.building_heights import LINK_PERCENTILES
from cim.layers.buildings import BuildingsLayer
from cim.layers.pointcloud import PointCloudLayer
from cim.sources.footprints import read_footprints
from cim.sources.pointcloud.heights import BUILDING, footprint_heights
from cim.sources.pointcloud.kept import KEPT_DIR, KeptPart, kept_blocks, kept_parts


@pytest.fixture(scope="module")
def kept_layer(tiny_sources, tmp_path_factory):
    """The tiny city's lidar (copied) built as a point-cloud layer that keeps its building
    points, in small batches and several stage jobs a file (so parts hold several blocks)."""
    root = tmp_path_factory.mktemp("kept")
    files = []
    for f in tiny_sources.lidar:
        files.append(root / "src" / f.name)
        files[-1].parent.mkdir(exist_ok=True)
        shutil.copy2(f, files[-1])
    city = City(root / "city", engine_from("local", workers=2), crs="EPSG:4544", keep_building_points=True)
    opts = PointCloudLayer.Options(batch_points=20_000)
    try:
        result = run_layer(PointCloudLayer(), "lidar", [root / "src"], opts, city)
    finally:
        city.engine.close()
    counts = [laspy.open(f).header.point_count for f in files]
    return files, counts, result.path / KEPT_DIR, read_footprints(tiny_sources.buildings, crs="EPSG:4544"), city


def test_kept_points_are_the_building_class_records_of_every_file(kept_layer):
    files, counts, folder, _, _ = kept_layer
    parts = kept_parts([folder], files, counts)
    assert parts is not None and len(parts) == len(files)
    kept = blocks_of_a_file = 0
    for f, part in zip(files, parts):
        las = laspy.read(f)
        cls = np.asarray(las.classification)
        rec = las.points.array
        want = np.stack([rec["X"][cls == BUILDING], rec["Y"][cls == BUILDING], rec["Z"][cls == BUILDING]], axis=1)
        classes = np.zeros(256, dtype=np.int64)
        blocks = list(kept_blocks(part, classes))
        got = np.concatenate([np.stack(b, axis=1) for b in blocks]) if blocks else np.zeros((0, 3), dtype=np.int32)
        # the same records in the same order (parts follow the file, blocks its batches)
        assert np.array_equal(got, want), f.name
        assert np.array_equal(classes, np.bincount(cls, minlength=256)), f.name
        kept += len(got)
        blocks_of_a_file = max(blocks_of_a_file, len(blocks))
    assert kept > 1000 and blocks_of_a_file > 1


def test_the_link_from_kept_points_is_the_link_from_the_files(kept_layer):
    files, counts, folder, table, _ = kept_layer
    parts = kept_parts([folder], files, counts)
    assert parts is not None
    args = (table.geometries, table.crs, files)
    kw = {"roof_percentiles": LINK_PERCENTILES, "need_ground": False, "batch": 30_000}
    direct = footprint_heights(*args, **kw)
    kept = footprint_heights(*args, **kw, kept=parts)
    assert (direct.n_roof > 0).sum() > 50
    assert np.array_equal(kept.n_roof, direct.n_roof)
    assert np.array_equal(kept.roof, direct.roof, equal_nan=True)
    assert (kept.points, kept.used, kept.files, kept.skipped) == (direct.points, direct.used, direct.files, direct.skipped)
    assert kept.points > 0.5 * sum(counts)


def test_kept_points_of_a_changed_file_are_not_used(kept_layer, tmp_path):
    files, counts, folder, _, _ = kept_layer
    assert kept_parts([folder], files, counts) is not None
    assert kept_parts([folder], files, [c + 1 for c in counts]) is None  # not all the points
    assert kept_parts([tmp_path], files, counts) is None  # no manifest
    copy = tmp_path / "kept"
    shutil.copytree(folder, copy)
    st = files[0].stat()
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        assert kept_parts([copy], files, counts) is None  # the file changed since
    finally:
        os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert kept_parts([copy], files, counts) is not None
    (copy / sorted(p.name for p in copy.glob("part-*"))[0]).unlink()
    assert kept_parts([copy], files, counts) is None  # a part gone


def test_a_part_cut_short_is_an_error_not_fewer_points(kept_layer, tmp_path):
    files, counts, folder, _, _ = kept_layer
    parts = kept_parts([folder], files, counts)
    assert parts is not None
    cut = tmp_path / "cut.i32"
    data = parts[0].paths[0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut short"):
        list(kept_blocks(KeptPart([cut], counts[0]), np.zeros(256, dtype=np.int64)))


def test_the_buildings_layer_links_from_the_kept_points_then_drops_them(kept_layer, tiny_sources, monkeypatch):
    import cim.sources.pointcloud.heights as heights

    files, _, folder, table, city = kept_layer
    direct = footprint_heights(table.geometries, table.crs, files, roof_percentiles=LINK_PERCENTILES, need_ground=False)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the link decoded a point file again")

    monkeypatch.setattr(heights, "read_batches", no_decoding)
    city.engine = engine_from("local", workers=2)
    try:
        result = run_layer(BuildingsLayer(), "buildings", [tiny_sources.buildings], BuildingsLayer.Options(), city)
    finally:
        city.engine.close()
    assert result.search is not None and result.search.columns is not None
    assert np.array_equal(result.search.ids.astype(str), table.ids.astype(str))
    assert np.array_equal(result.search.columns["n_points"], direct.n_roof)
    assert np.array_equal(result.search.columns["h_roof_90"], np.where(direct.n_roof > 0, direct.roof[:, 2], np.nan), equal_nan=True)
    assert not folder.exists()


def test_a_build_that_links_leaves_no_kept_points(tiny_city):
    # the tiny city's buildings link to its lidar (link_points): its point-cloud layer kept
    # the building points, and the link removed them once read
    assert (tiny_city / "lidar" / "tileset.json").exists()
    assert not (tiny_city / "lidar" / KEPT_DIR).exists()


def test_class_records_keeps_one_class_in_order_from_strided_records():
    from cim.kernels.footprint_points import class_records

    rng = np.random.default_rng(3)
    rec = np.zeros(5_000, dtype=[("X", "<i4"), ("Y", "<i4"), ("Z", "<i4"), ("c", "u1")])
    for name in "XYZ":
        rec[name] = rng.integers(-(2**31), 2**31 - 1, len(rec), dtype=np.int64)
    # class bits 0-4 as point formats 0-5 store them, flag bits set at random above them
    rec["c"] = rng.choice(np.array([2, 5, 6, 9], np.uint8), len(rec)) | (rng.integers(0, 8, len(rec)).astype(np.uint8) << 5)
    block = class_records(rec["X"], rec["Y"], rec["Z"], rec["c"], 0x1F, 6)
    keep = (rec["c"] & 0x1F) == 6
    m = int(keep.sum())
    assert 1000 < m < 2000 and block.dtype == np.int32 and len(block) == 3 * m
    assert np.array_equal(block, np.concatenate([rec["X"][keep], rec["Y"][keep], rec["Z"][keep]]))
    assert len(class_records(rec["X"][:0], rec["Y"][:0], rec["Z"][:0], rec["c"][:0], 0x1F, 6)) == 0
