"""A point-cloud layer that had finished before a city build was interrupted: the resumed build
neither encodes nor logs its tiles again, and gives the same files."""

from __future__ import annotations

import json

import cim
from cim.kernels.frames import LocalFrame
from cim.store import LOG_NAME
from tests.helpers.pointcloud import id_points, write_las

FRAME = LocalFrame(105.7208, 34.5802, 1150.0)


def test_a_finished_layer_built_again_logs_each_tile_once(tmp_path):
    xyz, rgb = id_points(6_000)
    write_las(tmp_path / "a.las", xyz, rgb=rgb)
    out = tmp_path / "points"
    cim.build_layer("pointcloud", [tmp_path / "a.las"], out, frame=FRAME, workers=1, leaf_points=1_000)
    tiles = sorted(p for p in (out / "tiles").iterdir())
    before = {p.name: p.read_bytes() for p in tiles} | {"tileset.json": (out / "tileset.json").read_bytes()}
    assert len(tiles) > 3

    again = cim.build_layer("pointcloud", [tmp_path / "a.las"], out, frame=FRAME, workers=1, leaf_points=1_000)

    lines = (out / LOG_NAME).read_text().splitlines()
    logged = [json.loads(line)["file"] for line in lines[1:]]
    assert sorted(logged) == sorted(f"tiles/{p.name}" for p in tiles)  # each tile once
    assert again.resumed_tiles == len(tiles) and again.count == 6_000
    after = {p.name: p.read_bytes() for p in (out / "tiles").iterdir()} | {"tileset.json": (out / "tileset.json").read_bytes()}
    assert after == before
