"""Where the sun is: the NOAA solar calculator's equations, vectorised.

The equations are those of NOAA's Global Monitoring Laboratory solar calculator (its
"General Solar Position Calculations" note and spreadsheet, after Meeus, *Astronomical
Algorithms*): accurate to about 0.01° between 1800 and 2100, which is far below what a shadow
on a 2 m grid can show. Times are either civil (UTC, or a clock with a time zone) or **true
solar time** (真太阳时), the time Chinese sunlight rules are written in: 12:00 true solar time is
the sun's transit at the point itself, so an hour angle is simply ``15° × (t - 12 h)``.

Angles are degrees; azimuth is clockwise from true north (0 = N, 90 = E).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SunPosition",
    "julian_day",
    "refraction",
    "solar_day",
    "sun_position",
    "sun_position_solar_time",
    "sun_vectors",
    "DA_HAN",
]

#: 大寒 (Great Cold), the default day of Chinese residential sunlight rules: about 20 January
DA_HAN = (1, 20)


@dataclass(frozen=True)
class SunPosition:
    """Sun positions for an array of instants.

    Attributes
    ----------
    altitude : (n,) float, degrees above the horizon (with refraction when asked for)
    azimuth : (n,) float, degrees clockwise from true north
    declination : (n,) float, degrees
    equation_of_time : (n,) float, minutes (true solar time minus mean solar time)
    hour_angle : (n,) float, degrees (negative in the morning)
    """

    altitude: np.ndarray
    azimuth: np.ndarray
    declination: np.ndarray
    equation_of_time: np.ndarray
    hour_angle: np.ndarray

    @property
    def zenith(self) -> np.ndarray:
        """(n,) float, degrees from the zenith."""
        return 90.0 - self.altitude


def julian_day(when: _dt.datetime | np.ndarray) -> np.ndarray:
    """Julian day of UTC instants (a timezone-aware datetime, or ``datetime64`` values in UTC)."""
    if isinstance(when, _dt.datetime):
        if when.tzinfo is None:
            raise ValueError("julian_day needs a timezone-aware datetime (or datetime64 in UTC)")
        when = np.array([np.datetime64(when.astimezone(_dt.UTC).replace(tzinfo=None), "us")])
    seconds = (np.asarray(when, dtype="datetime64[us]") - np.datetime64("2000-01-01T12:00:00", "us")) / np.timedelta64(1, "s")
    return 2451545.0 + np.asarray(seconds, dtype=np.float64) / 86400.0


def _sun_terms(jd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Declination (degrees) and equation of time (minutes) at Julian days ``jd``."""
    t = (jd - 2451545.0) / 36525.0  # Julian centuries since J2000.0
    mean_long = np.mod(280.46646 + t * (36000.76983 + t * 0.0003032), 360.0)
    mean_anom = 357.52911 + t * (35999.05029 - 0.0001537 * t)
    ecc = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    m = np.radians(mean_anom)
    centre = np.sin(m) * (1.914602 - t * (0.004817 + 0.000014 * t)) + np.sin(2 * m) * (0.019993 - 0.000101 * t) + np.sin(3 * m) * 0.000289
    omega = np.radians(125.04 - 1934.136 * t)
    apparent_long = mean_long + centre - 0.00569 - 0.00478 * np.sin(omega)
    mean_obliquity = 23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0
    obliquity = np.radians(mean_obliquity + 0.00256 * np.cos(omega))
    declination = np.degrees(np.arcsin(np.sin(obliquity) * np.sin(np.radians(apparent_long))))
    y = np.tan(obliquity / 2.0) ** 2
    l0 = np.radians(mean_long)
    eot = 4.0 * np.degrees(
        y * np.sin(2 * l0)
        - 2 * ecc * np.sin(m)
        + 4 * ecc * y * np.sin(m) * np.cos(2 * l0)
        - 0.5 * y * y * np.sin(4 * l0)
        - 1.25 * ecc * ecc * np.sin(2 * m)
    )
    return declination, eot


