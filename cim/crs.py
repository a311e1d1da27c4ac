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

#: datums whose geographic coordinates PROJ takes unchanged as WGS 84's: WGS 84 itself, and
#: CGCS2000, the datum of Chinese surveying, to which PROJ 9 knows no transformation (it applies a
#: null, "ballpark", offset)
WGS84_LIKE_DATUMS = frozenset({"World Geodetic System 1984", "World Geodetic System 1984 ensemble", "China 2000"})


@lru_cache(maxsize=64)
def _projection_only(wkt: str) -> tuple[Transformer, Transformer] | None:
    """(inverse, forward) projection of a projected CRS on a WGS 84-like datum, else None."""
    crs = CRS.from_wkt(wkt)
    geodetic = crs.geodetic_crs if crs.is_projected else None
    if geodetic is None or geodetic.datum is None or geodetic.datum.name not in WGS84_LIKE_DATUMS:
        return None
    return Transformer.from_crs(crs, geodetic, always_xy=True), Transformer.from_crs(geodetic, crs, always_xy=True)


def to_lonlat(x: np.ndarray, y: np.ndarray, src: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Project ``(x, y)`` in ``src`` to longitude/latitude degrees (float64 arrays).

    A projected CRS on a datum of :data:`WGS84_LIKE_DATUMS` (EPSG:4544 among them) goes through
    its inverse projection alone: the same numbers as PROJ's way to EPSG:4326 (the datum step is
    a null offset; ``tests/test_crs.py`` compares them), but pyproj builds that transformer in
    about 1 ms, where the general one searches PROJ's database for datum transformations (0.1 to
    0.2 s of CPU in each process that projects anything).
    """
    lon = np.array(x, dtype=np.float64, order="C")  # our own copies, transformed in place
    lat = np.array(y, dtype=np.float64, order="C")
    if src.is_geographic and src.equals(GEODETIC, ignore_axis_order=True):
        return lon, lat
    direct = _projection_only(src.to_wkt())
    (direct[0] if direct is not None else transformer(src, GEODETIC)).transform(lon.reshape(-1), lat.reshape(-1), inplace=True)
    return lon, lat


def from_lonlat(lon: np.ndarray, lat: np.ndarray, dst: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude degrees to ``(x, y)`` in ``dst`` (the projection alone where
    :func:`to_lonlat` takes its inverse alone)."""
    direct = _projection_only(dst.to_wkt())
    x, y = (direct[1] if direct is not None else transformer(GEODETIC, dst)).transform(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def crs_label(crs: CRS) -> str:
    """``"EPSG:4544"`` when the CRS has an EPSG code, else its name."""
    code = crs.to_epsg(min_confidence=70)
    return f"EPSG:{code}" if code else crs.name
