"""One height datum per city: the recipe declares it, city.json states it, layers naming another
vertical datum are converted through PROJ (network off), and one that cannot be is named."""

from __future__ import annotations

import json
from pathlib import Path

import laspy
import numpy as np
import pytest
import rasterio
from pyproj import CRS
from rasterio.crs import CRS as RasterioCRS
from rasterio.transform import Affine

import cim
from cim.datum import ELLIPSOIDAL, geoid_grids_available, height_conversion, parse_vertical_datum, vertical_of
from cim.errors import CimCRSError, CimRecipeError
from cim.recipe import recipe_from_dict
from cim.warnings import GeoreferenceWarning

# Auckland, in NZTM: heights in Auckland 1946 (EPSG:5759), which PROJ relates to NZVD2009
# (EPSG:4440) by a plain offset, so the conversion needs no grid
NZ_E, NZ_N, NZ_H = 1757000.0, 5920000.0, 50.0
AUCKLAND = "EPSG:2193+5759"


def nz_points(path: Path, crs: str) -> Path:
    rng = np.random.default_rng(4)
    header = laspy.LasHeader(point_format=6, version="1.4")  # WKT: a compound CRS
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([NZ_E, NZ_N, 0.0])
    las = laspy.LasData(header)
    n = 400
    las.x = NZ_E + rng.uniform(0, 200, n)
    las.y = NZ_N + rng.uniform(0, 200, n)
    las.z = NZ_H + rng.uniform(0, 1, n)
    las.header.add_crs(CRS(crs))
    las.write(path)
    return path


def nz_dem(path: Path, crs: str) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=24,
        height=24,
        count=1,
        dtype="float32",
        crs=RasterioCRS.from_user_input(crs),
        transform=Affine(10.0, 0.0, NZ_E, 0.0, -10.0, NZ_N + 240.0),
    ) as ds:
        ds.write(np.full((1, 24, 24), NZ_H, np.float32))
    return path


def recipe(tmp_path: Path, datum: str | None, layers: list[tuple[str, str, Path]]) -> Path:
    lines = ["[city]", 'name = "nz"', 'crs = "EPSG:2193"'] + ([f'vertical_datum = "{datum}"'] if datum else [])
    for lid, kind, source in layers:
        lines += ["[[layers]]", f'id = "{lid}"', f'kind = "{kind}"', f'source = "{source}"']
    path = tmp_path / "city.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_datum_a_recipe_declares():
    assert parse_vertical_datum(None) == ELLIPSOIDAL == parse_vertical_datum("ellipsoidal")
    assert parse_vertical_datum("EPSG:5737") == "EPSG:5737"  # Yellow Sea 1985 height
    with pytest.raises(CimCRSError, match="not a vertical CRS"):
        parse_vertical_datum("EPSG:4544")
    base = {"city": {"name": "c"}, "layers": [{"id": "t", "kind": "terrain", "source": "dem.tif"}]}
    assert recipe_from_dict(base, Path(".")).vertical_datum == ELLIPSOIDAL
    with pytest.raises(CimRecipeError, match="vertical_datum"):
        recipe_from_dict({**base, "city": {"name": "c", "vertical_datum": "EPSG:4326"}}, Path("."))


def test_what_a_crs_names():
    assert vertical_of(CRS("EPSG:4544")) is None and vertical_of(CRS("EPSG:4979")) is None
    assert vertical_of(CRS("EPSG:7415")).name == "NAP height"
    assert height_conversion(CRS("EPSG:4544"), ELLIPSOIDAL) is None  # naming none: taken as the city's
    assert height_conversion(CRS(AUCKLAND), "EPSG:5759") is None  # the city's own
    offset = height_conversion(CRS(AUCKLAND), "EPSG:4440")
    assert offset is not None and offset.problem is None
    assert offset.at(174.76, -36.85) == pytest.approx(-0.34, abs=0.005)  # EPSG:4442's offset


def test_a_layer_is_converted_to_the_city_datum(tmp_path):
    points = nz_points(tmp_path / "a.las", AUCKLAND)
    dem = nz_dem(tmp_path / "dem.tif", AUCKLAND)
    plain = nz_points(tmp_path / "plain.las", "EPSG:2193")
    layers = [("terrain", "terrain", dem), ("lidar", "pointcloud", points), ("plain", "pointcloud", plain)]
    report = cim.build(recipe(tmp_path, "EPSG:4440", layers), tmp_path / "out")
    city = json.loads((tmp_path / "out" / "city.json").read_text())
    assert city["vertical_datum"] == {"datum": "EPSG:4440", "geoid_grids": geoid_grids_available()}
    by_id = {layer["id"]: layer for layer in city["layers"]}
    assert by_id["terrain"]["heights"] == by_id["lidar"]["heights"] == "converted from EPSG:5759"
    assert by_id["plain"]["heights"] == "as given"
    assert not [w for lr in report.layers for w in lr.warnings if isinstance(w, GeoreferenceWarning)]
    # the same points, the same heights: the converted layer lies 0.34 m below the plain one
    lidar, plain_b = by_id["lidar"]["bounds"], by_id["plain"]["bounds"]
    assert lidar["min_height"] - plain_b["min_height"] == pytest.approx(-0.34, abs=0.02)
    assert by_id["terrain"]["bounds"]["min_height"] == pytest.approx(NZ_H - 0.34, abs=0.05)


