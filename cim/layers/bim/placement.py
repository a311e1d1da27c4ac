"""Where a BIM model stands in the city frame: the file's georeference, with overrides.

:func:`resolve_placement` decides how a model's world metres (as the geometry kernel gives them)
reach the city's ENU frame (:class:`ModelPlacement`); split from :mod:`cim.layers.bim`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cim.crs import area_of_use_problem, crs_label, parse_crs, to_lonlat
from cim.errors import CimCRSError, CimInputError
from cim.kernels.frames import LocalFrame, ecef_to_geodetic, geodetic_to_ecef, rotate
from cim.kernels.mapconv import enu_rotation_about_up, helmert_2d
from cim.sources.ifc import IfcGeoreference, check_map_conversion, open_ifc, read_georeference
from cim.sources.plausible import check_heights

if TYPE_CHECKING:
    from pyproj import CRS

__all__ = ["ModelPlacement", "resolve_placement", "frame_for_model"]


@dataclass
class ModelPlacement:
    """How a model's world metres (as the kernel gives them) reach the city's ENU frame."""

    method: str
    frame: LocalFrame
    geo: IfcGeoreference
    crs: CRS | None = None  # of map coordinates, when placed through one
    origin: tuple[float, float, float] | None = None  # an override, in crs units (or lon, lat, h)
    rotation: float = 0.0  # radians, east → model +X, counter-clockwise
    notes: list[str] = field(default_factory=list)
    #: (A, b) with ``enu = xyz @ A.T + b``, for placements not through a CRS (all affine)
    _affine: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def map_coords(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) world metres → (n, 3) map coordinates in the CRS's units (placements through
        a CRS only)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        unit = _crs_unit(self.crs)
        if self.origin is None:
            enh = dataclasses.replace(self.geo, rotation=self.rotation).to_map(xyz)
        else:
            o = (self.origin[0] * unit, self.origin[1] * unit, self.origin[2] * unit)
            enh = helmert_2d(self.geo.engineering(xyz), o, self.rotation)
        return enh / np.array([unit, unit, 1.0])

    def enu(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) world metres → (n, 3) float64 ENU metres of the city frame."""
        xyz = np.asarray(xyz, dtype=np.float64)
        if len(xyz) == 0:
            return np.zeros((0, 3))
        if self.crs is not None:
            enh = self.map_coords(xyz)
            lon, lat = to_lonlat(enh[:, 0], enh[:, 1], self.crs)  # projection alone on CGCS2000/WGS 84 (cim.crs)
            return self.frame.from_ecef(geodetic_to_ecef(lon, lat, enh[:, 2]))
        if self._affine is None:
            self._affine = self._compose()
        a, b = self._affine
        return rotate(xyz, a) + b

    def _compose(self) -> tuple[np.ndarray, np.ndarray]:
        """The placement without a CRS as one affine map: the context's world coordinate system,
        the site origin, the rotation about up, then (unless placed at the frame origin) the
        model's own ENU frame at its geodetic point into the city's (rotation and offset between
        two tangent planes), composed once: no ECEF round trip per batch of vertices, nor its
        6,000 km intermediate values."""
        geo = self.geo
        a = np.eye(3) if geo.wcs is None else np.array(geo.wcs[:3, :3], dtype=np.float64)
        b = np.zeros(3) if geo.wcs is None else np.array(geo.wcs[:3, 3], dtype=np.float64)
        if self.method == "IfcSite":
            b = b - np.asarray(geo.site_origin, dtype=np.float64)
        r = enu_rotation_about_up(self.rotation)
        a, b = r @ a, r @ b
        if self.method == "frame origin":
            return a, b
        lon, lat, h = self.origin if self.origin is not None else (geo.longitude, geo.latitude, geo.elevation)
        assert lon is not None and lat is not None  # placed by its IfcSite, which gives them
        site, city = LocalFrame(lon, lat, h), self.frame
        m = city.rotation @ site.rotation.T
        return m @ a, m @ b + city.rotation @ (
            np.asarray(site.origin_ecef, dtype=np.float64).reshape(3) - np.asarray(city.origin_ecef, dtype=np.float64).reshape(3)
        )

    def normal_matrix(self, anchor: np.ndarray) -> np.ndarray:
        """(3, 3) matrix taking world normals to ENU normals near ``anchor`` (world metres):
        the inverse transpose of the placement's Jacobian there."""
        pts = np.asarray(anchor, dtype=np.float64)[None, :] + np.vstack([np.zeros(3), np.eye(3)])
        e = self.enu(pts)
        jac = (e[1:] - e[0]).T
        return np.linalg.inv(jac).T

    def describe(self) -> dict:
        d = {"method": self.method, "rotation_deg": round(float(np.degrees(self.rotation)), 9), "file": self.geo.to_dict()}
        if self.crs is not None:
            d["crs"] = crs_label(self.crs)
        if self.origin is not None:
            d["origin"] = list(self.origin)
        return d


