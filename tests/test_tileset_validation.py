"""The CesiumGS 3d-tiles-validator on every tileset the project writes: each 3D Tiles layer of the
built tiny sample city, and the outputs of the real third-party files in ../shared/realdata (IFC,
LAS/LAZ, footprints). Any error fails; warnings are printed and raised as pytest warnings.

The validator is ``../shared/tools/validate-3dtiles`` beside the checkout (it builds itself with
npm on first use and follows external tilesets and every content file). It spends a few seconds
per call mostly waiting, so the tilesets of a group are validated concurrently, once per folder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cim
from tests.helpers import REPO

TOOL = REPO.parent / "shared" / "tools" / "validate-3dtiles"
#: the first call may build the validator (npm ci + tsc, about 2 minutes)
TIMEOUT = 900
WORKERS = 4


class TilesetValidatorWarning(UserWarning):
    """A warning the CesiumGS 3d-tiles-validator reported about a tileset the project wrote."""


@dataclass(frozen=True)
class Verdict:
    """What the validator said about one tileset."""

    name: str
    path: Path
    report: Path = field(repr=False)
    stdout: str = field(repr=False)
    errors: int
    warnings: int
    #: innermost messages of each severity, "[TYPE] where: message" -> count
    error_messages: Counter = field(default_factory=Counter, repr=False)
    warning_messages: Counter = field(default_factory=Counter, repr=False)

    def describe(self) -> str:
        """Its summary line and every distinct innermost error (the tool prints 10 at most)."""
        lines = [f"{self.name}: {self.path}", f"  validate-3dtiles: {self.stdout.splitlines()[0]} (report: {self.report})"]
        if self.error_messages:
            lines += [f"    - {m}" + (f" (x{n})" if n > 1 else "") for m, n in list(self.error_messages.items())[:40]]
            if len(self.error_messages) > 40:
                lines.append(f"    ... {len(self.error_messages) - 40} more distinct messages")
        return "\n".join(lines)

    def report_warnings(self) -> None:
        """Print the warnings (shown with -rA or on failure) and raise them as pytest warnings."""
        assert (self.warnings > 0) == bool(self.warning_messages), (
            f"{self.name}: {self.warnings} warning(s) counted, messages {dict(self.warning_messages)}"
        )
        for message, n in self.warning_messages.items():
            text = f"{self.name}: {message}" + (f" (x{n})" if n > 1 else "")
            print("3d-tiles-validator warning:", text)
            warnings.warn(text, TilesetValidatorWarning, stacklevel=2)


def innermost(issues: list, severity: str, parent_file: str | None = None, out: Counter | None = None) -> Counter:
    """The innermost issues of ``severity`` in a validator report (those without a cause of the
    same severity), "[TYPE] file#pointer: message" -> count; as summarize-3dtiles-report.js walks."""
    out = Counter() if out is None else out
    for issue in issues or []:
        if not isinstance(issue, dict):
            continue
        path = issue.get("path") if isinstance(issue.get("path"), str) else None
        pointer = path is not None and path.startswith("/")
        file = path if path is not None and not pointer else parent_file
        where = (f"{parent_file}#{path}" if parent_file else path) if pointer else file
        causes = issue.get("causes") or []
        if issue.get("severity") == severity and not any(isinstance(c, dict) and c.get("severity") == severity for c in causes):
            out[f"[{issue.get('type', '?')}]" + (f" {where}:" if where else "") + f" {str(issue.get('message', '')).strip()}"] += 1
        innermost(causes, severity, file, out)
    return out


class Validator:
    """Runs ``validate-3dtiles`` and reads its summary line and its JSON report."""

    def __init__(self, reports: Path) -> None:
        self.reports = reports

    def run(self, name: str, path: Path) -> Verdict:
        report = self.reports / (re.sub(r"[^\w.-]+", "_", name) + ".json")
        proc = subprocess.run([str(TOOL), str(path), str(report)], capture_output=True, text=True, timeout=TIMEOUT)
        if proc.returncode == 2:
            if shutil.which("npm") is None:
                pytest.skip(f"npm is not installed, so the CesiumGS 3d-tiles-validator cannot be built: {proc.stderr.strip()}")
            pytest.fail(f"validate-3dtiles could not run on {path} (exit 2):\n{proc.stderr}{proc.stdout}", pytrace=False)
        m = re.match(r"errors=(\d+) warnings=(\d+)", proc.stdout)
        assert m and proc.returncode in (0, 1), f"validate-3dtiles on {path}: exit {proc.returncode}, output:\n{proc.stdout}{proc.stderr}"
        errors, warns = int(m[1]), int(m[2])
        assert (errors > 0) == (proc.returncode == 1), f"validate-3dtiles on {path}: exit {proc.returncode} with errors={errors}"
        issues = json.loads(report.read_text()).get("issues", [])  # a clean report has none
        return Verdict(name, path, report, proc.stdout, errors, warns, innermost(issues, "ERROR"), innermost(issues, "WARNING"))

    def run_many(self, targets: dict[str, Path]) -> dict[str, Verdict]:
        with ThreadPoolExecutor(WORKERS) as pool:
            futures = {name: pool.submit(self.run, name, path) for name, path in targets.items()}
            return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="session")
def validator(tmp_path_factory: pytest.TempPathFactory) -> Validator:
    """The validator, checked once on a broken tileset (this first call also builds it if needed,
    before any concurrent call could race to build it)."""
    if not TOOL.exists():
        pytest.skip(f"the CesiumGS 3d-tiles-validator wrapper is not at {TOOL} (the ../shared folder beside the checkout is missing)")
    v = Validator(tmp_path_factory.mktemp("3d-tiles-validator-reports"))
    broken = tmp_path_factory.mktemp("broken-tileset")
    doc = {
        "asset": {"version": "1.1"},
        "geometricError": 1.0,
        "root": {"refine": "ADD", "boundingVolume": {"sphere": [0, 0, 0, 1]}, "geometricError": 0.0, "content": {"uri": "missing.glb"}},
    }
    (broken / "tileset.json").write_text(json.dumps(doc))
    verdict = v.run("self-check", broken)
    assert verdict.errors > 0 and any("missing.glb" in m for m in verdict.error_messages), (
        f"the validator did not report a missing content file; it cannot be trusted:\n{verdict.describe()}"
    )
    return v


def reachable_tilesets(tileset: Path) -> set[Path]:
    """``tileset`` and every external tileset reached from it (contents whose URI is a .json)."""
    seen: set[Path] = set()
    todo = [tileset.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tiles = [json.loads(path.read_text())["root"]]
        while tiles:
            tile = tiles.pop()
            tiles += tile.get("children", [])
            for content in ([tile["content"]] if "content" in tile else []) + tile.get("contents", []):
                if content.get("uri", "").lower().endswith(".json"):
                    todo.append((path.parent / content["uri"]).resolve())
    return seen


# --- the built tiny sample city ------------------------------------------------------------------


def tiny_city_layers(city: Path) -> dict[str, Path]:
    """Every 3D Tiles layer of the city's city.json: layer id -> its tileset.json."""
    manifest = json.loads((city / "city.json").read_text())
    return {layer["id"]: city / layer["url"] for layer in manifest["layers"] if layer.get("format") == "3dtiles"}


