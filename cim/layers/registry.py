"""The one place layer kinds are found: the ``cim.layers`` entry-point group.

A kind is a :class:`~cim.layers.base.LayerBuilder` subclass registered under its name, the way
``rasterio.rio_commands`` registers ``rio`` subcommands. cim registers its own kinds in its
``pyproject.toml``; a separate package adds one the same way::

    [project.entry-points."cim.layers"]
    roads = "cim_roads:RoadsLayer"

and ``kind = "roads"`` works in recipes, ``cim convert roads ...`` on the command line, and its
layers appear in ``city.json``. A kind can also be registered in-process with :func:`register`
(tests, notebooks).

Builders are imported only when their kind is asked for, so converting a point cloud does not
import GDAL, GEOS and the building kernels.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from cim.errors import CimInputError

if TYPE_CHECKING:
    from cim.layers.base import LayerBuilder

__all__ = ["ENTRY_POINT_GROUP", "kinds", "get", "register", "unregister"]

ENTRY_POINT_GROUP = "cim.layers"

#: cim's own kinds, used as they are when the package runs from a source tree without its
#: metadata (the installed package declares the same in its entry points)
BUILTIN = {
    "terrain": "cim.layers.terrain:TerrainLayer",
    "imagery": "cim.layers.imagery:ImageryLayer",
    "bim": "cim.layers.bim:BimLayer",
    "pointcloud": "cim.layers.pointcloud:PointCloudLayer",
    "buildings": "cim.layers.buildings:BuildingsLayer",
    "cityjson": "cim.layers.cityjson:CityJSONLayer",
    "mesh": "cim.layers.mesh:MeshLayer",
}

_targets: dict[str, str] | None = None
_registered: dict[str, type[LayerBuilder]] = {}
_loaded: dict[str, LayerBuilder] = {}


def _discover() -> dict[str, str]:
    global _targets
    if _targets is None:
        found = dict(BUILTIN)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            found[ep.name] = ep.value
        _targets = found
    return _targets


def kinds() -> list[str]:
    """The names of every known kind (registered in-process, or by an entry point)."""
    return sorted(set(_discover()) | set(_registered))


def get(kind: str) -> LayerBuilder:
    """The builder of ``kind``.

    Raises
    ------
    CimInputError
        No such kind (the message lists the known ones), or its entry point cannot be loaded.
    """
    if kind in _loaded:
        return _loaded[kind]
    if kind in _registered:
        builder = _registered[kind]()
    else:
        target = _discover().get(kind)
        if target is None:
            raise CimInputError(f"unknown layer kind {kind!r} (known: {', '.join(kinds())})")
        module, _, name = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise CimInputError(f"layer kind {kind!r}: cannot load {target} ({exc})") from exc
        builder = cls()
    if getattr(builder, "kind", None) != kind:
        raise CimInputError(f"layer kind {kind!r}: its builder calls itself {getattr(builder, 'kind', None)!r}")
    _loaded[kind] = builder
    return builder


def register(cls: type[LayerBuilder]) -> type[LayerBuilder]:
    """Register a builder class under its ``kind`` in this process (usable as a decorator)."""
    _registered[cls.kind] = cls
    _loaded.pop(cls.kind, None)
    return cls


def unregister(kind: str) -> None:
    """Forget a kind registered with :func:`register`."""
    _registered.pop(kind, None)
    _loaded.pop(kind, None)


def reload() -> None:
    """Look the entry points up again (after installing a plugin in a running process)."""
    global _targets
    _targets = None
    _loaded.clear()
