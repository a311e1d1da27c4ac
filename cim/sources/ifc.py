"""IFC reader: elements, attributes, georeference and streamed triangle geometry.

Three parts, each usable alone:

- :func:`read_georeference` reads where a model stands: ``IfcMapConversion`` (and IFC 4.3's
  ``IfcMapConversionScaled`` / ``IfcRigidOperation``) with ``IfcProjectedCRS``; IFC2x3's
  ``ePSet_MapConversion`` / ``ePSet_ProjectedCRS`` on the project; failing both, ``IfcSite``
  RefLatitude/RefLongitude/RefElevation with the context's ``TrueNorth``.
- :class:`IfcElementIndex` indexes the relationships once (containment, aggregation, voids,
  types, property sets, materials) and gives each element's attributes as typed columns.
- :func:`iter_element_geometry` streams per-element triangle meshes in world coordinates (metres)
  from ifcopenshell's multi-threaded geometry iterator, run in a child process so that a
  pathological element can be stopped: an element that takes longer than ``element_timeout``
  seconds is killed with its process, reported, and the rest continue. Elements the iterator
  drops silently (invalid geometry) are retried one at a time to learn why, and reported.

Units: the iterator gives metres whatever the project's length unit; IfcMapConversion values are
read in the units the file uses and converted (see :class:`IfcGeoreference`).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.util.placement
import ifcopenshell.util.unit

from cim.errors import CimInputError, CimIOError
from cim.kernels.mapconv import dms_to_degrees, helmert_2d, rotation_from_axis, rotation_from_true_north

#: classes never drawn: voids, virtual boundaries, annotations and grids
EXCLUDED_CLASSES = ("IfcOpeningElement", "IfcVirtualElement", "IfcAnnotation", "IfcGrid")
#: representation identifiers that hold a 3D body the iterator draws
BODY_IDENTIFIERS = {"body", "facetation", "body-fallback", "mesh", ""}
SPATIAL_CLASSES = ("IfcSpatialStructureElement", "IfcSpatialElement")
_LENGTH_MEASURES = {"IfcLengthMeasure", "IfcPositiveLengthMeasure", "IfcNonNegativeLengthMeasure"}
_METRE_PREFIX = {None: 1.0, "": 1.0, "MILLI": 1e-3, "CENTI": 1e-2, "DECI": 1e-1, "KILO": 1e3}
_UNIT_NAMES = {"METRE": 1.0, "METER": 1.0, "MILLIMETRE": 1e-3, "MILLIMETER": 1e-3, "CENTIMETRE": 1e-2, "CENTIMETER": 1e-2,
               "DECIMETRE": 0.1, "KILOMETRE": 1e3, "FOOT": 0.3048, "US SURVEY FOOT": 1200.0 / 3937.0, "INCH": 0.0254}


def open_ifc(path: str | Path) -> ifcopenshell.file:
    """Open an IFC file; CimIOError when it cannot be read, CimInputError when it is not IFC."""
    path = Path(path)
    if not path.is_file():
        raise CimIOError(f"{path}: no such IFC file")
    try:
        return ifcopenshell.open(str(path))
    except Exception as exc:  # ifcopenshell raises its own error types and RuntimeError
        raise CimInputError(f"{path}: not a readable IFC file ({exc})") from None


def length_unit(f: ifcopenshell.file) -> float:
    """Metres per project length unit."""
    try:
        return float(ifcopenshell.util.unit.calculate_unit_scale(f))
    except Exception:
        return 1.0


def model_context(f: ifcopenshell.file):
    """The 3D 'Model' representation context (the first), or None."""
    for ctx in f.by_type("IfcGeometricRepresentationContext", include_subtypes=False):
        if (ctx.ContextType or "").lower() == "model" and (ctx.CoordinateSpaceDimension or 3) == 3:
            return ctx
    contexts = f.by_type("IfcGeometricRepresentationContext", include_subtypes=False)
    return contexts[0] if contexts else None


# -- georeference ----------------------------------------------------------------------------


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
        d = {"kind": self.kind, "crs": self.crs_name}
        if self.has_map_conversion:
            d.update(eastings=self.origin[0] * self.map_unit, northings=self.origin[1] * self.map_unit,
                     height=self.origin[2] * self.map_unit, rotation_deg=float(np.degrees(self.rotation)), scale=list(self.scale))
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
        tn = _get(ctx, "TrueNorth")
        if tn is not None and tn.DirectionRatios and len(tn.DirectionRatios) >= 2:
            geo.true_north = rotation_from_true_north(float(tn.DirectionRatios[0]), float(tn.DirectionRatios[1]))
    if f.schema == "IFC2X3":
        _read_epset_conversion(f, geo)
    else:
        _read_map_conversion(f, geo, ctx)
    if geo.kind == "none":
        _read_site(f, geo)
    return geo


def _wcs_matrix(ctx, unit: float) -> np.ndarray | None:
    try:
        m = np.asarray(ifcopenshell.util.placement.get_axis2placement(ctx.WorldCoordinateSystem), dtype=np.float64)
    except Exception:
        return None
    m[:3, 3] *= unit
    return None if np.allclose(m, np.eye(4), atol=1e-9) else m


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
        geo.notes.append(f"Scale 1.0 contradicts the units (project {geo.project_unit} m, map {geo.map_unit} m); used their ratio {ratio:g}")
        s = ratio
    else:
        s = float(scale)
    geo.scale = (s * extra[0], s * extra[1], s * extra[2])


def _read_map_conversion(f: ifcopenshell.file, geo: IfcGeoreference, ctx) -> None:
    ops = [op for op in f.by_type("IfcCoordinateOperation")]
    # prefer the operation of the model context
    ops.sort(key=lambda op: 0 if ctx is not None and op.SourceCRS == ctx else 1)
    for op in ops:
        if not (op.is_a("IfcMapConversion") or op.is_a("IfcRigidOperation")):
            continue
        target = op.TargetCRS
        geo.crs_name = _get(target, "Name")
        geo.map_unit = _map_unit_of(_get(target, "MapUnit"), geo.project_unit)
        geo.kind = "IfcMapConversion"
        if op.is_a("IfcRigidOperation"):
            first, second = op.FirstCoordinate, op.SecondCoordinate
            if (first is not None and first.is_a() not in _LENGTH_MEASURES) or (second is not None and second.is_a() not in _LENGTH_MEASURES):
                geo.kind = "none"
                geo.notes.append("IfcRigidOperation with angular coordinates is not supported")
                continue
            geo.origin = (float(first.wrappedValue) if first else 0.0, float(second.wrappedValue) if second else 0.0, float(op.Height or 0.0))
            _resolve_scale(geo, None, (1.0, 1.0, 1.0))
            return
        geo.origin = (float(op.Eastings or 0.0), float(op.Northings or 0.0), float(op.OrthogonalHeight or 0.0))
        geo.rotation = rotation_from_axis(op.XAxisAbscissa, op.XAxisOrdinate)
        scale = _get(op, "Scale")
        sy = _get(op, "ScaleY")  # IFC 4.3 release candidates
        sz = _get(op, "ScaleZ")
        extra = [1.0, 1.0 if sy is None or scale in (None, 0) else float(sy) / float(scale), 1.0 if sz is None or scale in (None, 0) else float(sz) / float(scale)]
        if op.is_a("IfcMapConversionScaled"):
            extra = [extra[0] * float(op.FactorX), extra[1] * float(op.FactorY), extra[2] * float(op.FactorZ)]
        _resolve_scale(geo, None if scale is None else float(scale), tuple(extra))
        return


def _read_epset_conversion(f: ifcopenshell.file, geo: IfcGeoreference) -> None:
    projects = f.by_type("IfcProject")
    if not projects:
        return
    psets: dict[str, dict] = {}
    for rel in getattr(projects[0], "IsDefinedBy", ()) or ():
        if rel.is_a("IfcRelDefinesByProperties"):
            for pdef in _as_tuple(rel.RelatingPropertyDefinition):
                if pdef.is_a("IfcPropertySet") and pdef.Name in ("ePSet_MapConversion", "ePSet_ProjectedCRS"):
                    psets[pdef.Name] = {p.Name: _raw(p.NominalValue) for p in pdef.HasProperties if p.is_a("IfcPropertySingleValue")}
    conv = psets.get("ePSet_MapConversion")
    if not conv:
        return
    crs = psets.get("ePSet_ProjectedCRS", {})
    geo.kind = "ePSet_MapConversion"
    geo.crs_name = crs.get("Name")
    geo.map_unit = _map_unit_of(crs.get("MapUnit"), geo.project_unit)
    geo.origin = (float(conv.get("Eastings") or 0.0), float(conv.get("Northings") or 0.0), float(conv.get("OrthogonalHeight") or 0.0))
    geo.rotation = rotation_from_axis(conv.get("XAxisAbscissa"), conv.get("XAxisOrdinate"))
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
            m = ifcopenshell.util.placement.get_local_placement(site.ObjectPlacement)
            geo.site_origin = tuple(float(v) * geo.project_unit for v in m[:3, 3])
        geo.rotation = geo.true_north or 0.0
        return


_ATTRS: dict[str, frozenset[str]] = {}


def _get(entity, name: str):
    """``entity.name`` or None when its class has no such attribute (a failed attribute
    lookup costs ifcopenshell about 50 µs; the names are cached per class)."""
    cls = entity.is_a(True)
    names = _ATTRS.get(cls)
    if names is None:
        names = _ATTRS[cls] = frozenset(entity.get_attribute_names())
    return getattr(entity, name) if name in names else None


def _raw(value):
    return value.wrappedValue if isinstance(value, ifcopenshell.entity_instance) else value


def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


# -- elements and attributes -----------------------------------------------------------------


@dataclass
class ElementAttributes:
    """Attribute columns of a list of elements (one row each) and their metadata types."""

    columns: dict[str, np.ndarray]
    types: dict[str, str]
    dropped: int = 0  # property columns left out by ``max_properties``
    #: which rows hold a value, for BOOLEAN columns (metadata booleans have no null)
    present: dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, rows: np.ndarray) -> "ElementAttributes":
        """The attributes of ``rows`` (an int index array)."""
        return ElementAttributes({k: v[rows] for k, v in self.columns.items()}, dict(self.types), self.dropped,
                                 {k: v[rows] for k, v in self.present.items()})


class IfcElementIndex:
    """One pass over an IFC file's relationships, then per-element lookups.

    Parameters
    ----------
    f : the open file
    """

    def __init__(self, f: ifcopenshell.file) -> None:
        self.f = f
        self.unit = length_unit(f)
        self.area_unit = _unit_scale(f, "AREAUNIT")
        self.volume_unit = _unit_scale(f, "VOLUMEUNIT")
        self.container: dict[int, object] = {}
        self.parent: dict[int, object] = {}  # aggregate / nest parent
        self.host: dict[int, object] = {}  # opening → voided element
        self.opening_of: dict[int, object] = {}  # filling element → opening
        self.openings: Counter[int] = Counter()  # element → number of openings
        self.type_of: dict[int, object] = {}
        self.psets: dict[int, list] = defaultdict(list)
        self.material: dict[int, object] = {}
        for rel in f.by_type("IfcRelContainedInSpatialStructure"):
            for el in rel.RelatedElements or ():
                self.container[el.id()] = rel.RelatingStructure
        for rel in f.by_type("IfcRelAggregates"):
            for el in rel.RelatedObjects or ():
                self.parent[el.id()] = rel.RelatingObject
        for rel in f.by_type("IfcRelNests"):
            for el in rel.RelatedObjects or ():
                self.parent.setdefault(el.id(), rel.RelatingObject)
        for rel in f.by_type("IfcRelVoidsElement"):
            self.host[rel.RelatedOpeningElement.id()] = rel.RelatingBuildingElement
            self.openings[rel.RelatingBuildingElement.id()] += 1
        for rel in f.by_type("IfcRelFillsElement"):
            self.opening_of[rel.RelatedBuildingElement.id()] = rel.RelatingOpeningElement
        for rel in f.by_type("IfcRelDefinesByType"):
            for el in rel.RelatedObjects or ():
                self.type_of[el.id()] = rel.RelatingType
        for rel in f.by_type("IfcRelDefinesByProperties"):
            defs = _as_tuple(rel.RelatingPropertyDefinition)
            for el in rel.RelatedObjects or ():
                self.psets[el.id()].extend(defs)
        for rel in f.by_type("IfcRelAssociatesMaterial"):
            for el in rel.RelatedObjects or ():
                self.material[el.id()] = rel.RelatingMaterial
        self._pset_cache: dict[int, dict[str, object]] = {}
        self._storey_cache: dict[int, object] = {}

    # spatial structure
    def spatial_container(self, element) -> object | None:
        """The spatial element holding ``element``: its container, else its host's or whole's."""
        cur = element
        for _ in range(32):
            i = cur.id()
            if i in self.container:
                return self.container[i]
            nxt = self.opening_of.get(i) or self.host.get(i) or self.parent.get(i)
            if nxt is None:
                return None
            if nxt.is_a("IfcSpatialStructureElement") or (self.f.schema != "IFC2X3" and nxt.is_a("IfcSpatialElement")):
                return nxt
            cur = nxt
        return None

    def storey(self, element) -> object | None:
        """The IfcBuildingStorey an element belongs to (through spaces and wholes), or None."""
        i = element.id()
        if i not in self._storey_cache:
            s = element if element.is_a("IfcBuildingStorey") else self.spatial_container(element)
            for _ in range(16):
                if s is None or s.is_a("IfcBuildingStorey"):
                    break
                if s.is_a("IfcBuilding") or s.is_a("IfcSite"):
                    s = None
                    break
                s = self.parent.get(s.id()) or self.container.get(s.id())
            self._storey_cache[i] = s
        return self._storey_cache[i]

    def building(self, storey_or_element) -> object | None:
        s = storey_or_element
        for _ in range(16):
            if s is None or s.is_a("IfcBuilding"):
                return s
            s = self.parent.get(s.id()) or self.container.get(s.id()) or self.spatial_container(s)
        return None

    def storey_elevation(self, storey) -> float:
        """A storey's elevation in metres (its Elevation, else its placement height)."""
        if storey.Elevation is not None:
            return float(storey.Elevation) * self.unit
        if storey.ObjectPlacement is not None:
            return float(ifcopenshell.util.placement.get_local_placement(storey.ObjectPlacement)[2, 3]) * self.unit
        return 0.0

    # attributes
    def properties(self, element) -> dict[str, object]:
        """Flattened ``{"Pset.Property": value}`` of an element, over its type's (element wins).

        Lengths, areas and volumes are in metres, m², m³.
        """
        out: dict[str, object] = {}
        t = self.type_of.get(element.id())
        if t is not None:
            for pdef in _get(t, "HasPropertySets") or ():
                out.update(self._flat(pdef))
        for pdef in self.psets.get(element.id(), ()):
            out.update(self._flat(pdef))
        return out

    def _flat(self, pdef) -> dict[str, object]:
        key = pdef.id()
        hit = self._pset_cache.get(key)
        if hit is not None:
            return hit
        out: dict[str, object] = {}
        name = pdef.Name or pdef.is_a()
        if pdef.is_a("IfcPropertySet"):
            for prop in pdef.HasProperties or ():
                self._flat_property(f"{name}.{prop.Name}", prop, out)
        elif pdef.is_a("IfcElementQuantity"):
            for q in pdef.Quantities or ():
                if q.is_a("IfcPhysicalSimpleQuantity") and len(q) > 3 and q[3] is not None:
                    scale = self.unit if q.is_a("IfcQuantityLength") else self.area_unit if q.is_a("IfcQuantityArea") else self.volume_unit if q.is_a("IfcQuantityVolume") else 1.0
                    out[f"{name}.{q.Name}"] = float(q[3]) * scale
        self._pset_cache[key] = out
        return out

    def _flat_property(self, key: str, prop, out: dict) -> None:
        if prop.is_a("IfcPropertySingleValue"):
            out[key] = self._value(prop.NominalValue)
        elif prop.is_a("IfcPropertyEnumeratedValue"):
            vals = [self._value(v) for v in prop.EnumerationValues or ()]
            out[key] = vals[0] if len(vals) == 1 else "; ".join(map(str, vals)) if vals else None
        elif prop.is_a("IfcPropertyListValue"):
            vals = [self._value(v) for v in prop.ListValues or ()]
            out[key] = "; ".join(map(str, vals)) if vals else None
        elif prop.is_a("IfcPropertyBoundedValue"):
            lo, hi = self._value(prop.LowerBoundValue), self._value(prop.UpperBoundValue)
            out[key] = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
        elif prop.is_a("IfcComplexProperty"):
            for sub in prop.HasProperties or ():
                self._flat_property(f"{key}.{sub.Name}", sub, out)

    def _value(self, v) -> object:
        if v is None:
            return None
        if not isinstance(v, ifcopenshell.entity_instance):
            return v
        kind, val = v.is_a(), v.wrappedValue
        if kind in _LENGTH_MEASURES and isinstance(val, (int, float)):
            return float(val) * self.unit
        if kind == "IfcAreaMeasure" and isinstance(val, (int, float)):
            return float(val) * self.area_unit
        if kind == "IfcVolumeMeasure" and isinstance(val, (int, float)):
            return float(val) * self.volume_unit
        if kind == "IfcLogical" and isinstance(val, str):
            return {"TRUE": True, "FALSE": False}.get(val.upper(), None)
        if isinstance(val, tuple):
            return "; ".join(map(str, val))
        return val

    def material_name(self, element) -> str | None:
        mat = self.material.get(element.id())
        if mat is None:
            t = self.type_of.get(element.id())
            mat = self.material.get(t.id()) if t is not None else None
        if mat is None:
            return None
        names = _material_names(mat)
        return " / ".join(dict.fromkeys(n for n in names if n)) or None

    def attributes(self, elements: list, *, max_properties: int = 256) -> ElementAttributes:
        """Typed columns for ``elements``: the core columns, then property-set columns.

        Core: GlobalId, IfcClass, Name, Description, ObjectType, PredefinedType, Tag, Type
        (the IfcTypeObject's name), Storey, StoreyElevation (m), Building, Material. Property
        columns are ``"Pset.Property"``: BOOLEAN (missing → false), INT32 (integers that fit) or FLOAT64
        (missing → noData), STRING (missing → noData); mixed kinds become STRING. At most
        ``max_properties`` property columns, the most common first.
        """
        n = len(elements)
        core: dict[str, list] = {k: [None] * n for k in ("GlobalId", "IfcClass", "Name", "Description", "ObjectType", "PredefinedType", "Tag", "Type", "Storey", "Building", "Material")}
        elevation = np.full(n, np.nan)
        props: dict[str, dict[int, object]] = defaultdict(dict)
        for row, el in enumerate(elements):
            core["GlobalId"][row] = el.GlobalId
            core["IfcClass"][row] = el.is_a()
            core["Name"][row] = el.Name
            core["Description"][row] = el.Description
            core["ObjectType"][row] = _get(el, "ObjectType")
            pt = _get(el, "PredefinedType")
            t = self.type_of.get(el.id())
            if (pt is None or pt == "NOTDEFINED") and t is not None:
                pt = _get(t, "PredefinedType") or pt
            core["PredefinedType"][row] = pt
            core["Tag"][row] = _get(el, "Tag")
            core["Type"][row] = t.Name if t is not None else None
            storey = self.storey(el)
            if storey is not None:
                core["Storey"][row] = storey.Name or storey.LongName or f"#{storey.id()}"
                elevation[row] = self.storey_elevation(storey)
            b = self.building(storey if storey is not None else el)
            core["Building"][row] = b.Name if b is not None else None
            core["Material"][row] = self.material_name(el)
            for k, v in self.properties(el).items():
                if v is not None:
                    props[k][row] = v
        columns: dict[str, np.ndarray] = {}
        types: dict[str, str] = {}
        for k, vals in core.items():
            columns[k] = np.array([None if v is None else str(v) for v in vals], dtype=object)
            types[k] = "STRING"
            if k == "Storey":
                columns["StoreyElevation"] = elevation
                types["StoreyElevation"] = "FLOAT64"
        ranked = sorted(props, key=lambda k: (-len(props[k]), k))
        keep = sorted(ranked[:max_properties])
        present: dict[str, np.ndarray] = {}
        for k in keep:
            col, kind = _typed_column(props[k], n)
            columns[k] = col
            types[k] = kind
            if kind == "BOOLEAN":
                present[k] = np.zeros(n, dtype=bool)
                present[k][list(props[k])] = True
        return ElementAttributes(columns, types, max(0, len(ranked) - max_properties), present)

    def is_external(self, element) -> bool | None:
        """``IsExternal`` from any ``Pset_*Common`` of the element (or its type), else None."""
        for k, v in self.properties(element).items():
            if k.endswith(".IsExternal") and isinstance(v, bool):
                return v
        return None

    def body_candidates(self, exclude: tuple[str, ...] = EXCLUDED_CLASSES) -> dict[int, tuple[str, str]]:
        """``{step id: (GlobalId, class)}`` of products with a 3D body representation."""
        out: dict[int, tuple[str, str]] = {}
        exclude = tuple(c for c in exclude if _schema_has(self.f, c))
        for p in self.f.by_type("IfcProduct"):
            if p.Representation is None or any(p.is_a(c) for c in exclude):
                continue
            for rep in p.Representation.Representations or ():
                ctx = rep.ContextOfItems
                ident = (rep.RepresentationIdentifier or "").lower()
                parent = _get(ctx, "ParentContext") if ctx is not None else None
                ctype = ((_get(ctx, "ContextType") if ctx is not None else None) or (_get(parent, "ContextType") if parent is not None else None) or "model").lower()
                if ident in BODY_IDENTIFIERS and ctype == "model" and rep.Items:
                    out[p.id()] = (p.GlobalId, p.is_a())
                    break
        return out


