"""Which models are safe to triangulate in this process: a few elements of small planar solids.

The geometry process exists because OpenCASCADE cannot be interrupted: an element can run for
minutes (hundreds of openings in one wall, booleans of curved or near-coincident surfaces,
fine tessellation of large curved faces, the healing of broken boundaries). Run in this
process, such an element would hang the caller, and no timer can help: the C++ call holds the
GIL until it returns. So a model is made here (:class:`cim.sources.ifc.kernel.InProcessKernel`)
only when what the kernel would be asked to do is small by construction:

- at most ``max_elements`` products to draw (and a file of at most :data:`MAX_BYTES`);
- every item of every representation of each, and of each of its openings, is one of: an
  extrusion of a straight-edged profile (rectangle, polyline or indexed polyline of line
  segments, with at most :data:`MAX_POINTS` corners and :data:`MAX_INNER` holes); a faceted or
  tessellated boundary of at most :data:`MAX_FACES` faces; a boolean (or clipping) of those with
  planar half-spaces; a mapped item of those; a polyline (axis) or a bounding box;
- at most :data:`MAX_OPENINGS` openings an element and :data:`MAX_ITEMS` items in all.

On such input every step of the kernel is planar: no curve is approximated, no surface is
meshed to a tolerance, and a boolean meets a few dozen planar faces, so its work is bounded by
the input's size. This is a bound by construction, not a proof about OpenCASCADE: what it does
not cover (a kernel that loops or crashes on such simple input would take this process with it)
is why the limits are small. Anything else, and every model beyond
them, goes to a geometry process as before, with the element timeout. The check itself reads
at most ``max_elements`` products' representations.
"""

from __future__ import annotations

from pathlib import Path

import ifcopenshell

from cim.sources.ifc.file import get_attr

__all__ = [
    "MAX_BYTES",
    "MAX_POINTS",
    "MAX_INNER",
    "MAX_FACES",
    "MAX_OPENINGS",
    "MAX_ITEMS",
    "simple_model",
]

#: largest file considered (bytes): a model of a few elements is far smaller
MAX_BYTES = 2_000_000
MAX_POINTS = 256
MAX_INNER = 16
MAX_FACES = 2_000
MAX_OPENINGS = 8
MAX_ITEMS = 256

_CURVES = frozenset({"IfcPolyline", "IfcIndexedPolyCurve"})


def simple_model(f: ifcopenshell.file, path: str | Path | None, exclude: list[str], max_elements: int) -> bool:
    """Whether the products the iterator would draw are few and all simple (see the module
    notes): at most ``max_elements``, not of the ``exclude`` classes."""
    if max_elements <= 0:
        return False
    if path is not None:
        try:
            if Path(path).stat().st_size > MAX_BYTES:
                return False
        except OSError:
            return False
    products = []
    for p in f.by_type("IfcProduct"):
        shape = get_attr(p, "Representation")
        if shape is None or any(p.is_a(c) for c in exclude):
            continue
        products.append((p, shape))
        if len(products) > max_elements:
            return False
    # openings through the relationships (an inverse attribute's first read is costly)
    openings: dict[int, list] = {}
    for rel in f.by_type("IfcRelVoidsElement"):
        host, opening = get_attr(rel, "RelatingBuildingElement"), get_attr(rel, "RelatedOpeningElement")
        if host is not None and opening is not None:
            openings.setdefault(host.id(), []).append(opening)
    budget = [MAX_ITEMS]
    for p, shape in products:
        holes = openings.get(p.id(), ())
        if len(holes) > MAX_OPENINGS or not _shape_ok(shape, budget):
            return False
        for o in holes:
            o_shape = get_attr(o, "Representation")
            if o_shape is not None and not _shape_ok(o_shape, budget):
                return False
    return True


def _shape_ok(shape, budget: list[int]) -> bool:
    return all(all(_item_ok(item, budget) for item in get_attr(rep, "Items") or ()) for rep in get_attr(shape, "Representations") or ())


def _item_ok(item, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0 or item is None:
        return False
    kind = item.is_a()
    if kind == "IfcExtrudedAreaSolid":
        return _profile_ok(get_attr(item, "SweptArea"))
    if kind in ("IfcBooleanResult", "IfcBooleanClippingResult"):
        return _item_ok(get_attr(item, "FirstOperand"), budget) and _item_ok(get_attr(item, "SecondOperand"), budget)
    if kind == "IfcHalfSpaceSolid":
        return _is(get_attr(item, "BaseSurface"), "IfcPlane")
    if kind == "IfcPolygonalBoundedHalfSpace":
        return _is(get_attr(item, "BaseSurface"), "IfcPlane") and _curve_ok(get_attr(item, "PolygonalBoundary"))
    if kind == "IfcMappedItem":
        source = get_attr(item, "MappingSource")
        rep = get_attr(source, "MappedRepresentation") if source is not None else None
        return rep is not None and all(_item_ok(i, budget) for i in get_attr(rep, "Items") or ())
    if kind == "IfcFacetedBrep":
        shell = get_attr(item, "Outer")
        return shell is not None and len(get_attr(shell, "CfsFaces") or ()) <= MAX_FACES
    if kind in ("IfcTriangulatedFaceSet", "IfcPolygonalFaceSet"):
        points = get_attr(item, "Coordinates")
        faces = get_attr(item, "CoordIndex") if kind == "IfcTriangulatedFaceSet" else get_attr(item, "Faces")
        return points is not None and len(get_attr(points, "CoordList") or ()) <= 3 * MAX_FACES and len(faces or ()) <= MAX_FACES
    if kind in _CURVES:
        return _curve_ok(item)
    return kind == "IfcBoundingBox"


def _profile_ok(profile) -> bool:
    if profile is None:
        return False
    kind = profile.is_a()
    if kind == "IfcRectangleProfileDef":  # not its rounded or hollow subclasses
        return True
    if kind == "IfcArbitraryClosedProfileDef":
        return _curve_ok(get_attr(profile, "OuterCurve"))
    if kind == "IfcArbitraryProfileDefWithVoids":
        inner = get_attr(profile, "InnerCurves") or ()
        return _curve_ok(get_attr(profile, "OuterCurve")) and len(inner) <= MAX_INNER and all(_curve_ok(c) for c in inner)
    return False


def _curve_ok(curve) -> bool:
    """A polyline, or an indexed polyline of line segments only, of at most MAX_POINTS points."""
    if curve is None:
        return False
    kind = curve.is_a()
    if kind == "IfcPolyline":
        return len(get_attr(curve, "Points") or ()) <= MAX_POINTS
    if kind == "IfcIndexedPolyCurve":
        points = get_attr(curve, "Points")
        segments = get_attr(curve, "Segments")
        return (
            points is not None
            and len(get_attr(points, "CoordList") or ()) <= MAX_POINTS
            and all(s.is_a() == "IfcLineIndex" for s in segments or ())
        )
    return False


def _is(entity, kind: str) -> bool:
    return entity is not None and entity.is_a() == kind