def _crs_unit(crs) -> float:
    axis = crs.axis_info[0] if crs.axis_info else None
    return float(axis.unit_conversion_factor) if axis is not None and axis.unit_conversion_factor else 1.0


def resolve_placement(
    geo: IfcGeoreference,
    frame: LocalFrame,
    *,
    crs: object = None,
    origin: tuple[float, float, float] | None = None,
    rotation: float | None = None,
    require_georef: bool = False,
    name: str = "model",
) -> ModelPlacement:
    """Decide how a model is placed: the file's georeference, with overrides.

    Parameters
    ----------
    geo : what the file says (:func:`cim.sources.ifc.read_georeference`)
    frame : the city frame
    crs : the city's CRS: the CRS of ``origin``, and of the file's map conversion when the file
        names none (or one pyproj does not know). A CRS the file names wins over it. Parsed
        (and refused when invalid) only when the model is placed through one of those.
    origin : where the model's local origin (IFC world 0, 0, 0) goes: (E, N, H) in ``crs``, or
        (lon°, lat°, h) when ``crs`` is None. With it the model is placed rigidly (no scale).
    rotation : degrees, counter-clockwise from east (grid east with a CRS) to the model's +X
    require_georef : raise when there is nothing to place the model by (standalone conversion)
    """
    theta = None if rotation is None else float(np.radians(rotation))
    # parsed only where it is used: a model placed by its IfcSite never needs PROJ (a process's
    # first CRS pays for PROJ's set-up, a noticeable part of converting a one-element model)
    city_crs = parse_crs(crs, what=f"{name}: crs") if crs is not None and (origin is not None or geo.has_map_conversion) else None
    notes = list(geo.notes)
    if origin is not None:
        given = tuple(float(v) for v in origin)
        if len(given) != 3:
            raise CimInputError(f"{name}: origin needs three numbers (E, N, H or lon, lat, h)")
        origin = given
        base = theta if theta is not None else geo.rotation if geo.kind != "none" else 0.0
        if city_crs is not None:
            _require_projected(city_crs, name)
            return ModelPlacement("origin override", frame, geo, city_crs, origin, base, notes)
        return ModelPlacement("origin override (lon, lat, h)", frame, geo, None, origin, base, notes)
    if geo.has_map_conversion:
        file_crs = None
        if geo.crs_name:
            try:
                file_crs = parse_crs(geo.crs_name, what=f"{name}: IfcProjectedCRS")
            except CimCRSError:
                notes.append(f"the file's CRS {geo.crs_name!r} is unknown to pyproj")
        if file_crs is None and city_crs is None:
            raise CimCRSError(f"{name}: the map conversion names no usable CRS ({geo.crs_name!r}); give crs (--crs)")
        use = file_crs or city_crs
        assert use is not None  # one of the two (checked above)
        if file_crs is None:
            assert city_crs is not None  # one of the two (checked above)
            notes.append(f"map conversion read in the city CRS {crs_label(city_crs)}")
        elif city_crs is not None and not file_crs.equals(city_crs):
            notes.append(f"the model's CRS {crs_label(file_crs)} differs from the city's {crs_label(city_crs)}; used the model's")
        _require_projected(use, name)
        check_map_conversion(geo, name)
        geo = _consistent_reading(geo, use, theta if theta is not None else geo.rotation, name, notes)
        return ModelPlacement(geo.kind, frame, geo, use, None, theta if theta is not None else geo.rotation, notes)
    if geo.kind == "IfcSite":
        lat, lon = geo.latitude, geo.longitude
        if lat is None or lon is None or not (abs(lat) <= 90.0 and abs(lon) <= 180.0):
            raise CimCRSError(f"{name}: IfcSite RefLatitude/RefLongitude ({lat}, {lon}) is not a place on Earth")
        check_heights(np.array([geo.elevation]), f"{name}: IfcSite RefElevation")
        return ModelPlacement("IfcSite", frame, geo, None, None, theta if theta is not None else geo.rotation, notes)
    if require_georef:
        raise CimInputError(
            f"{name}: no georeference (no IfcMapConversion, ePSet_MapConversion or IfcSite RefLatitude/RefLongitude); "
            "--origin is required (E,N,H in --crs, or lon,lat,h without --crs)"
        )
    notes.append("no georeference in the file: placed at the city origin (give origin/crs to place it)")
    return ModelPlacement("frame origin", frame, geo, None, None, theta or 0.0, notes)


