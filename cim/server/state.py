"""The application's typed state: the ``web.AppKey``s every handler module reads."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from cim.access import AccessControl
from cim.audit import AuditWriter
from cim.server.filecache import FileCache

__all__ = ["ACCESS", "AUDIT", "CITY_DIR", "FILE_CACHE", "VIEWER_DIR"]

#: the built city's folder (resolved)
CITY_DIR = web.AppKey("city_dir", Path)
#: the viewer's folder (resolved)
VIEWER_DIR = web.AppKey("viewer_dir", Path)
#: the city's access rules, or None when it has none (everything public)
ACCESS: web.AppKey[AccessControl | None] = web.AppKey("access")
#: the audit trail's writer, or None when the city cannot be written to
AUDIT: web.AppKey[AuditWriter | None] = web.AppKey("audit")
#: the in-memory cache of small files' answers, or None when it is off
FILE_CACHE: web.AppKey[FileCache | None] = web.AppKey("file_cache")
