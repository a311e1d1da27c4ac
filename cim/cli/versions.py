"""``cim versions``, ``cim prune`` and ``cim diff``: a built city's history.

Examples::

    cim versions tiles/tianshui
    cim versions tiles/tianshui --json
    cim prune tiles/tianshui --keep 3
    cim diff tiles/tianshui v1 v2
    cim diff tiles/tianshui v1 latest --geojson changes.geojson
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cim.cli.options import common, console, handle_errors, setup_logging

__all__ = ["versions", "prune", "diff"]

_CITY = click.argument("city_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))


@click.command()
@_CITY
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@common
@handle_errors
def versions(city_dir: Path, as_json: bool, verbose: int, quiet: bool) -> None:
    """List the versions of a built city (one a build), oldest first."""
    from cim.versions import list_versions

    setup_logging(verbose, quiet)
    found = list_versions(city_dir)
    if as_json:
        click.echo(json.dumps([v.summary() for v in found], ensure_ascii=False, indent=1))
        return
    if not found:
        console.print(f"{city_dir}: no versions recorded (build it with cim build)")
        return
    for v in found:
        total = sum(int(layer.get("files", 0)) for layer in v.layers.values())
        recipe = (v.recipe or {}).get("path", "")
        click.echo(f"{v.id}\t{v.time}\t{len(v.files)} files\trewritten {v.rewritten}/{total}\t{len(v.sources)} sources\t{recipe}")


@click.command()
@_CITY
@click.option("--keep", type=int, required=True, help="How many of the newest versions to keep (at least 1).")
@common
@handle_errors
def prune(city_dir: Path, keep: int, verbose: int, quiet: bool) -> None:
    """Remove old versions of a built city, and the stored files no kept version needs."""
    from cim.versions import prune as prune_versions

    setup_logging(verbose, quiet)
    report = prune_versions(city_dir, keep)
    if not quiet:
        removed = ", ".join(report.removed) or "none"
        console.print(
            f"removed {removed}; kept {', '.join(report.kept) or 'none'}; "
            f"{report.objects_removed} stored files removed ({report.bytes_freed / 1e6:.1f} MB freed)",
            highlight=False,
        )


@click.command()
@_CITY
@click.argument("old")
@click.argument("new")
@click.option(
    "--geojson", "geojson", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the changes as GeoJSON."
)
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON instead of text.")
@common
@handle_errors
def diff(city_dir: Path, old: str, new: str, geojson: Path | None, as_json: bool, verbose: int, quiet: bool) -> None:
    """Features added (+), removed (-) and changed (~: geometry, or which attributes) from
    version OLD to version NEW of a built city (ids as cim versions lists them, or latest)."""
    from cim.diff import diff_versions

    setup_logging(verbose, quiet)
    result = diff_versions(city_dir, old, new)
    if geojson is not None:
        result.write_geojson(geojson)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
    elif not quiet:
        click.echo(result.text(), nl=False)
