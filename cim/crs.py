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


@lru_cache(maxsize=64)
def _transformer(src_wkt: str, dst_wkt: str) -> Transformer:
    return Transformer.from_crs(CRS.from_wkt(src_wkt), CRS.from_wkt(dst_wkt), always_xy=True)


def transformer(src: CRS, dst: CRS | str) -> Transformer:
    """A cached ``always_xy`` transformer from ``src`` to ``dst``."""
    dst_crs = parse_crs(dst)
    return _transformer(src.to_wkt(), dst_crs.to_wkt())


GEODETIC = CRS.from_epsg(4326)


def to_lonlat(x: np.ndarray, y: np.ndarray, src: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Project ``(x, y)`` in ``src`` to longitude/latitude degrees (float64 arrays)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if src.is_geographic and src.equals(GEODETIC, ignore_axis_order=True):
        return x.copy(), y.copy()
    lon, lat = transformer(src, GEODETIC).transform(x, y)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def from_lonlat(lon: np.ndarray, lat: np.ndarray, dst: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude degrees to ``(x, y)`` in ``dst``."""
    x, y = transformer(GEODETIC, dst).transform(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def crs_label(crs: CRS) -> str:
    """``"EPSG:4544"`` when the CRS has an EPSG code, else its name."""
    code = crs.to_epsg(min_confidence=70)
    return f"EPSG:{code}" if code else crs.name
