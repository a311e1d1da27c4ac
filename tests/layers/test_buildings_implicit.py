"""Implicit tiling of the buildings quadtree: subtrees whose tile metadata carries each tile's real
box (``TILE_BOUNDING_BOX``) and measured geometric error (``TILE_GEOMETRIC_ERROR``).

The tiny city's footprints, one of them moved 2 km away (so that the quadtree skips levels above
the others), with small tiles, are written both ways (explicit at the default
threshold, implicit with ``implicit_tiles=0``). A reader of the subtrees written here walks the
implicit tree from the root subtree down and must find the explicit tileset's tiles: the same
contents byte for byte, the same boxes and errors, the same parent → children relation once the
content-less tiles of skipped levels are passed through. The CesiumGS validator reports no error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import shapely

import cim
from cim.formats.subtree import decode_subtree, decode_tile_metadata, encode_subtree
from cim.formats.tileset import replace_tree
from cim.tiling.implicit_tree import implicit_replace_tree
from cim.tiling.quadtree import TileNode

Key = tuple[int, int, int]
#: a few buildings a tile: a tree several levels deep, with skipped levels
OPTIONS: dict[str, Any] = {"max_features": 6}
SUBTREE_LEVELS = 2


def test_tile_metadata_round_trips_in_a_subtree():
    tiles = np.array([True, False, True, True, False])
    boxes = np.arange(36, dtype=np.float64).reshape(3, 12) / 7.0
    errors = np.array([3.5, 1.25, 0.0])
    data = encode_subtree(tiles, tiles, np.zeros(16, bool), "tile", {"boundingBox": boxes, "geometricError": errors})
    assert len(data) % 8 == 0
    n_json = int.from_bytes(data[8:16], "little")
    doc = json.loads(data[24 : 24 + n_json])
    assert doc["tileMetadata"] == 0 and doc["propertyTables"][0]["count"] == 3
    assert all(v["byteOffset"] % 8 == 0 for v in doc["bufferViews"])
    back = decode_tile_metadata(data, {"boundingBox": 12, "geometricError": 1})
    np.testing.assert_array_equal(back["boundingBox"], boxes)
    np.testing.assert_array_equal(back["geometricError"][:, 0], errors)
    np.testing.assert_array_equal(decode_subtree(data, 5, 16)[0], tiles)
    with pytest.raises(ValueError, match="2 rows for 3"):
        encode_subtree(tiles, tiles, np.zeros(16, bool), "tile", {"geometricError": errors[:2]})


def _boxes(names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    out = {}
    for name in names:
        lo = rng.uniform(-100, 100, 3)
        out[name] = (lo, lo + rng.uniform(1, 30, 3))
    return out


def test_a_skipped_level_is_an_available_tile_without_content():
    """Root 0-0-0 went straight down to level 2 (its features were all in quadrant 1-1-0): tile
    1-1-0 is available, has no content, and takes the root's box and error."""
    leaves = [TileNode(2, 2, 0, np.array([0])), TileNode(2, 3, 1, np.array([1])), TileNode(3, 7, 3, np.array([2]))]
    mid = TileNode(2, 3, 1, np.array([1]), 2.0, [leaves[2]])
    root = TileNode(0, 0, 0, np.array([0, 1]), 5.0, [leaves[0], mid])
    bounds = _boxes(["0-0-0", "2-2-0", "2-3-1", "3-7-3"])
    tile, lo, hi, files = implicit_replace_tree(root, bounds, lambda n: n.geometric_error, 2)
    explicit, elo, ehi = replace_tree(root, bounds, lambda n: n.geometric_error)
    np.testing.assert_array_equal(lo, elo)
    np.testing.assert_array_equal(hi, ehi)
    assert tile["boundingVolume"] == explicit["boundingVolume"] and tile["geometricError"] == 5.0
    assert tile["implicitTiling"]["availableLevels"] == 4 and tile["implicitTiling"]["subtreeLevels"] == 2
    assert sorted(files) == ["subtrees/0/0/0.subtree", "subtrees/2/2/0.subtree", "subtrees/2/3/1.subtree"]
    found = _expand(files.__getitem__, tile)
    assert sorted(found) == [(0, 0, 0), (1, 1, 0), (2, 2, 0), (2, 3, 1), (3, 7, 3)]
    assert found[(1, 1, 0)] == (explicit["boundingVolume"]["box"], 5.0, False)
    assert found[(2, 3, 1)] == (explicit["children"][1]["boundingVolume"]["box"], 2.0, True)
    assert found[(3, 7, 3)][1:] == (0.0, True)