def refraction(altitude: np.ndarray) -> np.ndarray:
    """Atmospheric refraction (degrees, to add) at a true altitude, NOAA's piecewise fit."""
    e = np.asarray(altitude, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        te = np.tan(np.radians(e))
        high = 58.1 / te - 0.07 / te**3 + 0.000086 / te**5
        low = 1735.0 + e * (-518.2 + e * (103.4 + e * (-12.79 + e * 0.711)))
        below = -20.772 / te
    seconds = np.where(e > 85.0, 0.0, np.where(e > 5.0, high, np.where(e > -0.575, low, below)))
    return seconds / 3600.0


def _position(lat: float, declination: np.ndarray, hour_angle: np.ndarray, refract: bool) -> tuple[np.ndarray, np.ndarray]:
    phi, dec, ha = np.radians(lat), np.radians(declination), np.radians(hour_angle)
    cos_zen = np.clip(np.sin(phi) * np.sin(dec) + np.cos(phi) * np.cos(dec) * np.cos(ha), -1.0, 1.0)
    altitude = 90.0 - np.degrees(np.arccos(cos_zen))
    # azimuth from north, clockwise: atan2 of the east and north components of the sun vector
    east = -np.cos(dec) * np.sin(ha)
    north = np.cos(phi) * np.sin(dec) - np.sin(phi) * np.cos(dec) * np.cos(ha)
    azimuth = np.mod(np.degrees(np.arctan2(east, north)), 360.0)
    if refract:
        altitude = altitude + refraction(altitude)
    return altitude, azimuth


def sun_position(when: _dt.datetime | np.ndarray, lat: float, lon: float, *, refract: bool = True) -> SunPosition:
    """Sun positions at UTC instants seen from (``lat``, ``lon``) degrees (east positive).

    Parameters
    ----------
    when : a timezone-aware datetime, or (n,) ``datetime64`` in UTC
    lat, lon : degrees
    refract : add atmospheric refraction to the altitude (what an observer sees)
    """
    jd = julian_day(when)
    declination, eot = _sun_terms(jd)
    minutes_utc = np.mod((jd - 0.5) * 1440.0, 1440.0)
    true_solar = np.mod(minutes_utc + eot + 4.0 * lon, 1440.0)
    hour_angle = true_solar / 4.0 - 180.0
    altitude, azimuth = _position(lat, declination, hour_angle, refract)
    return SunPosition(altitude, azimuth, declination, eot, hour_angle)


def solar_day(year: int, month: int, day: int, lon: float) -> tuple[float, float]:
    """Declination (degrees) and equation of time (minutes) at the local true solar noon of a day."""
    noon_utc = _dt.datetime(year, month, day, 12, tzinfo=_dt.UTC) - _dt.timedelta(minutes=4.0 * lon)
    declination, eot = _sun_terms(julian_day(noon_utc))
    return float(declination[0]), float(eot[0])


def sun_position_solar_time(date: _dt.date, hours: np.ndarray, lat: float, lon: float, *, refract: bool = True) -> SunPosition:
    """Sun positions at true solar times ``hours`` (0–24, 12 = transit) of a ``date``.

    The hour angle is ``15° × (hours - 12)`` exactly; the declination is taken at each instant
    (the civil instant is true solar time minus the equation of time and the longitude).
    """
    hours = np.asarray(hours, dtype=np.float64)
    _, eot_noon = solar_day(date.year, date.month, date.day, lon)
    base = np.datetime64(date.isoformat(), "us")
    minutes_utc = hours * 60.0 - eot_noon - 4.0 * lon
    instants = base + (minutes_utc * 60e6).astype("timedelta64[us]")
    declination, eot = _sun_terms(julian_day(instants))
    hour_angle = 15.0 * (hours - 12.0)
    altitude, azimuth = _position(lat, declination, hour_angle, refract)
    return SunPosition(altitude, azimuth, declination, eot, hour_angle)


def sun_vectors(altitude: np.ndarray, azimuth: np.ndarray, true_north: float = 0.0) -> np.ndarray:
    """Unit vectors towards the sun in a projected grid's (east, north, up) axes.

    Parameters
    ----------
    altitude, azimuth : (n,) float, degrees (azimuth from true north)
    true_north : degrees, the grid azimuth of true north at the place (the meridian
        convergence of a transverse Mercator grid, with its sign); grid azimuth = azimuth + this

    Returns
    -------
    (n, 3) float64
    """
    alt = np.radians(np.asarray(altitude, dtype=np.float64))
    az = np.radians(np.asarray(azimuth, dtype=np.float64) + true_north)
    return np.stack([np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)], axis=-1)
