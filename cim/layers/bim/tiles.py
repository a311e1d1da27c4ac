"""A BIM model's tile tree: exterior → storey parts → detail, and each tile's GLB (its meshes and
the property table of its elements' attributes, encoded once per model).

See :mod:`cim.layers.bim` for the levels; split from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cim.formats.glb_multi import FeaturePrimitive, encode_feature_primitives
from cim.formats.glb_table import ColumnBlock
from cim.formats.tileset import enu_to_gltf
from cim.kernels.mesh import chunk_by_budget
from cim.layers.bim.spool import MeshSpool, SpooledModel
from cim.sources.ifc import IfcElementIndex
from cim.store import TileSink

__all__ = [
    "ENVELOPE_CLASSES",
    "DETAIL_CLASSES",
    "TileNode",
    "plan_model_tiles",
    "exterior_flags",
    "encode_tile",
    "ModelTiles",
    "tile_job",
    "ElementFacts",
    "walk_nodes",
]

#: always in the exterior tile (slab edges and roofs make the silhouette)
ENVELOPE_CLASSES = ("IfcRoof", "IfcSlab", "IfcCurtainWall")
#: never before the detail level: volumes, furniture, services, small parts
DETAIL_CLASSES = (
    "IfcSpace",
    "IfcFurnishingElement",
    "IfcDistributionElement",
    "IfcDiscreteAccessory",
    "IfcFastener",
    "IfcMechanicalFastener",
    "IfcTransportElement",
    "IfcBuildingElementPart",
    "IfcVirtualElement",
)


@dataclass
class TileNode:
    """A tile of a model's tree: its elements (rows of the model), geometric error and children."""

    name: str
    elements: np.ndarray
    error: float
    children: list[TileNode] = field(default_factory=list)
    #: how the children refine this tile: ``"REPLACE"``, or ``"ADD"`` when they only add to it
    refine: str = "REPLACE"


def plan_model_tiles(
    sizes: np.ndarray,
    triangles: np.ndarray,
    centres: np.ndarray,
    storey: np.ndarray,
    storey_order: list[int],
    exterior: np.ndarray,
    detail: np.ndarray,
    *,
    max_triangles: int,
    min_storey_size: float,
) -> TileNode:
    """The tile tree of one model: exterior → storey parts → detail (see the module notes).

    Parameters
    ----------
    sizes : (n,) float, element box diagonals (m)
    triangles : (n,) int, element triangle counts
    centres : (n, 3) float, element box centres
    storey : (n,) int, a storey key per element
    storey_order : storey keys from the lowest storey up
    exterior, detail : (n,) bool, the element's level (see :data:`ENVELOPE_CLASSES`, :data:`DETAIL_CLASSES`)
    """
    n = len(sizes)
    ext = np.flatnonzero(exterior)
    if len(ext) == 0:
        ext = np.flatnonzero(~detail) if (~detail).any() else np.arange(n)
    # largest first under the budget: the silhouette survives, small parts wait
    ext = ext[np.argsort(-sizes[ext], kind="stable")]
    cum = np.cumsum(triangles[ext])
    keep = ext[: max(1, int(np.searchsorted(cum, max_triangles, side="right")))]
    in_root = np.zeros(n, dtype=bool)
    in_root[keep] = True
    root = TileNode("exterior", np.sort(keep), float(sizes[~in_root].max()) if (~in_root).any() else 0.0)
    if root.error == 0.0:
        return root
    fabric = exterior | (~detail & (sizes >= min_storey_size))
    for level, key in enumerate(storey_order):
        members = np.flatnonzero(storey == key)
        groups = chunk_by_budget(centres[members], triangles[members], max_triangles)
        for k, g in enumerate(groups):
            g = members[g]
            kept = g[fabric[g]]
            name = f"s{level:02d}-{k}"
            if len(kept) == 0 or len(kept) == len(g):
                root.children.append(TileNode(name, g, 0.0))
                continue
            # the detail tile adds what the storey tile leaves out, without repeating its fabric
            # (refine ADD: on a real house model the repeated fabric was 38 % of the layer's bytes)
            omitted = g[~fabric[g]]
            node = TileNode(name, kept, float(sizes[omitted].max()), refine="ADD")
            node.children.append(TileNode(name + "-detail", omitted, 0.0))
            root.children.append(node)
    return root