def test_tiny_city_layers_cover_every_tileset_written(tiny_city):
    """The layers validated below reach every tileset.json of the build (none left unchecked)."""
    layers = tiny_city_layers(tiny_city)
    assert layers, f"{tiny_city / 'city.json'} lists no 3D Tiles layer"
    reached = set().union(*(reachable_tilesets(p) for p in layers.values()))
    written = {p.resolve() for p in tiny_city.rglob("tileset.json")}
    assert written <= reached, f"tilesets no 3D Tiles layer reaches: {sorted(map(str, written - reached))}"


def test_tiny_city_3dtiles_layers_pass_the_validator(tiny_city, validator):
    verdicts = validator.run_many(tiny_city_layers(tiny_city))
    for verdict in verdicts.values():
        print(f"{verdict.name}: errors={verdict.errors} warnings={verdict.warnings}")
        verdict.report_warnings()
    failed = [v.describe() for v in verdicts.values() if v.errors]
    assert not failed, "the 3d-tiles-validator found errors in the tiny city's layers:\n" + "\n\n".join(failed)


# --- outputs of the real third-party files ---------------------------------------------------------


#: output name -> (file under ../shared/realdata, how the project converts it); the options are
#: those of tests/bim/test_realdata.py, tests/pointcloud and tests/sources/test_footprints.py
REAL: dict[str, tuple[str, Callable[[Path, Path], object]]] = {
    "ifc-revit2011_wall1": ("ifc/ifcos-files_revit2011_wall1.ifc", lambda s, o: cim.convert_bim(s, o)),
    "ifc-TestModel_IFC4Add2": ("ifc/ifcos-files_TestModel_IFC4Add2.ifc", lambda s, o: cim.convert_bim(s, o)),
    # no georeference at all: placed by an origin (lon, lat, h without a CRS)
    "ifc-acad2010_objects": ("ifc/ifcos-files_acad2010_objects.ifc", lambda s, o: cim.convert_bim(s, o, origin=(105.78, 34.57, 1100.0))),
    # no CRS in the header: Oregon State Plane North (ft), as the project's tests give it
    "las-laspy_simple": ("pointcloud/laspy_simple.las", lambda s, o: cim.convert_pointcloud(s, o, crs="EPSG:2994")),
    "laz-laspy_simple": ("pointcloud/laspy_simple.laz", lambda s, o: cim.convert_pointcloud(s, o, crs="EPSG:2994")),
    "laz-laspy_autzen_trim": ("pointcloud/laspy_autzen_trim.laz", lambda s, o: cim.convert_pointcloud(s, o)),
    # its header says WGS 84 about UTM-like numbers: cim refuses it unless the CRS is overridden
    "las-laspy_simple1_4": (
        "pointcloud/laspy_simple1_4.las",
        lambda s, o: cim.convert_pointcloud(s, o, crs="EPSG:32631", crs_override=True),
    ),
    # no height attribute: every building gets the default height
    "shp-osgearth_dcbuildings": ("vector/osgearth_dcbuildings.shp", lambda s, o: cim.convert_buildings(s, o)),
    # no CRS in either file: Dutch RD New + NAP, as tests/layers/test_cityjson.py gives it
    "cityjson-cjio_rotterdam_subset": ("cityjson/cjio_rotterdam_subset.json", lambda s, o: cim.convert("cityjson", s, o, crs="EPSG:7415")),
    "cityjson-cjio_rotterdam_subset-tree": (
        "cityjson/cjio_rotterdam_subset.json",
        lambda s, o: cim.convert("cityjson", s, o, crs="EPSG:7415", max_features=3),
    ),
    "cityjson-cjio_DH_01_subs": ("cityjson/cjio_DH_01_subs.city.json", lambda s, o: cim.convert("cityjson", s, o, crs="EPSG:7415")),
    "geojson-urbanopt_example_project": (
        "vector/urbanopt_example_project.json",
        lambda s, o: cim.convert_buildings(s, o, height=None, floors="number_of_stories", storey_height=3.5),
    ),
}


