"""The search index writer: a forked child or a thread writes the same index, and failures surface."""

import sqlite3
import sys

import numpy as np
import pytest

from cim.errors import CimIOError
from cim.searchindex import SearchIndexWriter, SearchRows, search

fork_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forked writer is used on Linux only")


def _rows(layer: str, n: int, offset: float = 0.0, *, bad: bool = False) -> SearchRows:
    lon = 105.7 + offset + np.arange(n) * 1e-4
    lat = np.full(n, 34.58)
    names = np.array([f"{layer} hall {i}" for i in range(n)], dtype=object)
    uses = np.array(["school" if i % 3 == 0 else None for i in range(n)], dtype=object)
    if bad:
        uses[1] = {"not": "bindable"}  # a value SQLite cannot store
    return SearchRows(
        layer,
        np.array([f"{layer}-{i}" for i in range(n)], dtype=object),
        None,
        None,
        lon,
        lat,
        lon - 5e-5,
        lat - 5e-5,
        lon + 5e-5,
        lat + 5e-5,
        np.zeros(n),
        np.full(n, 12.0),
        columns={"name": names, "use": uses, "floors": np.arange(n, dtype=np.int64)},
        types={"name": "STRING", "use": "STRING", "floors": "INT32"},
        title_column="name",
        text_columns=("use",),
    )


def _dump(path) -> list:
    with sqlite3.connect(path) as con:
        return [con.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in ("features", "search_meta")]


@fork_only
def test_forked_and_threaded_writers_write_the_same_index(tmp_path):
    for processes in (True, False):
        with SearchIndexWriter(tmp_path / f"{processes}.sqlite", processes=processes) as w:
            w.add(_rows("bim", 30))
            w.add(_rows("buildings", 500, 0.01))
            assert w.finish() == 530
    assert _dump(tmp_path / "True.sqlite") == _dump(tmp_path / "False.sqlite")
    hits = search(tmp_path / "True.sqlite", "school", limit=1000)
    assert len(hits) == 10 + 167 and {h["layer"] for h in hits} == {"bim", "buildings"}
    assert search(tmp_path / "True.sqlite", "buildings hall 499")[0]["properties"] == {
        "name": "buildings hall 499",
        "use": None,
        "floors": 499,
    }


@fork_only
def test_a_failing_child_is_a_clear_error_and_leaves_no_file(tmp_path):
    target = tmp_path / "search.sqlite"
    with (
        pytest.raises(CimIOError, match="search.sqlite: writing the search index failed: .*bind"),
        SearchIndexWriter(target, processes=True) as w,
    ):
        w.add(_rows("buildings", 5, bad=True))
        w.finish()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("processes", [True, False] if sys.platform.startswith("linux") else [False])
def test_abort_keeps_the_previous_index(tmp_path, processes):
    target = tmp_path / "search.sqlite"
    with SearchIndexWriter(target, processes=processes) as w:
        w.add(_rows("old", 3))
        w.finish()
    before = _dump(target)
    with pytest.raises(RuntimeError), SearchIndexWriter(target, processes=processes) as w:
        w.add(_rows("new", 20000))
        raise RuntimeError("the build failed")
    assert _dump(target) == before and [p.name for p in tmp_path.iterdir()] == ["search.sqlite"]


def test_an_id_with_hyphens_underscores_and_dots_is_found_whole(tmp_path):
    """A whole id such as a CityJSON `GUID_…-CB4F-…` or an IFC GlobalId used to be an FTS5 phrase
    query the index refuses (sqlite3.OperationalError); its parts are prefix terms now."""
    rows = _rows("bim", 4)
    rows.ids[2] = "GUID_816CA7F9-6357-447D-96E3-C74C5E47AABF_2"
    path = tmp_path / "search.sqlite"
    with SearchIndexWriter(path, processes=False) as writer:
        writer.add(rows)
        writer.finish()
    for q in ("GUID_816CA7F9-6357-447D-96E3-C74C5E47AABF_2", "816ca7f9-6357", "bim-2", "v1.2 hall"):
        found = search(path, q)
        assert all(isinstance(r, dict) for r in found), q
    assert [r["id"] for r in search(path, "GUID_816CA7F9-6357-447D-96E3-C74C5E47AABF_2")] == [rows.ids[2]]
    assert rows.ids[2] in [r["id"] for r in search(path, "816ca7f9-6357")]
