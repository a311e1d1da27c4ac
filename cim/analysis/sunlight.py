"""Sunlight hours (日照分析) on residential façades, and the hour-by-hour shadow of an area.

Chinese residential planning measures sunlight on the ground-floor window sill (0.9 m above the
floor) on a winter day, 大寒日 (Great Cold, about 20 January) by default, between 8:00 and 16:00
true solar time; a dwelling below the threshold (commonly 2 h) fails. Here every residential
building's façades are sampled every ``spacing`` metres at sill height, each sample looks at the
sun every ``step`` minutes (the midpoints of the intervals, so ``n`` sunlit samples are
``n × step`` minutes of sun), and a sample is sunlit when the sun is in front of its façade
and a ray towards the sun clears the DSM (terrain and every roof, within ``max_distance``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from cim.analysis.model import SurfaceModel
from cim.analysis.sun import sun_position_solar_time, sun_vectors
from cim.errors import CimInputError
from cim.kernels.rays import march_heightfield, shadow_heights

__all__ = [
    "FacadePoints",
    "RESIDENTIAL",
    "SOUTH_COS",
    "SunlightResult",
    "ShadowResult",
    "facade_points",
    "ground_shadow",
    "solar_samples",
    "sunlight_hours",
    "sunlit",
]

#: values of the ``use`` attribute that mean housing
RESIDENTIAL = ("residential", "住宅", "居住")
#: a wall is south-facing when its outward normal lies within 45° of due south
SOUTH_COS = float(np.cos(np.radians(45.0)))


@dataclass
class FacadePoints:
    """Sample points on façades.

    Attributes
    ----------
    xyz : (m, 3) float64, positions (just outside the wall)
    normal : (m, 2) float64, the wall's outward unit normal
    building : (m,) int64, the building (row of the model's prisms)
    """

    xyz: np.ndarray
    normal: np.ndarray
    building: np.ndarray


def facade_points(model: SurfaceModel, rows: np.ndarray, *, spacing: float = 3.0, sill: float = 0.9, offset: float = 0.2) -> FacadePoints:
    """Points every ``spacing`` metres along every wall of buildings ``rows``, ``sill`` metres
    above each building's base, ``offset`` metres outside the wall (at least one a wall)."""
    a, b, prism = model.prisms.edges
    keep = np.isin(prism, rows)
    a, b, prism = a[keep], b[keep], prism[keep]
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    ok = length > 1e-6
    a, d, length, prism = a[ok], d[ok], length[ok], prism[ok]
    normal = np.column_stack([d[:, 1], -d[:, 0]]) / length[:, None]  # rings are oriented: outward
    count = np.maximum(1, np.floor(length / spacing).astype(np.int64))
    edge = np.repeat(np.arange(len(a)), count)
    k = np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count)
    f = (k + 0.5) / count[edge]
    xy = a[edge] + f[:, None] * d[edge] + offset * normal[edge]
    z = model.prisms.base[prism[edge]] + sill
    return FacadePoints(np.column_stack([xy, z]), normal[edge], prism[edge])


