"""Georeferencing of IFC models: every convention the reader knows, and the overrides."""

from __future__ import annotations

import math
from pathlib import Path

import ifcopenshell
import ifcopenshell.guid
import numpy as np
import pytest

import cim
from cim.errors import CimCRSError, CimInputError
from cim.layers.bim import frame_for_model, resolve_placement
from cim.samplecity.bim import write_sample_ifc
from cim.sources.ifc import open_ifc, read_georeference
from cim.warnings import GeoreferenceWarning
from tests.helpers.bim import all_ecef, city_frame, geodetic_enu_to_ecef, map_to_ecef, nearest

SPEC = dict(
    easting=566000.0, northing=3827000.0, base_height=1150.0, rotation_deg=30.0, width=12.0, depth=8.0, storeys=1, name="Geo", seed=5
)
CORNER = np.array([[-6.0, -4.0, 0.0], [6.0, 4.0, 0.0]])  # two outer corners of the sample, model metres


def expected_map(local: np.ndarray, e0: float, n0: float, h0: float, rot_deg: float, scale: float = 1.0) -> np.ndarray:
    th = math.radians(rot_deg)
    e = e0 + scale * (local[:, 0] * math.cos(th) - local[:, 1] * math.sin(th))
    n = n0 + scale * (local[:, 0] * math.sin(th) + local[:, 1] * math.cos(th))
    return np.stack([e, n, h0 + local[:, 2]], axis=1)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return write_sample_ifc(tmp_path_factory.mktemp("geo") / "geo.ifc", **SPEC)


def edited(sample: Path, tmp_path: Path, edit) -> Path:
    f = ifcopenshell.open(str(sample))
    edit(f)
    out = tmp_path / f"edited-{len(list(tmp_path.iterdir()))}.ifc"
    f.write(str(out))
    return out


def test_map_conversion_with_map_unit_and_scale(sample):
    geo = read_georeference(open_ifc(sample))
    assert geo.kind == "IfcMapConversion" and geo.crs_name == "EPSG:4544"
    assert geo.project_unit == pytest.approx(0.001) and geo.map_unit == 1.0
    assert geo.scale == pytest.approx((0.001, 0.001, 0.001))
    placement = resolve_placement(geo, city_frame(), crs="EPSG:4544")
    np.testing.assert_allclose(placement.map_coords(CORNER), expected_map(CORNER, 566000, 3827000, 1150, 30), atol=1e-6)
    frame = city_frame()
    got = frame.to_ecef(placement.enu(CORNER))
    want = map_to_ecef(*expected_map(CORNER, 566000, 3827000, 1150, 30).T)
    assert np.abs(got - want).max() < 0.005


def test_eastings_in_millimetres_without_scale_or_map_unit(sample, tmp_path):
    """One real file's convention: false origin in project units (mm), no Scale, no MapUnit."""

    def edit(f):
        op = f.by_type("IfcMapConversion")[0]
        op.Eastings, op.Northings, op.OrthogonalHeight = op.Eastings * 1000, op.Northings * 1000, op.OrthogonalHeight * 1000
        op.Scale = None
        op.TargetCRS.MapUnit = None

    geo = read_georeference(open_ifc(edited(sample, tmp_path, edit)))
    assert geo.map_unit == pytest.approx(0.001) and geo.scale == pytest.approx((1.0, 1.0, 1.0))
    placement = resolve_placement(geo, city_frame(), crs="EPSG:4544")
    np.testing.assert_allclose(placement.map_coords(CORNER), expected_map(CORNER, 566000, 3827000, 1150, 30), atol=1e-6)


def test_scale_one_contradicting_units_is_read_as_the_unit_ratio(sample, tmp_path):
    def edit(f):
        f.by_type("IfcMapConversion")[0].Scale = 1.0

    geo = read_georeference(open_ifc(edited(sample, tmp_path, edit)))
    assert geo.scale == pytest.approx((0.001, 0.001, 0.001)) and geo.notes


