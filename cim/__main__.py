"""``python -m cim``: the ``cim`` command."""

from cim.cli.main import cli

cli(prog_name="cim")
