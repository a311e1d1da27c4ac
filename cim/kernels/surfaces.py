"""Planar polygons with holes in 3D (CityJSON surfaces) → triangles, and the checks that go with
it. Pure numpy (and earcut); shapes and dtypes in each docstring.

Surfaces come GeoArrow style: vertex coordinates, the vertex indices of every ring (open rings:
the first vertex is not repeated), ring offsets and surface offsets (a surface's first ring is
its outer ring, the others its holes). Each surface is projected on its best-fit plane, whose
normal is the Newell normal of its outer ring (exact for a planar ring, the least-squares plane
direction for a slightly warped one), and triangulated there:

- a ring without holes that is convex in its plane is cut as a fan (triangles, most walls and
  roof faces), in one vectorised pass;
- anything else goes to earcut with its holes.

Triangles wind counter-clockwise seen from the side the normal points to (CityJSON orients outer
rings counter-clockwise seen from outside, so normals point outwards).

Invalid surfaces are not triangulated; their :data:`SURFACE_STATUS` says why: fewer than three
vertices, no area (all vertices on a line), or a ring that crosses itself or a hole outside the
outer ring, seen when the triangles earcut returns do not cover the polygon's area (a cheap test
that catches bow-ties and most self-intersections, not every one).
"""

from __future__ import annotations

import mapbox_earcut
import numpy as np

__all__ = [
    "OK",
    "TOO_FEW_VERTICES",
    "ZERO_AREA",
    "SELF_INTERSECTING",
    "SURFACE_STATUS",
    "transform_vertices",
    "place_template",
    "ring_newell_normals",
    "triangulate_surfaces",
    "SurfaceMesh",
    "surface_mesh",
]

OK, TOO_FEW_VERTICES, ZERO_AREA, SELF_INTERSECTING = 0, 1, 2, 3
#: status code → what is wrong with a surface
SURFACE_STATUS = {
    OK: "valid",
    TOO_FEW_VERTICES: "fewer than 3 distinct vertices",
    ZERO_AREA: "zero area",
    SELF_INTERSECTING: "self-intersecting ring (or a hole outside its ring)",
}

#: a surface whose area is below this share of its squared extent has no area
_FLAT = 1e-10
#: earcut's triangles may miss a polygon's area by this share before the polygon counts as crossing itself
_COVER = 1e-3


def transform_vertices(vertices: np.ndarray, scale: np.ndarray, translate: np.ndarray) -> np.ndarray:
    """CityJSON's ``transform``: integer vertices → coordinates.

    Parameters
    ----------
    vertices : (n, 3) int or float
    scale, translate : (3,) float

    Returns
    -------
    (n, 3) float64, ``vertices * scale + translate``
    """
    return np.asarray(vertices, dtype=np.float64) * np.asarray(scale, dtype=np.float64) + np.asarray(translate, dtype=np.float64)


def place_template(vertices: np.ndarray, matrix: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """A GeometryInstance's vertices: its template's vertices through the 4x4 ``matrix``
    (row-major, as CityJSON's ``transformationMatrix``), then moved to the reference point.

    Parameters
    ----------
    vertices : (n, 3) float, template vertices
    matrix : (4, 4) float
    reference : (3,) float, the instance's reference point

    Returns
    -------
    (n, 3) float64
    """
    m = np.asarray(matrix, dtype=np.float64)
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    return v @ m[:3, :3].T + m[:3, 3] + np.asarray(reference, dtype=np.float64)


def _ring_of_position(ring_offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(ring_offsets) - 1), np.diff(ring_offsets))