def _schema_has(f: ifcopenshell.file, cls: str) -> bool:
    try:
        ifcopenshell.ifcopenshell_wrapper.schema_by_name(f.schema_identifier if hasattr(f, "schema_identifier") else f.schema).declaration_by_name(cls)
        return True
    except Exception:
        return False


def _unit_scale(f: ifcopenshell.file, unit_type: str) -> float:
    try:
        return float(ifcopenshell.util.unit.calculate_unit_scale(f, unit_type))
    except Exception:
        return 1.0


def _material_names(mat) -> list[str]:
    if mat.is_a("IfcMaterial"):
        return [mat.Name]
    if mat.is_a("IfcMaterialLayerSetUsage"):
        return _material_names(mat.ForLayerSet)
    if mat.is_a("IfcMaterialLayerSet"):
        return [getattr(mat, "LayerSetName", None) or " + ".join(n for l in mat.MaterialLayers or () if l.Material for n in _material_names(l.Material))]
    if mat.is_a("IfcMaterialList"):
        return [m.Name for m in mat.Materials or ()]
    if mat.is_a("IfcMaterialProfileSetUsage"):
        return _material_names(mat.ForProfileSet)
    if mat.is_a("IfcMaterialProfileSet"):
        return [mat.Name or " + ".join(n for p in mat.MaterialProfiles or () if p.Material for n in _material_names(p.Material))]
    if mat.is_a("IfcMaterialConstituentSet"):
        return [mat.Name or " + ".join(n for c in mat.MaterialConstituents or () if c.Material for n in _material_names(c.Material))]
    if hasattr(mat, "Material") and mat.Material is not None:
        return _material_names(mat.Material)
    return [getattr(mat, "Name", None) or ""]


