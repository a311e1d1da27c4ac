"""Real IFC files made by other software (Revit, AutoCAD Architecture): counts, classes,
GlobalIds and placement as the files say."""

from __future__ import annotations

from pathlib import Path

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.util.placement
import numpy as np
import pytest

import cim
from cim.kernels.frames import LocalFrame
from cim.kernels.mapconv import dms_to_degrees, rotation_from_true_north
from cim.warnings import GeoreferenceWarning
from tests.helpers.bim import all_ecef, elements_of, geodetic_enu_to_ecef, nearest, read_tile
from tests.helpers.gltf import validate_glbs

pytestmark = pytest.mark.realdata

REVIT = "ifcos-files_revit2011_wall1.ifc"
ACAD = "ifcos-files_acad2010_objects.ifc"
IFC4 = "ifcos-files_TestModel_IFC4Add2.ifc"

#: what ifcopenshell lists in each file: products, openings (voids, not drawn), products without
#: any representation (spatial structure, aggregates) and so the elements expected with geometry
COUNTS = {
    REVIT: dict(products=5, openings=1, no_representation=3, elements=1),
    ACAD: dict(products=70, openings=13, no_representation=1, elements=56),
    IFC4: dict(products=37, openings=10, no_representation=5, elements=22),
}


@pytest.fixture(scope="module")
def ifc_dir(realdata) -> Path:
    return realdata / "ifc"


def kernel_vertices(path: Path) -> np.ndarray:
    """Every element vertex in world metres, straight from ifcopenshell (no cim code)."""
    f = ifcopenshell.open(str(path))
    s = ifcopenshell.geom.settings()
    s.set("use-world-coords", True)
    out = []
    for sh in ifcopenshell.geom.iterator(s, f, 1, exclude=["IfcOpeningElement"]):
        out.append(np.frombuffer(sh.geometry.verts_buffer, dtype=np.float64).reshape(-1, 3))
    return np.concatenate(out)


def site_reference(path: Path) -> tuple[float, float, float, np.ndarray, float]:
    """lon, lat, elevation (m) and site origin (world m) of IfcSite, and TrueNorth's rotation."""
    f = ifcopenshell.open(str(path))
    site = f.by_type("IfcSite")[0]
    unit = 0.001  # both files work in millimetres
    origin = ifcopenshell.util.placement.get_local_placement(site.ObjectPlacement)[:3, 3] * unit
    ctx = next(c for c in f.by_type("IfcGeometricRepresentationContext", include_subtypes=False) if c.ContextType.lower() == "model")
    rot = rotation_from_true_north(*ctx.TrueNorth.DirectionRatios[:2]) if ctx.TrueNorth else 0.0
    return dms_to_degrees(site.RefLongitude), dms_to_degrees(site.RefLatitude), (site.RefElevation or 0.0) * unit, origin, rot


@pytest.mark.parametrize("name", [REVIT, ACAD, IFC4])
def test_elements_classes_and_global_ids_preserved(ifc_dir, tmp_path, name):
    path = ifc_dir / name
    f = ifcopenshell.open(str(path))
    products = f.by_type("IfcProduct")
    openings = [p for p in products if p.is_a("IfcOpeningElement")]
    bare = [p for p in products if p.Representation is None]
    expected = {p.GlobalId: p.is_a() for p in products if p.Representation is not None and not p.is_a("IfcOpeningElement")}
    counts = COUNTS[name]
    assert (len(products), len(openings), len(bare), len(expected)) == (
        counts["products"],
        counts["openings"],
        counts["no_representation"],
        counts["elements"],
    )
    site = f.by_type("IfcSite")
    frame = LocalFrame(*(site_reference(path)[:3])) if site and site[0].RefLatitude else LocalFrame(105.78, 34.57, 1100.0)
    result = cim.build_layer("bim", [path], tmp_path / "bim", frame=frame)
    els = elements_of(tmp_path / "bim")
    assert {g: e["IfcClass"] for g, e in els.items()} == expected
    assert result.count == len(expected) and result.skipped == 0
    model = result.info.models[0]
    assert model["failed"] == [] and model["timed_out"] == [] and model["expected"] == len(expected)
    reports = validate_glbs(sorted((tmp_path / "bim").rglob("*.glb")))
    assert not [r for r in reports if r["errors"]], reports


