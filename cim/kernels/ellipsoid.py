"""The reference ellipsoid: WGS84 constants, shared by the frames and their compiled loops.

CGCS2000 and WGS84 ellipsoids differ by 0.1 mm in the semi-minor axis; we use WGS84 constants,
as 3D Tiles clients do.
"""

__all__ = ["WGS84_A", "WGS84_F", "WGS84_E2"]

#: semi-major axis (m)
WGS84_A = 6378137.0
#: flattening
WGS84_F = 1.0 / 298.257223563
#: first eccentricity squared
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)
