"""The query engine on the built tiny city, checked against the source footprint file."""

from __future__ import annotations

import math

import numpy as np
import pyogrio
import pytest
import shapely
from pyproj import Transformer

from cim.crs import to_lonlat
from cim.errors import CimInputError, CimNotFound
from cim.query import Query, feature_detail, open_store, select, statistics
from cim.query.engine import histogram_edges
from cim.sources.footprints import read_footprints


@pytest.fixture(scope="module")
def store(tiny_city):
    return open_store(tiny_city)


@pytest.fixture(scope="module")
def source(tiny_sources, store):
    """The source buildings (attributes, footprints in EPSG:4544 and in degrees): the store keeps
    them all, those a BIM model replaced in the scene too (tests/server/test_bim_links.py)."""
    meta, _, wkb, fields = pyogrio.raw.read(tiny_sources.buildings)
    cols = {k: np.asarray(v) for k, v in zip(meta["fields"], fields)}
    assert sorted(cols["id"].tolist()) == sorted(store.fid[store.layer == "buildings"].tolist())
    geoms = shapely.from_wkb(wkb)
    table = read_footprints(tiny_sources.buildings)

    def lonlat(xy):
        return np.column_stack(to_lonlat(xy[:, 0], xy[:, 1], table.crs))

    return cols, geoms, shapely.transform(geoms, lonlat), table.crs


def ids_of(store, q: Query) -> list[str]:
    return store.fid[select(store, q).rows].tolist()


def test_every_anchor_lies_inside_its_footprint(store, source):
    cols, _, lonlat, _ = source
    rows = np.flatnonzero(store.layer == "buildings")
    assert len(rows) == len(cols["id"])
    by_id = dict(zip(cols["id"].tolist(), lonlat))
    src = np.array([by_id[f] for f in store.fid[rows]], dtype=object)
    anchors = shapely.points(store.anchor[rows])
    assert shapely.contains(src, anchors).all()
    # and the centre of the box, which the old search gave, does not always (courtyards, L-shapes)
    assert (~shapely.contains(src, shapely.points(store.lon[rows], store.lat[rows]))).any()


@pytest.mark.parametrize(
    "query, shape",
    [
        (Query(bbox=(105.7040, 34.5785, 105.7052, 34.5795)), shapely.box(105.7040, 34.5785, 105.7052, 34.5795)),
        (
            Query(polygon=[105.7033, 34.5776, 105.7058, 34.5778, 105.7045, 34.5801, 105.7033, 34.5776]),
            shapely.Polygon([(105.7033, 34.5776), (105.7058, 34.5778), (105.7045, 34.5801)]),
        ),
        (Query(line=[105.7030, 34.5782, 105.7065, 34.5796]), shapely.LineString([(105.7030, 34.5782), (105.7065, 34.5796)])),
    ],
)
def test_spatial_filters_are_exact_against_the_source_footprints(store, source, query, shape):
    cols, _, lonlat, _ = source
    query.layer = "buildings"
    got = set(ids_of(store, query))
    want = set(cols["id"][shapely.intersects(lonlat, shape)].tolist())
    assert got == want and 0 < len(want) < len(cols["id"])


def test_radius_and_line_buffer_in_metres_match_the_projected_source(store, source):
    cols, geoms, _, crs = source
    lon, lat = 105.7047, 34.5789
    t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x, y = t.transform(lon, lat)
    centre = shapely.Point(x, y)
    # the local plane and Gauss-Kruger differ by their scale factors (about 1e-4 here): a
    # footprint within 0.1 % of the radius either way may fall either side
    for radius in (60.0, 150.0):
        got = set(ids_of(store, Query(point=(lon, lat), radius=radius, layer="buildings")))
        inner = set(cols["id"][shapely.dwithin(geoms, centre, radius * 0.999)].tolist())
        outer = set(cols["id"][shapely.dwithin(geoms, centre, radius * 1.001)].tolist())
        assert inner and inner <= got <= outer
    line = [105.7030, 34.5782, 105.7065, 34.5796]
    xy = np.column_stack(t.transform(line[0::2], line[1::2]))
    projected = shapely.LineString(xy)
    got = set(ids_of(store, Query(line=line, buffer=25.0, layer="buildings")))
    inner = set(cols["id"][shapely.dwithin(geoms, projected, 25.0 * 0.999)].tolist())
    outer = set(cols["id"][shapely.dwithin(geoms, projected, 25.0 * 1.001)].tolist())
    assert inner and inner <= got <= outer
    assert got > set(ids_of(store, Query(line=line, layer="buildings")))