@pytest.mark.parametrize("name", [REVIT, IFC4])
def test_placed_at_the_ifcsite_reference(ifc_dir, tmp_path, name):
    """IfcSite RefLatitude/RefLongitude/RefElevation and TrueNorth place the model; no CRS needed."""
    path = ifc_dir / name
    lon, lat, elev, origin, rot = site_reference(path)
    result = cim.build_layer("bim", [path], tmp_path / "bim", frame=LocalFrame(lon, lat, elev))
    assert result.info.models[0]["placement"]["method"] == "IfcSite"
    world = kernel_vertices(path) - origin
    c, s = np.cos(rot), np.sin(rot)
    enu = np.stack([c * world[:, 0] - s * world[:, 1], s * world[:, 0] + c * world[:, 1], world[:, 2]], axis=1)
    want = geodetic_enu_to_ecef(lon, lat, elev, enu)
    got = all_ecef(tmp_path / "bim")
    # every vertex the kernel makes is in the tiles, where the file says, and nothing else
    assert nearest(got, want[:: max(1, len(want) // 400)]).max() < 0.01
    assert nearest(want, got[:: max(1, len(got) // 400)]).max() < 0.01
    bounds = result.bounds
    assert bounds["west"] - 1e-3 < lon < bounds["east"] + 1e-3 and bounds["south"] - 1e-3 < lat < bounds["north"] + 1e-3


def test_ungeoreferenced_file_sits_at_the_city_origin(ifc_dir, tmp_path):
    """AutoCAD's file has no georeference at all: a city build puts it at the frame origin, warned."""
    path = ifc_dir / ACAD
    frame = LocalFrame(105.78, 34.57, 1100.0)
    with pytest.warns(GeoreferenceWarning, match="no georeference"):
        result = cim.build_layer("bim", [path], tmp_path / "bim", frame=frame)
    assert [type(w) for w in result.warnings if "no georeference" in str(w)] == [GeoreferenceWarning]
    want = frame.to_ecef(kernel_vertices(path))
    got = all_ecef(tmp_path / "bim")
    assert nearest(got, want[:: max(1, len(want) // 400)]).max() < 0.01
    # attributes come through from a real exporter
    els = elements_of(tmp_path / "bim")
    walls = [e for e in els.values() if e["IfcClass"] == "IfcWallStandardCase"]
    assert walls and all(e["Name"] for e in walls)
    # no IsExternal anywhere: the far view takes the walls on the outline, not the inner ones
    exterior = read_tile(next((tmp_path / "bim").rglob("exterior.glb")))["table"]
    outer = [c for c in exterior["IfcClass"] if c == "IfcWallStandardCase"]
    assert 0 < len(outer) < len(walls)


@pytest.mark.parametrize("name", [REVIT, ACAD, IFC4])
def test_placements_read_as_ifcopenshell_reads_them(ifc_dir, name):
    """cim's plain-float placement reader gives ifcopenshell.util.placement's matrices for every
    local placement of the real files (chains through their parents included)."""
    from cim.sources.ifc.file import axis2placement, local_placement

    f = ifcopenshell.open(str(ifc_dir / name))
    placements = f.by_type("IfcLocalPlacement")
    assert placements
    for p in placements:
        np.testing.assert_allclose(
            axis2placement(p.RelativePlacement), ifcopenshell.util.placement.get_axis2placement(p.RelativePlacement), atol=1e-12
        )
        np.testing.assert_allclose(local_placement(p), ifcopenshell.util.placement.get_local_placement(p), atol=1e-9)
