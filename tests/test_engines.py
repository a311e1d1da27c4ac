"""Engines: where tile jobs run (inline, threads, forked processes), in what order results come
back, and when this process may fork."""

from __future__ import annotations

import os
import threading
import time

import pytest

from cim.engines import Engine, LocalEngine, engine_from, fork_allowed, helper_threads
from cim.errors import CimInputError
from cim.runtime import process_policy


def square(state: object, key: int) -> int:
    return key * key


def whose(state: object, key: int) -> tuple[int, int, int]:
    """The key, the process and the thread that ran it."""
    return key, os.getpid(), threading.get_ident()


def slow_reversed(state: float, key: int) -> int:
    """Later keys finish first: results must still come back in key order."""
    time.sleep(state * (10 - key))
    return key


def fail_on_three(state: object, key: int) -> int:
    if key == 3:
        raise ValueError(f"job {key} failed")
    return key


def alone(timeout: float = 10.0) -> None:
    """Wait for threads left by earlier work to end; fail naming them if they do not."""
    deadline = time.monotonic() + timeout
    me = threading.current_thread()
    while True:
        others = [t for t in threading.enumerate() if t is not me]
        if not others:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"threads still running: {[t.name for t in others]}")
        others[0].join(0.05)


# -- order -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_results_come_in_key_order_whatever_finishes_first(workers):
    keys = list(range(10))
    sizes = [1, 9, 3, 7, 5, 0, 8, 2, 6, 4]
    with LocalEngine(workers).pool("order") as pool:
        assert list(pool.map(slow_reversed, 0.002, keys)) == keys
        assert list(pool.map(slow_reversed, 0.002, keys, sizes=sizes)) == keys
        assert list(pool.map(square, None, keys, sizes=sizes)) == [k * k for k in keys]


