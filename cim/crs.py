"""CRS helpers: one place that builds pyproj objects, always with ``always_xy=True``.

EPSG:4544 declares northing before easting; a transformer built without ``always_xy`` silently
swaps the axes (a peer tool put Tianshui near 4° N, 134° E). Every transformer in cim comes from
:func:`transformer`, which is cached so no loop ever builds one twice.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from cim.errors import CimCRSError

__all__ = [
    "parse_crs",
    "WGS84_LIKE_DATUMS",
    "GEODETIC",
    "transformer",
    "to_lonlat",
    "from_lonlat",
    "crs_label",
    "AREA_OF_USE_MARGIN",
    "area_of_use_problem",
    "check_area_of_use",
    "area_of_use",
]


def parse_crs(value: object, *, what: str = "CRS") -> CRS:
    """Parse a user CRS (``"EPSG:4544"``, WKT, PROJJSON, an int or a pyproj CRS).

    Raises
    ------
    CimCRSError
        When the value is empty or not a CRS pyproj knows.
    """
    if value is None or value == "":
        raise CimCRSError(f"{what}: no CRS given")
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise CimCRSError(f"{what}: not a CRS pyproj understands: {value!r} ({exc})") from None


#: datums whose geographic coordinates PROJ takes unchanged as WGS 84's: WGS 84 itself, and
#: CGCS2000, the datum of Chinese surveying, to which PROJ 9 knows no transformation (it applies a
#: null, "ballpark", offset)
WGS84_LIKE_DATUMS = frozenset({"World Geodetic System 1984", "World Geodetic System 1984 ensemble", "China 2000"})

GEODETIC = CRS.from_epsg(4326)


def _wgs84_like_projection(crs: CRS) -> bool:
    geodetic = crs.geodetic_crs if crs.is_projected else None
    return geodetic is not None and geodetic.datum is not None and geodetic.datum.name in WGS84_LIKE_DATUMS


def _geodetic(crs: CRS) -> CRS:
    geodetic = crs.geodetic_crs
    assert geodetic is not None  # a projection on a datum (_wgs84_like_projection checked it)
    return geodetic


@lru_cache(maxsize=64)
def _transformer(src_wkt: str, dst_wkt: str) -> Transformer:
    src, dst = CRS.from_wkt(src_wkt), CRS.from_wkt(dst_wkt)
    # between EPSG:4326 and a projection on a WGS 84-like datum (EPSG:4544 among them) the
    # projection alone gives PROJ's numbers (the datum step is a null offset; tests/test_crs.py
    # compares them), and pyproj builds it without the search of PROJ's database for datum
    # transformations that the general transformer makes in every process
    if dst.equals(GEODETIC, ignore_axis_order=True) and _wgs84_like_projection(src):
        dst = _geodetic(src)
    elif src.equals(GEODETIC, ignore_axis_order=True) and _wgs84_like_projection(dst):
        src = _geodetic(dst)
    return Transformer.from_crs(src, dst, always_xy=True)


def transformer(src: CRS, dst: CRS | str) -> Transformer:
    """A cached ``always_xy`` transformer from ``src`` to ``dst``."""
    dst_crs = parse_crs(dst)
    return _transformer(src.to_wkt(), dst_crs.to_wkt())


def to_lonlat(x: np.ndarray, y: np.ndarray, src: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Project ``(x, y)`` in ``src`` to longitude/latitude degrees (float64 arrays, new copies
    of the input's shape)."""
    lon = np.array(x, dtype=np.float64, order="C")  # our own copies, transformed in place
    lat = np.array(y, dtype=np.float64, order="C")
    if src.is_geographic and src.equals(GEODETIC, ignore_axis_order=True):
        return lon, lat
    transformer(src, GEODETIC).transform(lon.reshape(-1), lat.reshape(-1), inplace=True)
    return lon, lat


def from_lonlat(lon: np.ndarray, lat: np.ndarray, dst: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude degrees to ``(x, y)`` in ``dst``."""
    x, y = transformer(GEODETIC, dst).transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def crs_label(crs: CRS) -> str:
    """``"EPSG:4544"`` when the CRS has an EPSG code, else its name."""
    code = crs.to_epsg(min_confidence=70)
    return f"EPSG:{code}" if code else crs.name


#: degrees an extent may reach beyond its CRS's declared area of use (a city straddling the edge
#: of a Gauss-Kruger zone is still placed right; a file in the wrong zone or the wrong unit is not)
AREA_OF_USE_MARGIN = 2.0


def area_of_use_problem(crs: CRS, lonlat_bounds: tuple[float, float, float, float], margin: float = AREA_OF_USE_MARGIN) -> str | None:
    """Why an extent (west, south, east, north in degrees) cannot be right for ``crs``, or None.

    An extent that is not finite, not a longitude/latitude box, or that lies beyond the CRS's
    area of use (pyproj ``CRS.area_of_use``) by more than ``margin`` degrees is wrong: the
    numbers are in another unit or another CRS than the one declared. A CRS with no declared
    area of use, or one that crosses the antimeridian, is checked only as a box.
    """
    w, s, e, n = (float(v) for v in lonlat_bounds)
    if not all(np.isfinite([w, s, e, n])):
        return f"its extent does not project to longitude/latitude in {crs_label(crs)}"
    if not (-180.0 <= w <= e <= 180.0 and -90.0 <= s <= n <= 90.0):
        return f"its extent ({w:.6g}, {s:.6g}, {e:.6g}, {n:.6g}) is not a valid longitude/latitude box in {crs_label(crs)}"
    area = area_of_use(crs)
    if area is None or area.west > area.east:
        return None
    if w < area.west - margin or e > area.east + margin or s < area.south - margin or n > area.north + margin:
        return (
            f"its extent ({w:.4f}, {s:.4f}, {e:.4f}, {n:.4f}) in longitude/latitude lies outside the area of use of "
            f"{crs_label(crs)} ({(area.name or 'its area').rstrip('.')}: {area.west:g}, {area.south:g}, {area.east:g}, {area.north:g})"
        )
    return None


@lru_cache(maxsize=64)
def _area_of_use(wkt: str) -> Any:
    """The CRS's area of use, from its EPSG entry when its WKT carries none (a GeoTIFF's or a
    LAS header's WKT 1 has no USAGE)."""
    crs = CRS.from_wkt(wkt)
    if crs.area_of_use is not None:
        return crs.area_of_use
    code = crs.to_epsg(min_confidence=70)
    return CRS.from_epsg(code).area_of_use if code else None


def area_of_use(crs: CRS) -> Any:
    """The CRS's area of use (a pyproj ``AreaOfUse``: west, south, east, north, name; from its
    EPSG entry when its own definition carries none), or None."""
    return _area_of_use(crs.to_wkt())


def check_area_of_use(crs: CRS, lonlat_bounds: tuple[float, float, float, float], what: str, margin: float = AREA_OF_USE_MARGIN) -> None:
    """Raise :class:`CimCRSError` naming ``what`` when :func:`area_of_use_problem` finds one."""
    problem = area_of_use_problem(crs, lonlat_bounds, margin)
    if problem is not None:
        raise CimCRSError(f"{what}: {problem} (wrong CRS, or coordinates in another unit?)")
