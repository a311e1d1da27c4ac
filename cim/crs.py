"""CRS helpers: one place that builds pyproj objects, always with ``always_xy=True``.

EPSG:4544 declares northing before easting; a transformer built without ``always_xy`` silently
swaps the axes (a peer tool put Tianshui near 4° N, 134° E). Every transformer in cim comes from
:func:`transformer`, which is cached so no loop ever builds one twice.
"""

from __future__ import annotations

from functools import lru_cache

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