def test_bad_geometry_parameters_are_input_errors(store):
    for q, word in [
        (Query(polygon=[105.7, 34.5, 105.71, 34.5]), "polygon"),
        (Query(polygon=[105.7, 34.5, 105.71, 34.51, 105.71, 34.5, 105.7, 34.51]), "not a simple polygon"),
        (Query(polygon=[105.7, 34.5, 205.71, 34.5, 105.7, 34.6]), "longitudes"),
        (Query(bbox=(2, 0, 1, 1)), "bbox"),
        (Query(point=(105.7, 34.5)), "radius"),
        (Query(radius=10.0), "point"),
        (Query(buffer=5.0), "line"),
        (Query(line=[105.7, 34.5, 105.7]), "line"),
        (Query(layer="nowhere"), "layer"),
        (Query(sort="-nothing"), "sort"),
        (Query(text="  ;;  "), "text"),
    ]:
        with pytest.raises(CimInputError, match=word):
            select(store, q)


def test_conditions_match_the_source_attributes(store, source):
    cols, _, _, _ = source
    got = ids_of(store, Query(where="height > 20 AND use = 'residential' OR year_built BETWEEN 1990 AND 2000", layer="buildings"))
    want = (cols["height"] > 20) & (cols["use"] == "residential") | (cols["year_built"] >= 1990) & (cols["year_built"] <= 2000)
    assert sorted(got) == sorted(cols["id"][want].tolist()) and want.sum() > 0
    ordered = ids_of(store, Query(layer="buildings", sort="-height"))
    heights = dict(zip(cols["id"].tolist(), cols["height"].tolist()))
    assert [heights[i] for i in ordered] == sorted(heights.values(), reverse=True)


def test_chinese_substrings_of_one_two_or_more_characters_find_their_features(store, source):
    cols, _, _, _ = source
    text = [" ".join(str(cols[k][i]) for k in cols if cols[k].dtype == object) for i in range(len(cols["id"]))]
    address = str(cols["address"][0])
    assert address.startswith("天水市") and address.endswith("号")
    for word in ("秦州", "秦", "秦州区", address[3:9], address):
        got = set(ids_of(store, Query(text=word, layer="buildings")))
        want = {cols["id"][i] for i, t in enumerate(text) if word in t}
        assert got == want and want, word
    # pinyin/English beside the Chinese: both find the building
    i = 5
    for word in (cols["name"][i], cols["name_en"][i], cols["address_en"][i].split(",")[0]):
        assert cols["id"][i] in ids_of(store, Query(text=str(word), layer="buildings")), word