def exterior_flags(facts: ElementFacts, ids: list[int], wlo: np.ndarray, whi: np.ndarray) -> np.ndarray:
    """Which elements make the far view (see :data:`ENVELOPE_CLASSES`).

    Elements that say nothing about ``IsExternal`` count as exterior when they are not strictly
    inside the walls' box (model axes): on it, above it or beyond it. Parts follow their whole.

    Parameters
    ----------
    facts : the elements' classes and relationships, one row per element of ``ids``
    ids : (n,) STEP ids of the elements drawn
    wlo, whi : (n, 3) float, element boxes in model axes
    """
    n = len(ids)
    detail = facts.detail
    flags = np.zeros(n, dtype=bool)
    walls = facts.walls & ~detail
    ref = walls if walls.any() else ~detail if (~detail).any() else np.ones(n, dtype=bool)
    lo, hi = wlo[ref].min(axis=0), whi[ref].max(axis=0)
    tol = max(0.3, 0.01 * float(np.max(hi[:2] - lo[:2])))
    inside = (
        (wlo[:, 0] > lo[0] + tol)
        & (wlo[:, 1] > lo[1] + tol)
        & (whi[:, 0] < hi[0] - tol)
        & (whi[:, 1] < hi[1] - tol)
        & (whi[:, 2] < hi[2] - tol)
    )
    said = facts.external >= 0
    flags = np.where(said, facts.external == 1, ~detail & ~inside) | facts.envelope
    # parts follow their whole (curtain-wall plates, stair flights), in element order as a part
    # may be the whole of another
    by_id = {i: r for r, i in enumerate(ids)}
    for r in np.flatnonzero((facts.whole_id >= 0) & ~detail):
        if flags[r]:
            continue
        j = by_id.get(int(facts.whole_id[r]))
        if (j is not None and flags[j]) or (j is None and facts.whole_flag[r]):
            flags[r] = True
    return flags


