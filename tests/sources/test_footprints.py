import warnings

import numpy as np
import pyogrio
import pytest
import shapely
import shapely.affinity
from shapely.geometry import Point, Polygon

import cim
from cim.errors import CimCRSError, CimIOError
from cim.sources.footprints import footprint_rings, read_footprints
from cim.warnings import DefaultValueWarning, FeatureRepairedWarning, FeatureSkippedWarning


def _write(path, geoms, ids, crs="EPSG:4544", extra=None):
    fields = ["id", *(extra or {})]
    data = [np.array(ids, dtype=object), *[np.asarray(v) for v in (extra or {}).values()]]
    wkb = np.array([None if g is None else shapely.to_wkb(g) for g in geoms], dtype=object)
    pyogrio.raw.write(str(path), wkb, data, fields, driver="GPKG", geometry_type="Unknown", crs=crs, promote_to_multi=False)


def test_invalid_footprints_are_repaired_or_skipped_and_reported(tmp_path):
    good = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)])
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])  # self-intersecting: make_valid mends it
    flat = Polygon([(0, 0), (10, 0), (20, 0)])  # zero area
    with np.errstate(invalid="ignore"):
        nan = Polygon([(0, 0), (np.nan, 0), (10, 10), (0, 10)])
    empty = Polygon()
    point = Point(1, 1)
    path = tmp_path / "bad.gpkg"
    # in Tianshui: footprints outside their CRS's area of use are skipped too
    geoms = [shapely.affinity.translate(g, 566000.0, 3827000.0) for g in (good, bowtie, flat, nan, empty, point)] + [None]
    _write(path, geoms, ["A", "B", "C", "D", "E", "F", "G"], extra={"height": np.arange(7.0)})
    table = read_footprints(path)
    assert list(table.ids) == ["A", "B"]
    assert [i.id for i in table.repaired] == ["B"]
    skipped = {i.id: i.reason for i in table.skipped}
    assert set(skipped) == {"C", "D", "E", "F", "G"}
    assert "NaN" in skipped["D"] and "zero area" in skipped["C"] and "not a polygon" in skipped["F"]
    assert shapely.is_valid(table.geometries).all() and np.isclose(table.geometries[1].area, 50.0)
    assert table.columns["height"].tolist() == [0.0, 1.0]
    # the layer built from the file reports both, typed, naming the footprints
    with pytest.warns(FeatureSkippedWarning, match=r"bad\.gpkg: skipped 5 footprint\(s\): .*C \(zero area\)"):
        result = cim.build_layer("buildings", path, tmp_path / "out")
    assert result.count == 2 and result.skipped == 5 and result.repaired == 1
    skipped = [str(w) for w in result.warnings if isinstance(w, FeatureSkippedWarning)]
    repaired = [str(w) for w in result.warnings if isinstance(w, FeatureRepairedWarning)]
    assert len(skipped) == 1 and "skipped 5 footprint(s)" in skipped[0] and "C (zero area)" in skipped[0]
    assert len(repaired) == 1 and "repaired 1 invalid footprint(s)" in repaired[0] and "B (" in repaired[0]


def test_missing_crs_is_a_clear_error(tmp_path):
    # a shapefile without .prj (GeoJSON always implies WGS84)
    shp = tmp_path / "nocrs.shp"
    pyogrio.raw.write(
        str(shp),
        np.array([shapely.to_wkb(Polygon([(566000, 3827000), (566001, 3827000), (566001, 3827001)]))], dtype=object),
        [np.array(["x"], dtype=object)],
        ["id"],
        driver="ESRI Shapefile",
        geometry_type="Polygon",
    )
    with pytest.raises(CimCRSError, match=r"nocrs\.shp.*declares no CRS"):
        read_footprints(shp)
    assert read_footprints(shp, crs="EPSG:4544").crs.to_epsg() == 4544


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.gpkg"
    bad.write_text("not a geopackage")
    with pytest.raises(CimIOError, match="notes.gpkg"):
        read_footprints(bad)
    with pytest.raises(CimIOError, match="no such file"):
        read_footprints(tmp_path / "missing.shp")


def test_sample_city_footprints_have_typed_attributes(tiny_sources):
    table = read_footprints(tiny_sources.buildings)
    assert table.crs.to_epsg() == 4544
    assert table.types == {
        "id": "STRING",
        "name": "STRING",
        "use": "STRING",
        "floors": "INT32",
        "height": "FLOAT64",
        "year_built": "INT32",
        "address": "STRING",
        "district": "STRING",
        "name_en": "STRING",  # the Chinese names' pinyin/English beside them
        "address_en": "STRING",
        "district_en": "STRING",
    }
    assert len(table) == tiny_sources.n_buildings and not table.skipped and not table.repaired
    kinds = set(shapely.get_type_id(table.geometries).tolist())
    assert kinds == {3, 6}  # polygons and multipolygons
    assert (shapely.get_num_interior_rings(table.geometries[shapely.get_type_id(table.geometries) == 3]) > 0).any()


@pytest.mark.realdata
def test_dc_buildings_shapefile_without_heights(realdata, tmp_path):
    with warnings.catch_warnings(record=True) as issued:
        warnings.simplefilter("always")
        report = cim.convert_buildings(realdata / "vector" / "osgearth_dcbuildings.shp", tmp_path / "dc")
    layer = report.layers[0]
    assert layer.count == 1251
    defaults = [w for w in layer.warnings if isinstance(w, DefaultValueWarning)]
    assert len(defaults) == 1 and "1251 of 1251 building(s) have no height; used the default 10.0 m" in str(defaults[0])
    # one Python warning, with the count
    assert [w.category for w in issued if "have no height" in str(w.message)] == [DefaultValueWarning]
    # Washington DC, from the NAD83 Maryland .prj
    b = layer.bounds
    assert -77.2 < b["west"] < b["east"] < -76.9 and 38.8 < b["south"] < b["north"] < 39.0


