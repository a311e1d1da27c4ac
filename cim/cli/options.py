"""Shared CLI plumbing: logging, progress bars, engine flags, the process policy, reports, and
turning cim errors into messages and exit codes."""

from __future__ import annotations

import functools
import gc
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cim.errors import CimError, CimInputError, CimIOError
from cim.warnings import CimWarning

if TYPE_CHECKING:
    from cim.pipeline import BuildReport

__all__ = [
    "console",
    "EXIT_INPUT",
    "EXIT_ERROR",
    "setup_logging",
    "handle_errors",
    "owns_process",
    "progress_bar",
    "common",
    "engine_options",
    "print_report",
]

#: stderr; errors and warnings print with soft wrapping, so a message stays one line in a log
console = Console(stderr=True)

#: exit codes: 1 for a user's bad input or unreadable file, 3 for other cim errors (2 is click's usage)
EXIT_INPUT, EXIT_ERROR = 1, 3


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("cim").setLevel(level)
    # GDAL's own warnings on a damaged file ("tag ignored", "IO error during reading") and
    # laspy's log of a LAZ chunk it cannot decode come before cim's one-line error or counted
    # warning about the same thing: shown with -v only
    logging.getLogger("rasterio").setLevel(logging.WARNING if verbose else logging.ERROR)
    logging.getLogger("laspy").setLevel(logging.WARNING if verbose else logging.CRITICAL)
    # so are the libraries' own Python warnings on such a file (numpy's "invalid value", GDAL's
    # "non closed ring"): cim's warnings say what was lost, in the report
    logging.getLogger("py.warnings").setLevel(logging.WARNING if verbose else logging.ERROR)
    warnings.showwarning = _log_warning


def _log_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None
) -> None:
    """Python warnings as log records of ``py.warnings`` (one line each, shown with -v)."""
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report cim errors as one red line and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (CimInputError, CimIOError) as exc:
            console.print(f"[bold red]error:[/] {_one_line(exc)}", highlight=False, soft_wrap=True)
            sys.exit(EXIT_INPUT)
        except CimError as exc:
            console.print(f"[bold red]error:[/] {_one_line(exc)}", highlight=False, soft_wrap=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: run the same command again to resume")
            sys.exit(130)

    return wrapper


def _one_line(exc: BaseException) -> str:
    """An error's message on one line, whatever a damaged file put in it (newlines, control
    bytes, rich markup), so that a log keeps one line an error."""
    from rich.markup import escape

    text = "".join(ch if ch.isprintable() else " " for ch in str(exc))
    return escape(" ".join(text.split()))


def owns_process(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command with the process-wide choices a library call may not make (see
    :mod:`cim.runtime`): helper processes are forked, the garbage collector is paused; and the
    build's typed warnings are shown once, in the report, rather than as Python warnings too.

    When the command's work is done, everything still alive is frozen out of the collector's
    sight: Python's final collection at exit would otherwise walk it all (numba's objects after
    a point-cloud build, for one).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cim.runtime import process_policy

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CimWarning)
            with process_policy(fork=True, pause_gc=True):
                result = fn(*args, **kwargs)
        gc.freeze()
        return result

    return wrapper


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar driven by the library's ``progress(stage, done, total)`` callback."""
    if not enabled or not console.is_terminal:
        yield lambda stage, done, total: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def common(fn: Any) -> Any:
    """``-v/--verbose`` and ``-q/--quiet`` on every command."""
    fn = click.option("-q", "--quiet", is_flag=True, help="Only errors.")(fn)
    fn = click.option("-v", "--verbose", count=True, help="More detail (-vv for debug).")(fn)
    return fn


SCHEDULER_HELP = (
    "With --engine dask: the Dask scheduler (tcp://HOST:8786), whose workers see the inputs and the output folder "
    "at the same paths [default: a local cluster of --workers processes]."
)


def engine_options(fn: Any) -> Any:
    """``--engine`` and ``--workers``, passed on as one ``engine`` argument (a :class:`cim.engines.Engine`)."""

    def finish(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def wrapper(*args: Any, engine_name: str, workers: int | None, scheduler: str | None, **kwargs: Any) -> Any:
            from cim.engines import engine_from

            try:
                engine = engine_from(engine_name, workers=workers, scheduler=scheduler)
            except CimInputError as exc:
                raise click.BadParameter(str(exc)) from None
            except CimIOError as exc:  # a scheduler out of reach
                console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                sys.exit(EXIT_INPUT)
            if hasattr(engine, "describe") and not kwargs.get("quiet"):
                console.print(engine.describe(), highlight=False, soft_wrap=True)  # the Dask dashboard's address
            return f(*args, engine=engine, **kwargs)

        return wrapper

    if isinstance(fn, click.Command):
        fn.params.append(
            click.Option(
                ["--engine", "engine_name"],
                type=click.Choice(["local", "processes", "dask"]),
                default="local",
                show_default=True,
                help="Where tile jobs run: threads of this process (local), forked worker processes, or a Dask cluster.",
            )
        )
        fn.params.append(
            click.Option(["--workers"], type=click.IntRange(min=1), default=None, help="Jobs at once [default: the number of cores].")
        )
        fn.params.append(click.Option(["--scheduler"], default=None, metavar="ADDRESS", help=SCHEDULER_HELP))
        assert fn.callback is not None
        fn.callback = finish(fn.callback)
        return fn
    fn = click.option("--scheduler", default=None, metavar="ADDRESS", help=SCHEDULER_HELP)(fn)
    fn = click.option("--workers", type=click.IntRange(min=1), default=None, help="Jobs at once [default: the number of cores].")(fn)
    fn = click.option(
        "--engine",
        "engine_name",
        type=click.Choice(["local", "processes", "dask"]),
        default="local",
        show_default=True,
        help="Where tile jobs run: threads of this process (local), forked worker processes, or a Dask cluster.",
    )(fn)
    return finish(fn)


def print_report(report: BuildReport, quiet: bool) -> None:
    """The build's warnings (yellow, one a line) and its summary."""
    for layer in report.layers:
        for w in layer.warnings:
            console.print(f"[yellow]warning[/] {w}", highlight=False, soft_wrap=True)
    if not quiet:
        console.print(report.summary(), highlight=False)
