"""A height or floors attribute named by the user must exist: one clear error listing the file's
attributes (issue 13), not a warning that every building took the default height."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cim
from cim.cli.main import cli
from cim.errors import CimInputError


@pytest.fixture
def footprints(tmp_path):
    features = [
        {
            "type": "Feature",
            "properties": {"id": f"B{i}", "storeys": 3 + i, "hoehe_m": 9.5 + i},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[x, 3827000], [x + 20, 3827000], [x + 20, 3827015], [x, 3827015], [x, 3827000]]],
            },
        }
        for i, x in enumerate((566000, 566040))
    ]
    path = tmp_path / "two.geojson"
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4544"}}  # metres, as the file says
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": features}))
    return path


def test_a_named_height_attribute_the_file_lacks_is_an_error_listing_its_attributes(footprints, tmp_path):
    for option, flag in (({"height": "hoehe"}, "--height-attr"), ({"floors": "etagen"}, "--floors-attr")):
        with pytest.raises(CimInputError) as err:
            cim.convert("buildings", footprints, tmp_path / "out", crs="EPSG:4544", **option)
        message = str(err.value)
        assert next(iter(option.values())) in message and flag in message
        assert "id, storeys, hoehe_m" in message
    # the defaults may be absent; a named attribute that exists is used
    report = cim.convert("buildings", footprints, tmp_path / "ok", crs="EPSG:4544", height="hoehe_m")
    assert report.layers[0].count == 2
    city = json.loads((tmp_path / "ok" / "city.json").read_text())
    assert city["layers"][0]["bounds"]["max_height"] - city["layers"][0]["bounds"]["min_height"] == pytest.approx(10.5)


def test_the_cli_says_it_once_without_a_traceback(footprints, tmp_path):
    done = CliRunner().invoke(
        cli, ["convert", "buildings", str(footprints), str(tmp_path / "out"), "--crs", "EPSG:4544", "--height-attr", "hoehe"]
    )
    assert done.exit_code != 0 and "Traceback" not in done.output
    assert done.output.count("'hoehe'") == 1 and "hoehe_m" in done.output
