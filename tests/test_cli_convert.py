"""``cim convert KIND SOURCES... OUT``, run as a user runs it: a fresh ``python -m cim`` process
on the checked-out code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cim.layers import registry

REPO = Path(__file__).resolve().parents[1]


def cim_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    # as in a log or CI: stderr is not a terminal, and no COLUMNS says how wide one would be
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "cim", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single line a failed command prints (no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_convert_help_lists_every_kind(tmp_path):
    proc = cim_cli("convert", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    commands = proc.stdout.split("Commands:")[1]
    listed = [line.split()[0] for line in commands.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert listed == registry.kinds()
    for kind in registry.kinds():
        assert registry.get(kind).summary[:30] in " ".join(proc.stdout.split())


def test_convert_kind_help_shows_its_options(tmp_path):
    proc = cim_cli("convert", "buildings", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--height-attr", "--floors-attr", "--storey-height", "--dem", "--max-features", "--city-origin", "--workers", "--engine"):
        assert flag in proc.stdout
    proc = cim_cli("convert", "pointcloud", "--help", cwd=tmp_path)
    assert "--meshopt / --no-meshopt" in proc.stdout and "SOURCES" in proc.stdout


def test_convert_imagery_to_png(tiny_sources, tmp_path):
    out = tmp_path / "ortho"
    proc = cim_cli("convert", "imagery", tiny_sources.ortho, out, "--format", "png", "--quality", "90", "--max-zoom", "16", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    city = json.loads((out / "city.json").read_text())
    (layer,) = city["layers"]
    assert layer["kind"] == "imagery" and layer["url"] == "tiles/{z}/{x}/{y}.png" and layer["image_format"] == "png"
    meta = json.loads((out / "imagery.json").read_text())
    assert meta["format"] == "png" and meta["maxzoom"] == 16
    tiles = [p for p in (out / "tiles").rglob("*") if p.is_file()]
    assert len(tiles) == layer["stats"]["tiles"] > 0
    assert all(p.suffix == ".png" and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in tiles)


def test_a_value_out_of_range_is_one_line_naming_the_option(tiny_sources, tmp_path):
    out = tmp_path / "terrain"
    proc = cim_cli("convert", "terrain", tiny_sources.dem, out, "--error-factor", "3", cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "error_factor" in line or "error-factor" in line
    assert "3" in line
    assert not (out / "layer.json").exists()


def test_two_sources_for_a_one_source_kind(tiny_sources, tmp_path):
    out = tmp_path / "two"
    proc = cim_cli("convert", "imagery", tiny_sources.ortho, tiny_sources.ortho, out, cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "one source" in line and "got 2" in line
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]  # nothing left behind


def test_an_unreadable_source_is_one_line_however_long_its_path(tmp_path):
    """The message names the file; a long path must not break it over several lines (a log
    reader greps for "error:" and gets the whole message)."""
    folder = tmp_path / "a-folder-with-a-rather-long-name-as-real-data-folders-have" / "orthophotos-2024"
    folder.mkdir(parents=True)
    bad = folder / "ortho.tif"
    bad.write_text("not a raster")
    proc = cim_cli("convert", "imagery", bad, tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert str(bad) in line and "not a raster" in line


def test_an_unknown_flag_and_workers_0_are_usage_errors(tiny_sources, tmp_path):
    proc = cim_cli("convert", "imagery", tiny_sources.ortho, tmp_path / "o", "--workers", "0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--workers" in proc.stderr and "Traceback" not in proc.stderr
    proc = cim_cli("convert", "imagery", tiny_sources.ortho, tmp_path / "o", "--qualty", "90", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--qualty" in proc.stderr and "--quality" in proc.stderr  # click suggests the close one
    proc = cim_cli("convert", "imagery", tiny_sources.ortho, tmp_path / "o", "--format", "gif", cwd=tmp_path)
    assert proc.returncode == 2 and "gif" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_an_unknown_kind_is_a_usage_error(tmp_path):
    proc = cim_cli("convert", "roads", "a", "b", cwd=tmp_path)
    assert proc.returncode == 2 and "No such command 'roads'" in proc.stderr


def test_an_output_folder_that_cannot_be_is_one_line(tiny_sources, tmp_path):
    """A file where the output folder (or one of its parents) should be: one line naming it, exit 1."""
    (tmp_path / "afile").write_text("in the way")
    proc = cim_cli("convert", "buildings", tiny_sources.buildings, tmp_path / "afile" / "out", cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert f"{tmp_path / 'afile'} is a file, not a folder" in line
    proc = cim_cli("build", tiny_sources.recipe, "--out", tmp_path / "afile" / "city", cwd=tmp_path)
    assert proc.returncode == 1
    assert "is a file, not a folder" in one_error_line(proc)
