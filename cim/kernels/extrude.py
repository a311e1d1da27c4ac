"""LOD1 extrusion of footprints into closed prisms (roof + walls), vectorised.

Footprints arrive as GeoArrow-style ragged arrays (one coordinate array plus ring and polygon
offsets, as ``shapely.to_ragged_array`` gives them), already oriented: exterior rings
counter-clockwise, holes clockwise, seen from above. Only the roof triangulation touches polygons
one by one (earcut); convex quadrilaterals, the common case, need none, and the vertex and
triangle arrays are written by compiled loops (numba).
"""

from __future__ import annotations

from dataclasses import dataclass

import mapbox_earcut
import numpy as np
from numba import njit

__all__ = ["BuildingMesh", "extrude_footprints", "gather_tile", "gltf_layer_arrays", "warm_up"]


@dataclass
class BuildingMesh:
    """Triangles of many buildings, grouped by building.

    Attributes
    ----------
    positions : (v, 3) float64, local ENU metres
    normals : (v, 3) float32, unit, ENU
    triangles : (t, 3) uint32, indices into ``positions``; counter-clockwise seen from outside
    vertex_offsets : (n + 1,) int64; building ``i`` owns ``positions[vertex_offsets[i]:vertex_offsets[i + 1]]``
    triangle_offsets : (n + 1,) int64; building ``i`` owns ``triangles[triangle_offsets[i]:...]``
    """

    positions: np.ndarray
    normals: np.ndarray
    triangles: np.ndarray
    vertex_offsets: np.ndarray
    triangle_offsets: np.ndarray

    @property
    def n_features(self) -> int:
        return len(self.vertex_offsets) - 1


def _ring_ends(ring_offsets: np.ndarray) -> np.ndarray:
    """(k,) bool: True at each ring's closing coordinate."""
    last = np.zeros(ring_offsets[-1], dtype=bool)
    last[ring_offsets[1:] - 1] = True
    return last


@njit(cache=True, nogil=True)
def _convex_quads(xy: np.ndarray, ring_offsets: np.ndarray, polygon_offsets: np.ndarray) -> np.ndarray:
    """(p,) bool: polygons of one ring with four open vertices, strictly convex and
    counter-clockwise (two triangles each, no earcut needed)."""
    n = len(polygon_offsets) - 1
    quad = np.zeros(n, dtype=np.bool_)
    for p in range(n):
        r = polygon_offsets[p]
        if polygon_offsets[p + 1] - r != 1 or ring_offsets[r + 1] - ring_offsets[r] != 5:
            continue
        s = ring_offsets[r]
        convex = True
        for i in range(4):
            a, b, c = s + i, s + (i + 1) % 4, s + (i + 2) % 4
            ex, ey = xy[b, 0] - xy[a, 0], xy[b, 1] - xy[a, 1]
            fx, fy = xy[c, 0] - xy[b, 0], xy[c, 1] - xy[b, 1]
            if not ex * fy - ey * fx > 0.0:
                convex = False
                break
        quad[p] = convex
    return quad


