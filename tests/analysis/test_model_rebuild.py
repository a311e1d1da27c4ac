"""`cim build` keeps the surface model when the layers it is made from are unchanged, and
rebuilds it when they change (its key: the digests of the buildings and terrain layers' files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest

import cim
import cim.analysis.files as model_files
from cim.analysis.files import MODEL_DIR, load_model

RECIPE = """
[city]
name = "model-rebuild"
crs = "EPSG:4544"

[[layers]]
id = "buildings"
kind = "buildings"
source = "data/buildings.gpkg"
height = "height"
"""


def raise_half(path: Path) -> None:
    meta, _, geometry, fields = pyogrio.raw.read(path)
    names = list(meta["fields"])
    height = fields[names.index("height")].astype(float)
    height[: len(height) // 2] += 3.0
    fields[names.index("height")] = height
    path.unlink()
    pyogrio.raw.write(path, geometry, fields, fields=names, crs=meta["crs"], geometry_type="Unknown", layer="buildings")


@pytest.fixture
def sources(tiny_sources, tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    shutil.copy(Path(tiny_sources.recipe).parent / "data" / "buildings.gpkg", tmp_path / "data" / "buildings.gpkg")
    (tmp_path / "city.toml").write_text(RECIPE)
    return tmp_path


def test_an_unchanged_rebuild_keeps_the_model_and_an_edit_rebuilds_it(sources: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "city"
    calls: list[int] = []
    real = model_files.build_model

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(model_files, "build_model", counting)
    cim.build(sources / "city.toml", out)
    assert len(calls) == 1 and (out / MODEL_DIR / "model.json").is_file()
    top = np.array(load_model(out).prisms.top)

    cim.build(sources / "city.toml", out)  # nothing changed: the model is kept
    assert len(calls) == 1

    (out / MODEL_DIR / "model.json").unlink()  # a model gone is made again, whatever the key says
    cim.build(sources / "city.toml", out)
    assert len(calls) == 2

    raise_half(sources / "data" / "buildings.gpkg")  # half the buildings 3 m higher
    cim.build(sources / "city.toml", out)
    assert len(calls) == 3
    raised = np.array(load_model(out).prisms.top) - top
    assert raised.max() == pytest.approx(3.0) and np.all((np.isclose(raised, 0.0)) | np.isclose(raised, 3.0))
