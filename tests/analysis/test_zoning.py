"""Height limits and flooding: known answers, and the raster view of the same question."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from cim.analysis.zoning import flood, height_limit
from tests.analysis.scenes import GROUND, X0, Y0, boxes_model

BOXES = [(20, 20, 40, 40, 12.0), (60, 20, 80, 40, 30.0), (100, 20, 120, 40, 45.0), (20, 150, 40, 170, 60.0)]


def test_height_limit_above_ground_and_absolute() -> None:
    m = boxes_model(BOXES, size=200)
    zone = shapely.box(X0, Y0, X0 + 130, Y0 + 100)  # the last box lies outside
    hl = height_limit(m, zone, 24.0)
    assert hl.buildings.tolist() == [0, 1, 2]
    np.testing.assert_allclose(hl.excess, [-12.0, 6.0, 21.0])
    assert hl.exceeding.tolist() == [False, True, True]
    ab = height_limit(m, zone, GROUND + 40.0, mode="absolute")
    np.testing.assert_allclose(ab.excess, [-28.0, -10.0, 5.0])


def test_height_limit_agrees_with_the_dsm() -> None:
    """Brute force: the owners of the zone's DSM cells above the limit."""
    m = boxes_model(BOXES, size=200)
    zone = shapely.box(X0, Y0, X0 + 200, Y0 + 200)
    limit = GROUND + 35.0
    hl = height_limit(m, zone, limit, mode="absolute")
    above = np.asarray(m.dsm) > limit
    assert sorted(set(np.asarray(m.owner)[above].tolist())) == hl.buildings[hl.exceeding].tolist()


def test_a_flat_city_below_the_water_level_is_all_flooded() -> None:
    m = boxes_model(BOXES, size=200)
    region = shapely.box(X0, Y0, X0 + 200, Y0 + 200)
    f = flood(m, GROUND + 1.5, region)
    assert f.area(m.res) == pytest.approx(200 * 200)
    assert f.volume(m.res) == pytest.approx(200 * 200 * 1.5)
    assert f.buildings.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(f.building_depth, 1.5)
    assert flood(m, GROUND - 0.1, region).area(m.res) == 0.0


def test_flood_from_a_seed_stops_at_a_ridge() -> None:
    n = 200
    x = np.arange(n) + 0.5
    dem = np.repeat((GROUND + 0.02 * x)[None, :], n, axis=0).astype(np.float32)  # rising east
    dem[:, 150:155] = GROUND + 10.0  # a levee; a hollow beyond it
    dem[:, 170:180] = GROUND - 1.0
    m = boxes_model([(10, 10, 20, 20, 9.0), (172, 50, 178, 60, 6.0)], dem=dem, size=200)
    region = shapely.box(X0, Y0, X0 + 200, Y0 + 200)
    level = GROUND + 2.0
    everywhere = flood(m, level, region)
    from_river = flood(m, level, region, seed=(X0 + 1, Y0 + 100))
    # west of the levee: ground below 1102 m up to x = 100 m; the hollow only without a seed
    assert from_river.area(m.res) == pytest.approx(100 * 200)
    assert everywhere.area(m.res) == pytest.approx(100 * 200 + 10 * 200)
    assert from_river.buildings.tolist() == [0] and everywhere.buildings.tolist() == [0, 1]
    assert from_river.building_depth[0] == pytest.approx(level - m.prisms.base[0])
    assert np.nanmax(from_river.depth) == pytest.approx(2.0 - 0.01, abs=0.02)
