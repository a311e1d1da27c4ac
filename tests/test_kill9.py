"""``cim build`` killed with SIGKILL at random (seeded) moments of its buildings and point-cloud
layers, first builds and rebuilds alike: while it lies killed, every published ``tileset.json``
and ``city.json`` names only files that exist; run again, it finishes with the output of an
uninterrupted build; and no temporary file is left behind.
"""

from __future__ import annotations

import json
import math
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
from tests.helpers.cities import assert_same_city

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


def published(root: Path, name: str) -> list[Path]:
    """The city's files called ``name``, hidden folders (build history, layer caches) left out."""
    return [p for p in root.rglob(name) if not any(part.startswith(".") for part in p.relative_to(root).parts)]


def available_terrain(layer_json: Path) -> list[Path]:
    """Tiles a quantized-mesh ``layer.json`` declares available (its ``available`` ranges)."""
    doc = json.loads(layer_json.read_text())
    template = doc["tiles"][0].split("?")[0]
    out = []
    for z, ranges in enumerate(doc.get("available", [])):
        for r in ranges:
            for x in range(r["startX"], r["endX"] + 1):
                for y in range(r["startY"], r["endY"] + 1):
                    out.append(layer_json.parent / template.format(z=z, x=x, y=y))
    return out


def covered_imagery(index: Path) -> list[Path]:
    """Tiles an imagery index's bounds cover at each of its zooms (Web Mercator, xyz)."""
    doc = json.loads(index.read_text())
    west, south, east, north = doc["bounds"]

    def tile(lon: float, lat: float, z: int) -> tuple[int, int]:
        n = 2**z
        y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
        return int((lon + 180.0) / 360.0 * n), int(y)

    out = []
    for z in range(doc["minzoom"], doc["maxzoom"] + 1):
        (x0, y0), (x1, y1) = tile(west, north, z), tile(east, south, z)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                out.append(index.parent / doc["tiles"][0].format(z=z, x=x, y=y))
    return out


def missing_names(root: Path) -> list[str]:
    """Files a published index names that do not exist: a tileset's contents, a terrain's
    available tiles, an imagery layer's tiles within its bounds, city.json's layers."""
    missing = []
    for tileset in published(root, "tileset.json"):
        missing += [str(p) for p in named_files(tileset) if not p.exists()]
    for layer_json in published(root, "layer.json"):
        missing += [str(p) for p in available_terrain(layer_json) if not p.exists()]
    for index in published(root, "imagery.json"):
        missing += [str(p) for p in covered_imagery(index) if not p.exists()]
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


#: the tiny city's layers besides the buildings and the lidar (killed above, in first builds and
#: rebuilds), in build order: one kill in each
OTHER_LAYERS = ("terrain", "imagery", "bim", "reality")


def kill_in(recipe: Path, out: Path, layer: str, rng: random.Random, attempts: int = 4) -> bool:
    """Start ``cim build`` and SIGKILL it at a random moment of ``layer``'s build (from its build
    log's first write on). When the build finished first, the layer's folder is removed (the next
    build makes the layer again; ``city.json``, which names it, with it) and a shorter delay is
    tried; False when no attempt landed."""
    for attempt in range(attempts):
        since = time.time_ns()
        proc = cim_build(recipe, out)
        if kill_when(proc, out / layer / ".cim-build.jsonl", rng.uniform(0.0, 0.4) / 4**attempt, since):
            return True
        assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
        shutil.rmtree(out / layer)
        (out / "city.json").unlink()  # it named the layer just removed: nothing is published now
    return False


def finish(recipe: Path, out: Path) -> None:
    """Run the build to its end, and check what it left."""
    proc = cim_build(recipe, out)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert missing_names(out) == []
    assert leftovers(out) == []


def test_kill9_in_every_layer_kind_then_rerun(tiny_sources, tiny_city, tmp_path):
    """Terrain (quantized mesh), imagery, BIM and the reality mesh, each killed at a random
    moment of its first build: no published index names a missing file, and the rerun gives the
    uninterrupted build (the ``tiny_city`` fixture, built from the same recipe), byte for byte."""
    recipe = tiny_sources.root / "city-small-tiles.toml"  # what tiny_city was built from
    out = tmp_path / "city"
    rng = random.Random(27)
    killed = []
    for layer in OTHER_LAYERS:
        if kill_in(recipe, out, layer, rng):
            killed.append(layer)
            assert missing_names(out) == [], layer
    finish(recipe, out)
    layers = [layer["id"] for layer in json.loads((tiny_city / "city.json").read_text())["layers"]]
    assert set(OTHER_LAYERS) <= set(layers)
    assert_same_city(tiny_city, out, only=[*layers, "city.json", "search.sqlite"])
    assert len(killed) >= 3, killed  # the checks saw killed builds of (nearly) every kind


def test_kill9_in_a_cityjson_layer_then_rerun(tmp_path):
    """A CityJSON layer (in small tiles, so that its build lasts), killed twice at random moments."""
    from tests.helpers.cityjson import box, document, solid, write

    vertices: list = []
    objects = {
        f"b{i}": {
            "type": "Building",
            "attributes": {"name": f"楼 {i}", "floors": 1 + i % 9},
            "geometry": [solid(box(30.0 * (i % 20), 30.0 * (i // 20), 0.0, 12.0, 10.0, 3.0 * (1 + i % 9), vertices), "1.2")],
        }
        for i in range(400)
    }
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "city.json", document(objects, vertices))
    recipe = tmp_path / "city.toml"
    recipe.write_text(
        '[city]\nname = "cj"\ncrs = "EPSG:4544"\n\n[[layers]]\nid = "cj"\nkind = "cityjson"\nsource = "data/city.json"\nmax_features = 4\n'
    )
    reference = tmp_path / "reference"
    cim.build(recipe, reference)
    out = tmp_path / "city"
    rng = random.Random(5)
    kills = 0
    for _ in range(2):
        if kill_in(recipe, out, "cj", rng):
            kills += 1
            assert missing_names(out) == []
    finish(recipe, out)
    assert_same_city(reference, out)
    assert kills >= 1
