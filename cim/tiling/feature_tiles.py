"""One tile of features: gather their triangles about the tile's centre, encode, write.

The buildings and CityJSON layers tile the same way (features in a quadtree, one GLB with
EXT_mesh_features / EXT_structural_metadata a tile); this is their shared tile job body.

A tile's bytes are a function of its features' triangles and attribute rows (in the tile's
order), the layer's schema and the encoder: :class:`FeatureInputs` holds one digest a feature
(:func:`feature_digests`) and a salt for the rest, so that a rebuild keeps the tiles whose
input hash (:meth:`FeatureInputs.tile_hash`) is the previous build's without encoding them
(see :meth:`cim.store.TileSink.reuse`). A parent tile holds its children's features: its hash
changes with any of theirs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cim._version import __version__
from cim.formats.glb import FeatureColumns, encode_feature_mesh
from cim.formats.tileset import enu_to_gltf
from cim.kernels.digest import as_words, ragged_digests, row_digests
from cim.kernels.extrude import BuildingMesh, gather_tile
from cim.kernels.ragged import take_ragged
from cim.store import TileSink

__all__ = ["FeatureInputs", "feature_digests", "write_feature_tile"]

#: bump when a feature tile's encoding changes in a way the package version does not tell
TILE_FORMAT = 1


def feature_digests(mesh: BuildingMesh, columns: FeatureColumns) -> np.ndarray:
    """One digest a feature, of what its part of a tile is made from: its positions and normals
    (as the layer holds them), its triangles (indices relative to its first vertex: a feature
    added or removed before it changes no other feature's digest) and its attribute row.

    Returns
    -------
    (n, 16) uint8
    """
    vo, to = mesh.vertex_offsets, mesh.triangle_offsets
    n = len(vo) - 1
    first = np.repeat(vo[:-1], np.diff(to))
    local = mesh.triangles.astype(np.int64) - first[:, None]
    parts = [
        ragged_digests(as_words(mesh.positions), vo * mesh.positions.shape[1]),
        ragged_digests(as_words(mesh.normals), vo * mesh.normals.shape[1]),
        ragged_digests(as_words(local), to * 3),
    ]
    for c in columns.columns:
        if c.offsets is not None:
            parts.append(ragged_digests(as_words(c.values), c.offsets))
        else:
            parts.append(as_words(c.values).reshape(n, -1))
    return row_digests(*parts).view(np.uint8).reshape(n, 16)


@dataclass(frozen=True)
class FeatureInputs:
    """What a feature layer's tiles are made from, for their input hashes.

    Attributes
    ----------
    salt : the layer-wide inputs of every tile (the encoder's version, the class, the schema)
    digests : (n, 16) uint8, one digest a feature (:func:`feature_digests`)
    """

    salt: bytes
    digests: np.ndarray

    @classmethod
    def of(cls, kind: str, mesh: BuildingMesh, columns: FeatureColumns, class_name: str, description: str) -> FeatureInputs:
        """The inputs of a layer of ``kind`` whose tiles :func:`write_feature_tile` makes."""
        schema = [(c.name, c.kind, repr(c.no_data), str(c.values.dtype)) for c in columns.columns]
        salt = json.dumps(
            [kind, TILE_FORMAT, __version__, class_name, description, schema, str(mesh.positions.dtype), list(mesh.normals.shape[1:])]
        )
        return cls(salt.encode("utf-8"), feature_digests(mesh, columns))

    def tile_hash(self, rows: np.ndarray) -> str:
        """The input hash of the tile of features ``rows`` (in the tile's order)."""
        h = hashlib.blake2b(self.salt, digest_size=20)
        h.update(np.int64(len(rows)).tobytes())
        h.update(np.ascontiguousarray(self.digests[rows]).data)
        return h.hexdigest()


def write_feature_tile(
    sink: TileSink,
    rel: str,
    mesh: BuildingMesh,
    columns: FeatureColumns,
    rows: np.ndarray,
    box_lo: np.ndarray,
    box_hi: np.ndarray,
    class_name: str,
    description: str,
    extra: Callable[[np.ndarray], dict[str, Any]] | None = None,
    inputs: FeatureInputs | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Write the tile ``rel`` of features ``rows`` (unless a resumed build has it already).

    Parameters
    ----------
    sink : where tiles go (see :class:`cim.store.TileSink`)
    rel : the tile's path in the layer, e.g. ``"tiles/0_1_2.glb"``
    mesh : every feature's triangles (ENU), with per-feature offsets
    columns : the layer's property table, one row per feature
    rows : the features of this tile
    box_lo, box_hi : (n, 3) ENU boxes of every feature
    class_name, description : the EXT_structural_metadata class of the features
    extra : more keyword arguments of :func:`cim.formats.glb.encode_feature_mesh` for these rows
        (called only when the tile is written)
    inputs : the layer's feature digests: the tile is kept from the previous build, not encoded,
        when its input hash is unchanged (``extra`` must then add nothing they do not cover)

    Returns
    -------
    The tile's ENU box (lo, hi) and its triangle count.
    """
    lo = box_lo[rows].min(axis=0)
    hi = box_hi[rows].max(axis=0)
    to = mesh.triangle_offsets
    ntri = int((to[rows + 1] - to[rows]).sum())
    if sink.is_done(rel):
        return lo, hi, ntri
    tile_hash = inputs.tile_hash(rows) if inputs is not None else None
    if tile_hash is not None and sink.reuse(rel, tile_hash) is not None:
        return lo, hi, ntri
    centre = (lo + hi) / 2.0
    gl_centre = enu_to_gltf(centre)
    local, nrm, tri, vfeat = gather_tile(mesh, rows, gl_centre)  # glTF axes, quantized normals
    table = columns.take(rows, class_name, description, ragged=take_ragged)
    gl_lo, gl_hi = enu_to_gltf(lo - centre), enu_to_gltf(hi - centre)
    glb = encode_feature_mesh(
        local,
        nrm,
        tri,
        vfeat,
        table,
        gl_centre,
        position_bounds=(np.minimum(gl_lo, gl_hi), np.maximum(gl_lo, gl_hi)),
        **(extra(rows) if extra is not None else {}),
    )
    sink.write(rel, glb, inputs=tile_hash)
    return lo, hi, ntri