def test_ifc4x3_map_conversion_scaled(tmp_path):
    path = write_sample_ifc(tmp_path / "x3.ifc", **SPEC, schema="IFC4X3")
    f = ifcopenshell.open(str(path))
    op = f.by_type("IfcMapConversion")[0]
    scaled = f.create_entity(
        "IfcMapConversionScaled",
        SourceCRS=op.SourceCRS,
        TargetCRS=op.TargetCRS,
        Eastings=op.Eastings,
        Northings=op.Northings,
        OrthogonalHeight=op.OrthogonalHeight,
        XAxisAbscissa=op.XAxisAbscissa,
        XAxisOrdinate=op.XAxisOrdinate,
        Scale=op.Scale,
        FactorX=0.9996,
        FactorY=0.9996,
        FactorZ=1.0,
    )
    f.remove(op)
    f.write(str(path))
    geo = read_georeference(open_ifc(path))
    assert geo.kind == "IfcMapConversion" and geo.scale == pytest.approx((0.001 * 0.9996, 0.001 * 0.9996, 0.001))
    assert scaled.is_a("IfcMapConversionScaled")
    out = tmp_path / "out"
    result = cim.build_layer("bim", [path], out, frame=city_frame(), crs="EPSG:4544")
    assert result.count > 10
    want = map_to_ecef(*expected_map(CORNER, 566000, 3827000, 1150, 30, scale=0.9996).T)
    assert nearest(all_ecef(out), want).max() < 0.01


def write_ifc2x3_wall(path: Path, *, epset: dict | None, site: tuple | None = None, true_north: tuple | None = None) -> Path:
    """A minimal IFC2x3 model in millimetres: one 5 m × 0.2 m × 3 m wall from the origin along +X."""
    f = ifcopenshell.file(schema="IFC2X3")
    g = ifcopenshell.guid.new
    person = f.createIfcPerson(None, "Test", "Cim")
    org = f.createIfcOrganization(None, "cim")
    app = f.createIfcApplication(org, "1", "cim tests", "cim")
    owner = f.createIfcOwnerHistory(f.createIfcPersonAndOrganization(person, org), app, None, "ADDED", None, None, None, 0)
    mm = f.createIfcSIUnit(None, "LENGTHUNIT", "MILLI", "METRE")
    units = f.createIfcUnitAssignment([mm])
    origin = f.createIfcAxis2Placement3D(f.createIfcCartesianPoint((0.0, 0.0, 0.0)), None, None)
    north = f.createIfcDirection(true_north) if true_north else None
    ctx = f.createIfcGeometricRepresentationContext(None, "Model", 3, 1e-5, origin, north)
    project = f.createIfcProject(g(), owner, "p2x3", None, None, None, None, [ctx], units)
    placement = f.createIfcLocalPlacement(None, origin)
    lat = lon = None
    if site:
        lat, lon = site
    ifc_site = f.createIfcSite(g(), owner, "site", None, None, placement, None, None, "ELEMENT", lat, lon, 0.0, None, None)
    storey = f.createIfcBuildingStorey(
        g(), owner, "L0", None, None, f.createIfcLocalPlacement(placement, origin), None, None, "ELEMENT", 0.0
    )
    f.createIfcRelAggregates(g(), owner, None, None, project, [ifc_site])
    f.createIfcRelAggregates(g(), owner, None, None, ifc_site, [storey])
    profile = f.createIfcRectangleProfileDef(
        "AREA", None, f.createIfcAxis2Placement2D(f.createIfcCartesianPoint((2500.0, 100.0)), None), 5000.0, 200.0
    )
    solid = f.createIfcExtrudedAreaSolid(profile, origin, f.createIfcDirection((0.0, 0.0, 1.0)), 3000.0)
    body = f.createIfcShapeRepresentation(ctx, "Body", "SweptSolid", [solid])
    wall = f.createIfcWallStandardCase(
        g(),
        owner,
        "wall",
        None,
        None,
        f.createIfcLocalPlacement(storey.ObjectPlacement, origin),
        f.createIfcProductDefinitionShape(None, None, [body]),
        None,
    )
    f.createIfcRelContainedInSpatialStructure(g(), owner, None, None, [wall], storey)
    if epset:
        props = []
        for k, v in epset.items():
            if k in ("Eastings", "Northings", "OrthogonalHeight"):
                val = f.createIfcLengthMeasure(v)
            elif k == "Name" or k == "MapUnit":
                val = f.createIfcLabel(v)
            else:
                val = f.createIfcReal(v)
            props.append((k, f.createIfcPropertySingleValue(k, None, val, None)))
        conv = f.createIfcPropertySet(g(), owner, "ePSet_MapConversion", None, [p for k, p in props if k not in ("Name", "MapUnit")])
        crs = f.createIfcPropertySet(g(), owner, "ePSet_ProjectedCRS", None, [p for k, p in props if k in ("Name", "MapUnit")])
        f.createIfcRelDefinesByProperties(g(), owner, None, None, [project], conv)
        f.createIfcRelDefinesByProperties(g(), owner, None, None, [project], crs)
    f.write(str(path))
    return path


