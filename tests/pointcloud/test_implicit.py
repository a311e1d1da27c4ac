"""Implicit tiling (3D Tiles 1.1): subtree files, and the point-cloud octree written with them.

The tiny city's lidar with a low threshold and small leaves is written both ways: every
implicit tile holds the bytes of the explicit node at its coordinates, the subtrees name
exactly the tiles written (their availability expanded from the root subtree down), every
point lies in its tile's implicit cube, ``tileset.json`` is a few hundred bytes, and the
CesiumGS validator (which reads the subtrees) reports no error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cim
from cim.formats.points import decode_points_glb
from cim.formats.subtree import decode_subtree, encode_subtree
from cim.kernels.octree import cell_corner
from cim.tiling.implicit import morton_index, subtree_files
from tests.helpers.pointcloud import walk

#: small leaves and two-level subtrees: about 120 tiles in about 100 subtrees of the tiny lidar
OPTIONS = {"leaf_points": 3000, "crs": "EPSG:4544"}
SUBTREE_LEVELS = 2


def test_morton_index_puts_x_lowest():
    assert morton_index(np.array([1, 0, 0, 1]), np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), 1).tolist() == [1, 2, 4, 7]
    assert morton_index(np.array([2, 3]), np.array([1, 3]), None, 2).tolist() == [0b0110, 0b1111]


def test_a_subtree_round_trips_with_constants_and_bitstreams():
    tiles = np.zeros(9, bool)
    tiles[[0, 1, 8]] = True
    content = np.zeros(9, bool)
    content[8] = True
    children = np.ones(64, bool)
    data = encode_subtree(tiles, content, children)
    assert data[:4] == b"subt" and len(data) % 8 == 0
    n_json = int.from_bytes(data[8:16], "little")
    doc = json.loads(data[24 : 24 + n_json])
    assert doc["childSubtreeAvailability"] == {"constant": 1}
    assert doc["tileAvailability"]["availableCount"] == 3
    assert all(v["byteOffset"] % 8 == 0 for v in doc["bufferViews"])
    back = decode_subtree(data, 9, 64)
    for a, b in zip(back, (tiles, content, children)):
        np.testing.assert_array_equal(a, b)


def test_subtree_files_of_a_small_octree():
    """Root, two children, one grandchild under child (1, 1, 0, 0); one-level subtrees: one file
    per available tile, each naming its available children as child subtrees."""
    level = np.array([0, 1, 1, 2])
    x, y, z = np.array([0, 0, 1, 3]), np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])
    content = np.array([True, False, True, True])
    files = subtree_files(level, x, y, z, content, 1)
    assert sorted(files) == ["subtrees/0/0/0/0.subtree", "subtrees/1/0/0/0.subtree", "subtrees/1/1/0/0.subtree", "subtrees/2/3/1/0.subtree"]
    t, c, k = decode_subtree(files["subtrees/0/0/0/0.subtree"], 1, 8)
    assert t.tolist() == [True] and c.tolist() == [True] and k.nonzero()[0].tolist() == [0, 1]
    t, c, k = decode_subtree(files["subtrees/1/0/0/0.subtree"], 1, 8)
    assert c.tolist() == [False] and not k.any()
    _, _, k = decode_subtree(files["subtrees/1/1/0/0.subtree"], 1, 8)
    assert k.nonzero()[0].tolist() == [0b011]  # (3, 1, 0) is child (1, 1, 0) of (1, 0, 0)
    # two-level subtrees: one file; the grandchild is below its last level, so a child subtree
    files = subtree_files(level, x, y, z, content, 2)
    t, c, k = decode_subtree(files["subtrees/0/0/0/0.subtree"], 9, 64)
    assert t.nonzero()[0].tolist() == [0, 1, 2] and c.nonzero()[0].tolist() == [0, 2]
    assert sorted(files) == ["subtrees/0/0/0/0.subtree", "subtrees/2/3/1/0.subtree"] and k.nonzero()[0].tolist() == [0b001011]


@pytest.fixture(scope="module")
def lidar_both_ways(tiny_sources, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("implicit")
    src = tiny_sources.root / "data" / "lidar"
    cim.convert("pointcloud", src, out / "explicit", **OPTIONS)
    cim.convert("pointcloud", src, out / "implicit", implicit_tiles=0, subtree_levels=SUBTREE_LEVELS, **OPTIONS)
    return out / "explicit", out / "implicit"


def _expand(layer: Path, root_tile: dict) -> dict[tuple[int, int, int, int], bool]:
    """Every tile the subtrees declare available, from the root subtree down: coordinates → has content."""
    tiling = root_tile["implicitTiling"]
    s = tiling["subtreeLevels"]
    n_tiles, n_kids = (8**s - 1) // 7, 8**s
    found: dict[tuple[int, int, int, int], bool] = {}
    todo = [(0, 0, 0, 0)]
    while todo:
        lv, sx, sy, sz = todo.pop()
        data = (layer / tiling["subtrees"]["uri"].format(level=lv, x=sx, y=sy, z=sz)).read_bytes()
        tiles, content, kids = decode_subtree(data, n_tiles, n_kids)
        for r in range(s):
            first = (8**r - 1) // 7
            for m in range(8**r):
                if tiles[first + m]:
                    dx, dy, dz = (sum(((m >> (3 * i + k)) & 1) << i for i in range(r)) for k in range(3))
                    found[(lv + r, (sx << r) + dx, (sy << r) + dy, (sz << r) + dz)] = bool(content[first + m])
        for m in np.nonzero(kids)[0].tolist():
            dx, dy, dz = (sum(((m >> (3 * i + k)) & 1) << i for i in range(s)) for k in range(3))
            todo.append((lv + s, (sx << s) + dx, (sy << s) + dy, (sz << s) + dz))
    return found


def test_the_implicit_octree_holds_the_explicit_tiles(lidar_both_ways):
    explicit, implicit = lidar_both_ways
    doc = json.loads((implicit / "tileset.json").read_text())
    assert len((implicit / "tileset.json").read_bytes()) < 2000
    tile = doc["root"]["children"][0]
    assert tile["implicitTiling"]["subdivisionScheme"] == "OCTREE" and "children" not in tile
    found = _expand(implicit, tile)
    written = {p.relative_to(implicit).as_posix() for p in (implicit / "tiles").rglob("*.glb")}
    assert written == {tile["content"]["uri"].format(level=lv, x=x, y=y, z=z) for (lv, x, y, z), has in found.items() if has}
    assert tile["implicitTiling"]["availableLevels"] == max(k[0] for k in found) + 1 > SUBTREE_LEVELS

    # the same nodes, byte for byte, under their implicit names
    ex = json.loads((explicit / "tileset.json").read_text())
    names = [t["content"]["uri"] for t, _ in walk(ex["root"]) if "content" in t]
    assert len(names) == len(written) > 50
    for name in names:
        digits = Path(name).stem[1:]
        depth, prefix = len(digits), int(digits or "0", 8)
        x, y, z = cell_corner(prefix, depth)
        assert (implicit / f"tiles/{depth}/{x}/{y}/{z}.glb").read_bytes() == (explicit / name).read_bytes(), name

    # every point inside its tile's cube: the root box cut in 2**level along each axis
    c, h = np.array(tile["boundingVolume"]["box"][:3]), np.diag(np.array(tile["boundingVolume"]["box"][3:]).reshape(3, 3))
    lo0, size = c - h, 2 * h
    total = 0
    for uri in written:
        lv, x, y, z = (int(v) for v in Path(uri).with_suffix("").parts[1:])
        pos = decode_points_glb((implicit / uri).read_bytes())["positions"]
        lo = lo0 + np.array([x, y, z]) * size / 2**lv
        assert (pos >= lo - 1e-3).all() and (pos <= lo + size / 2**lv + 1e-3).all(), uri
        total += len(pos)
    assert total == json.loads((implicit / "city.json").read_text())["layers"][0]["count"]


def test_the_validator_reads_the_subtrees(lidar_both_ways, tmp_path):
    from tests.test_tileset_validation import TOOL, Validator

    if not TOOL.exists():
        pytest.skip(f"the CesiumGS 3d-tiles-validator wrapper is not at {TOOL}")
    _, implicit = lidar_both_ways
    verdict = Validator(tmp_path).run("implicit lidar", implicit / "tileset.json")
    assert verdict.errors == 0, verdict.describe()
    assert len(list((implicit / "subtrees").rglob("*.subtree"))) > 10
