"""cim: turn a city's raw data into a streaming 3D city information model.

Quick start::

    import cim
    city = cim.sample("tiny", "sample_city")          # synthetic Tianshui sources + city.toml
    report = cim.build(city.recipe, "tiles/tianshui")   # every layer → 3D Tiles 1.1 + city.json
    cim.serve("tiles/tianshui")                         # the viewer at http://127.0.0.1:8000

One source on its own: ``cim.convert("buildings", "footprints.gpkg", "tiles/fp", height="H")``
(or ``cim.convert_buildings(...)``, one such function per layer kind). The same operations are
the ``cim`` command's subcommands (``cim sample``, ``cim build``, ``cim convert KIND``,
``cim serve``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cim._version import __version__
from cim.errors import CimCRSError, CimError, CimInputError, CimIOError, CimNotFound, CimRecipeError

if TYPE_CHECKING:  # what the lazy attributes below are, for type checkers and editors
    from cim.pipeline import BuildReport, build, build_layer, convert
    from cim.recipe import load_recipe
    from cim.samplecity import sample
    from cim.server import run as serve

    convert_buildings = convert
    convert_terrain = convert
    convert_imagery = convert
    convert_bim = convert
    convert_pointcloud = convert

__all__ = [
    "__version__",
    "CimError",
    "CimInputError",
    "CimCRSError",
    "CimIOError",
    "CimNotFound",
    "CimRecipeError",
    "BuildReport",
    "sample",
    "build",
    "convert",
    "build_layer",
    "convert_buildings",
    "convert_imagery",
    "convert_terrain",
    "convert_bim",
    "convert_pointcloud",
    "serve",
    "load_recipe",
]


def __getattr__(name: str) -> Any:
    # lazy: `import cim` stays cheap (the CLI's --help, the server) and free of import cycles
    if name == "sample":
        from cim.samplecity import sample

        return sample
    if name in ("build", "convert", "build_layer", "BuildReport"):
        from cim import pipeline

        return getattr(pipeline, name)
    if name.startswith("convert_"):
        from cim.layers import registry
        from cim.pipeline import convert_function

        kind = name.removeprefix("convert_")
        if kind in registry.kinds():
            fn = convert_function(kind)
            globals()[name] = fn
            return fn
    if name == "load_recipe":
        from cim.recipe import load_recipe

        return load_recipe
    if name == "serve":
        from cim.server import run

        return run
    raise AttributeError(f"module 'cim' has no attribute {name!r}")
