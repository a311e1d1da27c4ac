"""The Dask engine: a build's tile jobs as tasks of a ``dask.distributed`` cluster.

The same jobs as on the local engine (``job(state, key)``, see :mod:`cim.engines`) run in the
worker processes of a Dask cluster: one started on this machine
(:class:`distributed.LocalCluster`, loopback only) or the cluster a scheduler address names
(``tcp://host:8786``), whose workers may be other machines. What the jobs read and write is on a
filesystem every worker sees (a shared mount): the sources, the city's output folder, and the
engine's scratch folder inside it (``.cim-dask-*``, removed when the build ends).

Large arrays travel as files, not through the scheduler:

- a pass's shared ``state`` is pickled once (protocol 5, its arrays out of band) into one file
  of the scratch folder; each worker process maps that file once (copy on write) and rebuilds
  the state with its arrays as views of the mapping;
- a job's key or result larger than :data:`INLINE_BYTES` goes the same way, one file each;
  smaller ones travel in the task message.

Output is the local engine's, byte for byte: a job's bytes depend on its state and key alone,
its files reach the shared folder through the store's :class:`~cim.store.TileSink`, and their
journal entries come back with the result, so only a job that finished is logged. A worker
lost mid-build (killed, its machine gone) loses its running and held tasks; the scheduler runs
them again on the workers left, and since a job rewrites whole files with the same bytes, the
build completes as if nothing had happened.

Before a build, :meth:`DaskEngine.building` checks on every worker that the inputs are there,
and that the output folder is the one the client sees (a file written by the client is read
back by each worker): a worker that sees another disk is a :class:`~cim.errors.CimIOError`
naming the worker and the path, before any tile is made.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import logging
import mmap
import os
import pickle
import secrets
import shutil
import socket
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cim.engines import Engine, Job, TaskPool
from cim.errors import CimInputError, CimIOError

__all__ = ["DaskEngine", "DaskPool", "INLINE_BYTES", "Shipped", "ship", "dump_file", "load_file"]

log = logging.getLogger("cim.engines.dask")

#: keys and results up to this many pickled bytes travel in the task message; larger ones as files
INLINE_BYTES = 256 << 10
_MAGIC = b"CIMSHIP1"
_ALIGN = 64
#: seconds to wait for a scheduler to answer
CONNECT_TIMEOUT = 10


# -- objects as files ----------------------------------------------------------------------------


def dump_file(obj: Any, path: str | Path) -> int:
    """Pickle ``obj`` into ``path`` with its contiguous buffers (numpy arrays) out of band, each
    aligned, so that :func:`load_file` maps them instead of copying them; returns the bytes.

    Layout: magic, buffer count ``n`` (uint64), then ``n + 1`` (offset, length) uint64 pairs (the
    pickle stream first), then the stream and the buffers.
    """
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    parts = [memoryview(stream), *(b.raw() for b in buffers)]
    pos = len(_MAGIC) + 8 + 16 * len(parts)
    table = []
    for part in parts:
        pos += -pos % _ALIGN
        table.append((pos, part.nbytes))
        pos += part.nbytes
    try:
        with open(path, "wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(buffers)) + b"".join(struct.pack("<QQ", o, n) for o, n in table))
            at = len(_MAGIC) + 8 + 16 * len(parts)
            for (off, _), part in zip(table, parts):
                f.write(b"\0" * (off - at))
                f.write(part)
                at = off + part.nbytes
    except OSError as exc:
        raise CimIOError(f"{path}: cannot write the Dask engine's scratch file ({exc.strerror or exc})") from exc
    return pos


def load_file(path: str | Path) -> Any:
    """The object :func:`dump_file` wrote; its arrays are views of a private (copy-on-write)
    mapping of the file, which stays valid after the file is removed."""
    try:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except OSError as exc:
        raise CimIOError(f"{path}: cannot read the Dask engine's scratch file ({exc.strerror or exc})") from exc
    if mm[: len(_MAGIC)] != _MAGIC:
        raise CimIOError(f"{path}: not a Dask engine scratch file")
    (n,) = struct.unpack_from("<Q", mm, len(_MAGIC))
    table = [struct.unpack_from("<QQ", mm, len(_MAGIC) + 8 + 16 * i) for i in range(n + 1)]
    view = memoryview(mm)
    (o, size), rest = table[0], table[1:]
    return pickle.loads(view[o : o + size], buffers=[view[a : a + b] for a, b in rest])


@dataclass(frozen=True)
class Shipped:
    """An object that travels as a file of the shared scratch folder (see :func:`ship`)."""

    path: str

    def load(self, remove: bool = False) -> Any:
        """The object; ``remove``: delete the file once mapped (its reader is the last)."""
        obj = load_file(self.path)
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        return obj


def ship(obj: Any, folder: str, name: str) -> Any:
    """``obj`` itself when it pickles to at most :data:`INLINE_BYTES`, else a :class:`Shipped`
    file ``folder/name`` holding it."""
    buffers: list[pickle.PickleBuffer] = []
    size = len(pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)) + sum(b.raw().nbytes for b in buffers)
    if size <= INLINE_BYTES:
        return obj
    path = os.path.join(folder, name)
    dump_file(obj, path)
    return Shipped(path)


# -- what runs on a worker -----------------------------------------------------------------------

#: states this worker process mapped, by file (the last few: a layer's passes come one by one)
_STATES: OrderedDict[str, Any] = OrderedDict()
_STATES_LOCK = threading.Lock()
_KEEP_STATES = 2


def _state(path: str) -> Any:
    with _STATES_LOCK:
        if path in _STATES:
            _STATES.move_to_end(path)
            return _STATES[path]
        state = _STATES[path] = load_file(path)
        while len(_STATES) > _KEEP_STATES:
            _STATES.popitem(last=False)
        return state


def _run_task(job: Job, state_path: str, key: Any, scratch: str) -> Any:
    """A Dask task: ``job(state, key)`` with the state mapped from its file, the key and result
    through files when large."""
    if isinstance(key, Shipped):
        key = key.load()
    result = job(_state(state_path), key)
    return ship(result, scratch, f"result-{uuid.uuid4().hex}.pkl")


def _forget(path: str) -> None:
    """Drop a mapped state (its pass is over)."""
    with _STATES_LOCK:
        _STATES.pop(path, None)


def _worker_sees(inputs: list[str], probe: str, token: str) -> dict[str, Any]:
    """What this worker sees of a build's paths: the inputs it misses, and whether it reads the
    client's probe file in the output folder (the same filesystem) and may write beside it."""
    missing = [p for p in inputs if not os.path.exists(p)]
    problem = None
    try:
        with open(probe, encoding="utf-8") as f:
            if f.read() != token:
                problem = "holds another file there (not the client's filesystem)"
    except FileNotFoundError:
        problem = "does not see the folder the client made (not a shared filesystem?)"
    except OSError as exc:
        problem = f"cannot read it ({exc.strerror or exc})"
    if problem is None:
        mine = f"{probe}.{socket.gethostname()}.{os.getpid()}"
        try:
            with open(mine, "w", encoding="utf-8") as f:
                f.write(token)
            os.unlink(mine)
        except OSError as exc:
            problem = f"cannot write there ({exc.strerror or exc})"
    return {"missing": missing, "problem": problem, "host": socket.gethostname()}


