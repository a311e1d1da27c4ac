"""A BIM model's element meshes after streaming: placed in the city frame and spooled.

:func:`ingest_batch` places batches of element meshes (:class:`cim.sources.ifc.ElementGeometry`) and
appends them to a :class:`MeshSpool` (in memory, on disk when large), from which the tiles read
their elements back; split from :mod:`cim.layers.bim`.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import shapely

from cim.kernels.color import srgb_to_linear
from cim.kernels.mesh import range_index, split_vertices_by_material, unit_vectors, vertex_normals
from cim.layers.bim.placement import ModelPlacement
from cim.sources.ifc import ElementGeometry

__all__ = [
    "MeshSpool",
    "SpooledModel",
    "ingest_batch",
    "convex_hull_xy",
    "new_model",
    "sort_elements",
]


class MeshSpool:
    """Per-element meshes appended to flat buffers, read back per tile.

    The buffers stay in memory up to ``spill_bytes`` (40 bytes a vertex and 12 a triangle), then
    move to temporary files that are memory-mapped for reading, so a model's meshes are never all
    in memory; small models touch no file. Positions are kept in float64 city ENU metres, so what
    a tile reads back does not depend on which element happened to arrive first. Colours are
    kept as glTF's ``COLOR_0`` holds them: linear RGB and alpha, 16 bits each (8 bits of linear
    merge the dark sRGB levels).

    Elements are read back by their index in the model's canonical order (see :meth:`reorder`).
    """

    KINDS: ClassVar[dict[str, tuple[type, int]]] = {
        "pos": (np.float64, 3),
        "nrm": (np.float32, 3),
        "rgba": (np.uint16, 4),
        "tri": (np.uint32, 3),
    }

    def __init__(self, spill_bytes: int = 64 << 20) -> None:
        self.spill_bytes = spill_bytes
        self._buffers: dict[str, bytearray] = {k: bytearray() for k in self.KINDS}
        self._files: dict | None = None
        self.folder: Path | None = None
        self.v_start: list[int] = []
        self.t_start: list[int] = []
        self.v_count: list[int] = []
        self.t_count: list[int] = []
        self._nv = self._nt = 0
        self._bytes = 0
        self.maps: dict[str, np.ndarray] = {}

    def append(self, pos: np.ndarray, nrm: np.ndarray, rgba: np.ndarray, tri: np.ndarray) -> None:
        """Append one element: (v, 3) positions and normals, (v, 4) colours, (t, 3) triangles."""
        self.extend(pos, nrm, rgba, tri, np.array([len(pos)]), np.array([len(tri)]))

    def extend(
        self, pos: np.ndarray, nrm: np.ndarray, rgba: np.ndarray, tri: np.ndarray, v_counts: np.ndarray, t_counts: np.ndarray
    ) -> None:
        """Append several elements at once: their buffers concatenated, ``v_counts`` / ``t_counts``
        vertices and triangles each (triangles index each element's own vertices)."""
        parts = {"pos": pos, "nrm": nrm, "rgba": rgba, "tri": tri}
        for k, (dtype, _) in self.KINDS.items():
            data = np.ascontiguousarray(parts[k], dtype=dtype).data
            self._bytes += data.nbytes
            if self._files is None:
                self._buffers[k] += data
            else:
                self._files[k].write(data)
        if self._files is None and self._bytes > self.spill_bytes:
            self._spill()
        v_counts, t_counts = np.asarray(v_counts, dtype=np.int64), np.asarray(t_counts, dtype=np.int64)
        self.v_start += (self._nv + np.cumsum(v_counts) - v_counts).tolist()
        self.t_start += (self._nt + np.cumsum(t_counts) - t_counts).tolist()
        self.v_count += v_counts.tolist()
        self.t_count += t_counts.tolist()
        self._nv += int(v_counts.sum())
        self._nt += int(t_counts.sum())

    def _spill(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="cim-bim-"))
        self._files = {k: open(self.folder / f"{k}.bin", "wb") for k in self.KINDS}  # noqa: SIM115 (closed in finish)
        for k, buf in self._buffers.items():
            self._files[k].write(buf)
        self._buffers = {}

    def finish(self) -> None:
        for k, (dtype, width) in self.KINDS.items():
            n = self._nv if k != "tri" else self._nt
            if self._files is None:
                self.maps[k] = np.frombuffer(self._buffers[k], dtype=dtype).reshape(n, width)
                continue
            self._files[k].close()
            assert self.folder is not None  # made with the files (_spill)
            self.maps[k] = (
                np.memmap(self.folder / f"{k}.bin", dtype=dtype, mode="r", shape=(n, width)) if n else np.zeros((0, width), dtype=dtype)
            )
        self.v_start_a, self.v_count_a = np.array(self.v_start, dtype=np.int64), np.array(self.v_count, dtype=np.int64)
        self.t_start_a, self.t_count_a = np.array(self.t_start, dtype=np.int64), np.array(self.t_count, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        """The read side only, for tile jobs in another process (:mod:`cim.engines_dask`): the
        element ranges and the arrays (a spilled spool's mapped files travel as their bytes, as
        their folder is this machine's); the copy owns no file, so closing it removes nothing."""
        state = dict(self.__dict__)
        state.update(_files=None, _buffers={}, folder=None, maps={k: np.asarray(v) for k, v in self.maps.items()})
        return state

    def reorder(self, order: np.ndarray) -> None:
        """Make element ``i`` the one appended ``order[i]``-th (after :meth:`finish`)."""
        for name in ("v_start_a", "v_count_a", "t_start_a", "t_count_a"):
            setattr(self, name, getattr(self, name)[order])

    def close(self) -> None:
        """Free the buffers and remove the temporary files."""
        self.maps.clear()
        self._buffers = {}
        if self._files is not None:
            for f in self._files.values():
                f.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def gather(self, elements: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Positions (float64 ENU), normals, colours, triangles (indices into the gathered
        vertices) and each vertex's row in ``elements``."""
        vc, tc = self.v_count_a[elements], self.t_count_a[elements]
        vidx = range_index(self.v_start_a[elements], vc)
        tidx = range_index(self.t_start_a[elements], tc)
        base = np.zeros(len(elements), dtype=np.int64)
        np.cumsum(vc[:-1], out=base[1:])
        tri = self.maps["tri"][tidx].astype(np.int64) + np.repeat(base, tc)[:, None]
        rows = np.repeat(np.arange(len(elements)), vc)
        return self.maps["pos"][vidx], self.maps["nrm"][vidx], self.maps["rgba"][vidx], tri, rows


@dataclass
class SpooledModel:
    """A model's elements after streaming: geometry records and what tiling needs."""

    name: str
    source: Path
    placement: ModelPlacement
    ids: list[int] = field(default_factory=list)
    lo: list[np.ndarray] = field(default_factory=list)  # ENU boxes
    hi: list[np.ndarray] = field(default_factory=list)
    wlo: list[np.ndarray] = field(default_factory=list)  # world (model axes) boxes
    whi: list[np.ndarray] = field(default_factory=list)
    hull: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # world (model axes) x, y


def ingest_batch(batch: list[ElementGeometry], model: SpooledModel, spool: MeshSpool, normal_m: np.ndarray) -> None:
    """Place a batch of element meshes in the city frame and spool them.

    Vectorised over the batch (one placement, one normal rotation, one colour lookup, one write
    per buffer); only elements with several materials go through a per-element split, whose
    numpy calls are paid per element rather than per batch. The IFC's sRGB colours are spooled
    linear (see :class:`MeshSpool`).
    """
    vcounts = np.array([len(g.vertices) for g in batch], dtype=np.int64)
    vstarts = np.zeros(len(batch), dtype=np.int64)
    np.cumsum(vcounts[:-1], out=vstarts[1:])
    world = np.concatenate([g.vertices for g in batch])
    enu = model.placement.enu(world)
    # normals in ENU: the kernel's rotated, or made from the placed faces when it gave none
    normals = np.empty_like(enu)
    has = np.array([len(g.normals) == len(g.vertices) for g in batch])
    if has.any():
        normals[range_index(vstarts[has], vcounts[has])] = np.concatenate([g.normals for g, h in zip(batch, has) if h]) @ normal_m.T
    for j in np.flatnonzero(~has):
        a, b = vstarts[j], vstarts[j] + vcounts[j]
        normals[a:b] = vertex_normals(enu[a:b], batch[j].triangles)
    # one material a vertex: vertices shared by triangles of two materials are duplicated
    mat_base = np.zeros(len(batch), dtype=np.int64)
    np.cumsum([len(g.materials) for g in batch[:-1]], out=mat_base[1:])
    sources, tris, vmats, new_counts = [], [], [], np.empty(len(batch), dtype=np.int64)
    for i, g in enumerate(batch):
        a, nv = vstarts[i], vcounts[i]
        if len(g.materials) > 1 and len(g.tri_material) and g.tri_material.min() != g.tri_material.max():
            source, tri, vmat = split_vertices_by_material(g.triangles, g.tri_material, nv)
            sources.append(source + a)
            vmats.append(vmat + mat_base[i])
        else:
            tri = g.triangles
            sources.append(np.arange(a, a + nv))
            vmats.append(np.full(nv, mat_base[i] + (g.tri_material[0] if len(g.tri_material) else 0), dtype=np.int64))
        tris.append(tri)
        new_counts[i] = len(sources[-1])
    source = np.concatenate(sources)
    materials = np.concatenate([g.materials for g in batch])
    # IFC colours are sRGB display values and glTF's COLOR_0 is linear; alpha (1 - transparency)
    # is not gamma-encoded. Converted per material, in float, then rounded once
    linear = np.concatenate([srgb_to_linear(materials[:, :3]), materials[:, 3:]], axis=1)
    rgba = np.clip(np.round(linear[np.concatenate(vmats)] * 65535.0), 0, 65535).astype(np.uint16)
    pos = enu[source]
    spool.extend(
        pos, unit_vectors(normals[source]), rgba, np.concatenate(tris), new_counts, np.array([len(t) for t in tris], dtype=np.int64)
    )
    new_starts = np.zeros(len(batch), dtype=np.int64)
    np.cumsum(new_counts[:-1], out=new_starts[1:])
    model.ids.extend(g.id for g in batch)
    model.lo.extend(np.minimum.reduceat(pos, new_starts, axis=0))
    model.hi.extend(np.maximum.reduceat(pos, new_starts, axis=0))
    model.wlo.extend(np.minimum.reduceat(world, vstarts, axis=0))
    model.whi.extend(np.maximum.reduceat(world, vstarts, axis=0))
    model.hull = convex_hull_xy(np.concatenate([model.hull, world[:, :2]]))


def convex_hull_xy(xy: np.ndarray) -> np.ndarray:
    """The convex hull of points, as the coordinates of its ring (or of the degenerate hull).

    Parameters
    ----------
    xy : (n, 2) float

    Returns
    -------
    (k, 2) float64

    Notes
    -----
    Akl–Toussaint: a point strictly inside the octagon of the extreme points in eight directions
    cannot be on the hull, so those are dropped (numpy) before GEOS sees the rest: unwelded
    meshes repeat every vertex, and most lie inside.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) > 64:
        x, y = xy[:, 0], xy[:, 1]
        s, d = x + y, x - y
        # the extremes in counter-clockwise order: left, lower left, bottom, lower right, ...
        ring = xy[[x.argmin(), s.argmin(), y.argmin(), d.argmax(), x.argmax(), s.argmax(), y.argmax(), d.argmin()]]
        edges = np.roll(ring, -1, axis=0) - ring
        edges_ok = np.abs(edges).sum(axis=1) > 0
        if edges_ok.sum() >= 3:
            scale = float(np.abs(xy).max()) or 1.0
            inside = np.ones(len(xy), dtype=bool)
            for a, e in zip(ring[edges_ok], edges[edges_ok]):
                inside &= e[0] * (y - a[1]) - e[1] * (x - a[0]) > 1e-9 * scale * scale
            xy = np.concatenate([ring, xy[~inside]])
    return np.asarray(shapely.get_coordinates(shapely.convex_hull(shapely.multipoints(xy))))


def new_model(name: str, path: Path, placement: ModelPlacement, first: ElementGeometry) -> tuple[SpooledModel, np.ndarray]:
    """An empty model, and the rotation of its normals into ENU.

    The rotation is taken at the model's reference point (its local origin, where the
    georeference places it), so it does not depend on which element arrives first; at the first
    element's centre only when the origin does not project (a file whose coordinates lie far
    from its own origin, outside the CRS).

    Returns
    -------
    model : the model
    normal_m : (3, 3) float, world normals → ENU normals
    """
    normal_m = placement.normal_matrix(np.zeros(3))
    if not np.all(np.isfinite(normal_m)):
        normal_m = placement.normal_matrix(first.vertices.mean(axis=0))
    return SpooledModel(name, path, placement), normal_m


def sort_elements(model: SpooledModel, spool: MeshSpool) -> None:
    """Put a streamed model's elements in STEP id order (the kernel's threads send them in no
    fixed order): every later step, and so every output byte, then follows the file alone."""
    order = np.argsort(np.asarray(model.ids, dtype=np.int64), kind="stable")
    if np.all(order == np.arange(len(order))):
        return
    model.ids = [model.ids[i] for i in order]
    for name in ("lo", "hi", "wlo", "whi"):
        values = getattr(model, name)
        setattr(model, name, [values[i] for i in order])
    spool.reorder(order)
