"""Tiny models of simple planar solids are made in this process (no geometry process): which
models qualify, that the meshes and the layer are the same as from a process, and that the bound
holds because what cannot be bounded is never let in (an in-process C++ call cannot be stopped)."""

from __future__ import annotations

import json
from pathlib import Path

import ifcopenshell
import ifcopenshell.guid
import numpy as np
import pytest

import cim
import cim.sources.ifc.simple as ifc_simple
from cim.runtime import process_policy
from cim.samplecity.bim import write_sample_ifc
from cim.sources.ifc import GeometryLog, GeometryOptions, GeometryStream, IfcElementIndex, iter_element_geometry, open_ifc
from cim.sources.ifc.kernel import excluded_classes
from cim.sources.ifc.simple import simple_model
from tests.helpers.bim import CITY, SMALL_SPEC, add_broken_proxy, add_swiss_cheese_wall, body, city_frame, placement, storey, variant

#: enough for the 16-element sample building (walls with openings, slabs, doors, windows)
MANY = 1000


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_sample_ifc(tmp_path_factory.mktemp("inproc") / "small.ifc", **SMALL_SPEC)


@pytest.fixture(scope="module")
def one_wall(tmp_path_factory) -> Path:
    """The sample building cut down to one wall with its openings (and what fills them removed)."""
    f = ifcopenshell.open(str(write_sample_ifc(tmp_path_factory.mktemp("inproc1") / "base.ifc", **SMALL_SPEC)))
    walls = [w for w in f.by_type("IfcWall") if any(r.is_a("IfcRelVoidsElement") for r in f.get_inverse(w))]
    keep = walls[0]
    for p in f.by_type("IfcProduct"):
        if p.Representation is not None and p != keep and not p.is_a("IfcOpeningElement") and not p.is_a("IfcSite"):
            p.Representation = None
    path = tmp_path_factory.mktemp("inproc2") / "one_wall.ifc"
    f.write(str(path))
    return path


def _expected(path: Path) -> dict:
    return IfcElementIndex(open_ifc(path)).body_candidates()


def _admits(path: Path, max_elements: int = MANY) -> bool:
    f = open_ifc(path)
    return simple_model(f, path, excluded_classes(f), max_elements)


def add_round_column(f: ifcopenshell.file) -> str:
    """A column of circular section: its faces are curved, approximated to a tolerance."""
    solid = f.createIfcExtrudedAreaSolid(
        f.createIfcCircleProfileDef("AREA", None, None, 200.0), None, f.createIfcDirection((0.0, 0.0, 1.0)), 3000.0
    )
    column = f.createIfcColumn(ifcopenshell.guid.new(), None, "round", None, None, placement(f, 1000, 1000, 0), body(f, solid), None)
    f.createIfcRelContainedInSpatialStructure(ifcopenshell.guid.new(), None, None, None, [column], storey(f))
    return column.GlobalId


def test_which_models_are_made_in_this_process(small, one_wall, tmp_path, monkeypatch):
    assert _admits(one_wall, 8) and len(_expected(one_wall)) == 1
    assert _admits(small) and not _admits(small, len(_expected(small)) - 1)  # too many elements
    assert not _admits(small, 0)
    curved, _ = variant(small, tmp_path, add_round_column)
    assert not _admits(curved)
    cheese, _ = variant(small, tmp_path, lambda f: add_swiss_cheese_wall(f, openings=ifc_simple.MAX_OPENINGS + 1))
    assert not _admits(cheese)
    monkeypatch.setattr(ifc_simple, "MAX_BYTES", one_wall.stat().st_size - 1)
    assert not _admits(one_wall)  # a large file is never scanned