def _typed_column(values: dict[int, object], n: int) -> tuple[np.ndarray, str]:
    """One property column from ``{row: value}``: BOOLEAN, INT32, FLOAT64 or STRING."""
    kinds = {type(v) for v in values.values()}
    if kinds <= {bool}:
        col = np.zeros(n, dtype=bool)
        col[list(values)] = list(values.values())
        return col, "BOOLEAN"
    if kinds <= {int, float}:
        col = np.full(n, np.nan)
        col[list(values)] = [float(v) for v in values.values()]
        if kinds == {int} and all(-(2**31) < v < 2**31 - 1 for v in values.values()):
            return col, "INT32"
        return col, "FLOAT64"
    col = np.full(n, None, dtype=object)
    for i, v in values.items():
        col[i] = str(v)
    return col, "STRING"


# -- geometry --------------------------------------------------------------------------------


@dataclass
class GeometryOptions:
    """How element geometry is made.

    Attributes
    ----------
    threads : geometry iterator threads (default: the number of cores, at most 8; peers report
        memory blow-ups with many threads on large files)
    element_timeout : seconds one element may take before it is stopped and reported
    max_voids : an element with more openings than this is drawn without them (OpenCASCADE's
        boolean subtraction grows faster than linearly: 400 openings in one wall take about 3 s,
        1,600 about 24 s here); 0 subtracts them all
    geometry_library : ifcopenshell's kernel ("opencascade", the reference; "manifold" is about
        8× faster on booleans but differs on some real walls)
    exclude : classes not drawn
    """

    threads: int | None = None
    element_timeout: float = 60.0
    max_voids: int = 256
    geometry_library: str = "opencascade"
    exclude: tuple[str, ...] = EXCLUDED_CLASSES

    def thread_count(self) -> int:
        return max(1, self.threads or min(os.cpu_count() or 1, 8))