@pytest.mark.realdata
def test_urbanopt_heights_from_number_of_stories(realdata, tmp_path):
    from cim.formats.glb import read_glb, read_property_table

    src = realdata / "vector" / "urbanopt_example_project.json"
    table = read_footprints(src)
    n_buildings = int(np.sum(shapely.get_type_id(table.geometries) >= 0))
    report = cim.convert_buildings(src, tmp_path / "uo", height=None, floors="number_of_stories", storey_height=3.5)
    layer = report.layers[0]
    assert layer.count == n_buildings and layer.count >= 13
    assert not any("default" in str(w) for w in layer.warnings)
    floors = [str(w) for w in layer.warnings if isinstance(w, DefaultValueWarning)]
    assert floors == [
        f"buildings: urbanopt_example_project.json: {layer.count} building(s) took their height from 'number_of_stories' × 3.5 m"
    ]
    doc, binary = read_glb((tmp_path / "uo" / "tiles" / "0-0-0.glb").read_bytes())
    props = read_property_table(doc, binary)
    stories = dict(zip(props["id"], props["number_of_stories"]))
    # the building with the most stories is the tallest prism
    assert max(v for v in stories.values() if v is not None) == np.nanmax(np.asarray(table.columns["number_of_stories"], dtype=float))
    assert layer.bounds["max_height"] == pytest.approx(
        3.5 * np.nanmax(np.asarray(table.columns["number_of_stories"], dtype=float)), rel=1e-6
    )


def test_footprint_rings_match_shapely_ragged_arrays_and_orient_every_ring():
    square = Polygon([(0, 0), (0, 10), (10, 10), (10, 0)])  # clockwise: must be flipped
    court = Polygon([(0, 0), (30, 0), (30, 30), (0, 30)], [[(10, 10), (20, 10), (20, 20), (10, 20)]])  # hole CCW: flipped
    multi = shapely.MultiPolygon([court, Polygon([(40, 0), (50, 0), (45, 8)])])
    geoms = np.array([square, court, multi, Polygon([(60, 0), (70, 0), (70, 5), (60, 5)])], dtype=object)
    xy, ring_offsets, polygon_offsets, polygon_feature = footprint_rings(geoms)

    parts, part_feature = shapely.get_parts(geoms, return_index=True)
    _, ref_xy, (ref_rings, ref_polys) = shapely.to_ragged_array(shapely.orient_polygons(parts, exterior_cw=False))
    assert np.array_equal(xy, ref_xy[:, :2])
    assert np.array_equal(ring_offsets, ref_rings) and np.array_equal(polygon_offsets, ref_polys)
    assert np.array_equal(polygon_feature, part_feature)
    # every exterior ring counter-clockwise, every hole clockwise
    for r in range(len(ring_offsets) - 1):
        area = shapely.area(shapely.Polygon(xy[ring_offsets[r] : ring_offsets[r + 1]]))
        signed = shapely.is_ccw(shapely.LinearRing(xy[ring_offsets[r] : ring_offsets[r + 1]]))
        assert area > 0 and signed == (r in set(polygon_offsets[:-1].tolist()))


def test_validity_checked_in_chunks_on_threads_is_shapely_s():
    from cim.sources.footprints import _is_valid

    good = Polygon([(0, 0), (4, 0), (4, 3), (0, 3)])
    bowtie = Polygon([(0, 0), (4, 4), (4, 0), (0, 4)])
    geoms = np.array([good if i % 7 else bowtie for i in range(1000)], dtype=object)
    assert np.array_equal(_is_valid(geoms, chunk=64), shapely.is_valid(geoms))
    assert _is_valid(geoms, chunk=64).sum() == 1000 - len(range(0, 1000, 7))


def test_crs_override_reads_a_wrongly_declared_file_in_the_given_crs(tiny_sources, tmp_path):
    """A GeoPackage whose header says EPSG:32648 for Gauss-Kruger numbers: refused without
    crs_override as the placement goes wrong, read in the given CRS with it, with a warning."""
    import pyogrio

    import cim
    from cim.sources.footprints import read_footprints
    from cim.warnings import GeoreferenceWarning

    meta, _, geometry, fields = pyogrio.raw.read(tiny_sources.buildings)
    wrong = tmp_path / "wrong.gpkg"
    pyogrio.raw.write(wrong, geometry, fields, meta["fields"], crs="EPSG:32648", geometry_type="MultiPolygon", driver="GPKG")
    table = read_footprints(wrong, crs="EPSG:4544", crs_override=True)
    assert table.crs.to_epsg() == 4544 and table.overridden_crs == "EPSG:32648"
    assert read_footprints(wrong, crs="EPSG:4544").crs.to_epsg() == 32648  # the file's own wins by default
    with pytest.warns(GeoreferenceWarning, match=r"wrong.gpkg: declares EPSG:32648; read as EPSG:4544 \(crs_override\)"):
        cim.convert("buildings", wrong, tmp_path / "out", crs="EPSG:4544", crs_override=True)
    city = (tmp_path / "out" / "city.json").read_text()
    import json

    bounds = json.loads(city)["bounds"]
    assert 105.5 < (bounds["west"] + bounds["east"]) / 2 < 106.0
