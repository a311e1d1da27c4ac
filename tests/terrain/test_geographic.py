"""The geographic tiling scheme (CesiumJS GeographicTilingScheme with TMS rows)."""

from __future__ import annotations

import numpy as np
import pytest

from cim.tiling.geographic import (
    LEVEL_ZERO_ERROR,
    availability,
    level_for_resolution,
    level_max_error,
    sample_metres,
    tile_bounds,
    tile_count,
    tiles_covering,
)


def test_level_zero_and_bounds():
    assert tile_count(0) == (2, 1)
    assert tile_bounds(0, 0, 0) == (-180.0, -90.0, 0.0, 90.0)
    assert tile_bounds(0, 1, 0) == (0.0, -90.0, 180.0, 90.0)
    # the README's level-1 examples: y counts from the south
    assert tile_bounds(1, 2, 0) == (0.0, -90.0, 90.0, 0.0)
    assert tile_bounds(1, 1, 1) == (-90.0, 0.0, 0.0, 90.0)


def test_tiles_covering():
    assert tiles_covering((105.70, 34.57, 105.71, 34.58), 0) == (1, 0, 1, 0)
    x0, y0, x1, y1 = tiles_covering((105.70, 34.57, 105.71, 34.58), 17)
    d = 180.0 / 2**17
    for x, y in ((x0, y0), (x1, y1)):
        w, s, e, n = tile_bounds(17, x, y)
        assert e - w == pytest.approx(d)
    assert tile_bounds(17, x0, y0)[0] <= 105.70 < tile_bounds(17, x0, y0)[2]
    assert tile_bounds(17, x1, y1)[1] < 34.58 <= tile_bounds(17, x1, y1)[3]
    # a box edge on a tile edge does not pull in the next tile
    assert tiles_covering((0.0, 0.0, 90.0, 90.0), 1) == (2, 1, 2, 1)


def test_level_error_is_cesiums():
    assert pytest.approx(77067.34, abs=0.01) == LEVEL_ZERO_ERROR
    assert level_max_error(17) == pytest.approx(0.588, abs=1e-3)


@pytest.mark.parametrize(("cell", "lat", "level"), [(2.0, 34.58, 17), (1.0, 34.58, 18), (10.0, 45.75, 15), (30.0, 0.0, 13)])
def test_level_for_resolution(cell, lat, level):
    z = level_for_resolution(cell, lat)
    assert z == level
    ew, ns = sample_metres(z, lat)
    assert 1 / np.sqrt(2) <= np.sqrt(ew * ns) / cell <= np.sqrt(2)


def test_level_for_resolution_rejects_nonsense():
    with pytest.raises(ValueError):
        level_for_resolution(0.0, 10.0)


def test_availability_rectangles_cover_exactly():
    rng = np.random.default_rng(1)
    mask = rng.random((12, 20)) < 0.6
    mask[3:9, 4:15] = True
    ys, xs = np.nonzero(mask)
    tiles = np.column_stack([xs + 100, ys + 50])
    rects = availability(tiles)
    covered = []
    for r in rects:
        covered += [(x, y) for x in range(r["startX"], r["endX"] + 1) for y in range(r["startY"], r["endY"] + 1)]
    assert len(covered) == len(set(covered)) == len(tiles)
    assert set(covered) == {tuple(t) for t in tiles.tolist()}
    assert len(rects) < len(tiles) / 2  # merged, not one rectangle a tile
    assert availability(np.zeros((0, 2))) == []