@dataclass
class ElementGeometry:
    """One element's triangles in world coordinates (metres, z up, the file's axes).

    Attributes
    ----------
    id : STEP id of the product
    guid, ifc_class : its GlobalId and class
    vertices : (v, 3) float64
    normals : (v, 3) float64 (may be empty: compute from faces)
    triangles : (t, 3) int32
    tri_material : (t,) int32, index into ``materials``
    materials : (m, 4) float64 RGBA in [0, 1] (alpha = 1 − transparency)
    """

    id: int
    guid: str
    ifc_class: str
    vertices: np.ndarray
    normals: np.ndarray
    triangles: np.ndarray
    tri_material: np.ndarray
    materials: np.ndarray


@dataclass
class GeometryLog:
    """What happened to the elements that did not come out whole."""

    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (GlobalId, class, reason)
    timed_out: list[tuple[str, str]] = field(default_factory=list)
    empty: list[tuple[str, str]] = field(default_factory=list)
    stalls: int = 0
    seconds: float = 0.0
    kernel_peak_mb: float = 0.0  # the largest peak RSS of a kernel process

    def warnings(self, element_timeout: float) -> list[str]:
        out = []
        if self.failed:
            out.append(f"{len(self.failed)} element(s) failed in the geometry kernel: " + "; ".join(f"{g} ({c}): {r}" for g, c, r in self.failed[:20]) + (" ..." if len(self.failed) > 20 else ""))
        if self.timed_out:
            out.append(f"{len(self.timed_out)} element(s) took over {element_timeout:g} s and were skipped: " + "; ".join(f"{g} ({c})" for g, c in self.timed_out[:20]))
        if self.empty:
            out.append(f"{len(self.empty)} element(s) have a body representation but no triangles: " + "; ".join(f"{g} ({c})" for g, c in self.empty[:20]))
        return out


