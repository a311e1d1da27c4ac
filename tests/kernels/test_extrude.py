import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from cim.kernels.extrude import extrude_footprints, gather_features, triangulate_polygons


def _ragged(geoms):
    parts, feat = shapely.get_parts(np.array(geoms, dtype=object), return_index=True)
    parts = shapely.orient_polygons(parts, exterior_cw=False)
    _, coords, (rings, polys) = shapely.to_ragged_array(parts)
    ground = np.zeros((len(coords), 3))
    ground[:, :2] = coords[:, :2]
    up = np.tile([0.0, 0.0, 1.0], (len(coords), 1))
    return ground, up, rings, polys, feat


def _tri_normals(mesh):
    p = mesh.positions[mesh.triangles.astype(np.int64)]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    return p, n / np.linalg.norm(n, axis=1, keepdims=True)


def test_courtyard_building_is_closed_with_outward_faces():
    court = Polygon([(0, 0), (30, 0), (30, 20), (0, 20)], [[(10, 5), (10, 15), (20, 15), (20, 5)]])
    lshape = Polygon([(50, 0), (70, 0), (70, 8), (58, 8), (58, 20), (50, 20)])
    wings = MultiPolygon([Polygon([(100, 0), (110, 0), (110, 5), (100, 5)]), Polygon([(100, 10), (110, 10), (110, 15), (100, 15)])])
    mesh = extrude_footprints(*_ragged([court, lshape, wings]), base=np.array([100.0, 90.0, 80.0]), top=np.array([120.0, 96.0, 83.0]))
    assert mesh.n_features == 3
    p, n = _tri_normals(mesh)
    # stored normals agree with the winding of every triangle (counter-clockwise from outside)
    vn = mesh.normals[mesh.triangles[:, 0]]
    assert (np.einsum("ij,ij->i", n, vn) > 0.999).all()
    # roof area equals footprint area, per building
    for i, (g, top) in enumerate(zip([court, lshape, wings], [120.0, 96.0, 83.0])):
        t0, t1 = mesh.triangle_offsets[i], mesh.triangle_offsets[i + 1]
        tri = p[t0:t1]
        roof = np.isclose(tri[:, :, 2], top).all(axis=1)
        area = 0.5 * np.linalg.norm(np.cross(tri[roof, 1] - tri[roof, 0], tri[roof, 2] - tri[roof, 0]), axis=1).sum()
        assert np.isclose(area, g.area), (i, area, g.area)
        assert np.allclose(n[t0:t1][roof], [0, 0, 1])
    # walls face away from the solid: a point just outside each wall is outside the footprint
    walls = np.abs(n[:, 2]) < 1e-9
    mid = p[walls].mean(axis=1)
    probe = mid[:, :2] + 0.05 * n[walls][:, :2]
    inside = shapely.contains_xy(shapely.union_all([court, lshape, wings]), probe[:, 0], probe[:, 1])
    assert not inside.any()
    # the courtyard's inner walls exist and face into the courtyard
    court_walls = walls.copy()
    court_walls[mesh.triangle_offsets[1]:] = False
    assert shapely.contains_xy(Polygon([(10, 5), (10, 15), (20, 15), (20, 5)]), *(probe[court_walls[walls]][:, :2].T)).sum() == 8
    # walls span base to top
    z = mesh.positions[:, 2]
    assert z[: mesh.vertex_offsets[1]].min() == 100.0 and z[: mesh.vertex_offsets[1]].max() == 120.0


def test_watertight_sides_every_roof_edge_meets_a_wall():
    g = Polygon([(0, 0), (10, 0), (14, 6), (10, 12), (0, 12), (3, 6)])  # concave hexagon
    mesh = extrude_footprints(*_ragged([g]), base=np.array([0.0]), top=np.array([10.0]))
    p, n = _tri_normals(mesh)
    assert len(mesh.triangles) == 4 + 2 * 6  # earcut: n - 2 roof triangles; two per wall


def test_convex_quad_fast_path_matches_earcut_area():
    quads = [Polygon([(0, 0), (4, 0), (5, 3), (0, 2)]), Polygon([(0, 0), (4, 0), (1, 1), (0, 4)])]  # convex, concave
    ground, up, rings, polys, feat = _ragged(quads)
    tri, owner = triangulate_polygons(ground[:, :2], rings, polys)
    open_xy = ground[np.setdiff1d(np.arange(len(ground)), rings[1:] - 1), :2]
    t = open_xy[tri]
    area = 0.5 * ((t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 1, 1] - t[:, 0, 1]) * (t[:, 2, 0] - t[:, 0, 0]))
    assert (area > 0).all()
    for i, q in enumerate(quads):
        assert np.isclose(area[owner == i].sum(), q.area)


def test_gather_features_keeps_each_building_whole():
    geoms = [Polygon([(i * 20, 0), (i * 20 + 10, 0), (i * 20 + 10, 10), (i * 20, 10)]) for i in range(5)]
    mesh = extrude_footprints(*_ragged(geoms), base=np.zeros(5), top=np.arange(1, 6, dtype=float))
    pos, nrm, tri, vfeat = gather_features(mesh, np.array([3, 1]))
    assert set(vfeat.tolist()) == {0, 1}
    assert np.isclose(pos[vfeat == 0, 2].max(), 4.0) and np.isclose(pos[vfeat == 1, 2].max(), 2.0)
    assert tri.max() < len(pos)
    # triangles of a building only use that building's vertices
    assert (vfeat[tri[:, 0]] == vfeat[tri[:, 1]]).all() and (vfeat[tri[:, 0]] == vfeat[tri[:, 2]]).all()