def solar_samples(
    model: SurfaceModel, date: dt.date, start: float, end: float, step_minutes: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True solar times (midpoints of ``step_minutes`` intervals from ``start`` to ``end`` hours),
    the sun's altitudes there (degrees) and unit vectors towards it in grid axes, seen from the
    model's centre."""
    if not 0 <= start < end <= 24:
        raise CimInputError(f"start and end must be hours with 0 ≤ start < end ≤ 24, not {start}, {end}")
    if not 0 < step_minutes <= 60:
        raise CimInputError(f"step must be 1–60 minutes, not {step_minutes}")
    n = int(round((end - start) * 60 / step_minutes))
    if n < 1 or abs(n * step_minutes - (end - start) * 60) > 1e-6:
        raise CimInputError(f"step {step_minutes} min does not divide {start}–{end} h into whole intervals")
    hours = start + (np.arange(n) + 0.5) * step_minutes / 60.0
    lon, lat = model.centre_lonlat
    sun = sun_position_solar_time(date, hours, lat, lon)
    return hours, sun.altitude, sun_vectors(sun.altitude, sun.azimuth, model.true_north)


def sunlit(model: SurfaceModel, xyz: np.ndarray, sun: np.ndarray, *, max_distance: float, skip: float, chunk: int = 400_000) -> np.ndarray:
    """Whether a ray from each point towards the sun clears the DSM.

    Parameters
    ----------
    xyz : (m, 3) float, points
    sun : (m, 3) float, unit vectors towards the sun (upwards)
    max_distance : horizontal metres searched for obstacles
    skip : horizontal metres skipped at the start (the point's own cell)
    """
    out = np.zeros(len(xyz), dtype=bool)
    horiz = np.maximum(np.hypot(sun[:, 0], sun[:, 1]), 1e-9)
    for s in range(0, len(xyz), chunk):
        sl = slice(s, s + chunk)
        t, _, _ = march_heightfield(
            model.dsm,
            model.x0,
            model.y0,
            model.res,
            xyz[sl],
            sun[sl],
            max_distance / horiz[sl],
            t_start=skip / horiz[sl],
            blocks=model.blocks,
        )
        out[sl] = np.isnan(t)
    return out


@dataclass
class SunlightResult:
    """Sunlight hours of residential façades.

    Attributes
    ----------
    buildings : (b,) int64, the buildings analysed (rows of the model's prisms)
    max_hours : (b,) float, the sunniest façade point's hours
    min_south_hours : (b,) float, the least sunny south-facing point's hours (walls facing
        within 45° of south, where Chinese dwellings put their living rooms); NaN without any
    mean_hours : (b,) float, the mean over the building's façade points
    points : the façade points; ``hours`` their hours of sun
    threshold : hours; a building whose ``min_south_hours`` is below it fails
    """

    buildings: np.ndarray
    max_hours: np.ndarray
    min_south_hours: np.ndarray
    mean_hours: np.ndarray
    points: FacadePoints
    hours: np.ndarray
    threshold: float

    @property
    def below(self) -> np.ndarray:
        """(b,) bool, the buildings below the threshold."""
        with np.errstate(invalid="ignore"):
            return self.min_south_hours < self.threshold - 1e-9


def sunlight_hours(
    model: SurfaceModel,
    *,
    buildings: np.ndarray | None = None,
    date: dt.date | None = None,
    start: float = 8.0,
    end: float = 16.0,
    step_minutes: float = 10.0,
    threshold: float = 2.0,
    spacing: float = 3.0,
    sill: float = 0.9,
    max_distance: float = 1000.0,
    uses: tuple[str, ...] = RESIDENTIAL,
) -> SunlightResult:
    """Hours of direct sun on the façades of residential buildings on one day.

    Parameters
    ----------
    model : the city's surface model
    buildings : rows of the model's prisms to analyse (default: every building whose use is one of ``uses``)
    date : the day (default 大寒, 20 January of the current year)
    start, end : the window in true solar time, hours
    step_minutes : time between sun positions
    threshold : hours a building's south-facing points must reach
    spacing : metres between façade points
    sill : metres above the floor (the ground-floor window sill)
    max_distance : horizontal metres searched for obstacles
    """
    if date is None:
        date = dt.date(dt.date.today().year, 1, 20)
    if buildings is None:
        wanted = {u.lower() for u in uses}
        buildings = np.flatnonzero([u is not None and str(u).lower() in wanted for u in model.prisms.uses])
    buildings = np.asarray(buildings, dtype=np.int64)
    _, altitude, sun = solar_samples(model, date, start, end, step_minutes)
    pts = facade_points(model, buildings, spacing=spacing, sill=sill)
    m = len(pts.building)
    hours: np.ndarray = np.zeros(m)
    up = altitude > 0
    if m and up.any():
        facing = (pts.normal @ sun[up, :2].T) > 0  # (m, s'): the sun in front of the wall
        pi, si = np.nonzero(facing)
        lit = sunlit(model, pts.xyz[pi], sun[up][si], max_distance=max_distance, skip=1.5 * model.res)
        hours = np.bincount(pi[lit], minlength=m) * step_minutes / 60.0
    max_hours = np.full(len(buildings), np.nan)
    min_south = np.full(len(buildings), np.nan)
    mean_hours = np.full(len(buildings), np.nan)
    if m:
        slot = np.searchsorted(buildings, pts.building) if np.all(np.diff(buildings) > 0) else _slots(buildings, pts.building)
        np.fmax.at(max_hours, slot, hours)
        south = pts.normal[:, 1] < -SOUTH_COS  # walls facing within 45° of due (grid) south
        np.fmin.at(min_south, slot[south], hours[south])
        counts = np.bincount(slot, minlength=len(buildings))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_hours = np.bincount(slot, weights=hours, minlength=len(buildings)) / counts
    return SunlightResult(buildings, max_hours, min_south, mean_hours, pts, hours, threshold)


def _slots(buildings: np.ndarray, of: np.ndarray) -> np.ndarray:
    order = np.argsort(buildings, kind="stable")
    return order[np.searchsorted(buildings[order], of)]


@dataclass
class ShadowResult:
    """Shadow over an area at each sun sample.

    Attributes
    ----------
    hours : (s,) true solar times
    window : the grid rows and columns of the area's box
    inside : (h, w) bool, the area's cells
    shadow : (s, h, w) bool, shadowed cells (False outside the area)
    sun_hours : (h, w) float, hours of sun of each cell over the samples
    step_minutes : minutes each sample stands for
    """

    hours: np.ndarray
    window: tuple[slice, slice]
    inside: np.ndarray
    shadow: np.ndarray
    sun_hours: np.ndarray
    step_minutes: float

    def shadow_fraction(self) -> np.ndarray:
        """(s,) share of the area in shadow at each sample."""
        n = max(int(self.inside.sum()), 1)
        return self.shadow.reshape(len(self.hours), -1).sum(axis=1) / n


def ground_shadow(
    model: SurfaceModel,
    area: object,
    *,
    date: dt.date | None = None,
    start: float = 8.0,
    end: float = 16.0,
    step_minutes: float = 60.0,
    max_distance: float = 1000.0,
    height: float = 0.0,
) -> ShadowResult:
    """Which cells of an area (a shapely polygon in the model's CRS) lie in shadow at each sun
    sample (hourly by default), and each cell's hours of sun.

    A cell is in shadow when its surface (ground, or the roof over it), raised by ``height``
    (and 5 cm, so a flat surface does not shade itself), lies below the shadow height swept
    from the DSM towards the sun (:func:`cim.kernels.rays.shadow_heights`) over the cells up to
    ``max_distance`` metres sunwards.
    """
    if date is None:
        date = dt.date(dt.date.today().year, 1, 20)
    import shapely

    if not isinstance(area, shapely.Geometry) or area.is_empty:
        raise CimInputError("the shadow area must be a polygon")
    hours, altitude, sun = solar_samples(model, date, start, end, step_minutes)
    bounds = tuple(shapely.bounds(area))
    window = model.window(bounds)
    inside = model.mask(area, window)
    shadow = np.zeros((len(hours), *inside.shape), dtype=bool)
    sun_hours = np.zeros(inside.shape)
    for k in range(len(hours)):
        if altitude[k] <= 0:
            shadow[k][inside] = True
            continue
        u = sun[k, :2] / np.hypot(sun[k, 0], sun[k, 1])
        xmin, ymin, xmax, ymax = bounds
        dx, dy = u * max_distance
        big = model.window((min(xmin, xmin + dx), min(ymin, ymin + dy), max(xmax, xmax + dx), max(ymax, ymax + dy)))
        surface = np.asarray(model.dsm[big], dtype=np.float64)
        heights = shadow_heights(surface, (u[0], u[1]), np.tan(np.radians(altitude[k])) * model.res)
        rs = slice(window[0].start - big[0].start, window[0].stop - big[0].start)
        cs = slice(window[1].start - big[1].start, window[1].stop - big[1].start)
        dark = (surface[rs, cs] + 0.05 + height) < heights[rs, cs]
        shadow[k] = dark & inside
        sun_hours += (~dark & inside) * (step_minutes / 60.0)
    return ShadowResult(hours, window, inside, shadow, sun_hours, step_minutes)
