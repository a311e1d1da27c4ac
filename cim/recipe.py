"""City recipes: ``city.toml`` names the city's CRS, origin and layers.

Example::

    [city]
    name = "tianshui"
    crs = "EPSG:4544"
    origin = [105.72, 34.58, 1100.0]   # optional lon, lat, height; default: the data's centre
    vertical_datum = "ellipsoidal"      # optional: the heights' datum, or a vertical CRS (EPSG:5737)

    [[layers]]
    id = "buildings"
    kind = "buildings"
    source = "data/buildings.gpkg"     # relative to the recipe
    height = "height"
    dem = "data/dem.tif"
    cim_level = 2
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cim.errors import CimIOError, CimRecipeError
from cim.layers import registry

__all__ = ["LayerSpec", "Recipe", "load_recipe", "recipe_from_dict"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class LayerSpec:
    """One layer of a recipe.

    ``options`` holds the kind's own keys (height, dem, ...) as the recipe gives them; the kind's
    ``Options`` check them when the city is built (relative paths are read from ``base``, the
    recipe's folder). ``cim_level`` None: the kind's default.
    """

    id: str
    kind: str
    source: Path
    title: str
    cim_level: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    visible: bool = True  # whether the viewer shows the layer when it opens
    base: Path | None = None


@dataclass
class Recipe:
    """A parsed ``city.toml``; paths are absolute."""

    name: str
    title: str
    crs: str | None
    origin: tuple[float, float, float] | None
    layers: list[LayerSpec]
    path: Path | None = None
    #: the city's vertical datum: "ellipsoidal" or a vertical CRS label (see cim.datum)
    vertical_datum: str = "ellipsoidal"


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe.

    Raises
    ------
    CimIOError
        The file cannot be read.
    CimRecipeError
        It is not valid TOML, or a key is missing or wrong (the message names the key).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CimIOError(f"{path}: cannot read recipe ({exc.strerror})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CimRecipeError(f"{path}: not valid TOML: {exc}") from None
    recipe = recipe_from_dict(doc, base=path.parent, where=str(path))
    recipe.path = path.resolve()
    return recipe


def recipe_from_dict(doc: dict[str, Any], base: Path, where: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from parsed TOML; relative sources are resolved against ``base``."""
    city = doc.get("city")
    if not isinstance(city, dict):
        raise CimRecipeError(f"{where}: missing [city] table")
    name = city.get("name")
    if not isinstance(name, str) or not _ID.match(name):
        raise CimRecipeError(f"{where}: [city] name must be a simple identifier, got {name!r}")
    origin = city.get("origin")
    if origin is not None:
        if not (isinstance(origin, list) and len(origin) in (2, 3) and all(isinstance(v, (int, float)) for v in origin)):
            raise CimRecipeError(f"{where}: [city] origin must be [lon, lat] or [lon, lat, height]")
        origin = (float(origin[0]), float(origin[1]), float(origin[2]) if len(origin) == 3 else 0.0)
    layers_raw = doc.get("layers", [])
    if not isinstance(layers_raw, list) or not layers_raw:
        raise CimRecipeError(f"{where}: no [[layers]]")
    layers: list[LayerSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(layers_raw):
        label = f"{where}: layers[{i}]"
        if not isinstance(raw, dict):
            raise CimRecipeError(f"{label}: must be a table")
        raw = dict(raw)
        lid, kind, source = raw.pop("id", None), raw.pop("kind", None), raw.pop("source", None)
        if not isinstance(lid, str) or not _ID.match(lid):
            raise CimRecipeError(f"{label}: id must be a simple identifier, got {lid!r}")
        if lid in seen:
            raise CimRecipeError(f"{label}: duplicate layer id {lid!r}")
        seen.add(lid)
        if kind not in registry.kinds():
            raise CimRecipeError(f"{label} ({lid}): kind {kind!r} is not one of {', '.join(registry.kinds())}")
        if not isinstance(source, str):
            raise CimRecipeError(f"{label} ({lid}): source (a path) is required")
        level = raw.pop("cim_level", None)
        if level is not None and (not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 7):
            raise CimRecipeError(f"{label} ({lid}): cim_level must be a whole number from 1 to 7, got {level!r}")
        visible = raw.pop("visible", True)
        if not isinstance(visible, bool):
            raise CimRecipeError(f"{label} ({lid}): visible must be true or false")
        title = raw.pop("title", lid.replace("_", " ").title())
        layers.append(LayerSpec(lid, kind, (base / source).resolve(), str(title), level, raw, visible, base.resolve()))
    from cim.datum import parse_vertical_datum
    from cim.errors import CimCRSError

    try:
        datum = parse_vertical_datum(city.get("vertical_datum"), where=f"{where}: [city] vertical_datum")
    except CimCRSError as exc:
        raise CimRecipeError(str(exc)) from None
    return Recipe(name, str(city.get("title", name)), city.get("crs"), origin, layers, vertical_datum=datum)
