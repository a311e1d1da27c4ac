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

__all__ = ["analyse", "request_from", "write_answer"]


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


def _kind_command(kind: str) -> click.Command:
    @click.argument("city_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--request", "request", default=None, help="The request as JSON text, or @FILE.json.")
    @click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="One field of the request (repeatable).")
    @click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write FILE.geojson or FILE.csv.")
    @common
    @handle_errors
    def command(city_dir: Path, request: str | None, sets: tuple[str, ...], out: Path | None, verbose: int, quiet: bool) -> None:
        from cim.analysis.files import load_model
        from cim.analysis.service import run_analysis

        setup_logging(verbose, quiet)
        answer = run_analysis(load_model(city_dir), kind, request_from(request, sets))
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
