"""Elements whose geometry fails or never ends: counted, reported, bounded; the model converts."""

from __future__ import annotations

from pathlib import Path

import ifcopenshell
import ifcopenshell.guid
import pytest

from cim.layers.bim import BimOptions, build_bim_layer
from cim.samplecity.bim import write_sample_ifc
from cim.sources.ifc import GeometryLog, GeometryOptions, IfcElementIndex, iter_element_geometry, open_ifc
from tests.bim.test_layer import city_frame, elements_of

SPEC = dict(easting=566000.0, northing=3827000.0, base_height=1150.0, rotation_deg=0.0, width=10.0, depth=8.0, storeys=1, name="Robust", seed=2)


def _body(f: ifcopenshell.file, solid) -> object:
    ctx = next(c for c in f.by_type("IfcGeometricRepresentationSubContext") if c.ContextIdentifier == "Body")
    return f.createIfcProductDefinitionShape(None, None, [f.createIfcShapeRepresentation(ctx, "Body", "SweptSolid", [solid])])


def _placement(f: ifcopenshell.file, x: float, y: float, z: float, rel=None):
    return f.createIfcLocalPlacement(rel, f.createIfcAxis2Placement3D(f.createIfcCartesianPoint((x, y, z)), None, None))


def _storey(f: ifcopenshell.file):
    return f.by_type("IfcBuildingStorey")[0]


def add_broken_proxy(f: ifcopenshell.file) -> str:
    """A proxy whose extrusion has zero depth: the kernel refuses it."""
    profile = f.createIfcRectangleProfileDef("AREA", None, None, 1000.0, 1000.0)
    solid = f.createIfcExtrudedAreaSolid(profile, None, f.createIfcDirection((0.0, 0.0, 1.0)), 1.0)
    solid.Depth = 0.0
    proxy = f.createIfcBuildingElementProxy(ifcopenshell.guid.new(), None, "broken", None, None, _placement(f, 0, 0, 0), _body(f, solid), None)
    f.createIfcRelContainedInSpatialStructure(ifcopenshell.guid.new(), None, None, None, [proxy], _storey(f))
    return proxy.GlobalId


def add_swiss_cheese_wall(f: ifcopenshell.file, openings: int = 1600) -> str:
    """A 20 m wall with ``openings`` small openings: OpenCASCADE's subtraction takes about 24 s
    here (400 openings: 3 s), far beyond the timeout the test gives it."""
    profile = f.createIfcRectangleProfileDef("AREA", None, f.createIfcAxis2Placement2D(f.createIfcCartesianPoint((10000.0, 150.0)), None), 20000.0, 300.0)
    solid = f.createIfcExtrudedAreaSolid(profile, None, f.createIfcDirection((0.0, 0.0, 1.0)), 5000.0)
    wall = f.createIfcWall(ifcopenshell.guid.new(), None, "swiss cheese", None, None, _placement(f, 30000, 0, 0), _body(f, solid), None, None)
    f.createIfcRelContainedInSpatialStructure(ifcopenshell.guid.new(), None, None, None, [wall], _storey(f))
    hole = f.createIfcExtrudedAreaSolid(f.createIfcRectangleProfileDef("AREA", None, None, 60.0, 60.0), None, f.createIfcDirection((0.0, 1.0, 0.0)), 500.0)
    shape = _body(f, hole)
    per_row = 80
    for i in range(openings):
        x, z = 100.0 + (i % per_row) * 240.0, 100.0 + (i // per_row) * 240.0
        opening = f.createIfcOpeningElement(ifcopenshell.guid.new(), None, None, None, None, _placement(f, x, -100.0, z, wall.ObjectPlacement), shape, None)
        f.createIfcRelVoidsElement(ifcopenshell.guid.new(), None, None, None, wall, opening)
    return wall.GlobalId


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_sample_ifc(tmp_path_factory.mktemp("robust") / "base.ifc", **SPEC)


def variant(base: Path, tmp_path: Path, *edits) -> tuple[Path, list[str]]:
    f = ifcopenshell.open(str(base))
    ids = [edit(f) for edit in edits]
    path = tmp_path / "variant.ifc"
    f.write(str(path))
    return path, ids


def test_failed_element_is_reported_and_the_model_converts(base, tmp_path):
    path, (broken,) = variant(base, tmp_path, add_broken_proxy)
    f = open_ifc(path)
    expected = IfcElementIndex(f).body_candidates()
    result = build_bim_layer([path], tmp_path / "out", city_frame(), crs="EPSG:4544")
    assert result.count == len(expected) - 1
    assert result.skipped == 1
    message = next(w for w in result.warnings if "failed" in w)
    assert broken in message and "IfcBuildingElementProxy" in message
    assert result.extra["models"][0]["failed"][0][:2] == [broken, "IfcBuildingElementProxy"]
    assert broken not in elements_of(tmp_path / "out")


@pytest.mark.parametrize("start", ["auto", "spawn"])
def test_pathological_element_is_stopped_by_the_timeout(base, tmp_path, start):
    """Bounded whether the geometry process is forked (sharing the parsed file) or a fresh
    interpreter: the culprit is killed with its process, reported, and the rest still come."""
    path, (cheese,) = variant(base, tmp_path, add_swiss_cheese_wall)
    f = open_ifc(path)
    expected = IfcElementIndex(f).body_candidates()
    log = GeometryLog()
    options = GeometryOptions(max_voids=0, element_timeout=1.0, start=start)
    got = {g.guid for g in iter_element_geometry(path, expected, options, log, file=f)}
    assert log.timed_out == [(cheese, "IfcWall")]
    assert got == {guid for guid, _ in expected.values()} - {cheese}
    assert log.stalls >= 1
    # the fast pass, the careful pass that found the culprit (and the fast pass over what is left)
    assert log.processes >= 2 and log.forked == (log.processes if start == "auto" else 0)


def test_max_voids_bounds_boolean_work(base, tmp_path):
    path, (cheese,) = variant(base, tmp_path, add_swiss_cheese_wall)
    result = build_bim_layer([path], tmp_path / "out", city_frame(), crs="EPSG:4544", options=BimOptions(geometry=GeometryOptions(max_voids=256)))
    assert result.skipped == 0
    message = next(w for w in result.warnings if "openings" in w)
    assert cheese in message and "1600 openings" in message
    assert cheese in elements_of(tmp_path / "out")