@pytest.fixture(scope="session")
def realdata_outputs(realdata, tmp_path_factory) -> dict[str, Path | Exception]:
    """Each real file converted once: name -> its output folder, or the exception it raised
    (re-raised by that file's test alone)."""
    root = tmp_path_factory.mktemp("realdata-3dtiles")
    outputs: dict[str, Path | Exception] = {}
    for name, (source, convert) in REAL.items():
        try:
            convert(realdata / source, root / name)
            outputs[name] = root / name
        except Exception as e:  # reported by the test of this file
            outputs[name] = e
    return outputs


@pytest.fixture(scope="session")
def realdata_verdicts(realdata_outputs, validator) -> dict[str, Verdict]:
    return validator.run_many({name: out for name, out in realdata_outputs.items() if isinstance(out, Path)})


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(REAL))
def test_realdata_output_passes_the_validator(realdata_outputs, realdata_verdicts, name):
    out = realdata_outputs[name]
    if isinstance(out, Exception):
        raise out
    verdict = realdata_verdicts[name]
    print(f"{verdict.name}: errors={verdict.errors} warnings={verdict.warnings}")
    verdict.report_warnings()
    assert verdict.errors == 0, f"the 3d-tiles-validator found errors in the output of {REAL[name][0]}:\n{verdict.describe()}"
