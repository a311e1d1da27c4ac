import numpy as np
from pyproj import Transformer

from cim.kernels.frames import LocalFrame, ecef_to_geodetic, geodetic_to_ecef, up_vectors


def test_geodetic_to_ecef_matches_pyproj():
    lon = np.array([105.72, 105.6, 105.85, -122.4, 0.0])
    lat = np.array([34.58, 34.5, 34.62, 37.8, -89.0])
    h = np.array([1100.0, 1700.0, 0.0, -30.0, 2000.0])
    ours = geodetic_to_ecef(lon, lat, h)
    x, y, z = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, h)
    np.testing.assert_allclose(ours, np.stack([x, y, z], 1), atol=1e-6)


def test_ecef_round_trip():
    lon = np.linspace(-170, 170, 7)
    lat = np.linspace(-80, 80, 7)
    h = np.linspace(-100, 9000, 7)
    lo, la, hh = ecef_to_geodetic(geodetic_to_ecef(lon, lat, h))
    np.testing.assert_allclose(lo, lon, atol=1e-10)
    np.testing.assert_allclose(la, lat, atol=1e-10)
    np.testing.assert_allclose(hh, h, atol=1e-6)


def test_enu_frame_axes_and_curvature():
    frame = LocalFrame(105.72, 34.58, 1100.0)
    # the origin is (0, 0, 0); a point 0.01° north lies north, and slightly below the tangent plane
    p = frame.from_geodetic(np.array([105.72, 105.72]), np.array([34.58, 34.64]), np.array([1100.0, 1100.0]))
    np.testing.assert_allclose(p[0], 0.0, atol=1e-6)
    assert abs(p[1, 0]) < 1e-6 and 6600 < p[1, 1] < 6700
    drop = -p[1, 2]
    assert 3.0 < drop < 4.0  # the Earth curves about 3.5 m over 6.65 km
    np.testing.assert_allclose(
        frame.to_ecef(frame.from_ecef(geodetic_to_ecef(105.8, 34.6, 1500.0)[None])), geodetic_to_ecef(105.8, 34.6, 1500.0)[None], atol=1e-6
    )


def test_matrix_maps_enu_to_ecef():
    frame = LocalFrame(105.72, 34.58, 1100.0)
    m = frame.matrix()
    enu = np.array([120.0, -40.0, 15.0])
    ecef = (m @ np.append(enu, 1.0))[:3]
    np.testing.assert_allclose(ecef, frame.to_ecef(enu[None])[0], atol=1e-6)
    up = up_vectors(105.72, 34.58)
    np.testing.assert_allclose(m[:3, 2], up, atol=1e-12)


def test_ground_and_up_is_the_numpy_chain():
    from cim.kernels.frames import LocalFrame, geodetic_to_ecef, up_vectors

    frame = LocalFrame(105.72, 34.58, 1100.0)
    rng = np.random.default_rng(3)
    lon, lat = 105.6 + 0.25 * rng.random(5000), 34.5 + 0.15 * rng.random(5000)
    ground, up = frame.ground_and_up(lon, lat)
    assert np.allclose(ground, frame.from_ecef(geodetic_to_ecef(lon, lat, np.zeros(len(lon)))), rtol=0, atol=1e-6)
    assert np.allclose(up, frame.rotate_vectors(up_vectors(lon, lat)), rtol=0, atol=1e-12)
    # a point 50 m above the ellipsoid is ground + 50 up
    assert np.allclose(ground + 50.0 * up, frame.from_ecef(geodetic_to_ecef(lon, lat, np.full(len(lon), 50.0))), rtol=0, atol=1e-6)