WALL_CORNERS = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [5.0, 0.2, 3.0], [0.0, 0.2, 3.0]])


def test_ifc2x3_epset_map_conversion(tmp_path):
    th = math.radians(-15.0)
    path = write_ifc2x3_wall(
        tmp_path / "w.ifc",
        epset={
            "Eastings": 566010.0,
            "Northings": 3827020.0,
            "OrthogonalHeight": 1149.0,
            "XAxisAbscissa": math.cos(th),
            "XAxisOrdinate": math.sin(th),
            "Scale": 0.001,
            "Name": "EPSG:4544",
            "MapUnit": "METRE",
        },
    )
    geo = read_georeference(open_ifc(path))
    assert geo.kind == "ePSet_MapConversion" and geo.crs_name == "EPSG:4544" and geo.map_unit == 1.0
    out = tmp_path / "out"
    result = cim.build_layer("bim", [path], out, frame=city_frame(), crs="EPSG:4544")
    assert result.count == 1 and result.info.models[0]["placement"]["method"] == "ePSet_MapConversion"
    want = map_to_ecef(*expected_map(WALL_CORNERS, 566010, 3827020, 1149, -15).T)
    assert nearest(all_ecef(out), want).max() < 0.01


def test_ifcsite_reference_point_and_true_north(tmp_path):
    # true north along local (sin 20°, cos 20°): the model is turned 20° counter-clockwise
    tn = (math.sin(math.radians(20)), math.cos(math.radians(20)))
    path = write_ifc2x3_wall(tmp_path / "site.ifc", epset=None, site=((34, 34, 12, 0), (105, 46, 48, 500000)), true_north=tn)
    geo = read_georeference(open_ifc(path))
    assert geo.kind == "IfcSite"
    lat = 34 + 34 / 60 + 12 / 3600
    lon = 105 + 46 / 60 + 48.5 / 3600
    assert geo.latitude == pytest.approx(lat) and geo.longitude == pytest.approx(lon)
    out = tmp_path / "out"
    cim.build_layer("bim", [path], out, frame=city_frame(), crs="EPSG:4544")
    th = math.radians(20)
    enu = np.stack(
        [
            WALL_CORNERS[:, 0] * math.cos(th) - WALL_CORNERS[:, 1] * math.sin(th),
            WALL_CORNERS[:, 0] * math.sin(th) + WALL_CORNERS[:, 1] * math.cos(th),
            WALL_CORNERS[:, 2],
        ],
        axis=1,
    )
    want = geodetic_enu_to_ecef(lon, lat, 0.0, enu)
    assert nearest(all_ecef(out), want).max() < 0.01


def test_no_georeference(tmp_path):
    path = write_ifc2x3_wall(tmp_path / "none.ifc", epset=None)
    geo = read_georeference(open_ifc(path))
    assert geo.kind == "none"
    # standalone conversion (the model itself would fix the city frame): an origin is required
    with pytest.raises(CimInputError, match="--origin"):
        resolve_placement(geo, city_frame(), require_georef=True)
    with pytest.raises(CimInputError, match="--origin"):
        cim.build_layer("bim", [path], tmp_path / "fail")
    with pytest.raises(CimInputError, match="--origin"):
        cim.convert_bim(path, tmp_path / "fail2")
    with pytest.raises(CimInputError, match="--origin"):
        frame_for_model(path)
    assert not (tmp_path / "fail" / "tileset.json").exists() and not (tmp_path / "fail2" / "city.json").exists()
    # a city build (the frame is given): at the frame origin, with a warning
    frame = city_frame()
    with pytest.warns(GeoreferenceWarning, match="no georeference"):
        result = cim.build_layer("bim", [path], tmp_path / "out", frame=frame)
    assert [type(w) for w in result.warnings if "no georeference" in str(w)] == [GeoreferenceWarning]
    assert nearest(all_ecef(tmp_path / "out"), frame.to_ecef(WALL_CORNERS)).max() < 0.005


