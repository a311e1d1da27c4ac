"""The registry of layer kinds: a separate, installed package adds a kind through the
``cim.layers`` entry-point group, and recipes, ``cim.convert`` and ``cim convert KIND`` use it
without any change to cim."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cim
from cim.errors import CimInputError, CimRecipeError
from cim.layers import registry
from cim.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A layer kind in a package of its own: one text tile per line of the source."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cim.layers.base import LayerBuilder, LayerOptions, LayerOutput, LayerPlan, option
from cim.store import build_key, file_fingerprint


@dataclass
class TestOptions(LayerOptions):
    shout: bool = option(False, help="Write the lines in capitals.")
    repeat: int = option(1, help="Times each line is written.")
    flavour: Literal["plain", "fancy"] = option("plain", help="How the tiles look.")


@dataclass
class TestPlan(LayerPlan):
    lines: tuple = ()
    options: TestOptions = None


def line_job(state, key):
    sink, lines, options = state
    text = lines[key].upper() if options.shout else lines[key]
    sink.write(f"tiles/{key}.txt", ((text + "\\n") * options.repeat).encode())
    return key


class TestLayer(LayerBuilder):
    kind = "testkind"
    Options = TestOptions
    summary = "Lines of a text file as tiles (a test plugin)."

    def plan(self, sources, options, run):
        lines = tuple(sources[0].read_text().splitlines())
        key = build_key("testkind-1", file_fingerprint(sources[0]), options.shout, options.repeat, options.flavour)
        return TestPlan(key, list(range(len(lines))), lines=lines, options=options)

    def build(self, plan, run):
        done = list(run.map(line_job, (run.store.sink(), plan.lines, plan.options), plan.jobs))
        bounds = {"west": 105.7, "south": 34.5, "east": 105.8, "north": 34.6, "min_height": 0.0, "max_height": 10.0}
        return LayerOutput(index={"asset": {"version": "1.1"}, "lines": len(done)}, count=len(done), tiles=len(done), bounds=bounds)


class Misnamed(TestLayer):
    kind = "something-else"
'''

ENTRY_POINTS = """\
[cim.layers]
testkind = cim_testplugin:TestLayer
testmisnamed = cim_testplugin:Misnamed
testmissing = cim_testplugin_gone:Layer
"""


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that looks like site-packages with a separately installed plugin in it."""
    root = tmp_path_factory.mktemp("site")
    (root / "cim_testplugin").mkdir()
    (root / "cim_testplugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "cim_testplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cim-testplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture
def installed(plugin_dir: Path, monkeypatch):
    """The plugin installed in this process, for one test."""
    monkeypatch.syspath_prepend(str(plugin_dir))
    registry.reload()
    yield plugin_dir
    monkeypatch.undo()
    sys.modules.pop("cim_testplugin", None)
    registry.reload()
    assert "testkind" not in registry.kinds()


@pytest.fixture
def lines(tmp_path: Path) -> Path:
    path = tmp_path / "lines.txt"
    path.write_text("one\ntwo\nthree\n")
    return path


def test_builtin_kinds_need_no_metadata():
    assert set(registry.BUILTIN) <= set(registry.kinds())
    for kind in registry.BUILTIN:
        assert registry.get(kind).kind == kind
    assert "testkind" not in registry.kinds()


def test_an_installed_plugin_kind_is_listed_and_loaded(installed):
    assert {"testkind", "testmisnamed", "testmissing"} <= set(registry.kinds())
    assert set(registry.BUILTIN) <= set(registry.kinds())
    builder = registry.get("testkind")
    assert type(builder).__module__ == "cim_testplugin" and registry.get("testkind") is builder
    with pytest.raises(CimInputError, match=r"layer kind 'testmisnamed': its builder calls itself 'something-else'"):
        registry.get("testmisnamed")
    with pytest.raises(CimInputError, match=r"layer kind 'testmissing': cannot load cim_testplugin_gone:Layer"):
        registry.get("testmissing")


def test_a_recipe_of_the_plugin_kind_builds(installed, lines, tmp_path):
    recipe = tmp_path / "city.toml"
    recipe.write_text(
        f'[city]\nname = "plugged"\n\n[[layers]]\nid = "words"\nkind = "testkind"\nsource = "{lines.name}"\nshout = true\nrepeat = 2\n'
    )
    assert load_recipe(recipe).layers[0].kind == "testkind"
    report = cim.build(recipe, tmp_path / "out")
    assert report.layers[0].tiles == 3
    assert (tmp_path / "out" / "words" / "tiles" / "1.txt").read_text() == "TWO\nTWO\n"
    city = json.loads((tmp_path / "out" / "city.json").read_text())
    assert [(e["id"], e["kind"], e["url"]) for e in city["layers"]] == [("words", "testkind", "words/tileset.json")]

    recipe.write_text(recipe.read_text().replace("repeat = 2", "repaet = 2"))
    with pytest.raises(CimInputError, match=r"layer words: unknown option 'repaet'; did you mean 'repeat'\?"):
        cim.build(recipe, tmp_path / "out2")


def test_the_plugin_kind_converts_from_python(installed, lines, tmp_path):
    report = cim.convert("testkind", lines, tmp_path / "out", flavour="fancy")
    assert report.layers[0].kind == "testkind" and (tmp_path / "out" / "city.json").is_file()
    with pytest.raises(CimInputError, match=r"option 'flavour': 'odd' is not one of plain, fancy"):
        cim.convert("testkind", lines, tmp_path / "out", flavour="odd")


def test_cim_convert_kind_help_shows_the_plugin_options(installed):
    from click.testing import CliRunner

    from cim.cli.main import cli

    result = CliRunner().invoke(cli, ["convert", "testkind", "--help"])
    assert result.exit_code == 0, result.output
    for text in ("--shout / --no-shout", "--repeat", "--flavour", "[plain|fancy]", "Times each line is written.", "SOURCE"):
        assert text in result.output
    result = CliRunner().invoke(cli, ["convert", "--help"])
    assert result.exit_code == 0 and "testkind" in result.output and "Lines of a text file" in result.output


def test_cim_convert_runs_the_plugin_in_a_fresh_process(plugin_dir, lines, tmp_path):
    """The entry point is found from the installed metadata alone (a new interpreter, no
    registration in-process)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(REPO)])}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "cim", "convert", "testkind", str(lines), str(out), "--shout", "--repeat", "3", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "tiles" / "0.txt").read_text() == "ONE\n" * 3
    assert json.loads((out / "city.json").read_text())["layers"][0]["kind"] == "testkind"

    proc = subprocess.run(
        [sys.executable, "-m", "cim", "convert", "testmissing", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "layer kind 'testmissing' is unavailable" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_kind_in_a_recipe_lists_the_known_ones(tmp_path):
    recipe = tmp_path / "city.toml"
    recipe.write_text('[city]\nname = "x"\n\n[[layers]]\nid = "roads"\nkind = "roads"\nsource = "roads.gpkg"\n')
    with pytest.raises(CimRecipeError) as err:
        load_recipe(recipe)
    message = str(err.value)
    assert str(recipe) in message and "(roads)" in message and "'roads'" in message
    for kind in registry.kinds():
        assert kind in message
    with pytest.raises(CimInputError, match=re.escape(f"unknown layer kind 'roads' (known: {', '.join(registry.kinds())})")):
        registry.get("roads")


def test_register_in_process(installed, lines, tmp_path):
    """A kind registered in-process (a notebook, a test) is used like an installed one; it is
    forgotten by unregister, and a registration wins over an entry point of the same name."""
    import cim_testplugin

    @registry.register
    class Loud(cim_testplugin.TestLayer):
        kind = "testloud"

    try:
        assert Loud.kind == "testloud" and "testloud" in registry.kinds()
        cim.convert("testloud", lines, tmp_path / "out", shout=True)
        assert (tmp_path / "out" / "tiles" / "2.txt").read_text() == "THREE\n"
    finally:
        registry.unregister("testloud")
    assert "testloud" not in registry.kinds()

    class Replacement(cim_testplugin.TestLayer):
        kind = "testkind"

    registry.get("testkind")
    registry.register(Replacement)
    try:
        assert type(registry.get("testkind")) is Replacement
    finally:
        registry.unregister("testkind")
    assert type(registry.get("testkind")) is cim_testplugin.TestLayer  # the entry point again
