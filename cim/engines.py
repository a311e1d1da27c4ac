"""Engines: where a layer's tile jobs run.

A tile job is ``job(state, item) -> result``: a module-level function of shared read-only state
(the layer's arrays) and one item (a tile key). The same job runs in this process on a thread
pool, or in forked worker processes that inherit ``state`` copy-on-write (no pickling of large
arrays), and gives the same bytes either way.

``"processes"`` uses the fork start method, so it is offered only where fork exists (Linux,
macOS) and only for jobs that touch numpy, files and the standard library: never a LAZ decoder
or GDAL in the child (see the field notes on lazrs and fork). ``"auto"`` picks processes for
pure-numpy jobs when more than one core is asked for.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_STATE: Any = None
_JOB: Callable[[Any, Any], Any] | None = None


def _run_in_child(item: Any) -> Any:
    assert _JOB is not None
    return _JOB(_STATE, item)


def fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def run_jobs(
    job: Callable[[Any, T], R],
    state: Any,
    items: Iterable[T],
    *,
    workers: int | None = None,
    engine: str = "auto",
) -> Iterator[R]:
    """Yield ``job(state, item)`` for every item, in order.

    Parameters
    ----------
    job : a module-level function (picklable by reference)
    state : read-only data every job needs
    items : the jobs' keys
    workers : parallel workers (default: the number of cores)
    engine : ``"threads"``, ``"processes"`` or ``"auto"``
    """
    global _STATE, _JOB
    items = list(items)
    workers = max(1, workers or os.cpu_count() or 1)
    if engine == "auto":
        engine = "processes" if workers > 1 and fork_available() and len(items) >= 2 * workers else "threads"
    if engine == "processes" and not fork_available():
        engine = "threads"
    if engine == "threads" or workers == 1:
        if workers == 1:
            yield from (job(state, item) for item in items)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(lambda item: job(state, item), items)
        return
    if engine != "processes":
        raise ValueError(f"unknown engine {engine!r}")
    _STATE, _JOB = state, job
    try:
        ctx = multiprocessing.get_context("fork")
        with warnings.catch_warnings():
            # Python 3.12+ warns when forking a process that has threads (GDAL's pool, say);
            # the children run only numpy and file writes, which hold none of those locks
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
            pool = ctx.Pool(workers)
        with pool:
            yield from pool.imap(_run_in_child, items, chunksize=1)
    finally:
        _STATE, _JOB = None, None