def test_sizes_start_the_largest_jobs_first():
    """With sizes, jobs start in order of decreasing size; the results still come in key order.
    Two workers start the jobs in pairs (a job ends only once its pair has started), so each
    pair is two consecutive jobs of the start order."""
    started: list[int] = []
    lock = threading.Lock()

    def start_order(sizes: list[float] | None) -> list[set[int]]:
        started.clear()
        pair = threading.Barrier(2, timeout=10)

        def job(state: object, key: int) -> int:
            with lock:
                started.append(key)
            pair.wait()
            return key

        with LocalEngine(2).pool("sizes") as pool:
            assert list(pool.map(job, None, keys, sizes=sizes)) == keys
        return [set(started[i : i + 2]) for i in range(0, len(keys), 2)]

    keys = list(range(6))
    sizes = [3.0, 10.0, 1.0, 7.0, 0.5, 5.0]
    assert start_order(sizes) == [{1, 3}, {5, 0}, {2, 4}]
    assert start_order(None) == [{0, 1}, {2, 3}, {4, 5}]
    assert start_order([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == [{5, 4}, {3, 2}, {1, 0}]


# -- where jobs run --------------------------------------------------------------------------


def test_one_worker_runs_inline_in_the_calling_thread():
    with LocalEngine(1).pool("inline") as pool:
        assert pool.workers == 1
        ran = list(pool.map(whose, None, range(5)))
    assert {(pid, tid) for _, pid, tid in ran} == {(os.getpid(), threading.get_ident())}


def test_small_runs_inline_unless_workers_were_given(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    me = threading.get_ident()

    def threads_used(engine: Engine, small: bool) -> set[int]:
        with engine.pool("small", small=small) as pool:
            return {tid for _, _, tid in pool.map(slow_ident, None, range(8))}

    default = LocalEngine()
    assert default.workers == 4
    assert threads_used(default, small=True) == {me}
    assert me not in threads_used(default, small=False)
    assert me not in threads_used(LocalEngine(2), small=True)  # an explicit number of workers is honoured
    assert LocalEngine().workers_for(True) == 1 and LocalEngine(3).workers_for(True) == 3


def slow_ident(state: object, key: int) -> tuple[int, int, int]:
    time.sleep(0.01)  # long enough that one pool thread cannot take every job alone
    return whose(state, key)


def test_pool_threads_end_with_the_pool():
    seen: list[threading.Thread] = []

    def job(state: object, key: int) -> int:
        seen.append(threading.current_thread())
        time.sleep(0.005)
        return key

    with LocalEngine(3).pool("ending") as pool:
        assert list(pool.map(job, None, range(9))) == list(range(9))
        threads = {t for t in seen if t is not threading.current_thread()}
        assert threads and all(t.is_alive() for t in threads)
    assert not any(t.is_alive() for t in threads)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("cim-ending")]


@pytest.mark.parametrize("workers", [1, 2])
def test_an_exception_in_a_job_propagates(workers):
    with LocalEngine(workers).pool("failing") as pool:
        results = pool.map(fail_on_three, None, range(6))
        assert [next(results) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(ValueError, match="job 3 failed"):
            next(results)


# -- engines by name -------------------------------------------------------------------------


def test_engine_from_names():
    for name in (None, "local", "threads"):
        engine = engine_from(name, workers=3)
        assert isinstance(engine, LocalEngine) and engine.workers == 3 and not engine.processes
    processes = engine_from("processes", workers=2)
    assert isinstance(processes, LocalEngine) and processes.processes and processes.workers == 2
    mine = LocalEngine(1)
    assert engine_from(mine, workers=5) is mine
    with pytest.raises(CimInputError, match=r"'cluster'.*local, threads, processes"):
        engine_from("cluster")
    with pytest.raises(CimInputError, match="workers"):
        engine_from("local", workers=0)


# -- forking ---------------------------------------------------------------------------------


def test_fork_is_not_allowed_by_default():
    alone()
    assert not fork_allowed()  # a library call forks only when its caller opted in


def test_fork_allowed_under_the_process_policy_when_no_other_thread_runs():
    alone()
    with process_policy(fork=True):
        assert fork_allowed()
    assert not fork_allowed()


def test_a_thread_of_unknown_safety_forbids_fork():
    alone()
    release = threading.Event()
    other = threading.Thread(target=release.wait, name="somebody-else")
    with process_policy(fork=True):
        other.start()
        try:
            assert not fork_allowed()
        finally:
            release.set()
            other.join()
        assert fork_allowed()


def test_idle_pool_threads_and_fork_safe_helpers_allow_fork():
    alone()
    with process_policy(fork=True):
        with LocalEngine(2).pool("idle") as pool:
            assert list(pool.map(slow_ident, None, range(4)))
            assert [t for t in threading.enumerate() if t.name.startswith("cim-idle")]  # its threads wait for work
            assert fork_allowed()
        with helper_threads(1, "test-safe-writer", fork_safe=True) as helper:
            release = threading.Event()
            helper.submit(release.wait)
            try:
                assert fork_allowed()
            finally:
                release.set()
        with helper_threads(1, "test-unsafe-writer") as helper:
            release = threading.Event()
            helper.submit(release.wait)
            try:
                assert not fork_allowed()
            finally:
                release.set()


def test_a_running_pool_job_forbids_fork():
    alone()
    running, release = threading.Event(), threading.Event()

    def job(state: object, key: int) -> int:
        if key == 1:
            running.set()
            release.wait(10)
        return key

    with process_policy(fork=True), LocalEngine(2).pool("busy") as pool:
        results = pool.map(job, None, range(2))
        assert next(results) == 0
        assert running.wait(10)
        try:
            assert not fork_allowed()
        finally:
            release.set()
        assert list(results) == [1]
        assert fork_allowed()


def test_the_processes_engine_forks_only_where_allowed():
    """Where forking is allowed the processes engine runs jobs in other processes with the same
    results as threads; elsewhere it falls back to threads of this process."""
    alone()
    keys = list(range(12))
    with LocalEngine(2).pool("threads") as pool:
        by_threads = list(pool.map(square, None, keys))
    assert by_threads == [k * k for k in keys]

    engine = engine_from("processes", workers=2)
    with engine.pool("fallback") as pool:
        ran = list(pool.map(whose, None, keys))
    assert [k for k, _, _ in ran] == keys
    assert {pid for _, pid, _ in ran} == {os.getpid()}  # library default: no fork

    with process_policy(fork=True):
        assert fork_allowed()
        with engine.pool("forked") as pool:
            assert list(pool.map(square, None, keys)) == by_threads
        with engine.pool("forked") as pool:
            ran = list(pool.map(whose, None, keys))
    assert [k for k, _, _ in ran] == keys
    assert os.getpid() not in {pid for _, pid, _ in ran}
    with process_policy(fork=True), engine.pool("forked-failing") as pool, pytest.raises(ValueError, match="job 3 failed"):
        list(pool.map(fail_on_three, None, keys))
