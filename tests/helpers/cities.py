"""Comparing two built cities: their visible files byte for byte, the search index by its rows,
city.json without its timings."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def sqlite_rows(path: Path) -> list[str]:
    """A SQLite file as the SQL text of its schema and rows (equal content, equal lists)."""
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def without_seconds(doc: Any) -> Any:
    """A JSON document with every ``seconds`` field (a declared timing) left out."""
    if isinstance(doc, dict):
        return {k: without_seconds(v) for k, v in doc.items() if k != "seconds"}
    if isinstance(doc, list):
        return [without_seconds(v) for v in doc]
    return doc


def visible_files(root: Path) -> dict[str, Path]:
    """The visible files of a built city (relative path → path): hidden files and folders (a
    layer's build log, the city's ``.cim`` history) left out."""
    out = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                p = Path(folder, name)
                out[p.relative_to(root).as_posix()] = p
    return out


def stamps(root: Path) -> dict[str, tuple[int, int]]:
    """The visible files of a built city → (inode, mtime_ns): what a rebuild left alone keeps."""
    out = {}
    for rel, p in visible_files(root).items():
        st = p.stat()
        out[rel] = (st.st_ino, st.st_mtime_ns)
    return out


#: JSON keys that measure the run rather than describe the output (a BIM model's tileset and
#: city.json carry them; tests/test_determinism.py leaves out the same)
TIMING = frozenset({"seconds", "kernel_peak_mb", "kernel_processes"})


def without_timing(doc: Any) -> Any:
    """A JSON document with every :data:`TIMING` field left out."""
    if isinstance(doc, dict):
        return {k: without_timing(v) for k, v in doc.items() if k not in TIMING}
    if isinstance(doc, list):
        return [without_timing(v) for v in doc]
    return doc


def assert_same_city(a: Path, b: Path, only: Iterable[str] | None = None) -> None:
    """Two built cities hold the same files: every layer file equal in bytes (a JSON file but
    for its :data:`TIMING` fields), the search index in rows, ``city.json`` but for its timings
    (and the byte count of a layer whose JSON files differ in timings alone). ``only``: compare
    just these top-level entries (files or layer folders) of both."""
    fa, fb = visible_files(a), visible_files(b)
    if only is not None:
        tops = set(only)
        fa = {rel: p for rel, p in fa.items() if rel.split("/")[0] in tops}
        fb = {rel: p for rel, p in fb.items() if rel.split("/")[0] in tops}
    assert sorted(fa) == sorted(fb)
    resized: set[str] = set()  # layers with JSON files whose timings differ
    for rel in fa:
        if rel == "city.json":
            continue
        if rel.endswith(".sqlite"):
            assert sqlite_rows(fa[rel]) == sqlite_rows(fb[rel]), rel
            continue
        x, y = fa[rel].read_bytes(), fb[rel].read_bytes()
        if x != y and rel.endswith(".json"):
            assert without_timing(json.loads(x)) == without_timing(json.loads(y)), rel
            resized.add(rel.split("/")[0])
        else:
            assert x == y, rel
    if "city.json" in fa:
        docs = [without_timing(json.loads(f["city.json"].read_text())) for f in (fa, fb)]
        for doc in docs:
            for layer in doc["layers"]:
                if layer["id"] in resized:
                    layer.get("stats", {}).pop("bytes", None)
        assert docs[0] == docs[1]
