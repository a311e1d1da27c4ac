"""``cim build`` killed with SIGKILL at random (seeded) moments of its buildings and point-cloud
layers, first builds and rebuilds alike: while it lies killed, every published ``tileset.json``
and ``city.json`` names only files that exist; run again, it finishes with the output of an
uninterrupted build; and no temporary file is left behind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cim
from tests.helpers.cities import sqlite_rows, without_seconds

RECIPE = """
[city]
name = "kill"
crs = "EPSG:4544"

[[layers]]
id = "buildings"
kind = "buildings"
source = "data/buildings.gpkg"
height = "height"
max_features = 8

[[layers]]
id = "lidar"
kind = "pointcloud"
source = "data/lidar"
leaf_points = 3000
"""

#: hidden files a finished build keeps: a layer's build log, the city's versions
KEPT_HIDDEN = {".cim-build.jsonl"}


def cim_build(recipe: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cim", "build", str(recipe), "--out", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def touched_since(path: Path, since_ns: int) -> bool:
    try:
        return path.stat().st_mtime_ns >= since_ns
    except FileNotFoundError:
        return False


def kill_when(proc: subprocess.Popen, ready: Path, delay: float, since_ns: int) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready`` was written (the layer's build log: its
    store is open and its tiles are being made); False when it finished first."""
    deadline = time.monotonic() + 120
    while not touched_since(ready, since_ns):
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{ready} never appeared")
        time.sleep(0.005)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def named_files(tileset: Path) -> list[Path]:
    """Files a tileset names: its tiles' contents, and external tilesets' files in turn."""
    doc = json.loads(tileset.read_text())
    out: list[Path] = []
    stack = [doc["root"]]
    while stack:
        tile = stack.pop()
        contents = ([tile["content"]] if "content" in tile else []) + tile.get("contents", [])
        for content in contents:
            uri = content.get("uri") or content.get("url")
            if uri and "{" not in uri:  # implicit tiling templates name no single file
                out.append(tileset.parent / uri)
                if uri.endswith(".json"):
                    out.extend(named_files(tileset.parent / uri))
        stack.extend(tile.get("children", []))
    return out


def missing_names(root: Path) -> list[str]:
    """Files a published index names that do not exist."""
    missing = []
    for tileset in root.rglob("tileset.json"):
        missing += [str(p) for p in named_files(tileset) if not p.exists()]
    city = root / "city.json"
    if city.exists():
        for layer in json.loads(city.read_text())["layers"]:
            target = root / layer["url"].split("{")[0]
            if not target.exists():
                missing.append(str(target))
    return missing


def leftovers(root: Path) -> list[str]:
    """Hidden files and folders a finished build should not keep (temporary ones)."""
    found = []
    for folder, dirs, names in os.walk(root):
        rel = Path(folder).relative_to(root)
        if rel.parts[:1] == (".cim",):
            found += [str(rel / n) for n in names if n.endswith(".tmp")]
            continue
        found += [str(rel / d) for d in dirs if d.startswith(".") and d != ".cim"]
        found += [str(rel / n) for n in names if n.startswith(".") and n not in KEPT_HIDDEN]
    return found


def city_files(root: Path) -> dict[str, bytes]:
    out = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                p = Path(folder, name)
                out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def assert_same_city(a: Path, b: Path) -> None:
    fa, fb = city_files(a), city_files(b)
    assert sorted(fa) == sorted(fb)
    for rel in fa:
        if rel == "city.json":
            assert without_seconds(json.loads(fa[rel])) == without_seconds(json.loads(fb[rel]))
        elif rel.endswith(".sqlite"):
            assert sqlite_rows(a / rel) == sqlite_rows(b / rel)
        else:
            assert fa[rel] == fb[rel], rel


@pytest.fixture(scope="module")
def recipe(tiny_sources, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill-src")
    data = Path(tiny_sources.recipe).parent / "data"
    (root / "data").mkdir()
    shutil.copy(data / "buildings.gpkg", root / "data" / "buildings.gpkg")
    shutil.copytree(data / "lidar", root / "data" / "lidar")
    (root / "city.toml").write_text(RECIPE)
    return root / "city.toml"


@pytest.fixture(scope="module")
def reference(recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill-ref") / "city"
    cim.build(recipe, out)  # uninterrupted (in this process: the same bytes, see test_determinism)
    return out


def test_kill9_at_random_moments_then_rerun(recipe, reference, tmp_path):
    rng = random.Random(15)
    out = tmp_path / "city"
    kills = published = 0
    # a first build, then a rebuild after the sources were touched (new build keys: every job
    # runs again, over published layers whose files it replaces)
    for stage in ("first", "rebuild"):
        if stage == "rebuild":
            for src in [recipe.parent / "data" / "buildings.gpkg", *sorted((recipe.parent / "data" / "lidar").glob("*.laz"))[:2]]:
                os.utime(src)
        for layer in ("buildings", "lidar"):
            # on a quiet machine a tiny layer can finish inside the delay: then its sources are
            # touched (new build keys: the layer runs again) and it is tried with a shorter one
            for attempt in range(6):
                if attempt:
                    for src in [recipe.parent / "data" / "buildings.gpkg", *(recipe.parent / "data" / "lidar").glob("*.laz")]:
                        os.utime(src)
                since = time.time_ns()
                proc = cim_build(recipe, out)
                if kill_when(proc, out / layer / ".cim-build.jsonl", rng.uniform(0.0, 0.3) / 4**attempt, since):
                    kills += 1
                    assert missing_names(out) == [], (stage, layer)
                    published += (out / layer / "tileset.json").exists()
                    break
                assert proc.returncode == 0
        proc = cim_build(recipe, out)
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode() if proc.stderr else ""
        assert missing_names(out) == []
        assert leftovers(out) == []
        assert_same_city(reference, out)
    assert kills >= 2 and published >= 1, (kills, published)  # the checks saw killed builds
