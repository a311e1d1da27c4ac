"""The feature store the query service reads: the city's ``search.sqlite``, held in memory as arrays.

The build writes one row per feature (layer, id, title, box, heights, attributes as JSON), its
footprint (WKB in degrees), a point inside it and its area in m², and each layer's attribute
types (:mod:`cim.searchindex`). :func:`open_store` loads them once per file version into numpy
columns, shapely geometries and an STRtree, so that a query is vectorised predicates over arrays;
text goes to the file's trigram index. The file is opened read-only; nothing is written.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from cim.errors import CimIOError, CimNotFound
from cim.searchindex import INDEX_NAME

__all__ = ["FeatureStore", "open_store", "connect_readonly"]


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to an index file (``mode=ro``: a server never writes it)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


@dataclass
class FeatureStore:
    """Every feature of a built city, as columns of one length ``n`` (row ``i`` is SQLite rowid
    ``rowids[i]``).

    Attributes
    ----------
    path : the ``search.sqlite`` file
    rowids : (n,) int64
    layer, fid, title : (n,) object arrays of str
    lon, lat, base, top : (n,) float64, centre (degrees) and heights (m)
    anchor : (n, 2) float64, a point inside the footprint (the centre when there is none)
    area : (n,) float64, footprint area in m² (NaN without a footprint)
    geoms : (n,) shapely geometries in degrees: the footprint, else the feature's box
    has_footprint : (n,) bool
    schema : layer → attribute → ``"string" | "number" | "integer" | "boolean"``
    columns : attribute → (n,) array: float64 (NaN where missing) for numbers and booleans
        (1/0), object (None where missing) for strings
    typed : attribute → (n,) array for conditions: float64 as in ``columns``, strings as a
        numpy ``str`` array ('' where missing)
    known : attribute → (n,) bool, where the attribute has a value
    haystack : (n,) object array of str, each feature's id, title and text attributes,
        lower-cased (what text search matches words in)
    wide_utf8 : (n,) bytes array, only the words of the haystack that are not plain ASCII
        (Chinese names and addresses): a word with a non-ASCII character can only occur inside
        one of them, and this is a third of the bytes to scan
    trigram_docs : trigram → how many features hold it (the trigram index's vocabulary)
    haystack_utf8, title_utf8, fid_utf8 : (n,) bytes arrays (``S`` dtype) of the lower-cased
        haystack, title and id in UTF-8, for vectorised substring tests (``numpy.strings``;
        UTF-8 is self-synchronising, so a byte match is a character match)
    """

    path: Path
    rowids: np.ndarray
    layer: np.ndarray
    fid: np.ndarray
    title: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    base: np.ndarray
    top: np.ndarray
    anchor: np.ndarray
    area: np.ndarray
    geoms: np.ndarray
    has_footprint: np.ndarray
    schema: dict[str, dict[str, str]]
    columns: dict[str, np.ndarray]
    typed: dict[str, np.ndarray]
    known: dict[str, np.ndarray]
    haystack: np.ndarray
    trigram_docs: dict[str, int]
    haystack_utf8: np.ndarray
    wide_utf8: np.ndarray
    title_utf8: np.ndarray
    fid_utf8: np.ndarray
    tree: shapely.STRtree = field(repr=False)
    _by_key: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def __len__(self) -> int:
        return len(self.rowids)

    @property
    def attribute_types(self) -> dict[str, str]:
        """Every attribute of every layer with one type (a name typed differently by two
        layers is a string)."""
        out: dict[str, str] = {}
        for types in self.schema.values():
            for name, kind in types.items():
                seen = out.get(name)
                if seen is None or seen == kind:
                    out[name] = kind
                elif {seen, kind} <= {"integer", "number"}:
                    out[name] = "number"
                else:
                    out[name] = "string"
        return out

    def connection(self) -> sqlite3.Connection:
        """This thread's read-only connection to the file."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = connect_readonly(self.path)
            self._local.con = con
        return con

    def index_of(self, layer: str, fid: str) -> int:
        """The row of feature ``fid`` of ``layer``.

        Raises
        ------
        CimNotFound
            No such feature.
        """
        if not self._by_key:
            self._by_key = {(str(a), str(b)): i for i, (a, b) in enumerate(zip(self.layer.tolist(), self.fid.tolist()))}
        i = self._by_key.get((layer, fid))
        if i is None:
            raise CimNotFound(f"no feature {fid!r} in layer {layer!r}")
        return i

    def properties(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """The attributes of ``rows`` (as the build stored them), in their order."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return []
        con = self.connection()
        wanted = self.rowids[rows].tolist()
        found: dict[int, str] = {}
        for i in range(0, len(wanted), 900):  # SQLite's bound-parameter limit
            chunk = wanted[i : i + 900]
            marks = ", ".join("?" * len(chunk))
            found.update(con.execute(f"SELECT rowid, properties FROM features WHERE rowid IN ({marks})", chunk).fetchall())
        return [json.loads(found[r]) for r in wanted]


_CACHE: dict[Path, tuple[tuple[int, int], FeatureStore]] = {}
_LOCK = threading.Lock()


def open_store(city_dir: Path) -> FeatureStore:
    """The feature store of the city built in ``city_dir`` (loaded once per version of the file).

    Raises
    ------
    CimNotFound
        The city has no ``search.sqlite``.
    CimIOError
        The file is not a feature store this version can read (built before footprints were
        stored: rebuild the city).
    """
    path = Path(city_dir) / INDEX_NAME
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CimNotFound(f"this city has no feature store ({INDEX_NAME}): build it with cim build") from None
    version = (st.st_mtime_ns, st.st_size)
    with _LOCK:
        cached = _CACHE.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        store = _load(path)
        _CACHE[path] = (version, store)
        return store


def _load(path: Path) -> FeatureStore:
    con = connect_readonly(path)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"features", "footprints", "layer_schema"} <= tables:
            raise CimIOError(f"{INDEX_NAME} was built by an older cim, without footprints or a schema: rebuild the city with cim build")
        rows = con.execute(
            "SELECT f.rowid, f.layer, f.fid, coalesce(f.title, f.fid), f.lon, f.lat, f.base, f.top, f.west, f.south, f.east, f.north, "
            "p.anchor_lon, p.anchor_lat, p.area_m2, p.wkb, f.fid || ' ' || coalesce(f.title, '') || ' ' || coalesce(f.body, '') FROM features f LEFT JOIN footprints p ON p.rowid = f.rowid ORDER BY f.rowid"
        ).fetchall()
        schema: dict[str, dict[str, str]] = {}
        for layer, name, kind in con.execute("SELECT layer, name, type FROM layer_schema ORDER BY layer, rowid"):
            schema.setdefault(layer, {})[name] = kind
        n = len(rows)
        cols = list(zip(*rows)) if n else [()] * 17
        num = np.array([cols[i] for i in range(4, 15)], dtype=np.float64).reshape(11, n) if n else np.zeros((11, 0))
        lon, lat, base, top, west, south, east, north, alon, alat, area = num
        wkb = np.array(cols[15], dtype=object)
        has = np.array([w is not None for w in cols[15]], dtype=bool)
        geoms = np.empty(n, dtype=object)
        geoms[has] = shapely.from_wkb(wkb[has])
        geoms[~has] = shapely.box(west[~has], south[~has], east[~has], north[~has])
        hay = np.array([h.lower() for h in cols[16]], dtype=object)
        anchor = np.column_stack([np.where(has, alon, lon), np.where(has, alat, lat)])
        store = FeatureStore(
            path=path,
            rowids=np.array(cols[0], dtype=np.int64),
            layer=np.array(cols[1], dtype=object),
            fid=np.array(cols[2], dtype=object),
            title=np.array(cols[3], dtype=object),
            lon=lon,
            lat=lat,
            base=base,
            top=top,
            anchor=anchor,
            area=area,
            geoms=geoms,
            has_footprint=has,
            schema=schema,
            columns={},
            typed={},
            known={},
            haystack=hay,
            trigram_docs=_vocabulary(con),
            haystack_utf8=_utf8(hay),
            wide_utf8=_utf8([" ".join(w for w in _WORDS.findall(h) if not w.isascii()) for h in hay]),
            title_utf8=_utf8([str(t).lower() for t in cols[3]]),
            fid_utf8=_utf8([str(t).lower() for t in cols[2]]),
            tree=shapely.STRtree(geoms),
        )
        store.columns = _columns(con, store)
        for name, column in store.columns.items():
            if column.dtype == object:
                values = column.tolist()
                store.known[name] = np.array([v is not None for v in values], dtype=bool)
                store.typed[name] = np.array(["" if v is None else v for v in values], dtype=np.str_)
            else:
                store.known[name] = ~np.isnan(column)
                store.typed[name] = column
        return store
    except sqlite3.DatabaseError as exc:
        raise CimIOError(f"cannot read the feature store {INDEX_NAME}: {exc}") from None
    finally:
        con.close()


_WORDS = re.compile(r"[^\W_]+")


def _vocabulary(con: sqlite3.Connection) -> dict[str, int]:
    """Each trigram of the text index and the number of features holding it (``fts5vocab``,
    read once: looking terms up in it scans the whole vocabulary each time)."""
    con.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, 'features_text', 'row')")
    try:
        return dict(con.execute("SELECT term, doc FROM temp.vocab").fetchall())
    finally:
        con.execute("DROP TABLE temp.vocab")


def _utf8(texts: Any) -> np.ndarray:
    return np.array([t.encode("utf-8") for t in texts], dtype=np.bytes_) if len(texts) else np.zeros(0, dtype="S1")


def _columns(con: sqlite3.Connection, store: FeatureStore) -> dict[str, np.ndarray]:
    """Each attribute as one array over every feature: from the whole columns the build stored
    (``layer_columns``), else (layers whose features carry different keys, such as BIM) from
    each row's JSON, parsed once."""
    n = len(store)
    position = np.full(int(store.rowids.max()) + 1 if n else 1, -1, dtype=np.int64)
    position[store.rowids] = np.arange(n)
    types = store.attribute_types
    out: dict[str, np.ndarray] = {
        name: np.full(n, None, dtype=object) if kind == "string" else np.full(n, np.nan) for name, kind in types.items()
    }
    stored: set[str] = set()
    has_columns = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'layer_columns'").fetchone()
    blobs = con.execute("SELECT layer, name, first_rowid, count, data FROM layer_columns") if has_columns else []
    for layer, name, first, count, data in blobs:
        stored.add(layer)
        column = out.get(name)
        if column is None:
            continue
        at = position[first : first + count]
        if column.dtype == object:
            values = json.loads(bytes(data).decode("utf-8"))
            column[at] = [None if v is None else str(v) for v in values] if types[name] == "string" else values
        else:
            column[at] = np.frombuffer(data, dtype="<f8", count=count)
    rest = [layer for layer in store.schema if layer not in stored]
    if rest:
        marks = ", ".join("?" * len(rest))
        loads = json.loads
        for rowid, text in con.execute(f"SELECT rowid, properties FROM features WHERE layer IN ({marks})", rest):
            i = int(position[rowid])
            for key, value in loads(text).items():
                column = out.get(key)
                if column is None or value is None:
                    continue
                if column.dtype == object:
                    column[i] = str(value)
                elif not isinstance(value, str):
                    column[i] = float(value)
    return out
