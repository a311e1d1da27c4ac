"""The DEM prefetch: a background read that hands over only a window covering what is asked."""

import numpy as np
import pytest

from cim.errors import CimIOError
from cim.layers.buildings import prefetch_dem_for
from cim.sources.dem import DemPrefetch, read_dem_window
from cim.sources.footprints import read_footprints


def test_prefetched_window_is_the_direct_read_when_it_covers_the_footprints(tiny_sources):
    table = read_footprints(tiny_sources.buildings)
    prefetch = prefetch_dem_for(tiny_sources.buildings, tiny_sources.dem)
    assert prefetch is not None
    window = prefetch.window(table.bounds, table.crs)
    assert window is prefetch._future.result()  # handed over, not read again
    direct = read_dem_window(tiny_sources.dem, prefetch.bounds, table.crs)
    assert np.array_equal(window.grid, direct.grid, equal_nan=True) and (window.x0, window.y0) == (direct.x0, direct.y0)
    x, y = (table.bounds[0] + table.bounds[2]) / 2, (table.bounds[1] + table.bounds[3]) / 2
    assert window.sample(np.array([x]), np.array([y]), table.crs)[0] == pytest.approx(
        direct.sample(np.array([x]), np.array([y]), table.crs)[0]
    )


def test_a_prefetch_that_does_not_cover_falls_back_to_a_fresh_read(tiny_sources):
    table = read_footprints(tiny_sources.buildings)
    xmin, ymin, xmax, ymax = table.bounds
    small = DemPrefetch(tiny_sources.dem, (xmin, ymin, (xmin + xmax) / 2, ymax), table.crs)  # a stale, too small extent
    window = small.window(table.bounds, table.crs)
    assert window is not small._future.result()
    expected = read_dem_window(tiny_sources.dem, table.bounds, table.crs)
    assert window.grid.shape == expected.grid.shape and (window.x0, window.y0) == (expected.x0, expected.y0)


def test_a_failed_prefetch_reports_through_the_direct_read(tiny_sources, tmp_path):
    table = read_footprints(tiny_sources.buildings)
    missing = tmp_path / "no-such-dem.tif"
    with pytest.raises(CimIOError, match="no-such-dem.tif"):
        DemPrefetch(missing, table.bounds, table.crs).window(table.bounds, table.crs)
    assert prefetch_dem_for(tiny_sources.buildings, None) is None


def test_a_declared_extent_off_in_the_last_bits_still_hands_the_window_over(tiny_sources):
    # the city preset's GeoPackage declares ymin 3825499.415666304 while its geometries reach
    # 3825499.4156663036: an exact comparison threw the prefetched window away on every build
    table = read_footprints(tiny_sources.buildings)
    xmin, ymin, xmax, ymax = table.bounds
    declared = (np.nextafter(xmin, np.inf), np.nextafter(ymin, np.inf), np.nextafter(xmax, -np.inf), np.nextafter(ymax, -np.inf))
    prefetch = DemPrefetch(tiny_sources.dem, declared, table.crs)
    assert prefetch.window(table.bounds, table.crs) is prefetch._future.result()
