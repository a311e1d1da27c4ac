"""``cim``: sample, build, convert and serve city information models.

Examples::

    cim sample --preset tiny sample_city
    cim build sample_city/city.toml --out tiles/tianshui
    cim convert buildings footprints.shp tiles/footprints --height-attr HEIGHT --dem dem.tif
    cim serve tiles/tianshui
"""

from __future__ import annotations

import gc
from pathlib import Path

import click

import cim
from cim.cli.options import common, console, handle_errors, progress_bar, setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cim.__version__, prog_name="cim")
def cli() -> None:
    """Turn a city's raw data into a streaming 3D city information model (OGC 3D Tiles 1.1)."""


@cli.command()
@click.option("--preset", type=click.Choice(["tiny", "district", "city"]), default="tiny", show_default=True, help="How much of the city.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; the same seed gives the same city.")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@common
@handle_errors
def sample(preset: str, seed: int, out_dir: Path, verbose: int, quiet: bool) -> None:
    """Write the synthetic Tianshui sample city (sources + city.toml) into OUT_DIR."""
    setup_logging(verbose, quiet)
    with console.status(f"generating the {preset} preset"):
        city = cim.sample(preset, out_dir, seed=seed)
    if not quiet:
        console.print(f"sample {preset}: {city.n_buildings:,} buildings, DEM and recipe in {city.seconds:.1f} s → {city.recipe}")


@cli.command()
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder [default: tiles/<city name>].")
@common
@handle_errors
def build(recipe: Path, out: Path | None, verbose: int, quiet: bool) -> None:
    """Build every layer of a city RECIPE (city.toml) into 3D Tiles and a city.json manifest."""
    setup_logging(verbose, quiet)
    rec = cim.load_recipe(recipe)
    out = out or Path("tiles") / rec.name
    with progress_bar(not quiet) as progress:
        report = cim.build(rec, out, progress=progress)
    _print_report(report, quiet)


@cli.group()
def convert() -> None:
    """Convert one source into a standalone layer."""