def test_an_exact_title_ranks_first_and_a_misspelt_name_still_finds_its_feature(store, source):
    cols, _, _, _ = source
    names = cols["name"].tolist()
    i = next(k for k, n in enumerate(names) if names.count(n) == 1)
    got = select(store, Query(text=names[i]))
    assert store.title[got.rows[0]] == names[i] and not got.fuzzy
    # titles equal to the text, then starting with it, then containing it, then the rest
    seen = set()
    for word in (names[i], names[i][:2], "学校", "号楼", "滨河", "1号"):  # estates, uses, roads
        got = select(store, Query(text=word)).rows
        tiers = [0 if t == word else 1 if t.startswith(word) else 2 if word in t else 3 for t in store.title[got].tolist()]
        assert tiers == sorted(tiers), word
        seen |= set(tiers)
    assert seen == {0, 1, 2, 3}
    english_names = cols["name_en"].tolist()
    unique = [e for e in english_names if english_names.count(e) == 1]
    for english in unique[:: max(1, len(unique) // 6)]:  # e.g. "Minzhu Residence 12"
        estate, kind, number = english.split()
        for typo in (f"{estate[:2]}{estate[3:]} {kind} {number}", f"{estate} {kind[:-2]}{kind[-1]}{kind[-2]} {number}"):
            got = select(store, Query(text=typo))
            assert got.fuzzy, typo
            assert str(store.columns["name_en"][got.rows[0]]) == english, typo


def test_statistics_equal_a_computation_from_the_source_file(store, source):
    cols, geoms, lonlat, _ = source
    shape = shapely.box(105.7040, 34.5780, 105.7055, 34.5800)
    sel = select(store, Query(bbox=shapely.bounds(shape).tolist(), layer="buildings")).rows
    inside = shapely.intersects(lonlat, shape)
    area = shapely.area(geoms)
    got = statistics(store, sel, "district")
    assert got["count"] == inside.sum() > 0
    assert got["footprint_area_m2"] == pytest.approx(area[inside].sum(), rel=1e-12)
    assert got["floor_area_m2"] == pytest.approx((area * cols["floors"])[inside].sum(), rel=1e-12)
    edges = histogram_edges(cols["height"][inside])
    assert got["height_histogram"]["edges"] == edges.tolist()
    assert got["height_histogram"]["counts"] == np.histogram(cols["height"][inside], bins=edges)[0].tolist()
    for group_by, keys in (
        ("district", cols["district"]),
        ("use", cols["use"]),
        ("year_band", np.array([f"{y // 10 * 10}s" for y in cols["year_built"]], dtype=object)),
    ):
        groups = statistics(store, sel, group_by)["groups"]
        want = {k: (inside & (keys == k)) for k in set(keys[inside].tolist())}
        assert {g["key"] for g in groups} == set(want)
        for g in groups:
            m = want[g["key"]]
            assert g["count"] == m.sum()
            assert g["footprint_area_m2"] == pytest.approx(area[m].sum(), rel=1e-12)
            assert g["floor_area_m2"] == pytest.approx((area * cols["floors"])[m].sum(), rel=1e-12)
    assert {g["key"] for g in statistics(store, np.arange(len(store)), "layer")["groups"]} == set(store.layer.tolist())
    with pytest.raises(CimInputError, match="group_by"):
        statistics(store, sel, "colour")


def test_histogram_edges_are_round_and_cover_the_highest_value():
    for top, step in ((0.0, 5.0), (12.0, 5.0), (150.0, 5.0), (151.0, 10.0), (299.0, 10.0), (600.0, 20.0), (2900.0, 100.0)):
        edges = histogram_edges(np.array([0.5, top]))
        assert edges[0] == 0 and edges[1] - edges[0] == step and edges[-1] > top - 1e-9 and len(edges) <= 32
        assert math.isclose(edges[-2], edges[-1] - step) and edges[-2] <= top


def test_feature_detail_links_bim_elements_buildings_and_districts(store, source):
    cols, _, _, _ = source
    i = 7
    item = feature_detail(store, "buildings", str(cols["id"][i]))
    assert item["links"]["district"] == cols["district"][i]
    assert item["links"]["points"]["count"] > 0  # the lidar layer's points (tests/query/test_point_links.py)
    assert item["properties"]["name"] == cols["name"][i]
    assert shapely.contains(shapely.from_geojson(item["geometry"]), shapely.Point(item["anchor"]))
    door = select(store, Query(ifc_class="IfcDoor")).rows
    assert len(door) and set(store.columns["IfcClass"][door]) == {"IfcDoor"}
    element = feature_detail(store, "bim", str(store.fid[door[0]]))
    assert element["links"]["bim"] == []
    gid = str(store.columns["GlobalId"][door[0]])
    assert ids_of(store, Query(globalid=gid)) == [gid]
    model = str(store.columns["Model"][door[0]])
    building = element["links"]["building"]  # the building the model replaced
    assert building["layer"] == "buildings" and model.startswith(building["id"])
    storey = str(store.columns["Storey"][door[0]])
    both = select(store, Query(model=model, storey=storey)).rows
    assert len(both) and (store.columns["Model"][both] == model).all() and (store.columns["Storey"][both] == storey).all()
    with pytest.raises(CimNotFound):
        feature_detail(store, "buildings", "no-such-id")
    with pytest.raises(CimNotFound):
        feature_detail(store, "buildings", str(cols["id"][i]), hidden=["buildings"])
