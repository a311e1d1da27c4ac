"""One tile of features: gather their triangles about the tile's centre, encode, write.

The buildings and CityJSON layers tile the same way (features in a quadtree, one GLB with
EXT_mesh_features / EXT_structural_metadata a tile); this is their shared tile job body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cim.formats.glb import FeatureColumns, encode_feature_mesh
from cim.formats.tileset import enu_to_gltf
from cim.kernels.extrude import BuildingMesh, gather_tile
from cim.kernels.ragged import take_ragged
from cim.store import TileSink

__all__ = ["write_feature_tile"]


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
    sink.write(rel, glb)
    return lo, hi, ntri
