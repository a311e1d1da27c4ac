"""The city's feature search index: one SQLite file beside ``city.json``.

``search.sqlite`` holds one row per feature (layer, id, title, centre, lon/lat box, heights,
attributes as JSON, the text to search), an FTS5 full-text index over its id, title and text
(``detail=column``: queries are conjunctions of prefix terms ranked by bm25, so word positions
are not kept), and a B-tree on the centre longitude for box queries. The build writes it
(atomically, while the layers build); the server only reads it, so any number of requests can
share it.

Why not SQLite's R*Tree: it inserts one row at a time, whatever the order, while the longitude
index builds in a sort. A box query scans the features whose centre lies within the box's
longitudes widened by the widest feature (kept in ``search_meta``), then filters by the box.
(Measured: ``benchmarks/README.md``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import tempfile
import warnings
from concurrent.futures import Future, ThreadPoolExecutor  # (typing: the engines make the thread)
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cim.engines import fork_allowed, helper_executor
from cim.errors import CimInputError, CimIOError

__all__ = ["INDEX_NAME", "TEXT_SQL", "SearchRows", "write_search_index", "SearchIndexWriter", "search", "text_words", "trigram_query"]

INDEX_NAME = "search.sqlite"


@dataclass
class SearchRows:
    """A layer's features for the index; arrays of one length.

    Attributes come either as ``properties`` (one dict per feature: models whose features carry
    different keys, such as BIM elements) or as ``columns`` (name → array, typed by ``types``:
    the same attributes for every feature, such as building footprints). Columns never become
    Python dicts: SQLite's ``json_object`` writes each row's JSON, in C. With columns, ``titles``
    may be left ``None`` (then the ``title_column`` value, else the id) and ``texts`` ``None``
    (then the ``text_columns``).
    """

    layer: str
    ids: np.ndarray
    titles: np.ndarray | None
    texts: np.ndarray | None
    lon: np.ndarray  # (n,) centre
    lat: np.ndarray
    west: np.ndarray
    south: np.ndarray
    east: np.ndarray
    north: np.ndarray
    base: np.ndarray
    top: np.ndarray
    properties: list[dict] | None = None
    columns: dict[str, np.ndarray] | None = None
    types: dict[str, str] | None = None
    title_column: str | None = None
    text_columns: tuple[str, ...] = ()
    #: footprints in lon/lat degrees as ragged arrays (:func:`cim.sources.footprints.footprint_rings`
    #: layout): ``(xy (k, 2), ring_offsets, polygon_offsets, polygon_feature)``; the writer makes
    #: their WKB and a point inside each (the fly-to anchor) off the build's critical path
    rings: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    #: (n,) footprint areas in square metres (in the layer's projected CRS)
    areas: np.ndarray | None = None
    #: columns the build derived (a building's lidar statistics): stored whole and queryable,
    #: but not among the feature's own attributes (its properties JSON)
    derived: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.properties is None) == (self.columns is None):
            raise ValueError("SearchRows needs either properties or columns")
        if self.columns is None and (self.titles is None or self.texts is None):
            raise ValueError("SearchRows with properties needs titles and texts")


def write_search_index(path: Path, layers: list[SearchRows]) -> int:
    """Write the index for ``layers``; returns the number of features indexed.

    The caller waits for it, so nothing runs beside it: no child process (a fork would only add
    to a small BIM model's conversion)."""
    with SearchIndexWriter(path, processes=False) as writer:
        for rows in layers:
            writer.add(rows)
        return writer.finish()


_SCHEMA = """
CREATE TABLE features (rowid INTEGER PRIMARY KEY, layer TEXT, fid TEXT, title TEXT,
    lon REAL, lat REAL, base REAL, top REAL, properties TEXT, west REAL, south REAL, east REAL, north REAL, body TEXT);
CREATE INDEX features_fid ON features (fid);
CREATE INDEX features_lon ON features (lon);
CREATE VIRTUAL TABLE features_text USING fts5(fid, title, body, content='features', detail='column', tokenize='trigram');
CREATE TABLE search_meta (key TEXT PRIMARY KEY, value);
CREATE TABLE footprints (rowid INTEGER PRIMARY KEY, anchor_lon REAL, anchor_lat REAL, area_m2 REAL, wkb BLOB);
CREATE TABLE layer_schema (layer TEXT, name TEXT, type TEXT, PRIMARY KEY (layer, name));
CREATE TABLE layer_columns (layer TEXT, name TEXT, first_rowid INTEGER, count INTEGER, data BLOB, PRIMARY KEY (layer, name, first_rowid));
"""


class SearchIndexWriter:
    """Writes ``search.sqlite`` beside the build, while the layers are still being built.

    A layer hands its rows over with :meth:`add` as soon as it has them (the buildings layer
    does before it encodes its tiles) and goes on. :meth:`finish` waits for the rows, then
    renames the file into place (atomic); leaving the ``with`` block on an error removes the
    temporary file instead.

    Where forking is allowed (:func:`cim.engines.fork_allowed`: the caller opted in, as the ``cim``
    command does), each :meth:`add` forks a child process that inherits the rows (no copy, no
    pickling) and writes them while the parent tiles: staging rows through ``executemany`` holds
    the GIL, which on a thread slows the tile encoding beside it by as much. Children write one
    after the other (each waits for the previous one). Elsewhere, or with ``processes=False``, a
    helper thread writes them (SQLite's own work then still runs without the GIL); it holds no
    lock a forked child would need, so the BIM layer's geometry process may still fork.
    """

    def __init__(self, path: str | Path, *, processes: bool | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._fork = fork_allowed() if processes is None else bool(processes)
        self._child: tuple[int, int] | None = None  # (pid, read end of its error pipe)
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: list[Future] = []
        self._added: list[SearchRows] = []
        self._count = 0
        self._half_width = 0.0
        self._con: sqlite3.Connection | None = None
        if self._fork:
            _create(self._tmp).close()
        else:
            self._pool = helper_executor(1, "search", fork_safe=True)
            self._jobs.append(self._pool.submit(self._open))

    def _open(self) -> None:
        self._con = _create(self._tmp, check_same_thread=False)

    def add(self, rows: SearchRows, *, wait: bool = False) -> None:
        """Queue one layer's rows (returns at once, or once the previous layer's are written).

        ``wait``: nothing is left to run beside the writing, so write them now in this process
        (a child process or a thread would only add its start-up).
        """
        start = self._count + 1
        self._count += len(rows.ids)
        self._added.append(rows)
        if len(rows.ids):
            self._half_width = max(self._half_width, float(np.max(rows.east - rows.west)) / 2.0)
        if not self._fork:
            assert self._pool is not None
            job = self._pool.submit(self._insert, rows, start)
            self._jobs.append(job)
            if wait:
                job.result()
            return
        self._wait_child()
        if wait:
            con = _connect(self._tmp)
            try:
                _insert_rows(con, rows, start)
                con.commit()
            finally:
                con.close()
            return
        self._child = _fork_writer(self._tmp, rows, start)

    def has(self, rows: SearchRows) -> bool:
        """Whether these rows were already added."""
        return any(r is rows for r in self._added)

    def _insert(self, rows: SearchRows, start: int) -> None:
        assert self._con is not None
        _insert_rows(self._con, rows, start)

    def _wait_child(self) -> None:
        if self._child is None:
            return
        pid, err = self._child
        self._child = None
        _, status = os.waitpid(pid, 0)
        with os.fdopen(err, "rb") as f:
            message = f.read().decode("utf-8", "replace")
        if os.waitstatus_to_exitcode(status) != 0:
            raise CimIOError(f"{self.path}: writing the search index failed: {message or f'writer exit status {status}'}")

    def finish(self) -> int:
        """Wait for every queued layer, then put the index in place; returns the feature count."""
        if self._fork:
            self._wait_child()
            self._con = _connect(self._tmp)
        for job in self._jobs:
            job.result()
        assert self._con is not None
        self._con.execute("INSERT INTO search_meta VALUES ('half_width', ?)", (self._half_width,))
        self._con.commit()
        self._con.close()
        self._con = None
        if self._pool is not None:
            self._pool.shutdown()
        # mkstemp made it 0600: a static server running as another user must read the index too
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        return self._count

    def abort(self) -> None:
        """Drop the index being written (the previous ``search.sqlite``, if any, stays)."""
        if self._child is not None:
            pid, err = self._child
            self._child = None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(err)
        for job in self._jobs:
            job.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._con is not None:
            self._con.close()
            self._con = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self) -> SearchIndexWriter:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None or self._con is not None or self._tmp.exists():
            self.abort()


def _connect(path: Path, **kwargs) -> sqlite3.Connection:
    """A connection for writing the temporary index: no journal and no fsync (the file is
    renamed into place only when complete, as tiles are, so a sync at commit would protect
    nothing), staging in memory."""
    con = sqlite3.connect(path, **kwargs)
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA temp_store = MEMORY")
    con.execute("PRAGMA cache_size = -262144")  # up to 256 MB of pages, as the rows need
    return con


def _create(path: Path, **kwargs) -> sqlite3.Connection:
    """A new index file with its tables."""
    con = _connect(path, **kwargs)
    con.executescript(_SCHEMA)
    return con


def _insert_rows(con: sqlite3.Connection, rows: SearchRows, start: int) -> None:
    _insert_layer(con, rows, start)
    _insert_footprints(con, rows, start)
    _insert_columns(con, rows, start)
    con.executemany("INSERT OR REPLACE INTO layer_schema VALUES (?, ?, ?)", [(rows.layer, k, v) for k, v in _schema_of(rows).items()])
    con.execute(
        "INSERT INTO features_text (rowid, fid, title, body) SELECT rowid, fid, title, body FROM features WHERE rowid >= ?", (start,)
    )


def _fork_writer(path: Path, rows: SearchRows, start: int) -> tuple[int, int]:
    """Fork a child that appends ``rows`` to the index at ``path``; returns (pid, error pipe).

    The child touches only SQLite, numpy and the inherited rows, and leaves through
    ``os._exit`` (no atexit handlers, no flushing of the parent's buffers); a failure comes back
    as text on the pipe."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns when a process with threads forks (GDAL's pool, say); the child
        # uses none of their locks
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (its effect is tested)
        code = 1
        try:
            os.close(read)
            con = _connect(path)
            _insert_rows(con, rows, start)
            con.commit()
            con.close()
            code = 0
        except BaseException as exc:
            with contextlib.suppress(Exception):
                os.write(write, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:4000])
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


def _insert_layer(con: sqlite3.Connection, rows: SearchRows, start: int) -> None:
    """Stage one layer's rows in a temporary table, then fill the index tables from it in SQL."""
    count = len(rows.ids)
    fixed = [
        range(start, start + count),
        map(str, rows.ids),
        rows.lon.tolist(),
        rows.lat.tolist(),
        rows.base.tolist(),
        rows.top.tolist(),
        rows.west.tolist(),
        rows.south.tolist(),
        rows.east.tolist(),
        rows.north.tolist(),
    ]
    extra: list = []
    names: list[str] = []
    if rows.titles is not None:
        extra.append(map(str, rows.titles))
        names.append("title")
    if rows.texts is not None:
        extra.append(map(str, rows.texts))
        names.append("body")
    if rows.properties is not None:
        extra.append(json.dumps(p, ensure_ascii=False, default=_plain) for p in rows.properties)
        names.append("props")
    columns = rows.columns or {}
    keys = list(columns)
    types = rows.types or {}
    for i, key in enumerate(keys):
        extra.append(_sql_values(columns[key], types.get(key, "STRING")))
        names.append(f"c{i}")
    con.execute("DROP TABLE IF EXISTS temp.staging")
    con.execute(
        "CREATE TEMP TABLE staging (rowid INTEGER PRIMARY KEY, fid, lon, lat, base, top, west, south, east, north"
        + "".join(f", {c}" for c in names)
        + ")"
    )
    con.executemany(f"INSERT INTO staging VALUES ({', '.join('?' * (10 + len(names)))})", zip(*fixed, *extra))

    col = {k: f"c{i}" for i, k in enumerate(keys)}
    if rows.titles is not None:
        title = "title"
    elif rows.title_column in col:
        title = f"coalesce(CAST({col[rows.title_column]} AS TEXT), fid)"
    else:
        title = "fid"
    if rows.texts is not None:
        body = "body"
    else:
        body = " || ' ' || ".join(f"coalesce({col[k]}, '')" for k in rows.text_columns if k in col) or "''"
    args: list = []
    if rows.properties is not None:
        props = "props"
    else:
        parts = []
        for key in keys:
            if key in rows.derived:
                continue
            parts.append(f"?, {_json_expr(col[key], types.get(key, 'STRING'))}")
            args.append(key)
        props = f"json_object({', '.join(parts)})"
    con.execute(
        f"INSERT INTO features SELECT rowid, ?, fid, {title}, lon, lat, base, top, {props}, west, south, east, north, {body} FROM staging",
        [rows.layer, *args],
    )
    con.execute("DROP TABLE temp.staging")


def _insert_footprints(con: sqlite3.Connection, rows: SearchRows, start: int) -> None:
    """Each footprint's WKB (lon/lat), a point inside it and its area in m²."""
    if rows.rings is None:
        return
    import shapely

    xy, ring_offsets, polygon_offsets, polygon_feature = rows.rings
    n = len(rows.ids)
    geom_offsets = np.searchsorted(polygon_feature, np.arange(n + 1)).astype(np.int64)
    geoms = shapely.from_ragged_array(shapely.GeometryType.MULTIPOLYGON, xy, (ring_offsets, polygon_offsets, geom_offsets))
    single = shapely.get_num_geometries(geoms) == 1
    geoms[single] = shapely.get_geometry(geoms[single], 0)  # a one-part footprint is a Polygon
    # point_on_surface: inside an L-shaped or courtyard footprint, where the centre is not
    anchors = shapely.get_coordinates(shapely.point_on_surface(geoms))
    areas = rows.areas if rows.areas is not None else np.full(n, np.nan)
    con.executemany(
        "INSERT INTO footprints VALUES (?, ?, ?, ?, ?)",
        zip(range(start, start + n), anchors[:, 0].tolist(), anchors[:, 1].tolist(), areas.tolist(), shapely.to_wkb(geoms).tolist()),
    )


def _insert_columns(con: sqlite3.Connection, rows: SearchRows, start: int) -> None:
    """A layer's attribute columns whole, for the query service to load without parsing each
    row's JSON: numbers as little-endian float64 (NaN: missing; booleans 1/0), strings as one
    JSON list (null: missing)."""
    if rows.columns is None:
        return
    types = rows.types or {}
    n = len(rows.ids)
    out = []
    for name, values in rows.columns.items():
        if types.get(name, "STRING") == "STRING":
            data = json.dumps(_sql_values(values, "STRING"), ensure_ascii=False, default=_plain).encode("utf-8")
        else:
            column = np.array([np.nan if v is None else v for v in values.tolist()], dtype="<f8") if values.dtype == object else values
            data = np.asarray(column, dtype="<f8").tobytes()
        out.append((rows.layer, name, start, n, data))
    con.executemany("INSERT INTO layer_columns VALUES (?, ?, ?, ?, ?)", out)


#: the query types of metadata types
_QUERY_TYPES = {"STRING": "string", "BOOLEAN": "boolean"}


def _schema_of(rows: SearchRows) -> dict[str, str]:
    """Queryable attributes of a layer and their types (string, number, integer, boolean)."""
    if rows.types is not None:
        return {k: _QUERY_TYPES.get(v, "integer" if v.startswith(("INT", "UINT")) else "number") for k, v in rows.types.items()}
    kinds: dict[str, set[str]] = {}
    for p in rows.properties or ():
        for k, v in p.items():
            if v is None:
                continue
            kind = (
                "boolean"
                if isinstance(v, (bool, np.bool_))
                else "integer"
                if isinstance(v, (int, np.integer))
                else "number"
                if isinstance(v, (float, np.floating))
                else "string"
            )
            kinds.setdefault(k, set()).add(kind)
    out = {}
    for k in sorted(kinds):
        found = kinds[k]
        out[k] = found.pop() if len(found) == 1 else "number" if found <= {"integer", "number"} else "string"
    return out


def _sql_values(values: np.ndarray, kind: str) -> list:
    """One attribute column as SQLite values (NaN binds as NULL)."""
    if kind == "STRING":
        return [None if v is None else str(v) for v in values.tolist()] if values.dtype != object else values.tolist()
    return np.asarray(values).tolist()


def _json_expr(column: str, kind: str) -> str:
    """SQL giving a staged column's JSON value with its metadata type."""
    if kind == "BOOLEAN":
        return f"CASE WHEN {column} IS NULL THEN NULL WHEN {column} THEN json('true') ELSE json('false') END"
    if kind.startswith(("INT", "UINT")):
        return f"CAST({column} AS INTEGER)"
    return column


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def text_words(text: str) -> list[str]:
    """The words of a text query, lower-cased: split at every character that is not a letter or
    digit (a run of Chinese characters is one word; the trigram index finds it inside longer
    text)."""
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def trigram_query(words: list[str], *, any_of: bool = False) -> str:
    """A safe FTS5 query over the ``trigram`` index: every three-character substring of every
    word, each a quoted one-token phrase (the index keeps no positions, ``detail=column``, so a
    longer phrase is refused), all required (or any of them, for fuzzy candidates). Words of one
    or two characters have no trigram: the caller matches them another way. Empty when no word
    has three characters.

    A match on every trigram is necessary, not sufficient, for the word to occur: callers check
    the words with ``instr`` (:data:`TEXT_SQL`)."""
    grams = sorted({w[i : i + 3] for w in words for i in range(len(w) - 2)})
    return (" OR " if any_of else " AND ").join('"' + g.replace('"', '""') + '"' for g in grams)


#: the searchable text of a row of ``features f`` (lower-case for ASCII; ``instr`` on it checks
#: a word is a substring)
TEXT_SQL = "lower(f.fid || ' ' || coalesce(f.title, '') || ' ' || coalesce(f.body, ''))"


def search(
    path: Path,
    text: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    limit: int = 20,
    *,
    exclude: list[str] | None = None,
) -> list[dict]:
    """Features matching words of ``text`` (substrings of id, title and text attributes)
    and/or lying in ``bbox`` (west, south, east, north degrees), best matches first; none of the
    layers in ``exclude`` (those a reader may not see). Each result's ``anchor`` is a point
    inside its footprint (where the viewer flies to), its centre when it has no footprint.

    Raises
    ------
    CimInputError
        Neither ``text`` nor ``bbox`` given, or a malformed box.
    """
    if not text and bbox is None:
        raise CimInputError("search needs q= (words) or bbox=west,south,east,north")
    limit = max(1, min(int(limit), 200))
    cols = "f.layer, f.fid, f.title, f.lon, f.lat, f.base, f.top, f.properties, f.rowid"
    box_sql = "f.lon BETWEEN ? AND ? AND f.east >= ? AND f.west <= ? AND f.north >= ? AND f.south <= ?"
    box_args: list[float] = []
    hidden = sorted(set(exclude or ()))
    hide_sql = f" AND f.layer NOT IN ({', '.join('?' * len(hidden))})" if hidden else ""
    tail: list = list(hidden)  # values bound after the filters
    if bbox is not None:
        west, south, east, north = bbox
        if not (west <= east and south <= north):
            raise CimInputError(f"bbox {bbox}: west must not exceed east, nor south north")
        box_args = [west, east, west, east, south, north]  # the centre range is widened below
    if text:
        words = text_words(text)
        if not words:
            return []
        q = trigram_query(words)
        # every word a substring; the trigram index narrows the rows first when a word is long enough
        check = " AND ".join(f"instr({TEXT_SQL}, ?)" for _ in words)
        if q:
            sql = f"SELECT {cols} FROM features_text t JOIN features f ON f.rowid = t.rowid WHERE features_text MATCH ? AND {check}"
            args: list = [q, *words]
            order = "t.rank"
        else:
            sql = f"SELECT {cols} FROM features f WHERE {check}"
            args = list(words)
            order = "f.rowid"
        if box_args:
            sql += f" AND {box_sql}"
            args += box_args
        sql += hide_sql + f" ORDER BY lower(f.title) = ? DESC, {order} LIMIT ?"
        tail.append(text.strip().lower())  # an exact title first
    else:
        sql = f"SELECT {cols} FROM features f WHERE {box_sql}{hide_sql} LIMIT ?"
        args = list(box_args)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if box_args:  # a feature overlapping the box has its centre within half its width of it
            half = con.execute("SELECT value FROM search_meta WHERE key = 'half_width'").fetchone()
            i = len(args) - len(box_args)
            args[i] -= half[0] if half else 180.0
            args[i + 1] += half[0] if half else 180.0
        rows = con.execute(sql, [*args, *tail, limit]).fetchall()
        anchors = _anchors(con, [r[8] for r in rows])
    finally:
        con.close()
    return [
        {
            "layer": r[0],
            "id": r[1],
            "title": r[2],
            "lon": r[3],
            "lat": r[4],
            "base": r[5],
            "top": r[6],
            "properties": json.loads(r[7]),
            "anchor": list(anchors.get(r[8], (r[3], r[4]))),
        }
        for r in rows
    ]


def _anchors(con: sqlite3.Connection, rowids: list[int]) -> dict[int, tuple[float, float]]:
    """A point inside each feature's footprint (features without one, or an index from before
    footprints were stored, have none: their centre serves)."""
    has = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'footprints'").fetchone()
    if not has or not rowids:
        return {}
    marks = ", ".join("?" * len(rowids))
    got = con.execute(f"SELECT rowid, anchor_lon, anchor_lat FROM footprints WHERE rowid IN ({marks})", rowids).fetchall()
    return {r[0]: (r[1], r[2]) for r in got}
