"""A building's link to the lidar points inside it, on the tiny sample city, where the buildings
and the lidar are separate layers: the build counts each footprint's building-class points and
their height percentiles; here a brute-force shapely match over every point of the source files
gives the same numbers."""

from __future__ import annotations

import laspy
import numpy as np
import pyogrio
import pytest
import shapely

from cim.query import feature_detail, open_store

BUILDING = 6  # ASPRS class


@pytest.fixture(scope="module")
def brute_force(tiny_sources, tiny_city):
    """Per source building shown in the city: the heights of the building points its footprint
    covers (shapely: a point on the boundary counts), from every point of every file."""
    store = open_store(tiny_city)
    meta, _, wkb, fields = pyogrio.raw.read(tiny_sources.buildings)
    ids = np.asarray(fields[list(meta["fields"]).index("id")]).astype(str)
    shown = np.isin(ids, store.fid[store.layer == "buildings"])
    ids, footprints = ids[shown], shapely.from_wkb(wkb)[shown]
    xs, ys, zs = [], [], []
    for path in tiny_sources.lidar:
        las = laspy.read(path)
        keep = np.asarray(las.classification) == BUILDING
        xs.append(np.asarray(las.x)[keep])
        ys.append(np.asarray(las.y)[keep])
        zs.append(np.asarray(las.z)[keep])
    x, y, z = np.concatenate(xs), np.concatenate(ys), np.concatenate(zs)
    assert len(x) > 1000
    point, building = shapely.STRtree(footprints).query(shapely.points(x, y), predicate="intersects")
    return store, {str(ids[j]): np.sort(z[point[building == j]]) for j in range(len(ids))}


def test_each_building_links_the_count_and_percentiles_of_its_lidar_points(brute_force):
    store, heights = brute_force
    with_points = 0
    for fid, z in heights.items():
        link = feature_detail(store, "buildings", fid)["links"]["points"]
        assert link is not None, fid
        assert link["count"] == len(z), fid
        if not len(z):
            assert link["z_p50"] is None and link["z_max"] is None, fid
            continue
        with_points += 1
        # heights are reduced as float32 relative to the files' lowest point: a millimetre
        assert link["z_min"] == pytest.approx(z[0], abs=2e-3), fid
        assert link["z_max"] == pytest.approx(z[-1], abs=2e-3), fid
        assert link["z_p50"] == pytest.approx(np.percentile(z, 50), abs=2e-3), fid
        assert link["z_p90"] == pytest.approx(np.percentile(z, 90), abs=2e-3), fid
    # the sample's survey covers the whole city: nearly every building has points
    assert with_points >= 0.9 * len(heights)


def test_the_counts_are_queryable_attributes_of_the_buildings(brute_force):
    from cim.query import Query, select

    store, heights = brute_force
    got = set(store.fid[select(store, Query(layer="buildings", where="n_points > 50")).rows].tolist())
    assert got == {fid for fid, z in heights.items() if len(z) > 50} and got
