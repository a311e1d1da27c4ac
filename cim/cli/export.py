"""``cim export FORMAT LAYER OUT``: a built layer in another format.

Examples::

    cim export i3s tiles/tianshui/buildings buildings.slpk
    cim export i3s tiles/tianshui/bim bim.slpk --name "BIM models"
"""

from __future__ import annotations

from pathlib import Path

import click

from cim.cli.options import common, console, handle_errors, setup_logging

__all__ = ["export"]


@click.group()
def export() -> None:
    """Export a built layer to another format (I3S scene layer packages)."""


@export.command("i3s")
@click.argument("layer_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="The scene layer's name [default: the layer folder's name].")
@common
@handle_errors
def i3s(layer_dir: Path, out: Path, name: str | None, verbose: int, quiet: bool) -> None:
    """Write a built buildings, BIM or mesh layer (LAYER_DIR, e.g. tiles/city/buildings) as an
    I3S 1.8 scene layer package OUT (.slpk): 3DObject, or IntegratedMesh for a mesh layer."""
    from cim.export.i3s import export_i3s

    setup_logging(verbose, quiet)
    result = export_i3s(layer_dir, out, name=name)
    if not quiet:
        console.print(result.summary(), highlight=False)
