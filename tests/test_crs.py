"""cim.crs: the projection-only shortcut gives PROJ's numbers, and is taken only where it may be."""

import numpy as np
import pytest
from pyproj import CRS, Transformer

from cim.crs import GEODETIC, from_lonlat, parse_crs, to_lonlat, transformer


@pytest.mark.parametrize("epsg", [4544, 32648, 4547])  # CGCS2000 GK CM 105E, WGS 84 UTM 48N, CGCS2000 GK CM 114E
def test_projection_only_matches_the_general_transformer(epsg):
    crs = parse_crs(f"EPSG:{epsg}")
    assert transformer(crs, GEODETIC).target_crs.datum.name == crs.geodetic_crs.datum.name  # the projection alone
    general = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
    # a grid over 20 km around a point inside the CRS's area of use
    lon0, lat0 = {4544: (105.72, 34.58), 32648: (105.0, 30.0), 4547: (114.1, 22.5)}[epsg]
    x0, y0 = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True).transform(lon0, lat0)
    gx, gy = (a.ravel() for a in np.meshgrid(np.linspace(x0 - 1e4, x0 + 1e4, 9), np.linspace(y0 - 1e4, y0 + 1e4, 9)))
    lon, lat = to_lonlat(gx, gy, crs)
    elon, elat = general.transform(gx, gy)
    assert np.abs(lon - elon).max() < 1e-12 and np.abs(lat - elat).max() < 1e-12
    bx, by = from_lonlat(lon, lat, crs)
    assert np.abs(bx - gx).max() < 1e-6 and np.abs(by - gy).max() < 1e-6


def test_other_datums_take_the_general_way():
    nad83 = parse_crs("EPSG:2263")  # NAD83 / New York Long Island (ftUS)
    assert "NAD83 to WGS 84" in transformer(nad83, GEODETIC).description  # with the datum step
    x, y = np.array([988000.0]), np.array([194000.0])  # Manhattan
    lon, lat = to_lonlat(x, y, nad83)
    elon, elat = Transformer.from_crs(nad83, CRS.from_epsg(4326), always_xy=True).transform(x, y)
    assert lon[0] == pytest.approx(elon[0], abs=1e-12) and lat[0] == pytest.approx(elat[0], abs=1e-12)
    assert -74.1 < lon[0] < -73.9 and 40.6 < lat[0] < 40.9


def test_to_lonlat_keeps_shapes_and_leaves_its_inputs_alone():
    crs = parse_crs("EPSG:4544")
    x, y = np.array([[566000.0, 566100.0]]), np.array([[3828000.0, 3828000.0]])
    lon, lat = to_lonlat(x, y, crs)
    assert lon.shape == (1, 2) and 105.71 < lon[0, 0] < 105.73 and 34.57 < lat[0, 1] < 34.59
    assert x[0, 0] == 566000.0 and y[0, 0] == 3828000.0
    slon, slat = to_lonlat(566000.0, 3828000.0, crs)
    assert slon.shape == () and float(slon) == lon[0, 0] and float(slat) == lat[0, 0]


@pytest.mark.parametrize("code", ["EPSG:4544", "EPSG:4547", "EPSG:32650", "EPSG:27700"])
def test_to_lonlat_is_proj_over_the_whole_area_of_use(code):
    """The shortcut (CGCS2000, WGS 84) or the general path (OSGB 36) gives what PROJ's way to
    EPSG:4326 gives anywhere the CRS is meant for: a PROJ that learns a CGCS2000 → WGS 84
    transformation fails here."""
    crs = parse_crs(code)
    w, s, e, n = crs.area_of_use.bounds
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(w, e, 200), rng.uniform(s, n, 200)
    x, y = Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True).transform(lon, lat)
    got = np.array(to_lonlat(x, y, crs))
    want = np.array(Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True).transform(x, y))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
