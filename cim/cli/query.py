"""``cim query CITY_DIR``: the query API's results on the command line, for GIS staff.

Examples::

    cim query tiles/tianshui --text 秦州区 --format csv --out qinzhou.csv
    cim query tiles/tianshui --where "height > 50 AND use = 'residential'" --format geojson --out tall.geojson
    cim query tiles/tianshui --polygon plan.geojson --stats --group-by use
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from cim.cli.options import common, handle_errors, setup_logging

__all__ = ["query", "polygon_of_file"]


def _numbers(name: str, count: int | None = None) -> Callable[[click.Context, click.Parameter, str | None], list[float] | None]:
    """A click callback parsing comma-separated numbers (``count`` of them, when given)."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
        if value is None:
            return None
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            raise click.BadParameter(f"{name} takes comma-separated numbers, not {value!r}") from None
        if count is not None and len(numbers) != count:
            raise click.BadParameter(f"{name} takes {count} comma-separated numbers, not {len(numbers)}")
        return numbers

    return parse


def polygon_of_file(path: Path) -> list[float]:
    """The one polygon of a GeoJSON file (a Polygon, or a Feature or FeatureCollection holding
    exactly one) as ``lon, lat, ...``.

    Raises
    ------
    CimInputError
        The file is not GeoJSON or holds no polygon, or several.
    """
    from cim.errors import CimInputError

    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise CimInputError(f"{path}: not a readable GeoJSON file ({exc})") from None
    geoms = []
    for item in doc.get("features", [doc]) if isinstance(doc, dict) else []:
        geom = item.get("geometry", item) if isinstance(item, dict) else None
        if isinstance(geom, dict) and geom.get("type") in ("Polygon", "MultiPolygon"):
            geoms.append(geom)
    if len(geoms) != 1 or (geoms[0]["type"] == "MultiPolygon" and len(geoms[0]["coordinates"]) != 1):
        raise CimInputError(f"{path}: --polygon needs a GeoJSON file with exactly one polygon, found {len(geoms)} polygon geometries")
    rings = geoms[0]["coordinates"] if geoms[0]["type"] == "Polygon" else geoms[0]["coordinates"][0]
    try:
        return [float(c) for xy in rings[0] for c in xy[:2]]
    except (TypeError, ValueError, IndexError):
        raise CimInputError(f"{path}: the polygon's coordinates are not [lon, lat] numbers") from None


@click.command()
@click.argument("city_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--text", help="Place name, address or keyword (Chinese or Latin substrings; fuzzy when nothing matches).")
@click.option("--where", help="Combined conditions, e.g. \"height > 50 AND use = 'residential'\".")
@click.option("--bbox", callback=_numbers("--bbox", 4), help="west,south,east,north in degrees.")
@click.option(
    "--polygon", "polygon_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="GeoJSON file with one polygon."
)
@click.option("--point", callback=_numbers("--point", 2), help="lon,lat in degrees (with --radius).")
@click.option("--radius", type=float, help="Metres around --point.")
@click.option("--line", callback=_numbers("--line"), help="lon,lat,lon,lat,... in degrees: features it crosses.")
@click.option("--buffer", type=float, default=0.0, help="Metres around --line.")
@click.option("--layer", help="Layer id.")
@click.option("--id", "fid", help="Feature id.")
@click.option("--ifc-class", help="BIM elements of this IFC class.")
@click.option("--storey", help="BIM elements on this storey.")
@click.option("--globalid", help="The BIM element with this IFC GlobalId.")
@click.option("--model", help="BIM elements of this model.")
@click.option("--sort", help="Attribute to sort by; -attr for descending.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Most results  [default: all]")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["json", "geojson", "csv"]), default="json", show_default=True)
@click.option("--stats", is_flag=True, help="Statistics of the results (counts, areas, height histogram) instead of the results.")
@click.option("--group-by", type=click.Choice(["district", "use", "year_band", "layer"]), help="With --stats: per group.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File to write [default: standard output].")
@common
@handle_errors
def query(
    city_dir: Path,
    text: str | None,
    where: str | None,
    bbox: list[float] | None,
    polygon_file: Path | None,
    point: list[float] | None,
    radius: float | None,
    line: list[float] | None,
    buffer: float,
    layer: str | None,
    fid: str | None,
    ifc_class: str | None,
    storey: str | None,
    globalid: str | None,
    model: str | None,
    sort: str | None,
    limit: int | None,
    offset: int,
    fmt: str,
    stats: bool,
    group_by: str | None,
    out: Path | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Query the city built in CITY_DIR as /api/query does (every filter given must hold) and
    write the results as JSON, GeoJSON or CSV (UTF-8 with BOM, for Excel); --stats writes what
    /api/stats answers."""
    from cim.query import Query, open_store, select, statistics
    from cim.query.output import render
    from cim.store import atomic_write_bytes

    setup_logging(verbose, quiet)
    if group_by is not None and not stats:
        raise click.UsageError("--group-by goes with --stats")
    q = Query(
        text=text,
        where=where,
        bbox=bbox,
        polygon=polygon_of_file(polygon_file) if polygon_file is not None else None,
        point=point,
        radius=radius,
        line=line,
        buffer=buffer,
        layer=layer,
        id=fid,
        ifc_class=ifc_class,
        storey=storey,
        globalid=globalid,
        model=model,
        sort=sort,
    )
    store = open_store(city_dir)
    if stats:
        data = json.dumps(statistics(store, select(store, q).rows, group_by), ensure_ascii=False, indent=1).encode() + b"\n"
    else:
        data, _, _ = render(store, q, fmt, limit, offset)
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(out, data)
