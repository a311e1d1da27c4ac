"""The application's typed state: the ``web.AppKey``s every handler module reads."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

__all__ = ["CITY_DIR", "VIEWER_DIR"]

#: the built city's folder (resolved)
CITY_DIR = web.AppKey("city_dir", Path)
#: the viewer's folder (resolved)
VIEWER_DIR = web.AppKey("viewer_dir", Path)