def _expand(read, root_tile: dict) -> dict[Key, tuple[list[float], float, bool]]:
    """Every tile the subtrees declare available, from the root subtree down:
    (level, x, y) → (its TILE_BOUNDING_BOX, its TILE_GEOMETRIC_ERROR, whether it has content).
    ``read(path)`` gives a subtree file's bytes."""
    tiling = root_tile["implicitTiling"]
    assert tiling["subdivisionScheme"] == "QUADTREE"
    s = tiling["subtreeLevels"]
    n_tiles, n_kids = (4**s - 1) // 3, 4**s
    found: dict[Key, tuple[list[float], float, bool]] = {}
    todo = [(0, 0, 0)]
    while todo:
        lv, sx, sy = todo.pop()
        data = read(tiling["subtrees"]["uri"].format(level=lv, x=sx, y=sy))
        tiles, content, kids = decode_subtree(data, n_tiles, n_kids)
        meta = decode_tile_metadata(data, {"boundingBox": 12, "geometricError": 1})
        row = 0
        for r in range(s):
            first = (4**r - 1) // 3
            for m in range(4**r):
                if tiles[first + m]:
                    dx, dy = (sum(((m >> (2 * i + k)) & 1) << i for i in range(r)) for k in range(2))
                    box = meta["boundingBox"][row].tolist()
                    found[(lv + r, (sx << r) + dx, (sy << r) + dy)] = (box, float(meta["geometricError"][row, 0]), bool(content[first + m]))
                    row += 1
        assert row == len(meta["geometricError"])
        for m in np.nonzero(kids)[0].tolist():
            dx, dy = (sum(((m >> (2 * i + k)) & 1) << i for i in range(s)) for k in range(2))
            todo.append((lv + s, (sx << s) + dx, (sy << s) + dy))
    return found


def _with_a_far_building(src: Path, dst: Path) -> Path:
    """A copy of the footprints ``src`` whose north-easternmost building is moved six times the
    city's extent further north-east: the root's one quadrant holds all the others, in a corner."""
    meta, _, wkb, fields = pyogrio.raw.read(src)
    geoms = shapely.from_wkb(wkb)
    centres = shapely.centroid(geoms)
    xy = np.c_[shapely.get_x(centres), shapely.get_y(centres)]
    far = int(np.argmax(xy.sum(axis=1)))
    shift = 6.0 * (xy.max(axis=0) - xy.min(axis=0))
    geoms[far] = shapely.transform(geoms[far], lambda p: p + shift)
    kinds = set(shapely.get_type_id(geoms).tolist())
    pyogrio.raw.write(
        dst,
        shapely.to_wkb(geoms),
        list(fields),
        meta["fields"],
        crs=meta["crs"],
        geometry_type="MultiPolygon" if 6 in kinds else "Polygon",
        driver="GPKG",
    )
    return dst


@pytest.fixture(scope="module")
def buildings_both_ways(tiny_sources, tmp_path_factory) -> tuple[Path, Path, Path]:
    out = tmp_path_factory.mktemp("implicit-buildings")
    src = _with_a_far_building(tiny_sources.buildings, out / "buildings.gpkg")
    cim.convert("buildings", src, out / "explicit", **OPTIONS)
    cim.convert("buildings", src, out / "implicit", implicit_tiles=0, subtree_levels=SUBTREE_LEVELS, **OPTIONS)
    cim.convert("buildings", src, out / "again", implicit_tiles=0, subtree_levels=SUBTREE_LEVELS, **OPTIONS)
    return out / "explicit", out / "implicit", out / "again"


def _explicit_tiles(node: dict, parent: Key | None, out: dict) -> None:
    """(level, x, y) → (box, error, content uri, parent key) of an explicit buildings tileset."""
    level, x, y = (int(v) for v in Path(node["content"]["uri"]).stem.split("-"))
    out[(level, x, y)] = (node["boundingVolume"]["box"], node["geometricError"], node["content"]["uri"], parent)
    for child in node.get("children", []):
        _explicit_tiles(child, (level, x, y), out)