def _settings(max_voids: int) -> ifcopenshell.geom.settings:
    s = ifcopenshell.geom.settings()
    s.set("use-world-coords", True)
    s.set("weld-vertices", False)  # keep the kernel's per-face normals: flat shading
    s.set("apply-default-materials", True)
    if max_voids > 0:
        s.set("max-voids-per-element", int(max_voids))
    return s


def _pack(shape) -> tuple:
    g = shape.geometry
    mats = []
    for m in g.materials:
        d = m.diffuse
        rgb = (d.r(), d.g(), d.b()) if d is not None else (0.7, 0.7, 0.7)
        t = m.transparency
        alpha = 1.0 if t is None or t != t else 1.0 - float(t)
        mats.append((float(rgb[0]), float(rgb[1]), float(rgb[2]), min(1.0, max(0.0, alpha))))
    return ("el", int(shape.id), shape.guid, shape.type, g.verts_buffer, g.normals_buffer, g.faces_buffer, g.material_ids_buffer, mats)


def _geometry_child(conn, path: str, opts: dict, ids: list[int] | None, careful: bool) -> None:
    """Child process: stream element meshes (or, ``careful``, one element at a time)."""
    try:
        f = ifcopenshell.open(path)
        settings = _settings(opts["max_voids"])
        if careful:
            conn.send(("ready",))
            for i in ids or ():
                conn.send(("start", i))
                try:
                    conn.send(_pack(ifcopenshell.geom.create_shape(settings, f.by_id(i), geometry_library=opts["library"])))
                except Exception as exc:
                    conn.send(("fail", i, " ".join(str(exc).split())[:240]))
            conn.send(("done", peak_rss_mb()))
            return
        if ids is not None:
            if not ids:
                conn.send(("ready",))
                conn.send(("done",))
                return
            it = ifcopenshell.geom.iterator(settings, f, opts["threads"], include=[f.by_id(i) for i in ids], geometry_library=opts["library"])
        else:
            exclude = [c for c in opts["exclude"] if _schema_has(f, c)]
            it = ifcopenshell.geom.iterator(settings, f, opts["threads"], exclude=exclude or None, geometry_library=opts["library"])
        conn.send(("ready",))
        if it.initialize():
            while True:
                conn.send(_pack(it.get()))
                if not it.next():
                    break
        conn.send(("done", peak_rss_mb()))
    except Exception as exc:  # report, then end: the parent decides
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except Exception:
            pass
    finally:
        conn.close()


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM on Linux, else getrusage."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child_entry() -> None:
    """Entry point of the geometry child (``python -c``): arguments come pickled on stdin,
    messages go out on the file descriptor named by ``argv[1]``."""
    import sys

    conn = Connection(int(sys.argv[1]), readable=False)
    path, opts, ids, careful = pickle.load(sys.stdin.buffer)
    _geometry_child(conn, path, opts, ids, careful)


