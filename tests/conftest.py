"""Shared fixtures: the built tiny city, the real third-party data, the glTF validator."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import cim

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
VALIDATOR = REPO / "tests" / "tools" / "validate_gltf.mjs"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata, or a skip that says why."""
    if not (REALDATA / "SOURCES.md").exists():
        pytest.skip(f"real third-party data not found at {REALDATA} (the ../shared folder beside the checkout)")
    return REALDATA


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> "cim.samplecity.SampleCity":
    """The tiny preset's sources (read-only for tests: copy before changing)."""
    return cim.sample("tiny", tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_city(tiny_sources, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny city built with small tiles, so that it has a real tree of levels of detail."""
    out = tmp_path_factory.mktemp("tiny-tiles") / "tianshui"
    text = tiny_sources.recipe.read_text().replace("cim_level = 2", "cim_level = 2\nmax_features = 24")
    recipe = tiny_sources.root / "city-small-tiles.toml"
    recipe.write_text(text)
    cim.build(recipe, out)
    return out


def validate_glbs(paths: list[Path]) -> list[dict]:
    """Run the Khronos glTF validator (npm gltf-validator) on GLB files; one report each."""
    node = shutil.which("node")
    if node is None or not (REPO / "viewer" / "node_modules" / "gltf-validator").exists():
        pytest.skip("Khronos gltf-validator not installed (make test runs `npm ci` in viewer/)")
    reports = []
    for i in range(0, len(paths), 200):
        proc = subprocess.run([node, str(VALIDATOR), *map(str, paths[i : i + 200])], capture_output=True, text=True, timeout=300)
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert len(lines) == len(paths[i : i + 200]), proc.stderr
        reports += lines
    return reports
