"""Elements whose geometry fails or never ends: counted, reported, bounded; the model converts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cim
from cim.runtime import process_policy
from cim.samplecity.bim import write_sample_ifc
from cim.sources.ifc import GeometryLog, GeometryOptions, IfcElementIndex, iter_element_geometry, open_ifc
from cim.warnings import GeometryWarning
from tests.helpers.bim import SMALL_SPEC, add_broken_proxy, add_swiss_cheese_wall, city_frame, elements_of, variant


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_sample_ifc(tmp_path_factory.mktemp("robust") / "base.ifc", **SMALL_SPEC)


def test_failed_element_is_reported_and_the_model_converts(base, tmp_path):
    path, (broken,) = variant(base, tmp_path, add_broken_proxy)
    f = open_ifc(path)
    expected = IfcElementIndex(f).body_candidates()
    with pytest.warns(GeometryWarning, match=f"failed.*{re.escape(broken)}|{re.escape(broken)}.*failed"):
        result = cim.build_layer("bim", [path], tmp_path / "out", frame=city_frame(), crs="EPSG:4544")
    assert result.count == len(expected) - 1
    assert result.skipped == 1
    warning = next(w for w in result.warnings if "failed" in str(w))
    assert isinstance(warning, GeometryWarning) and broken in str(warning) and "IfcBuildingElementProxy" in str(warning)
    assert result.info.models[0]["failed"][0][:2] == [broken, "IfcBuildingElementProxy"]
    assert broken not in elements_of(tmp_path / "out")


@pytest.mark.parametrize("start", ["auto", "spawn"])
def test_pathological_element_is_stopped_by_the_timeout(base, tmp_path, start):
    """Bounded whether the geometry process is forked (sharing the parsed file: forking allowed, as
    the ``cim`` command allows it) or a fresh interpreter: the culprit is killed with its process,
    reported, and the rest still come."""
    path, (cheese,) = variant(base, tmp_path, add_swiss_cheese_wall)
    f = open_ifc(path)
    expected = IfcElementIndex(f).body_candidates()
    log = GeometryLog()
    options = GeometryOptions(max_voids=0, element_timeout=1.0, start=start)
    with process_policy(fork=True):
        got = {g.guid for g in iter_element_geometry(path, expected, options, log, file=f)}
    assert log.timed_out == [(cheese, "IfcWall")]
    assert got == {guid for guid, _ in expected.values()} - {cheese}
    assert log.stalls >= 1
    # the fast pass, the careful pass that found the culprit (and the fast pass over what is left)
    assert log.processes >= 2 and log.forked == (log.processes if start == "auto" else 0)


def test_max_voids_bounds_boolean_work(base, tmp_path):
    path, (cheese,) = variant(base, tmp_path, add_swiss_cheese_wall)
    with pytest.warns(GeometryWarning, match="openings"):
        result = cim.build_layer("bim", [path], tmp_path / "out", frame=city_frame(), crs="EPSG:4544", max_voids=256)
    assert result.skipped == 0
    warning = next(w for w in result.warnings if "openings" in str(w))
    assert isinstance(warning, GeometryWarning) and cheese in str(warning) and "1600 openings" in str(warning)
    assert cheese in elements_of(tmp_path / "out")
