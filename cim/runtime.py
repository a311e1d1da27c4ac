"""Process-wide choices a conversion may make, and who makes them.

Two choices change the whole interpreter, not just the work at hand, so a library must not make
them behind its caller's back:

- **Pausing the cyclic garbage collector.** A city build allocates millions of small containers
  (footprint geometries, attribute values, tile dictionaries) that all live until the build
  ends; every generation-2 collection walks them again without freeing anything. Pausing the
  collector (and freezing what is alive before the build) removes that cost, but it also pauses
  collection for every other thread of the host application.
- **Forking.** A forked child shares the parent's memory for free (the BIM geometry process
  shares the parsed IFC model; the search index is written by a child while tiles encode), but
  forking a process that runs other threads (a web server, a notebook kernel, GDAL's pools) can
  deadlock the child on a lock one of them held.

Library calls (``cim.build``, ``cim.convert``) therefore run with neither: a fresh Python
interpreter is started where a separate process is needed, and threads are used elsewhere. The
``cim`` command, which owns its process, opts in to both with :func:`process_policy`, and so can
any caller that owns its process::

    with cim.runtime.process_policy(fork=True, pause_gc=True):
        cim.build("city.toml", "tiles/city")

The measured effect of each choice is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Policy", "policy", "process_policy", "gc_paused", "fork_available"]


@dataclass(frozen=True)
class Policy:
    """The process-wide choices in force.

    Attributes
    ----------
    fork : helper processes may be forked from this one (else a fresh interpreter is started)
    pause_gc : the cyclic garbage collector is paused while a build runs
    """

    fork: bool = False
    pause_gc: bool = False


_policy = Policy()
_lock = threading.Lock()


def policy() -> Policy:
    """The policy in force (the library's default: no fork, no collector pause)."""
    return _policy


def fork_available() -> bool:
    """True where this platform can fork (Linux, macOS)."""
    return "fork" in multiprocessing.get_all_start_methods()


@contextmanager
def process_policy(*, fork: bool = False, pause_gc: bool = False) -> Iterator[Policy]:
    """Opt in to process-wide choices for the duration of the block (see the module notes).

    ``fork=True`` is honoured only where the platform can fork. With ``pause_gc=True`` the
    collector is paused for the whole block (see :func:`gc_paused`).
    """
    global _policy
    with _lock:
        previous = _policy
        _policy = Policy(fork=fork and fork_available(), pause_gc=pause_gc)
    try:
        if pause_gc:
            with gc_paused():
                yield _policy
        else:
            yield _policy
    finally:
        with _lock:
            _policy = previous


_depth = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the block runs (nests; resumes at the outermost).

    Everything alive when the outermost block starts (the imported modules, their caches) is
    frozen out of the collector's sight; reference counting still frees every acyclic object as
    soon as it is dropped, and cycles made meanwhile are collected once the collector resumes.
    """
    global _depth
    was_enabled = gc.isenabled()
    if _depth == 0:
        gc.freeze()
        gc.disable()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()
            if was_enabled:
                gc.enable()
