"""``cim annotations``: the notes planners placed on a served city (批注), from the command line.

Examples::

    cim annotations list tiles/tianshui
    cim annotations export tiles/tianshui --out notes.geojson
    cim annotations export tiles/tianshui --bbox 105.70,34.56,105.75,34.60 > notes.geojson
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cim.cli.options import common, console, handle_errors, setup_logging

__all__ = ["annotations_group"]

CITY = click.argument("city_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
BBOX = click.option("--bbox", help="Only notes touching west,south,east,north (degrees).")


def _bbox(text: str | None) -> list[float] | None:
    from cim.errors import CimInputError

    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise CimInputError(f"--bbox {text!r}: give four numbers west,south,east,north") from None
    if len(values) != 4:
        raise CimInputError(f"--bbox {text!r}: give four numbers west,south,east,north")
    return values


@click.group("annotations")
def annotations_group() -> None:
    """Notes (pins, polylines, polygons) placed on a city in the viewer: list and export them."""


@annotations_group.command("export")
@CITY
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="GeoJSON file to write [default: standard output]."
)
@BBOX
@common
@handle_errors
def annotations_export(city_dir: Path, out: Path | None, bbox: str | None, verbose: int, quiet: bool) -> None:
    """Write the notes of the city in CITY_DIR as a GeoJSON FeatureCollection (oldest first)."""
    from cim.annotations import AnnotationStore, export_geojson, geojson_bytes
    from cim.errors import CimNotFound

    setup_logging(verbose, quiet)
    box = _bbox(bbox)
    if out is None:
        if not (city_dir / "city.json").is_file():
            raise CimNotFound(f"{city_dir}: not a built city (no city.json)")
        sys.stdout.buffer.write(geojson_bytes(AnnotationStore(city_dir).all(bbox=box)))
        return
    count = export_geojson(city_dir, out, bbox=box)
    if not quiet:
        console.print(f"{count} annotation(s) → {out}", highlight=False)


@annotations_group.command("list")
@CITY
@BBOX
@handle_errors
def annotations_list(city_dir: Path, bbox: str | None) -> None:
    """Print one line a note, newest first: id, kind, author, last change, title or text."""
    from cim.annotations import AnnotationStore

    _, notes = AnnotationStore(city_dir).page(bbox=_bbox(bbox), limit=-1)
    for note in notes:
        shown = (note["title"] or note["text"]).replace("\n", " ")
        click.echo(f"{note['id']:>6} {note['kind']:<8} {note['author']:<12} {note['updated']} {shown[:80]}")
