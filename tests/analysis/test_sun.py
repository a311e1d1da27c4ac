"""Sun positions against a published reference and against geometric identities.

Reference: I. Reda and A. Andreas, *Solar Position Algorithm for Solar Radiation
Applications*, NREL/TP-560-34302 (revised January 2008), Appendix A.5, Table A5.1: Golden,
Colorado (39.742476 N, 105.1786 W), 2003-10-17 12:30:30 MST (UTC-7): topocentric zenith
50.11162°, azimuth 194.34024°, geocentric declination -9.31434°, equation of time
14.641503 min, sunrise 13:12:43.46 UT, transit 18:46:04.97 UT. The NOAA equations are a
shorter series than SPA's: they agree to about 0.01°, so the tolerances are 0.01° and 30 s.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from cim.analysis.sun import julian_day, solar_day, sun_position, sun_position_solar_time, sun_vectors

LAT, LON = 39.742476, -105.1786
WHEN = dt.datetime(2003, 10, 17, 12, 30, 30, tzinfo=dt.timezone(dt.timedelta(hours=-7)))


def test_julian_day_of_the_reference_instant() -> None:
    # Table A5.1: JD = 2452930.312847
    assert julian_day(WHEN)[0] == pytest.approx(2452930.312847, abs=1e-6)


def test_position_matches_spa_reference() -> None:
    p = sun_position(WHEN, LAT, LON)
    assert p.zenith[0] == pytest.approx(50.11162, abs=0.01)
    assert p.azimuth[0] == pytest.approx(194.34024, abs=0.01)
    assert p.declination[0] == pytest.approx(-9.31434, abs=0.01)
    assert p.equation_of_time[0] == pytest.approx(14.641503, abs=0.02)


def _event_seconds(condition: np.ndarray) -> list[int]:
    """Seconds where ``condition`` turns from false to true."""
    return [int(i) for i in np.flatnonzero(np.diff(condition.astype(np.int8)) > 0)]


def test_sunrise_and_transit_match_spa_reference() -> None:
    day = np.datetime64("2003-10-17T00:00:00", "us")
    seconds = np.arange(0, 86400)
    instants = day + (seconds * 1_000_000).astype("timedelta64[us]")
    p = sun_position(instants, LAT, LON, refract=False)
    rise = _event_seconds(p.altitude > -0.8333)[0]
    assert abs(rise - (13 * 3600 + 12 * 60 + 43.46)) < 30
    transit = _event_seconds(p.hour_angle > 0)[0]  # the hour angle passes 0 at transit
    assert abs(transit - (18 * 3600 + 46 * 60 + 4.97)) < 30


def test_true_solar_noon_is_due_south_at_the_textbook_altitude() -> None:
    date = dt.date(2026, 1, 20)  # 大寒
    lat, lon = 34.57, 105.78
    p = sun_position_solar_time(date, np.array([12.0]), lat, lon, refract=False)
    assert p.hour_angle[0] == 0.0
    assert p.azimuth[0] == pytest.approx(180.0, abs=1e-6)
    assert p.altitude[0] == pytest.approx(90.0 - lat + p.declination[0], abs=1e-6)
    # about -20° on 大寒
    assert -20.6 < p.declination[0] < -19.8


def test_solar_time_agrees_with_civil_time() -> None:
    lat, lon = 34.57, 105.78
    date = dt.date(2026, 1, 20)
    dec, eot = solar_day(2026, 1, 20, lon)
    # 10:00 true solar time is 10:00 - EoT - 4 min/° × lon in UTC
    minutes = 600.0 - eot - 4.0 * lon
    instant = np.datetime64("2026-01-20T00:00:00", "us") + np.timedelta64(int(round(minutes * 60e6)), "us")
    civil = sun_position(np.array([instant]), lat, lon)
    solar = sun_position_solar_time(date, np.array([10.0]), lat, lon)
    assert civil.hour_angle[0] == pytest.approx(-30.0, abs=0.01)
    assert civil.altitude[0] == pytest.approx(solar.altitude[0], abs=0.01)
    assert civil.azimuth[0] == pytest.approx(solar.azimuth[0], abs=0.01)
    # symmetric about noon
    am, pm = sun_position_solar_time(date, np.array([9.0, 15.0]), lat, lon, refract=False).azimuth
    assert am + pm == pytest.approx(360.0, abs=0.05)


def test_sun_vectors_point_at_the_sun() -> None:
    v = sun_vectors(np.array([0.0, 90.0, 30.0]), np.array([90.0, 0.0, 180.0]))
    np.testing.assert_allclose(v[0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(v[1], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(v[2], [0, -np.cos(np.radians(30)), 0.5], atol=1e-12)
    # true north at grid azimuth -1°: a sun due south (true) lies at grid azimuth 179°
    g = sun_vectors(np.array([0.0]), np.array([180.0]), true_north=-1.0)[0]
    assert np.degrees(np.arctan2(g[0], g[1])) % 360 == pytest.approx(179.0)
