import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from cim.kernels.extrude import BuildingMesh, extrude_footprints, gather_tile, gltf_layer_arrays


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
    court_walls[mesh.triangle_offsets[1] :] = False
    assert shapely.contains_xy(Polygon([(10, 5), (10, 15), (20, 15), (20, 5)]), *(probe[court_walls[walls]][:, :2].T)).sum() == 8
    # walls span base to top
    z = mesh.positions[:, 2]
    assert z[: mesh.vertex_offsets[1]].min() == 100.0 and z[: mesh.vertex_offsets[1]].max() == 120.0


def test_watertight_sides_every_roof_edge_meets_a_wall():
    g = Polygon([(0, 0), (10, 0), (14, 6), (10, 12), (0, 12), (3, 6)])  # concave hexagon
    mesh = extrude_footprints(*_ragged([g]), base=np.array([0.0]), top=np.array([10.0]))
    p, n = _tri_normals(mesh)
    assert len(mesh.triangles) == 4 + 2 * 6  # earcut: n - 2 roof triangles; two per wall


def test_convex_quads_and_concave_quads_roof_exactly_their_footprint():
    quads = [Polygon([(0, 0), (4, 0), (5, 3), (0, 2)]), Polygon([(10, 0), (14, 0), (11, 1), (10, 4)])]  # convex (no earcut), concave
    mesh = extrude_footprints(*_ragged(quads), base=np.zeros(2), top=np.full(2, 5.0))
    p, n = _tri_normals(mesh)
    for i, q in enumerate(quads):
        t0, t1 = mesh.triangle_offsets[i], mesh.triangle_offsets[i + 1]
        roof = np.isclose(p[t0:t1, :, 2], 5.0).all(axis=1)
        assert roof.sum() == 2 and np.allclose(n[t0:t1][roof], [0, 0, 1])  # counter-clockwise from above
        tri = p[t0:t1][roof]
        assert np.isclose(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum(), q.area)


def _gather_numpy(mesh, features):
    """The reference cut: each building's vertex and triangle runs, in the order asked."""
    vo, to = mesh.vertex_offsets, mesh.triangle_offsets
    vidx = np.concatenate([np.arange(vo[f], vo[f + 1]) for f in features])
    parts, base = [], 0
    for f in features:
        parts.append(mesh.triangles[to[f] : to[f + 1]].astype(np.int64) - vo[f] + base)
        base += vo[f + 1] - vo[f]
    vfeat = np.concatenate([np.full(vo[f + 1] - vo[f], i) for i, f in enumerate(features)])
    return mesh.positions[vidx], mesh.normals[vidx], np.concatenate(parts), vfeat


def test_gather_tile_keeps_each_building_whole_as_a_glb_stores_it():
    geoms = [Polygon([(i * 20, 0), (i * 20 + 10, 0), (i * 20 + 10, 10 + i), (i * 20, 10)]) for i in range(6)]
    geoms.append(Polygon([(0, 30), (30, 30), (30, 50), (0, 50)], [[(10, 35), (10, 45), (20, 45), (20, 35)]]))
    mesh = extrude_footprints(*_ragged(geoms), base=np.arange(7, dtype=float), top=np.arange(7, dtype=float) + 12.0)
    quantized = np.zeros((len(mesh.positions), 4), dtype=np.int8)
    quantized[:, :3] = np.round(mesh.normals * 127)
    layer = BuildingMesh(mesh.positions, quantized, mesh.triangles, mesh.vertex_offsets, mesh.triangle_offsets)
    features = np.array([6, 2, 4])
    origin = np.array([40.0, 20.0, 5.0])
    pos, nrm, tri, fid = gather_tile(layer, features, origin)
    epos, enrm, etri, efeat = _gather_numpy(layer, features)
    assert pos.dtype == np.float32 and np.array_equal(pos, (epos - origin).astype(np.float32))
    assert nrm.dtype == np.int8 and np.array_equal(nrm, enrm)
    assert tri.dtype == np.uint32 and np.array_equal(tri, etri)
    assert fid.dtype == np.float32 and np.array_equal(fid, efeat.astype(np.float32))
    # triangles of a building only use that building's vertices; heights are the building's own
    assert (fid[tri[:, 0]] == fid[tri[:, 1]]).all() and (fid[tri[:, 0]] == fid[tri[:, 2]]).all()
    assert np.isclose(pos[fid == 1, 2].max() + origin[2], 14.0)


def test_gltf_layer_arrays_are_the_numpy_conversions():
    from cim.formats.glb import quantize_normals
    from cim.formats.tileset import enu_to_gltf

    geoms = [Polygon([(i * 20, 0), (i * 20 + 10, 3 * i), (i * 20 + 7, 10 + i), (i * 20, 10)]) for i in range(6)]
    ground, up, rings, polys, feat = _ragged(geoms)
    up = up + np.linspace(-0.01, 0.01, len(up))[:, None] * [1.0, -0.5, 0.0]  # not quite vertical, as in a city
    up /= np.linalg.norm(up, axis=1, keepdims=True)
    mesh = extrude_footprints(ground, up, rings, polys, feat, base=np.arange(6, dtype=float), top=np.arange(6, dtype=float) + 12.0)
    pos, nrm, lo, hi = gltf_layer_arrays(mesh)
    assert np.array_equal(pos, enu_to_gltf(mesh.positions))
    assert np.array_equal(nrm, quantize_normals(enu_to_gltf(mesh.normals)))
    vo = mesh.vertex_offsets
    assert np.array_equal(lo, np.minimum.reduceat(mesh.positions, vo[:-1], axis=0))
    assert np.array_equal(hi, np.maximum.reduceat(mesh.positions, vo[:-1], axis=0))


def test_take_ragged_is_the_numpy_gather():
    from cim.formats.glb import encode_column
    from cim.kernels.ragged import take_ragged

    names = np.array(["Minzhu School", None, "", "天水 library", "x" * 300, "hall"] * 50, dtype=object)
    column = encode_column("name", names, "STRING")
    rows = np.array([5, 3, 3, 0, 299, 4, 1, 2])
    fast = column.take(rows, ragged=take_ragged)
    slow = column.take(rows)
    assert np.array_equal(fast.values, slow.values) and np.array_equal(fast.offsets, slow.offsets)
    assert bytes(fast.values[fast.offsets[1] : fast.offsets[2]]).decode() == "天水 library"
    empty = column.take(np.zeros(0, dtype=np.int64), ragged=take_ragged)
    assert len(empty.values) == 0 and list(empty.offsets) == [0]
