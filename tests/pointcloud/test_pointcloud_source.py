"""LAS/LAZ reading: formats, CRS from header or argument, and the fitted reprojection."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import CRS, Transformer

from cim.errors import CimCRSError, CimIOError
from cim.kernels.frames import LocalFrame
from cim.sources.pointcloud import (
    LocalTransform,
    exact_enu,
    frame_for,
    list_pointcloud_files,
    open_pointcloud,
    read_batches,
)
from tests.helpers.pointcloud import write_las

FORMATS = [(0, "1.1"), (1, "1.1"), (2, "1.2"), (3, "1.2"), (4, "1.3"), (5, "1.3")] + [(f, "1.4") for f in range(6, 11)]


@pytest.mark.parametrize("fmt,version", FORMATS)
def test_every_point_format_reads(tmp_path, fmt, version):
    rng = np.random.default_rng(fmt)
    n = 777
    xyz = np.stack([566000 + rng.random(n) * 100, 3827000 + rng.random(n) * 100, 1100 + rng.random(n) * 20], axis=1)
    has_rgb = fmt in (2, 3, 5, 7, 8, 10)
    cls = rng.integers(0, 32 if fmt <= 5 else 256, n).astype(np.uint8)
    ret = rng.integers(1, 8 if fmt <= 5 else 16, n).astype(np.uint8)
    inten = rng.integers(0, 65536, n).astype(np.uint16)
    rgb = (rng.integers(0, 256, (n, 3)) * 257).astype(np.uint16) if has_rgb else None
    path = write_las(
        tmp_path / f"f{fmt}.laz", xyz, point_format=fmt, version=version, rgb=rgb, intensity=inten, classification=cls, return_number=ret
    )
    src = open_pointcloud(path)
    assert src.point_format == fmt and src.compressed and src.has_rgb == has_rgb and src.count == n
    assert src.crs.to_epsg() == 4544 and src.crs_from == "header"
    batches = list(read_batches(src, batch=300))
    assert [len(b) for b in batches] == [300, 300, 177]
    np.testing.assert_allclose(np.concatenate([b.positions() for b in batches]), xyz, atol=6e-4)
    np.testing.assert_array_equal(np.concatenate([b.classification for b in batches]), cls)
    np.testing.assert_array_equal(np.concatenate([b.return_number for b in batches]), ret)
    np.testing.assert_array_equal(np.concatenate([b.intensity for b in batches]), inten)
    if has_rgb:
        assert src.color_shift == 8
        np.testing.assert_array_equal(np.concatenate([b.rgb for b in batches]), rgb >> 8)
    # a range in the middle (LAZ seeks through its chunk table)
    part = list(read_batches(src, start=500, count=100))
    np.testing.assert_allclose(part[0].positions(), xyz[500:600], atol=6e-4)


def test_las_1_0_reads_as_1_1(tmp_path):
    xyz = np.array([[566000.0, 3827000.0, 1100.0], [566001.0, 3827002.0, 1101.0]])
    path = write_las(tmp_path / "old.las", xyz, point_format=1, version="1.1")
    data = bytearray(path.read_bytes())
    data[25] = 0  # version 1.0
    path.write_bytes(bytes(data))
    src = open_pointcloud(path)
    assert src.count == 2
    np.testing.assert_allclose(next(read_batches(src)).positions(), xyz, atol=1e-3)


def test_no_crs_is_an_error_naming_the_file(tmp_path):
    path = write_las(tmp_path / "nocrs.las", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), crs=None)
    with pytest.raises(CimCRSError, match="nocrs.las"):
        open_pointcloud(path)
    src = open_pointcloud(path, crs="EPSG:32650")
    assert src.crs.to_epsg() == 32650 and src.crs_from == "argument"


def test_header_crs_wins_unless_overridden(tmp_path):
    path = write_las(tmp_path / "a.las", np.array([[566000.0, 3827000.0, 1100.0]] * 3))
    assert open_pointcloud(path, crs="EPSG:32648").crs.to_epsg() == 4544
    assert open_pointcloud(path, crs="EPSG:32648", crs_override=True).crs.to_epsg() == 32648


def test_feet_crs_scales_heights(tmp_path):
    path = write_las(tmp_path / "ft.las", np.array([[636000.0, 849000.0, 400.0]] * 2), crs="EPSG:2994")
    src = open_pointcloud(path)
    assert src.z_factor == pytest.approx(0.3048)


def test_folders_expand_and_missing_paths_fail(tmp_path):
    for name in ("b.las", "a.LAZ"):
        write_las(tmp_path / name, np.array([[566000.0, 3827000.0, 1100.0]] * 2))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_pointcloud_files(tmp_path)] == ["a.LAZ", "b.las"]
    with pytest.raises(CimIOError):
        list_pointcloud_files(tmp_path / "missing.las")


def test_fitted_reprojection_is_within_a_millimetre():
    """The quadratic fits stay within 1 mm of exact pyproj → ECEF → ENU over 8 km of the city,
    and split (never silently degrade) over a box too large for one quadratic."""
    crs = CRS.from_epsg(4544)
    frame = LocalFrame(105.72, 34.58, 1150.0)
    t = LocalTransform(crs, frame, tol=1e-3)
    rng = np.random.default_rng(0)
    for half, heights in ((4000.0, (900.0, 1800.0)), (30000.0, (0.0, 3000.0))):
        lo = np.array([566062.0 - half, 3828235.0 - half, heights[0]])
        hi = np.array([566062.0 + half, 3828235.0 + half, heights[1]])
        fit = t.piecewise(lo, hi)
        pts = lo + rng.random((20000, 3)) * (hi - lo)
        got = fit.apply(pts[:, 0], pts[:, 1], pts[:, 2]).T
        err = np.abs(got - exact_enu(crs, frame, pts[:, 0], pts[:, 1], pts[:, 2])).max()
        assert err <= 1e-3, (half, err, len(fit.lo))
        # raw LAS integers through the folded fast path give the same
        X = np.round((pts[:, 0] - 500000.0) / 0.001).astype(np.int32)
        Y = np.round((pts[:, 1] - 3800000.0) / 0.001).astype(np.int32)
        Z = np.round(pts[:, 2] / 0.001).astype(np.int32)
        raw = fit.apply_raw(X, Y, Z, (0.001,) * 3, (500000.0, 3800000.0, 0.0)).T
        src = np.stack([X * 0.001 + 500000.0, Y * 0.001 + 3800000.0, Z * 0.001], axis=1)
        assert np.abs(raw - exact_enu(crs, frame, src[:, 0], src[:, 1], src[:, 2])).max() <= 1e-3
        assert (len(fit.lo) == 1) == (half == 4000.0)  # one quadratic for 8 km, several for 60 km
        assert not fit.exact.any()


def test_exact_path_equals_pyproj_ecef():
    """The exact path (pyproj to lon/lat, then our ellipsoid) is pyproj's EPSG:4978, to 0.1 mm."""
    frame = LocalFrame(-123.07, 44.05, 130.0)
    crs = CRS.from_epsg(2994)
    x = np.array([636000.0, 637000.0, 636500.0])
    y = np.array([849000.0, 849500.0, 848900.0])
    z = np.array([400.0, 500.0, 450.0])
    t = Transformer.from_crs(crs, CRS.from_epsg(4978), always_xy=True)
    ecef = np.stack(t.transform(x, y, z * 0.3048), axis=1)
    np.testing.assert_allclose(exact_enu(crs, frame, x, y, z, 0.3048), frame.from_ecef(ecef), atol=1e-4)