def test_overrides(tmp_path, sample):
    path = write_ifc2x3_wall(tmp_path / "none.ifc", epset=None)
    geo = read_georeference(open_ifc(path))
    frame = city_frame()
    # (E, N, H) in the city CRS, rotated 90°
    p = resolve_placement(geo, frame, crs="EPSG:4544", origin=(566030.0, 3827010.0, 1151.0), rotation=90.0, require_georef=True)
    want = map_to_ecef(*expected_map(WALL_CORNERS, 566030, 3827010, 1151, 90).T)
    assert np.abs(frame.to_ecef(p.enu(WALL_CORNERS)) - want).max() < 0.005
    # lon, lat, h without a CRS
    p = resolve_placement(geo, frame, origin=(105.78, 34.57, 1150.0), require_georef=True)
    want = geodetic_enu_to_ecef(105.78, 34.57, 1150.0, WALL_CORNERS)
    assert np.abs(frame.to_ecef(p.enu(WALL_CORNERS)) - want).max() < 0.005
    # a rotation override on a file with a map conversion keeps its false origin
    geo = read_georeference(open_ifc(sample))
    p = resolve_placement(geo, frame, crs="EPSG:4544", rotation=0.0)
    np.testing.assert_allclose(p.map_coords(CORNER), expected_map(CORNER, 566000, 3827000, 1150, 0), atol=1e-6)
    # the frame for a standalone conversion sits at the model's origin
    f = frame_for_model(sample)
    want = map_to_ecef(np.array([566000.0]), np.array([3827000.0]), np.array([1150.0]))[0]
    assert np.abs(f.to_ecef(np.zeros((1, 3)))[0] - want).max() < 0.005


def test_map_conversion_needs_a_crs(sample, tmp_path):
    def edit(f):
        f.by_type("IfcProjectedCRS")[0].Name = "no such CRS"

    geo = read_georeference(open_ifc(edited(sample, tmp_path, edit)))
    with pytest.raises(CimCRSError, match="--crs"):
        resolve_placement(geo, city_frame())
    p = resolve_placement(geo, city_frame(), crs="EPSG:4544")
    assert any("unknown to pyproj" in n for n in p.notes)


@pytest.mark.parametrize("method", ["IfcSite", "origin override (lon, lat, h)", "frame origin"])
def test_affine_placement_is_the_ecef_round_trip(method):
    """Placements without a CRS are composed into one affine map: it gives what going through the
    model's own ENU frame and ECEF gives (to a micrometre, 2 km from the city origin)."""
    from cim.kernels.frames import LocalFrame
    from cim.kernels.mapconv import enu_rotation_about_up
    from cim.layers.bim.placement import ModelPlacement
    from cim.sources.ifc import IfcGeoreference

    wcs = np.eye(4)
    wcs[:3, :3] = enu_rotation_about_up(0.3)
    wcs[:3, 3] = (5.0, -3.0, 1.5)
    geo = IfcGeoreference(kind="IfcSite", latitude=34.59, longitude=105.74, elevation=1130.0, site_origin=(2.0, 4.0, 0.5), wcs=wcs)
    frame = city_frame()
    origin = (105.71, 34.60, 1120.0) if method.startswith("origin") else None
    placement = ModelPlacement(method, frame, geo, None, origin, math.radians(17.0))
    xyz = np.random.default_rng(0).uniform(-80, 80, (200, 3))
    local = xyz @ wcs[:3, :3].T + wcs[:3, 3]
    if method == "IfcSite":
        local = local - np.array(geo.site_origin)
    local = local @ enu_rotation_about_up(math.radians(17.0)).T
    if method == "frame origin":
        want = local
    else:
        lon, lat, h = origin or (geo.longitude, geo.latitude, geo.elevation)
        want = frame.from_ecef(LocalFrame(lon, lat, h).to_ecef(local))
    np.testing.assert_allclose(placement.enu(xyz), want, atol=1e-6, rtol=0)
