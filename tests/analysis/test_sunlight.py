"""Sunlight hours and ground shadow: known geometry, and the DSM against exact prisms."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import shapely

from cim.analysis.sunlight import facade_points, ground_shadow, solar_samples, sunlight_hours
from cim.errors import CimInputError
from cim.kernels.rays import segment_prism_hits
from tests.analysis.scenes import X0, Y0, boxes_model

DAHAN = dt.date(2026, 1, 20)


def test_box_shadow_length_is_height_over_tan_altitude() -> None:
    """One 30 m box on flat ground at true solar noon: its shadow runs north for h / tan(alt)."""
    m = boxes_model([(100, 100, 130, 120, 30.0)], res=0.5, size=300)
    _, alt, _ = solar_samples(m, DAHAN, 11.5, 12.5, 60)
    expected = 30.0 / np.tan(np.radians(alt[0]))
    assert 40 < expected < 46
    area = shapely.box(X0 + 110, Y0 + 120.5, X0 + 120, Y0 + 200)
    sh = ground_shadow(m, area, date=DAHAN, start=11.5, end=12.5, step_minutes=60)
    column = sh.shadow[0][:, sh.inside.shape[1] // 2]  # rows run south from the area's north edge
    ys = m.y0 - (np.arange(sh.window[0].start, sh.window[0].stop) + 0.5) * m.res - Y0
    shadowed = ys[column & sh.inside[:, sh.inside.shape[1] // 2]]
    assert shadowed.max() - 120.0 == pytest.approx(expected, abs=2 * m.res)
    assert 0 < sh.shadow_fraction()[0] < 1


@pytest.mark.parametrize("slab_height", [20.0, 21.0, 23.0])
def test_wall_in_front_of_a_window(slab_height: float) -> None:
    """South-facing windows 30 m north of a long slab (29.8 m from the sample points, 0.2 m
    outside the wall) get sun only while the sun clears the slab's top:
    tan(alt) > (h - 0.9) / (29.8 / cos(sun azimuth - south))."""
    slab = (0, 100, 400, 110, slab_height)
    house = (150, 140, 170, 150, 9.0)
    m = boxes_model([slab, house], uses=["commercial", "residential"])
    res = sunlight_hours(m, date=DAHAN, step_minutes=10)
    assert res.buildings.tolist() == [1]
    _, alt, sun = solar_samples(m, DAHAN, 8, 16, 10)
    off_south = np.abs(sun[:, 1]) / np.hypot(sun[:, 0], sun[:, 1])  # cos of the angle from grid south
    clear = np.tan(np.radians(alt)) * (29.8 / off_south) > slab_height - 0.9
    expected = clear.sum() * 10 / 60  # the window faces due south: the sun is in front all day
    south = res.points.normal[:, 1] < -0.5
    np.testing.assert_allclose(res.hours[south], expected, atol=10 / 60 + 1e-9)
    assert res.below.tolist() == [expected < 2]


def test_a_lone_house_has_the_whole_window() -> None:
    house = (150, 140, 170, 150, 9.0)
    alone = sunlight_hours(boxes_model([house]), date=DAHAN, step_minutes=10)
    assert alone.min_south_hours[0] == pytest.approx(8.0)
    assert not alone.below[0]


def test_dsm_hours_match_exact_prism_rays() -> None:
    """Brute force: every façade point × sun sample as an exact segment against the prisms."""
    boxes = [(60, 60, 90, 80, 24.0), (70, 110, 95, 122, 15.0), (120, 90, 135, 140, 36.0), (40, 130, 60, 150, 9.0)]
    m = boxes_model(boxes, size=250)
    res = sunlight_hours(m, date=DAHAN, step_minutes=20, spacing=4.0)
    _, alt, sun = solar_samples(m, DAHAN, 8, 16, 20)
    pts = res.points
    ea, eb, ep = m.prisms.edges
    ref = np.zeros(len(pts.building))
    for k in range(len(alt)):
        facing = pts.normal @ sun[k, :2] > 0
        p = pts.xyz[facing]
        q = p + sun[k] * 400.0
        t, _ = segment_prism_hits(p, q, ea, eb, ep, m.prisms.base, m.prisms.top)
        ref[np.flatnonzero(facing)[np.isnan(t)]] += 20 / 60
    assert ref.min() < 4 < ref.max()  # the scene has shaded and sunny windows
    diff = np.abs(res.hours - ref)
    assert (diff < 1e-9).mean() > 0.9
    assert diff.max() <= 2 * 20 / 60 + 1e-9


def test_facade_points_sit_outside_walls_at_sill_height() -> None:
    m = boxes_model([(10, 10, 22, 16, 6.0)])
    pts = facade_points(m, np.array([0]), spacing=3.0, sill=0.9, offset=0.2)
    assert len(pts.building) == 2 * (4 + 2)
    np.testing.assert_allclose(pts.xyz[:, 2], m.prisms.base[0] + 0.9)
    fp = m.prisms.footprints[0]
    assert not shapely.contains_xy(fp, pts.xyz[:, 0], pts.xyz[:, 1]).any()
    np.testing.assert_allclose(shapely.distance(fp.exterior, shapely.points(pts.xyz[:, :2])), 0.2)


def test_bad_windows_are_refused() -> None:
    m = boxes_model([(10, 10, 22, 16, 6.0)])
    with pytest.raises(CimInputError, match="step"):
        sunlight_hours(m, step_minutes=7)
    with pytest.raises(CimInputError, match="start and end"):
        sunlight_hours(m, start=16, end=8)