def encode_tile(
    node: TileNode, spool: MeshSpool, model: SpooledModel, block: ColumnBlock, rows: np.ndarray
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One tile's GLB and its content bounds (ENU).

    ``rows`` maps the model's elements to the rows of ``block``, the encoded attributes. A
    tile's table leaves out the columns none of its elements has a value in (readers see no
    value, as for noData): a STRING column empty in every row would need a zero-length buffer
    view, which glTF forbids; and a model's property sets make hundreds of columns (221 in a
    real IFC4 file) of which a tile's elements use some.
    """
    els = node.elements
    pos, nrm, rgba, tri, vrows = spool.gather(els)
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    centre = (lo + hi) / 2.0
    rel = enu_to_gltf(pos - centre).astype(np.float32)
    normals = enu_to_gltf(np.asarray(nrm))
    transparent = rgba[tri[:, 0], 3] < 65535
    prims = []
    for mask, mode in ((~transparent, "OPAQUE"), (transparent, "BLEND")):
        if not mask.any():
            continue
        t = tri[mask]
        keep = np.zeros(len(rel), dtype=bool)
        keep[t.ravel()] = True
        used = np.flatnonzero(keep)
        remap = np.cumsum(keep, dtype=np.int64) - 1
        prims.append(FeaturePrimitive(rel[used], normals[used], rgba[used], remap[t].astype(np.uint32), vrows[used], mode, mode.lower()))
    table = block.table(rows[els], "element", "A BIM element (IFC product) with its attributes and property sets")
    return encode_feature_primitives(prims, table, enu_to_gltf(centre)), lo, hi


@dataclass(frozen=True)
class ModelTiles:
    """What every tile job of one model shares: its spooled meshes and encoded attributes."""

    spool: MeshSpool
    model: SpooledModel
    block: ColumnBlock
    rows: np.ndarray
    sink: TileSink
    folder: str  # the model's tiles, relative to the layer folder


def tile_job(state: ModelTiles, node: TileNode) -> tuple[np.ndarray, np.ndarray]:
    """The tile job: encode and write one tile of a model; returns its content bounds (ENU)."""
    glb, lo, hi = encode_tile(node, state.spool, state.model, state.block, state.rows)
    state.sink.write(f"{state.folder}/{node.name}.glb", glb)
    return lo, hi


@dataclass
class ElementFacts:
    """What tiling needs to know of each element besides its geometry (one row per element).

    Attributes
    ----------
    ids : (n,) int64 STEP ids
    is_space, detail, walls, envelope : (n,) bool, class tests (spaces, :data:`DETAIL_CLASSES`,
        walls and curtain walls, :data:`ENVELOPE_CLASSES`)
    external : (n,) int8, ``IsExternal`` (1, 0) or -1 when the element says nothing
    whole_id : (n,) int64, STEP id of the aggregate/nest whole, -1 when none
    whole_flag : (n,) bool, the whole is an envelope class or marked external
    storey : (n,) int64, STEP id of the element's storey, -1 when none
    elevation : ``{storey id: elevation (m)}``
    """

    ids: np.ndarray
    is_space: np.ndarray
    detail: np.ndarray
    walls: np.ndarray
    envelope: np.ndarray
    external: np.ndarray
    whole_id: np.ndarray
    whole_flag: np.ndarray
    storey: np.ndarray
    elevation: dict[int, float]

    @classmethod
    def read(cls, index: IfcElementIndex, elements: list) -> ElementFacts:
        n = len(elements)
        out = cls(
            np.array([el.id() for el in elements], dtype=np.int64),
            np.zeros(n, dtype=bool),
            np.zeros(n, dtype=bool),
            np.zeros(n, dtype=bool),
            np.zeros(n, dtype=bool),
            np.full(n, -1, dtype=np.int8),
            np.full(n, -1, dtype=np.int64),
            np.zeros(n, dtype=bool),
            np.full(n, -1, dtype=np.int64),
            {},
        )
        kinds: dict[str, tuple[bool, bool, bool, bool]] = {}  # class tests, once per class
        for r, el in enumerate(elements):
            ifc_class = el.is_a()
            kind = kinds.get(ifc_class)
            if kind is None:
                kind = kinds[ifc_class] = (
                    el.is_a("IfcSpace"),
                    any(el.is_a(c) for c in DETAIL_CLASSES),
                    el.is_a("IfcWall") or el.is_a("IfcCurtainWall"),
                    any(el.is_a(c) for c in ENVELOPE_CLASSES),
                )
            out.is_space[r], out.detail[r], out.walls[r], out.envelope[r] = kind
            if not out.envelope[r]:
                ext = index.is_external(el)
                out.external[r] = -1 if ext is None else int(ext)
            whole = index.parent.get(el.id())
            if whole is not None:
                out.whole_id[r] = whole.id()
                out.whole_flag[r] = any(whole.is_a(c) for c in ENVELOPE_CLASSES) or bool(index.is_external(whole))
            s = index.storey(el)
            if s is not None:
                out.storey[r] = s.id()
                if s.id() not in out.elevation:
                    out.elevation[s.id()] = index.storey_elevation(s)
        return out

    def take(self, rows: np.ndarray) -> ElementFacts:
        """The facts of ``rows`` (an int index array)."""
        arrays = {
            k: getattr(self, k)[rows]
            for k in ("ids", "is_space", "detail", "walls", "envelope", "external", "whole_id", "whole_flag", "storey")
        }
        return ElementFacts(**arrays, elevation=self.elevation)


def walk_nodes(node: TileNode) -> list[TileNode]:
    """``node`` and all nodes under it, depth first, each before its children."""
    out = [node]
    for c in node.children:
        out += walk_nodes(c)
    return out