class _Child:
    """A geometry child process and the parent's end of its message pipe.

    A plain interpreter (``python -c``) rather than multiprocessing: nothing of the caller's
    ``__main__`` is re-run, no threaded parent is forked, and kernel chatter on the child's
    stdout cannot corrupt the messages, which travel on their own pipe.
    """

    STALL, EOF = object(), object()

    def __init__(self, path: Path, opts: dict, ids: list[int] | None, careful: bool) -> None:
        r, w = os.pipe()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from cim.sources.ifc import _child_entry; _child_entry()", str(w)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(w,), env=env,
            )
        finally:
            os.close(w)
        self.conn = Connection(r, writable=False)
        try:
            self.proc.stdin.write(pickle.dumps((str(path), opts, ids, careful), protocol=pickle.HIGHEST_PROTOCOL))
            self.proc.stdin.close()
        except OSError:
            pass  # the child died at once: recv() sees the end of the pipe

    def recv(self, timeout: float | None):
        try:
            if not self.conn.poll(timeout):
                return self.STALL
            return self.conn.recv()
        except (EOFError, OSError):
            return self.EOF

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.conn.close()


def _unpack(msg: tuple) -> ElementGeometry:
    _, pid, guid, cls, vb, nb, fb, mb, mats = msg
    verts = np.frombuffer(vb, dtype=np.float64).reshape(-1, 3)
    normals = np.frombuffer(nb, dtype=np.float64).reshape(-1, 3)
    tris = np.frombuffer(fb, dtype=np.int32).reshape(-1, 3)
    tri_mat = np.frombuffer(mb, dtype=np.int32)
    if len(tri_mat) != len(tris):
        tri_mat = np.zeros(len(tris), dtype=np.int32)
    materials = np.array(mats, dtype=np.float64).reshape(-1, 4) if mats else np.array([[0.7, 0.7, 0.7, 1.0]])
    tri_mat = np.where((tri_mat >= 0) & (tri_mat < len(materials)), tri_mat, 0).astype(np.int32)
    return ElementGeometry(pid, guid, cls, verts, normals, tris, tri_mat, materials)


