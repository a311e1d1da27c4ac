"""Shared CLI plumbing: logging, progress bars and turning cim errors into exit codes."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cim.errors import CimError, CimInputError, CimIOError

console = Console(stderr=True)

#: exit codes: 1 for a user's bad input or unreadable file, 3 for other cim errors (2 is click's usage)
EXIT_INPUT, EXIT_ERROR = 1, 3


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("cim").setLevel(level)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report cim errors as one red line and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (CimInputError, CimIOError) as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(EXIT_INPUT)
        except CimError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: run the same command again to resume")
            sys.exit(130)

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


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-v/--verbose`` and ``-q/--quiet`` on every command."""
    fn = click.option("-q", "--quiet", is_flag=True, help="Only errors.")(fn)
    fn = click.option("-v", "--verbose", count=True, help="More detail (-vv for debug).")(fn)
    return fn
