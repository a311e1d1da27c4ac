"""``cim convert bim`` writes the city.json a recipe build writes for its BIM layer: the viewer's
IFC-class filters, storeys (per model) and element properties come from there."""

from __future__ import annotations

import json
from pathlib import Path

import cim

VIEWER_KEYS = ("classes", "storey_names", "viewer_properties", "id_property", "models", "footprints")


def _bim(city_json: Path) -> dict:
    return next(layer for layer in json.loads(city_json.read_text())["layers"] if layer["kind"] == "bim")


def test_convert_bim_city_json_carries_what_a_build_writes(tiny_sources, tiny_city, tmp_path: Path) -> None:
    built = _bim(tiny_city / "city.json")
    cim.convert("bim", [p.parent for p in tiny_sources.ifc][:1], tmp_path / "bim")
    converted = _bim(tmp_path / "bim" / "city.json")
    for key in VIEWER_KEYS:
        assert key in converted, f"convert lost {key!r}"
    # the same models from the same files: the same classes, storeys and viewer properties
    assert converted["classes"] == built["classes"] and converted["classes"]
    assert converted["storey_names"] == built["storey_names"] and converted["storey_names"]
    assert converted["viewer_properties"] == built["viewer_properties"]
    assert [m["model"] for m in converted["models"]] == [m["model"] for m in built["models"]]
    # each model lists its own storeys (the viewer shows them per model, not merged)
    for model in converted["models"]:
        assert model["storeys"] and all(s["name"] in converted["storey_names"] for s in model["storeys"])