class GeometryStream:
    """Per-element meshes of an IFC file, each element once, from a kernel child process.

    The child starts at construction, so that it parses the file while the caller reads
    attributes; :meth:`elements` then streams the meshes.

    Parameters
    ----------
    path : the IFC file
    options : threads, timeout, kernel

    Notes
    -----
    The multi-threaded iterator runs in a child process. When no element arrives for
    ``element_timeout`` seconds, the child is killed; the elements not yet seen are then made one
    at a time (each timed on its own) until the culprit is found and reported, and the fast
    iterator resumes with the rest. Bounded: every element costs at most the timeout, twice.
    Elements the iterator skips silently are retried one at a time to learn why.
    """

    def __init__(self, path: str | Path, options: GeometryOptions | None = None) -> None:
        self.path = Path(path)
        self.options = options or GeometryOptions()
        o = self.options
        self._opts = {"threads": o.thread_count(), "max_voids": o.max_voids, "library": o.geometry_library, "exclude": list(o.exclude)}
        self._first: _Child | None = _Child(self.path, self._opts, None, careful=False)

    def close(self) -> None:
        """Stop the child if it still runs (after an early exit)."""
        if self._first is not None:
            self._first.stop()
            self._first = None

    def __enter__(self) -> "GeometryStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def elements(self, expected: dict[int, tuple[str, str]], log: GeometryLog | None = None) -> Iterator[ElementGeometry]:
        """Yield element meshes in the order the kernel finishes them.

        Parameters
        ----------
        expected : ``{step id: (GlobalId, class)}`` of the elements that should have geometry
            (:meth:`IfcElementIndex.body_candidates`); names the failures in ``log``
        log : receives failures, timeouts and empty elements
        """
        log = log if log is not None else GeometryLog()
        options, opts, path = self.options, self._opts, self.path
        t0 = time.perf_counter()
        open_timeout = 120.0 + 10.0 * path.stat().st_size / 1e6  # parsing is linear: generous
        seen: set[int] = set()

        def remaining() -> list[int]:
            return [i for i in sorted(expected) if i not in seen]

        def accept(msg) -> ElementGeometry | None:
            g = _unpack(msg)
            if g.id in seen:
                return None
            seen.add(g.id)
            if len(g.triangles) == 0:
                log.empty.append((g.guid, g.ifc_class))
                return None
            return g

        include: list[int] | None = None  # None: every product but the excluded classes
        while True:
            # fast pass: the multi-threaded iterator
            child, self._first = self._first or _Child(path, opts, include, careful=False), None
            outcome = "done"
            try:
                ready = False
                while True:
                    msg = child.recv(options.element_timeout if ready else open_timeout)
                    if msg is _Child.STALL or msg is _Child.EOF:
                        outcome = "stall" if msg is _Child.STALL else "crash"
                        log.stalls += 1
                        break
                    kind = msg[0]
                    if kind == "ready":
                        ready = True
                    elif kind == "el":
                        g = accept(msg)
                        if g is not None:
                            yield g
                    elif kind == "done":
                        log.kernel_peak_mb = max(log.kernel_peak_mb, msg[1] if len(msg) > 1 else 0.0)
                        break
                    elif kind == "error":
                        if not ready:
                            raise CimInputError(f"{path}: the geometry kernel cannot read it ({msg[1]})")
                        outcome = "crash"
                        break
            finally:
                child.stop()
            if outcome == "done":
                break
            # a stall or crash: find the culprit one element at a time, then go fast again
            found = yield from _careful(path, opts, remaining(), expected, options, log, seen, accept, stop_at_culprit=True)
            include = remaining()
            if not found or not include:
                break
        # what the iterator skipped silently: ask each one why
        rest = remaining()
        if rest:
            yield from _careful(path, opts, rest, expected, options, log, seen, accept, stop_at_culprit=False)
        log.seconds = time.perf_counter() - t0


