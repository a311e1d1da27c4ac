"""GLB of several triangle primitives that share one property table (EXT_mesh_features +
EXT_structural_metadata): one primitive per material kind, e.g. opaque and transparent (alpha
BLEND) parts of BIM elements, coloured per vertex (``COLOR_0``: linear RGB, as glTF defines it,
and alpha; the caller converts sRGB sources).

Builds on :mod:`cim.formats.glb` (its builder and property-table writer) rather than changing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cim.formats.glb import (
    ELEMENT_ARRAY_BUFFER,
    FLOAT,
    TRIANGLES,
    UNSIGNED_INT,
    UNSIGNED_SHORT,
    GltfBuilder,
    PropertyTable,
)
from cim.formats.glb_table import BlockTable

__all__ = ["FeaturePrimitive", "encode_feature_primitives"]


@dataclass
class FeaturePrimitive:
    """One primitive of a feature mesh.

    Attributes
    ----------
    positions : (v, 3) float32, glTF axes (y up), relative to the node translation
    normals : (v, 3) float32, unit, glTF axes
    colors : (v, 4) uint16 RGBA, normalized: linear RGB (not the sRGB a source gives) and alpha,
        or None for white
    triangles : (t, 3) uint32, indices into this primitive's vertices
    feature_ids : (v,) int, row of the property table for each vertex
    alpha_mode : "OPAQUE" or "BLEND"
    name : the material's name
    """

    positions: np.ndarray
    normals: np.ndarray
    colors: np.ndarray | None
    triangles: np.ndarray
    feature_ids: np.ndarray
    alpha_mode: str = "OPAQUE"
    name: str = "opaque"


def encode_feature_primitives(
    primitives: list[FeaturePrimitive],
    table: PropertyTable | BlockTable,
    translation: np.ndarray,
    *,
    double_sided: bool = True,
    roughness: float = 0.9,
) -> bytes:
    """A GLB with one mesh of ``primitives``, all of whose vertices carry feature ids into
    ``table``; one material per primitive (white base colour times ``COLOR_0``, not metallic).

    Parameters
    ----------
    primitives : the primitives (empty ones are skipped)
    table : the features' attributes, shared by every primitive (a :class:`PropertyTable`, or
        rows of a :class:`cim.formats.glb_table.ColumnBlock`)
    translation : (3,) float64, the node translation (the tile centre in glTF axes)
    double_sided : draw back faces too (BIM exports do not always wind faces consistently)
    """
    b = GltfBuilder()
    pt = table.add_to(b)
    b.use_extension("EXT_mesh_features")
    materials: list[dict] = []
    prims: list[dict] = []
    for prim in primitives:
        if len(prim.triangles) == 0:
            continue
        n_vertices = len(prim.positions)
        small = n_vertices < 65536
        idx = np.ascontiguousarray(prim.triangles, dtype=np.uint16 if small else np.uint32).reshape(-1)
        a_idx = b.accessor(idx, UNSIGNED_SHORT if small else UNSIGNED_INT, "SCALAR", target=ELEMENT_ARRAY_BUFFER)
        pos = np.ascontiguousarray(prim.positions, dtype=np.float32)
        a_pos = b.accessor(pos, FLOAT, "VEC3", min_max=True)
        attributes = {"POSITION": a_pos, "NORMAL": b.accessor(np.ascontiguousarray(prim.normals, dtype=np.float32), FLOAT, "VEC3")}
        if prim.colors is not None:
            attributes["COLOR_0"] = b.accessor(np.ascontiguousarray(prim.colors, dtype=np.uint16), UNSIGNED_SHORT, "VEC4", normalized=True)
        fid = np.asarray(prim.feature_ids)
        attributes["_FEATURE_ID_0"] = b.accessor(fid.astype(np.float32), FLOAT, "SCALAR")
        material: dict = {
            "name": prim.name,
            "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": roughness},
            "doubleSided": double_sided,
        }
        if prim.alpha_mode != "OPAQUE":
            material["alphaMode"] = prim.alpha_mode
        materials.append(material)
        prims.append(
            {
                "attributes": attributes,
                "indices": a_idx,
                "material": len(materials) - 1,
                "mode": TRIANGLES,
                "extensions": {
                    "EXT_mesh_features": {"featureIds": [{"featureCount": _distinct(fid), "attribute": 0, "propertyTable": pt}]}
                },
            }
        )
    if not prims:
        raise ValueError("encode_feature_primitives: every primitive is empty")
    b.json["materials"] = materials
    b.json["meshes"] = [{"primitives": prims}]
    b.json["nodes"] = [{"mesh": 0, "translation": [float(x) for x in translation]}]
    b.json["scenes"] = [{"nodes": [0]}]
    b.json["scene"] = 0
    return b.to_glb()


def _distinct(ids: np.ndarray) -> int:
    """How many distinct values ``ids`` (non-negative ints, feature-table rows) holds: a count of
    the non-zero bins; ``np.unique`` would sort, and its first call imports ``numpy.ma``
    (longer than converting a one-element IFC)."""
    ids = np.asarray(ids, dtype=np.int64)
    return int(np.count_nonzero(np.bincount(ids))) if len(ids) else 0
