"""Layer options: every kind's recipe keys and keyword arguments are checked the same way (unknown
keys with a suggestion, wrong types, ranges), and a mistake anywhere in a recipe stops the build
before any layer is written."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest

import cim
from cim.errors import CimInputError
from cim.layers import registry

KINDS = registry.kinds()


def fields_of(kind: str) -> list[tuple[str, Any, Any]]:
    """(name, type hint, default) of every option of a kind."""
    options = registry.get(kind).Options
    hints = get_type_hints(options)
    out = []
    for f in dataclasses.fields(options):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, hints[f.name], default))
    return out


def without_none(hint: Any) -> Any:
    """``hint`` without ``None``; a union of several types stays a union."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007 - built from a list
    return hint


def optional(hint: Any) -> bool:
    return get_origin(hint) in (typing.Union, types.UnionType) and type(None) in get_args(hint)


def wrong_value(hint: Any) -> Any:
    """A recipe value of the wrong type for ``hint``."""
    base = without_none(hint)
    if base is bool:
        return "yes"
    if base is int:
        return "3"
    if base is float:
        return True  # a bool is not a number
    if base is str:
        return 5
    if base is Path:
        return 5
    if get_origin(base) is Literal:
        return "not-one-of-them"
    if get_origin(base) is tuple:
        args = get_args(base)
        if len(args) == 2 and args[1] is Ellipsis:  # any length: one value of the wrong type
            return [wrong_value(args[0])]
        return [1.0] * (len(args) + 1)
    if get_origin(base) in (typing.Union, types.UnionType):  # wrong for every member (Path | tuple[Path, ...])
        value = 5
        assert all(wrong_value(a) == value or get_origin(a) is tuple for a in get_args(base)), base
        return value
    raise AssertionError(f"no wrong value for {hint!r}")


def typo(name: str) -> str:
    """``name`` with two letters in its middle swapped ("height" → "heigth")."""
    i = len(name) // 2
    while name[i - 1] == name[i]:
        i += 1
    return name[: i - 1] + name[i] + name[i - 1] + name[i + 1 :]


ALL_FIELDS = [(kind, name, hint) for kind in KINDS for name, hint, _ in fields_of(kind)]


