"""Where ifcopenshell's geometry kernel runs: a geometry process, or (tiny models) this process.

:class:`cim.sources.ifc.geometry.GeometryStream` drives a kernel through jobs and messages. The
kernel is one of:

- a **geometry process** (:class:`ProcessKernel`), which can be killed when an element never ends.
  It starts as a ``fork()`` of the caller, after the caller has parsed the file: no import, and
  the parsed model is shared copy-on-write rather than parsed twice. Used whenever
  :func:`cim.engines.fork_allowed` says so: the caller opted in to forking (the ``cim`` command
  does; see :mod:`cim.runtime`) and its other Python threads are known to be harmless (fork
  copies only the calling thread, so a lock another thread holds would stay locked in the child
  forever; native threads such as OpenBLAS's register fork handlers). Otherwise it is a fresh
  interpreter (``python -c``): nothing of the caller's ``__main__`` re-runs, but it imports numpy
  and ifcopenshell and parses the file again before the first element.
  ``GeometryOptions(start="spawn")`` forces it.
- **this process** (:class:`InProcessKernel`), for a model :func:`cim.sources.ifc.simple.
  simple_model` admits: a few elements of small planar solids, for which the fork, its
  copy-on-write page faults and the messages would cost a large part of the conversion (see
  ``benchmarks/README.md``). Its bound is not a timer, as a C++ call cannot be interrupted (it
  also holds the GIL throughout, so not even a watchdog thread runs): it is what is admitted;
  see :mod:`cim.sources.ifc.simple`.

Messages travel on their own socket pair (never stdout: kernel chatter on it cannot corrupt
them). The parent sends jobs, ``("iterate", ids | None)``, ``("careful", ids)`` or ``("exit",)``;
the process answers ``("ready",)`` once the file is open, one ``("el", ...)`` per element,
``("start", id)`` / ``("fail", id, why)`` in careful jobs, and ``("done", peak_mb)`` after each job,
or ``("error", why)`` before it ends. The in-process kernel gives the same messages.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import warnings
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import ifcopenshell
import ifcopenshell.geom

from cim.engines import fork_allowed
from cim.sources.ifc.file import EXCLUDED_CLASSES, get_attr, schema_has

__all__ = [
    "kernel_settings",
    "excluded_classes",
    "peak_rss_mb",
    "drawable_at_most",
    "child_entry",
    "ProcessKernel",
    "InProcessKernel",
    "Kernel",
]


def kernel_settings(max_voids: int) -> ifcopenshell.geom.settings:
    """The iterator settings cim uses: world coordinates (metres), unwelded vertices (the
    kernel's per-face normals: flat shading), default materials, at most ``max_voids`` openings
    subtracted per element (0: all)."""
    s = ifcopenshell.geom.settings()
    s.set("use-world-coords", True)
    s.set("weld-vertices", False)
    s.set("apply-default-materials", True)
    if max_voids > 0:
        s.set("max-voids-per-element", int(max_voids))
    return s


def excluded_classes(f: ifcopenshell.file, exclude: tuple[str, ...] = EXCLUDED_CLASSES) -> list[str]:
    """The classes of ``exclude`` the file's schema knows (the iterator rejects the others)."""
    return [c for c in exclude if schema_has(f, c)]


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM on Linux, else getrusage."""
    status = _proc_status()
    if "VmHWM" in status:
        return status["VmHWM"]
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _proc_status() -> dict[str, float]:
    """Memory lines of /proc/self/status in MB (empty off Linux)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    out[line[:5]] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return out


def _pack(shape) -> tuple:
    g = shape.geometry
    mats = []
    for m in g.materials:
        d = m.diffuse
        rgb = (d.r(), d.g(), d.b()) if d is not None else (0.7, 0.7, 0.7)
        t = m.transparency
        alpha = 1.0 if t is None or t != t else 1.0 - float(t)
        mats.append((float(rgb[0]), float(rgb[1]), float(rgb[2]), min(1.0, max(0.0, alpha))))
    return ("el", int(shape.id), shape.guid, shape.type, g.verts_buffer, g.normals_buffer, g.faces_buffer, g.material_ids_buffer, mats)


def drawable_at_most(f: ifcopenshell.file, exclude: list[str], limit: int) -> int:
    """How many products have a representation and are not excluded, counted up to ``limit + 1``.

    The iterator gets no more threads than elements: a thread with nothing to do only adds its
    start-up and hand-offs to ifcopenshell's iterator.
    """
    n = 0
    for p in f.by_type("IfcProduct"):
        if get_attr(p, "Representation") is not None and not any(p.is_a(c) for c in exclude):
            n += 1
            if n > limit:
                break
    return n


def _run_job(f: ifcopenshell.file, settings, opts: dict, job: tuple) -> Iterator[tuple]:
    """The messages of one job (see the module notes), but its closing ``("done", ...)``."""
    if job[0] == "iterate":
        ids = job[1]
        if ids is None:
            exclude = excluded_classes(f, tuple(opts["exclude"]))
            threads = min(opts["threads"], max(1, drawable_at_most(f, exclude, opts["threads"])))
            it = ifcopenshell.geom.iterator(settings, f, threads, exclude=exclude or None, geometry_library=opts["library"])
        elif ids:
            threads = min(opts["threads"], len(ids))
            it = ifcopenshell.geom.iterator(settings, f, threads, include=[f.by_id(i) for i in ids], geometry_library=opts["library"])
        if (ids is None or ids) and it.initialize():
            while True:
                yield _pack(it.get())
                if not it.next():
                    break
    elif job[0] == "careful":
        for i in job[1]:
            yield ("start", i)
            try:
                shape = ifcopenshell.geom.create_shape(settings, f.by_id(i), geometry_library=opts["library"])
            except Exception as exc:
                yield ("fail", i, " ".join(str(exc).split())[:240])
            else:
                yield _pack(shape)


def _serve(conn: Connection, path: str, opts: dict, f: ifcopenshell.file | None, base_mb: float) -> None:
    """The geometry process: open the file (unless inherited), then run jobs until told to stop.

    ``base_mb`` is the resident memory inherited from a forked parent: the peak reported after
    each job is what this process added to it.
    """
    try:
        if f is None:
            f = ifcopenshell.open(path)
        settings = kernel_settings(opts["max_voids"])
        conn.send(("ready",))
        while True:
            job = conn.recv()
            if job[0] not in ("iterate", "careful"):
                return
            for msg in _run_job(f, settings, opts, job):
                conn.send(msg)
            conn.send(("done", max(0.0, peak_rss_mb() - base_mb)))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the parent has gone
    except Exception as exc:  # report, then end: the parent decides
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def child_entry() -> None:
    """Entry point of a spawned geometry process (``python -c``): arguments come pickled on
    stdin, messages travel on the socket whose descriptor is ``argv[1]``."""
    conn = Connection(int(sys.argv[1]))
    path, opts = pickle.load(sys.stdin.buffer)
    _serve(conn, path, opts, None, 0.0)
    conn.close()


def _socket_pair() -> tuple[Connection, Connection]:
    """A duplex message channel. Large buffers (up to 4 MB where allowed) let the geometry
    process run ahead while the parent is busy, instead of blocking on a full socket."""
    a, b = socket.socketpair()
    for s in (a, b):
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    return Connection(a.detach()), Connection(b.detach())


class ProcessKernel:
    """A geometry process and the parent's end of its channel."""

    STALL, EOF = object(), object()

    def __init__(self, path: Path, opts: dict, file: ifcopenshell.file | None, start: str) -> None:
        here, there = _socket_pair()
        self.ready = False
        self.pid: int | None = None
        self.proc: subprocess.Popen | None = None
        try:
            if start != "spawn" and fork_allowed():
                try:
                    self.pid = self._fork(here, there, path, opts, file)
                except OSError:  # no memory or process left to fork: try a fresh interpreter
                    self.proc = self._spawn(there, path, opts)
            else:
                self.proc = self._spawn(there, path, opts)
        finally:
            there.close()
        self.conn = here

    @staticmethod
    def _fork(here: Connection, there: Connection, path: Path, opts: dict, file) -> int:
        with warnings.catch_warnings():
            # Python 3.12+ warns when native threads (OpenBLAS's pool) exist; see cim.engines.fork_allowed
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid:
            return pid
        code = 0
        try:  # the child: never return into the caller's code
            here.close()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            _serve(there, str(path), opts, file, _proc_status().get("VmRSS", 0.0))
        except BaseException:
            code = 1
        finally:
            os._exit(code)

    @staticmethod
    def _spawn(there: Connection, path: Path, opts: dict) -> subprocess.Popen:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        fd = there.fileno()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from cim.sources.ifc.kernel import child_entry; child_entry()", str(fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(fd,),
            env=env,
        )
        assert proc.stdin is not None  # stdin=PIPE
        try:
            proc.stdin.write(pickle.dumps((str(path), opts), protocol=pickle.HIGHEST_PROTOCOL))
            proc.stdin.close()
        except OSError:
            pass  # it died at once: recv() sees the end of the channel
        return proc

    def send(self, job: tuple) -> None:
        with contextlib.suppress(OSError):  # it has died: recv() sees the end of the channel
            self.conn.send(job)

    def recv(self, timeout: float | None):
        try:
            if not self.conn.poll(timeout):
                return self.STALL
            return self.conn.recv()
        except (EOFError, OSError):
            return self.EOF

    def release(self) -> None:
        """Tell the process to end, without waiting: it unmaps its memory on its own core while
        the caller goes on; :meth:`stop` reaps it later."""
        self.send(("exit",))
        self.conn.close()

    def stop(self) -> None:
        """Kill the process unless it has ended (it holds no resource worth a graceful end) and
        reap it."""
        if self.pid is not None:
            if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None
        self.conn.close()


