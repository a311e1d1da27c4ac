"""The Dask engine on a real cluster: a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1 (subprocesses, as an operator starts them, not an in-process cluster).

The tiny city built on them is the local build byte for byte (the timing fields aside, as in
:mod:`tests.test_determinism`); with one worker killed (SIGKILL) mid-build, the build still
completes, and its layers are still the local ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import cim
from cim.errors import CimIOError
from cim.store import LOG_NAME
from tests.test_determinism import assert_same_city, differences, logged, rows, without_timing

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'cim[dask]')")

from cim.engines_dask import INLINE_BYTES, DaskEngine, Shipped, _worker_sees, dump_file, load_file, ship  # noqa: E402

DASK = Path(sys.executable).parent / "dask"
#: the kinds of the tiny city's layers (the pools the engine names its tasks after)
KINDS = {"terrain", "buildings", "bim", "pointcloud", "imagery", "mesh"}


@dataclass
class Cluster:
    address: str
    workers: list[subprocess.Popen]


def _wait_for(what: str, ok, procs: list[subprocess.Popen], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not ok():
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(
                    f"{what}: {p.args[:2]} exited with {p.returncode}: {p.stderr.read().decode()[-2000:] if p.stderr else ''}"
                )
        if time.monotonic() > end:
            raise RuntimeError(f"{what}: not ready after {timeout} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A scheduler and two single-threaded workers on loopback, free ports; stopped at the end."""
    if not DASK.exists():
        pytest.skip(f"the dask command is not installed beside {sys.executable}")
    tmp = tmp_path_factory.mktemp("dask-cluster")
    info = tmp / "scheduler.json"
    loopback = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            subprocess.Popen(
                [DASK, "scheduler", *loopback, "--port", "0", "--scheduler-file", info], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        )
        _wait_for("dask scheduler", info.exists, procs)
        time.sleep(0.1)  # the file is written whole, but give the writer its close
        address = json.loads(info.read_text())["address"]
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        address,
                        *loopback,
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--name",
                        f"w{i}",
                        "--local-directory",
                        tmp / f"w{i}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield Cluster(address, procs[1:])
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stderr:
                p.stderr.close()


def _task_prefixes(client) -> dict[str, int]:
    """Tasks the scheduler has seen, by prefix (``cim-<kind>``)."""

    def counts(dask_scheduler) -> dict[str, int]:
        return {name: int(sum(p.state_counts.values())) for name, p in dask_scheduler.task_prefixes.items()}

    return client.run_on_scheduler(counts)


def test_shipped_objects_keep_their_arrays(tmp_path):
    """State and large keys travel as files whose arrays come back as writable views."""
    a = np.arange(300_000, dtype=np.float64).reshape(-1, 3)
    obj = {"a": a, "b": a[:, 1].copy(), "name": "tile", "n": 7}
    path = tmp_path / "s.pkl"
    dump_file(obj, path)
    back = load_file(path)
    assert back["name"] == "tile" and back["n"] == 7
    np.testing.assert_array_equal(back["a"], a)
    np.testing.assert_array_equal(back["b"], a[:, 1])
    assert back["a"].flags.writeable and not back["a"].flags.owndata
    assert back["a"].ctypes.data % 64 == 0
    back["a"][0, 0] = -1.0  # a private mapping: the file keeps its bytes
    assert load_file(path)["a"][0, 0] == 0.0
    small = ship({"k": (1, 2)}, os.fspath(tmp_path), "small.pkl")
    assert small == {"k": (1, 2)} and not (tmp_path / "small.pkl").exists()
    big = ship(a, os.fspath(tmp_path), "big.pkl")
    assert a.nbytes > INLINE_BYTES and isinstance(big, Shipped)
    np.testing.assert_array_equal(big.load(remove=True), a)
    assert not (tmp_path / "big.pkl").exists()


def test_a_worker_on_another_filesystem_is_named(tmp_path):
    """What a worker reports when the client's probe is not there, or another file is."""
    probe = tmp_path / "probe"
    seen = _worker_sees([os.fspath(tmp_path / "dem.tif")], os.fspath(probe), "t0k3n")
    assert seen["missing"] == [os.fspath(tmp_path / "dem.tif")]
    assert "does not see the folder" in seen["problem"]
    probe.write_text("another")
    assert "another file" in _worker_sees([], os.fspath(probe), "t0k3n")["problem"]
    probe.write_text("t0k3n")
    assert _worker_sees([os.fspath(probe)], os.fspath(probe), "t0k3n") == {"missing": [], "problem": None, "host": seen["host"]}


