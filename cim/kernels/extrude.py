"""LOD1 extrusion of footprints into closed prisms (roof + walls), vectorised.

Footprints arrive as GeoArrow-style ragged arrays (one coordinate array plus ring and polygon
offsets, as ``shapely.to_ragged_array`` gives them), already oriented: exterior rings
counter-clockwise, holes clockwise, seen from above. Only the roof triangulation touches polygons
one by one (earcut), and a vectorised fast path takes the common convex quadrilaterals.
"""

from __future__ import annotations

from dataclasses import dataclass

import mapbox_earcut
import numpy as np


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


def _put_rows(out: np.ndarray, index: np.ndarray, rows: np.ndarray) -> None:
    """``out[index] = rows`` for C-contiguous 2-D arrays, through a view of each row as one
    opaque item: numpy then copies whole rows (measured 3x faster than 2-D fancy assignment)."""
    item = np.dtype((np.void, out.dtype.itemsize * out.shape[1]))
    out.view(item).reshape(-1)[index] = np.ascontiguousarray(rows, dtype=out.dtype).view(item).reshape(-1)


def _ring_ends(ring_offsets: np.ndarray) -> np.ndarray:
    """(k,) bool: True at each ring's closing coordinate."""
    last = np.zeros(ring_offsets[-1], dtype=bool)
    last[ring_offsets[1:] - 1] = True
    return last