def ring_newell_normals(coords: np.ndarray, ring_indices: np.ndarray, ring_offsets: np.ndarray) -> np.ndarray:
    """Newell's normal of every ring (its length is twice the ring's area, its direction the
    best-fit plane's, following the ring's orientation).

    Parameters
    ----------
    coords : (v, 3) float
    ring_indices : (k,) int, indices into ``coords``
    ring_offsets : (r + 1,) int

    Returns
    -------
    (r, 3) float64 (zero for rings of fewer than three vertices)
    """
    ring_offsets = np.asarray(ring_offsets, dtype=np.int64)
    nr = len(ring_offsets) - 1
    out = np.zeros((nr, 3), dtype=np.float64)
    if len(ring_indices) == 0:
        return out
    ring = _ring_of_position(ring_offsets)
    p = np.asarray(coords, dtype=np.float64)[ring_indices]
    p = p - p[ring_offsets[:-1][ring]]  # relative to each ring's first vertex: no cancellation
    pos = np.arange(len(p))
    nxt = np.where(pos + 1 == ring_offsets[1:][ring], ring_offsets[:-1][ring], pos + 1)
    q = p[nxt]
    terms = np.stack(
        [
            (p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2]),
            (p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0]),
            (p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1]),
        ],
        axis=1,
    )
    for k in range(3):
        out[:, k] = np.bincount(ring, weights=terms[:, k], minlength=nr)
    return out


def _plane_bases(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit (n, u, v) with u × v = n for each (non-zero) normal."""
    length = np.linalg.norm(normals, axis=1)
    n = normals / np.where(length > 0, length, 1.0)[:, None]
    # the coordinate axis least aligned with n, crossed with it
    axis = np.zeros_like(n)
    axis[np.arange(len(n)), np.argmin(np.abs(n), axis=1)] = 1.0
    u = np.cross(axis, n)
    u /= np.maximum(np.linalg.norm(u, axis=1), 1e-300)[:, None]
    v = np.cross(n, u)
    return n, u, v


def triangulate_surfaces(
    coords: np.ndarray, ring_indices: np.ndarray, ring_offsets: np.ndarray, surface_offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate every surface on its best-fit plane (see the module notes).

    Parameters
    ----------
    coords : (v, 3) float, metric coordinates
    ring_indices : (k,) int, vertex indices of the rings (open rings)
    ring_offsets : (r + 1,) int
    surface_offsets : (s + 1,) int, rings of each surface, the outer ring first

    Returns
    -------
    triangles : (t, 3) int64, positions in ``ring_indices`` (not vertex indices: a vertex shared
        by two surfaces has one position in each), counter-clockwise around the normal
    triangle_surface : (t,) int64, the surface of each triangle, non-decreasing
    normals : (s, 3) float64, unit normals (zero for invalid surfaces)
    status : (s,) uint8, :data:`SURFACE_STATUS` codes
    """
    coords = np.asarray(coords, dtype=np.float64)
    ring_indices = np.asarray(ring_indices, dtype=np.int64)
    ring_offsets = np.asarray(ring_offsets, dtype=np.int64)
    surface_offsets = np.asarray(surface_offsets, dtype=np.int64)
    ns = len(surface_offsets) - 1
    status = np.zeros(ns, dtype=np.uint8)
    if ns == 0:
        return np.empty((0, 3), np.int64), np.empty(0, np.int64), np.zeros((0, 3)), status
    ring_len = np.diff(ring_offsets)
    outer = surface_offsets[:-1]
    n_rings = np.diff(surface_offsets)
    outer_len = ring_len[outer]
    newell = ring_newell_normals(coords, ring_indices, ring_offsets)[outer]
    area = 0.5 * np.linalg.norm(newell, axis=1)
    # each surface's extent (of its outer ring), for a scale-free "no area" test
    ring = _ring_of_position(ring_offsets)
    p = coords[ring_indices]
    surface_of_ring = np.repeat(np.arange(ns), n_rings)
    lo = np.full((ns, 3), np.inf)
    hi = np.full((ns, 3), -np.inf)
    owner = surface_of_ring[ring]
    np.minimum.at(lo, owner, p)
    np.maximum.at(hi, owner, p)
    extent2 = np.sum((hi - lo) ** 2, axis=1)
    status[outer_len < 3] = TOO_FEW_VERTICES
    status[(status == OK) & ~(area > _FLAT * extent2)] = ZERO_AREA
    n, u, v = _plane_bases(newell)
    n[status != OK] = 0.0
    # every position in its surface's plane, relative to the surface's first vertex
    origin = p[ring_offsets[outer]][owner]
    rel = p - origin
    xy = np.stack([np.einsum("ij,ij->i", rel, u[owner]), np.einsum("ij,ij->i", rel, v[owner])], axis=1)

    tris: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    single = (status == OK) & (n_rings == 1)
    # one ring, convex in its plane (every turn to the left, one turn in all): a fan
    fan = np.flatnonzero(single & _convex_rings(xy, ring_offsets)[outer])
    if len(fan):
        s0 = ring_offsets[outer[fan]]
        count = outer_len[fan] - 2
        owner_f = np.repeat(fan, count)
        first = np.repeat(s0, count)
        k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count) + 1
        tris.append(np.stack([first, first + k, first + k + 1], axis=1))
        owners.append(owner_f)
    # the rest: earcut with holes, checked against the polygon's area
    done = np.zeros(ns, dtype=bool)
    done[fan] = True
    ring_area = _ring_areas_2d(xy, ring_offsets)
    for j in np.flatnonzero((status == OK) & ~done):
        r0, r1 = surface_offsets[j], surface_offsets[j + 1]
        a, b = ring_offsets[r0], ring_offsets[r1]
        ends = (ring_offsets[r0 + 1 : r1 + 1] - a).astype(np.uint32)
        idx = mapbox_earcut.triangulate_float64(np.ascontiguousarray(xy[a:b]), ends).astype(np.int64).reshape(-1, 3)
        expected = abs(ring_area[r0]) - np.abs(ring_area[r0 + 1 : r1]).sum()
        t = xy[a:b]
        got = np.abs(_tri_area_2d(t[idx[:, 0]], t[idx[:, 1]], t[idx[:, 2]])).sum() if len(idx) else 0.0
        if len(idx) == 0 or not abs(got - expected) <= _COVER * abs(ring_area[r0]):
            status[j] = SELF_INTERSECTING
            n[j] = 0.0
            continue
        tris.append(idx + a)
        owners.append(np.full(len(idx), j, dtype=np.int64))
    if not tris:
        return np.empty((0, 3), np.int64), np.empty(0, np.int64), n, status
    triangles = np.concatenate(tris)
    owner_t = np.concatenate(owners)
    # counter-clockwise in the plane (u, v, n right-handed), zero-area triangles dropped
    area2 = _tri_area_2d(xy[triangles[:, 0]], xy[triangles[:, 1]], xy[triangles[:, 2]])
    flip = area2 < 0
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    keep = area2 != 0
    triangles, owner_t = triangles[keep], owner_t[keep]
    order = np.argsort(owner_t, kind="stable")
    return triangles[order], owner_t[order], n, status