def test_the_tiny_city_on_a_cluster_is_the_local_build(cluster, tiny_sources, tiny_city, tmp_path):
    """Every layer kind's jobs run as tasks of the workers; every file is the local build's."""
    recipe = tiny_sources.root / "city-small-tiles.toml"  # the recipe tiny_city was built from
    out = tmp_path / "tianshui"
    stages: set[str] = set()
    with DaskEngine(cluster.address) as engine:
        assert engine.workers == 2 and "2 worker(s)" in engine.describe()
        before = _task_prefixes(engine.client)
        report = cim.build(recipe, out, engine=engine, progress=lambda stage, done, total: stages.add(stage.split(":")[0]))
        ran = {k: n - before.get(k, 0) for k, n in _task_prefixes(engine.client).items()}
    assert {f"cim-{kind}" for kind in KINDS} <= {k for k, n in ran.items() if n > 0}, ran
    assert {lr.id for lr in report.layers} <= stages
    assert not [p for p in out.iterdir() if p.name.startswith(".cim-dask")]  # the scratch folder is gone
    assert_same_city(tiny_city, out)


def test_a_pool_runs_jobs_in_key_order_with_large_keys_and_results_as_files(cluster):
    """Results in key order whatever ran first; a large shared state, key and result travel as
    scratch files (all removed at the end); a job's error comes back as itself."""
    import operator

    big = np.arange(100_000, dtype=np.float64)
    assert big.nbytes > INLINE_BYTES
    with DaskEngine(cluster.address) as engine, engine.pool("test") as pool:
        assert list(pool.map(operator.mul, 3, range(8), sizes=list(range(8)))) == [0, 3, 6, 9, 12, 15, 18, 21]
        out = list(pool.map(operator.add, big, [big * i for i in range(3)]))
        for i, got in enumerate(out):
            np.testing.assert_array_equal(got, big * (i + 1))
        assert os.listdir(engine.scratch) == []
        with pytest.raises(ZeroDivisionError):
            list(pool.map(operator.truediv, 1, [1, 0, 2]))


def test_a_missing_input_is_named_by_the_workers(cluster, tmp_path):
    with DaskEngine(cluster.address) as engine:
        building = engine.building(tmp_path / "out", [tmp_path / "nowhere.tif"])
        with pytest.raises(CimIOError, match=r"cannot see the input .*nowhere\.tif"), building:
            pass
    assert not list((tmp_path / "out").iterdir())  # its scratch folder removed


def test_the_command_line_names_the_cluster(cluster, tiny_sources, tmp_path):
    from click.testing import CliRunner

    from cim.cli.main import cli

    out = tmp_path / "fp"
    src = tiny_sources.root / "data" / "buildings.gpkg"
    res = CliRunner().invoke(
        cli, ["convert", "buildings", str(src), str(out), "--height-attr", "height", "--engine", "dask", "--scheduler", cluster.address]
    )
    assert res.exit_code == 0, res.output
    assert f"dask: the cluster at {cluster.address}, 2 worker(s)" in res.output
    assert (out / "tileset.json").exists() and (out / "city.json").exists()


def test_the_library_joins_or_starts_a_cluster(cluster, tiny_sources, tmp_path):
    """``cim.convert(..., engine="dask", scheduler=...)`` joins a running cluster; a
    :class:`DaskEngine` without a scheduler starts its own on loopback; both write the local
    engine's tiles."""
    src = tiny_sources.root / "data" / "buildings.gpkg"
    cim.convert("buildings", src, tmp_path / "local", height="height")
    cim.convert("buildings", src, tmp_path / "joined", height="height", engine="dask", scheduler=cluster.address)
    with DaskEngine(workers=1) as engine:
        assert engine.client.scheduler.address.startswith("tcp://127.0.0.1:") and engine.workers == 1
        assert "a local cluster" in engine.describe()
        cim.convert("buildings", src, tmp_path / "started", height="height", engine=engine)
    for name in ("joined", "started"):
        _same_layer(tmp_path / "local", tmp_path / name)
    with pytest.raises(cim.errors.CimInputError, match="scheduler"):
        cim.convert("buildings", src, tmp_path / "no", scheduler=cluster.address)


