"""Proposals given as models (issue 14): an IFC placed by its georeferencing, a glTF placed at a
position; the mesh goes into the DSM (highest triangle per cell), its plan and top into the
prisms; a bad file is a clear error naming it; the CLI takes ``--proposal FILE``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import shapely
import trimesh
from click.testing import CliRunner

from cim.analysis.files import load_model
from cim.analysis.service import apply_proposal, run_analysis
from cim.errors import CimInputError
from cim.samplecity.bim import write_sample_ifc

from .scenes import GROUND, X0, Y0, boxes_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _file(path: Path) -> dict:
    return {"name": path.name, "data": base64.b64encode(path.read_bytes()).decode()}


def _lonlat(model, x: float, y: float) -> list[float]:
    lon, lat = model.to_lonlat(x, y)
    return [float(lon[0]), float(lat[0])]


def _ring(model, xmin: float, ymin: float, xmax: float, ymax: float) -> list[list[float]]:
    return [_lonlat(model, x, y) for x, y in ((xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax))]


@pytest.fixture(scope="module")
def scene():
    """Flat ground, one residential box north of where the proposals stand."""
    return boxes_model([(180, 260, 220, 280, 9.0)], size=400.0, res=1.0)


@pytest.fixture(scope="module")
def tower_ifc(tmp_path_factory) -> Path:
    """A two-storey IFC building, 20 × 16 m, centred 200 m east and 150 m north of the scene's corner."""
    path = tmp_path_factory.mktemp("ifc") / "tower.ifc"
    return write_sample_ifc(
        path, easting=X0 + 200, northing=Y0 + 150, base_height=GROUND, rotation_deg=0.0, width=20.0, depth=16.0, storeys=2, name="tower"
    )


def test_an_ifc_proposal_stands_where_its_georeferencing_says(scene, tower_ifc) -> None:
    after, replaced = apply_proposal(scene, {"file": _file(tower_ifc)})
    assert replaced == []
    plan = after.prisms.footprints[-1]
    # the plan is the model's outline: 20 × 16 m round its origin (walls' thickness inside or out)
    assert plan.centroid.distance(shapely.Point(X0 + 200, Y0 + 150)) < 0.5
    xmin, ymin, xmax, ymax = plan.bounds
    assert xmax - xmin == pytest.approx(20, abs=1.0) and ymax - ymin == pytest.approx(16, abs=1.0)
    base, top = after.prisms.base[-1], after.prisms.top[-1]
    assert base == pytest.approx(GROUND, abs=0.5)
    assert top - base == pytest.approx(4.2 + 3.3, abs=1.0)  # two storeys and the roof slab
    # in the DSM: the roof over the middle, the ground beyond the model
    r, c, _ = after.cells(np.array([X0 + 200, X0 + 240]), np.array([Y0 + 150, Y0 + 150]))
    dsm = np.asarray(after.dsm)
    assert dsm[r[0], c[0]] == pytest.approx(top, abs=0.05)
    assert dsm[r[1], c[1]] == GROUND
    assert after.owner[r[0], c[0]] == len(after.prisms) - 1


