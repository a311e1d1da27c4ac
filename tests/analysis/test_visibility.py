"""Line of sight, viewshed and skyline: known geometry, and the sweep against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from cim.analysis.visibility import sightline, skyline, viewshed, viewshed_reference
from cim.errors import CimInputError
from tests.analysis.scenes import GROUND, X0, Y0, boxes_model

UP = np.array([0.0, 0.0, 1.0])
EAST = np.array([1.0, 0.0, 0.0])


def test_a_wall_between_two_points_blocks_the_line_of_sight() -> None:
    m = boxes_model([(100, 100, 140, 102, 10.0)])  # a wall 40 m long, 2 m thick, 10 m high
    a = np.array([X0 + 120, Y0 + 60, GROUND + 1.5])
    b = np.array([X0 + 120, Y0 + 160, GROUND + 1.5])
    s = sightline(m, a, b)
    assert not s.visible and s.kind == "building" and m.prisms.ids[s.building] == "b0"
    assert s.distance == pytest.approx(40.0)
    np.testing.assert_allclose(s.point, [X0 + 120, Y0 + 100, GROUND + 1.5])
    # over the wall's top, and beside it, the line is clear
    assert sightline(m, a + 20 * UP, b + 20 * UP).visible
    assert sightline(m, a + 30 * EAST, b + 30 * EAST).visible
    # a line just grazing below the top is blocked, just above is not
    assert not sightline(m, a + 8.4 * UP, b + 8.4 * UP).visible
    assert sightline(m, a + 8.6 * UP, b + 8.6 * UP).visible


def test_terrain_blocks_the_line_of_sight() -> None:
    n = 200
    dem = np.full((n, n), GROUND, dtype=np.float32)
    dem[:, 95:105] = GROUND + 30.0  # a ridge running north–south at x ≈ 100 m
    m = boxes_model([], dem=dem, size=200)
    s = sightline(m, np.array([X0 + 50, Y0 + 100, GROUND + 2]), np.array([X0 + 150, Y0 + 100, GROUND + 2]))
    assert not s.visible and s.kind == "terrain" and s.building == -1
    assert 44.0 <= s.distance <= 46.0


def test_viewshed_sweep_matches_brute_force_rays() -> None:
    boxes = [(100, 100, 130, 110, 25.0), (60, 140, 80, 170, 12.0), (150, 60, 160, 90, 40.0), (120, 150, 128, 158, 6.0)]
    m = boxes_model(boxes, size=250)
    x, y = X0 + 110, Y0 + 70
    v = viewshed(m, x, y, 1.6, 100.0)
    ref = viewshed_reference(m, x, y, 1.6, 100.0)
    assert ((v.state == 2).sum(), (v.state == 1).sum()) != (0, 0)
    assert (ref == 1).sum() > 1000 and (ref == 2).sum() > 1000  # both outcomes are tested
    assert (v.state == ref).mean() > 0.98
    assert v.buildings.tolist() == sorted(v.buildings.tolist())
    visible, hidden = v.areas(m.res)
    assert visible + hidden == pytest.approx((v.state > 0).sum() * m.res**2)


def test_viewshed_hides_what_stands_behind_a_taller_building() -> None:
    # a low house right behind a tall slab, seen from the south: hidden; a tower beside: seen
    m = boxes_model([(100, 100, 140, 104, 30.0), (110, 110, 130, 120, 6.0), (170, 110, 180, 120, 50.0)], size=250)
    v = viewshed(m, X0 + 120, Y0 + 60, 1.6, 150.0)
    assert 1 not in v.buildings and 2 in v.buildings
    # ground just north of the slab is hidden, ground south of it is visible
    r, c, _ = m.cells(np.array([X0 + 120, X0 + 120]), np.array([Y0 + 107, Y0 + 80]))
    rw, cw = r - v.window[0].start, c - v.window[1].start
    assert v.state[rw[0], cw[0]] == 1 and v.state[rw[1], cw[1]] == 2


def test_skyline_of_one_tower() -> None:
    """A tower 40 m north of the viewpoint, 50 m tall: the skyline at azimuth 0 is
    atan((50 - 1.6) / 40); the tower forms the skyline there and the ground elsewhere."""
    m = boxes_model([(110, 100, 130, 120, 50.0)], size=300)
    sk = skyline(m, X0 + 120, Y0 + 60, 1.6, radius=200.0, azimuth_step=1.0)
    north = int(np.flatnonzero(sk.azimuths == 0)[0])
    expected = np.degrees(np.arctan(48.4 / 40.0))
    assert expected - 1.0 < sk.elevation[north] <= expected + 1e-9
    assert sk.building[north] == 0
    ids, counts = sk.buildings()
    assert ids.tolist() == [0]
    # the tower spans about 2·atan(10 / 40) = 28° of azimuth
    assert abs(counts[0] - 28) <= 3
    south = int(np.flatnonzero(sk.azimuths == 180)[0])
    assert sk.building[south] == -1 and sk.elevation[south] < 0


def test_bad_requests_are_refused() -> None:
    m = boxes_model([(110, 100, 130, 120, 50.0)])
    with pytest.raises(CimInputError, match="outside"):
        viewshed(m, X0 - 500, Y0, 1.6, 100)
    with pytest.raises(CimInputError, match="radius"):
        viewshed(m, X0 + 50, Y0 + 50, 1.6, 0)
    with pytest.raises(CimInputError, match="differ"):
        sightline(m, np.array([X0, Y0, 0.0]), np.array([X0, Y0, 0.0]))