def test_fit_falls_back_to_exact_where_nothing_fits():
    crs = CRS.from_epsg(4544)
    t = LocalTransform(crs, LocalFrame(105.72, 34.58, 1150.0), tol=1e-9)  # nothing meets a nanometre
    fit = t.piecewise(np.array([566000.0, 3828000.0, 1000.0]), np.array([567000.0, 3829000.0, 1100.0]), max_depth=1)
    assert fit.exact.all()
    pts = np.array([[566500.0, 3828500.0, 1050.0]])
    np.testing.assert_allclose(fit.apply(pts[:, 0], pts[:, 1], pts[:, 2]).T, t.exact(pts[:, 0], pts[:, 1], pts[:, 2]))


def test_invalid_coordinates_for_the_crs_are_reported(tmp_path):
    # latitude 100: a header that says WGS 84 about coordinates that are not
    path = write_las(tmp_path / "bad.las", np.array([[1.0, 1.0, 0.0], [226.0, 100.0, 10.0]]), crs="EPSG:4326", scale=1e-6)
    with pytest.raises(CimCRSError, match="bad.las"):
        frame_for([open_pointcloud(path)])


def test_real_files_headers(realpc):
    simple = open_pointcloud(realpc / "laspy_simple.las", crs="EPSG:2994")
    assert simple.count == 1065 and simple.crs_from == "argument" and simple.point_format == 3
    autzen = open_pointcloud(realpc / "laspy_autzen_trim.laz")
    assert autzen.count == 110_000 and autzen.crs_from == "header" and autzen.compressed
    f = frame_for([autzen])
    assert f.lon == pytest.approx(-123.07, abs=0.01) and f.lat == pytest.approx(44.05, abs=0.01)
    v14 = open_pointcloud(realpc / "laspy_simple1_4.las", crs="EPSG:32631", crs_override=True)
    assert v14.version == "1.4" and v14.point_format == 7 and v14.count == 22_600
