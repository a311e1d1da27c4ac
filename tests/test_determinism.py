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
    out = tmp_path_factory.mktemp("reference") / "city"
    cim.build(tiny_sources.recipe, out)
    return out


def test_two_builds_are_identical(tiny_sources, reference, tmp_path):
    """Two builds into two folders (the second with two workers named, the first with the
    default: the number of cores)."""
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


def test_one_worker_builds_what_two_build(tiny_sources, reference, tmp_path):
    out = tmp_path / "one"
    report = cim.build(tiny_sources.recipe, out, workers=1)
    assert_same_city(reference, out)
    assert all(layer.resumed_tiles == 0 for layer in report.layers)


INTERRUPTIONS = [
    # layer, module and tile job to break, the call that raises
    ("imagery", "cim.layers.imagery", "_render_subtree", 9),  # 20 subtrees
    ("bim", "cim.layers.bim.model", "tile_job", 8),  # the second model's tiles
]


@pytest.mark.parametrize("layer,module,job,fail_at", INTERRUPTIONS, ids=[i[0] for i in INTERRUPTIONS])
def test_an_interrupted_build_resumes_to_the_same_city(tiny_sources, reference, tmp_path, monkeypatch, layer, module, job, fail_at):
    mod = importlib.import_module(module)
    real = getattr(mod, job)
    calls = [0]
    lock = threading.Lock()

    def breaking(state: Any, key: Any) -> Any:
        with lock:
            calls[0] += 1
            n = calls[0]
        if n == fail_at:
            raise KeyboardInterrupt  # what a user's ^C raises
        return real(state, key)

    out = tmp_path / "resumed"
    monkeypatch.setattr(mod, job, breaking)
    with pytest.raises(KeyboardInterrupt):
        cim.build(tiny_sources.recipe, out)
    monkeypatch.setattr(mod, job, real)
    assert calls[0] >= fail_at
    assert not (out / "city.json").exists()
    assert (out / "terrain" / "layer.json").exists()  # built before the interruption
    assert not (out / layer / ("imagery.json" if layer == "imagery" else "tileset.json")).exists()

    report = cim.build(tiny_sources.recipe, out)
    resumed = {lr.id: lr.resumed_tiles for lr in report.layers}
    tiles = {lr.id: lr.tiles for lr in report.layers}
    assert resumed["terrain"] == tiles["terrain"] > 0
    assert resumed[layer] > 0
    assert resumed["buildings"] == 0
    assert_same_city(reference, out)
