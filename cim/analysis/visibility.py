"""Line of sight (通视), viewshed (可视域) and skyline (天际线) over a surface model.

A line of sight is tested exactly against the building prisms and marched over the terrain;
viewshed and skyline sweep rays out from the viewpoint over the DSM: along each ray the surface
is visible where its elevation angle reaches the highest angle met so far (the usual radial
sweep), and the skyline is the highest angle of each ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cim.analysis.model import SurfaceModel
from cim.errors import CimInputError
from cim.kernels.rays import march_heightfield, radial_samples, segment_prism_hits

__all__ = ["Sightline", "Skyline", "Viewshed", "sightline", "skyline", "viewshed", "viewshed_reference"]


@dataclass
class Sightline:
    """The answer to "can A see B?".

    Attributes
    ----------
    visible : nothing stands between the two points
    kind : "building" or "terrain" for the first obstruction, else None
    building : the obstructing building's row in the model's prisms (-1: none)
    point : (3,) float, where the sight line first meets the obstruction (NaN: none)
    distance : metres from A to that point (NaN: none)
    length : metres from A to B
    """

    visible: bool
    kind: str | None
    building: int
    point: np.ndarray
    distance: float
    length: float


def sightline(model: SurfaceModel, a: np.ndarray, b: np.ndarray) -> Sightline:
    """Whether the segment ``a → b`` ((3,) x, y, z in the model's CRS) is clear of every
    building (exact prism test; a building standing by its mesh is met in the DSM instead) and
    of the terrain (marched every half cell, the last cell before ``b`` excepted, so a target
    standing on the ground is not hidden by its own cell)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = b - a
    length = float(np.linalg.norm(d))
    if length <= 0:
        raise CimInputError("the two points of a line of sight must differ")
    ea, eb, ep = model.prisms.edges
    top = model.prisms.top
    if len(model.meshed):  # buildings standing by their meshes are met in the marched surface: no prism
        top = np.array(top, dtype=np.float64, copy=True)
        top[model.meshed] = model.prisms.base[model.meshed] - 1.0
    t_b, prism = segment_prism_hits(a[None], b[None], ea, eb, ep, model.prisms.base, top)
    dist_b = float(t_b[0]) * length if np.isfinite(t_b[0]) else np.inf
    t_t, _, _ = march_heightfield(
        model.sight_surface, model.x0, model.y0, model.res, a[None], (d / length)[None], max(length - model.res, 0.0), t_start=model.res
    )
    dist_t = float(t_t[0]) if np.isfinite(t_t[0]) else np.inf
    if not np.isfinite(min(dist_b, dist_t)):
        return Sightline(True, None, -1, np.full(3, np.nan), float("nan"), length)
    if dist_b <= dist_t:
        return Sightline(False, "building", int(prism[0]), a + d * (dist_b / length), dist_b, length)
    hit = a + d * (dist_t / length)
    if len(model.meshed):
        r, c, inside = model.cells(hit[:1], hit[1:2])
        owner = int(model.owner[r[0], c[0]]) if inside[0] else -1
        if owner >= 0 and owner in set(model.meshed.tolist()):
            return Sightline(False, "building", owner, hit, dist_t, length)
    return Sightline(False, "terrain", -1, hit, dist_t, length)


@dataclass
class Viewshed:
    """Visible and hidden surface around an observer.

    Attributes
    ----------
    window : the grid rows and columns of the observer's box
    state : (h, w) uint8, 0 outside the radius, 1 hidden, 2 visible
    buildings : (k,) int64, buildings with a visible roof cell, sorted
    """

    window: tuple[slice, slice]
    state: np.ndarray
    buildings: np.ndarray

    def areas(self, res: float) -> tuple[float, float]:
        """(visible, hidden) square metres."""
        return float((self.state == 2).sum() * res * res), float((self.state == 1).sum() * res * res)


def _sweep(model: SurfaceModel, x: float, y: float, z: float, radius: float, azimuths: np.ndarray, step: float):
    sx, sy, dist = radial_samples((x, y), azimuths, radius, step)
    r, c, inside = model.cells(sx, sy)
    rr, cc = np.where(inside, r, 0), np.where(inside, c, 0)
    height = np.where(inside, np.asarray(model.dsm[rr, cc], dtype=np.float64), -np.inf)
    height = np.where(np.isnan(height), -np.inf, height)
    slope = (height - z) / dist[None, :]
    return r, c, inside, dist, slope


def viewshed(model: SurfaceModel, x: float, y: float, eye_height: float, radius: float) -> Viewshed:
    """The surface (ground and roofs) an observer at (x, y), ``eye_height`` above the surface
    there, sees within ``radius`` metres."""
    if not radius > 0:
        raise CimInputError(f"the viewshed radius must be positive, not {radius}")
    z = _surface(model, x, y) + eye_height
    step = model.res
    n_az = int(np.ceil(2 * np.pi * radius / (0.7 * model.res)))
    azimuths = np.arange(n_az) * 360.0 / n_az
    window = model.window((x - radius, y - radius, x + radius, y + radius))
    shape = (window[0].stop - window[0].start, window[1].stop - window[1].start)
    seen = np.zeros(shape, dtype=bool)
    for a0 in range(0, n_az, 2048):
        r, c, inside, _, slope = _sweep(model, x, y, z, radius, azimuths[a0 : a0 + 2048], step)
        before = np.maximum.accumulate(slope, axis=1)
        prior = np.concatenate([np.full((len(slope), 1), -np.inf), before[:, :-1]], axis=1)
        vis = inside & (slope >= prior)
        rw, cw = r[vis] - window[0].start, c[vis] - window[1].start
        ok = (rw >= 0) & (rw < shape[0]) & (cw >= 0) & (cw < shape[1])
        seen[rw[ok], cw[ok]] = True
    state = _within(model, window, x, y, radius).astype(np.uint8)
    state[(state == 1) & seen] = 2
    # the observer's own cell
    r0, c0, ok0 = model.cells(np.array([x]), np.array([y]))
    if ok0[0]:
        state[r0[0] - window[0].start, c0[0] - window[1].start] = 2
    owners = np.asarray(model.owner[window])[state == 2]
    return Viewshed(window, state, np.unique(owners[owners >= 0]).astype(np.int64))


def _within(model: SurfaceModel, window: tuple[slice, slice], x: float, y: float, radius: float) -> np.ndarray:
    rows = np.arange(window[0].start, window[0].stop)
    cols = np.arange(window[1].start, window[1].stop)
    cx, cy = model.cell_centres(rows[:, None], cols[None, :])
    return np.hypot(cx - x, cy - y) <= radius


def _surface(model: SurfaceModel, x: float, y: float) -> float:
    r, c, ok = model.cells(np.array([x]), np.array([y]))
    if not ok[0]:
        raise CimInputError(f"the point ({x:.1f}, {y:.1f}) lies outside the city's surface model")
    z = float(model.dsm[r[0], c[0]])
    if not np.isfinite(z):
        raise CimInputError(f"the city's surface model has no height at ({x:.1f}, {y:.1f})")
    return z


def viewshed_reference(model: SurfaceModel, x: float, y: float, eye_height: float, radius: float) -> np.ndarray:
    """The viewshed's state raster by brute force: a ray from the eye to every cell's surface,
    marched every half cell (slow: for tests on small scenes)."""
    z = _surface(model, x, y) + eye_height
    window = model.window((x - radius, y - radius, x + radius, y + radius))
    state = _within(model, window, x, y, radius).astype(np.uint8)
    r, c = np.nonzero(state)
    gr, gc = r + window[0].start, c + window[1].start
    cx, cy = model.cell_centres(gr, gc)
    cz = np.asarray(model.dsm[gr, gc], dtype=np.float64)
    d = np.column_stack([cx - x, cy - y, cz - z])
    length = np.linalg.norm(d, axis=1)
    far = length > 1e-9
    dirs = np.zeros_like(d)
    dirs[far] = d[far] / length[far, None]
    origin = np.repeat(np.array([[x, y, z]]), len(d), axis=0)
    # stop a cell short of the target, and test against the surface lowered a little so a
    # ray grazing the target's own roof plane is not its own obstacle
    t, _, _ = march_heightfield(
        np.asarray(model.dsm) - 1e-3, model.x0, model.y0, model.res, origin, dirs, np.maximum(length - model.res, 0.0)
    )
    visible = np.isnan(t) | ~far
    state[r[visible], c[visible]] = 2
    return state


@dataclass
class Skyline:
    """The skyline around a viewpoint.

    Attributes
    ----------
    azimuths : (a,) degrees clockwise from grid north
    elevation : (a,) degrees, the highest elevation angle of the surface on each azimuth
    distance : (a,) metres to where it is reached
    building : (a,) int64, the building there (-1: terrain, or nothing within the radius)
    point : (a, 3) float, the skyline's points
    """

    azimuths: np.ndarray
    elevation: np.ndarray
    distance: np.ndarray
    building: np.ndarray
    point: np.ndarray

    def buildings(self) -> tuple[np.ndarray, np.ndarray]:
        """The buildings forming the skyline and the azimuth samples each spans, most first."""
        b = self.building[self.building >= 0]
        ids, counts = np.unique(b, return_counts=True)
        order = np.lexsort((ids, -counts))
        return ids[order], counts[order]


def skyline(model: SurfaceModel, x: float, y: float, eye_height: float, *, radius: float = 2000.0, azimuth_step: float = 0.5) -> Skyline:
    """The skyline seen from (x, y), ``eye_height`` above the surface, out to ``radius``."""
    if not 0 < azimuth_step <= 10:
        raise CimInputError(f"azimuth_step must be in (0, 10] degrees, not {azimuth_step}")
    z = _surface(model, x, y) + eye_height
    azimuths = np.arange(0.0, 360.0, azimuth_step)
    r, c, inside, dist, slope = _sweep(model, x, y, z, radius, azimuths, model.res)
    best = np.argmax(slope, axis=1)
    rows = np.arange(len(azimuths))
    top = slope[rows, best]
    found = np.isfinite(top) & inside[rows, best]
    br, bc = r[rows, best], c[rows, best]
    owner = np.where(found, np.asarray(model.owner)[np.where(found, br, 0), np.where(found, bc, 0)], -1).astype(np.int64)
    elevation = np.where(found, np.degrees(np.arctan(top)), np.nan)
    d = np.where(found, dist[best], np.nan)
    az = np.radians(azimuths)
    point = np.column_stack([x + np.sin(az) * d, y + np.cos(az) * d, z + np.tan(np.radians(elevation)) * d])
    return Skyline(azimuths, elevation, d, owner, point)