# -- the client side -----------------------------------------------------------------------------


class DaskPool(TaskPool):
    """Runs one layer's jobs as tasks of the engine's cluster (see the module notes)."""

    def __init__(self, engine: DaskEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.workers = engine.workers

    def map(self, job: Job, state: Any, keys: Iterable[Any], *, sizes: Sequence[float] | None = None) -> Iterator[Any]:
        keys = list(keys)
        if not keys:
            return
        engine = self.engine
        client, scratch = engine.client, engine.scratch
        n = next(engine._maps)
        tag = f"cim-{self.name}-{engine.token}-{n}"  # Dask groups tasks by "cim-<kind>"
        state_path = os.path.join(scratch, f"state-{n}.pkl")
        size = dump_file(state, state_path)
        log.debug("%s: pass %d, %d jobs, state %.1f MB", self.name, n, len(keys), size / 1e6)
        rank = sorted(range(len(keys)), key=lambda i: -sizes[i]) if sizes is not None else list(range(len(keys)))
        priority = {i: len(keys) - r for r, i in enumerate(rank)}
        futures = []
        try:
            for i in rank:
                shipped = ship(keys[i], scratch, f"key-{n}-{i}.pkl")
                futures.append(
                    (
                        i,
                        client.submit(_run_task, job, state_path, shipped, scratch, key=f"{tag}-{i}", priority=priority[i], pure=False),
                    )
                )
            by_index = dict(futures)
            for i in range(len(keys)):
                future = by_index.pop(i)
                try:
                    result = future.result()
                except Exception as exc:
                    lost = _lost(exc, self.name)
                    if lost is exc:
                        raise  # the job's own error, as the local engine raises it
                    raise lost from exc
                future.release()
                yield result.load(remove=True) if isinstance(result, Shipped) else result
        finally:
            pending = [f for _, f in futures if not f.done()]
            if pending:
                client.cancel(pending)
            with contextlib.suppress(Exception):
                client.run(_forget, state_path)
            for name in [f"state-{n}.pkl", *(f"key-{n}-{i}.pkl" for i in range(len(keys)))]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(scratch, name))


