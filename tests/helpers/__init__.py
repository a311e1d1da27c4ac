"""Helpers shared by the test modules (not tests, not fixtures: fixtures live in ``conftest.py``).

Test modules import from here, never from one another: ``tests.helpers.gltf`` (the Khronos
validator), ``tests.helpers.terrain``, ``tests.helpers.pointcloud`` and ``tests.helpers.bim``
(synthetic inputs and readers of each layer's output).
"""

from __future__ import annotations

from pathlib import Path

#: the checkout
REPO = Path(__file__).resolve().parents[2]
#: real third-party files (../shared/realdata beside the checkout)
REALDATA = REPO.parent / "shared" / "realdata"
