"""Engines: where tile jobs run, and the one module that makes threads and processes.

A **tile job** is ``job(state, key) -> result``: a module-level function (picklable by
reference) of read-only shared state and one key, whose output depends on nothing else. The
same job runs in the calling thread, on a pool of threads, in forked worker processes (which
inherit ``state`` copy-on-write, no pickling of large arrays) or on a cluster, and gives the same
bytes on each. A job writes its tiles through the :class:`cim.store.TileSink` in its state, and
the layer's run logs them (see :mod:`cim.layers.base`).

An :class:`Engine` hands a layer a :class:`TaskPool` for the length of its build
(:meth:`Engine.pool`); the pool's threads end with it, and with them the work arrays a job keeps
per thread. Everything else that runs beside a layer's jobs (a thread overlapping file writes
with meshing, the search index writer, a DEM window read ahead) is a **helper thread** made here
too (:func:`helper_threads`, :func:`background`), so that this module knows every thread the
library runs: :func:`fork_allowed` forks only when the process policy allows it
(:mod:`cim.runtime`) and every other thread is one known to hold no lock a child would need.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from cim.errors import CimInputError
from cim.runtime import fork_available, policy

__all__ = [
    "Engine",
    "LocalEngine",
    "TaskPool",
    "InlinePool",
    "ThreadPool",
    "ForkPool",
    "engine_from",
    "helper_executor",
    "helper_threads",
    "background",
    "fork_allowed",
    "register_fork_safe",
]

K = TypeVar("K")
R = TypeVar("R")
Job = Callable[[Any, Any], Any]

#: name prefixes of helper threads known to hold no lock a forked child would take
_FORK_SAFE: set[str] = set()
#: live thread pools by their threads' name prefix (their idle threads are fork-safe)
_POOLS: dict[str, ThreadPool] = {}
_pool_ids = itertools.count(1)


def register_fork_safe(prefix: str) -> None:
    """Declare that helper threads named ``prefix...`` never hold a lock a forked child takes
    (for example a thread that only runs SQLite on its own connection)."""
    _FORK_SAFE.add(prefix)


def fork_allowed() -> bool:
    """True when this process may fork now: the process policy allows it (:mod:`cim.runtime`),
    the platform is Linux (macOS system libraries are not fork-safe), and every other Python
    thread is a helper thread declared fork-safe (fork copies only the calling thread, so a lock
    another thread holds would stay locked in the child forever)."""
    if not (policy().fork and fork_available() and sys.platform.startswith("linux")):
        return False
    me = threading.current_thread()
    safe = tuple(_FORK_SAFE)
    for t in threading.enumerate():
        if t is me or (safe and t.name.startswith(safe)):
            continue
        pool = _POOLS.get(t.name.rpartition("_")[0])
        if pool is None or pool.busy:
            return False
    return True


# -- pools -----------------------------------------------------------------------------------


class TaskPool(ABC):
    """Runs one layer's tile jobs; results come back in key order."""

    workers: int = 1

    @abstractmethod
    def map(self, job: Job, state: Any, keys: Iterable[Any], *, sizes: Sequence[float] | None = None) -> Iterator[Any]:
        """Yield ``job(state, key)`` for every key, in the keys' order.

        ``sizes`` (one per key) lets a parallel pool start the largest jobs first, so that the
        last moments of a pass are short jobs; results still come back in key order.
        """


class InlinePool(TaskPool):
    """Runs every job in the calling thread, one after the other."""

    def map(self, job: Job, state: Any, keys: Iterable[Any], *, sizes: Sequence[float] | None = None) -> Iterator[Any]:
        for key in keys:
            yield job(state, key)


