"""``cim``: sample, build, convert and serve city information models.

Examples::

    cim sample --preset tiny sample_city
    cim build sample_city/city.toml --out tiles/tianshui
    cim convert buildings footprints.shp tiles/footprints --height-attr HEIGHT --dem dem.tif
    cim serve tiles/tianshui
    cim export i3s tiles/tianshui/buildings buildings.slpk
    cim users add tiles/tianshui wang --role planner
    cim access restrict tiles/tianshui bim --role planner
    cim audit verify tiles/tianshui
    cim versions tiles/tianshui
    cim diff tiles/tianshui v1 v2 --geojson changes.geojson

``cim convert`` has one subcommand per layer kind of :mod:`cim.layers.registry` (a plugin's
kinds included), with the kind's options as flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cim._version import __version__
from cim.cli.admin import access, audit, users
from cim.cli.analyse import analyse
from cim.cli.annotations import annotations_group
from cim.cli.convert import KindGroup
from cim.cli.export import export
from cim.cli.options import common, console, engine_options, handle_errors, owns_process, print_report, progress_bar, setup_logging
from cim.cli.query import query
from cim.cli.versions import diff, prune, versions

if TYPE_CHECKING:
    from cim.engines import Engine

__all__ = ["cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cim")
def cli() -> None:
    """Turn a city's raw data into a streaming 3D city information model (OGC 3D Tiles 1.1)."""


@cli.command()
@click.option(
    "--preset",
    type=click.Choice(["tiny", "district", "city", "survey"]),
    default="tiny",
    show_default=True,
    help="How much of the city: tiny (a few blocks), district (4 km²), city (120 km², 0.9 GB), survey (city at 8 pts/m², 8 GB).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; the same seed gives the same city.")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@common
@handle_errors
@owns_process
def sample(preset: str, seed: int, out_dir: Path, verbose: int, quiet: bool) -> None:
    """Write the synthetic Tianshui sample city (sources + city.toml) into OUT_DIR."""
    import cim

    setup_logging(verbose, quiet)
    with console.status(f"generating the {preset} preset"):
        city = cim.sample(preset, out_dir, seed=seed)
    if not quiet:
        console.print(f"sample {preset}: {city.n_buildings:,} buildings, DEM and recipe in {city.seconds:.1f} s → {city.recipe}")


@cli.command()
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder [default: tiles/<city name>]."
)
@engine_options
@common
@handle_errors
@owns_process
def build(recipe: Path, out: Path | None, engine: Engine, verbose: int, quiet: bool) -> None:
    """Build every layer of a city RECIPE (city.toml) into 3D Tiles and a city.json manifest."""
    from cim.pipeline import build as build_city
    from cim.recipe import load_recipe

    setup_logging(verbose, quiet)
    rec = load_recipe(recipe)
    out = out or Path("tiles") / rec.name
    with engine, progress_bar(not quiet) as progress:
        report = build_city(rec, out, engine=engine, progress=progress)
    print_report(report, quiet)


cli.add_command(users)
cli.add_command(access)
cli.add_command(audit)
cli.add_command(annotations_group)
cli.add_command(
    KindGroup("convert", help="Convert one source (or several files of one layer) into a standalone city: cim convert KIND SOURCES... OUT.")
)


cli.add_command(export)
cli.add_command(analyse)
cli.add_command(query)
for _command in (versions, prune, diff):
    cli.add_command(_command)


@cli.command()
@click.argument("city_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback unless you mean to share it).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--head-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds a request head may take.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Server processes sharing the port  [default: one a CPU]")
@click.option(
    "--cache-mb",
    type=click.FloatRange(min=0),
    default=64.0,
    show_default=True,
    help="MiB of small tiles each process keeps in memory (0: none).",
)
@common
@handle_errors
def serve(
    city_dir: Path, host: str, port: int, head_timeout: float, workers: int | None, cache_mb: float, verbose: int, quiet: bool
) -> None:
    """Serve a built city (CITY_DIR with city.json) and the viewer."""
    setup_logging(verbose, quiet)
    from cim.server import run
    from cim.server.workers import default_workers

    run(
        city_dir,
        host=host,
        port=port,
        head_timeout=head_timeout,
        workers=default_workers() if workers is None else workers,
        cache_bytes=int(cache_mb * 2**20),
    )