def test_every_builtin_kind_is_covered():
    assert set(registry.BUILTIN) <= set(KINDS)
    assert all(fields_of(kind) for kind in KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_are_valid(kind):
    options = registry.get(kind).options({})
    assert options == registry.get(kind).Options()
    assert options.changed() == {}


@pytest.mark.parametrize("kind,name", [(k, n) for k, n, _ in ALL_FIELDS])
def test_a_misspelt_key_is_refused_with_the_close_one(kind, name):
    wrong = typo(name)
    with pytest.raises(CimInputError) as err:
        registry.get(kind).options({wrong: 1}, where="city.toml: layer x")
    message = str(err.value)
    assert message.startswith("city.toml: layer x:")
    assert repr(wrong) in message
    assert f"did you mean {name!r}" in message


def test_the_reported_typos():
    with pytest.raises(CimInputError, match=r"unknown option 'heigth'; did you mean 'height'\?"):
        registry.get("buildings").options({"heigth": "h"})
    with pytest.raises(CimInputError, match=r"unknown option 'leaf_point'; did you mean 'leaf_points'\?"):
        registry.get("pointcloud").options({"leaf_point": 1000})
    with pytest.raises(CimInputError, match=r"unknown option 'colour'") as err:  # nothing close: no suggestion
        registry.get("imagery").options({"colour": "red"})
    assert "did you mean" not in str(err.value)


@pytest.mark.parametrize("kind,name,hint", ALL_FIELDS, ids=[f"{k}-{n}" for k, n, _ in ALL_FIELDS])
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(kind, name, hint):
    with pytest.raises(CimInputError) as err:
        registry.get(kind).options({name: wrong_value(hint)}, where=f"layer {kind}")
    assert str(err.value).startswith(f"layer {kind}: option {name!r}")


def test_wrong_types_of_each_sort():
    bim, terrain, imagery = registry.get("bim"), registry.get("terrain"), registry.get("imagery")
    with pytest.raises(CimInputError, match=r"option 'max_zoom': expected a whole number, got '18'"):
        terrain.options({"max_zoom": "18"})
    with pytest.raises(CimInputError, match=r"option 'max_zoom': expected a whole number, got 17.5"):
        terrain.options({"max_zoom": 17.5})
    with pytest.raises(CimInputError, match=r"option 'error_factor': expected a number, got True"):
        terrain.options({"error_factor": True})
    with pytest.raises(CimInputError, match=r"option 'origin': expected 3 values, got 2"):
        bim.options({"origin": [105.7, 34.5]})
    with pytest.raises(CimInputError, match=r"option 'origin': expected a list"):
        bim.options({"origin": "105.7 34.5 0"})
    with pytest.raises(CimInputError, match=r"option 'format': 'gif' is not one of webp, png, jpeg"):
        imagery.options({"format": "gif"})
    with pytest.raises(CimInputError, match=r"option 'meshopt': expected true or false, got 1"):
        registry.get("pointcloud").options({"meshopt": 1})


def test_values_convert(tmp_path):
    terrain = registry.get("terrain").options({"error_factor": 1, "max_zoom": 12.0})
    assert terrain.error_factor == 1.0 and type(terrain.error_factor) is float
    assert terrain.max_zoom == 12 and type(terrain.max_zoom) is int

    bim = registry.get("bim").options({"origin": [105, 34.5, 1100], "rotation": 30, "crs": "EPSG:4544"})
    assert bim.origin == (105.0, 34.5, 1100.0) and all(type(v) is float for v in bim.origin)
    assert bim.rotation == 30.0 and type(bim.rotation) is float

    buildings = registry.get("buildings")
    relative = buildings.options({"dem": "data/dem.tif"}, base=tmp_path)
    assert relative.dem == (tmp_path / "data" / "dem.tif").resolve()
    absolute = buildings.options({"dem": str(tmp_path / "x.tif")}, base=tmp_path / "elsewhere")
    assert absolute.dem == tmp_path / "x.tif"
    assert buildings.options({"dem": "dem.tif"}).dem == Path("dem.tif")  # no base: as given
    unset = buildings.options({"height": None, "floors": None, "dem": None})
    assert unset.height is None and unset.floors is None and unset.dem is None
    assert unset.changed() == {"height": None, "floors": None}

    assert registry.get("imagery").options({"format": "png", "quality": 90}).changed() == {"format": "png", "quality": 90}


@pytest.mark.parametrize("kind,name", [(k, n) for k, n, h in ALL_FIELDS if optional(h)])
def test_optional_values_accept_none(kind, name):
    assert getattr(registry.get(kind).options({name: None}), name) is None


RANGES = [
    # kind, key, refused values, accepted values
    ("terrain", "error_factor", [0.0, -1.0, 1.61, 3], [0.01, 1.6]),
    ("imagery", "quality", [0, 101, -5], [1, 100]),
    ("imagery", "max_zoom", [-1, 25], [0, 24]),
    ("imagery", "min_zoom", [-1, 25], [0, 24]),
    ("pointcloud", "node_bits", [0, 11], [1, 10]),
    ("pointcloud", "leaf_points", [0, -1], [1]),
    ("pointcloud", "chunk_points", [0], [1]),
    ("pointcloud", "tolerance", [0.0, -0.1], [1e-6]),
    ("pointcloud", "max_step", [0.0], [0.01]),
    ("pointcloud", "precision", [0.0, -1.0], [0.001]),
    ("buildings", "max_features", [0, -3], [1]),
    ("buildings", "storey_height", [0.0, -3.0], [0.1]),
    ("buildings", "default_height", [0.0], [0.5]),
    ("buildings", "implicit_tiles", [-2], [-1, 0]),
    ("buildings", "subtree_levels", [0, 11], [1, 10]),
    ("bim", "element_timeout", [0.0, -1.0], [0.1]),
    ("bim", "max_voids", [-1], [0]),
    ("bim", "in_process_elements", [-1], [0]),
    ("bim", "max_triangles", [0], [1]),
    ("bim", "max_properties", [0], [1]),
    ("bim", "threads", [0], [1]),
]


@pytest.mark.parametrize("kind,key,refused,accepted", RANGES, ids=[f"{k}-{n}" for k, n, *_ in RANGES])
def test_ranges(kind, key, refused, accepted):
    builder = registry.get(kind)
    for value in refused:
        with pytest.raises(CimInputError, match=rf"^layer t: option {key!r} must .*got {re.escape(str(value))}"):
            builder.options({key: value}, where="layer t")
    for value in accepted:
        assert getattr(builder.options({key: value}), key) == value


# -- through the public API ------------------------------------------------------------------


def recipe_copy(tiny_sources, folder: Path, extra: dict[str, str] | None = None) -> Path:
    """The tiny recipe in ``folder`` (its sources by absolute path), with ``extra[layer id]``
    lines added to a layer's table."""
    text = tiny_sources.recipe.read_text().replace('"data/', f'"{tiny_sources.root.as_posix()}/data/')
    for layer_id, line in (extra or {}).items():
        text, n = re.subn(rf'(\nid = "{layer_id}"\n)', rf"\1{line}\n", text)
        assert n == 1, layer_id
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "city.toml"
    recipe.write_text(text)
    return recipe


def recipe_layers(tiny_sources) -> dict[str, str]:
    """Layer id → kind of the tiny recipe."""
    return {spec.id: spec.kind for spec in cim.load_recipe(tiny_sources.recipe).layers}


#: built-in kinds the sample city has no source for (their recipes are made in their own tests:
#: tests/layers/test_cityjson.py)
NOT_IN_SAMPLE = {"cityjson"}


def test_the_tiny_recipe_has_every_builtin_kind(tiny_sources):
    assert set(recipe_layers(tiny_sources).values()) == set(registry.BUILTIN) - NOT_IN_SAMPLE


@pytest.mark.parametrize("kind", sorted(set(registry.BUILTIN) - NOT_IN_SAMPLE))
def test_a_typo_in_any_layer_stops_the_build_before_any_layer(tiny_sources, tmp_path, kind):
    layer_id = next(i for i, k in recipe_layers(tiny_sources).items() if k == kind)
    name = fields_of(kind)[-1][0]  # the last option: the one least likely to be checked by accident
    recipe = recipe_copy(tiny_sources, tmp_path / "recipe", {layer_id: f"{typo(name)} = 1"})
    out = tmp_path / "out"
    with pytest.raises(CimInputError) as err:
        cim.build(recipe, out)
    message = str(err.value)
    assert str(recipe.resolve()) in message
    assert f"layer {layer_id}" in message
    assert repr(typo(name)) in message and f"did you mean {name!r}" in message
    assert not out.exists() or not [p.name for p in out.iterdir() if p.is_dir()]


def test_a_pointcloud_typo_in_a_recipe_is_an_input_error_not_a_traceback(tiny_sources, tmp_path):
    recipe = recipe_copy(tiny_sources, tmp_path / "recipe", {"lidar": "leaf_point = 1000"})
    out = tmp_path / "out"
    with pytest.raises(CimInputError, match=r"city\.toml: layer lidar: unknown option 'leaf_point'; did you mean 'leaf_points'\?"):
        cim.build(recipe, out)
    assert not out.exists() or not [p.name for p in out.iterdir() if p.is_dir()]


def test_wrong_values_in_a_recipe_name_file_layer_and_key(tiny_sources, tmp_path):
    recipe = recipe_copy(tiny_sources, tmp_path / "a", {"imagery": 'max_zoom = "18"'})
    with pytest.raises(CimInputError, match=r"city\.toml: layer imagery: option 'max_zoom': expected a whole number"):
        cim.build(recipe, tmp_path / "out-a")
    recipe = recipe_copy(tiny_sources, tmp_path / "b", {"terrain": "error_factor = 3"})
    with pytest.raises(CimInputError, match=r"city\.toml: layer terrain: option 'error_factor' must be in"):
        cim.build(recipe, tmp_path / "out-b")
    recipe = recipe_copy(tiny_sources, tmp_path / "c", {"bim": "origin = [1.0, 2.0]"})
    with pytest.raises(CimInputError, match=r"city\.toml: layer bim: option 'origin': expected 3 values"):
        cim.build(recipe, tmp_path / "out-c")
    assert not [p for p in tmp_path.glob("out-*/*") if p.is_dir()]


def test_convert_and_build_layer_check_options_before_writing(tiny_sources, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CimInputError, match=r"^convert pointcloud: unknown option 'leaf_point'; did you mean 'leaf_points'\?"):
        cim.convert("pointcloud", tiny_sources.lidar, out, leaf_point=1000)
    with pytest.raises(CimInputError, match=r"^convert imagery: option 'quality' must be in 1\.\.100"):
        cim.convert("imagery", tiny_sources.ortho, out, quality=0)
    with pytest.raises(CimInputError, match=r"layer terrain: unknown option 'max_zom'; did you mean 'max_zoom'\?"):
        cim.build_layer("terrain", tiny_sources.dem, out, max_zom=3)
    assert not out.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_convert_functions_take_the_options_as_keywords(kind):
    fn = getattr(cim, f"convert_{kind}")
    params = inspect.signature(fn).parameters
    for name, _, default in fields_of(kind):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY and params[name].default == default
    assert list(params)[:2] == ["sources", "out"]
