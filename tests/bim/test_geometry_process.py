"""The geometry process: how it starts (fork or a fresh interpreter), the jobs it runs, its end,
and the parts of the BIM layer that run beside it (spool, column encoding, exterior flags)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from cim.engines import helper_threads
from cim.formats.glb_multi import _distinct
from cim.layers.bim.spool import MeshSpool, convex_hull_xy
from cim.layers.bim.tiles import ElementFacts, exterior_flags
from cim.runtime import process_policy
from cim.samplecity.bim import write_sample_ifc
from cim.sources.ifc import GeometryLog, GeometryOptions, GeometryStream, IfcElementIndex, iter_element_geometry, open_ifc
from tests.helpers.bim import SMALL_SPEC, add_broken_proxy, city_frame, variant


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_sample_ifc(tmp_path_factory.mktemp("geomproc") / "small.ifc", **SMALL_SPEC)


def _expected(path: Path) -> dict:
    return IfcElementIndex(open_ifc(path)).body_candidates()


def _meshes(path: Path, options: GeometryOptions, **kw) -> tuple[dict, GeometryLog]:
    log = GeometryLog()
    got = {g.guid: g for g in iter_element_geometry(path, _expected(path), options, log, **kw)}
    return got, log


def test_forked_and_spawned_processes_make_the_same_meshes(small):
    with process_policy(fork=True):  # as the cim command: the geometry process may fork
        forked, flog = _meshes(small, GeometryOptions(), file=open_ifc(small))
        spawned, slog = _meshes(small, GeometryOptions(start="spawn"))
    library, llog = _meshes(small, GeometryOptions(), file=open_ifc(small))  # a library call never forks
    assert (flog.processes, flog.forked) == (1, 1)
    assert (slog.processes, slog.forked) == (1, 0)
    assert (llog.processes, llog.forked) == (1, 0) and set(library) == set(forked)
    assert set(forked) == set(spawned) == {g for g, _ in _expected(small).values()}
    for guid, a in forked.items():
        b = spawned[guid]
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.triangles, b.triangles)
        np.testing.assert_array_equal(a.materials, b.materials)
    assert flog.kernel_peak_mb > 0.0 and slog.kernel_peak_mb > 0.0


@pytest.mark.parametrize("fork_safe, forked", [(False, 0), (True, 1)])
def test_no_fork_while_other_threads_run(small, fork_safe, forked):
    """fork() copies only the calling thread: with another thread alive, a fresh interpreter
    starts, unless the thread is a helper declared never to hold a lock the kernel takes (as the
    search-index writer's thread is), even where forking is allowed."""
    stop = threading.Event()
    with process_policy(fork=True), helper_threads(1, "search", fork_safe=True) as helpers:
        if fork_safe:
            running = helpers.submit(stop.wait)  # the helper's thread, cim-search_0, now runs
            other = None
            assert any(t.name.startswith("cim-search") for t in threading.enumerate())
        else:
            other = threading.Thread(target=stop.wait, name="some-worker")
            other.start()
        try:
            got, log = _meshes(small, GeometryOptions(), file=open_ifc(small))
        finally:
            stop.set()
            if other is not None:
                other.join()
            else:
                running.result()
    assert (log.processes, log.forked) == (1, forked)
    assert len(got) == len(_expected(small))


def test_expected_may_come_later(small):
    """The caller may still be reading the index while the first meshes arrive."""
    calls = []

    def expected():
        calls.append(1)
        return _expected(small)

    log = GeometryLog()
    got = list(iter_element_geometry(small, expected, GeometryOptions(), log))
    assert len(got) == len(_expected(small)) and len(calls) == 1


def test_silently_skipped_elements_are_retried_in_the_same_process(small, tmp_path):
    path, (broken,) = variant(small, tmp_path, add_broken_proxy)
    got, log = _meshes(path, GeometryOptions(), file=open_ifc(path))
    assert [x[:2] for x in log.failed] == [(broken, "IfcBuildingElementProxy")]
    assert broken not in got and log.processes == 1 and log.stalls == 0


def _kernel_pid(stream: GeometryStream, forked: bool) -> int:
    kernel = stream._first
    assert (kernel.pid is not None) == forked and (kernel.proc is None) == forked
    return kernel.pid if forked else kernel.proc.pid


@pytest.mark.parametrize("fork", [True, False])
def test_processes_end_and_are_reaped(small, fork):
    """Forked (where allowed) or a fresh interpreter, the geometry process ends with its stream."""
    with process_policy(fork=fork):
        with GeometryStream(small, GeometryOptions(), file=open_ifc(small)) as stream:
            pid = _kernel_pid(stream, fork)
            n = sum(1 for _ in stream.elements(_expected(small)))
            assert n > 0
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind
        # a stream closed before it is read stops its process too
        stream = GeometryStream(small, GeometryOptions(), file=open_ifc(small))
        pid = _kernel_pid(stream, fork)
        stream.close()
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_unknown_start_method_is_refused(small):
    with pytest.raises(ValueError, match="start"):
        GeometryStream(small, GeometryOptions(start="threads"))


def test_spool_in_memory_and_on_disk_agree():
    rng = np.random.default_rng(3)
    meshes = []
    for _ in range(20):
        nv, nt = int(rng.integers(3, 40)), int(rng.integers(1, 30))
        meshes.append((rng.normal(size=(nv, 3)), rng.normal(size=(nv, 3)), rng.integers(0, 65535, (nv, 4)), rng.integers(0, nv, (nt, 3))))
    spools = [MeshSpool(), MeshSpool(spill_bytes=2000)]
    for spool in spools:
        for m in meshes:
            spool.append(*m)
        spool.finish()
    memory, disk = spools
    assert memory.folder is None and disk.folder is not None and disk.folder.is_dir()
    els = np.array([3, 0, 17, 9])
    for a, b in zip(memory.gather(els), disk.gather(els)):
        np.testing.assert_array_equal(a, b)
    pos, _, _, tri, rows = memory.gather(els)
    assert pos.dtype == np.float64  # ENU positions are spooled as they are placed, not rounded
    np.testing.assert_array_equal(pos[rows == 1], meshes[0][0])
    folder = disk.folder
    for spool in spools:
        spool.close()
    assert not folder.exists()


def test_distinct_feature_ids():
    assert _distinct(np.array([4, 4, 0, 2, 2, 2])) == 3
    assert _distinct(np.zeros(0, dtype=np.int64)) == 0


def test_exterior_flags_parts_follow_their_whole():
    """A plate (part) inside the walls' box follows its curtain wall; an inner wall stays in."""
    n = 4
    facts = ElementFacts(
        ids=np.array([10, 11, 12, 13]),
        is_space=np.zeros(n, dtype=bool),
        detail=np.zeros(n, dtype=bool),
        walls=np.array([True, True, False, False]),
        envelope=np.array([False, False, True, False]),
        external=np.array([-1, 0, -1, -1], dtype=np.int8),
        whole_id=np.array([-1, -1, -1, 12]),
        whole_flag=np.zeros(n, dtype=bool),
        storey=np.full(n, -1),
        elevation={},
    )
    wlo = np.array([[0, 0, 0], [4, 4, 0], [0, 0, 0], [3, 3, 1]], dtype=float)
    whi = np.array([[10, 10, 3], [6, 6, 2], [10, 0.2, 3], [4, 4, 2]], dtype=float)
    flags = exterior_flags(facts, [10, 11, 12, 13], wlo, whi)
    # the outer wall is on the boundary, the inner one says IsExternal=false, the curtain wall is
    # envelope, and its plate inside the box follows it
    assert flags.tolist() == [True, False, True, True]


def test_batch_ingest_places_each_element_as_alone(small):
    """The vectorised ingest gives each element what placing it alone gives (positions, normals,
    colours split by material, triangles, boxes)."""
    from cim.crs import parse_crs
    from cim.kernels.color import srgb_to_linear
    from cim.kernels.mesh import split_vertices_by_material, unit_vectors
    from cim.layers.bim.model import Placing, prepare_placement
    from cim.layers.bim.spool import ingest_batch, new_model

    f = open_ifc(small)
    meshes = list(iter_element_geometry(small, _expected(small), GeometryOptions(), file=f))
    assert any(len(g.materials) > 1 for g in meshes)
    placement = prepare_placement(f, small, Placing(city_frame(), parse_crs("EPSG:4544"), None, None, False))
    model, normal_m = new_model("m", small, placement, meshes[0])
    spool = MeshSpool()
    ingest_batch(meshes[:7], model, spool, normal_m)
    ingest_batch(meshes[7:], model, spool, normal_m)
    spool.finish()
    assert model.ids == [g.id for g in meshes]
    for row, g in enumerate(meshes):
        pos, nrm, rgba, tri, _ = spool.gather(np.array([row]))
        enu = placement.enu(g.vertices)
        source, want_tri, vmat = split_vertices_by_material(g.triangles, g.tri_material, len(enu))
        assert pos.dtype == np.float64
        np.testing.assert_allclose(pos, enu[source], atol=1e-9, rtol=0)
        np.testing.assert_allclose(nrm, unit_vectors((g.normals @ normal_m.T)[source]), atol=1e-6)
        linear = np.concatenate([srgb_to_linear(g.materials[:, :3]), g.materials[:, 3:]], axis=1)  # alpha stays linear
        np.testing.assert_array_equal(rgba, np.clip(np.round(linear[vmat] * 65535.0), 0, 65535).astype(np.uint16))
        np.testing.assert_array_equal(tri, want_tri)
        np.testing.assert_allclose(model.lo[row], enu.min(axis=0), atol=1e-9)
        np.testing.assert_allclose(model.whi[row], g.vertices.max(axis=0))
    spool.close()


def test_elements_are_put_in_step_id_order(small):
    """Whatever order the kernel's threads send them in, a model's elements end up in STEP id
    order, each read back with its own mesh and boxes: the output follows from the file alone."""
    from cim.crs import parse_crs
    from cim.layers.bim.model import Placing, prepare_placement
    from cim.layers.bim.spool import ingest_batch, new_model, sort_elements

    f = open_ifc(small)
    meshes = sorted(iter_element_geometry(small, _expected(small), GeometryOptions(), file=f), key=lambda g: g.id)
    shuffled = [meshes[i] for i in np.random.default_rng(5).permutation(len(meshes))]
    assert [g.id for g in shuffled] != [g.id for g in meshes]
    placement = prepare_placement(f, small, Placing(city_frame(), parse_crs("EPSG:4544"), None, None, False))
    models, spools = [], []
    for order in (meshes, shuffled):
        model, normal_m = new_model("m", small, placement, order[0])
        spool = MeshSpool()
        ingest_batch(order[:5], model, spool, normal_m)
        ingest_batch(order[5:], model, spool, normal_m)
        spool.finish()
        sort_elements(model, spool)
        models.append(model)
        spools.append(spool)
    a, b = models
    assert a.ids == b.ids == sorted(g.id for g in meshes)
    for name in ("lo", "hi", "wlo", "whi"):
        np.testing.assert_array_equal(np.array(getattr(a, name)), np.array(getattr(b, name)))
    for row in range(len(meshes)):
        for x, y in zip(spools[0].gather(np.array([row])), spools[1].gather(np.array([row]))):
            np.testing.assert_array_equal(x, y)
    for x, y in zip(spools[0].gather(np.arange(len(meshes))[::-1]), spools[1].gather(np.arange(len(meshes))[::-1])):
        np.testing.assert_array_equal(x, y)
    for spool in spools:
        spool.close()


def test_convex_hull_matches_geos_on_the_whole_point_set():
    import shapely

    rng = np.random.default_rng(11)
    for _ in range(30):
        n = int(rng.integers(3, 4000))
        pts = np.repeat(rng.normal(0, 30, (n, 2)) @ rng.normal(size=(2, 2)), 4, axis=0) + rng.uniform(-1e5, 1e5, 2)
        want = shapely.convex_hull(shapely.multipoints(pts))
        got = shapely.Polygon(convex_hull_xy(pts)) if want.geom_type == "Polygon" else None
        assert got is not None and abs(got.area - want.area) <= 1e-9 * want.area
        assert got.buffer(1e-6).contains(want) and want.buffer(1e-6).contains(got)
    line = np.stack([np.linspace(0, 10, 200), np.linspace(0, 5, 200)], axis=1)  # collinear: a degenerate hull
    assert convex_hull_xy(line).shape[1] == 2
