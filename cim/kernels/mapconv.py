"""Map conversions of BIM models: local engineering coordinates → map coordinates.

IFC places a model in a projected CRS with a 2D Helmert transformation (``IfcMapConversion``,
IFC2x3's ``ePSet_MapConversion``): rotate the local XY plane, scale, and shift by the false
origin; heights are scaled and shifted. Without one, ``IfcSite`` gives a geodetic reference
point and the context's ``TrueNorth``. These helpers are the arithmetic of both; reading the
values from a file is :mod:`cim.sources.ifc`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "helmert_2d",
    "rotation_from_axis",
    "rotation_from_true_north",
    "dms_to_degrees",
    "enu_rotation_about_up",
]


def helmert_2d(
    xyz: np.ndarray,
    origin: Sequence[float],
    rotation: float,
    scale: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Local coordinates to map coordinates, IfcMapConversion style.

    ``E = E0 + sx (x cos θ − y sin θ)``, ``N = N0 + sy (x sin θ + y cos θ)``, ``H = H0 + sz z``.

    Parameters
    ----------
    xyz : (n, 3) float, local coordinates
    origin : (E0, N0, H0), the map position of the local origin
    rotation : θ, radians, counter-clockwise from map east to the local +X axis
    scale : (sx, sy, sz), map units per local unit along each axis

    Returns
    -------
    (n, 3) float64 map coordinates.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    c, s = np.cos(rotation), np.sin(rotation)
    out = np.empty(xyz.shape, dtype=np.float64)
    x, y = xyz[..., 0], xyz[..., 1]
    out[..., 0] = origin[0] + scale[0] * (c * x - s * y)
    out[..., 1] = origin[1] + scale[1] * (s * x + c * y)
    out[..., 2] = origin[2] + scale[2] * xyz[..., 2]
    return out


def rotation_from_axis(abscissa: float | None, ordinate: float | None) -> float:
    """θ (radians) of IfcMapConversion's XAxisAbscissa/XAxisOrdinate; (0, 0) or unset is 0."""
    a = 0.0 if abscissa is None else float(abscissa)
    o = 0.0 if ordinate is None else float(ordinate)
    if a == 0.0 and o == 0.0:
        return 0.0
    return float(np.arctan2(o, a))


def rotation_from_true_north(north_x: float, north_y: float) -> float:
    """θ (radians, from east to local +X, counter-clockwise) for a TrueNorth direction.

    ``TrueNorth`` is the direction of north in the local XY plane; local +X is then 90° − α
    from east, where α is north's angle from local +X.
    """
    if north_x == 0.0 and north_y == 0.0:
        return 0.0
    return float(np.pi / 2.0 - np.arctan2(north_y, north_x))


def dms_to_degrees(dms: Sequence[float] | None) -> float | None:
    """IfcCompoundPlaneAngleMeasure (degrees, minutes, seconds[, millionths of a second]) to
    decimal degrees; the parts carry the same sign. None for a missing value."""
    if dms is None or len(dms) == 0:
        return None
    parts = list(dms) + [0] * (4 - len(dms))
    d, m, s, us = (float(v) for v in parts[:4])
    return d + m / 60.0 + s / 3600.0 + us / 3.6e9


def enu_rotation_about_up(rotation: float) -> np.ndarray:
    """(3, 3) matrix turning local (x, y, z) into (east, north, up) for a model whose +X axis
    lies ``rotation`` radians counter-clockwise from east."""
    c, s = np.cos(rotation), np.sin(rotation)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