def triangulate_polygons(
    xy: np.ndarray, ring_offsets: np.ndarray, polygon_offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate polygons with holes; returns triangles over the *open* ring vertices.

    Parameters
    ----------
    xy : (k, 2) float64, closed rings (first coordinate repeated at each ring's end)
    ring_offsets : (r + 1,) int, coordinate offsets of rings
    polygon_offsets : (p + 1,) int, ring offsets of polygons

    Returns
    -------
    triangles : (t, 3) int64 indices into the open vertices ``xy[~closing]``, counter-clockwise
    triangle_polygon : (t,) int64, the polygon each triangle belongs to
    """
    ring_len = np.diff(ring_offsets) - 1  # open vertices per ring
    open_start = np.concatenate([[0], np.cumsum(ring_len)])  # open-vertex offset of each ring
    open_xy = np.compress(~_ring_ends(ring_offsets), xy, axis=0)
    n_rings = np.diff(polygon_offsets)
    first_ring = polygon_offsets[:-1]

    # fast path: one ring of four vertices, convex
    quad = (n_rings == 1) & (ring_len[first_ring] == 4)
    if quad.any():
        s = open_start[first_ring[quad]]
        p = np.take(open_xy, s[:, None] + np.arange(4), axis=0)  # (q, 4, 2)
        e = np.roll(p, -1, axis=1) - p
        cross = e[:, :, 0] * np.roll(e, -1, axis=1)[:, :, 1] - e[:, :, 1] * np.roll(e, -1, axis=1)[:, :, 0]
        convex = (cross > 0).all(axis=1)
        quad[np.flatnonzero(quad)[~convex]] = False
    tris: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    if quad.any():
        qi = np.flatnonzero(quad)
        s = open_start[first_ring[qi]]
        t = np.stack([np.stack([s, s + 1, s + 2], 1), np.stack([s, s + 2, s + 3], 1)], 1).reshape(-1, 3)
        tris.append(t)
        owners.append(np.repeat(qi, 2))
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
    roof vertices, then its wall quads). No bottom faces.

    Notes
    -----
    Output slots are computed up front (a building's roof and wall counts give its offsets), so
    every array is written once by a scatter: no sort of the vertex arrays.
    """
    n = len(base)
    closing = _ring_ends(ring_offsets)
    ring_len = np.diff(ring_offsets)
    ring_feat = np.asarray(polygon_feature, dtype=np.int64)[np.repeat(np.arange(len(polygon_offsets) - 1), np.diff(polygon_offsets))]
    feat = np.repeat(ring_feat, ring_len)  # (k,), non-decreasing
    base = np.asarray(base, dtype=np.float64)
    top = np.asarray(top, dtype=np.float64)

    # the open ring vertices (roof) and the non-degenerate ring edges j -> j + 1 (walls)
    j = np.flatnonzero(~closing)
    fj = feat[j]
    d = np.take(ground[1:, :2] - ground[:-1, :2], j, axis=0)  # j never indexes a ring's closing coordinate
    length = np.hypot(d[:, 0], d[:, 1])
    edge = length > 1e-9
    e, le, fe = j[edge], length[edge], fj[edge]
    de = np.compress(edge, d, axis=0)

    # slots: building i owns roof vertices then 4 vertices per wall edge
    roof_count = np.bincount(fj, minlength=n)
    edge_count = np.bincount(fe, minlength=n)
    vstart = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(roof_count + 4 * edge_count, out=vstart[1:])
    roof_first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(roof_count, out=roof_first[1:])
    edge_first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(edge_count, out=edge_first[1:])
    roof_dst = vstart[fj] + (np.arange(len(j)) - roof_first[fj])
    wall_dst = vstart[fe] + roof_count[fe] + 4 * (np.arange(len(e)) - edge_first[fe])

    n_vertices = int(vstart[-1])
    positions = np.empty((n_vertices, 3), dtype=np.float64)
    normals = np.empty((n_vertices, 3), dtype=np.float32)
    # (np.take along axis 0 and whole-row scatters: 3x faster than 2-D fancy indexing)
    up_j = np.take(up, j, axis=0)
    roof = up_j * top[fj, None]
    roof += np.take(ground, j, axis=0)
    _put_rows(positions, roof_dst, roof)
    _put_rows(normals, roof_dst, up_j.astype(np.float32))
    # each wall edge's quad (a, b, b', a') as one (e, 4, 3) block, scattered once
    g0, g1, u0, u1 = (np.take(a, i, axis=0) for a in (ground, up) for i in (e, e + 1))  # ground e, e+1; up e, e+1
    lo, hi = base[fe, None], top[fe, None]
    quad = np.empty((len(e), 4, 3), dtype=np.float64)
    np.multiply(u0, lo, out=quad[:, 0])
    quad[:, 0] += g0
    np.multiply(u1, lo, out=quad[:, 1])
    quad[:, 1] += g1
    np.multiply(u1, hi, out=quad[:, 2])
    quad[:, 2] += g1
    np.multiply(u0, hi, out=quad[:, 3])
    quad[:, 3] += g0
    wall_slots = (wall_dst[:, None] + np.arange(4)).reshape(-1)
    _put_rows(positions, wall_slots, quad.reshape(-1, 3))
    wall_normal = np.zeros((len(e), 4, 3), dtype=np.float32)
    wall_normal[:, :, 0] = (de[:, 1] / le)[:, None]
    wall_normal[:, :, 1] = (-de[:, 0] / le)[:, None]
    _put_rows(normals, wall_slots, wall_normal.reshape(-1, 3))

    # triangles: building i owns its roof triangles then two per wall edge
    roof_tri, roof_poly = triangulate_polygons(ground[:, :2], ring_offsets, polygon_offsets)
    roof_tri_feat = np.asarray(polygon_feature, dtype=np.int64)[roof_poly]
    order = np.argsort(roof_tri_feat, kind="stable")
    roof_tri, roof_tri_feat = roof_dst[np.take(roof_tri, order, axis=0)], roof_tri_feat[order]
    roof_tri_count = np.bincount(roof_tri_feat, minlength=n)
    tstart = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(roof_tri_count + 2 * edge_count, out=tstart[1:])
    roof_tri_first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(roof_tri_count, out=roof_tri_first[1:])
    triangles = np.empty((int(tstart[-1]), 3), dtype=np.uint32)
    _put_rows(triangles, tstart[roof_tri_feat] + (np.arange(len(roof_tri)) - roof_tri_first[roof_tri_feat]), roof_tri)
    wall_tri_dst = tstart[fe] + roof_tri_count[fe] + 2 * (np.arange(len(e)) - edge_first[fe])
    w = wall_dst.astype(np.uint32)
    pair = np.empty((len(e), 2, 3), dtype=np.uint32)  # (a, b, b'), (a, b', a') of each wall quad
    pair[:, 0, 0] = w
    pair[:, 0, 1] = w + 1
    pair[:, 0, 2] = w + 2
    pair[:, 1, 0] = w
    pair[:, 1, 1] = w + 2
    pair[:, 1, 2] = w + 3
    _put_rows(triangles, (wall_tri_dst[:, None] + np.arange(2)).reshape(-1), pair.reshape(-1, 3))
    return BuildingMesh(positions, normals, triangles, vstart, tstart)


def gather_features(mesh: BuildingMesh, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut the triangles of some buildings out of a mesh.

    Parameters
    ----------
    mesh : BuildingMesh
    features : (m,) int, building indices, in the order wanted

    Returns
    -------
    positions : (v, 3) float64
    normals : (v, 3) float32
    triangles : (t, 3) uint32, indices into the returned positions
    vertex_feature : (v,) int64, index into ``features`` of each vertex's building
    """
    features = np.asarray(features, dtype=np.int64)
    vo, to = mesh.vertex_offsets, mesh.triangle_offsets
    vcount = vo[features + 1] - vo[features]
    tcount = to[features + 1] - to[features]
    new_vstart = np.concatenate([[0], np.cumsum(vcount)[:-1]])
    vidx = np.repeat(vo[features] - new_vstart, vcount) + np.arange(vcount.sum())
    tidx = np.repeat(to[features] - np.concatenate([[0], np.cumsum(tcount)[:-1]]), tcount) + np.arange(tcount.sum())
    shift = np.repeat(vo[features] - new_vstart, tcount)
    triangles = np.take(mesh.triangles, tidx, axis=0)
    triangles -= shift.astype(np.uint32)[:, None]  # every index stays >= its shift: no wrap-around
    vertex_feature = np.repeat(np.arange(len(features)), vcount)
    return np.take(mesh.positions, vidx, axis=0), np.take(mesh.normals, vidx, axis=0), triangles, vertex_feature
