"""The HTTP server: a built city as 3D Tiles, plus the CesiumJS viewer, over aiohttp."""

from cim.server.app import create_app, run
from cim.server.state import CITY_DIR, VIEWER_DIR

__all__ = ["CITY_DIR", "VIEWER_DIR", "create_app", "run"]
