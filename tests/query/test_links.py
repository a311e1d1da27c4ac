"""Linked objects on a small synthetic store: building → BIM models and lidar statistics,
BIM element → building (the tiny city's BIM models replace their buildings, so it has none)."""

from __future__ import annotations

import numpy as np
import pytest

from cim.query import Query, feature_detail, open_store, select
from cim.searchindex import SearchRows, write_search_index


def square(lon: float, lat: float, d: float) -> np.ndarray:
    return np.array([[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    city = tmp_path_factory.mktemp("links")
    xy = np.concatenate([square(105.70, 34.57, 0.001), square(105.71, 34.57, 0.001)])
    lon = np.array([105.7005, 105.7105])
    lat = np.array([34.5705, 34.5705])
    buildings = SearchRows(
        "buildings",
        np.array(["B1", "B2"], dtype=object),
        None,
        None,
        lon,
        lat,
        lon - 0.0005,
        lat - 0.0005,
        lon + 0.0005,
        lat + 0.0005,
        np.zeros(2),
        np.array([30.0, 12.0]),
        columns={
            "name": np.array(["迎宾小区1号楼", "迎宾小区2号楼"], dtype=object),
            "district": np.array(["秦州区", "麦积区"], dtype=object),
            "n_points": np.array([412, 0]),
            "h_roof_50": np.array([29.5, np.nan]),
            "h_roof_90": np.array([30.1, np.nan]),
            "h_ground": np.array([0.2, np.nan]),
        },
        types={
            "name": "STRING",
            "district": "STRING",
            "n_points": "INT32",
            "h_roof_50": "FLOAT64",
            "h_roof_90": "FLOAT64",
            "h_ground": "FLOAT64",
        },
        title_column="name",
        rings=(xy, np.array([0, 5, 10]), np.array([0, 1, 2]), np.array([0, 1])),
        areas=np.array([9000.0, 9000.0]),
    )
    elon = np.array([105.7003, 105.7006, 105.7200])  # two inside B1, one outside every building
    elat = np.array([34.5703, 34.5707, 34.5800])
    props = [
        {"GlobalId": "G1", "IfcClass": "IfcWall", "Storey": "1F", "Model": "M1"},
        {"GlobalId": "G2", "IfcClass": "IfcDoor", "Storey": "1F", "Model": "M1"},
        {"GlobalId": "G3", "IfcClass": "IfcWall", "Storey": "2F", "Model": "M2"},
    ]
    bim = SearchRows(
        "bim",
        np.array(["G1", "G2", "G3"], dtype=object),
        np.array(["wall", "door", "wall"], dtype=object),
        np.array(["IfcWall", "IfcDoor", "IfcWall"], dtype=object),
        elon,
        elat,
        elon - 1e-5,
        elat - 1e-5,
        elon + 1e-5,
        elat + 1e-5,
        np.zeros(3),
        np.full(3, 3.0),
        properties=props,
    )
    write_search_index(city / "search.sqlite", [buildings, bim])
    return open_store(city)


def test_a_building_links_its_bim_models_points_and_district(store):
    b1 = feature_detail(store, "buildings", "B1")
    assert b1["links"]["bim"] == [{"layer": "bim", "id": "M1", "title": "M1", "model": "M1", "elements": 2}]
    assert b1["links"]["points"] == {"count": 412, "z_min": None, "z_p50": 29.5, "z_p90": 30.1, "z_max": None, "ground": 0.2}
    assert b1["links"]["district"] == "秦州区" and b1["links"]["building"] is None
    b2 = feature_detail(store, "buildings", "B2")
    assert b2["links"]["bim"] == [] and b2["links"]["points"]["count"] == 0 and b2["links"]["points"]["z_p50"] is None
    assert feature_detail(store, "buildings", "B1", hidden=["bim"])["links"]["bim"] == []


def test_a_bim_element_links_the_building_holding_it(store):
    assert feature_detail(store, "bim", "G2")["links"]["building"] == {"layer": "buildings", "id": "B1", "title": "迎宾小区1号楼"}
    assert feature_detail(store, "bim", "G3")["links"]["building"] is None
    assert feature_detail(store, "bim", "G2", hidden=["buildings"])["links"]["building"] is None


def test_element_model_and_storey_queries(store):
    def ids(**kw):
        return store.fid[select(store, Query(**kw)).rows].tolist()

    assert ids(ifc_class="IfcWall") == ["G1", "G3"]
    assert ids(model="M1", storey="1F") == ["G1", "G2"]
    assert ids(globalid="G3") == ["G3"] and ids(globalid="G9") == []
    assert ids(storey="1F", ifc_class="IfcDoor") == ["G2"]
    assert ids(where="n_points > 100") == ["B1"] and ids(where="IfcClass = 'IfcWall' AND Storey = '2F'") == ["G3"]
    assert store.schema["buildings"]["n_points"] == "integer" and store.schema["bim"]["IfcClass"] == "string"
