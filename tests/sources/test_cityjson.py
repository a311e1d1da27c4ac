"""The CityJSON reader and the surface kernels: real files (cjio's Rotterdam subset, CityJSON 2.0,
and DH_01, CityJSON 1.1 with BuildingParts), LoDs, templates, CRSs, attributes, and bad input."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from cim.errors import CimCRSError, CimInputError
from cim.kernels.surfaces import OK, SELF_INTERSECTING, TOO_FEW_VERTICES, ZERO_AREA, triangulate_surfaces
from cim.sources.cityjson import (
    SURFACE_TYPES,
    attribute_columns,
    horizontal_crs,
    parse_reference_system,
    read_cityjson,
    surface_code,
)
from tests.helpers import cityjson as cj

ROTTERDAM = "cityjson/cjio_rotterdam_subset.json"
DH01 = "cityjson/cjio_DH_01_subs.city.json"


def file_surfaces(doc: dict) -> Counter:
    """Semantic surface types of every surface of a document, counted from its JSON."""
    counts: Counter = Counter()
    for obj in doc["CityObjects"].values():
        for g in obj.get("geometry", []):
            sem = g.get("semantics") or {}
            values = sem.get("values")
            depth = {"MultiSurface": 0, "CompositeSurface": 0, "Solid": 1, "MultiSolid": 2, "CompositeSolid": 2}[g["type"]]
            for _ in range(depth):
                values = [v for part in values for v in part]
            counts.update(sem["surfaces"][v]["type"] for v in values)
    return counts


# -- real files ----------------------------------------------------------------------------------


@pytest.mark.realdata
def test_rotterdam_objects_attributes_and_surfaces(realdata):
    path = realdata / ROTTERDAM
    doc = json.loads(path.read_text())
    model = read_cityjson(path)
    assert model.version == "2.0" and model.crs is None and model.crs_declared is None
    assert sorted(model.ids.tolist()) == sorted(doc["CityObjects"])
    assert Counter(model.types.tolist()) == {"Building": 16}
    assert model.lods == ["2"] and list(model.object_lod) == ["2"] * 16
    for oid, attrs in zip(model.ids, model.attributes):
        assert attrs == doc["CityObjects"][oid]["attributes"]
    assert model.semantic_counts() == dict(file_surfaces(doc))
    # coordinates: the file's integers through its transform
    t = doc["transform"]
    np.testing.assert_array_equal(model.coords, np.array(doc["vertices"]) * t["scale"] + t["translate"])
    assert model.geometry_types == {"MultiSurface": 16} and not model.issues


@pytest.mark.realdata
def test_dh01_buildings_and_parts(realdata):
    path = realdata / DH01
    doc = json.loads(path.read_text())
    model = read_cityjson(path, crs="EPSG:7415")
    assert model.version == "1.1" and model.crs.to_epsg() == 7415
    objects = doc["CityObjects"]
    assert Counter(model.types.tolist()) == {"Building": 4, "BuildingPart": 8}
    for i, oid in enumerate(model.ids):
        assert model.parents[i] == (objects[oid].get("parents") or [None])[0]
        assert model.attributes[i] == objects[oid].get("attributes", {})
    # parts follow their Building, in the order the Building lists them
    row = {o: i for i, o in enumerate(model.ids)}
    for oid, obj in objects.items():
        kids = obj.get("children", [])
        assert [row[k] for k in kids] == list(range(row[oid] + 1, row[oid] + 1 + len(kids)))
    with_geometry = {oid for oid, obj in objects.items() if obj.get("geometry")}
    assert {model.ids[i] for i in np.unique(model.surface_object)} == with_geometry
    assert model.semantic_counts() == dict(file_surfaces(doc))


@pytest.mark.realdata
def test_real_invalid_surfaces_are_found(realdata):
    """The Rotterdam subset holds 12 surfaces of two distinct vertices ([a, a, b, b]): found,
    every other surface triangulated with normals that agree with its triangles."""
    model = read_cityjson(realdata / ROTTERDAM)
    coords = model.coords - model.coords.mean(axis=0)
    tri, tri_surface, normals, status = triangulate_surfaces(coords, model.ring_indices, model.ring_offsets, model.surface_offsets)
    assert Counter(status.tolist()) == {OK: model.n_surfaces - 12, TOO_FEW_VERTICES: 12}
    p = coords[model.ring_indices]
    face = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
    assert np.all(np.einsum("ij,ij->i", face, normals[tri_surface]) > 0)
    # roofs face up, grounds down, walls sideways (semantics and geometry agree)
    up = normals[:, 2]
    code = model.surface_semantic
    ok = status == OK
    assert np.all(up[ok & (code == surface_code("RoofSurface"))] > 0.2)
    assert np.all(up[ok & (code == surface_code("GroundSurface"))] < -0.99)
    assert np.all(np.abs(up[ok & (code == surface_code("WallSurface"))]) < 0.2)


# -- LoDs, sequences, templates --------------------------------------------------------------------


def test_lod_highest_by_default_and_fallback(tmp_path):
    path = cj.write(tmp_path / "two.city.json", cj.two_lod_city())
    model = read_cityjson(path)
    assert model.lods == ["1.2", "2.2"]
    lod = dict(zip(model.ids, model.object_lod))
    assert lod == {"A": "2.2", "A-1": "2.2", "B": "1.2", "C": "2.2"}
    assert dict(zip(model.ids, model.fallback)) == {"A": False, "A-1": False, "B": True, "C": False}
    a = model.surface_object == list(model.ids).index("A")
    top = model.coords[model.ring_indices[model.ring_offsets[model.surface_offsets[np.flatnonzero(a)[1]]]]][2]
    assert top == pytest.approx(cj.ORIGIN[2] + 12.0)  # the 2.2 roof


def test_lod_asked_for(tmp_path):
    path = cj.write(tmp_path / "two.city.json", cj.two_lod_city())
    model = read_cityjson(path, lod="1.2")
    lod = dict(zip(model.ids, model.object_lod))
    assert lod == {"A": "1.2", "A-1": None, "B": "1.2", "C": None}
    assert model.issues == {"city objects with no LoD at or below 1.2": 2}
    assert not model.fallback.any()
    with pytest.raises(CimInputError, match="LoD"):
        read_cityjson(path, lod="two")


def test_seq_reads_as_the_document(tmp_path):
    doc = cj.two_lod_city()
    a = read_cityjson(cj.write(tmp_path / "a.city.json", doc))
    (tmp_path / "a.city.jsonl").write_text(cj.to_seq(doc))
    b = read_cityjson(tmp_path / "a.city.jsonl")
    assert a.ids.tolist() == b.ids.tolist() and a.attributes == b.attributes
    np.testing.assert_array_equal(a.coords[a.ring_indices], b.coords[b.ring_indices])
    np.testing.assert_array_equal(a.ring_offsets, b.ring_offsets)
    np.testing.assert_array_equal(a.surface_semantic, b.surface_semantic)


def test_geometry_instances(tmp_path):
    """A template (a 2 m cube) placed twice: rotated 90° about z and scaled 2, then as it is."""
    v: list = []
    ref = len(v)
    v += [[1000, 2000, 0], [5000, 5000, 1000]]  # reference points (integers: 1 m, 2 m, 0 m ...)
    tv: list = []
    shell = cj.box(0, 0, 0, 2, 2, 2, tv)
    tv = [[x * cj.SCALE for x in p] for p in tv]
    rot = [0, -2, 0, 0, 2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1]
    ident = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    objects = {
        f"tree{i}": {
            "type": "SolitaryVegetationObject",
            "geometry": [{"type": "GeometryInstance", "template": 0, "boundaries": [ref + i], "transformationMatrix": m}],
        }
        for i, m in enumerate((rot, ident))
    }
    doc = cj.document(objects, v)
    doc["geometry-templates"] = {"templates": [cj.solid(shell, "3")], "vertices-templates": tv}
    model = read_cityjson(cj.write(tmp_path / "t.city.json", doc))
    assert model.lods == ["3"] and model.geometry_types == {"GeometryInstance": 2}
    for i, oid in enumerate(model.ids):
        mine = np.isin(np.repeat(np.repeat(model.surface_object, np.diff(model.surface_offsets)), np.diff(model.ring_offsets)), i)
        pts = model.coords[model.ring_indices[mine]]
        refpt = np.array(v[ref + i]) * cj.SCALE + cj.ORIGIN
        if oid == "tree0":  # x' = -2 y, y' = 2 x, z' = 2 z
            np.testing.assert_allclose(pts.min(axis=0) - refpt, [-4, 0, 0], atol=1e-9)
            np.testing.assert_allclose(pts.max(axis=0) - refpt, [0, 4, 4], atol=1e-9)
        else:
            np.testing.assert_allclose(pts.max(axis=0) - refpt, [2, 2, 2], atol=1e-9)
    assert model.semantic_counts() == {"RoofSurface": 2, "WallSurface": 8, "GroundSurface": 2}
    # the same as a CityJSONSeq: templates in the header, reference points in each feature
    (tmp_path / "t.city.jsonl").write_text(cj.to_seq(doc))
    seq = read_cityjson(tmp_path / "t.city.jsonl")
    np.testing.assert_array_equal(seq.coords[seq.ring_indices], model.coords[model.ring_indices])


# -- CRS, attributes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "https://www.opengis.net/def/crs/EPSG/0/7415",
        "http://www.opengis.net/def/crs/EPSG/0/7415",
        "urn:ogc:def:crs:EPSG::7415",
        "EPSG:7415",
    ],
)
def test_reference_systems(text):
    crs = parse_reference_system(text, where="f")
    assert crs.to_epsg() == 7415 and crs.is_compound
    assert horizontal_crs(crs).to_epsg() == 28992


def test_a_crs_that_is_none(tmp_path):
    doc = cj.two_lod_city()
    doc["metadata"]["referenceSystem"] = "https://www.opengis.net/def/crs/EPSG/0/999999999"
    with pytest.raises(CimCRSError, match="referenceSystem"):
        read_cityjson(cj.write(tmp_path / "x.json", doc))
    assert read_cityjson(tmp_path / "x.json", crs="EPSG:4544").crs.to_epsg() == 4544  # the override wins


def test_attribute_types():
    rows = [
        {"name": "a", "n": 1, "x": 1.5, "ok": True, "maybe": True, "tags": ["p"], "big": 2**40},
        {"name": None, "n": 2, "x": 2, "ok": False, "big": 3},
        {"n": None, "ok": True, "maybe": False, "mixed": 3},
        {"mixed": "three", "ok": False},
    ]
    columns, types = attribute_columns(rows)
    assert types == {
        "name": "STRING",
        "n": "INT32",
        "x": "FLOAT64",
        "ok": "BOOLEAN",
        "maybe": "STRING",
        "tags": "STRING",
        "big": "INT64",
        "mixed": "STRING",
    }
    assert columns["name"].tolist() == ["a", None, None, None]
    assert columns["n"][:2].tolist() == [1, 2] and np.isnan(columns["n"][2:]).all()
    assert columns["ok"].tolist() == [True, False, True, False]
    assert columns["maybe"].tolist() == ["true", None, "false", None]
    assert columns["tags"].tolist() == ['["p"]', None, None, None]
    assert columns["mixed"].tolist() == [None, None, "3", "three"]


# -- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty"),
        ('{"type": "CityJSON", "version": "2.0", "CityObjects": {"a": {"type": "Bui', "not valid JSON"),
        ('{"type": "FeatureCollection", "features": []}', "not a CityJSON file"),
        (
            '{"type": "CityJSON", "version": "3.0", "transform": {"scale": [1,1,1], "translate": [0,0,0]}, "CityObjects": {}, "vertices": []}',
            "version '3.0' is not supported",
        ),
        ('{"type": "CityJSON", "version": "2.0", "CityObjects": {}, "vertices": []}', "no 'transform'"),
        ('{"type": "CityJSON", "version": "2.0", "transform": {"scale": [1,1]}, "CityObjects": {}, "vertices": []}', "'transform' needs"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.city.json"
    path.write_text(content)
    with pytest.raises(CimInputError, match=match):
        read_cityjson(path)


def test_bad_geometries_are_counted_not_fatal(tmp_path):
    doc = cj.two_lod_city()
    objects = doc["CityObjects"]
    objects["C"]["geometry"][0]["boundaries"][0][2] = [[0, 1, 10**6]]  # a wall with a vertex out of range
    objects["D"] = {"type": "Building", "geometry": [{"type": "Polyhedron", "lod": "2", "boundaries": []}]}
    objects["E"] = {
        "type": "Building",
        "geometry": [{"type": "Solid", "lod": "2", "boundaries": [[[0, 1, 2]]]}],
    }  # a ring that is not a list of rings
    objects["F"] = {"type": "Building", "geometry": [{"type": "MultiLineString", "lod": "1", "boundaries": [[0, 1]]}]}
    model = read_cityjson(cj.write(tmp_path / "bad.json", doc))
    assert model.issues == {
        "surfaces with a vertex index out of range or a malformed ring": 1,
        "geometries of unknown type 'Polyhedron'": 1,
        "Solid geometries with malformed boundaries": 1,
        "MultiLineString geometries (no surfaces)": 1,
    }
    assert model.semantic_counts()["WallSurface"] == 4 * 4 - 1


def test_a_truncated_seq_line_is_counted(tmp_path):
    text = cj.to_seq(cj.two_lod_city())
    (tmp_path / "cut.city.jsonl").write_text(text[: text.rindex("}") - 5])  # the last feature cut short
    model = read_cityjson(tmp_path / "cut.city.jsonl")
    assert model.issues == {"invalid CityJSONFeature line (not JSON)": 1}
    assert model.ids.tolist() == ["A", "A-1", "B"]


# -- the triangulation ----------------------------------------------------------------------------------


def square(x0, y0, w, z=0.0, ccw=True):
    pts = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + w), (x0, y0 + w)]
    if not ccw:
        pts = pts[::-1]
    return [(x, y, z) for x, y in pts]


def run(rings_per_surface):
    coords, idx, ring_off, surf_off = [], [], [0], [0]
    for rings in rings_per_surface:
        for ring in rings:
            for p in ring:
                idx.append(len(coords))
                coords.append(p)
            ring_off.append(len(idx))
        surf_off.append(len(ring_off) - 1)
    c = np.array(coords, dtype=float)
    return c, triangulate_surfaces(c, np.array(idx), np.array(ring_off), np.array(surf_off))


def test_holes_planes_and_invalid_surfaces():
    tilt = np.radians(30)
    rot = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    holed = [square(0, 0, 10), square(3, 3, 4, ccw=False)]
    tilted = [[tuple(rot @ p) for p in ring] for ring in holed]
    concave = [[(0, 0, 0), (4, 0, 0), (4, 4, 0), (2, 1, 0), (0, 4, 0)]]
    bowtie = [[(0, 0, 0), (3, 3, 0), (3, 0, 0), (0, 1, 0)]]
    line = [[(0, 0, 0), (1, 0, 0), (2, 0, 0)]]
    two = [[(0, 0, 0), (1, 1, 1)]]
    coords, (tri, owner, normals, status) = run([holed, tilted, concave, bowtie, line, two])
    assert status.tolist() == [OK, OK, OK, SELF_INTERSECTING, ZERO_AREA, TOO_FEW_VERTICES]
    area = 0.5 * np.linalg.norm(np.cross(coords[tri[:, 1]] - coords[tri[:, 0]], coords[tri[:, 2]] - coords[tri[:, 0]]), axis=1)
    per = np.bincount(owner, weights=area, minlength=6)
    np.testing.assert_allclose(per[:3], [100 - 16, 100 - 16, 16 - 6])
    np.testing.assert_allclose(normals[1], rot @ [0, 0, 1], atol=1e-12)
    # no triangle inside the hole
    centroid = coords[tri[owner == 0]].mean(axis=1)
    assert not np.any((centroid[:, 0] > 3) & (centroid[:, 0] < 7) & (centroid[:, 1] > 3) & (centroid[:, 1] < 7))


def test_every_surface_type_has_a_code():
    assert all(surface_code(name) == code for code, name in SURFACE_TYPES.items() if 0 < code < 255)
    assert surface_code("+ThermalSurface") == 255 and surface_code(None) == 255


def test_fans_stars_and_malformed_indices(tmp_path):
    hexagon = [[(np.cos(a) * 3, np.sin(a) * 3, 1.0) for a in np.linspace(0, 2 * np.pi, 7)[:-1]]]
    star = [[(np.cos(a) * 3, np.sin(a) * 3, 0.0) for a in np.linspace(0, 4 * np.pi, 6)[:-1]]]  # a pentagram: every turn left, twice round
    coords, (tri, owner, _, status) = run([hexagon, star])
    assert status.tolist() == [OK, SELF_INTERSECTING]
    area = 0.5 * np.linalg.norm(np.cross(coords[tri[:, 1]] - coords[tri[:, 0]], coords[tri[:, 2]] - coords[tri[:, 0]]), axis=1)
    assert area.sum() == pytest.approx(1.5 * np.sqrt(3) * 9) and len(tri) == 4
    doc = cj.two_lod_city()
    walls = doc["CityObjects"]["C"]["geometry"][0]["boundaries"][0]
    walls[2] = [[0, 1.5, 2]]  # a float index
    walls[3] = [[0, [1], 2]]  # a nested list
    walls[4] = [[0, "a", 2]]  # text
    model = read_cityjson(cj.write(tmp_path / "bad.json", doc))
    assert model.issues == {"surfaces with a vertex index out of range or a malformed ring": 3}
    c = list(model.ids).index("C")
    assert (model.surface_object == c).sum() == 3


def test_multisolids_and_composite_surfaces(tmp_path):
    v: list = []
    a, b = cj.box(0, 0, 0, 4, 4, 3, v), cj.box(10, 0, 0, 4, 4, 6, v)
    c = cj.box(20, 0, 0, 4, 4, 3, v)
    sem = cj.BOX_SEMANTICS
    objects = {
        "ms": {
            "type": "Building",
            "geometry": [
                {
                    "type": "MultiSolid",
                    "lod": "2",
                    "boundaries": [[a], [b]],
                    "semantics": {"surfaces": sem["surfaces"], "values": [sem["values"], [[2, 2, 2, 2, 2, 2]]]},
                }
            ],
        },
        "cs": {
            "type": "Bridge",
            "geometry": [
                {
                    "type": "CompositeSurface",
                    "lod": "2",
                    "boundaries": c,
                    "semantics": {"surfaces": [{"type": "RoofSurface"}], "values": [0, None, 0, None, None, None]},
                }
            ],
        },
    }
    model = read_cityjson(cj.write(tmp_path / "m.json", cj.document(objects, v)))
    assert model.geometry_types == {"MultiSolid": 1, "CompositeSurface": 1}
    ms, cs = list(model.ids).index("ms"), list(model.ids).index("cs")
    codes = {name: model.surface_semantic[model.surface_object == row].tolist() for name, row in (("ms", ms), ("cs", cs))}
    assert codes["ms"] == [3, 1, 2, 2, 2, 2] + [2] * 6
    assert codes["cs"] == [1, 0, 1, 0, 0, 0]
