"""The one family of errors that cim raises.

Library code raises these; only the CLI turns them into messages and exit codes, and the server
maps them to HTTP status codes through one table (``cim.server.errors``).
"""

from __future__ import annotations

__all__ = [
    "CimError",
    "CimInputError",
    "CimCRSError",
    "CimIOError",
    "CimRecipeError",
    "CimNotFound",
    "CimForbidden",
]


class CimError(Exception):
    """Base class of every error cim raises on purpose."""


class CimInputError(CimError, ValueError):
    """A user's input is wrong: a bad file, a bad feature, a bad option."""


class CimCRSError(CimInputError):
    """A coordinate reference system is missing, unknown or unusable."""


class CimIOError(CimError, OSError):
    """A file cannot be read or written."""


class CimRecipeError(CimInputError):
    """A city recipe (``city.toml``) is malformed."""


class CimNotFound(CimError, LookupError):
    """Something asked for does not exist (a tile, a layer, a feature)."""


class CimForbidden(CimError, PermissionError):
    """A request reaches outside what may be served (path escape)."""