def test_a_scheduler_out_of_reach_is_one_line(tiny_sources, tmp_path, monkeypatch):
    import socket

    from click.testing import CliRunner

    import cim.engines_dask
    from cim.cli.main import cli

    monkeypatch.setattr(cim.engines_dask, "CONNECT_TIMEOUT", 1)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    src = tiny_sources.root / "data" / "buildings.gpkg"
    res = CliRunner().invoke(cli, ["convert", "buildings", str(src), str(tmp_path / "fp"), "--engine", "dask", "--scheduler", address])
    assert res.exit_code == 1 and f"cannot reach the Dask scheduler at {address}" in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "fp").exists()


def _same_layer(a: Path, b: Path) -> None:
    """Two builds of one layer hold the same files with the same bytes, JSON files their timing
    fields aside; the build log the same files (whatever order the jobs finished in) with the
    same sizes, but for what the timing fields change."""
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()), a.name
    resized = {}
    for name in names:
        x, y = (a / name).read_bytes(), (b / name).read_bytes()
        if x == y or name == LOG_NAME:
            continue
        if name.endswith(".sqlite"):  # a search index: the same rows (pages may differ)
            assert rows(a / name) == rows(b / name), f"{a.name}/{name}"
            continue
        assert name.endswith(".json"), f"{a.name}/{name}: bytes differ"
        assert differences(without_timing(json.loads(x)), without_timing(json.loads(y))) == [], f"{a.name}/{name}"
        if len(y) != len(x):
            resized[name] = len(y) - len(x)
    (key_a, files_a), (key_b, files_b) = logged(a / LOG_NAME), logged(b / LOG_NAME)
    assert key_a == key_b and set(files_a) == set(files_b), a.name
    assert {f: files_b[f] - files_a[f] for f in files_a if files_b[f] != files_a[f]} == {
        f: d for f, d in resized.items() if f in files_a
    }, a.name


def test_a_worker_killed_mid_build_changes_nothing(cluster, tiny_sources, tiny_city, tmp_path):
    """kill -9 of a worker busy with a tile job: the scheduler runs its tasks again on the other
    worker and the layers come out as the local build's. (The reality mesh, the slowest layer,
    is left out of this recipe; its jobs ran on the cluster in the test above.)"""
    text = (tiny_sources.root / "city-small-tiles.toml").read_text()
    head, _, rest = text.partition('[[layers]]\nid = "reality"')
    assert rest, "the tiny recipe's reality layer moved"
    recipe = tiny_sources.root / "city-no-mesh.toml"
    recipe.write_text(head)
    out = tmp_path / "tianshui"
    killed: list[tuple[str, str]] = []
    with DaskEngine(cluster.address) as engine:
        client = engine.client
        pids = client.run(os.getpid)

        def progress(stage: str, done: int, total: int) -> None:
            if killed or done < 1 or not stage.startswith(("bim", "lidar", "imagery")):
                return
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append((busy[0], stage))

        report = cim.build(recipe, out, engine=engine, progress=progress)
        assert killed, "no worker was busy when the build reported progress"
        workers = client.scheduler_info()["workers"]
    assert killed[0][0] not in workers and len(workers) == 1
    assert [p.poll() for p in cluster.workers].count(-signal.SIGKILL) == 1
    for layer in report.layers:
        _same_layer(tiny_city / layer.id, out / layer.id)


@pytest.mark.parametrize("spill", [False, True], ids=["in-memory", "spilled"])
def test_a_bim_spool_travels_to_a_worker(tmp_path, spill):
    """A model's spooled meshes (spilled to this machine's temporary files when large) reach a
    worker process as the same arrays; the worker's copy removes no file of the client's."""
    from cim.layers.bim.spool import MeshSpool

    rng = np.random.default_rng(5)
    spool = MeshSpool(spill_bytes=0 if spill else 1 << 30)
    for v, t in ((4, 2), (6, 3)):
        spool.append(rng.random((v, 3)), rng.random((v, 3)).astype(np.float32), rng.integers(0, 65535, (v, 4)), rng.integers(0, v, (t, 3)))
    spool.finish()
    assert (spool.folder is not None) is spill
    dump_file(spool, tmp_path / "spool.pkl")
    copy = load_file(tmp_path / "spool.pkl")
    for a, b in zip(spool.gather(np.array([1, 0])), copy.gather(np.array([1, 0]))):
        np.testing.assert_array_equal(a, b)
    copy.close()
    assert spool.folder is None or spool.folder.exists()
    spool.close()
