"""``cim analyse KIND CITY_DIR``: the planning analyses from the command line.

The request is the API's JSON body (``/api/analysis/KIND``, see :mod:`cim.analysis.service`),
given whole with ``--request`` (JSON text, or ``@file.json``) and/or field by field with
``--set name=value`` (values read as JSON when they parse, else as text). The summary is
printed as JSON; ``--out`` writes the answer as GeoJSON (``.geojson``/``.json``: the features,
with the summary as a foreign member) or CSV (``.csv``: one row per feature, UTF-8 with a BOM
for Excel).

Examples::

    cim analyse heightlimit tiles/tianshui --set limit=24 \\
        --set 'zone=[[105.77,34.56],[105.79,34.56],[105.79,34.58],[105.77,34.58]]' --out over.csv
    cim analyse sunlight tiles/tianshui --request @sunlight.json --out sunlight.geojson
    cim analyse skyline tiles/tianshui --set 'viewpoint=[105.78,34.57]' --proposal tower.ifc
    cim analyse sunlight tiles/tianshui --request @sunlight.json --proposal block.glb --proposal-at 105.78,34.57
    cim analyse model city.toml tiles/tianshui      # (re)build the surface model of a built city
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click

from cim.analysis.schemas import KINDS
from cim.cli.options import common, console, handle_errors, setup_logging
from cim.errors import CimInputError

__all__ = ["analyse", "proposal_from", "request_from", "write_answer"]


@click.group()
def analyse() -> None:
    """Planning analyses over a built city: sunlight, shadow, sightline, viewshed, skyline,
    heightlimit, flood (the same numbers as /api/analysis/KIND)."""


def request_from(request: str | None, sets: tuple[str, ...]) -> dict[str, Any]:
    """The request object from ``--request`` and ``--set`` options."""
    body: dict[str, Any] = {}
    if request:
        text = Path(request[1:]).read_text(encoding="utf-8") if request.startswith("@") else request
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise CimInputError(f"--request is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise CimInputError("--request must be a JSON object")
    for item in sets:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise CimInputError(f"--set takes name=value, not {item!r}")
        try:
            body[name] = json.loads(value)
        except ValueError:
            body[name] = value
    return body


def write_answer(answer: dict[str, Any], out: Path) -> None:
    """Write an analysis answer as GeoJSON or CSV (by ``out``'s suffix), atomically."""
    from cim.store import atomic_write_bytes, atomic_write_json

    suffix = out.suffix.lower()
    if suffix in (".geojson", ".json"):
        atomic_write_json(out, {**answer["geojson"], "kind": answer["kind"], "summary": answer["summary"]}, pretty=False)
        return
    if suffix != ".csv":
        raise CimInputError(f"--out {out}: write .geojson, .json or .csv")
    rows = [f["properties"] for f in answer["geojson"]["features"]]
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [json.dumps(row[c], ensure_ascii=False) if isinstance(row.get(c), (list, dict)) else row.get(c, "") for c in columns]
        )
    atomic_write_bytes(out, ("\ufeff" + buf.getvalue()).encode("utf-8"))


def proposal_from(path: Path, *, height: float | None = None, at: str | None = None, rotation: float | None = None) -> dict[str, Any]:
    """The request's ``proposal`` from a file: a GeoJSON footprint, or an IFC/glTF model.

    Raises
    ------
    CimInputError
        A missing or unreadable file, or one of another kind (the message names it).
    """
    import base64

    from cim.analysis.meshes import MESH_SUFFIXES

    if not path.is_file():
        raise CimInputError(f"--proposal {path}: no such file")
    suffix = path.suffix.lower()
    out: dict[str, Any]
    if suffix in (".geojson", ".json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CimInputError(f"--proposal {path}: not valid JSON ({exc})") from None
        if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
            polygons = [f for f in doc.get("features") or [] if isinstance(f, dict) and (f.get("geometry") or {}).get("type") == "Polygon"]
            if not polygons:
                raise CimInputError(f"--proposal {path}: the collection holds no Polygon")
            doc = polygons[0]
        if not isinstance(doc, dict):
            raise CimInputError(f"--proposal {path}: not a GeoJSON object")
        out = {"geojson": doc}
        if height is not None:
            out["height"] = height
    elif suffix in MESH_SUFFIXES:
        out = {"file": {"name": path.name, "data": base64.b64encode(path.read_bytes()).decode("ascii")}}
    else:
        raise CimInputError(f"--proposal {path}: give a .geojson footprint or a {', '.join(MESH_SUFFIXES)} model")
    if at is not None:
        try:
            out["position"] = [float(v) for v in at.split(",")]
        except ValueError:
            raise CimInputError(f"--proposal-at takes LON,LAT[,H], not {at!r}") from None
    if rotation is not None:
        out["rotation"] = rotation
    return out


def load_model_or_build(city_dir: Path) -> Any:
    """The city's surface model (:func:`cim.analysis.files.load_model`)."""
    from cim.analysis.files import load_model

    return load_model(city_dir)


def _kind_command(kind: str) -> click.Command:
    @click.argument("city_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--request", "request", default=None, help="The request as JSON text, or @FILE.json.")
    @click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="One field of the request (repeatable).")
    @click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write FILE.geojson or FILE.csv.")
    @click.option(
        "--proposal",
        "proposal",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A massing proposal: FILE.geojson (a footprint; its height from --proposal-height or the feature's height), "
        "FILE.ifc (placed by its georeferencing) or FILE.glb/.gltf (placed at --proposal-at).",
    )
    @click.option("--proposal-height", type=float, default=None, help="Height (m) of a GeoJSON proposal.")
    @click.option("--proposal-at", default=None, metavar="LON,LAT[,H]", help="Where a model's origin goes (glTF: required).")
    @click.option("--proposal-rotation", type=float, default=None, help="Degrees clockwise from north (a placed model).")
    @common
    @handle_errors
    def command(
        city_dir: Path,
        request: str | None,
        sets: tuple[str, ...],
        out: Path | None,
        proposal: Path | None,
        proposal_height: float | None,
        proposal_at: str | None,
        proposal_rotation: float | None,
        verbose: int,
        quiet: bool,
    ) -> None:
        from cim.analysis.service import run_analysis

        setup_logging(verbose, quiet)
        body = request_from(request, sets)
        if proposal is not None:
            body["proposal"] = proposal_from(proposal, height=proposal_height, at=proposal_at, rotation=proposal_rotation)
        answer = run_analysis(load_model_or_build(city_dir), kind, body)
        if out is not None:
            write_answer(answer, out)
        if not quiet:
            click.echo(json.dumps(answer["summary"], ensure_ascii=False))

    command.__doc__ = f"The {kind} analysis of the city in CITY_DIR (fields: see /api/openapi.json, /api/analysis/{kind})."
    return analyse.command(kind)(command)


for _kind in KINDS:
    _kind_command(_kind)


@analyse.command("model")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("city_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--resolution", type=float, default=None, help="Cell size in metres [default: the DEM's, within 1–2 m].")
@common
@handle_errors
def model(recipe: Path, city_dir: Path, resolution: float | None, verbose: int, quiet: bool) -> None:
    """Build the surface model the analyses run on (CITY_DIR/analysis/) from the city's RECIPE;
    cim build makes it too."""
    from cim.analysis.files import build_model

    setup_logging(verbose, quiet)
    m = build_model(recipe, city_dir, resolution=resolution)
    if not quiet:
        rows, cols = m.shape
        console.print(
            f"surface model: {len(m.prisms):,} buildings, {rows:,} × {cols:,} cells of {m.res:g} m → {city_dir / 'analysis'}",
            highlight=False,
        )
