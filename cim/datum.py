"""One height datum per city: which vertical datum a city's heights are in, and converting a
layer's heights into it through PROJ.

Heights in a compound CRS with a vertical datum (a national levelling datum such as Yellow Sea
1985 or NAP) are orthometric; the city's default datum is the ellipsoid (``"ellipsoidal"``,
as the terrain, buildings and BIM models of a city without vertical CRS are). The two differ by
the geoid undulation, tens of metres in places, so a layer naming another datum than the
city's is converted, and one that cannot be converted is reported by name: terrain, buildings
and points must never end up in two datums without a word.

PROJ converts between a vertical datum and the ellipsoid with a geoid grid. Grids are used only
where installed locally (Debian's ``proj-data``, or pyproj's data folder): the network is never
enabled (:func:`height_conversion` turns it off), so a missing grid is a warning, not a download.
Datums related by a plain offset (PROJ's "Vertical Offset" transformations) need no grid.

A layer's source converts its heights at one place (a file's centre, a DEM window's centre):
the geoid's slope is a few centimetres a kilometre, and :func:`height_conversion` reports the
spread over the extent it was asked for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import CRS
from pyproj.crs import CompoundCRS

from cim.crs import crs_label, parse_crs
from cim.errors import CimCRSError

__all__ = [
    "ELLIPSOIDAL",
    "parse_vertical_datum",
    "vertical_of",
    "datum_label",
    "geoid_grids_available",
    "HeightConversion",
    "height_conversion",
]

#: the city datum of heights above the ellipsoid (WGS 84 / CGCS2000, equal to the centimetre)
ELLIPSOIDAL = "ellipsoidal"


def parse_vertical_datum(value: object, where: str = "vertical_datum") -> str:
    """A city's vertical datum: ``"ellipsoidal"``, or a vertical CRS pyproj knows (returned as
    its label, e.g. ``"EPSG:5737"``).

    Raises
    ------
    CimCRSError
        Not ``"ellipsoidal"`` and not a vertical CRS.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", ELLIPSOIDAL)):
        return ELLIPSOIDAL
    crs = parse_crs(value, what=where)
    vertical = vertical_of(crs)
    if vertical is None:
        raise CimCRSError(f"{where}: {crs_label(crs)} is not a vertical CRS (give e.g. EPSG:5737, or {ELLIPSOIDAL!r})")
    return crs_label(vertical)


def vertical_of(crs: CRS | None) -> CRS | None:
    """The vertical CRS of a compound CRS (or the CRS itself when vertical), else None: a 2D or
    geographic 3D CRS names no vertical datum."""
    if crs is None:
        return None
    if crs.is_vertical and not crs.is_compound:
        return crs
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if sub.is_vertical:
                return sub
    return None


def datum_label(vertical: CRS | None) -> str:
    """``"ellipsoidal"`` for None, else the vertical CRS's label."""
    return ELLIPSOIDAL if vertical is None else crs_label(vertical)


@lru_cache(maxsize=1)
def geoid_grids_available() -> bool:
    """Whether PROJ finds a geoid model locally (EGM96 between WGS 84 and its heights), with the
    network off."""
    return _best(CRS.from_epsg(4326), CRS.from_epsg(5773), None)[0] is not None


@dataclass(frozen=True)
class HeightConversion:
    """How a layer's heights reach the city's datum.

    ``offset(lon, lat)`` is what to add to a height given in ``source`` at that place (metres);
    ``problem`` says why there is no conversion (``offset`` is then None).
    """

    source: str
    target: str
    offset: object = None
    problem: str | None = None

    def at(self, lon: float, lat: float) -> float:
        """The offset (metres) at one place."""
        assert callable(self.offset)
        return float(self.offset(np.array([lon]), np.array([lat]))[0])


def height_conversion(source: CRS | None, city_datum: str) -> HeightConversion | None:
    """The conversion of heights in ``source`` (a layer's CRS) to the city's datum, or None
    when the layer names no vertical datum (its heights are taken as the city's) or the city's.

    Parameters
    ----------
    source : the layer's CRS (compound with a vertical CRS, or not)
    city_datum : ``"ellipsoidal"`` or a vertical CRS label (:func:`parse_vertical_datum`)
    """
    vertical = vertical_of(source)
    if vertical is None:
        return None
    target = None if city_datum == ELLIPSOIDAL else parse_crs(city_datum)
    if target is not None and vertical.equals(target):
        return None
    src, dst = datum_label(vertical), datum_label(target)
    geographic = CRS.from_epsg(4326)
    transformer, missing = _best(geographic, vertical, target)
    if transformer is None:
        why = f"PROJ has no local way from {src} to {dst}"
        if missing:
            why += f" (grid{'s' if len(missing) > 1 else ''} {', '.join(missing)} not installed; nothing is downloaded)"
        return HeightConversion(src, dst, None, why)

    def offset(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        _, _, h = transformer.transform(lon, lat, np.zeros_like(lon))
        return np.asarray(h, dtype=np.float64)

    return HeightConversion(src, dst, offset)


def _best(geographic: CRS, vertical: CRS, target: CRS | None):
    """(a transformer (lon, lat, h in ``vertical``) → (lon, lat, h in ``target`` or on the
    ellipsoid) using only local data, or None; the grids it would need)."""
    import pyproj.network
    from pyproj.transformer import TransformerGroup

    pyproj.network.set_network_enabled(False)
    src = CompoundCRS(f"{geographic.name} + {vertical.name}", [geographic, vertical])
    dst = CRS.from_epsg(4979) if target is None else CompoundCRS(f"{geographic.name} + {target.name}", [geographic, target])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "best transformation is not available": said below
            group = TransformerGroup(src, dst, always_xy=True, allow_ballpark=False)
    except Exception:  # PROJ finds no operation at all
        return None, []
    missing = sorted({g.short_name for op in group.unavailable_operations for g in op.grids if not g.available})
    for t in group.transformers:
        if t.is_network_enabled:
            continue
        probe = t.transform(105.0, 35.0, 0.0)
        if np.isfinite(probe[2]):
            return t, missing
    return None, missing