def _earcut_others(
    xy: np.ndarray, ring_offsets: np.ndarray, polygon_offsets: np.ndarray, quad: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Earcut the polygons that are not convex quads: (triangles over open-vertex indices,
    counter-clockwise, degenerate ones dropped; owning polygon), grouped in polygon order."""
    open_start = ring_offsets - np.arange(len(ring_offsets))  # open-vertex offset of each ring
    open_xy = np.compress(~_ring_ends(ring_offsets), xy, axis=0)
    tris: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for pi in np.flatnonzero(~quad):
        r0, r1 = polygon_offsets[pi], polygon_offsets[pi + 1]
        v0, v1 = open_start[r0], open_start[r1]
        if v1 - v0 < 3:
            continue
        ends = (open_start[r0 + 1 : r1 + 1] - v0).astype(np.uint32)
        idx = mapbox_earcut.triangulate_float64(open_xy[v0:v1], ends)
        if len(idx):
            tris.append(idx.reshape(-1, 3).astype(np.int64) + v0)
            owners.append(np.full(len(idx) // 3, pi, dtype=np.int64))
    if not tris:
        return np.empty((0, 3), np.int64), np.empty(0, np.int64)
    triangles = np.concatenate(tris)
    owner = np.concatenate(owners)
    a, b, c = (np.take(open_xy, triangles[:, k], axis=0) for k in range(3))
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = area2 < 0
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    keep = area2 != 0
    return np.compress(keep, triangles, axis=0), owner[keep]


def _roof_triangles(xy: np.ndarray, ring_offsets: np.ndarray, polygon_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(convex-quad mask, earcut triangles, offsets (p + 1) of each polygon's earcut triangles)."""
    quad = _convex_quads(xy, ring_offsets, polygon_offsets)
    ear_tri, ear_poly = _earcut_others(xy, ring_offsets, polygon_offsets, quad)
    ear_first = np.zeros(len(polygon_offsets), dtype=np.int64)
    np.cumsum(np.bincount(ear_poly, minlength=len(polygon_offsets) - 1), out=ear_first[1:])
    return quad, ear_tri, ear_first


@njit(cache=True, nogil=True)
def _feature_polygons(polygon_feature: np.ndarray, n: int) -> np.ndarray:
    """(n + 1,) offsets of each feature's polygons (``polygon_feature`` is non-decreasing)."""
    first = np.zeros(n + 1, dtype=np.int64)
    for f in polygon_feature:
        first[f + 1] += 1
    for f in range(n):
        first[f + 1] += first[f]
    return first


@njit(cache=True, nogil=True)
def _extrude_counts(ground, ring_offsets, polygon_offsets, poly_first, quad, ear_first, min_edge):
    """Per feature: roof vertices, wall edges, roof triangles."""
    n = len(poly_first) - 1
    roof = np.zeros(n, dtype=np.int64)
    edges = np.zeros(n, dtype=np.int64)
    rooftri = np.zeros(n, dtype=np.int64)
    for f in range(n):
        for p in range(poly_first[f], poly_first[f + 1]):
            rooftri[f] += 2 if quad[p] else ear_first[p + 1] - ear_first[p]
            for r in range(polygon_offsets[p], polygon_offsets[p + 1]):
                roof[f] += ring_offsets[r + 1] - ring_offsets[r] - 1
                for c in range(ring_offsets[r], ring_offsets[r + 1] - 1):
                    if np.hypot(ground[c + 1, 0] - ground[c, 0], ground[c + 1, 1] - ground[c, 1]) > min_edge:
                        edges[f] += 1
    return roof, edges, rooftri


@njit(cache=True, nogil=True)
def _extrude_write(
    ground,
    up,
    ring_offsets,
    polygon_offsets,
    poly_first,
    quad,
    ear_tri,
    ear_first,
    base,
    top,
    min_edge,
    vstart,
    tstart,
    positions,
    normals,
    triangles,
):
    """Write every building's roof vertices, wall quads and triangles into its slots."""
    n = len(poly_first) - 1
    for f in range(n):
        if poly_first[f + 1] == poly_first[f]:
            continue
        r_first = polygon_offsets[poly_first[f]]
        open_first = ring_offsets[r_first] - r_first  # the feature's first open-vertex index
        v = vstart[f]
        h = top[f]
        # roof vertices, in ring order: open vertex o lands at vstart[f] + o - open_first
        for p in range(poly_first[f], poly_first[f + 1]):
            for r in range(polygon_offsets[p], polygon_offsets[p + 1]):
                for c in range(ring_offsets[r], ring_offsets[r + 1] - 1):
                    for k in range(3):
                        positions[v, k] = up[c, k] * h + ground[c, k]
                        normals[v, k] = np.float32(up[c, k])
                    v += 1
        # roof triangles, polygon by polygon
        t = tstart[f]
        base_v = vstart[f] - open_first
        for p in range(poly_first[f], poly_first[f + 1]):
            if quad[p]:
                r = polygon_offsets[p]
                s = ring_offsets[r] - r + base_v
                triangles[t, 0], triangles[t, 1], triangles[t, 2] = s, s + 1, s + 2
                triangles[t + 1, 0], triangles[t + 1, 1], triangles[t + 1, 2] = s, s + 2, s + 3
                t += 2
            else:
                for e in range(ear_first[p], ear_first[p + 1]):
                    for k in range(3):
                        triangles[t, k] = ear_tri[e, k] + base_v
                    t += 1
        # walls: quad (a, b, b', a') on each edge c -> c + 1, triangles (a, b, b'), (a, b', a')
        lo = base[f]
        for p in range(poly_first[f], poly_first[f + 1]):
            for r in range(polygon_offsets[p], polygon_offsets[p + 1]):
                for c in range(ring_offsets[r], ring_offsets[r + 1] - 1):
                    dx = ground[c + 1, 0] - ground[c, 0]
                    dy = ground[c + 1, 1] - ground[c, 1]
                    length = np.hypot(dx, dy)
                    if not length > min_edge:
                        continue
                    nx, ny = np.float32(dy / length), np.float32(-dx / length)
                    for k in range(3):
                        positions[v, k] = up[c, k] * lo + ground[c, k]
                        positions[v + 1, k] = up[c + 1, k] * lo + ground[c + 1, k]
                        positions[v + 2, k] = up[c + 1, k] * h + ground[c + 1, k]
                        positions[v + 3, k] = up[c, k] * h + ground[c, k]
                    for q in range(4):
                        normals[v + q, 0] = nx
                        normals[v + q, 1] = ny
                        normals[v + q, 2] = 0.0
                    triangles[t, 0], triangles[t, 1], triangles[t, 2] = v, v + 1, v + 2
                    triangles[t + 1, 0], triangles[t + 1, 1], triangles[t + 1, 2] = v, v + 2, v + 3
                    t += 2
                    v += 4


def extrude_footprints(
    ground: np.ndarray,
    up: np.ndarray,
    ring_offsets: np.ndarray,
    polygon_offsets: np.ndarray,
    polygon_feature: np.ndarray,
    base: np.ndarray,
    top: np.ndarray,
) -> BuildingMesh:
    """Extrude oriented footprints into LOD1 prisms from ``base`` to ``top``.

    A vertex at height ``h`` above the ellipsoid lies at ``ground + h * up``: exact for
    ellipsoidal heights, so walls follow the local vertical wherever the building stands.

    Parameters
    ----------
    ground : (k, 3) float64, ENU position of each ring coordinate at ellipsoid height 0
    up : (k, 3) float64, the ellipsoid normal at each coordinate, in ENU
    ring_offsets, polygon_offsets : ragged offsets of closed rings and polygons
    polygon_feature : (p,) int, the building each polygon belongs to (non-decreasing)
    base, top : (n,) float64, base and roof heights of each building

    Returns
    -------
    BuildingMesh with flat-shaded roof and wall vertices, grouped by building (each building's
    roof vertices, then 4 per wall edge; its roof triangles, then 2 per wall edge). No bottom faces.

    Notes
    -----
    Counted first, then written once into preallocated arrays by a compiled loop over buildings.
    The numpy formulation (scatters into precomputed slots) spent most of its time making
    temporaries in fresh pages; this writes each vertex once.
    Only earcut of the polygons that are not convex quadrilaterals runs per polygon in Python.
    """
    n = len(base)
    ground = np.ascontiguousarray(ground, dtype=np.float64)
    up = np.ascontiguousarray(up, dtype=np.float64)
    ring_offsets = np.asarray(ring_offsets, dtype=np.int64)
    polygon_offsets = np.asarray(polygon_offsets, dtype=np.int64)
    base = np.ascontiguousarray(base, dtype=np.float64)
    top = np.ascontiguousarray(top, dtype=np.float64)
    poly_first = _feature_polygons(np.asarray(polygon_feature, dtype=np.int64), n)
    quad, ear_tri, ear_first = _roof_triangles(np.ascontiguousarray(ground[:, :2]), ring_offsets, polygon_offsets)
    roof, edges, rooftri = _extrude_counts(ground, ring_offsets, polygon_offsets, poly_first, quad, ear_first, _MIN_EDGE)
    vstart = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(roof + 4 * edges, out=vstart[1:])
    tstart = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(rooftri + 2 * edges, out=tstart[1:])
    positions = np.empty((int(vstart[-1]), 3), dtype=np.float64)
    normals = np.empty((int(vstart[-1]), 3), dtype=np.float32)
    triangles = np.empty((int(tstart[-1]), 3), dtype=np.uint32)
    _extrude_write(
        ground,
        up,
        ring_offsets,
        polygon_offsets,
        poly_first,
        quad,
        ear_tri,
        ear_first,
        base,
        top,
        _MIN_EDGE,
        vstart,
        tstart,
        positions,
        normals,
        triangles,
    )
    return BuildingMesh(positions, normals, triangles, vstart, tstart)


#: wall edges shorter than this (metres) are repeated points: no wall
_MIN_EDGE = 1e-9


def gather_tile(mesh: BuildingMesh, features: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A tile's vertex arrays as a GLB stores them, cut out of a layer's mesh in one pass.

    Parameters
    ----------
    mesh : positions (v, 3) float64 and normals (v, 3) float32 or (v, 4) int8, in the axes wanted
    features : (m,) int, building indices, in the order wanted
    origin : (3,) float64, subtracted from every position (the tile centre)

    Returns
    -------
    positions : (v', 3) float32 relative to ``origin``
    normals : normals of the gathered vertices, dtype and width as in ``mesh``
    triangles : (t', 3) uint32, indices into the returned positions
    feature_ids : (v',) float32, index into ``features`` of each vertex's building

    Notes
    -----
    A compiled loop that releases the GIL (tiles encode on threads), without the float64
    intermediates and index arrays a numpy gather needs.
    """
    features = np.ascontiguousarray(features, dtype=np.int64)
    vo, to = mesh.vertex_offsets, mesh.triangle_offsets
    nv = int((vo[features + 1] - vo[features]).sum())
    nt = int((to[features + 1] - to[features]).sum())
    positions = np.empty((nv, 3), dtype=np.float32)
    normals = np.empty((nv, mesh.normals.shape[1]), dtype=mesh.normals.dtype)
    triangles = np.empty((nt, 3), dtype=np.uint32)
    fid = np.empty(nv, dtype=np.float32)
    _gather_tile(
        mesh.positions,
        mesh.normals,
        mesh.triangles,
        vo,
        to,
        features,
        np.asarray(origin, dtype=np.float64),
        positions,
        normals,
        triangles,
        fid,
    )
    return positions, normals, triangles, fid


@njit(cache=True, nogil=True)
def _gather_tile(positions, normals, triangles, vo, to, features, origin, out_pos, out_nrm, out_tri, out_fid):
    v = 0
    t = 0
    for i in range(len(features)):
        f = features[i]
        v0, v1 = vo[f], vo[f + 1]
        shift = v0 - v
        for k in range(v0, v1):
            for c in range(3):
                out_pos[v, c] = positions[k, c] - origin[c]
            for c in range(normals.shape[1]):
                out_nrm[v, c] = normals[k, c]
            out_fid[v] = i
            v += 1
        for k in range(to[f], to[f + 1]):
            for c in range(3):
                out_tri[t, c] = triangles[k, c] - shift
            t += 1


def gltf_layer_arrays(mesh: BuildingMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A layer's mesh as every tile of it stores it, and each building's box, in one pass.

    Returns
    -------
    positions : (v, 3) float64 in glTF axes (east, up, -north)
    normals : (v, 4) int8, glTF axes, ``round(127 x)`` of the float32 normal, 4th byte 0 (as
        :func:`cim.formats.glb.quantize_normals` makes them)
    box_lo, box_hi : (n, 3) float64, each building's ENU bounds
    """
    n = mesh.n_features
    positions = np.empty(mesh.positions.shape, dtype=np.float64)
    normals = np.empty((len(mesh.normals), 4), dtype=np.int8)
    box_lo = np.empty((n, 3), dtype=np.float64)
    box_hi = np.empty((n, 3), dtype=np.float64)
    _gltf_layer(
        mesh.positions, np.ascontiguousarray(mesh.normals, dtype=np.float32), mesh.vertex_offsets, positions, normals, box_lo, box_hi
    )
    return positions, normals, box_lo, box_hi


@njit(cache=True, nogil=True)
def _quantize(x):
    q = np.rint(x * np.float32(127.0))
    return np.int8(min(max(q, np.float32(-127.0)), np.float32(127.0)))


@njit(cache=True, nogil=True)
def _gltf_layer(positions, normals, vo, out_pos, out_nrm, box_lo, box_hi):
    for f in range(len(vo) - 1):
        lo = np.full(3, np.inf)
        hi = np.full(3, -np.inf)
        for k in range(vo[f], vo[f + 1]):
            for c in range(3):
                x = positions[k, c]
                if x < lo[c]:
                    lo[c] = x
                if x > hi[c]:
                    hi[c] = x
            out_pos[k, 0] = positions[k, 0]
            out_pos[k, 1] = positions[k, 2]
            out_pos[k, 2] = -positions[k, 1]
            out_nrm[k, 0] = _quantize(normals[k, 0])
            out_nrm[k, 1] = _quantize(normals[k, 2])
            out_nrm[k, 2] = _quantize(-normals[k, 1])
            out_nrm[k, 3] = 0
        for c in range(3):
            box_lo[f, c] = lo[c]
            box_hi[f, c] = hi[c]


def warm_up() -> None:
    """Load the compiled kernels (numba's first call in a process imports and sets up its typing
    registries); callers start this on a thread while they read their input, so that the two
    overlap."""
    square = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    up = np.zeros_like(square)
    up[:, 2] = 1.0
    mesh = extrude_footprints(square, up, np.array([0, 5]), np.array([0, 1]), np.array([0]), np.zeros(1), np.ones(1))
    positions, normals, _, _ = gltf_layer_arrays(mesh)
    gather_tile(BuildingMesh(positions, normals, mesh.triangles, mesh.vertex_offsets, mesh.triangle_offsets), np.array([0]), np.zeros(3))