def _lost(exc: Exception, name: str) -> Exception:
    """A cluster failure as a :class:`~cim.errors.CimIOError`; a job's own error unchanged."""
    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker):
        return CimIOError(f"{name}: a tile job was lost with every worker that ran it ({exc}); see the workers' logs")
    if type(exc).__name__ in ("CommClosedError", "FutureCancelledError", "CancelledError"):
        return CimIOError(f"{name}: the Dask cluster went away mid-build ({exc})")
    return exc


class DaskEngine(Engine):
    """Runs tile jobs on a Dask distributed cluster.

    Parameters
    ----------
    scheduler : the scheduler's address (``tcp://host:8786``); ``None`` starts a
        :class:`distributed.LocalCluster` of worker processes on 127.0.0.1 (its dashboard on
        127.0.0.1 when bokeh is installed), closed with the engine
    workers : worker processes of the local cluster (default: the number of cores), one thread
        each; ignored with a ``scheduler``
    scratch : the folder for the engine's files when a build names none (see :meth:`building`);
        default: a temporary folder of this machine, which only a local cluster sees

    Raises
    ------
    CimIOError
        The scheduler cannot be reached, or has no worker.
    CimInputError
        dask.distributed is not installed (``pip install cim[dask]``).
    """

    name = "dask"
    shares_memory = False

    def __init__(self, scheduler: str | None = None, *, workers: int | None = None, scratch: str | Path | None = None) -> None:
        if importlib.util.find_spec("distributed") is None:
            raise CimInputError("the dask engine needs dask.distributed: pip install 'cim[dask]'")
        from distributed import Client

        if workers is not None and int(workers) < 1:
            raise CimInputError(f"workers must be at least 1, got {workers!r}")
        self.scheduler = scheduler
        self.token = secrets.token_hex(4)
        self._maps = itertools.count(1)
        self._own_scratch: str | None = None
        self._scratch = os.fspath(scratch) if scratch is not None else None
        self.cluster: Any = None
        self.client: Any = None
        if scheduler is None:
            from distributed import LocalCluster

            n = int(workers) if workers is not None else (os.cpu_count() or 1)
            try:
                self.cluster = LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    # the scheduler's HTTP server (the dashboard where bokeh is installed, else
                    # only its health and metrics routes) on loopback, on a free port
                    dashboard_address="127.0.0.1:0",
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self.cluster)
            except Exception as exc:
                self.close()
                raise CimIOError(f"cannot start a local Dask cluster: {exc}") from exc
        else:
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise CimIOError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
            try:
                self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                self.close()
                raise CimIOError(f"the Dask scheduler at {scheduler} has no worker ({exc})") from exc

    @property
    def workers(self) -> int:
        """Threads of the cluster's workers (jobs at once)."""
        return max(1, sum(self.client.nthreads().values()))

    @property
    def dashboard(self) -> str | None:
        """The dashboard's address, when the scheduler serves one."""
        if self.cluster is not None and importlib.util.find_spec("bokeh") is None:
            return None  # the scheduler serves a page saying bokeh is missing, nothing to watch
        try:
            return str(self.client.dashboard_link)
        except Exception:  # a scheduler without an HTTP server
            return None

    def describe(self) -> str:
        """One line for the command line: where the jobs run and where to watch them."""
        address = self.client.scheduler.address
        workers = len(self.client.scheduler_info().get("workers", {}))
        where = "a local cluster" if self.cluster is not None else "the cluster"
        board = self.dashboard
        shown = f"dashboard {board}" if board else "no dashboard (install bokeh for one)"
        return f"dask: {where} at {address}, {workers} worker(s), {self.workers} thread(s); {shown}"

    @property
    def scratch(self) -> str:
        """The folder of the engine's files (the build's, else a private temporary one)."""
        if self._scratch is None:
            import tempfile

            self._scratch = self._own_scratch = tempfile.mkdtemp(prefix="cim-dask-")
        return self._scratch

    @contextmanager
    def building(self, out: Path, inputs: Sequence[Path]) -> Iterator[None]:
        """The length of one build into ``out``: the scratch folder inside it, checked on every
        worker with the inputs (see the module notes), removed at the end."""
        previous = self._scratch
        folder = Path(out).absolute() / f".cim-dask-{self.token}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CimIOError(f"{folder}: cannot make the Dask engine's scratch folder ({exc.strerror or exc})") from exc
        self._scratch = os.fspath(folder)
        try:
            self._check(folder, [Path(p).absolute() for p in inputs])
            yield
        finally:
            self._scratch = previous
            shutil.rmtree(folder, ignore_errors=True)

    def _check(self, folder: Path, inputs: list[Path]) -> None:
        token = secrets.token_hex(16)
        probe = folder / "probe"
        probe.write_text(token, encoding="utf-8")
        seen = self.client.run(_worker_sees, [os.fspath(p) for p in inputs], os.fspath(probe), token)
        probe.unlink()
        for worker, got in sorted(seen.items()):
            if got["missing"]:
                shown = ", ".join(got["missing"][:3]) + (f" and {len(got['missing']) - 3} more" if len(got["missing"]) > 3 else "")
                raise CimIOError(
                    f"Dask worker {worker} (host {got['host']}) cannot see the input {shown}: put the inputs on a filesystem every worker mounts at the same path"
                )
            if got["problem"]:
                raise CimIOError(
                    f"Dask worker {worker} (host {got['host']}): the output folder {folder.parent} {got['problem']}: put it on a filesystem every worker mounts at the same path"
                )

    def workers_for(self, small: bool) -> int:
        return self.workers

    @contextmanager
    def pool(self, name: str, *, small: bool = False) -> Iterator[TaskPool]:
        yield DaskPool(self, name)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
            self.client = None
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
            self.cluster = None
        if self._own_scratch is not None:
            shutil.rmtree(self._own_scratch, ignore_errors=True)
            self._own_scratch = None
            self._scratch = None

    def __repr__(self) -> str:
        return f"DaskEngine(scheduler={self.scheduler!r})"