def test_in_process_meshes_are_those_of_a_process(small):
    here, hlog = {}, GeometryLog()
    here = {
        g.guid: g
        for g in iter_element_geometry(small, _expected(small), GeometryOptions(in_process_elements=MANY), hlog, file=open_ifc(small))
    }
    there, tlog = {}, GeometryLog()
    with process_policy(fork=True):  # as the cim command: the geometry process is forked
        there = {
            g.guid: g
            for g in iter_element_geometry(
                small, _expected(small), GeometryOptions(start="process", in_process_elements=MANY), tlog, file=open_ifc(small)
            )
        }
    assert (hlog.in_process, hlog.processes) == (True, 0)
    assert (tlog.in_process, tlog.processes, tlog.forked) == (False, 1, 1)
    assert set(here) == set(there) == {g for g, _ in _expected(small).values()}
    for guid, a in here.items():
        b = there[guid]
        for k in ("vertices", "normals", "triangles", "tri_material", "materials"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_in_process_failures_are_reported_as_from_a_process(small, tmp_path):
    """An element the iterator skips silently is made again alone, in this process too, to
    learn why."""
    path, (broken,) = variant(small, tmp_path, add_broken_proxy)
    assert _admits(path)
    log = GeometryLog()
    got = {
        g.guid for g in iter_element_geometry(path, _expected(path), GeometryOptions(in_process_elements=MANY), log, file=open_ifc(path))
    }
    plog = GeometryLog()
    list(
        iter_element_geometry(path, _expected(path), GeometryOptions(start="process", in_process_elements=MANY), plog, file=open_ifc(path))
    )
    assert log.in_process and log.processes == 0 and log.stalls == 0
    assert [x[:2] for x in log.failed] == [(broken, "IfcBuildingElementProxy")] and log.failed == plog.failed
    assert got == {g for g, _ in _expected(path).values()} - {broken}


def test_what_cannot_be_bounded_goes_to_a_process_even_when_small(small, tmp_path):
    """However high the element limit, a wall whose booleans run for seconds is not let in: it
    goes to a geometry process and is stopped by the element timeout."""
    path, (cheese,) = variant(small, tmp_path, add_swiss_cheese_wall)
    log = GeometryLog()
    options = GeometryOptions(max_voids=0, element_timeout=1.0, in_process_elements=MANY)
    got = {g.guid for g in iter_element_geometry(path, _expected(path), options, log, file=open_ifc(path))}
    assert not log.in_process and log.processes >= 2
    assert log.timed_out == [(cheese, "IfcWall")]
    assert got == {g for g, _ in _expected(path).values()} - {cheese}


def test_no_file_no_in_process(one_wall):
    """Without the parsed file (the next model of a layer, parsed by its own process) the model
    goes to a process; and a stream closed unread is no trouble."""
    with GeometryStream(one_wall, GeometryOptions()) as stream:
        kernel = stream._first  # a geometry process: forked where allowed, else a fresh interpreter
        assert not stream.in_process and (kernel.pid is not None or kernel.proc is not None)
    stream = GeometryStream(one_wall, GeometryOptions(), file=open_ifc(one_wall))
    assert stream.in_process and stream._first.pid is None
    stream.close()


def _layer(path: Path, out: Path, start: str) -> dict:
    result = cim.build_layer("bim", [path], out, frame=city_frame(), crs="EPSG:4544", start=start)
    return result.info.models[0]


def test_layer_made_in_process_is_the_same(one_wall, tmp_path):
    """The same files, byte for byte, whether the model is made in this process or in a forked
    geometry process (forking allowed, as the cim command allows it)."""
    here, there = tmp_path / "here", tmp_path / "there"
    _layer(one_wall, here, "auto")
    with process_policy(fork=True):
        _layer(one_wall, there, "process")
    files = sorted(p.relative_to(here).as_posix() for p in here.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert files == sorted(p.relative_to(there).as_posix() for p in there.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert any(f.endswith(".glb") for f in files)
    for rel in files:
        a, b = (here / rel).read_bytes(), (there / rel).read_bytes()
        if rel.endswith("tileset.json"):
            a, b = json.loads(a), json.loads(b)
            for doc in (a, b):  # how and how long: not content
                facts = doc.get("extras", {}).get("cim", {})
                for k in ("seconds", "kernel_peak_mb", "kernel_processes"):
                    facts.pop(k, None)
        assert a == b, rel
    summary = json.loads((here / "models" / "one_wall" / "tileset.json").read_text())["extras"]["cim"]
    assert summary["kernel_processes"] == {"started": 0, "forked": 0, "in_process": True}
    summary = json.loads((there / "models" / "one_wall" / "tileset.json").read_text())["extras"]["cim"]
    assert summary["kernel_processes"] == {"started": 1, "forked": 1, "in_process": False}


# -- the layer's set-up -------------------------------------------------------------------------


def test_layer_inputs_are_checked_in_order(one_wall, tmp_path):
    """A bad CRS is reported before a bad file, by the conversion and by the layer alone (it
    parses its CRS before any file is read), a missing file as a cim error (not a bare
    FileNotFoundError), and a file named twice is converted twice."""
    from cim.errors import CimCRSError, CimInputError, CimIOError

    bad = tmp_path / "bad.ifc"
    bad.write_text("not a STEP file\n")
    with pytest.raises(CimCRSError, match="EPSG:999999"):
        cim.convert_bim(bad, tmp_path / "a", crs="EPSG:999999")
    with pytest.raises(CimCRSError, match="layer bim: crs.*EPSG:999999"):
        cim.build_layer("bim", [bad], tmp_path / "a1", frame=city_frame(), crs="EPSG:999999")
    with pytest.raises(CimCRSError, match="layer bim: crs.*EPSG:999999"):
        cim.build_layer(
            "bim", [one_wall], tmp_path / "a2", frame=city_frame(), crs="EPSG:999999", origin=(CITY["easting"], CITY["northing"], 1100.0)
        )
    with pytest.raises(CimInputError, match="not a readable IFC"):
        cim.build_layer("bim", [bad], tmp_path / "b", frame=city_frame(), crs="EPSG:4544")
    with pytest.raises(CimIOError, match="no such IFC"):
        cim.build_layer("bim", [tmp_path / "missing.ifc"], tmp_path / "c", frame=city_frame(), crs="EPSG:4544")
    result = cim.build_layer("bim", [one_wall, one_wall], tmp_path / "d", frame=city_frame(), crs="EPSG:4544")
    assert [m["model"] for m in result.info.models] == ["one_wall", "one_wall-2"] and result.count == 2


def test_kernel_error_in_process_is_handled_as_a_crash(small, monkeypatch):
    """An exception from the iterator in this process is what a crashed process is: the
    elements are then made one at a time (still here), and all come."""
    import ifcopenshell.geom

    def broken(*args, **kwargs):
        raise RuntimeError("iterator refused")

    monkeypatch.setattr(ifcopenshell.geom, "iterator", broken)
    log = GeometryLog()
    got = {
        g.guid for g in iter_element_geometry(small, _expected(small), GeometryOptions(in_process_elements=MANY), log, file=open_ifc(small))
    }
    assert log.in_process and log.processes == 0 and log.stalls == 1
    assert got == {g for g, _ in _expected(small).values()} and not log.failed
