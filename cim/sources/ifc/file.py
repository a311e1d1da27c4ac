"""Opening an IFC file, and the small helpers every IFC module shares: units, attribute access,
placements. The reader's other modules are listed in :mod:`cim.sources.ifc`.
"""

from __future__ import annotations

import math
from pathlib import Path

import ifcopenshell
import ifcopenshell.util.unit
import numpy as np

from cim.errors import CimInputError, CimIOError

__all__ = [
    "EXCLUDED_CLASSES",
    "BODY_IDENTIFIERS",
    "SPATIAL_CLASSES",
    "LENGTH_MEASURES",
    "open_ifc",
    "schema_name",
    "length_unit",
    "unit_scale",
    "model_context",
    "schema_has",
    "get_attr",
    "raw_value",
    "as_tuple",
    "axis2placement",
    "local_placement",
]

#: classes never drawn: voids, virtual boundaries, annotations and grids
EXCLUDED_CLASSES = ("IfcOpeningElement", "IfcVirtualElement", "IfcAnnotation", "IfcGrid")
#: representation identifiers that hold a 3D body the iterator draws
BODY_IDENTIFIERS = {"body", "facetation", "body-fallback", "mesh", ""}
SPATIAL_CLASSES = ("IfcSpatialStructureElement", "IfcSpatialElement")
LENGTH_MEASURES = {"IfcLengthMeasure", "IfcPositiveLengthMeasure", "IfcNonNegativeLengthMeasure"}


def open_ifc(path: str | Path) -> ifcopenshell.file:
    """Open an IFC file; CimIOError when it cannot be read, CimInputError when it is not IFC."""
    path = Path(path)
    if not path.is_file():
        raise CimIOError(f"{path}: no such IFC file")
    try:
        f = ifcopenshell.open(str(path))
    except Exception as exc:  # ifcopenshell raises its own error types and RuntimeError
        from cim.sources.ifc.integrity import damaged_line

        where = damaged_line(path) if "yntax" in str(exc) else None
        raise CimInputError(f"{path}: not a readable IFC file ({exc}{f'; first damaged entity at {where}' if where else ''})") from None
    from cim.sources.ifc.integrity import check_placements

    check_placements(f, path)
    return f


def schema_name(f: ifcopenshell.file) -> str:
    """The file's general schema, ``"IFC2X3"``, ``"IFC4"``, ``"IFC4X3"`` (as ``f.schema``).

    ``ifcopenshell.file.schema`` compiles a regular expression on its first use in a process;
    ``schema_identifier`` needs none.
    """
    cached = f.__dict__.get("schema") if hasattr(f, "__dict__") else None
    if cached is not None:
        return cached
    return str(f.schema_identifier).upper().split("_")[0]


def length_unit(f: ifcopenshell.file) -> float:
    """Metres per project length unit."""
    return unit_scale(f, "LENGTHUNIT")


def unit_scale(f: ifcopenshell.file, unit_type: str) -> float:
    """SI units per project unit of ``unit_type`` (``"LENGTHUNIT"``, ``"AREAUNIT"``, ...); 1 when
    the file does not say.

    Kept on the file object: the georeference and the element index both ask (a one-element
    model four times), and each answer walks the file's unit assignment in ifcopenshell.
    """
    cache = f.__dict__.setdefault("_cim_unit_scale", {}) if hasattr(f, "__dict__") else {}
    scale = cache.get(unit_type)
    if scale is None:
        try:
            scale = float(ifcopenshell.util.unit.calculate_unit_scale(f, unit_type))
        except Exception:
            scale = 1.0
        cache[unit_type] = scale
    return scale


def model_context(f: ifcopenshell.file):
    """The 3D 'Model' representation context (the first), or None."""
    for ctx in f.by_type("IfcGeometricRepresentationContext", include_subtypes=False):
        if (ctx.ContextType or "").lower() == "model" and (ctx.CoordinateSpaceDimension or 3) == 3:
            return ctx
    contexts = f.by_type("IfcGeometricRepresentationContext", include_subtypes=False)
    return contexts[0] if contexts else None