def test_the_implicit_quadtree_holds_the_explicit_tiles(buildings_both_ways):
    explicit, implicit, _ = buildings_both_ways
    ex = json.loads((explicit / "tileset.json").read_text())
    im = json.loads((implicit / "tileset.json").read_text())
    assert "implicitTiling" not in json.dumps(ex), "below the default threshold the tileset stays explicit"
    assert not (explicit / "subtrees").exists()
    tile = im["root"]
    assert "children" not in tile and tile["refine"] == "REPLACE"
    assert tile["transform"] == ex["root"]["transform"] and tile["boundingVolume"] == ex["root"]["boundingVolume"]
    assert im["geometricError"] == ex["geometricError"] and tile["geometricError"] == ex["root"]["geometricError"]
    semantics = {p["semantic"] for p in im["schema"]["classes"]["tile"]["properties"].values()}
    assert semantics == {"TILE_BOUNDING_BOX", "TILE_GEOMETRIC_ERROR"}

    found = _expand(lambda rel: (implicit / rel).read_bytes(), tile)
    tiles: dict[Key, tuple] = {}
    _explicit_tiles(ex["root"], None, tiles)
    assert len(tiles) > 20 and tile["implicitTiling"]["availableLevels"] == max(k[0] for k in tiles) + 1 > SUBTREE_LEVELS
    # the same contents, byte for byte, boxes and errors
    with_content = {k for k, v in found.items() if v[2]}
    assert with_content == set(tiles)
    written = {p.relative_to(implicit).as_posix() for p in (implicit / "tiles").rglob("*.glb")}
    assert written == {tile["content"]["uri"].format(level=k[0], x=k[1], y=k[2]) for k in with_content}
    for key, (box, error, uri, _) in tiles.items():
        assert found[key][:2] == (box, error), key
        assert (implicit / uri).read_bytes() == (explicit / uri).read_bytes(), uri
    # the skipped levels: tiles without content, with their nearest ancestor's box and error, so a
    # client refines through them when it would refine that ancestor
    empty = [k for k, v in found.items() if not v[2]]
    assert empty, "the tree of this test should skip levels"

    def ancestor_with_content(key: Key) -> Key:
        level, x, y = key
        while True:
            level, x, y = level - 1, x >> 1, y >> 1
            if found[(level, x, y)][2]:
                return level, x, y

    for key in empty:
        assert found[key][:2] == found[ancestor_with_content(key)][:2], key
    for key, (*_, parent) in tiles.items():
        assert (parent is None) == (key == (0, 0, 0))
        if parent is not None:
            assert ancestor_with_content(key) == parent, key
    assert len((implicit / "tileset.json").read_bytes()) < 2000 < len((explicit / "tileset.json").read_bytes())


def test_implicit_buildings_are_deterministic_and_valid(buildings_both_ways, tmp_path):
    _, implicit, again = buildings_both_ways

    def layer_files(root: Path) -> list[Path]:  # the tileset, tiles and subtrees (not the build log)
        return sorted(
            p.relative_to(root) for p in root.rglob("*") if (p.is_file() and p.parts[-2] != root.name) or p.name == "tileset.json"
        )

    files = layer_files(implicit)
    assert any(p.suffix == ".subtree" for p in files) and Path("tileset.json") in files
    assert files == layer_files(again)
    for rel in files:
        assert (implicit / rel).read_bytes() == (again / rel).read_bytes(), rel

    from tests.test_tileset_validation import TOOL, Validator

    if not TOOL.exists():
        pytest.skip(f"the CesiumGS 3d-tiles-validator wrapper is not at {TOOL}")
    verdict = Validator(tmp_path).run("implicit buildings", implicit / "tileset.json")
    assert verdict.errors == 0, verdict.describe()


def test_rebuilding_explicit_over_an_implicit_layer_drops_its_subtrees(buildings_both_ways, tiny_sources):
    """The subtrees are the layer's files: a rebuild that writes the tree explicitly removes them
    (runs last: it rewrites the ``again`` folder)."""
    explicit, _, again = buildings_both_ways
    cim.convert("buildings", again.parent / "buildings.gpkg", again, **OPTIONS)
    assert not [p for p in (again / "subtrees").rglob("*") if p.is_file()]
    assert (again / "tileset.json").read_bytes() == (explicit / "tileset.json").read_bytes()
