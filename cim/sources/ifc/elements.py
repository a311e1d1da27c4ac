"""IFC elements and their attributes: relationships indexed once, attributes as typed columns.

:class:`IfcElementIndex` indexes the relationships of a file once (containment, aggregation,
voids, types, property sets, materials) and gives each element's storey, building, material and
attributes; :meth:`IfcElementIndex.attributes` turns a list of elements into the typed columns of
:class:`ElementAttributes`. Attribute lengths, areas and volumes are converted to m, m², m³.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import ifcopenshell
import numpy as np

from cim.sources.ifc.file import (
    BODY_IDENTIFIERS,
    EXCLUDED_CLASSES,
    LENGTH_MEASURES,
    as_tuple,
    get_attr,
    length_unit,
    local_placement,
    schema_has,
    schema_name,
    unit_scale,
)

__all__ = ["ElementAttributes", "IfcElementIndex"]


@dataclass
class ElementAttributes:
    """Attribute columns of a list of elements (one row each) and their metadata types."""

    columns: dict[str, np.ndarray]
    types: dict[str, str]
    dropped: int = 0  # property columns left out by ``max_properties``
    #: which rows hold a value, for BOOLEAN columns (metadata booleans have no null)
    present: dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, rows: np.ndarray) -> ElementAttributes:
        """The attributes of ``rows`` (an int index array)."""
        return ElementAttributes(
            {k: v[rows] for k, v in self.columns.items()}, dict(self.types), self.dropped, {k: v[rows] for k, v in self.present.items()}
        )


def _present(items) -> Iterator:
    """The entities of an aggregate attribute that exist (None: a reference to an entity the
    file does not define)."""
    return (x for x in items or () if x is not None)


class IfcElementIndex:
    """One pass over an IFC file's relationships, then per-element lookups.

    Parameters
    ----------
    f : the open file
    """

    def __init__(self, f: ifcopenshell.file) -> None:
        self.f = f
        self.schema = schema_name(f)
        self.unit = length_unit(f)
        self.container: dict[int, ifcopenshell.entity_instance] = {}
        self.parent: dict[int, ifcopenshell.entity_instance] = {}  # aggregate / nest parent
        self.host: dict[int, ifcopenshell.entity_instance] = {}  # opening → voided element
        self.opening_of: dict[int, ifcopenshell.entity_instance] = {}  # filling element → opening
        self.openings: Counter[int] = Counter()  # element → number of openings
        self.type_of: dict[int, ifcopenshell.entity_instance] = {}
        self.psets: dict[int, list] = defaultdict(list)
        self.material: dict[int, ifcopenshell.entity_instance] = {}
        # attributes read by position (see get_attr): this pass and the property sets are most
        # of the time spent reading a model's attributes
        a = get_attr
        # a damaged file (cut short, a line lost) leaves relationships naming entities it never
        # defines: ifcopenshell gives None for them, and they are skipped (check_integrity
        # counts what they cost)
        for rel in f.by_type("IfcRelContainedInSpatialStructure"):
            whole = a(rel, "RelatingStructure")
            for el in _present(a(rel, "RelatedElements")):
                self.container[el.id()] = whole
        for rel in f.by_type("IfcRelAggregates"):
            whole = a(rel, "RelatingObject")
            for el in _present(a(rel, "RelatedObjects")):
                self.parent[el.id()] = whole
        for rel in f.by_type("IfcRelNests"):
            whole = a(rel, "RelatingObject")
            for el in _present(a(rel, "RelatedObjects")):
                self.parent.setdefault(el.id(), whole)
        for rel in f.by_type("IfcRelVoidsElement"):
            host, opening = a(rel, "RelatingBuildingElement"), a(rel, "RelatedOpeningElement")
            if host is not None and opening is not None:
                self.host[opening.id()] = host
                self.openings[host.id()] += 1
        for rel in f.by_type("IfcRelFillsElement"):
            filling, opening = a(rel, "RelatedBuildingElement"), a(rel, "RelatingOpeningElement")
            if filling is not None and opening is not None:
                self.opening_of[filling.id()] = opening
        for rel in f.by_type("IfcRelDefinesByType"):
            t = a(rel, "RelatingType")
            for el in _present(a(rel, "RelatedObjects")):
                self.type_of[el.id()] = t
        for rel in f.by_type("IfcRelDefinesByProperties"):
            defs = tuple(_present(as_tuple(a(rel, "RelatingPropertyDefinition"))))
            for el in _present(a(rel, "RelatedObjects")):
                self.psets[el.id()].extend(defs)
        for rel in f.by_type("IfcRelAssociatesMaterial"):
            mat = a(rel, "RelatingMaterial")
            for el in _present(a(rel, "RelatedObjects")):
                self.material[el.id()] = mat
        self._pset_cache: dict[int, dict[str, object]] = {}
        self._props_cache: dict[int, dict[str, object]] = {}
        self._storey_cache: dict[int, ifcopenshell.entity_instance | None] = {}

    # spatial structure
    def spatial_container(self, element) -> ifcopenshell.entity_instance | None:
        """The spatial element holding ``element``: its container, else its host's or whole's."""
        cur = element
        for _ in range(32):
            i = cur.id()
            if i in self.container:
                return self.container[i]
            nxt = self.opening_of.get(i) or self.host.get(i) or self.parent.get(i)
            if nxt is None:
                return None
            if nxt.is_a("IfcSpatialStructureElement") or (self.schema != "IFC2X3" and nxt.is_a("IfcSpatialElement")):
                return nxt
            cur = nxt
        return None

    def storey(self, element) -> ifcopenshell.entity_instance | None:
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

    def building(self, storey_or_element) -> ifcopenshell.entity_instance | None:
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
            return float(local_placement(storey.ObjectPlacement)[2, 3]) * self.unit
        return 0.0

    @property
    def area_unit(self) -> float:
        """m² per project area unit (looked up only when an area is read)."""
        return unit_scale(self.f, "AREAUNIT")

    @property
    def volume_unit(self) -> float:
        """m³ per project volume unit (asked only when a volume is read)."""
        return unit_scale(self.f, "VOLUMEUNIT")

    # attributes
    def properties(self, element) -> dict[str, object]:
        """Flattened ``{"Pset.Property": value}`` of an element, over its type's (element wins).

        Lengths, areas and volumes are in metres, m², m³. Kept per element (the attributes and
        the exterior test both read them): do not change the dict returned.
        """
        i = element.id()
        out = self._props_cache.get(i)
        if out is not None:
            return out
        out = {}
        t = self.type_of.get(i)
        if t is not None:
            for pdef in get_attr(t, "HasPropertySets") or ():
                out.update(self._flat(pdef))
        for pdef in self.psets.get(i, ()):
            out.update(self._flat(pdef))
        self._props_cache[i] = out
        return out

    def _flat(self, pdef) -> dict[str, object]:
        key = pdef.id()
        hit = self._pset_cache.get(key)
        if hit is not None:
            return hit
        out: dict[str, object] = {}
        kind = pdef.is_a()
        name = get_attr(pdef, "Name") or kind
        if kind == "IfcPropertySet":
            for prop in get_attr(pdef, "HasProperties") or ():
                self._flat_property(f"{name}.{get_attr(prop, 'Name')}", prop, out)
        elif kind == "IfcElementQuantity":
            for q in get_attr(pdef, "Quantities") or ():
                if q.is_a("IfcPhysicalSimpleQuantity") and len(q) > 3 and q[3] is not None:
                    qk = q.is_a()
                    scale = (
                        self.unit
                        if qk == "IfcQuantityLength"
                        else self.area_unit
                        if qk == "IfcQuantityArea"
                        else self.volume_unit
                        if qk == "IfcQuantityVolume"
                        else 1.0
                    )
                    out[f"{name}.{get_attr(q, 'Name')}"] = float(q[3]) * scale
        self._pset_cache[key] = out
        return out

    def _flat_property(self, key: str, prop, out: dict) -> None:
        kind = prop.is_a()  # property classes have no subclasses: compare names
        if kind == "IfcPropertySingleValue":
            out[key] = self._value(get_attr(prop, "NominalValue"))
        elif kind == "IfcPropertyEnumeratedValue":
            vals = [self._value(v) for v in get_attr(prop, "EnumerationValues") or ()]
            out[key] = vals[0] if len(vals) == 1 else "; ".join(map(str, vals)) if vals else None
        elif kind == "IfcPropertyListValue":
            vals = [self._value(v) for v in get_attr(prop, "ListValues") or ()]
            out[key] = "; ".join(map(str, vals)) if vals else None
        elif kind == "IfcPropertyBoundedValue":
            lo, hi = self._value(get_attr(prop, "LowerBoundValue")), self._value(get_attr(prop, "UpperBoundValue"))
            out[key] = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
        elif kind == "IfcComplexProperty":
            for sub in get_attr(prop, "HasProperties") or ():
                self._flat_property(f"{key}.{get_attr(sub, 'Name')}", sub, out)

    def _value(self, v) -> object:
        if v is None:
            return None
        if not isinstance(v, ifcopenshell.entity_instance):
            return v
        kind, val = v.is_a(), v.get_argument(0)  # a defined type wraps one value
        if kind in LENGTH_MEASURES and isinstance(val, (int, float)):
            return float(val) * self.unit
        if kind == "IfcAreaMeasure" and isinstance(val, (int, float)):
            return float(val) * self.area_unit
        if kind == "IfcVolumeMeasure" and isinstance(val, (int, float)):
            return float(val) * self.volume_unit
        if kind == "IfcLogical" and isinstance(val, str):
            return {"TRUE": True, "FALSE": False}.get(val.upper())
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
        core: dict[str, list] = {
            k: [None] * n
            for k in (
                "GlobalId",
                "IfcClass",
                "Name",
                "Description",
                "ObjectType",
                "PredefinedType",
                "Tag",
                "Type",
                "Storey",
                "Building",
                "Material",
            )
        }
        elevation = np.full(n, np.nan)
        props: dict[str, dict[int, object]] = defaultdict(dict)
        for row, el in enumerate(elements):
            core["GlobalId"][row] = get_attr(el, "GlobalId")
            core["IfcClass"][row] = el.is_a()
            core["Name"][row] = get_attr(el, "Name")
            core["Description"][row] = get_attr(el, "Description")
            core["ObjectType"][row] = get_attr(el, "ObjectType")
            pt = get_attr(el, "PredefinedType")
            t = self.type_of.get(el.id())
            if (pt is None or pt == "NOTDEFINED") and t is not None:
                pt = get_attr(t, "PredefinedType") or pt
            core["PredefinedType"][row] = pt
            core["Tag"][row] = get_attr(el, "Tag")
            core["Type"][row] = get_attr(t, "Name") if t is not None else None
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
        exclude = tuple(c for c in exclude if schema_has(self.f, c))
        excluded: dict[str, bool] = {}  # per class
        model_ctx: dict[int, bool] = {}  # per representation context: a 3D model context?
        a = get_attr
        for p in self.f.by_type("IfcProduct"):
            shape = a(p, "Representation")
            if shape is None:
                continue
            cls = p.is_a()
            if cls not in excluded:
                excluded[cls] = any(p.is_a(c) for c in exclude)
            if excluded[cls]:
                continue
            for rep in a(shape, "Representations") or ():
                if (a(rep, "RepresentationIdentifier") or "").lower() not in BODY_IDENTIFIERS:
                    continue
                ctx = a(rep, "ContextOfItems")
                key = ctx.id() if ctx is not None else 0
                if key not in model_ctx:
                    parent = a(ctx, "ParentContext") if ctx is not None else None
                    ctype = (
                        (a(ctx, "ContextType") if ctx is not None else None)
                        or (a(parent, "ContextType") if parent is not None else None)
                        or "model"
                    )
                    model_ctx[key] = ctype.lower() == "model"
                if model_ctx[key] and a(rep, "Items"):
                    out[p.id()] = (a(p, "GlobalId"), cls)
                    break
        return out


def _material_names(mat) -> list[str]:
    if mat.is_a("IfcMaterial"):
        return [mat.Name]
    if mat.is_a("IfcMaterialLayerSetUsage"):
        return _material_names(mat.ForLayerSet)
    if mat.is_a("IfcMaterialLayerSet"):
        return [
            getattr(mat, "LayerSetName", None)
            or " + ".join(n for l in mat.MaterialLayers or () if l.Material for n in _material_names(l.Material))
        ]
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
        numbers = cast("dict[int, float]", values)  # every value an int or a float (kinds)
        col = np.full(n, np.nan)
        col[list(numbers)] = [float(v) for v in numbers.values()]
        if kinds == {int} and all(-(2**31) < v < 2**31 - 1 for v in numbers.values()):
            return col, "INT32"
        return col, "FLOAT64"
    col = np.full(n, None, dtype=object)
    for i, v in values.items():
        col[i] = str(v)
    return col, "STRING"
