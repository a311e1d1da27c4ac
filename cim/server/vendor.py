"""Browser libraries the viewer loads from its npm packages besides CesiumJS (which has its own
``/cesium/`` route): each is served under ``/vendor/NAME/`` from one folder of its package, and
nothing else of ``node_modules`` is reachable. The viewer imports them when a panel first needs
them, so a city that never shows a chart never loads ECharts.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from cim.errors import CimNotFound
from cim.server.state import VIEWER_DIR

__all__ = ["VENDOR", "vendor_file"]

#: name -> its folder, relative to the viewer's folder
VENDOR: dict[str, Path] = {
    "echarts": Path("node_modules", "echarts", "dist"),
}


async def vendor_file(request: web.Request) -> web.StreamResponse:
    """``GET /vendor/{name}/{path}``: a file of a vendored library."""
    from cim.server.app import serve_file  # the app imports this module

    folder = VENDOR.get(request.match_info["name"])
    if folder is None:
        raise CimNotFound(f"no vendored library {request.match_info['name']!r}")
    return await serve_file(request, request.app[VIEWER_DIR] / folder, request.match_info["path"])
