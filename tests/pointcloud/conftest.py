"""Fixtures for the point-cloud tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.pointcloud import REAL_POINTCLOUDS


@pytest.fixture(scope="session")
def realpc() -> Path:
    """The real third-party point clouds (../shared/realdata/pointcloud), or a skip that says why."""
    if not (REAL_POINTCLOUDS / "laspy_simple.las").exists():
        pytest.skip(f"real third-party point clouds not found at {REAL_POINTCLOUDS} (../shared/realdata beside the checkout)")
    return REAL_POINTCLOUDS
