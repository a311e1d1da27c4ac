"""The same inputs give the same city, byte for byte: built twice, built on one worker or two,
built in one go or interrupted in the middle of a layer and resumed.

Only the fields that measure the run are left out of the comparison: JSON keys named
``seconds``, ``kernel_peak_mb`` and ``kernel_processes`` wherever they occur, and what follows
from their text alone (the size of a file that carries them, as a layer's build log records it
and ``city.json`` adds it up). The search index is compared by its rows (SQLite pages may differ
for the same rows), and a layer's build log (``.cim-build.jsonl``) as the files it records,
since it is a journal written in the order jobs finish.
"""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

import cim
from cim.store import LOG_NAME
from tests.helpers.cities import sqlite_rows as rows
from tests.helpers.cities import without_timing


def logged(path: Path) -> tuple[str, dict[str, int]]:
    """A build log's key and the files it records, with their sizes."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    entries = {e["file"]: e["size"] for e in lines[1:]}
    assert len(entries) == len(lines) - 1, f"{path}: a file logged twice"
    return lines[0]["key"], entries


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two JSON documents differ (paths of keys), for a readable failure."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}/{i}")]
    return [] if a == b else [f"{where}: {str(a)[:80]} != {str(b)[:80]}"]


def files(root: Path) -> list[str]:
    """The city's files, its history (``.cim/``: versions with their build times) left out."""
    return sorted(rel for p in root.rglob("*") if p.is_file() and not (rel := p.relative_to(root).as_posix()).startswith(".cim/"))


def assert_same_city(a: Path, b: Path) -> None:
    names = files(a)
    assert names == files(b)
    assert len(names) > 100 and "city.json" in names and "search.sqlite" in names
    differ: dict[str, Any] = {}
    resized: dict[str, int] = {}  # files that differ in their timing fields alone: size b - a
    for name in names:
        x, y = (a / name).read_bytes(), (b / name).read_bytes()
        if x == y or name == "city.json" or name.endswith(LOG_NAME):
            continue
        if name.endswith(".sqlite"):
            if rows(a / name) != rows(b / name):
                differ[name] = "rows differ"
        elif name.endswith(".json"):
            found = differences(without_timing(json.loads(x)), without_timing(json.loads(y)))
            if found:
                differ[name] = found
            resized[name] = len(y) - len(x)
        else:
            differ[name] = "bytes differ"
    for name in names:
        if not name.endswith(LOG_NAME):
            continue
        (key_a, files_a), (key_b, files_b) = logged(a / name), logged(b / name)
        folder = name[: -len(LOG_NAME)]
        if key_a != key_b or set(files_a) != set(files_b):
            differ[name] = "another key or other files"
        elif any(files_b[f] - files_a[f] != resized.get(folder + f, 0) for f in files_a):
            differ[name] = "other sizes"
    city_a, city_b = (without_timing(json.loads((root / "city.json").read_text())) for root in (a, b))
    for layer_a, layer_b in zip(city_a["layers"], city_b["layers"]):
        prefix = layer_a["id"] + "/"
        slack = sum(d for f, d in resized.items() if f.startswith(prefix))
        assert layer_b["stats"]["bytes"] - layer_a["stats"]["bytes"] == slack, layer_a["id"]
        layer_a["stats"]["bytes"] = layer_b["stats"]["bytes"]
    found = differences(city_a, city_b)
    if found:
        differ["city.json"] = found
    assert differ == {}


@pytest.fixture(scope="module")
def reference(tiny_sources, tmp_path_factory) -> Path:
    """The tiny city built on one worker (every job in this process)."""
    out = tmp_path_factory.mktemp("reference") / "city"
    report = cim.build(tiny_sources.recipe, out, workers=1)
    assert all(layer.resumed_tiles == 0 for layer in report.layers)
    return out


def test_two_builds_on_one_worker_and_on_two_are_identical(tiny_sources, reference, tmp_path):
    """Two builds into two folders, the reference on one worker, this one on two: the same bytes
    whatever the order jobs finish in."""
    out = tmp_path / "again"
    cim.build(tiny_sources.recipe, out, workers=2)
    assert_same_city(reference, out)


def test_the_comparison_sees_a_changed_byte(reference, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    assert_same_city(reference, copy)
    tile = next(p for p in sorted((copy / "buildings").rglob("*.glb")))
    data = bytearray(tile.read_bytes())
    data[-1] ^= 1
    tile.write_bytes(bytes(data))
    with pytest.raises(AssertionError):
        assert_same_city(reference, copy)


def breaking(module: str, job: str, fail_at: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the ``fail_at``-th call of ``module.job`` raise what a user's ^C raises; returns the
    call counter."""
    mod = importlib.import_module(module)
    real = getattr(mod, job)
    calls = [0]
    lock = threading.Lock()

    def wrapped(state: Any, key: Any) -> Any:
        with lock:
            calls[0] += 1
            n = calls[0]
        if n == fail_at:
            raise KeyboardInterrupt
        return real(state, key)

    monkeypatch.setattr(mod, job, wrapped)
    return calls


def test_an_interrupted_build_resumes_to_the_same_city(tiny_sources, reference, tmp_path):
    """Interrupted in the imagery (the 9th of its 20 subtrees), rerun and interrupted again in the
    BIM layer (the second model's tiles), rerun to the end: the reference city, byte for byte,
    the last run resuming the tiles the others made."""
    out = tmp_path / "resumed"
    with pytest.MonkeyPatch.context() as mp:
        imagery_calls = breaking("cim.layers.imagery", "_render_subtree", 9, mp)
        with pytest.raises(KeyboardInterrupt):
            cim.build(tiny_sources.recipe, out)
    assert imagery_calls[0] >= 9
    assert not (out / "city.json").exists()
    assert (out / "terrain" / "layer.json").exists()  # built before the interruption
    assert not (out / "imagery" / "imagery.json").exists()

    with pytest.MonkeyPatch.context() as mp:
        imagery_again = breaking("cim.layers.imagery", "_render_subtree", 0, mp)  # counts, never breaks
        bim_calls = breaking("cim.layers.bim.model", "tile_job", 8, mp)
        with pytest.raises(KeyboardInterrupt):
            cim.build(tiny_sources.recipe, out)
    assert bim_calls[0] >= 8
    assert (out / "imagery" / "imagery.json").exists() and not (out / "bim" / "tileset.json").exists()
    assert imagery_again[0] > 0  # the imagery was finished by this rerun

    report = cim.build(tiny_sources.recipe, out)
    resumed = {lr.id: lr.resumed_tiles for lr in report.layers}
    tiles = {lr.id: lr.tiles for lr in report.layers}
    assert resumed["terrain"] == tiles["terrain"] > 0
    assert resumed["bim"] > 0
    assert resumed["buildings"] == 0
    assert_same_city(reference, out)
