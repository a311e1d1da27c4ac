"""The city's feature search index: one SQLite file beside ``city.json``.

``search.sqlite`` holds one row per feature (layer, id, title, position, heights, attributes as
JSON), an FTS5 full-text index over its id, title and text attributes, and an R*Tree over
longitude/latitude boxes. The build writes it (atomically, after the layers); the server only
reads it, so any number of requests can share it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cim.errors import CimInputError
from cim.store import atomic_path

INDEX_NAME = "search.sqlite"


@dataclass
class SearchRows:
    """A layer's features for the index; arrays of one length."""

    layer: str
    ids: np.ndarray
    titles: np.ndarray
    texts: np.ndarray
    lon: np.ndarray  # (n,) centre
    lat: np.ndarray
    west: np.ndarray
    south: np.ndarray
    east: np.ndarray
    north: np.ndarray
    base: np.ndarray
    top: np.ndarray
    properties: list[dict]


def write_search_index(path: Path, layers: list[SearchRows]) -> int:
    """Write the index for ``layers``; returns the number of features indexed."""
    n = 0
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.executescript(
                """
                CREATE TABLE features (rowid INTEGER PRIMARY KEY, layer TEXT, fid TEXT, title TEXT,
                    lon REAL, lat REAL, base REAL, top REAL, properties TEXT);
                CREATE INDEX features_fid ON features (fid);
                CREATE VIRTUAL TABLE features_text USING fts5(fid, title, body, content='features_body', tokenize='unicode61');
                CREATE TABLE features_body (rowid INTEGER PRIMARY KEY, fid TEXT, title TEXT, body TEXT);
                CREATE VIRTUAL TABLE features_box USING rtree(rowid, west, east, south, north);
                """
            )
            for rows in layers:
                count = len(rows.ids)
                start = n + 1
                rowids = range(start, start + count)
                con.executemany(
                    "INSERT INTO features VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    zip(rowids, [rows.layer] * count, map(str, rows.ids), map(str, rows.titles), rows.lon.tolist(), rows.lat.tolist(),
                        rows.base.tolist(), rows.top.tolist(), (json.dumps(p, ensure_ascii=False, default=_plain) for p in rows.properties)),
                )
                con.executemany("INSERT INTO features_body VALUES (?, ?, ?, ?)", zip(rowids, map(str, rows.ids), map(str, rows.titles), map(str, rows.texts)))
                con.executemany("INSERT INTO features_box VALUES (?, ?, ?, ?, ?)", zip(rowids, rows.west.tolist(), rows.east.tolist(), rows.south.tolist(), rows.north.tolist()))
                n += count
            con.execute("INSERT INTO features_text(features_text) VALUES ('rebuild')")
            con.commit()
        finally:
            con.close()
    return n


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _fts_query(text: str) -> str:
    """A safe FTS5 query: every word a quoted prefix term, all of them required."""
    words = [w for w in "".join(c if c.isalnum() or c in "-_." else " " for c in text).split() if w]
    return " AND ".join('"' + w.replace('"', "") + '"*' for w in words)


def search(path: Path, text: str | None = None, bbox: tuple[float, float, float, float] | None = None, limit: int = 20) -> list[dict]:
    """Features matching words of ``text`` (prefix match on id, title and text attributes)
    and/or lying in ``bbox`` (west, south, east, north degrees), best matches first.

    Raises
    ------
    CimInputError
        Neither ``text`` nor ``bbox`` given, or a malformed box.
    """
    if not text and bbox is None:
        raise CimInputError("search needs q= (words) or bbox=west,south,east,north")
    limit = max(1, min(int(limit), 200))
    cols = "f.layer, f.fid, f.title, f.lon, f.lat, f.base, f.top, f.properties"
    box_sql = "f.rowid IN (SELECT rowid FROM features_box WHERE east >= ? AND west <= ? AND north >= ? AND south <= ?)"
    box_args: list[float] = []
    if bbox is not None:
        west, south, east, north = bbox
        if not (west <= east and south <= north):
            raise CimInputError(f"bbox {bbox}: west must not exceed east, nor south north")
        box_args = [west, east, south, north]
    if text:
        q = _fts_query(text)
        if not q:
            return []
        sql = f"SELECT {cols} FROM features_text t JOIN features f ON f.rowid = t.rowid WHERE features_text MATCH ?"
        args: list = [q]
        if box_args:
            sql += f" AND {box_sql}"
            args += box_args
        sql += " ORDER BY t.rank LIMIT ?"
    else:
        sql = f"SELECT {cols} FROM features f WHERE {box_sql} LIMIT ?"
        args = list(box_args)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute(sql, [*args, limit]).fetchall()
    finally:
        con.close()
    return [
        {"layer": r[0], "id": r[1], "title": r[2], "lon": r[3], "lat": r[4], "base": r[5], "top": r[6], "properties": json.loads(r[7])}
        for r in rows
    ]
