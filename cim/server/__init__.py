"""The HTTP server: a built city as 3D Tiles, plus the CesiumJS viewer, over aiohttp."""

from cim.server.app import CITY_DIR, VIEWER_DIR, create_app, run

__all__ = ["CITY_DIR", "VIEWER_DIR", "create_app", "run"]
