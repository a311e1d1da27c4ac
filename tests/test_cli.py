import json

import numpy as np
import pyogrio
import pytest
import shapely
from click.testing import CliRunner
from shapely.geometry import Polygon

from cim.cli.main import cli


def test_sample_build_convert_end_to_end(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["sample", "--preset", "tiny", str(tmp_path / "src")])
    assert r.exit_code == 0, r.output
    assert "sample tiny: 128 buildings" in r.output
    r = runner.invoke(cli, ["build", str(tmp_path / "src" / "city.toml"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "buildings: 126 features" in r.output  # 2 of the 128 are replaced by BIM models
    manifest = json.loads((tmp_path / "out" / "city.json").read_text())
    assert manifest["name"] == "tianshui" and manifest["crs"] == "EPSG:4544"
    layer = next(l for l in manifest["layers"] if l["kind"] == "buildings")
    assert [l["kind"] for l in manifest["layers"]] == ["terrain", "buildings", "bim", "pointcloud", "imagery", "mesh"]
    assert layer["kind"] == "buildings" and layer["cim_level"] == 2 and layer["count"] == 126
    assert (tmp_path / "out" / layer["url"]).exists()

    r = runner.invoke(
        cli,
        [
            "convert",
            "buildings",
            str(tmp_path / "src" / "data" / "buildings.gpkg"),
            str(tmp_path / "conv"),
            "--dem",
            str(tmp_path / "src" / "data" / "dem.tif"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "conv" / "city.json").read_text())["layers"][0]["url"] == "tileset.json"


def test_user_mistakes_are_one_line_errors_not_tracebacks(tmp_path):
    runner = CliRunner()
    shp = tmp_path / "nocrs.shp"
    pyogrio.raw.write(
        str(shp),
        np.array([shapely.to_wkb(Polygon([(0, 0), (9, 0), (9, 9)]))], dtype=object),
        [np.array(["a"], dtype=object)],
        ["id"],
        driver="ESRI Shapefile",
        geometry_type="Polygon",
    )
    r = runner.invoke(cli, ["convert", "buildings", str(shp), str(tmp_path / "o")])
    assert r.exit_code == 1
    assert "error:" in r.output and "nocrs.shp" in r.output and "--crs" in r.output
    assert "Traceback" not in r.output

    recipe = tmp_path / "city.toml"
    recipe.write_text('[city]\nname = "x"\n[[layers]]\nid = "b"\nkind = "roads"\nsource = "a.gpkg"\n')
    r = runner.invoke(cli, ["build", str(recipe)])
    assert r.exit_code == 1 and "kind 'roads'" in r.output and "city.toml" in r.output

    bad = tmp_path / "broken.gpkg"
    bad.write_bytes(b"\0" * 100)
    r = runner.invoke(cli, ["convert", "buildings", str(bad), str(tmp_path / "o2"), "--crs", "EPSG:4544"])
    assert r.exit_code == 1 and "broken.gpkg" in r.output

    r = runner.invoke(cli, ["convert", "buildings", str(shp), str(tmp_path / "o3"), "--crs", "EPSG:999999"])
    assert r.exit_code == 1 and "EPSG:999999" in r.output


def test_convert_terrain_and_imagery(tiny_sources, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["convert", "terrain", str(tiny_sources.dem), str(tmp_path / "terrain")])
    assert r.exit_code == 0, r.output
    assert "terrain:" in r.output and (tmp_path / "terrain" / "layer.json").exists()
    layer = json.loads((tmp_path / "terrain" / "layer.json").read_text())
    assert layer["format"] == "quantized-mesh-1.0" and layer["maxzoom"] == 18
    r = runner.invoke(cli, ["convert", "imagery", str(tiny_sources.ortho), str(tmp_path / "img"), "--format", "jpeg"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "img" / "imagery.json").read_text())
    assert meta["format"] == "jpeg" and list((tmp_path / "img" / "tiles").rglob("*.jpg"))
    r = runner.invoke(cli, ["convert", "terrain", str(tmp_path / "img" / "imagery.json"), str(tmp_path / "bad")])
    assert r.exit_code == 1 and "imagery.json" in r.output


def test_convert_bim_needs_a_georeference_or_an_origin(tiny_sources, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["convert", "bim", str(tiny_sources.ifc[0]), str(tmp_path / "bim")])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "bim" / "city.json").read_text())
    assert manifest["layers"][0]["kind"] == "bim" and manifest["layers"][0]["count"] > 20
    # the same model stripped of its georeference: a clear error asking for --origin
    text = tiny_sources.ifc[0].read_text()
    import re

    bare = re.sub(r"^#\d+=IFCMAPCONVERSION\(.*?\);$", "", text, flags=re.M)
    assert bare != text
    (tmp_path / "bare.ifc").write_text(bare)
    r = runner.invoke(cli, ["convert", "bim", str(tmp_path / "bare.ifc"), str(tmp_path / "bare")])
    assert r.exit_code == 1 and "--origin" in r.output, r.output
    r = runner.invoke(
        cli,
        [
            "convert",
            "bim",
            str(tmp_path / "bare.ifc"),
            str(tmp_path / "bare"),
            "--crs",
            "EPSG:4544",
            "--origin",
            "566000",
            "3828000",
            "1120",
        ],
    )
    assert r.exit_code == 0, r.output


@pytest.mark.realdata
def test_convert_pointcloud_asks_for_a_crs(realdata, tmp_path):
    runner = CliRunner()
    las = realdata / "pointcloud" / "laspy_simple.las"
    r = runner.invoke(cli, ["convert", "pointcloud", str(las), str(tmp_path / "a")])
    assert r.exit_code == 1 and "--crs" in r.output and "laspy_simple.las" in r.output
    r = runner.invoke(cli, ["convert", "pointcloud", str(las), str(tmp_path / "b"), "--crs", "EPSG:2994", "--workers", "1"])
    assert r.exit_code == 0, r.output
    layer = json.loads((tmp_path / "b" / "city.json").read_text())["layers"][0]
    assert layer["kind"] == "pointcloud" and layer["count"] == 1065


def test_unknown_recipe_option_is_an_error_naming_it(tiny_sources, tmp_path):
    recipe = tmp_path / "city.toml"
    text = tiny_sources.recipe.read_text().replace('height = "height"', 'heigth = "height"')
    recipe.write_text(text.replace('"data/', f'"{tiny_sources.root}/data/'))
    r = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "heigth" in r.output and "unknown option" in r.output, r.output
