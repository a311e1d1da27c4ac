"""The analyses over the built tiny city: the model ``cim build`` makes, /api/analysis/{kind},
and ``cim analyse`` writing the same numbers."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cim.access import AccessControl
from cim.analysis.files import MODEL_DIR, build_model, load_model
from cim.analysis.schemas import KINDS
from cim.analysis.service import run_analysis
from cim.audit import AuditLog
from cim.cli.main import cli
from cim.server import create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _requests(model) -> dict[str, dict]:
    """One request of each kind over the middle 300 × 300 m of the city."""
    xmin, ymin, xmax, ymax = model.bounds
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    lon, lat = model.to_lonlat([cx - 150, cx + 150, cx + 150, cx - 150], [cy - 150, cy - 150, cy + 150, cy + 150])
    ring = [[float(a), float(b)] for a, b in zip(lon, lat)]
    centre = [float(lon.mean()), float(lat.mean())]
    ground = float(np.nanmin(np.asarray(model.dem)))
    return {
        "sunlight": {"area": ring, "date": "2026-01-20", "step": 20},
        "shadow": {"area": ring, "date": "2026-01-20", "start": 10, "end": 14, "step": 60},
        "sightline": {"from": ring[0] + [1.6], "to": ring[2] + [1.6]},
        "viewshed": {"observer": centre, "radius": 150},
        "skyline": {"viewpoint": centre, "radius": 500, "azimuth_step": 2},
        "heightlimit": {"zone": ring, "limit": 15},
        "flood": {"region": ring, "level": ground + 3.0},
    }


@pytest.fixture(scope="module")
def model(tiny_city):
    return load_model(tiny_city)


def test_cim_build_makes_the_surface_model(tiny_city, model) -> None:
    assert (tiny_city / MODEL_DIR / "model.json").is_file()
    city = json.loads((tiny_city / "city.json").read_text())
    layer = next(layer for layer in city["layers"] if layer["kind"] == "buildings")
    # footprints a BIM model replaces in the tiles keep their prism in the model (standing for the model)
    assert len(model.prisms) == layer["count"] + (layer.get("replaced_by_bim") or 0)
    assert model.res == 1.0  # the tiny DEM's own cells
    # roofs stand on the terrain: every building's top is above the ground under it
    r, c = np.nonzero(np.asarray(model.owner) >= 0)
    assert (np.asarray(model.dsm)[r, c] >= np.asarray(model.dem)[r, c]).all()
    assert abs(model.true_north) < 2.0


def test_the_model_is_deterministic(tiny_sources, tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    build_model(tiny_sources.recipe, a)
    build_model(tiny_sources.recipe, b)
    names = sorted(p.name for p in (a / MODEL_DIR).iterdir())
    assert "dsm.npy" in names and "model.json" in names
    for name in names:
        assert (a / MODEL_DIR / name).read_bytes() == (b / MODEL_DIR / name).read_bytes(), name


async def test_api_answers_match_the_library_and_the_cli(aiohttp_client, tiny_city, model, tmp_path) -> None:
    client = await aiohttp_client(create_app(tiny_city))
    runner = CliRunner()
    for kind, request in _requests(model).items():
        resp = await client.post(f"/api/analysis/{kind}", json=request)
        assert resp.status == 200, (kind, await resp.text())
        answer = await resp.json()
        assert answer["kind"] == kind and answer["geojson"]["type"] == "FeatureCollection"
        assert answer["summary"] == json.loads(json.dumps(run_analysis(model, kind, request)["summary"])), kind
        out = tmp_path / f"{kind}.geojson"
        result = runner.invoke(cli, ["analyse", kind, str(tiny_city), "--request", json.dumps(request), "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
        written = json.loads(out.read_text())
        assert written["summary"] == answer["summary"], kind
        assert written["features"] == answer["geojson"]["features"], kind


async def test_the_answers_make_sense_on_the_tiny_city(aiohttp_client, tiny_city, model) -> None:
    client = await aiohttp_client(create_app(tiny_city))
    req = _requests(model)
    sun = await (await client.post("/api/analysis/sunlight", json=req["sunlight"])).json()
    s = sun["summary"]
    assert s["count"] > 0 and s["points"] > 0 and 0 <= s["below_count"] <= s["count"]
    assert all(0 <= b["max_hours"] <= 8 for b in s["buildings"])
    assert {b["id"] for b in s["buildings"] if b["below"]} == set(s["below"])
    flood = await (await client.post("/api/analysis/flood", json=req["flood"])).json()
    assert flood["summary"]["area_m2"] > 0 and flood["summary"]["max_depth"] <= 3.0 + 1e-6
    hl = await (await client.post("/api/analysis/heightlimit", json=req["heightlimit"])).json()
    assert all(b["excess"] > 0 for b in hl["summary"]["exceeding"])
    sky = await (await client.post("/api/analysis/skyline", json=req["skyline"])).json()
    assert len(sky["summary"]["elevation"]) == 180


async def test_bad_and_oversized_requests_are_400_naming_the_field(aiohttp_client, tiny_city, model) -> None:
    client = await aiohttp_client(create_app(tiny_city))
    xmin, ymin, xmax, ymax = model.bounds
    lon, lat = model.to_lonlat([xmin, xmin + 2500, xmin + 2500, xmin], [ymin, ymin, ymin + 2500, ymin + 2500])
    huge = [[float(a), float(b)] for a, b in zip(lon, lat)]  # 6.25 km²
    resp = await client.post("/api/analysis/heightlimit", json={"zone": huge, "limit": 20})
    assert resp.status == 400
    assert "zone" in (await resp.json())["error"] and "km²" in (await resp.json())["error"]
    resp = await client.post("/api/analysis/viewshed", json={"observer": [105.0, 34.0], "radius": 5000})
    assert resp.status == 400 and "radius" in (await resp.json())["error"]
    resp = await client.post("/api/analysis/flood", json={"region": huge[:3]})
    assert resp.status == 400 and "level" in (await resp.json())["error"]
    resp = await client.post("/api/analysis/sightline", json={"from": [1.0, 2.0], "to": [3.0, 4.0], "colour": "red"})
    assert resp.status == 400 and "colour" in (await resp.json())["error"]
    resp = await client.post("/api/analysis/viewshed", json={"observer": [100.0, 10.0]})
    assert resp.status == 400 and "observer" in (await resp.json())["error"]


async def test_openapi_lists_the_analyses(aiohttp_client, tiny_city) -> None:
    client = await aiohttp_client(create_app(tiny_city))
    doc = await (await client.get("/api/openapi.json")).json()
    for kind in KINDS:
        op = doc["paths"][f"/api/analysis/{kind}"]["post"]
        assert op["tags"] == ["analysis"]
        assert "proposal" in op["requestBody"]["content"]["application/json"]["schema"]["properties"]


async def test_analyses_are_audited_and_follow_layer_access(aiohttp_client, tiny_city, model, tmp_path) -> None:
    city = tmp_path / "city"
    shutil.copytree(tiny_city, city, copy_function=os.link, ignore=shutil.ignore_patterns(".cim"))
    acl = AccessControl.open(city, create=True)
    acl.add_user("wang", role="planner")
    acl.add_user("li", role="clerk")
    acl.restrict("buildings", ["planner"])
    tokens = {name: acl.new_token(name) for name in ("wang", "li")}
    client = await aiohttp_client(create_app(city))
    req = _requests(model)["heightlimit"]
    resp = await client.post("/api/analysis/heightlimit", json=req, headers={"Authorization": f"Bearer {tokens['li']}"})
    assert resp.status == 403 and "buildings" in (await resp.json())["error"]
    resp = await client.post("/api/analysis/heightlimit", json=req, headers={"Authorization": f"Bearer {tokens['wang']}"})
    assert resp.status == 200
    from cim.server.state import AUDIT

    assert client.server.app[AUDIT].flush(10.0)
    records = [r for _, r, _ in AuditLog(city).records() if r is not None and r["action"] == "analysis.heightlimit"]
    assert [(r["user"], r["status"]) for r in records] == [("li", 403), ("wang", 200)]


def test_a_proposal_reports_before_and_after(model) -> None:
    """A 60 m block on the south side of the analysed area: neighbours north of it lose sun,
    the skyline from the south rises, and the block breaks a 24 m limit."""
    req = _requests(model)
    ring = req["sunlight"]["area"]
    (w, s), (e, _), (_, n) = ring[0], ring[1], ring[2]
    block = [
        [w + (e - w) * 0.4, s + (n - s) * 0.05],
        [w + (e - w) * 0.6, s + (n - s) * 0.05],
        [w + (e - w) * 0.6, s + (n - s) * 0.2],
        [w + (e - w) * 0.4, s + (n - s) * 0.2],
    ]
    proposal = {"polygon": block, "height": 60.0, "id": "tower-A"}
    sun = run_analysis(model, "sunlight", {**req["sunlight"], "proposal": proposal})["summary"]
    assert sun["after"]["count"] == sun["count"] - sum(1 for b in sun["buildings"] if b["id"] in sun["proposal"]["replaced"])
    lost = [c["lost"] for c in sun["changes"] if c["lost"] is not None]
    assert min(lost) >= -1e-9 and max(lost) > 0  # nobody gains sun; someone loses some
    hl = run_analysis(model, "heightlimit", {**req["heightlimit"], "limit": 24, "proposal": proposal})["summary"]
    assert "tower-A" in [b["id"] for b in hl["after"]["exceeding"]]
    assert "tower-A" not in [b["id"] for b in hl["exceeding"]]
    sky_req = {"viewpoint": [(w + e) / 2, s - (n - s) * 0.1], "radius": 500, "azimuth_step": 1}
    sky = run_analysis(model, "skyline", {**sky_req, "proposal": proposal})["summary"]
    assert sky["changed_azimuths"] > 0 and sky["max_rise"] > 0
    assert "tower-A" in [b["id"] for b in sky["after"]["buildings"]]


def test_cli_csv_and_model_commands(tiny_city, tiny_sources, model, tmp_path) -> None:
    runner = CliRunner()
    req = _requests(model)["heightlimit"]
    out = tmp_path / "over.csv"
    result = runner.invoke(
        cli, ["analyse", "heightlimit", str(tiny_city), "--set", f"zone={json.dumps(req['zone'])}", "--set", "limit=15", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    raw = out.read_bytes()
    assert raw.startswith("\ufeff".encode())
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0].split(",")[:3] == ["part", "limit", "mode"]
    assert len(lines) == 1 + 1 + summary["exceeding_count"]  # header, the zone, the buildings
    bad = runner.invoke(cli, ["analyse", "flood", str(tiny_city), "--set", "level=1100"])
    assert bad.exit_code == 1 and "region" in bad.output and "Traceback" not in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = runner.invoke(cli, ["analyse", "flood", str(empty), "--set", "level=1"])
    assert missing.exit_code != 0 and "surface model" in missing.output
    made = runner.invoke(cli, ["analyse", "model", str(tiny_sources.recipe), str(empty)])
    assert made.exit_code == 0 and (empty / MODEL_DIR / "model.json").is_file()
    assert (Path(empty) / MODEL_DIR / "dsm.npy").read_bytes() == (tiny_city / MODEL_DIR / "dsm.npy").read_bytes()


async def test_a_city_built_without_the_model_answers_404(aiohttp_client, tiny_city, model, tmp_path) -> None:
    city = tmp_path / "old"
    shutil.copytree(tiny_city, city, copy_function=os.link, ignore=shutil.ignore_patterns(".cim", MODEL_DIR))
    client = await aiohttp_client(create_app(city))
    resp = await client.post("/api/analysis/heightlimit", json=_requests(model)["heightlimit"])
    assert resp.status == 404 and "cim analyse model" in (await resp.json())["error"]


def test_a_proposal_may_be_geojson(model) -> None:
    req = _requests(model)["heightlimit"]
    ring = req["zone"]
    (w, s), (e, _), (_, n) = ring[0], ring[1], ring[2]
    square = [[w + (e - w) * 0.4, s + (n - s) * 0.4], [w + (e - w) * 0.6, s + (n - s) * 0.4], [w + (e - w) * 0.6, s + (n - s) * 0.6]]
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*square, square[0]]]}, "properties": {"height": 80}}
    plain = run_analysis(model, "heightlimit", {**req, "proposal": {"polygon": square, "height": 80}})["summary"]
    from_geojson = run_analysis(model, "heightlimit", {**req, "proposal": {"geojson": feature}})["summary"]
    assert from_geojson == plain
    assert "proposal" in [b["id"] for b in plain["after"]["exceeding"]]
    from cim.errors import CimInputError

    with pytest.raises(CimInputError, match="proposal.height"):
        run_analysis(model, "heightlimit", {**req, "proposal": {"polygon": square}})
    with pytest.raises(CimInputError, match="proposal.geojson"):
        run_analysis(model, "heightlimit", {**req, "proposal": {"geojson": {"type": "Point", "coordinates": [0, 0]}}})