def iter_element_geometry(
    path: str | Path,
    expected: dict[int, tuple[str, str]],
    options: GeometryOptions | None = None,
    log: GeometryLog | None = None,
) -> Iterator[ElementGeometry]:
    """Stream element meshes of an IFC file (see :class:`GeometryStream`)."""
    with GeometryStream(path, options) as stream:
        yield from stream.elements(expected, log)


def _careful(path, opts, ids, expected, options, log, seen, accept, *, stop_at_culprit: bool):
    """Make ``ids`` one at a time in child processes; returns True when it stopped at a culprit."""
    ids = list(ids)
    while ids:
        child = _Child(path, opts, ids, careful=True)
        current: int | None = None
        culprit = False
        try:
            while True:
                msg = child.recv(options.element_timeout)
                if msg is _Child.STALL or msg is _Child.EOF:
                    if current is None:  # died before its first element: give up on the rest
                        for i in ids:
                            if i not in seen:
                                seen.add(i)
                                log.failed.append((*expected.get(i, ("?", "?")), "the geometry process died"))
                        return False
                    seen.add(current)
                    guid, cls = expected.get(current, ("?", "?"))
                    if msg is _Child.STALL:
                        log.timed_out.append((guid, cls))
                    else:
                        log.failed.append((guid, cls, "crashed the geometry kernel"))
                    culprit = True
                    break
                kind = msg[0]
                if kind == "start":
                    current = msg[1]
                elif kind == "el":
                    g = accept(msg)
                    current = None
                    if g is not None:
                        yield g
                elif kind == "fail":
                    seen.add(msg[1])
                    log.failed.append((*expected.get(msg[1], ("?", "?")), msg[2]))
                    current = None
                elif kind in ("done", "error"):
                    if kind == "done" and len(msg) > 1:
                        log.kernel_peak_mb = max(log.kernel_peak_mb, msg[1])
                    if kind == "error":
                        for i in ids:
                            if i not in seen:
                                seen.add(i)
                                log.failed.append((*expected.get(i, ("?", "?")), msg[1]))
                    return False
        finally:
            child.stop()
        ids = [i for i in ids if i not in seen]
        if culprit and stop_at_culprit:
            return True
    return False