def _lands(geo: IfcGeoreference, crs: CRS, rotation: float) -> tuple[str | None, tuple[float, float, float]]:
    """(why the model's origin cannot lie there or None, (lon, lat, h)) for one reading of a
    map conversion."""
    probe = ModelPlacement(geo.kind, LocalFrame(0.0, 0.0, 0.0), geo, crs, None, rotation)
    with np.errstate(invalid="ignore", over="ignore"):
        enh = probe.map_coords(np.zeros((1, 3)))
        lon, lat = to_lonlat(enh[:, 0], enh[:, 1], crs)
    where = (float(lon[0]), float(lat[0]), float(enh[0, 2]))
    problem = area_of_use_problem(crs, (where[0], where[1], where[0], where[1]))
    if problem is None and not abs(where[2]) <= 12_000.0:
        problem = f"its height is {where[2]:.6g} m"
    return problem, where


def _consistent_reading(geo: IfcGeoreference, crs: CRS, rotation: float, name: str, notes: list[str]) -> IfcGeoreference:
    """The file's map conversion as declared when it places the model in the CRS's area of use;
    else the reading in which the values are in another unit (the project's, or metres) when
    exactly that one is consistent (a MapUnit that contradicts the values), with a note saying
    so; else an error.

    Raises
    ------
    CimCRSError
    """
    problem, where = _lands(geo, crs, rotation)
    if problem is None:
        return geo
    relative = tuple(v / geo.scale[0] for v in geo.scale)
    found: list[tuple[float, str, tuple[IfcGeoreference, tuple[float, float, float]]]] = []
    for unit, label in ((geo.project_unit, "the project's length unit"), (1.0, "metres")):
        if abs(unit - geo.map_unit) <= 1e-12 * max(unit, geo.map_unit) or any(abs(unit - u) <= 1e-12 for u, _, _ in found):
            continue
        ratio = geo.project_unit / unit
        scale = (ratio * relative[0], ratio * relative[1], ratio * relative[2])
        alt = dataclasses.replace(geo, map_unit=unit, scale=scale, notes=list(geo.notes))
        alt_problem, alt_where = _lands(alt, crs, rotation)
        if alt_problem is None:
            found.append((unit, label, (alt, alt_where)))
    if len(found) == 1:
        unit, label, (alt, alt_where) = found[0]
        notes.append(
            f"the map conversion's MapUnit ({geo.map_unit:g} m) contradicts its values: read so, the model lands at "
            f"{where[0]:.5f}°, {where[1]:.5f}° ({problem}); read in {label} ({unit:g} m) it lands at "
            f"{alt_where[0]:.5f}°, {alt_where[1]:.5f}°, {alt_where[2]:.1f} m, which was used"
        )
        return alt
    raise CimCRSError(
        f"{name}: the map conversion places the model where {crs_label(crs)} cannot: {problem} (no reading of its units fits)"
    )


def _require_projected(crs, name: str) -> None:
    if crs.is_geographic:
        raise CimCRSError(f"{name}: {crs_label(crs)} is geographic; a map conversion needs a projected CRS")


def frame_for_model(
    path: str | Path, *, crs: object = None, origin: tuple[float, float, float] | None = None, rotation: float | None = None
) -> LocalFrame:
    """An ENU frame at a model's local origin, for converting one model on its own
    (``cim convert bim``); raises CimInputError when the model cannot be placed."""
    path = Path(path)
    geo = read_georeference(open_ifc(path))
    probe = LocalFrame(0.0, 0.0, 0.0)
    placement = resolve_placement(geo, probe, crs=crs, origin=origin, rotation=rotation, require_georef=True, name=path.name)
    lon, lat, h = ecef_to_geodetic(probe.to_ecef(placement.enu(np.zeros((1, 3)))))
    return LocalFrame(float(lon[0]), float(lat[0]), float(h[0]))
