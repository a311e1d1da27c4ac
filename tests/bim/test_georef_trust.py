"""Georeferencing a user can trust: contradictory, singular and double-counted IFC placements."""

from __future__ import annotations

from pathlib import Path

import ifcopenshell
import ifcopenshell.api.unit
import numpy as np
import pytest

from cim.errors import CimCRSError, CimInputError
from cim.layers.bim import resolve_placement
from cim.samplecity.bim import write_sample_ifc
from cim.sources.ifc import open_ifc, read_georeference
from tests.helpers.bim import city_frame

SPEC = dict(easting=566000.0, northing=3827000.0, base_height=1150.0, rotation_deg=0.0, width=8.0, depth=8.0, storeys=1, name="Trust")
ORIGIN = np.zeros((1, 3))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return write_sample_ifc(tmp_path_factory.mktemp("trust") / "trust.ifc", **SPEC)


def edited(sample: Path, tmp_path: Path, edit) -> Path:
    f = ifcopenshell.open(str(sample))
    edit(f)
    out = tmp_path / f"edited-{len(list(tmp_path.iterdir()))}.ifc"
    f.write(str(out))
    return out


def feet_map_unit_millimetre_values(f) -> None:
    """A real exporter's contradiction: MapUnit feet, false origin in the project's millimetres."""
    op = f.by_type("IfcMapConversion")[0]
    op.Eastings, op.Northings, op.OrthogonalHeight = op.Eastings * 1000, op.Northings * 1000, op.OrthogonalHeight * 1000
    op.Scale = None
    op.TargetCRS.MapUnit = ifcopenshell.api.unit.add_conversion_based_unit(f, name="foot")


def test_a_map_unit_contradicting_the_values_is_read_in_the_consistent_unit(sample, tmp_path):
    geo = read_georeference(open_ifc(edited(sample, tmp_path, feet_map_unit_millimetre_values)))
    assert geo.map_unit == pytest.approx(0.3048)  # as declared: 566,000,000 ft lands nowhere on Earth
    placement = resolve_placement(geo, city_frame(), crs="EPSG:4544")
    np.testing.assert_allclose(placement.map_coords(ORIGIN)[0], (566000.0, 3827000.0, 1150.0), atol=1e-6)
    (note,) = [n for n in placement.notes if "MapUnit" in n]
    assert "0.3048" in note and "project's length unit" in note and "used" in note


def test_a_placement_no_reading_makes_consistent_is_an_error(sample, tmp_path):
    def other_zone(f):  # eastings of a zone 60° away, in the declared metres
        f.by_type("IfcMapConversion")[0].Eastings = 9_566_000.0

    geo = read_georeference(open_ifc(edited(sample, tmp_path, other_zone)))
    with pytest.raises(CimCRSError, match="area of use of EPSG:4544"):
        resolve_placement(geo, city_frame(), crs="EPSG:4544", name="trust.ifc")


def test_a_consistent_placement_has_no_note(sample):
    placement = resolve_placement(read_georeference(open_ifc(sample)), city_frame(), crs="EPSG:4544")
    assert not [n for n in placement.notes if "MapUnit" in n]
    np.testing.assert_allclose(placement.map_coords(ORIGIN)[0], (566000.0, 3827000.0, 1150.0), atol=1e-6)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"XAxisAbscissa": 0.0, "XAxisOrdinate": 0.0}, "singular"),
        ({"Scale": 0.0}, "positive"),
        ({"Scale": -0.001}, "positive"),
    ],
)
def test_a_singular_map_conversion_is_an_error(sample, tmp_path, values, message):
    def edit(f):
        op = f.by_type("IfcMapConversion")[0]
        for k, v in values.items():
            setattr(op, k, v)

    geo = read_georeference(open_ifc(edited(sample, tmp_path, edit)))
    with pytest.raises(CimInputError, match=message):
        resolve_placement(geo, city_frame(), crs="EPSG:4544", name="trust.ifc")


@pytest.mark.parametrize("height", [1e12, 3e38])
def test_an_orthogonal_height_no_place_has_is_an_error(sample, tmp_path, height):
    def edit(f):
        f.by_type("IfcMapConversion")[0].OrthogonalHeight = height

    geo = read_georeference(open_ifc(edited(sample, tmp_path, edit)))
    with pytest.raises(CimCRSError, match="height"):
        resolve_placement(geo, city_frame(), crs="EPSG:4544", name="trust.ifc")


def test_a_context_offset_and_orthogonal_height_lift_the_model_once(sample, tmp_path):
    def lifted_twice(f):
        ctx = next(c for c in f.by_type("IfcGeometricRepresentationContext") if not c.is_a("IfcGeometricRepresentationSubContext"))
        wcs = ctx.WorldCoordinateSystem
        wcs.Location = f.create_entity("IfcCartesianPoint", (0.0, 0.0, 1_150_000.0))  # millimetres: the same 1150 m

    geo = read_georeference(open_ifc(edited(sample, tmp_path, lifted_twice)))
    placement = resolve_placement(geo, city_frame(), crs="EPSG:4544")
    np.testing.assert_allclose(placement.map_coords(ORIGIN)[0], (566000.0, 3827000.0, 1150.0), atol=1e-6)
    assert any("counted once" in n for n in placement.notes)


def test_a_context_offset_in_plan_is_kept(sample, tmp_path):
    def shifted(f):
        ctx = next(c for c in f.by_type("IfcGeometricRepresentationContext") if not c.is_a("IfcGeometricRepresentationSubContext"))
        ctx.WorldCoordinateSystem.Location = f.create_entity("IfcCartesianPoint", (10_000.0, 0.0, 0.0))  # 10 m east

    geo = read_georeference(open_ifc(edited(sample, tmp_path, shifted)))
    placement = resolve_placement(geo, city_frame(), crs="EPSG:4544")
    np.testing.assert_allclose(placement.map_coords(ORIGIN)[0], (566010.0, 3827000.0, 1150.0), atol=1e-6)
    assert not any("counted once" in n for n in placement.notes)