class InProcessKernel:
    """The kernel in this process, behind :class:`ProcessKernel`'s interface (see the module notes).

    A job runs as its messages are read (:meth:`recv` makes the next element), so meshes are
    consumed one by one as from a process. With several iterator threads the kernel works on
    between those reads too: the caller must not read the parsed file from another thread
    meanwhile (the BIM layer reads a model's attributes before its geometry when it is made here).
    """

    STALL, EOF = ProcessKernel.STALL, ProcessKernel.EOF
    pid = proc = None

    def __init__(self, file: ifcopenshell.file, opts: dict) -> None:
        self.ready = True  # nothing to open
        self._file = file
        self._opts = opts
        self._settings: ifcopenshell.geom.settings | None = None
        self._jobs: deque[tuple] = deque()
        self._messages: Iterator[tuple] | None = None

    def send(self, job: tuple) -> None:
        if job[0] in ("iterate", "careful"):
            self._jobs.append(job)

    def recv(self, timeout: float | None):
        """The next message; ``timeout`` does not apply: a C++ call cannot be stopped (see the
        module notes)."""
        while True:
            if self._messages is None:
                if not self._jobs:
                    return self.EOF  # no job: what a process that has ended would answer
                self._messages = self._job(self._jobs.popleft())
            try:
                return next(self._messages)
            except StopIteration:
                self._messages = None
            except Exception as exc:  # as the process reports it before it ends
                self._messages = None
                self._jobs.clear()
                return ("error", f"{type(exc).__name__}: {exc}")

    def _job(self, job: tuple) -> Iterator[tuple]:
        if self._settings is None:
            self._settings = kernel_settings(self._opts["max_voids"])
        yield from _run_job(self._file, self._settings, self._opts, job)
        # no memory of its own to report: what it used is in this process's peak (and reading
        # /proc would only add to a tiny model's conversion)
        yield ("done", 0.0)

    def release(self) -> None:
        self.stop()

    def stop(self) -> None:
        self._jobs.clear()
        self._messages = None


#: the kernel a :class:`cim.sources.ifc.geometry.GeometryStream` drives: either answers the same messages
Kernel = ProcessKernel | InProcessKernel