def test_a_gltf_proposal_goes_into_the_dsm_by_its_shape(scene, tmp_path) -> None:
    """An L of two blocks (30 m and 10 m high, y-up as glTF is) placed at a position: the DSM
    holds each block's own height, not the prism's top over the whole plan."""
    high = trimesh.creation.box(extents=(10.0, 30.0, 10.0))
    high.apply_translation((5.0, 15.0, -5.0))  # x 0..10 (east), y 0..30 (up), z -10..0 (north 0..10)
    low = trimesh.creation.box(extents=(10.0, 10.0, 10.0))
    low.apply_translation((15.0, 5.0, -5.0))  # x 10..20, up 0..10
    glb = tmp_path / "l-block.glb"
    glb.write_bytes(trimesh.Scene([high, low]).export(file_type="glb"))
    at = _lonlat(scene, X0 + 100, Y0 + 100)
    after, _ = apply_proposal(scene, {"file": _file(glb), "position": at})
    base, top = after.prisms.base[-1], after.prisms.top[-1]
    assert base == pytest.approx(GROUND) and top == pytest.approx(GROUND + 30)
    assert after.prisms.footprints[-1].area == pytest.approx(200, rel=0.02)
    dsm = np.asarray(after.dsm)
    r, c, _ = after.cells(np.array([X0 + 105, X0 + 115, X0 + 125]), np.array([Y0 + 105] * 3))
    # model north is grid north turned by the meridian convergence: the points stay inside
    assert dsm[r[0], c[0]] == pytest.approx(GROUND + 30, abs=0.05)
    assert dsm[r[1], c[1]] == pytest.approx(GROUND + 10, abs=0.05)
    assert dsm[r[2], c[2]] == GROUND
    # the skyline from the east sees the low block's top where the prism would show 30 m
    answer = run_analysis(
        scene,
        "skyline",
        {
            "viewpoint": _lonlat(scene, X0 + 140, Y0 + 105),
            "radius": 100,
            "azimuth_step": 1,
            "proposal": {"file": _file(glb), "position": at},
        },
    )
    s = answer["summary"]
    west = s["azimuths"].index(270.0)
    # a 30 m block 30–40 m away, behind a 10 m block 20 m away: the 30 m one still forms the skyline
    assert s["after"]["elevation"][west] == pytest.approx(np.degrees(np.arctan2(30 - 1.6, 30)), abs=2.5)
    assert s["changed_azimuths"] > 0 and s["proposal"]["height"] == pytest.approx(30, abs=0.01)
    # a line of sight over the low block (20 m up) passes; 5 m up it meets the proposal's mesh
    for height, visible in ((20.0, True), (5.0, False)):
        line = {
            "from": [*_lonlat(scene, X0 + 115, Y0 + 80), GROUND + height],
            "to": [*_lonlat(scene, X0 + 115, Y0 + 130), GROUND + height],
            "absolute": True,
            "proposal": {"file": _file(glb), "position": at},
        }
        sight = run_analysis(scene, "sightline", line)["summary"]
        assert sight["visible"] is visible, height
        if not visible:
            assert sight["obstruction"]["building"] == "proposal"
            assert sight["obstruction"]["distance"] == pytest.approx(20, abs=1.5)


def test_bad_model_files_are_named(scene, tmp_path) -> None:
    bad = tmp_path / "broken.ifc"
    bad.write_text("ISO-10303-21;\nthis is not IFC\n")
    with pytest.raises(CimInputError, match="broken.ifc"):
        apply_proposal(scene, {"file": _file(bad)})
    glb = tmp_path / "noise.glb"
    glb.write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(CimInputError, match="noise.glb"):
        apply_proposal(scene, {"file": _file(glb), "position": _lonlat(scene, X0 + 100, Y0 + 100)})
    with pytest.raises(CimInputError, match="noise.glb: a glTF model carries no georeferencing"):
        apply_proposal(scene, {"file": _file(glb)})
    with pytest.raises(CimInputError, match="plan.dwg"):
        apply_proposal(scene, {"file": {"name": "plan.dwg", "data": "AAAA"}})
    with pytest.raises(CimInputError, match="not base64"):
        apply_proposal(scene, {"file": {"name": "x.glb", "data": "%%%"}, "position": [0, 0]})


