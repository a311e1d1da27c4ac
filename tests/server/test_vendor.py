"""``/vendor/NAME/``: the viewer's browser libraries from their npm packages (ECharts), and
nothing else of node_modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from cim.server import create_app

ECHARTS = b"export const init = () => {};"


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path):
    city = tmp_path / "city"
    city.mkdir()
    (city / "city.json").write_text('{"name": "t", "layers": []}')
    viewer = tmp_path / "viewer"
    dist = viewer / "node_modules" / "echarts" / "dist"
    dist.mkdir(parents=True)
    (viewer / "index.html").write_text("<!doctype html><title>t</title>")
    (dist / "echarts.esm.min.mjs").write_bytes(ECHARTS)
    (viewer / "node_modules" / "echarts" / "package.json").write_text('{"name": "echarts"}')
    (viewer / "node_modules" / "secret.js").write_text("no")
    app: web.Application = create_app(city, viewer)
    return await aiohttp_client(app)


async def test_a_vendored_library_is_served_as_a_module(client) -> None:
    response = await client.get("/vendor/echarts/echarts.esm.min.mjs")
    assert response.status == 200
    assert await response.read() == ECHARTS
    assert response.headers["Content-Type"].startswith("text/javascript")
    # the page may load it: the policy allows scripts from the server itself
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "path",
    [
        "/vendor/echarts/../package.json",
        "/vendor/echarts/%2e%2e/package.json",
        "/vendor/nope/echarts.esm.min.mjs",
        "/vendor/echarts/missing.js",
        "/node_modules/secret.js",
        "/node_modules/echarts/dist/echarts.esm.min.mjs",
    ],
)
async def test_nothing_else_of_node_modules_is_reachable(client, path: str) -> None:
    response = await client.get(path)
    assert response.status in (400, 403, 404), path
    assert await response.read() != ECHARTS


def test_the_viewer_package_pins_echarts() -> None:
    import json

    package = json.loads((Path(__file__).resolve().parents[2] / "viewer" / "package.json").read_text())
    version = package["dependencies"]["echarts"]
    assert version[0].isdigit(), f"echarts is not pinned to one version: {version}"