def schema_has(f: ifcopenshell.file, cls: str) -> bool:
    """Whether the file's schema declares the entity ``cls``."""
    try:
        ifcopenshell.ifcopenshell_wrapper.schema_by_name(
            f.schema_identifier if hasattr(f, "schema_identifier") else f.schema
        ).declaration_by_name(cls)
        return True
    except Exception:
        return False


_POSITIONS: dict[str, dict[str, int]] = {}


def get_attr(entity, name: str):
    """``entity.name``, or None when its class has no such (forward) attribute.

    Read by position, the positions cached per class: ifcopenshell's lookup by name is slower
    (and a failed one much slower), and reading a model's property sets makes tens of thousands
    of such reads.
    """
    cls = entity.is_a(True)
    positions = _POSITIONS.get(cls)
    if positions is None:
        positions = _POSITIONS[cls] = {n: i for i, n in enumerate(entity.get_attribute_names())}
    i = positions.get(name)
    return entity.get_argument(i) if i is not None else None


def raw_value(value):
    """The Python value of a wrapped IFC value (``IfcLabel('x')`` → ``'x'``)."""
    return value.get_argument(0) if isinstance(value, ifcopenshell.entity_instance) else value


def as_tuple(value) -> tuple:
    """An IFC attribute that may be one entity or a list of them, as a tuple."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _unit(v: tuple[float, ...]) -> tuple[float, float, float]:
    x, y, z = ((*tuple(float(c) for c in v), 0.0, 0.0, 0.0))[:3]
    n = math.sqrt(x * x + y * y + z * z)
    return (x / n, y / n, z / n) if n > 0 else (x, y, z)


def axis2placement(placement) -> np.ndarray:
    """(4, 4) matrix of an IfcAxis2Placement2D/3D, as ``ifcopenshell.util.placement.
    get_axis2placement`` makes it (X and Z as given, normalised; Y = Z × X, normalised), in
    plain floats: its numpy calls on 3-vectors cost more than their arithmetic. Other placements
    (a location that is not a Cartesian point, linear placements) go to ifcopenshell."""
    cls = placement.is_a()
    location = get_attr(placement, "Location")
    coords = get_attr(location, "Coordinates") if location is not None and location.is_a("IfcCartesianPoint") else None
    if cls not in ("IfcAxis2Placement3D", "IfcAxis2Placement2D") or coords is None:
        import ifcopenshell.util.placement

        return np.asarray(ifcopenshell.util.placement.get_axis2placement(placement), dtype=np.float64)
    ref = get_attr(placement, "RefDirection")
    x = _unit(ref.DirectionRatios if ref is not None else (1.0, 0.0, 0.0))
    axis = get_attr(placement, "Axis") if cls == "IfcAxis2Placement3D" else None
    z = _unit(axis.DirectionRatios if axis is not None else (0.0, 0.0, 1.0))
    y = _unit((z[1] * x[2] - z[2] * x[1], z[2] * x[0] - z[0] * x[2], z[0] * x[1] - z[1] * x[0]))
    o = ((*tuple(float(c) for c in coords), 0.0, 0.0, 0.0))[:3]
    return np.array([[x[0], y[0], z[0], o[0]], [x[1], y[1], z[1], o[1]], [x[2], y[2], z[2], o[2]], [0.0, 0.0, 0.0, 1.0]])


def local_placement(placement) -> np.ndarray:
    """(4, 4) matrix of an IfcLocalPlacement chain (``get_local_placement``, with
    :func:`axis2placement`); identity for None; other placements go to ifcopenshell."""
    m = np.eye(4)
    seen: set[int] = set()
    while placement is not None:
        if placement.id() in seen:  # open_ifc refuses such files; a model built in memory may not be checked
            raise CimInputError(f"placement #{placement.id()} is placed relative to itself")
        seen.add(placement.id())
        if not placement.is_a("IfcLocalPlacement"):
            import ifcopenshell.util.placement

            return np.asarray(ifcopenshell.util.placement.get_local_placement(placement), dtype=np.float64) @ m
        m = axis2placement(get_attr(placement, "RelativePlacement")) @ m
        placement = get_attr(placement, "PlacementRelTo")
    return m