class ThreadPool(TaskPool):
    """Runs jobs on threads of this process: the default, since every heavy step of the layers
    (numba kernels, numpy, GDAL, zlib, meshopt, file writes) releases the GIL.

    While no job runs, its threads wait on the pool's queue and hold nothing a forked child
    needs, so they do not stop a fork (:func:`fork_allowed`): a layer's helper process may start
    between two passes of jobs.
    """

    def __init__(self, executor: ThreadPoolExecutor, workers: int) -> None:
        self._executor = executor
        self.workers = workers
        self._busy = 0
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """Some job is queued or running."""
        return self._busy > 0

    def _submit(self, job: Job, state: Any, key: Any) -> Future:
        with self._lock:
            self._busy += 1
        future = self._executor.submit(job, state, key)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future) -> None:
        with self._lock:
            self._busy -= 1

    def map(self, job: Job, state: Any, keys: Iterable[Any], *, sizes: Sequence[float] | None = None) -> Iterator[Any]:
        keys = list(keys)
        if len(keys) <= 1:
            yield from (job(state, key) for key in keys)
            return
        order: Iterable[int] = range(len(keys))
        if sizes is not None:
            order = sorted(order, key=lambda i: -sizes[i])
        futures = {i: self._submit(job, state, keys[i]) for i in order}
        try:
            for i in range(len(keys)):
                yield futures[i].result()
        finally:
            for f in futures.values():
                f.cancel()


_CHILD_STATE: Any = None
_CHILD_JOB: Job | None = None


def _run_in_child(key: Any) -> Any:
    assert _CHILD_JOB is not None
    return _CHILD_JOB(_CHILD_STATE, key)