def test_the_cli_takes_an_ifc_proposal_and_answers_as_the_library(tiny_city, tiny_sources, tmp_path) -> None:
    from cim.cli.main import cli

    model = load_model(tiny_city)
    ifc = tiny_sources.ifc[0]
    # a zone over the whole city, a limit below the model's roof: the proposal breaks it
    xmin, ymin, xmax, ymax = model.bounds
    zone = _ring(model, xmin + 5, ymin + 5, xmax - 5, ymax - 5)
    request = {"zone": zone, "limit": 3}
    out = tmp_path / "over.geojson"
    result = CliRunner().invoke(
        cli, ["analyse", "heightlimit", str(tiny_city), "--request", json.dumps(request), "--proposal", str(ifc), "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    expected = run_analysis(model, "heightlimit", {**request, "proposal": {"file": _file(ifc)}})
    assert json.loads(out.read_text(encoding="utf-8"))["summary"] == expected["summary"]
    own = [r for r in expected["summary"]["after"]["exceeding"] if r["id"] == "proposal"]
    assert own and own[0]["excess"] > 3
    assert expected["summary"]["proposal"]["replaced"]  # it stands on the footprint it models
    # its plan, for the viewer to draw: the outline the prisms took, back in lon/lat
    plan = shapely.geometry.shape(expected["summary"]["proposal"]["plan"])
    x, y = model.to_xy(*np.array(plan.exterior.coords if plan.geom_type == "Polygon" else plan.geoms[0].exterior.coords).T)
    replaced = model.prisms.footprints[list(model.prisms.ids).index(expected["summary"]["proposal"]["replaced"][0])]
    assert shapely.Polygon(np.column_stack([x, y])).intersection(replaced).area > 0.5 * replaced.area

    result = CliRunner().invoke(
        cli, ["analyse", "heightlimit", str(tiny_city), "--request", json.dumps(request), "--proposal", str(tmp_path / "no.ifc")]
    )
    assert result.exit_code != 0 and "no.ifc" in result.output and "Traceback" not in result.output

    # a GeoJSON collection: its first Polygon, the height from --proposal-height
    square = _ring(model, xmin + 100, ymin + 100, xmin + 130, ymin + 130)
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": square[0]}, "properties": {}},
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*square, square[0]]]}, "properties": {}},
        ],
    }
    plan = tmp_path / "plan.geojson"
    plan.write_text(json.dumps(collection))
    out = tmp_path / "plan-over.geojson"
    args = ["analyse", "heightlimit", str(tiny_city), "--request", json.dumps(request), "--proposal", str(plan), "--proposal-height", "42"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    expected = run_analysis(model, "heightlimit", {**request, "proposal": {"polygon": square, "height": 42}})
    assert json.loads(out.read_text(encoding="utf-8"))["summary"] == expected["summary"]
    assert expected["summary"]["proposal"]["height"] == 42
    odd = tmp_path / "plan.dxf"
    odd.write_text("0\nSECTION\n")
    result = CliRunner().invoke(cli, [*args[:5], "--proposal", str(odd)])
    assert result.exit_code != 0 and "plan.dxf" in result.output and "Traceback" not in result.output


async def test_the_api_takes_a_model_as_multipart_and_answers_as_the_library(aiohttp_client, tiny_city, tiny_sources) -> None:
    """An IFC larger than the JSON body allows goes up as multipart/form-data; the answer is
    the library's; a broken model is a 400 naming the file."""
    import aiohttp

    from cim.server import create_app

    model = load_model(tiny_city)
    ifc = tiny_sources.ifc[0]
    assert ifc.stat().st_size > 64 * 1024  # more than the server takes as a JSON body
    xmin, ymin, xmax, ymax = model.bounds
    request = {"zone": _ring(model, xmin + 5, ymin + 5, xmax - 5, ymax - 5), "limit": 3, "proposal": {"id": "bim-plan"}}
    client = await aiohttp_client(create_app(tiny_city))
    form = aiohttp.FormData()
    form.add_field("request", json.dumps(request), content_type="application/json")
    form.add_field("proposal", ifc.read_bytes(), filename=ifc.name, content_type="application/octet-stream")
    resp = await client.post("/api/analysis/heightlimit", data=form)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    expected = run_analysis(model, "heightlimit", {**request, "proposal": {"id": "bim-plan", "file": _file(ifc)}})
    assert answer["summary"] == expected["summary"]
    assert "bim-plan" in [r["id"] for r in answer["summary"]["after"]["exceeding"]]

    form = aiohttp.FormData()
    form.add_field("request", json.dumps(request), content_type="application/json")
    form.add_field("proposal", b"ISO-10303-21;\nnonsense\n", filename="half-saved.ifc", content_type="application/octet-stream")
    resp = await client.post("/api/analysis/heightlimit", data=form)
    assert resp.status == 400 and "half-saved.ifc" in (await resp.json())["error"]
    doc = await (await client.get("/api/openapi.json")).json()
    op = doc["paths"]["/api/analysis/heightlimit"]["post"]
    assert "multipart/form-data" in op["description"]
    assert "file" in op["requestBody"]["content"]["application/json"]["schema"]["properties"]["proposal"]["properties"]


def test_a_bim_model_replaces_its_prism_in_the_dsm_by_its_mesh(tower_ifc) -> None:
    """A footprint whose attribute says 40 m stands for a two-storey IFC model: after the mesh
    is burnt in, the DSM holds the model's roof, and the skyline from the east sees the real
    (low) building; the prism stays for ids, plan and the exact ray tests."""
    from cim.analysis.meshes import burn_meshes, ifc_triangles

    scene = boxes_model([(190, 142, 210, 158, 40.0)], size=400.0, res=1.0)
    request = {"viewpoint": _lonlat(scene, X0 + 250, Y0 + 150), "radius": 200, "azimuth_step": 1, "eye_height": 1.6}
    west = lambda answer: answer["summary"]["elevation"][answer["summary"]["azimuths"].index(270.0)]  # noqa: E731
    before = west(run_analysis(scene, "skyline", request))

    def sight(height: float) -> dict:
        ends = {
            "from": [*_lonlat(scene, X0 + 250, Y0 + 150), GROUND + height],
            "to": [*_lonlat(scene, X0 + 150, Y0 + 150), GROUND + height],
        }
        return run_analysis(scene, "sightline", {**ends, "absolute": True})["summary"]

    assert not sight(12.0)["visible"]  # the 40 m prism
    tri = ifc_triangles(tower_ifc.read_bytes(), tower_ifc.name, scene)
    assert burn_meshes(scene, [tri])[0].tolist() == [0]
    dsm = np.asarray(scene.dsm)
    r, c, _ = scene.cells(np.array([X0 + 200, X0 + 215]), np.array([Y0 + 150, Y0 + 150]))
    roof = float(tri[:, :, 2].max())
    assert dsm[r[0], c[0]] == pytest.approx(roof, abs=0.05) and roof - GROUND < 9
    assert dsm[r[1], c[1]] == GROUND
    after = west(run_analysis(scene, "skyline", request))
    # the wall nearest the viewpoint is 40 m away (the model's east face, x = 210)
    assert before == pytest.approx(np.degrees(np.arctan2(40 - 1.6, 40)), abs=1.5)
    assert after == pytest.approx(np.degrees(np.arctan2(roof - GROUND - 1.6, 40)), abs=1.5)
    assert len(scene.prisms) == 1 and scene.prisms.top[0] == GROUND + 40
    # the line of sight sees the model's real shape: over its roof, and into its wall
    assert scene.meshed.tolist() == [0]
    assert sight(12.0)["visible"]
    low = sight(4.0)
    assert not low["visible"] and low["obstruction"]["building"] == "b0"
    assert low["obstruction"]["distance"] == pytest.approx(40, abs=1.5)


def test_cim_build_puts_the_bim_layer_in_the_surface_model_by_its_meshes(tiny_city, tiny_sources) -> None:
    from cim.analysis.meshes import ifc_triangles

    model = load_model(tiny_city)
    assert 1 <= len(model.meshed) <= len(tiny_sources.ifc)  # the footprints the models stand for, read back
    for ifc in tiny_sources.ifc:
        tri = ifc_triangles(ifc.read_bytes(), ifc.name, model)
        centre = tri.reshape(-1, 3)[:, :2].mean(axis=0)
        from cim.kernels.trimax import rasterise_triangles_max

        r, c, inside = model.cells(np.array([centre[0]]), np.array([centre[1]]))
        assert inside[0]
        x0, y0 = model.x0 + c[0] * model.res, model.y0 - r[0] * model.res
        z = rasterise_triangles_max(tri, x0, y0, model.res, (1, 1))[0, 0]
        assert np.asarray(model.dsm)[r[0], c[0]] == pytest.approx(max(z, np.asarray(model.dem)[r[0], c[0]]), abs=1e-3)
        assert model.owner[r[0], c[0]] >= 0


def test_a_bim_layers_origin_override_places_the_mesh(scene, tower_ifc) -> None:
    """As the BIM layer does: an origin (E, N, H in the CRS) moves the model's local origin there."""
    from cim.analysis.meshes import ifc_triangles

    tri = ifc_triangles(tower_ifc.read_bytes(), tower_ifc.name, scene, placing=("EPSG:4544", (X0 + 80, Y0 + 300, GROUND + 2), None))
    xy = tri.reshape(-1, 3)
    centre = (xy[:, 0].min() + xy[:, 0].max()) / 2, (xy[:, 1].min() + xy[:, 1].max()) / 2
    assert centre == pytest.approx((X0 + 80, Y0 + 300), abs=1.0)
    assert xy[:, 2].min() == pytest.approx(GROUND + 2, abs=0.5)