@convert.command("buildings")
@click.argument("footprints", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--crs", default=None, help="CRS of a file that declares none, e.g. EPSG:4544.")
@click.option("--height-attr", default="height", show_default=True, help="Attribute with the height in metres.")
@click.option("--floors-attr", default="floors", show_default=True, help="Attribute with the number of floors (used where no height).")
@click.option("--storey-height", type=float, default=3.0, show_default=True, help="Metres per floor.")
@click.option("--default-height", type=float, default=10.0, show_default=True, help="Metres, where neither height nor floors is known.")
@click.option("--dem", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="DEM to stand buildings on.")
@click.option("--id-attr", default="id", show_default=True, help="Attribute with feature ids.")
@click.option("--max-features", type=int, default=2000, show_default=True, help="Most buildings in one tile.")
@common
@handle_errors
def convert_buildings(
    footprints: Path, out: Path, crs: str | None, height_attr: str, floors_attr: str, storey_height: float,
    default_height: float, dem: Path | None, id_attr: str, max_features: int, verbose: int, quiet: bool,
) -> None:
    """Extrude FOOTPRINTS (GeoPackage, GeoJSON, Shapefile) to LOD1 3D Tiles in OUT."""
    setup_logging(verbose, quiet)
    with progress_bar(not quiet) as progress:
        report = cim.convert_buildings(
            footprints, out, crs=crs, height=height_attr, floors=floors_attr, storey_height=storey_height,
            default_height=default_height, dem=dem, id_attr=id_attr, max_features=max_features, progress=progress,
        )
    _print_report(report, quiet)


@convert.command("terrain")
@click.argument("dem", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--max-zoom", type=int, default=None, help="Finest level [default: from the DEM's resolution].")
@click.option("--min-zoom", type=int, default=0, show_default=True, help="Coarsest level written.")
@click.option("--error-factor", type=float, default=1.0, show_default=True, help="Scale of each level's TIN error bound (at most 1.6).")
@common
@handle_errors
def convert_terrain(dem: Path, out: Path, max_zoom: int | None, min_zoom: int, error_factor: float, verbose: int, quiet: bool) -> None:
    """Mesh a DEM (any CRS, GeoTIFF or any GDAL raster) into quantized-mesh terrain in OUT."""
    setup_logging(verbose, quiet)
    with progress_bar(not quiet) as progress:
        report = cim.convert_terrain(dem, out, max_zoom=max_zoom, min_zoom=min_zoom, error_factor=error_factor, progress=progress)
    _print_report(report, quiet)


@convert.command("bim")
@click.argument("ifc", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--crs", default=None, help="CRS of --origin (and of a model whose map conversion names none).")
@click.option("--origin", nargs=3, type=float, default=None, help="E N H (in --crs) or lon lat h where the model's origin goes.")
@click.option("--rotation", type=float, default=None, help="Degrees counter-clockwise from grid east to the model's +X.")
@common
@handle_errors
def convert_bim(ifc: tuple[Path, ...], out: Path, crs: str | None, origin: tuple[float, float, float] | None, rotation: float | None, verbose: int, quiet: bool) -> None:
    """Convert IFC models (IFC2x3, IFC4, IFC4X3; files or folders) into 3D Tiles in OUT."""
    setup_logging(verbose, quiet)
    with progress_bar(not quiet) as progress:
        report = cim.convert_bim(list(ifc), out, crs=crs, origin=origin, rotation=rotation, progress=progress)
    _print_report(report, quiet)


@convert.command("pointcloud")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--crs", default=None, help="CRS of files that declare none, e.g. EPSG:4544.")
@click.option("--workers", type=int, default=None, help="Worker processes [default: the number of cores].")
@common
@handle_errors
def convert_pointcloud(sources: tuple[Path, ...], out: Path, crs: str | None, workers: int | None, verbose: int, quiet: bool) -> None:
    """Tile LAS/LAZ files (or folders of them) into one 3D Tiles 1.1 point cloud in OUT."""
    setup_logging(verbose, quiet)
    with progress_bar(not quiet) as progress:
        report = cim.convert_pointcloud(list(sources), out, crs=crs, workers=workers, progress=progress)
    _print_report(report, quiet)


@convert.command("imagery")
@click.argument("ortho", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["webp", "png", "jpeg"]), default="webp", show_default=True, help="Tile format (jpeg has no transparency).")
@click.option("--max-zoom", type=int, default=None, help="Finest zoom [default: from the image's resolution].")
@click.option("--min-zoom", type=int, default=None, help="Coarsest zoom [default: where the image fits in 2x2 tiles].")
@click.option("--quality", type=int, default=85, show_default=True, help="WebP/JPEG quality.")
@common
@handle_errors
def convert_imagery(ortho: Path, out: Path, fmt: str, max_zoom: int | None, min_zoom: int | None, quality: int, verbose: int, quiet: bool) -> None:
    """Tile an orthophoto ORTHO (any CRS, 8-bit) into Web Mercator XYZ tiles in OUT."""
    setup_logging(verbose, quiet)
    with progress_bar(not quiet) as progress:
        report = cim.convert_imagery(ortho, out, fmt=fmt, max_zoom=max_zoom, min_zoom=min_zoom, quality=quality, progress=progress)
    _print_report(report, quiet)


@cli.command()
@click.argument("city_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@common
@handle_errors
def serve(city_dir: Path, host: str, port: int, verbose: int, quiet: bool) -> None:
    """Serve a built city (CITY_DIR with city.json) and the viewer."""
    setup_logging(verbose, quiet)
    from cim.server import run

    run(city_dir, host=host, port=port)


def _print_report(report: "cim.pipeline.BuildReport", quiet: bool) -> None:
    for layer in report.layers:
        for w in layer.warnings:
            console.print(f"[yellow]warning[/] {layer.id}: {w}", highlight=False)
    if not quiet:
        console.print(report.summary(), highlight=False)
    # the command's work is done: Python's final collection at exit would walk every object still
    # alive (0.4-0.5 s after a point-cloud build, mostly numba's); frozen objects are skipped
    gc.freeze()
