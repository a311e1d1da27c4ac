"""``cim convert KIND SOURCES... OUT``: one subcommand per layer kind, made from the registry.

Each kind's flags come from its options dataclass (:class:`cim.layers.base.LayerOptions`): a
field's type gives the flag's type (``bool`` a ``--x/--no-x`` switch, a ``Literal`` a choice, a
tuple a flag of several values), its ``help`` metadata the help text, its ``cli`` metadata the
flag's name when it is not ``--<field-name>``. A kind a plugin registers gets its subcommand the
same way; nothing here names a kind.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import click

from cim.cli.options import common, console, engine_options, handle_errors, owns_process, print_report, progress_bar, setup_logging
from cim.errors import CimError

__all__ = ["KindGroup", "convert_command"]


class KindGroup(click.Group):
    """A click group whose subcommands are the registered layer kinds, made when asked for (so
    ``cim --help`` imports no layer)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from cim.layers import registry

        return registry.kinds()

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from cim.layers import registry

        if name not in registry.kinds():
            return None
        try:
            return convert_command(name)
        except CimError as exc:  # a plugin that cannot be loaded: say so, keep the others usable
            console.print(f"[yellow]warning[/] layer kind {name!r} is unavailable: {exc}", highlight=False)
            return None


def convert_command(kind: str) -> click.Command:
    """The ``cim convert KIND`` command of one kind."""
    from cim.layers import registry

    builder = registry.get(kind)
    names = [f.name for f in dataclasses.fields(builder.Options)]

    @handle_errors
    @owns_process
    def run(
        sources: tuple[Path, ...],
        out: Path,
        city_origin: tuple[float, float, float] | None,
        engine: Any,
        verbose: int,
        quiet: bool,
        **options: Any,
    ) -> None:
        from cim.pipeline import convert

        setup_logging(verbose, quiet)
        given = {k: v for k, v in options.items() if k in names and v is not None}
        with engine, progress_bar(not quiet) as progress:
            report = convert(kind, list(sources), out, city_origin=city_origin, engine=engine, progress=progress, **given)
        print_report(report, quiet)

    params: list[click.Parameter] = [
        click.Argument(["sources"], nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)),
        # not file_okay=False: a file in the way is the library's one-line error (make_output_dir)
        click.Argument(["out"], type=click.Path(path_type=Path)),
    ]
    hints = get_type_hints(builder.Options)
    params += [_option(f, hints[f.name]) for f in dataclasses.fields(builder.Options)]
    params.append(
        click.Option(
            ["--city-origin"],
            nargs=3,
            type=float,
            default=None,
            metavar="LON LAT H",
            help="The city's local frame origin [default: from the data].",
        )
    )
    command = click.Command(kind, callback=run, params=params, help=_help(builder), short_help=builder.summary)
    return common(engine_options(command))


def _help(builder: Any) -> str:
    sources = "SOURCES (files or folders)" if builder.multiple_sources else "SOURCE"
    return f"{builder.summary}\n\nReads {sources} and writes a standalone city into OUT (serve it with `cim serve OUT`)."


def _option(f: dataclasses.Field, hint: Any) -> click.Option:
    """A click option for one options field."""
    flag = f.metadata.get("cli") or f"--{f.name.replace('_', '-')}"
    default = f.default if f.default is not dataclasses.MISSING else None
    kwargs: dict[str, Any] = {"help": f.metadata.get("help", ""), "show_default": default is not None}
    base = _without_none(hint)
    if base is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=default, **kwargs)
    if get_origin(base) is Literal:
        return click.Option([flag, f.name], type=click.Choice([str(c) for c in get_args(base)]), default=default, **kwargs)
    if get_origin(base) is tuple:
        args = get_args(base)
        if len(args) == 2 and args[1] is Ellipsis:  # any number of values: one comma-separated argument
            return click.Option([flag, f.name], type=_Listed(_click_type(args[0])), default=default, **kwargs)
        return click.Option([flag, f.name], type=_click_type(args[0]), nargs=len(args), default=default, **kwargs)
    return click.Option([flag, f.name], type=_click_type(base), default=default, **kwargs)


class _Listed(click.ParamType):
    """Values of one type, comma-separated in one argument (``--roof-percentiles 50,90,99``)."""

    def __init__(self, item: Any) -> None:
        self.item = item
        self.name = f"{item.name},..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (tuple, list)):
            return tuple(value)
        return tuple(self.item.convert(v.strip(), param, ctx) for v in str(value).split(",") if v.strip())


def _without_none(hint: Any) -> Any:
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _click_type(hint: Any) -> Any:
    if hint is int:
        return click.INT
    if hint is float:
        return click.FLOAT
    if hint is Path:
        return click.Path(exists=True, path_type=Path)
    return click.STRING