class ForkPool(TaskPool):
    """Runs jobs in forked worker processes that inherit ``state`` copy-on-write.

    Only for jobs that touch numpy, files and the standard library: never a LAZ decoder or GDAL
    in the child (lazrs' threads and fork can deadlock). Results travel back pickled.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, job: Job, state: Any, keys: Iterable[Any], *, sizes: Sequence[float] | None = None) -> Iterator[Any]:
        global _CHILD_STATE, _CHILD_JOB
        keys = list(keys)
        if len(keys) < 2 * self.workers:
            yield from (job(state, key) for key in keys)
            return
        _CHILD_STATE, _CHILD_JOB = state, job
        try:
            ctx = multiprocessing.get_context("fork")
            with warnings.catch_warnings():
                # Python 3.12+ warns when a process with threads forks; fork_allowed() checked them
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
                pool = ctx.Pool(self.workers)
            with pool:
                yield from pool.imap(_run_in_child, keys, chunksize=1)
        finally:
            _CHILD_STATE, _CHILD_JOB = None, None


# -- engines ---------------------------------------------------------------------------------


class Engine(ABC):
    """Where a build's tile jobs run."""

    name: str = "engine"
    #: jobs run in this process's memory or its forks' (False: on other machines, whose jobs
    #: reach shared state and large arrays through files, see :mod:`cim.engines_dask`)
    shares_memory: bool = True

    @property
    @abstractmethod
    def workers(self) -> int:
        """How many jobs run at once."""

    def workers_for(self, small: bool) -> int:
        """How many jobs a pool opened with ``small`` runs at once (layers cut their work by it)."""
        return self.workers

    @abstractmethod
    def pool(self, name: str, *, small: bool = False) -> AbstractContextManager[TaskPool]:
        """A pool for one layer's jobs, for the length of the ``with`` block.

        ``small``: the layer's whole input is small enough that starting workers costs more than
        they save; an engine may then run the jobs in the calling thread.
        """

    @contextmanager
    def building(self, out: Path, inputs: Sequence[Path]) -> Iterator[None]:
        """The length of one build into ``out`` from ``inputs`` (sources and the files options
        name): an engine whose workers are elsewhere checks there that they see those paths."""
        yield

    def close(self) -> None:  # noqa: B027 - an engine that holds nothing has nothing to release
        """Release what the engine holds (a cluster connection)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalEngine(Engine):
    """Runs jobs on this machine: threads of this process by default.

    Parameters
    ----------
    workers : jobs at once (default: the number of cores)
    processes : run jobs in forked worker processes instead of threads. It is honoured only where
        :func:`fork_allowed` (the caller opted in to forking, see :mod:`cim.runtime`); otherwise
        threads run them. The layers' jobs release the GIL, so for them processes only add their
        start-up and copies (measured in ``benchmarks/README.md``); offered for jobs that hold
        the GIL
    """

    name = "local"

    def __init__(self, workers: int | None = None, *, processes: bool = False) -> None:
        if workers is not None and int(workers) < 1:
            raise CimInputError(f"workers must be at least 1, got {workers!r}")
        self._workers = int(workers) if workers is not None else (os.cpu_count() or 1)
        self._explicit = workers is not None
        self.processes = processes

    @property
    def workers(self) -> int:
        return self._workers

    def workers_for(self, small: bool) -> int:
        return 1 if small and not self._explicit else self._workers

    @contextmanager
    def pool(self, name: str, *, small: bool = False) -> Iterator[TaskPool]:
        n = self.workers_for(small)
        if n == 1:
            yield InlinePool()
        elif self.processes and fork_allowed():
            yield ForkPool(n)
        else:
            prefix = f"cim-{name}-{next(_pool_ids)}"
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix=prefix) as executor:
                _POOLS[prefix] = pool = ThreadPool(executor, n)
                try:
                    yield pool
                finally:
                    del _POOLS[prefix]

    def __repr__(self) -> str:
        return f"LocalEngine(workers={self._workers}{', processes=True' if self.processes else ''})"


def engine_from(engine: Engine | str | None = None, *, workers: int | None = None, scheduler: str | None = None) -> Engine:
    """An engine from a name (``"local"``, ``"threads"``, ``"processes"``, ``"dask"``) or an
    instance (returned as it is); ``None`` is the local engine. ``scheduler``: the Dask
    scheduler's address (``tcp://host:8786``), only with ``"dask"`` (without one, the Dask engine
    starts a local cluster)."""
    if isinstance(engine, Engine):
        return engine
    if scheduler is not None and engine != "dask":
        raise CimInputError(f"a scheduler ({scheduler}) is for the dask engine, not {engine or 'local'!r}")
    if engine in (None, "local", "threads"):
        return LocalEngine(workers)
    if engine == "processes":
        return LocalEngine(workers, processes=True)
    if engine == "dask":
        from cim.engines_dask import DaskEngine

        return DaskEngine(scheduler, workers=workers)
    raise CimInputError(f"unknown engine {engine!r} (known: local, threads, processes, dask)")


# -- helper threads ----------------------------------------------------------------------------


def helper_executor(n: int, name: str, *, fork_safe: bool = False) -> ThreadPoolExecutor:
    """``n`` threads that run beside a layer's jobs (file writes overlapping the meshing,
    attributes read while geometry streams in); the caller shuts them down. ``fork_safe``: they
    never hold a lock a forked child would take (see :func:`register_fork_safe`)."""
    prefix = f"cim-{name}"
    if fork_safe:
        register_fork_safe(prefix)
    return ThreadPoolExecutor(max_workers=max(1, n), thread_name_prefix=prefix)


@contextmanager
def helper_threads(n: int, name: str, *, fork_safe: bool = False) -> Iterator[ThreadPoolExecutor]:
    """:func:`helper_executor` for the length of a ``with`` block."""
    executor = helper_executor(n, name, fork_safe=fork_safe)
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def background(fn: Callable[..., R], *args: Any, name: str, fork_safe: bool = False) -> Future[R]:
    """Start ``fn(*args)`` on a daemon helper thread; its result or error comes back through the
    returned future. For one-shot work that a caller may never wait for (loading compiled
    kernels, reading ahead)."""
    prefix = f"cim-{name}"
    if fork_safe:
        register_fork_safe(prefix)
    future: Future[R] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=prefix, daemon=True).start()
    return future
