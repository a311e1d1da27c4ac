"""TileStore across builds: a tile whose bytes are unchanged is not written again; one replaced
behind the log's back (a build killed between the rename and the log line) is."""

from __future__ import annotations

import os

from cim.store import PREVIOUS_NAME, TileStore


def stamp(path):
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def test_unchanged_bytes_are_left_alone_and_changed_ones_replaced(tmp_path):
    first = TileStore(tmp_path, "k1")
    first.write_many([("tiles/a.glb", b"a" * 10, None), ("tiles/b.glb", b"b" * 10, None)])
    first.finish({"root": 1})
    assert first.rewritten == 3 and first.files == 3
    a, b, index = stamp(tmp_path / "tiles/a.glb"), stamp(tmp_path / "tiles/b.glb"), stamp(tmp_path / "tileset.json")

    second = TileStore(tmp_path, "k2")  # other inputs: every job runs again
    assert (tmp_path / PREVIOUS_NAME).exists()
    sink = second.sink()
    second.write_many([("tiles/a.glb", b"a" * 10, None), ("tiles/b.glb", b"B" * 10, None)])
    second.finish({"root": 1})
    assert second.rewritten == 1 and second.files == 3 and sink.previous
    assert stamp(tmp_path / "tiles/a.glb") == a and stamp(tmp_path / "tileset.json") == index
    assert stamp(tmp_path / "tiles/b.glb") != b and (tmp_path / "tiles/b.glb").read_bytes() == b"B" * 10
    assert not (tmp_path / PREVIOUS_NAME).exists()
    assert set(second.digests()) == {"tiles/a.glb", "tiles/b.glb", "tileset.json"}


def test_a_file_replaced_without_a_log_line_is_written_again(tmp_path):
    first = TileStore(tmp_path, "k1")
    first.write("tiles/a.glb", b"a" * 10)
    first.finish({"root": 1})
    # a build with other inputs replaced the tile and was killed before it logged it
    interrupted = TileStore(tmp_path, "k2")
    interrupted.close()
    tmp = tmp_path / "tiles" / ".a.glb.1.1.tmp"
    tmp.write_bytes(b"z" * 10)  # same size, other bytes
    os.replace(tmp, tmp_path / "tiles/a.glb")
    # back to the first inputs: the tile's bytes are those the log knows, but not the file's
    again = TileStore(tmp_path, "k1")
    again.write("tiles/a.glb", b"a" * 10)
    again.finish({"root": 1})
    assert (tmp_path / "tiles/a.glb").read_bytes() == b"a" * 10
    assert again.rewritten == 1


def test_stale_temporaries_are_cleared_when_a_build_opens_the_folder(tmp_path):
    (tmp_path / "tiles").mkdir()
    (tmp_path / "tiles" / ".x.glb.123.456.tmp").write_bytes(b"torn")
    (tmp_path / ".tileset.json.9.9.tmp").write_bytes(b"torn")
    (tmp_path / ".cim-tmp-abc").mkdir()
    (tmp_path / ".cim-tmp-abc" / "spill.bin").write_bytes(b"spill")
    (tmp_path / "notes.tmp").write_text("not ours: visible")
    TileStore(tmp_path, "k").close()
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == [".cim-build.jsonl", "notes.tmp", "tiles"]


def test_writing_in_place_never_changes_another_link_to_the_file(tmp_path):
    """A first build's torn tile is written again in place, but an object of an old version
    (a hard link to the same inode, see cim.versions) keeps its bytes."""
    from cim.store import write_new_bytes

    tile, kept = tmp_path / "a.glb", tmp_path / "object.glb"
    tile.write_bytes(b"old bytes")
    os.link(tile, kept)
    write_new_bytes(tile, b"new")
    assert tile.read_bytes() == b"new" and kept.read_bytes() == b"old bytes"


def _job(sink, item):
    """A tile job: keep the tile when its inputs are the previous build's, else make it."""
    rel, data, inputs = item
    if sink.reuse(rel, inputs, lambda n: {"bytes": n}) is None:
        sink.write(rel, data, {"bytes": len(data)}, inputs=inputs)
        return "made"
    return "kept"


def _run(store, items):
    from cim.store import journaled

    results = []
    for item in items:
        result, entries = journaled((_job, store.sink()), item)
        store.record(entries)
        results.append(result)
    return results


def test_a_tile_whose_inputs_are_unchanged_is_kept_without_being_made(tmp_path):
    import json

    first = TileStore(tmp_path, "k1")
    assert _run(first, [("tiles/a.glb", b"a" * 10, "in-a"), ("tiles/b.glb", b"b" * 10, "in-b")]) == ["made", "made"]
    first.finish({"root": 1})
    a = stamp(tmp_path / "tiles/a.glb")

    second = TileStore(tmp_path, "k2")  # the layer's inputs changed: b's did, a's did not
    # the data passed for a kept tile is never written: a kept tile is not made at all
    assert _run(second, [("tiles/a.glb", b"never", "in-a"), ("tiles/b.glb", b"B" * 10, "in-b2")]) == ["kept", "made"]
    second.finish({"root": 1})
    assert second.reused == 1 and second.rewritten == 1 and second.files == 3
    assert stamp(tmp_path / "tiles/a.glb") == a and (tmp_path / "tiles/a.glb").read_bytes() == b"a" * 10
    assert second.digests()["tiles/a.glb"] == first.digests()["tiles/a.glb"]
    lines = [json.loads(line) for line in (tmp_path / ".cim-build.jsonl").read_text().splitlines()[1:]]
    assert [(e["file"], e["in"], e["meta"]) for e in lines] == [
        ("tiles/a.glb", "in-a", {"bytes": 10}),
        ("tiles/b.glb", "in-b2", {"bytes": 10}),
    ]


def test_input_hashes_survive_a_killed_rebuild_and_a_replaced_file_is_made_again(tmp_path):
    first = TileStore(tmp_path, "k1")
    _run(first, [("tiles/a.glb", b"a" * 10, "in-a"), ("tiles/b.glb", b"b" * 10, "in-b")])
    first.finish({"root": 1})
    # a rebuild with other inputs is killed before it logs anything; its successor, with yet
    # other inputs, still knows what the published build's tiles were made from
    TileStore(tmp_path, "k2").close()
    # ... but a's file was replaced behind the log's back (a rename before the kill)
    tmp = tmp_path / "tiles" / ".a.glb.1.1.tmp"
    tmp.write_bytes(b"z" * 10)
    os.replace(tmp, tmp_path / "tiles/a.glb")
    third = TileStore(tmp_path, "k3")
    assert _run(third, [("tiles/a.glb", b"a" * 10, "in-a"), ("tiles/b.glb", b"b" * 10, "in-b")]) == ["made", "kept"]
    third.finish({"root": 1})
    assert (tmp_path / "tiles/a.glb").read_bytes() == b"a" * 10 and third.reused == 1
    # a resumed build (the same key) passes over its finished tiles as before
    fourth = TileStore(tmp_path, "k3")
    assert fourth.resumed == 2 and fourth.reused == 0
    fourth.close()
