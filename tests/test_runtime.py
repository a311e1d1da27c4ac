"""Process-wide choices: a library call leaves the garbage collector alone and never forks; a
caller that owns its process opts in to both with ``process_policy``. And the typed warnings a
build reports."""

from __future__ import annotations

import gc
import json
import os
import warnings
from pathlib import Path

import pytest

import cim
from cim.runtime import policy, process_policy
from cim.warnings import CimWarning, FeatureSkippedWarning


def small_city(tiny_sources, folder: Path) -> Path:
    """A recipe of the tiny city's footprints (whose search rows a writer may fork for) and one
    BIM model (whose geometry process may fork)."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "city.toml"
    recipe.write_text(
        '[city]\nname = "small"\ncrs = "EPSG:4544"\n\n'
        f'[[layers]]\nid = "buildings"\nkind = "buildings"\nsource = "{tiny_sources.buildings.as_posix()}"\n\n'
        f'[[layers]]\nid = "bim"\nkind = "bim"\nsource = "{tiny_sources.ifc[0].as_posix()}"\n'
    )
    return recipe


def kernel_processes(out: Path) -> list[dict]:
    """The geometry-process counts of every BIM model under ``out``."""
    return [json.loads(p.read_text())["extras"]["cim"]["kernel_processes"] for p in sorted(out.glob("**/models/*/tileset.json"))]


@pytest.fixture
def forks(monkeypatch) -> list[int]:
    """The pids os.fork returned in this process while the test ran (children exit before they
    could append)."""
    calls: list[int] = []
    real = os.fork

    def counting_fork() -> int:
        pid = real()
        if pid:
            calls.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting_fork)
    return calls


def probe(seen: list[tuple[bool, int]]):
    """A progress callback that records the collector's state whenever the build reports."""

    def progress(stage: str, done: int, total: int) -> None:
        seen.append((gc.isenabled(), gc.get_freeze_count()))

    return progress


def test_a_library_build_leaves_the_collector_alone_and_does_not_fork(tiny_sources, tmp_path, forks):
    assert policy().fork is False and policy().pause_gc is False  # the library's default
    assert gc.isenabled()
    # start from a collector with nothing frozen: a CLI command run in this process before (the
    # CLI freezes what its imports made) leaves objects frozen, and one of them dying during the
    # build would lower the count without the build having touched the collector
    gc.unfreeze()
    frozen = gc.get_freeze_count()
    seen: list[tuple[bool, int]] = []
    out = tmp_path / "out"
    cim.build(small_city(tiny_sources, tmp_path), out, progress=probe(seen))
    assert seen, "the build reported no progress"
    assert set(seen) == {(True, frozen)}  # enabled and nothing frozen, all along
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    assert forks == []
    (model,) = kernel_processes(out)
    assert model["forked"] == 0 and model["started"] + model["in_process"] >= 1


def test_a_library_convert_leaves_the_collector_alone_and_does_not_fork(tiny_sources, tmp_path, forks):
    gc.unfreeze()  # as above
    frozen = gc.get_freeze_count()
    seen: list[tuple[bool, int]] = []
    cim.convert("bim", tiny_sources.ifc[0], tmp_path / "bim", progress=probe(seen))
    cim.convert("buildings", tiny_sources.buildings, tmp_path / "fp", progress=probe(seen))
    assert seen and set(seen) == {(True, frozen)}
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    assert forks == []
    (model,) = kernel_processes(tmp_path / "bim")
    assert model["forked"] == 0


def test_the_process_policy_pauses_the_collector_and_forks(tiny_sources, tmp_path, forks):
    gc.unfreeze()  # start from a collector with nothing frozen
    seen: list[tuple[bool, int]] = []
    out = tmp_path / "out"
    with process_policy(fork=True, pause_gc=True) as chosen:
        assert chosen.fork and chosen.pause_gc and policy() == chosen
        cim.build(small_city(tiny_sources, tmp_path), out, progress=probe(seen))
    assert seen and all(not enabled and frozen > 0 for enabled, frozen in seen)  # paused, what was alive frozen
    assert gc.isenabled() and gc.get_freeze_count() == 0  # restored
    assert policy().fork is False and policy().pause_gc is False
    (model,) = kernel_processes(out)
    assert model["forked"] == 1  # the geometry process shares the parsed model
    assert forks, "nothing forked under the policy"


def test_the_policy_restores_a_disabled_collector_and_nests():
    gc.disable()
    try:
        with process_policy(pause_gc=True):
            with process_policy(fork=True, pause_gc=True):
                assert not gc.isenabled() and policy().fork
            assert not gc.isenabled() and not policy().fork
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
    with process_policy(pause_gc=True):
        assert not gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_policy_is_restored_after_an_error():
    with pytest.raises(RuntimeError), process_policy(fork=True, pause_gc=True):
        raise RuntimeError("boom")
    assert gc.isenabled() and policy().fork is False


# -- typed warnings --------------------------------------------------------------------------


def footprints_with_a_bad_one(folder: Path) -> Path:
    """Four footprints in lon/lat; "flat" has zero area (its corners on one line)."""
    folder.mkdir(parents=True, exist_ok=True)

    def square(x: float, y: float) -> list:
        d = 0.0002
        return [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]

    features = [
        {
            "type": "Feature",
            "properties": {"id": f"b{i}", "height": 10.0 + i, "floors": 3},
            "geometry": {"type": "Polygon", "coordinates": square(105.72 + 0.0005 * i, 34.58)},
        }
        for i in range(3)
    ]
    features.append(
        {
            "type": "Feature",
            "properties": {"id": "flat", "height": 10.0, "floors": 3},
            "geometry": {"type": "Polygon", "coordinates": [[[105.73, 34.58], [105.7302, 34.58], [105.7304, 34.58], [105.73, 34.58]]]},
        }
    )
    path = folder / "footprints.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    recipe = folder / "city.toml"
    recipe.write_text(f'[city]\nname = "w"\n\n[[layers]]\nid = "fp"\nkind = "buildings"\nsource = "{path.name}"\n')
    return recipe


def test_a_skipped_footprint_is_a_typed_warning_kept_in_the_result(tmp_path):
    recipe = footprints_with_a_bad_one(tmp_path / "src")
    with pytest.warns(FeatureSkippedWarning, match=r"fp: footprints\.geojson: skipped 1 footprint.*flat") as record:
        report = cim.build(recipe, tmp_path / "out")
    (layer,) = report.layers
    assert layer.count == 3 and layer.skipped == 1
    skipped = [w for w in layer.warnings if isinstance(w, FeatureSkippedWarning)]
    assert len(skipped) == 1 and "flat" in str(skipped[0])
    assert all(isinstance(w, CimWarning) for w in layer.warnings)
    assert [str(w.message) for w in record if w.category is FeatureSkippedWarning] == [str(skipped[0])]


def test_a_skipped_footprint_can_be_made_an_error(tmp_path):
    recipe = footprints_with_a_bad_one(tmp_path / "src")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatureSkippedWarning)
        with pytest.raises(FeatureSkippedWarning, match="flat"):
            cim.build(recipe, tmp_path / "out")
    assert not (tmp_path / "out" / "city.json").exists()
