"""Geodetic frames: geodetic ↔ ECEF on the WGS84/CGCS2000 ellipsoid and the local ENU frame.

CGCS2000 and WGS84 ellipsoids differ by 0.1 mm in the semi-minor axis; we use WGS84 constants
(:mod:`cim.kernels.ellipsoid`), as 3D Tiles clients do. The compiled loop of
:meth:`LocalFrame.ground_and_up` is in :mod:`cim.kernels.frames_jit`, imported when first used.
"""

from __future__ import annotations

import numpy as np

from cim.kernels.ellipsoid import WGS84_A, WGS84_E2

__all__ = [
    "geodetic_to_ecef",
    "ecef_to_geodetic",
    "up_vectors",
    "enu_rotation",
    "enu_to_ecef_matrix",
    "rotate",
    "LocalFrame",
]


def geodetic_to_ecef(lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Geodetic degrees and ellipsoidal height to ECEF metres.

    Parameters
    ----------
    lon, lat : (n,) float, degrees
    h : (n,) float, metres above the ellipsoid

    Returns
    -------
    (n, 3) float64 ECEF coordinates.
    """
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    h = np.asarray(h, dtype=np.float64)
    sin_phi = np.sin(phi)
    cos_phi = np.cos(phi)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * sin_phi * sin_phi)
    out = np.empty((*np.broadcast(lam, phi, h).shape, 3), dtype=np.float64)
    out[..., 0] = (n + h) * cos_phi * np.cos(lam)
    out[..., 1] = (n + h) * cos_phi * np.sin(lam)
    out[..., 2] = (n * (1.0 - WGS84_E2) + h) * sin_phi
    return out


def ecef_to_geodetic(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECEF metres to geodetic (lon°, lat°, h m), Bowring's method with two refinements.

    Parameters
    ----------
    xyz : (n, 3) float

    Returns
    -------
    lon, lat, h : (n,) float64
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    p = np.hypot(x, y)
    lon = np.arctan2(y, x)
    lat = np.arctan2(z, p * (1.0 - WGS84_E2))
    for _ in range(4):
        s = np.sin(lat)
        n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * s * s)
        h = p / np.cos(lat) - n
        lat = np.arctan2(z, p * (1.0 - WGS84_E2 * n / (n + h)))
    s = np.sin(lat)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * s * s)
    h = p / np.cos(lat) - n
    return np.degrees(lon), np.degrees(lat), h


def up_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Unit ellipsoid normals, (n, 3) float64, at geodetic degrees."""
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    out = np.empty((*np.broadcast(lam, phi).shape, 3), dtype=np.float64)
    out[..., 0] = np.cos(phi) * np.cos(lam)
    out[..., 1] = np.cos(phi) * np.sin(lam)
    out[..., 2] = np.sin(phi)
    return out


def enu_rotation(lon: float, lat: float) -> np.ndarray:
    """(3, 3) rotation whose rows are the east, north and up unit vectors (ECEF) at a point."""
    lam, phi = np.radians(lon), np.radians(lat)
    sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
    return np.array(
        [
            [-sl, cl, 0.0],
            [-sp * cl, -sp * sl, cp],
            [cp * cl, cp * sl, sp],
        ]
    )


def enu_to_ecef_matrix(lon: float, lat: float, h: float) -> np.ndarray:
    """(4, 4) column-major-ready transform taking ENU metres at a point to ECEF metres.

    The result is a conventional row-major matrix ``M`` with ``ecef = M @ [e, n, u, 1]``;
    3D Tiles stores ``M.T.ravel()`` (column-major).
    """
    m = np.eye(4)
    m[:3, :3] = enu_rotation(lon, lat).T
    m[:3, 3] = geodetic_to_ecef(np.array([lon]), np.array([lat]), np.array([h]))[0]
    return m


def rotate(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``v @ m.T`` for (n, 3) ``v`` and (3, 3) ``m``, written out: numpy's matmul on a tall
    (n, 3) array is several times slower than three fused multiply-adds per column."""
    out = np.empty(v.shape, dtype=np.float64)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    for i in range(3):
        out[..., i] = m[i, 0] * x + m[i, 1] * y + m[i, 2] * z
    return out


class LocalFrame:
    """An ENU frame at an origin: ECEF ↔ local east/north/up metres.

    Parameters
    ----------
    lon, lat, h : origin in geodetic degrees and metres.
    """

    def __init__(self, lon: float, lat: float, h: float) -> None:
        self.lon = float(lon)
        self.lat = float(lat)
        self.h = float(h)
        self.rotation = enu_rotation(self.lon, self.lat)
        self.origin_ecef = geodetic_to_ecef(np.array(lon), np.array(lat), np.array(h))

    def from_ecef(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) ECEF → (n, 3) ENU metres, float64."""
        return rotate(np.asarray(xyz, dtype=np.float64) - self.origin_ecef, self.rotation)

    def rotate_vectors(self, v: np.ndarray) -> np.ndarray:
        """(n, 3) ECEF directions → ENU directions."""
        return rotate(np.asarray(v, dtype=np.float64), self.rotation)

    def ground_and_up(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ENU of points on the ellipsoid (height 0) at geodetic degrees, and the ellipsoid
        normal there in ENU: ``from_ecef(geodetic_to_ecef(lon, lat, 0))`` and
        ``rotate_vectors(up_vectors(lon, lat))`` in one compiled pass (a point at ellipsoidal
        height ``h`` is then ``ground + h * up``)."""
        lon = np.ascontiguousarray(lon, dtype=np.float64)
        lat = np.ascontiguousarray(lat, dtype=np.float64)
        ground = np.empty((len(lon), 3), dtype=np.float64)
        up = np.empty((len(lon), 3), dtype=np.float64)
        from cim.kernels.frames_jit import ground_and_up  # numba: imported by the layers that need it only

        ground_and_up(lon, lat, self.rotation, np.asarray(self.origin_ecef, dtype=np.float64).reshape(3), ground, up)
        return ground, up

    def to_ecef(self, enu: np.ndarray) -> np.ndarray:
        """(n, 3) ENU → (n, 3) ECEF metres, float64."""
        return rotate(np.asarray(enu, dtype=np.float64), self.rotation.T) + self.origin_ecef

    def from_geodetic(self, lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Geodetic degrees/metres → (n, 3) ENU metres."""
        return self.from_ecef(geodetic_to_ecef(lon, lat, h))

    def matrix(self) -> np.ndarray:
        """(4, 4) ENU → ECEF matrix (row-major, ``ecef = M @ p``)."""
        return enu_to_ecef_matrix(self.lon, self.lat, self.h)

    def to_dict(self) -> dict[str, float]:
        return {"lon": self.lon, "lat": self.lat, "height": self.h}
