"""TileStore: resumes one build key, clears what earlier builds left, counts bytes on disk."""

from __future__ import annotations

import json

from cim.store import LOG_NAME, TileStore


def test_finish_removes_content_of_earlier_builds_only(tmp_path):
    first = TileStore(tmp_path, "key-a")
    first.write("tiles/0/a.glb", b"a" * 10)
    first.write("tiles/1/b.glb", b"b" * 20)
    first.finish({"root": "a"})
    assert first.size_on_disk() == 30 + len(json.dumps({"root": "a"}, separators=(",", ":"))) + 1

    second = TileStore(tmp_path, "key-b")  # another build: nothing of the first is done for it
    assert second.resumed == 0
    second.write("tiles/0/a.glb", b"A" * 5)
    (tmp_path / "notes.txt").write_text("outside the content folder: left alone")
    second.finish({"root": "b"})
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [LOG_NAME, "notes.txt", "tiles/0/a.glb", "tileset.json"]
    assert (tmp_path / "tiles/0/a.glb").read_bytes() == b"A" * 5
    assert json.loads((tmp_path / "tileset.json").read_text()) == {"root": "b"}


def test_same_key_resumes_and_keeps_what_it_finished(tmp_path):
    """An earlier run's finished tiles are this build's: kept by ``finish`` without being written
    again; a tile whose size no longer matches its log is neither done nor kept."""
    first = TileStore(tmp_path, "key")
    first.write("tiles/a.glb", b"a")
    first.write("tiles/b.glb", b"b")
    first.close()  # interrupted before finish
    (tmp_path / "tiles" / "b.glb").write_bytes(b"torn")  # a file whose size no longer matches its log
    mtime = (tmp_path / "tiles" / "a.glb").stat().st_mtime_ns
    again = TileStore(tmp_path, "key")
    assert again.is_done("tiles/a.glb") and not again.is_done("tiles/b.glb") and again.resumed == 1
    sink = again.sink()
    assert sink.is_done("tiles/a.glb") and not sink.is_done("tiles/b.glb")  # what tile jobs are told
    again.finish({})
    assert not (tmp_path / "tiles" / "b.glb").exists()  # neither written by this build nor finished by the earlier run
    assert (tmp_path / "tiles" / "a.glb").read_bytes() == b"a"
    assert (tmp_path / "tiles" / "a.glb").stat().st_mtime_ns == mtime  # kept, not rewritten


def test_a_store_in_an_empty_folder_writes_only_its_own(tmp_path):
    store = TileStore(tmp_path / "new", "key", content=("models",))
    store.write("models/m/tiles/x.glb", b"x" * 7)
    store.finish({})
    assert (tmp_path / "new" / "models/m/tiles/x.glb").read_bytes() == b"x" * 7
    assert store.size_on_disk() == 7 + 3  # "{}\n"; the hidden build log is not counted


def test_index_name_and_content_folders_are_the_stores(tmp_path):
    """``finish`` writes the index the store was opened with, and clears only its content folders."""
    first = TileStore(tmp_path, "key-a", index="layer.json", content=("0", "1"))
    first.write("0/0/0.terrain", b"t" * 4)
    first.write("1/1/0.terrain", b"u" * 4)
    first.finish({"v": 1}, pretty=True)
    assert json.loads((tmp_path / "layer.json").read_text()) == {"v": 1} and not (tmp_path / "tileset.json").exists()
    (tmp_path / "extras").mkdir()
    (tmp_path / "extras" / "keep.bin").write_bytes(b"k")
    second = TileStore(tmp_path, "key-b", index="layer.json", content=("0", "1"))
    second.write("0/0/0.terrain", b"T" * 4)
    second.finish({"v": 2})
    assert not (tmp_path / "1" / "1" / "0.terrain").exists()
    assert (tmp_path / "0" / "0" / "0.terrain").read_bytes() == b"T" * 4 and (tmp_path / "extras" / "keep.bin").exists()


def test_fresh_and_published(tmp_path):
    """A folder holding only hidden files (an earlier log, a temporary file) is fresh; one with a
    visible file is not. A layer is published once its index exists."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / LOG_NAME).write_text('{"key": "old"}\n')
    (tmp_path / "a" / ".x.glb.1.2.tmp").write_bytes(b"torn")
    store = TileStore(tmp_path / "a", "key")
    assert store.fresh and not store.published
    assert not store.sink().atomic  # nothing names the tiles yet: written in place
    store.write("tiles/t.glb", b"t")
    store.finish({})
    assert (tmp_path / "a" / "tileset.json").exists()
    again = TileStore(tmp_path / "a", "other")
    assert not again.fresh and again.published
    assert again.sink().atomic  # the index names the tiles: each replaces its old self atomically
