"""Element triangles from ifcopenshell's geometry iterator, bounded: a process that can be stopped.

OpenCASCADE cannot be interrupted: a boolean-heavy element may run for minutes, and a thread
inside it can be neither stopped nor abandoned safely (it keeps a core busy and may crash the
interpreter at exit). So the kernel runs in a **geometry process**; when no element arrives for
``element_timeout`` seconds the process is killed, the elements not yet seen are made one at a
time (each timed on its own) until the culprit is found and reported, and the fast
multi-threaded iterator resumes with the rest. Every element costs at most the timeout, twice.
Elements the iterator skips silently (invalid geometry) are then made one at a time by the same
process, to learn why, and reported.

How the process starts (fork, or a fresh interpreter) and the one exception, tiny models of
simple planar solids made in this process, whose bound is what is admitted rather than a timer,
are in :mod:`cim.sources.ifc.kernel` and :mod:`cim.sources.ifc.simple`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import ifcopenshell
import numpy as np

from cim.errors import CimInputError
from cim.sources.ifc.file import EXCLUDED_CLASSES
from cim.sources.ifc.kernel import InProcessKernel, Kernel, ProcessKernel, excluded_classes
from cim.sources.ifc.simple import simple_model

__all__ = ["ElementGeometry", "GeometryLog", "GeometryOptions", "GeometryStream", "iter_element_geometry"]


@dataclass
class GeometryOptions:
    """How element geometry is made.

    Attributes
    ----------
    threads : geometry iterator threads (default: the number of cores, at most 8; peers report
        memory blow-ups with many threads on large files)
    element_timeout : seconds one element may take before it is stopped and reported
    max_voids : an element with more openings than this is drawn without them (OpenCASCADE's
        boolean subtraction grows faster than linearly with an element's openings); 0 subtracts
        them all
    geometry_library : ifcopenshell's kernel ("opencascade", the reference; "manifold" is much
        faster on booleans but differs on some real walls)
    exclude : classes not drawn
    start : where the kernel runs: "auto" (in this process for a model :func:`cim.sources.ifc.
        simple.simple_model` admits, else a geometry process, forked when the caller runs one
        Python thread, else a fresh interpreter), "process" (never in this process) or "spawn"
        (always a fresh interpreter); see :mod:`cim.sources.ifc.kernel`
    in_process_elements : the most elements a model made in this process may have (0: never)
    """

    threads: int | None = None
    element_timeout: float = 60.0
    max_voids: int = 256
    geometry_library: str = "opencascade"
    exclude: tuple[str, ...] = EXCLUDED_CLASSES
    start: str = "auto"
    in_process_elements: int = 8

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
    in_process: bool = False  # made in this process (see cim.sources.ifc.simple), no process started

    def warnings(self, element_timeout: float) -> list[str]:
        out = []
        if self.failed:
            out.append(
                f"{len(self.failed)} element(s) failed in the geometry kernel: "
                + "; ".join(f"{g} ({c}): {r}" for g, c, r in self.failed[:20])
                + (" ..." if len(self.failed) > 20 else "")
            )
        if self.timed_out:
            out.append(
                f"{len(self.timed_out)} element(s) took over {element_timeout:g} s and were skipped: "
                + "; ".join(f"{g} ({c})" for g, c in self.timed_out[:20])
            )
        if self.empty:
            out.append(
                f"{len(self.empty)} element(s) have a body representation but no triangles: "
                + "; ".join(f"{g} ({c})" for g, c in self.empty[:20])
            )
        return out


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
    """Per-element meshes of an IFC file, each element once, from a geometry process (or, for a
    tiny model of simple solids, from this process: see :mod:`cim.sources.ifc.kernel`).

    A process starts at construction and begins iterating at once, so that it works while the
    caller reads attributes; :meth:`elements` then streams the meshes. In this process, the work
    is done as :meth:`elements` is read.

    Parameters
    ----------
    path : the IFC file
    options : threads, timeout, kernel
    file : the file already open in this process, if it is: a forked geometry process uses it
        as it is (copy-on-write) instead of parsing the file again; only then may the model be
        made in this process

    Notes
    -----
    See the module notes: a stall kills the process, a careful one-at-a-time pass finds and
    reports the culprit, and the fast iterator resumes with the rest; bounded, every element
    costs at most the timeout, twice. A model made in this process has no timer (a C++ call
    cannot be stopped): its bound is what :func:`cim.sources.ifc.simple.simple_model` admits.
    """

    def __init__(self, path: str | Path, options: GeometryOptions | None = None, *, file: ifcopenshell.file | None = None) -> None:
        self.path = Path(path)
        self.options = options or GeometryOptions()
        o = self.options
        if o.start not in ("auto", "process", "spawn"):
            raise ValueError(f"GeometryOptions.start: 'auto', 'process' or 'spawn', not {o.start!r}")
        self._opts = {"threads": o.thread_count(), "max_voids": o.max_voids, "library": o.geometry_library, "exclude": list(o.exclude)}
        self._file = file
        self.processes = self.forked = 0
        self.in_process = (
            file is not None
            and o.start == "auto"
            and simple_model(file, self.path, excluded_classes(file, o.exclude), o.in_process_elements)
        )
        self._released: list[Kernel] = []
        self._first: Kernel | None = self._start(("iterate", None))

    def _start(self, job: tuple | None) -> Kernel:
        kernel: Kernel
        if self.in_process:
            assert self._file is not None  # in_process needs the parsed file
            kernel = InProcessKernel(self._file, self._opts)
        else:
            kernel = ProcessKernel(self.path, self._opts, self._file, "spawn" if self.options.start == "spawn" else "auto")
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

    def __enter__(self) -> GeometryStream:
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
        kernel: Kernel | None
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
            log.processes, log.forked, log.in_process = self.processes, self.forked, self.in_process
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

    def _recv(self, kernel: Kernel):
        return kernel.recv(self.options.element_timeout if kernel.ready else self.open_timeout)

    def _done(self, msg: tuple) -> None:
        if len(msg) > 1:
            self.log.kernel_peak_mb = max(self.log.kernel_peak_mb, msg[1])

    def drain(self, kernel: Kernel):
        """Yield the meshes of an iterate job; returns "done", "stall" or "crash"."""
        while True:
            msg = self._recv(kernel)
            if msg is ProcessKernel.STALL:
                return "stall"
            if msg is ProcessKernel.EOF:
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

    def careful(self, ids: list[int], kernel: Kernel | None, *, stop_at_culprit: bool):
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
                if msg is ProcessKernel.STALL or msg is ProcessKernel.EOF:
                    kernel.stop()
                    kernel = None
                    if current is None:  # died before its first element: give up on the rest
                        for i in ids:
                            if i not in seen:
                                seen.add(i)
                                log.failed.append((*self.name(i), "the geometry process died"))
                        return False, None
                    seen.add(current)
                    if msg is ProcessKernel.STALL:
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
