"""A city made by ``cim convert`` (no recipe, no model at build time) gets its surface model
built on first use of /api/analysis, from the sources it recorded, and cached beside its tiles."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import cim
from cim.analysis.files import MODEL_DIR, SOURCE_FILE, load_model
from cim.analysis.service import run_analysis
from cim.errors import CimIOError, CimNotFound
from cim.server import create_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def converted(tiny_sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "fp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cim.convert("buildings", tiny_sources.buildings, out, height="height", floors="floors", storey_height=3.0, dem=tiny_sources.dem)
    return out


def _heightlimit(model) -> dict:
    xmin, ymin, xmax, ymax = model.bounds
    lon, lat = model.to_lonlat([xmin + 10, xmax - 10, xmax - 10, xmin + 10], [ymin + 10, ymin + 10, ymax - 10, ymax - 10])
    return {"zone": [[float(a), float(b)] for a, b in zip(lon, lat)], "limit": 15}


async def test_the_first_analysis_builds_the_model_and_later_ones_reuse_it(aiohttp_client, converted, tiny_city) -> None:
    assert (converted / MODEL_DIR / SOURCE_FILE).is_file()
    assert not (converted / MODEL_DIR / "model.json").exists()
    built = load_model(tiny_city)  # the same footprints, heights and DEM, built with the city
    request = _heightlimit(built)
    client = await aiohttp_client(create_app(converted))
    resp = await client.post("/api/analysis/heightlimit", json=request)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    meta = converted / MODEL_DIR / "model.json"
    assert meta.is_file()
    stamp = meta.stat().st_mtime_ns
    # the numbers of the model cim build makes from the recipe
    assert answer["summary"] == run_analysis(built, "heightlimit", request)["summary"]
    assert answer["summary"]["exceeding_count"] > 0
    model = load_model(converted)
    assert np.array_equal(np.asarray(model.dem), np.asarray(built.dem))
    assert len(model.prisms) == len(built.prisms)
    again = await client.post("/api/analysis/heightlimit", json=request)
    assert again.status == 200 and (await again.json())["summary"] == answer["summary"]
    assert meta.stat().st_mtime_ns == stamp  # built once, then read
    recorded = json.loads((converted / MODEL_DIR / SOURCE_FILE).read_text())
    assert recorded["layers"][0]["kind"] == "buildings" and recorded["layers"][0]["height"] == "height"


def test_a_converted_city_whose_sources_moved_names_them(converted, tmp_path) -> None:
    import shutil

    city = tmp_path / "moved"
    shutil.copytree(converted, city, ignore=shutil.ignore_patterns("*.npy", "model.json", "buildings.json"))
    doc = json.loads((city / MODEL_DIR / SOURCE_FILE).read_text())
    doc["layers"][0]["source"] = str(tmp_path / "gone.gpkg")
    (city / MODEL_DIR / SOURCE_FILE).write_text(json.dumps(doc))
    with pytest.raises((CimIOError, CimNotFound), match="gone.gpkg"):
        load_model(city)
    (city / MODEL_DIR / SOURCE_FILE).unlink()
    with pytest.raises(CimNotFound, match="no surface model"):
        load_model(city)