def test_a_layer_that_cannot_be_converted_is_named(tmp_path):
    points = nz_points(tmp_path / "a.las", AUCKLAND)
    report = cim.build(recipe(tmp_path, None, [("lidar", "pointcloud", points)]), tmp_path / "out")
    city = json.loads((tmp_path / "out" / "city.json").read_text())
    assert city["vertical_datum"]["datum"] == ELLIPSOIDAL
    (layer,) = city["layers"]
    conversion = height_conversion(CRS(AUCKLAND), ELLIPSOIDAL)
    assert conversion is not None
    if conversion.problem is None:  # PROJ's geoid grid for New Zealand is installed here
        assert layer["heights"] == "converted from EPSG:5759"
        return
    assert layer["heights"] == "NOT converted from EPSG:5759"
    (w,) = [w for w in report.layers[0].warnings if isinstance(w, GeoreferenceWarning)]
    assert str(w).startswith("lidar: a.las") and "EPSG:5759" in str(w) and "ellipsoidal" in str(w) and "not converted" in str(w)


def nz_model(path: Path, vertical: str | None) -> Path:
    import ifcopenshell

    from cim.samplecity.bim import write_sample_ifc

    write_sample_ifc(
        path, easting=NZ_E, northing=NZ_N, base_height=NZ_H, rotation_deg=0.0, width=4.0, depth=4.0, storeys=1, name="nz", crs="EPSG:2193"
    )
    f = ifcopenshell.open(str(path))
    f.by_type("IfcProjectedCRS")[0].VerticalDatum = vertical
    f.write(str(path))
    return path


def test_a_bim_model_naming_its_vertical_datum_is_converted(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    named = nz_model(tmp_path / "a" / "named.ifc", "EPSG:5759")
    plain = nz_model(tmp_path / "b" / "plain.ifc", None)
    unknown = nz_model(tmp_path / "c" / "unknown.ifc", "Harbour chart datum of 1911")
    layers = [("named", "bim", named.parent), ("plain", "bim", plain.parent), ("unknown", "bim", unknown.parent)]
    report = cim.build(recipe(tmp_path, "EPSG:4440", layers), tmp_path / "out")
    by_id = {layer["id"]: layer for layer in json.loads((tmp_path / "out" / "city.json").read_text())["layers"]}
    assert by_id["named"]["heights"] == "converted from EPSG:5759" and by_id["plain"]["heights"] == "as given"
    assert by_id["named"]["bounds"]["min_height"] - by_id["plain"]["bounds"]["min_height"] == pytest.approx(-0.34, abs=0.02)
    (w,) = [w for lr in report.layers if lr.id == "unknown" for w in lr.warnings if isinstance(w, GeoreferenceWarning)]
    assert "unknown.ifc" in str(w) and "Harbour chart datum of 1911" in str(w) and "EPSG:4440" in str(w)
    assert by_id["unknown"]["bounds"]["min_height"] == pytest.approx(by_id["plain"]["bounds"]["min_height"], abs=1e-6)


def test_a_mesh_whose_srs_names_a_vertical_datum_is_converted(tmp_path):
    import trimesh

    for name, srs in (("named", AUCKLAND), ("plain", "EPSG:2193")):
        folder = tmp_path / name
        folder.mkdir()
        box = trimesh.creation.box((10.0, 10.0, 4.0))
        (folder / "box.obj").write_text(trimesh.exchange.obj.export_obj(box))
        (folder / "metadata.xml").write_text(f"<ModelMetadata><SRS>{srs}</SRS><SRSOrigin>{NZ_E},{NZ_N},{NZ_H}</SRSOrigin></ModelMetadata>")
    layers = [("named", "mesh", tmp_path / "named"), ("plain", "mesh", tmp_path / "plain")]
    cim.build(recipe(tmp_path, "EPSG:4440", layers), tmp_path / "out")
    by_id = {layer["id"]: layer for layer in json.loads((tmp_path / "out" / "city.json").read_text())["layers"]}
    assert by_id["named"]["heights"] == "converted from EPSG:5759" and by_id["plain"]["heights"] == "as given"
    assert by_id["named"]["bounds"]["min_height"] - by_id["plain"]["bounds"]["min_height"] == pytest.approx(-0.34, abs=0.02)