def _convex_rings(xy: np.ndarray, ring_offsets: np.ndarray) -> np.ndarray:
    """(r,) bool: 2D rings that turn left at every vertex and once in all (convex, counter-clockwise)."""
    nr = len(ring_offsets) - 1
    if len(xy) == 0:
        return np.zeros(nr, dtype=bool)
    ring = _ring_of_position(ring_offsets)
    pos = np.arange(len(xy))
    start, stop = ring_offsets[:-1][ring], ring_offsets[1:][ring]
    nxt = np.where(pos + 1 == stop, start, pos + 1)
    e = xy[nxt] - xy
    f = e[nxt]
    cross = e[:, 0] * f[:, 1] - e[:, 1] * f[:, 0]
    angle = np.arctan2(cross, np.einsum("ij,ij->i", e, f))
    right = np.bincount(ring, weights=(cross <= 0).astype(np.float64), minlength=nr)
    turning = np.bincount(ring, weights=angle, minlength=nr)
    return (right == 0) & (turning < 3 * np.pi) & (np.diff(ring_offsets) >= 3)


def _tri_area_2d(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Signed areas (counter-clockwise positive) of 2D triangles, (t,)."""
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _ring_areas_2d(xy: np.ndarray, ring_offsets: np.ndarray) -> np.ndarray:
    """Signed shoelace area of every 2D ring, (r,)."""
    nr = len(ring_offsets) - 1
    if len(xy) == 0:
        return np.zeros(nr)
    ring = _ring_of_position(ring_offsets)
    pos = np.arange(len(xy))
    nxt = np.where(pos + 1 == ring_offsets[1:][ring], ring_offsets[:-1][ring], pos + 1)
    cross = xy[:, 0] * xy[nxt, 1] - xy[nxt, 0] * xy[:, 1]
    return 0.5 * np.bincount(ring, weights=cross, minlength=nr)


class SurfaceMesh:
    """Triangles of many features made of surfaces, grouped by feature, one vertex per ring
    position of each surface (so each vertex has its surface's normal and semantic code).

    Attributes
    ----------
    positions : (v, 3) float64
    normals : (v, 3) float32, unit
    triangles : (t, 3) uint32, indices into ``positions``
    vertex_offsets, triangle_offsets : (n + 1,) int64, each feature's vertices and triangles
    vertex_code : (v,) uint8, the code of each vertex's surface
    """

    def __init__(
        self,
        positions: np.ndarray,
        normals: np.ndarray,
        triangles: np.ndarray,
        vertex_offsets: np.ndarray,
        triangle_offsets: np.ndarray,
        vertex_code: np.ndarray,
    ) -> None:
        self.positions = positions
        self.normals = normals
        self.triangles = triangles
        self.vertex_offsets = vertex_offsets
        self.triangle_offsets = triangle_offsets
        self.vertex_code = vertex_code


def surface_mesh(
    coords: np.ndarray,
    ring_indices: np.ndarray,
    ring_offsets: np.ndarray,
    surface_offsets: np.ndarray,
    surface_feature: np.ndarray,
    surface_code: np.ndarray,
    n_features: int,
    triangles: np.ndarray,
    triangle_surface: np.ndarray,
    normals: np.ndarray,
    keep: np.ndarray,
) -> SurfaceMesh:
    """The kept surfaces' triangles as one mesh grouped by feature.

    Parameters
    ----------
    coords, ring_indices, ring_offsets, surface_offsets : as for :func:`triangulate_surfaces`
    surface_feature : (s,) int, each surface's feature, non-decreasing
    surface_code : (s,) uint8, each surface's code (carried to its vertices)
    n_features : number of features (some may have no surface)
    triangles, triangle_surface, normals : what :func:`triangulate_surfaces` returned
    keep : (s,) bool, the surfaces to use
    """
    ro = np.asarray(ring_offsets, dtype=np.int64)
    so = np.asarray(surface_offsets, dtype=np.int64)
    ring_len, n_rings = ro[1:] - ro[:-1], so[1:] - so[:-1]
    surface_of_position = np.repeat(np.repeat(np.arange(len(n_rings)), n_rings), ring_len)
    used = keep[surface_of_position]
    new_index = np.cumsum(used) - 1
    positions = np.asarray(coords, dtype=np.float64)[np.asarray(ring_indices)[used]]
    sp = surface_of_position[used]
    vnormals = np.asarray(normals, dtype=np.float32)[sp]
    codes = np.asarray(surface_code, dtype=np.uint8)[sp]
    tkeep = keep[triangle_surface]
    tri = new_index[triangles[tkeep]].astype(np.uint32)
    feature = np.asarray(surface_feature, dtype=np.int64)
    vertex_offsets = np.zeros(n_features + 1, dtype=np.int64)
    np.cumsum(np.bincount(feature[sp], minlength=n_features), out=vertex_offsets[1:])
    triangle_offsets = np.zeros(n_features + 1, dtype=np.int64)
    np.cumsum(np.bincount(feature[triangle_surface[tkeep]], minlength=n_features), out=triangle_offsets[1:])
    return SurfaceMesh(positions, vnormals, tri.reshape(-1, 3), vertex_offsets, triangle_offsets, codes)
