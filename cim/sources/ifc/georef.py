"""Where an IFC model stands: map conversions, IFC2x3 property sets, or the site's lat/lon.

:func:`read_georeference` reads ``IfcMapConversion`` (and IFC 4.3's ``IfcMapConversionScaled`` /
``IfcRigidOperation``) with ``IfcProjectedCRS``; IFC2x3's ``ePSet_MapConversion`` /
``ePSet_ProjectedCRS`` on the project; failing both, ``IfcSite`` RefLatitude/RefLongitude/
RefElevation with the context's ``TrueNorth``. Values are read in the units the file uses and
converted (see :class:`IfcGeoreference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ifcopenshell
import ifcopenshell.util.unit
import numpy as np

from cim.kernels.mapconv import dms_to_degrees, helmert_2d, rotation_from_axis, rotation_from_true_north
from cim.sources.ifc.file import (
    LENGTH_MEASURES,
    as_tuple,
    axis2placement,
    get_attr,
    length_unit,
    local_placement,
    model_context,
    raw_value,
    schema_name,
)

__all__ = ["IfcGeoreference", "read_georeference", "check_map_conversion"]

_METRE_PREFIX = {None: 1.0, "": 1.0, "MILLI": 1e-3, "CENTI": 1e-2, "DECI": 1e-1, "KILO": 1e3}
_UNIT_NAMES = {
    "METRE": 1.0,
    "METER": 1.0,
    "MILLIMETRE": 1e-3,
    "MILLIMETER": 1e-3,
    "CENTIMETRE": 1e-2,
    "CENTIMETER": 1e-2,
    "DECIMETRE": 0.1,
    "KILOMETRE": 1e3,
    "FOOT": 0.3048,
    "US SURVEY FOOT": 1200.0 / 3937.0,
    "INCH": 0.0254,
}


@dataclass
class IfcGeoreference:
    """Where a model stands, as the file says.

    ``kind`` is ``"IfcMapConversion"`` (also ``IfcMapConversionScaled``, ``IfcRigidOperation``),
    ``"ePSet_MapConversion"`` (IFC2x3), ``"IfcSite"`` (geodetic reference point) or ``"none"``.

    Map conversions: local coordinates ``x`` (project units, after the context's world coordinate
    system) map to ``E = E0 + sx (x cos θ − y sin θ)``, ``N = N0 + sy (x sin θ + y cos θ)``,
    ``H = H0 + sz z`` in map units; E0, N0, H0 are in map units, which are ``IfcProjectedCRS.
    MapUnit`` when given, else the project's length unit (one real file gives eastings in
    millimetres with neither MapUnit nor Scale). ``Scale`` is map units per project unit; when
    it is omitted, it is the ratio of the two units (1 when they agree). An explicit Scale of 1
    that contradicts differing units is taken as the unit ratio, with a note. IFC 4.3's
    ScaleY/ScaleZ (and IfcMapConversionScaled's FactorX/Y/Z) scale the axes further.

    ``IfcSite``: the site's placement origin lies at RefLatitude/RefLongitude and RefElevation
    (metres, taken as ellipsoidal height as all cim heights are); local +Y points to TrueNorth.
    """

    kind: str = "none"
    crs_name: str | None = None
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # E0, N0, H0 in map units
    rotation: float = 0.0  # radians, map (or true) east → local +X, counter-clockwise
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # map units per project unit
    map_unit: float = 1.0  # metres per map unit
    project_unit: float = 1.0  # metres per project unit
    latitude: float | None = None
    longitude: float | None = None
    elevation: float = 0.0  # metres
    site_origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # world metres
    true_north: float | None = None  # rotation from TrueNorth, radians (informative when a map conversion exists)
    wcs: np.ndarray | None = None  # (4, 4) world coordinate system in metres, None when identity
    notes: list[str] = field(default_factory=list)
    axis: tuple[float | None, float | None] = (None, None)  # XAxisAbscissa, XAxisOrdinate as written
    vertical_datum: str | None = None  # IfcProjectedCRS.VerticalDatum as written (see cim.datum)

    @property
    def has_map_conversion(self) -> bool:
        return self.kind in ("IfcMapConversion", "ePSet_MapConversion")

    def engineering(self, xyz_m: np.ndarray) -> np.ndarray:
        """(n, 3) world metres (as the geometry iterator gives them) → engineering metres
        (the context's world coordinate system applied, which the iterator ignores)."""
        xyz = np.asarray(xyz_m, dtype=np.float64)
        if self.wcs is None:
            return xyz
        return xyz @ self.wcs[:3, :3].T + self.wcs[:3, 3]

    def to_map(self, xyz_m: np.ndarray) -> np.ndarray:
        """(n, 3) world metres → (n, 3) map coordinates in metres (map units × map_unit)."""
        local = self.engineering(xyz_m) / self.project_unit
        enh = helmert_2d(local, self.origin, self.rotation, self.scale)
        return enh * self.map_unit

    def to_dict(self) -> dict:
        d: dict[str, object] = {"kind": self.kind, "crs": self.crs_name}
        if self.has_map_conversion:
            d.update(
                eastings=self.origin[0] * self.map_unit,
                northings=self.origin[1] * self.map_unit,
                height=self.origin[2] * self.map_unit,
                rotation_deg=float(np.degrees(self.rotation)),
                scale=list(self.scale),
            )
        if self.latitude is not None:
            d.update(latitude=self.latitude, longitude=self.longitude, elevation=self.elevation)
        return d


def read_georeference(f: ifcopenshell.file) -> IfcGeoreference:
    """Read a model's georeference (see :class:`IfcGeoreference`); kind ``"none"`` if absent."""
    unit = length_unit(f)
    geo = IfcGeoreference(project_unit=unit)
    ctx = model_context(f)
    if ctx is not None:
        geo.wcs = _wcs_matrix(ctx, unit)
        tn = get_attr(ctx, "TrueNorth")
        if tn is not None and tn.DirectionRatios and len(tn.DirectionRatios) >= 2:
            geo.true_north = rotation_from_true_north(float(tn.DirectionRatios[0]), float(tn.DirectionRatios[1]))
    if schema_name(f) == "IFC2X3":
        _read_epset_conversion(f, geo)
    else:
        _read_map_conversion(f, geo, ctx)
    if geo.kind == "none":
        _read_site(f, geo)
    _height_once(geo)
    return geo


def _height_once(geo: IfcGeoreference) -> None:
    """A model lifted both by its context's WorldCoordinateSystem (a z offset) and by its map
    conversion's OrthogonalHeight is lifted twice: exporters write the survey point's height in
    both. The height is counted once, the map conversion's, and a note says so."""
    if not geo.has_map_conversion or geo.wcs is None or geo.origin[2] == 0.0:
        return
    dz = float(geo.wcs[2, 3])
    if abs(dz) < 1e-9:
        return
    height = geo.origin[2] * geo.map_unit
    geo.wcs = geo.wcs.copy()
    geo.wcs[2, 3] = 0.0
    geo.notes.append(
        f"both the context's WorldCoordinateSystem (z {dz:g} m) and the map conversion's OrthogonalHeight ({height:g} m) "
        "raise the model: its height was counted once, from OrthogonalHeight"
    )
    if float(np.abs(geo.wcs - np.eye(4)).max()) <= 1e-9:
        geo.wcs = None


def _wcs_matrix(ctx, unit: float) -> np.ndarray | None:
    try:
        m = axis2placement(ctx.WorldCoordinateSystem)
    except Exception:
        return None
    m[:3, 3] *= unit
    return None if float(np.abs(m - np.eye(4)).max()) <= 1e-9 else m  # (cheaper than np.allclose on a 4 × 4)


def _map_unit_of(unit_entity, fallback: float) -> float:
    if unit_entity is None:
        return fallback
    if isinstance(unit_entity, str):
        return _UNIT_NAMES.get(unit_entity.strip().upper().replace("_", " "), fallback)
    if unit_entity.is_a("IfcSIUnit") and unit_entity.Name == "METRE":
        return _METRE_PREFIX.get(unit_entity.Prefix, fallback)
    try:  # conversion-based units (feet, US survey feet)
        return float(ifcopenshell.util.unit.get_unit_scale(unit_entity))
    except Exception:
        return fallback


def _resolve_scale(geo: IfcGeoreference, scale: float | None, extra: tuple[float, float, float]) -> None:
    ratio = geo.project_unit / geo.map_unit
    if scale is None:
        s = ratio
    elif abs(scale - 1.0) < 1e-12 and abs(ratio - 1.0) > 1e-9:
        geo.notes.append(
            f"Scale 1.0 contradicts the units (project {geo.project_unit} m, map {geo.map_unit} m); used their ratio {ratio:g}"
        )
        s = ratio
    else:
        s = float(scale)
    geo.scale = (s * extra[0], s * extra[1], s * extra[2])


def _read_map_conversion(f: ifcopenshell.file, geo: IfcGeoreference, ctx) -> None:
    ops = list(f.by_type("IfcCoordinateOperation"))
    # prefer the operation of the model context
    ops.sort(key=lambda op: 0 if ctx is not None and op.SourceCRS == ctx else 1)
    for op in ops:
        if not (op.is_a("IfcMapConversion") or op.is_a("IfcRigidOperation")):
            continue
        target = op.TargetCRS  # None when the file lost it: the CRS then comes from the caller
        geo.crs_name = get_attr(target, "Name") if target is not None else None
        geo.map_unit = _map_unit_of(get_attr(target, "MapUnit") if target is not None else None, geo.project_unit)
        vertical = get_attr(target, "VerticalDatum") if target is not None else None
        geo.vertical_datum = str(vertical).strip() or None if vertical is not None else None
        geo.kind = "IfcMapConversion"
        if op.is_a("IfcRigidOperation"):
            first, second = op.FirstCoordinate, op.SecondCoordinate
            if (first is not None and first.is_a() not in LENGTH_MEASURES) or (second is not None and second.is_a() not in LENGTH_MEASURES):
                geo.kind = "none"
                geo.notes.append("IfcRigidOperation with angular coordinates is not supported")
                continue
            geo.origin = (
                float(first.wrappedValue) if first else 0.0,
                float(second.wrappedValue) if second else 0.0,
                float(op.Height or 0.0),
            )
            _resolve_scale(geo, None, (1.0, 1.0, 1.0))
            return
        geo.origin = (float(op.Eastings or 0.0), float(op.Northings or 0.0), float(op.OrthogonalHeight or 0.0))
        geo.rotation = rotation_from_axis(op.XAxisAbscissa, op.XAxisOrdinate)
        geo.axis = (op.XAxisAbscissa, op.XAxisOrdinate)
        scale = get_attr(op, "Scale")
        sy = get_attr(op, "ScaleY")  # IFC 4.3 release candidates
        sz = get_attr(op, "ScaleZ")
        extra = (
            1.0,
            1.0 if sy is None or scale in (None, 0) else float(sy) / float(scale),
            1.0 if sz is None or scale in (None, 0) else float(sz) / float(scale),
        )
        if op.is_a("IfcMapConversionScaled"):
            extra = (extra[0] * float(op.FactorX), extra[1] * float(op.FactorY), extra[2] * float(op.FactorZ))
        _resolve_scale(geo, None if scale is None else float(scale), extra)
        return


def _read_epset_conversion(f: ifcopenshell.file, geo: IfcGeoreference) -> None:
    projects = f.by_type("IfcProject")
    if not projects:
        return
    psets: dict[str, dict] = {}
    for rel in getattr(projects[0], "IsDefinedBy", ()) or ():
        if rel.is_a("IfcRelDefinesByProperties"):
            for pdef in as_tuple(rel.RelatingPropertyDefinition):
                if pdef.is_a("IfcPropertySet") and pdef.Name in ("ePSet_MapConversion", "ePSet_ProjectedCRS"):
                    psets[pdef.Name] = {p.Name: raw_value(p.NominalValue) for p in pdef.HasProperties if p.is_a("IfcPropertySingleValue")}
    conv = psets.get("ePSet_MapConversion")
    if not conv:
        return
    crs = psets.get("ePSet_ProjectedCRS", {})
    geo.kind = "ePSet_MapConversion"
    geo.crs_name = crs.get("Name")
    geo.map_unit = _map_unit_of(crs.get("MapUnit"), geo.project_unit)
    geo.origin = (float(conv.get("Eastings") or 0.0), float(conv.get("Northings") or 0.0), float(conv.get("OrthogonalHeight") or 0.0))
    geo.rotation = rotation_from_axis(conv.get("XAxisAbscissa"), conv.get("XAxisOrdinate"))
    geo.axis = (conv.get("XAxisAbscissa"), conv.get("XAxisOrdinate"))
    scale = conv.get("Scale")
    _resolve_scale(geo, None if scale is None else float(scale), (1.0, 1.0, 1.0))


def _read_site(f: ifcopenshell.file, geo: IfcGeoreference) -> None:
    for site in f.by_type("IfcSite"):
        lat, lon = dms_to_degrees(site.RefLatitude), dms_to_degrees(site.RefLongitude)
        if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
            continue
        geo.kind = "IfcSite"
        geo.latitude, geo.longitude = lat, lon
        geo.elevation = float(site.RefElevation or 0.0) * geo.project_unit
        if site.ObjectPlacement is not None:
            m = local_placement(site.ObjectPlacement)
            x, y, z = (float(v) * geo.project_unit for v in m[:3, 3])
            geo.site_origin = (x, y, z)
        geo.rotation = geo.true_north or 0.0
        return


def check_map_conversion(geo: IfcGeoreference, name: str) -> None:
    """Refuse a map conversion no model can be placed by: a singular X axis (both
    XAxisAbscissa and XAxisOrdinate given as 0), a Scale that is zero, negative or not a
    number, eastings, northings or height that are not numbers.

    Raises
    ------
    CimInputError
    """
    from cim.errors import CimInputError

    a, o = geo.axis
    if a is not None and o is not None:
        a, o = float(a), float(o)
        if not (np.isfinite(a) and np.isfinite(o)) or np.hypot(a, o) < 1e-12:
            raise CimInputError(f"{name}: the map conversion's X axis ({a:g}, {o:g}) is singular: it gives the model no direction")
    if not all(np.isfinite(v) and v > 0.0 for v in geo.scale):
        raise CimInputError(f"{name}: the map conversion's Scale {tuple(float(v) for v in geo.scale)} is not a positive number")
    if not all(np.isfinite(v) for v in geo.origin):
        raise CimInputError(f"{name}: the map conversion's eastings, northings or height {geo.origin} are not numbers")
