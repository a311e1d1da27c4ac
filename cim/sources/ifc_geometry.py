"""Element triangles from ifcopenshell's geometry iterator, in a process that can be stopped.

OpenCASCADE cannot be interrupted: a boolean-heavy element may run for minutes, and a thread
inside it can be neither stopped nor abandoned safely (it keeps a core busy and may crash the
interpreter at exit). So the kernel runs in a **geometry process**; when no element arrives for
``element_timeout`` seconds the process is killed, the elements not yet seen are made one at a
time (each timed on its own) until the culprit is found and reported, and the fast
multi-threaded iterator resumes with the rest. Every element costs at most the timeout, twice.
Elements the iterator skips silently (invalid geometry) are then made one at a time by the same
process, to learn why, and reported.

How the process starts (measured on the 2-core build machines, where a one-element IFC takes
ifcopenshell's own iterator about 0.04 s and a 300-element building 1–3 s):

- ``fork()`` of the caller, after it has parsed the file: 5–15 ms with a 100 MB parent, no
  import, and the parsed model is shared copy-on-write rather than parsed twice. Used whenever
  the caller's other Python threads are known to be harmless (:data:`FORK_SAFE_THREADS`; fork
  copies only the calling thread, so a lock another thread holds would stay locked in the child
  forever; native threads such as OpenBLAS's register fork handlers).
- otherwise a fresh interpreter (``python -c``): nothing of the caller's ``__main__`` re-runs,
  but importing numpy and ifcopenshell costs 0.6–1 s before the first element, which made cim
  2× slower than the bare iterator on small files. ``GeometryOptions(start="spawn")`` forces it.

Messages travel on their own socket pair (never stdout: kernel chatter on it cannot corrupt
them). The parent sends jobs, ``("iterate", ids | None)``, ``("careful", ids)`` or ``("exit",)``;
the process answers ``("ready",)`` once the file is open, one ``("el", ...)`` per element,
``("start", id)`` / ``("fail", id, why)`` in careful jobs, and ``("done", peak_mb)`` after each job,
or ``("error", why)`` before it ends.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

import ifcopenshell
import ifcopenshell.geom

from cim.errors import CimInputError
from cim.searchindex import THREAD_NAME as SEARCH_THREAD
from cim.sources.ifc_file import EXCLUDED_CLASSES, get_attr, schema_has


@dataclass
class GeometryOptions:
    """How element geometry is made.

    Attributes
    ----------
    threads : geometry iterator threads (default: the number of cores, at most 8; peers report
        memory blow-ups with many threads on large files)
    element_timeout : seconds one element may take before it is stopped and reported
    max_voids : an element with more openings than this is drawn without them (OpenCASCADE's
        boolean subtraction grows faster than linearly: 400 openings in one wall take about 3 s,
        1,600 about 24 s here); 0 subtracts them all
    geometry_library : ifcopenshell's kernel ("opencascade", the reference; "manifold" is about
        8× faster on booleans but differs on some real walls)
    exclude : classes not drawn
    start : how the geometry process starts: "auto" (fork when the caller runs one Python thread,
        else a fresh interpreter) or "spawn" (always a fresh interpreter); see the module notes
    """

    threads: int | None = None
    element_timeout: float = 60.0
    max_voids: int = 256
    geometry_library: str = "opencascade"
    exclude: tuple[str, ...] = EXCLUDED_CLASSES
    start: str = "auto"

    def thread_count(self) -> int:
        return max(1, self.threads or min(os.cpu_count() or 1, 8))


@dataclass
class ElementGeometry:
    """One element's triangles in world coordinates (metres, z up, the file's axes).

    Attributes
    ----------
    id : STEP id of the product
    guid, ifc_class : its GlobalId and class
    vertices : (v, 3) float64
    normals : (v, 3) float64 (may be empty: compute from faces)
    triangles : (t, 3) int32
    tri_material : (t,) int32, index into ``materials``
    materials : (m, 4) float64 RGBA in [0, 1] (alpha = 1 − transparency)
    """

    id: int
    guid: str
    ifc_class: str
    vertices: np.ndarray
    normals: np.ndarray
    triangles: np.ndarray
    tri_material: np.ndarray
    materials: np.ndarray


@dataclass
class GeometryLog:
    """What happened to the elements that did not come out whole."""

    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (GlobalId, class, reason)
    timed_out: list[tuple[str, str]] = field(default_factory=list)
    empty: list[tuple[str, str]] = field(default_factory=list)
    stalls: int = 0
    seconds: float = 0.0
    #: the most memory a geometry process needed beyond what it shares with its parent (MB)
    kernel_peak_mb: float = 0.0
    processes: int = 0  # geometry processes started
    forked: int = 0  # of which forked (the others were fresh interpreters)

    def warnings(self, element_timeout: float) -> list[str]:
        out = []
        if self.failed:
            out.append(f"{len(self.failed)} element(s) failed in the geometry kernel: " + "; ".join(f"{g} ({c}): {r}" for g, c, r in self.failed[:20]) + (" ..." if len(self.failed) > 20 else ""))
        if self.timed_out:
            out.append(f"{len(self.timed_out)} element(s) took over {element_timeout:g} s and were skipped: " + "; ".join(f"{g} ({c})" for g, c in self.timed_out[:20]))
        if self.empty:
            out.append(f"{len(self.empty)} element(s) have a body representation but no triangles: " + "; ".join(f"{g} ({c})" for g, c in self.empty[:20]))
        return out


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


# -- the geometry process ----------------------------------------------------------------------


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
            if job[0] == "iterate":
                ids = job[1]
                if ids is None:
                    exclude = excluded_classes(f, tuple(opts["exclude"]))
                    threads = min(opts["threads"], max(1, _drawable_at_most(f, exclude, opts["threads"])))
                    it = ifcopenshell.geom.iterator(settings, f, threads, exclude=exclude or None, geometry_library=opts["library"])
                elif ids:
                    threads = min(opts["threads"], len(ids))
                    it = ifcopenshell.geom.iterator(settings, f, threads, include=[f.by_id(i) for i in ids], geometry_library=opts["library"])
                if (ids is None or ids) and it.initialize():
                    while True:
                        conn.send(_pack(it.get()))
                        if not it.next():
                            break
                it = None
            elif job[0] == "careful":
                for i in job[1]:
                    conn.send(("start", i))
                    try:
                        shape = ifcopenshell.geom.create_shape(settings, f.by_id(i), geometry_library=opts["library"])
                    except Exception as exc:
                        conn.send(("fail", i, " ".join(str(exc).split())[:240]))
                    else:
                        conn.send(_pack(shape))
            else:
                return
            conn.send(("done", max(0.0, peak_rss_mb() - base_mb)))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the parent has gone
    except Exception as exc:  # report, then end: the parent decides
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except Exception:
            pass


def _drawable_at_most(f: ifcopenshell.file, exclude: list[str], limit: int) -> int:
    """How many products have a representation and are not excluded, counted up to ``limit + 1``.

    The iterator gets no more threads than elements: starting a second thread for a one-element
    file made ifcopenshell's iterator take 0.05–0.09 s instead of 0.045 s here.
    """
    n = 0
    for p in f.by_type("IfcProduct"):
        if get_attr(p, "Representation") is not None and not any(p.is_a(c) for c in exclude):
            n += 1
            if n > limit:
                break
    return n


def _child_entry() -> None:
    """Entry point of a spawned geometry process (``python -c``): arguments come pickled on
    stdin, messages travel on the socket whose descriptor is ``argv[1]``."""
    conn = Connection(int(sys.argv[1]))
    path, opts = pickle.load(sys.stdin.buffer)
    _serve(conn, path, opts, None, 0.0)
    conn.close()


#: threads that may run while the geometry process forks: they never enter ifcopenshell, nor
#: hold a lock the geometry process takes (the city build's search-index writer, which runs
#: SQLite for the whole build: without it, every model of a city build started a fresh
#: interpreter)
FORK_SAFE_THREADS = (SEARCH_THREAD,)


def _can_fork() -> bool:
    """Fork only on Linux (macOS system libraries are not fork-safe), from a process whose other
    Python threads (if any) are of :data:`FORK_SAFE_THREADS`: fork copies only the calling
    thread, so a lock another thread holds would stay locked in the child forever."""
    if not (hasattr(os, "fork") and sys.platform.startswith("linux")):
        return False
    me = threading.current_thread()
    return all(t is me or t.name.startswith(FORK_SAFE_THREADS) for t in threading.enumerate())


def _socket_pair() -> tuple[Connection, Connection]:
    """A duplex message channel. Large buffers (up to 4 MB where allowed) let the geometry
    process run ahead while the parent is busy, instead of blocking on a full socket."""
    a, b = socket.socketpair()
    for s in (a, b):
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
            except OSError:
                pass
    return Connection(a.detach()), Connection(b.detach())


class _Kernel:
    """A geometry process and the parent's end of its channel."""

    STALL, EOF = object(), object()

    def __init__(self, path: Path, opts: dict, file: ifcopenshell.file | None, start: str) -> None:
        here, there = _socket_pair()
        self.ready = False
        self.pid: int | None = None
        self.proc: subprocess.Popen | None = None
        try:
            if start != "spawn" and _can_fork():
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
            # Python 3.12+ warns when native threads (OpenBLAS's pool) exist; see _can_fork
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
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        fd = there.fileno()
        proc = subprocess.Popen(
            [sys.executable, "-c", "from cim.sources.ifc_geometry import _child_entry; _child_entry()", str(fd)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(fd,), env=env,
        )
        try:
            proc.stdin.write(pickle.dumps((str(path), opts), protocol=pickle.HIGHEST_PROTOCOL))
            proc.stdin.close()
        except OSError:
            pass  # it died at once: recv() sees the end of the channel
        return proc

    def send(self, job: tuple) -> None:
        try:
            self.conn.send(job)
        except OSError:
            pass  # it has died: recv() sees the end of the channel

    def recv(self, timeout: float | None):
        try:
            if not self.conn.poll(timeout):
                return self.STALL
            return self.conn.recv()
        except (EOFError, OSError):
            return self.EOF

    def release(self) -> None:
        """Tell the process to end, without waiting: it unmaps its memory on its own core (about
        10 ms here) while the caller goes on; :meth:`stop` reaps it later."""
        self.send(("exit",))
        self.conn.close()

    def stop(self) -> None:
        """Kill the process unless it has ended (it holds no resource worth a graceful end) and
        reap it."""
        if self.pid is not None:
            if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(self.pid, 0)
            self.pid = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None
        self.conn.close()


def _unpack(msg: tuple) -> ElementGeometry:
    _, pid, guid, cls, vb, nb, fb, mb, mats = msg
    verts = np.frombuffer(vb, dtype=np.float64).reshape(-1, 3)
    normals = np.frombuffer(nb, dtype=np.float64).reshape(-1, 3)
    tris = np.frombuffer(fb, dtype=np.int32).reshape(-1, 3)
    tri_mat = np.frombuffer(mb, dtype=np.int32)
    if len(tri_mat) != len(tris):
        tri_mat = np.zeros(len(tris), dtype=np.int32)
    materials = np.array(mats, dtype=np.float64).reshape(-1, 4) if mats else np.array([[0.7, 0.7, 0.7, 1.0]])
    tri_mat = np.where((tri_mat >= 0) & (tri_mat < len(materials)), tri_mat, 0).astype(np.int32)
    return ElementGeometry(pid, guid, cls, verts, normals, tris, tri_mat, materials)


Expected = Mapping[int, tuple[str, str]]


class GeometryStream:
    """Per-element meshes of an IFC file, each element once, from a geometry process.

    The process starts at construction and begins iterating at once, so that it works while
    the caller reads attributes; :meth:`elements` then streams the meshes.

    Parameters
    ----------
    path : the IFC file
    options : threads, timeout, kernel
    file : the file already open in this process, if it is: a forked geometry process uses it
        as it is (copy-on-write) instead of parsing the file again

    Notes
    -----
    See the module notes: a stall kills the process, a careful one-at-a-time pass finds and
    reports the culprit, and the fast iterator resumes with the rest; bounded, every element
    costs at most the timeout, twice.
    """

    def __init__(self, path: str | Path, options: GeometryOptions | None = None, *, file: ifcopenshell.file | None = None) -> None:
        self.path = Path(path)
        self.options = options or GeometryOptions()
        o = self.options
        if o.start not in ("auto", "spawn"):
            raise ValueError(f"GeometryOptions.start: 'auto' or 'spawn', not {o.start!r}")
        self._opts = {"threads": o.thread_count(), "max_voids": o.max_voids, "library": o.geometry_library, "exclude": list(o.exclude)}
        self._file = file
        self.processes = self.forked = 0
        self._released: list[_Kernel] = []
        self._first: _Kernel | None = self._start(("iterate", None))

    def _start(self, job: tuple | None) -> _Kernel:
        kernel = _Kernel(self.path, self._opts, self._file, self.options.start)
        self.processes += 1
        self.forked += kernel.pid is not None
        if job is not None:
            kernel.send(job)
        return kernel

    def close(self) -> None:
        """Stop the process if it still runs (after an early exit), and reap those that ended."""
        if self._first is not None:
            self._first.stop()
            self._first = None
        while self._released:
            self._released.pop().stop()

    def __enter__(self) -> "GeometryStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def elements(self, expected: Expected | Callable[[], Expected], log: GeometryLog | None = None) -> Iterator[ElementGeometry]:
        """Yield element meshes in the order the kernel finishes them.

        Parameters
        ----------
        expected : ``{step id: (GlobalId, class)}`` of the elements that should have geometry
            (:meth:`IfcElementIndex.body_candidates`), or a function returning it, called only
            when needed (after a stall, and at the end), so that the caller may still be
            computing it while the first meshes arrive; names the failures in ``log``
        log : receives failures, timeouts and empty elements
        """
        log = log if log is not None else GeometryLog()
        t0 = time.perf_counter()
        run = _Run(self, expected, log)
        kernel, self._first = self._first or self._start(("iterate", None)), None
        try:
            while True:
                outcome = yield from run.drain(kernel)
                if outcome == "done":
                    break
                kernel.stop()
                kernel = None
                log.stalls += 1
                # a stall or crash: find the culprit one at a time, then go fast again
                found, kernel = yield from run.careful(run.remaining(), None, stop_at_culprit=True)
                include = run.remaining()
                if not found or not include:
                    break
                if kernel is None:
                    kernel = self._start(None)
                kernel.send(("iterate", include))
            # what the iterator skipped silently: ask each one why, in the same process
            rest = run.remaining()
            if rest:
                _, kernel = yield from run.careful(rest, kernel, stop_at_culprit=False)
            if kernel is not None:
                kernel.release()
                self._released.append(kernel)
                kernel = None
        finally:
            if kernel is not None:
                kernel.stop()
            log.processes, log.forked = self.processes, self.forked
        log.seconds = time.perf_counter() - t0


class _Run:
    """The state of one :meth:`GeometryStream.elements` call."""

    def __init__(self, stream: GeometryStream, expected, log: GeometryLog) -> None:
        self.stream = stream
        self.options = stream.options
        self._expected = expected
        self.log = log
        self.seen: set[int] = set()
        self.open_timeout = 120.0 + 10.0 * stream.path.stat().st_size / 1e6  # parsing is linear: generous

    def expected(self) -> Expected:
        if callable(self._expected):
            self._expected = self._expected()
        return self._expected

    def remaining(self) -> list[int]:
        return [i for i in sorted(self.expected()) if i not in self.seen]

    def name(self, i: int) -> tuple[str, str]:
        return self.expected().get(i, ("?", "?"))

    def accept(self, msg: tuple) -> ElementGeometry | None:
        g = _unpack(msg)
        if g.id in self.seen:
            return None
        self.seen.add(g.id)
        if len(g.triangles) == 0:
            self.log.empty.append((g.guid, g.ifc_class))
            return None
        return g

    def _recv(self, kernel: _Kernel):
        return kernel.recv(self.options.element_timeout if kernel.ready else self.open_timeout)

    def _done(self, msg: tuple) -> None:
        if len(msg) > 1:
            self.log.kernel_peak_mb = max(self.log.kernel_peak_mb, msg[1])

    def drain(self, kernel: _Kernel):
        """Yield the meshes of an iterate job; returns "done", "stall" or "crash"."""
        while True:
            msg = self._recv(kernel)
            if msg is _Kernel.STALL:
                return "stall"
            if msg is _Kernel.EOF:
                return "crash"
            kind = msg[0]
            if kind == "el":
                g = self.accept(msg)
                if g is not None:
                    yield g
            elif kind == "ready":
                kernel.ready = True
            elif kind == "done":
                self._done(msg)
                return "done"
            elif kind == "error":
                if not kernel.ready:
                    raise CimInputError(f"{self.stream.path}: the geometry kernel cannot read it ({msg[1]})")
                return "crash"

    def careful(self, ids: list[int], kernel: _Kernel | None, *, stop_at_culprit: bool):
        """Make ``ids`` one at a time (in ``kernel``, or new processes); returns (True when it
        stopped at a culprit, the process still running or None)."""
        log, seen = self.log, self.seen
        ids = list(ids)
        while ids:
            if kernel is None:
                kernel = self.stream._start(None)
            kernel.send(("careful", ids))
            current: int | None = None
            culprit = False
            while True:
                msg = self._recv(kernel)
                if msg is _Kernel.STALL or msg is _Kernel.EOF:
                    kernel.stop()
                    kernel = None
                    if current is None:  # died before its first element: give up on the rest
                        for i in ids:
                            if i not in seen:
                                seen.add(i)
                                log.failed.append((*self.name(i), "the geometry process died"))
                        return False, None
                    seen.add(current)
                    if msg is _Kernel.STALL:
                        log.timed_out.append(self.name(current))
                    else:
                        log.failed.append((*self.name(current), "crashed the geometry kernel"))
                    culprit = True
                    break
                kind = msg[0]
                if kind == "ready":
                    kernel.ready = True
                elif kind == "start":
                    current = msg[1]
                elif kind == "el":
                    g = self.accept(msg)
                    current = None
                    if g is not None:
                        yield g
                elif kind == "fail":
                    seen.add(msg[1])
                    log.failed.append((*self.name(msg[1]), msg[2]))
                    current = None
                elif kind == "done":
                    self._done(msg)
                    return False, kernel
                elif kind == "error":
                    for i in ids:
                        if i not in seen:
                            seen.add(i)
                            log.failed.append((*self.name(i), msg[1]))
                    kernel.stop()
                    return False, None
            ids = [i for i in ids if i not in seen]
            if culprit and stop_at_culprit:
                return True, kernel
        return False, kernel


def iter_element_geometry(
    path: str | Path,
    expected: Expected | Callable[[], Expected],
    options: GeometryOptions | None = None,
    log: GeometryLog | None = None,
    *,
    file: ifcopenshell.file | None = None,
) -> Iterator[ElementGeometry]:
    """Stream element meshes of an IFC file (see :class:`GeometryStream`)."""
    with GeometryStream(path, options, file=file) as stream:
        yield from stream.elements(expected, log)
