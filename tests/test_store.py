"""TileStore: resumes one build key, clears what earlier builds left, counts bytes on disk."""

from __future__ import annotations

import json

from cim.store import LOG_NAME, TileStore


def test_finish_removes_content_of_earlier_builds_only(tmp_path):
    first = TileStore(tmp_path, "key-a")
    first.write("tiles/0/a.glb", b"a" * 10)
    first.write("tiles/1/b.glb", b"b" * 20)
    first.finish("tileset.json", {"root": "a"})
    assert first.size_on_disk() == 30 + len(json.dumps({"root": "a"}, separators=(",", ":"))) + 1

    second = TileStore(tmp_path, "key-b")  # another build: nothing of the first is done for it
    assert second.resumed == 0
    second.write("tiles/0/a.glb", b"A" * 5)
    (tmp_path / "notes.txt").write_text("outside the content folder: left alone")
    second.finish("tileset.json", {"root": "b"})
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [LOG_NAME, "notes.txt", "tiles/0/a.glb", "tileset.json"]
    assert (tmp_path / "tiles/0/a.glb").read_bytes() == b"A" * 5


def test_same_key_resumes_and_keeps_what_it_kept(tmp_path):
    first = TileStore(tmp_path, "key")
    first.write("tiles/a.glb", b"a")
    first.write("tiles/b.glb", b"b")
    first.close()  # interrupted before finish
    (tmp_path / "tiles" / "b.glb").write_bytes(b"torn")  # a file whose size no longer matches its log
    again = TileStore(tmp_path, "key")
    assert again.is_done("tiles/a.glb") and not again.is_done("tiles/b.glb") and again.resumed == 1
    again.keep("tiles/a.glb")
    again.finish("tileset.json", {})
    assert not (tmp_path / "tiles" / "b.glb").exists()  # neither written nor kept by this build
    assert (tmp_path / "tiles" / "a.glb").read_bytes() == b"a"


def test_a_store_in_an_empty_folder_writes_only_its_own(tmp_path):
    store = TileStore(tmp_path / "new", "key")
    store.write("models/m/tiles/x.glb", b"x" * 7)
    store.finish("tileset.json", {}, content_dir="models")
    assert (tmp_path / "new" / "models/m/tiles/x.glb").read_bytes() == b"x" * 7
    assert store.size_on_disk() == 7 + 3  # "{}\n"; the hidden build log is not counted


def test_fresh_and_unpublished(tmp_path):
    """A folder holding only hidden files (an earlier log, a temporary file) is fresh; one with a
    visible file is not. A layer is unpublished until its index exists."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / LOG_NAME).write_text('{"key": "old"}\n')
    (tmp_path / "a" / ".x.glb.1.2.tmp").write_bytes(b"torn")
    store = TileStore(tmp_path / "a", "key")
    assert store.fresh and store.unpublished("tileset.json")
    store.write("tiles/t.glb", b"t")
    store.finish("tileset.json", {})
    assert not store.unpublished("tileset.json")
    again = TileStore(tmp_path / "a", "other")
    assert not again.fresh and not again.unpublished("tileset.json")
