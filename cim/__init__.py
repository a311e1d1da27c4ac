"""cim: turn a city's raw data into a streaming 3D city information model.

Quick start::

    import cim
    city = cim.sample("tiny", "sample_city")          # synthetic Tianshui sources + city.toml
    report = cim.build(city.recipe, "tiles/tianshui")   # every layer → 3D Tiles 1.1 + city.json
    cim.serve("tiles/tianshui")                         # the viewer at http://127.0.0.1:8000

The same operations are the ``cim`` command's subcommands (``cim sample``, ``cim build``,
``cim convert buildings``, ``cim serve``).
"""

from __future__ import annotations

from cim._version import __version__
from cim.errors import CimCRSError, CimError, CimInputError, CimIOError, CimNotFound, CimRecipeError

__all__ = [
    "__version__",
    "CimError",
    "CimInputError",
    "CimCRSError",
    "CimIOError",
    "CimNotFound",
    "CimRecipeError",
    "sample",
    "build",
    "convert_buildings",
    "convert_imagery",
    "convert_terrain",
    "convert_bim",
    "convert_pointcloud",
    "serve",
    "load_recipe",
]


def __getattr__(name: str):
    # lazy: `import cim` stays cheap (the CLI's --help, the server) and free of import cycles
    if name == "sample":
        from cim.samplecity import sample

        return sample
    if name in ("build", "convert_buildings", "convert_imagery", "convert_terrain", "convert_bim", "convert_pointcloud"):
        from cim import pipeline

        return getattr(pipeline, name)
    if name == "load_recipe":
        from cim.recipe import load_recipe

        return load_recipe
    if name == "serve":
        from cim.server import run

        return run
    raise AttributeError(f"module 'cim' has no attribute {name!r}")
