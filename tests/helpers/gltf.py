"""The Khronos glTF validator (npm ``gltf-validator``, installed in ``viewer/node_modules``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

VALIDATOR = REPO / "tests" / "tools" / "validate_gltf.mjs"


def validate_glbs(paths: list[Path]) -> list[dict]:
    """Run the Khronos glTF validator on GLB files; one report each (a skip when it is not installed)."""
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
