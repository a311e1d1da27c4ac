"""Annotations (批注): pins, polylines and polygons with a note, placed on a city's scene.

Notes live beside the city in ``CITY/.cim/annotations.sqlite`` (a folder the server never
serves), one row each: kind, coordinates (degrees, metres), text, title, author and times. The
database is made on the first write (WAL journal: readers never wait on a writer, and several
server processes may share it); each write is one SQLite transaction, so it is whole or absent.
A city folder that cannot be written to still lists its notes and refuses new ones with
:class:`AnnotationsReadOnly`.

**Authors.** An :class:`Author` is who a note belongs to: ``key`` decides who may change it,
``name`` is what is shown. A signed-in user is ``user:NAME``; a browser of a city without
accounts is ``browser:<SHA-256 of a random secret the browser holds>``, shown as
``anonymous`` (the server keeps that secret in an HttpOnly cookie, see
:mod:`cim.server.annotations`); the store keeps only its hash. Only a note's author may edit or
delete it; an author whose ``admin`` flag is set may delete any note.

**Text is plain text.** Text and titles are stored and returned as given (control characters
other than tab and line breaks refused); nothing here renders them, and a viewer must insert
them as text, never as HTML.

Example
-------
>>> from cim.annotations import AnnotationStore, Author               # doctest: +SKIP
>>> store = AnnotationStore("tiles/tianshui")
>>> note = store.create(Author.user("wang"), "pin", [[105.72, 34.58, 1160.0]], "限高 24 m")
>>> store.page(limit=10)[0]
1
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cim.access import ACCESS_DIR, private_dir
from cim.errors import CimForbidden, CimInputError, CimIOError, CimNotFound

__all__ = [
    "ANNOTATIONS_NAME",
    "KINDS",
    "MAX_TEXT",
    "MAX_TITLE",
    "MAX_VERTICES",
    "AnnotationStore",
    "AnnotationsReadOnly",
    "Author",
    "check_bbox",
    "check_coordinates",
    "check_text",
    "export_geojson",
    "geojson_bytes",
    "to_geojson",
]

ANNOTATIONS_NAME = "annotations.sqlite"
#: the shapes a note can take, and the fewest vertices each needs
KINDS: Mapping[str, int] = {"pin": 1, "polyline": 2, "polygon": 3}
MAX_VERTICES = 10_000
MAX_TEXT = 10_000
MAX_TITLE = 200
#: metres above or below the ellipsoid a vertex may lie (a typo, not a place, beyond that)
MAX_HEIGHT = 100_000.0
#: decimals kept: 1e-9 degree is 0.1 mm on the ground; heights to the millimetre
_LONLAT_DIGITS = 9
_HEIGHT_DIGITS = 3
_ALLOWED_CONTROLS = frozenset("\t\n\r")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    coordinates TEXT NOT NULL,
    text TEXT NOT NULL,
    title TEXT NOT NULL,
    author TEXT NOT NULL,
    author_key TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    west REAL NOT NULL, south REAL NOT NULL, east REAL NOT NULL, north REAL NOT NULL
);
PRAGMA user_version = 1;
"""
_COLUMNS = "id, kind, coordinates, text, title, author, author_key, created, updated"


class AnnotationsReadOnly(CimIOError):
    """The city's folder cannot be written to: its notes can be read, not changed."""


@dataclass(frozen=True)
class Author:
    """Who writes a note: ``key`` says whose it is, ``name`` is shown beside it."""

    name: str
    key: str
    #: may delete any note (the ``admin`` role)
    admin: bool = False

    @classmethod
    def user(cls, name: str, *, admin: bool = False) -> Author:
        """A signed-in user."""
        return cls(name, f"user:{name}", admin)

    @classmethod
    def browser(cls, secret: str) -> Author:
        """The anonymous author holding ``secret`` (a browser's random key; only its hash is kept)."""
        digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
        return cls("anonymous", f"browser:{digest}")


# ---------------------------------------------------------------------- validation


def check_coordinates(kind: str, coordinates: object, where: str = "coordinates") -> list[list[float]]:
    """The vertices of a note of ``kind``, checked and rounded.

    Parameters
    ----------
    kind : {"pin", "polyline", "polygon"}
        A pin has one vertex, a polyline at least two, a polygon at least three distinct ones
        (a closing vertex equal to the first is dropped: rings are stored open).
    coordinates : list of [lon, lat] or [lon, lat, height]
        Degrees (WGS 84) and metres above the ellipsoid; every vertex of one note has the same
        length; at most :data:`MAX_VERTICES`.
    where : str
        How error messages name the field.

    Returns
    -------
    list of list of float
        Longitudes and latitudes rounded to 1e-9 degree, heights to the millimetre.

    Raises
    ------
    CimInputError
        Naming the field and the vertex that is wrong.
    """
    if kind not in KINDS:
        raise CimInputError(f"kind must be one of {', '.join(KINDS)}, not {str(kind)[:40]!r}")
    if not isinstance(coordinates, list):
        raise CimInputError(f"{where} must be a list of [lon, lat] or [lon, lat, height] vertices")
    if len(coordinates) > MAX_VERTICES:
        raise CimInputError(f"{where} has {len(coordinates):,} vertices; a note takes at most {MAX_VERTICES:,}")
    out: list[list[float]] = []
    width = None
    for i, vertex in enumerate(coordinates):
        if not isinstance(vertex, list) or len(vertex) not in (2, 3):
            raise CimInputError(f"{where}[{i}] must be [lon, lat] or [lon, lat, height]")
        if width is None:
            width = len(vertex)
        elif len(vertex) != width:
            raise CimInputError(f"{where}[{i}] has {len(vertex)} values; every vertex of a note has {width}")
        values = []
        for j, value in enumerate(vertex):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CimInputError(f"{where}[{i}][{j}] must be a finite number")
            values.append(float(value))
        lon, lat = values[0], values[1]
        if not -180.0 <= lon <= 180.0:
            raise CimInputError(f"{where}[{i}]: longitude {lon} is outside -180..180")
        if not -90.0 <= lat <= 90.0:
            raise CimInputError(f"{where}[{i}]: latitude {lat} is outside -90..90")
        rounded = [round(lon, _LONLAT_DIGITS), round(lat, _LONLAT_DIGITS)]
        if width == 3:
            if abs(values[2]) > MAX_HEIGHT:
                raise CimInputError(f"{where}[{i}]: height {values[2]} m is beyond ±{MAX_HEIGHT:,.0f} m")
            rounded.append(round(values[2], _HEIGHT_DIGITS))
        out.append(rounded)
    if kind == "polygon" and len(out) > 3 and out[0] == out[-1]:
        out.pop()
    need = KINDS[kind]
    if kind == "pin" and len(out) != 1:
        raise CimInputError(f"{where}: a pin has exactly one vertex, not {len(out)}")
    distinct = len({(v[0], v[1]) for v in out})
    if distinct < need:
        raise CimInputError(f"{where}: a {kind} needs at least {need} distinct vertices, not {distinct}")
    return out


def check_text(value: object, where: str, max_chars: int, *, single_line: bool = False) -> str:
    """A note's text (or title) as given: a string of at most ``max_chars`` characters, with no
    control character but tab and line breaks (none at all when ``single_line``).

    Raises
    ------
    CimInputError
        Naming ``where``.
    """
    if not isinstance(value, str):
        raise CimInputError(f"{where} must be a string")
    if len(value) > max_chars:
        raise CimInputError(f"{where} is {len(value):,} characters long; at most {max_chars:,} are kept")
    for ch in value:
        if (ch < " " or ch == "\x7f") and (single_line or ch not in _ALLOWED_CONTROLS):
            raise CimInputError(f"{where} contains the control character U+{ord(ch):04X}")
    return value


def _bounds(coordinates: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    lons = [v[0] for v in coordinates]
    lats = [v[1] for v in coordinates]
    return min(lons), min(lats), max(lons), max(lats)


def check_bbox(bbox: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    """``(west, south, east, north)`` in degrees, checked; None stays None."""
    if bbox is None:
        return None
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        raise CimInputError("bbox must be four finite numbers: west,south,east,north")
    west, south, east, north = (float(v) for v in bbox)
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise CimInputError("bbox must be west,south,east,north in degrees with west <= east and south <= north")
    return west, south, east, north


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------------- the store


class AnnotationStore:
    """The notes of one city (``CITY/.cim/annotations.sqlite``); each call opens its own
    connection, so one store may be used from any thread.

    Parameters
    ----------
    city_dir : str or Path
        A built city's folder.
    """

    def __init__(self, city_dir: str | Path) -> None:
        self.city_dir = Path(city_dir)
        self.path = private_dir(city_dir) / ANNOTATIONS_NAME

    # -------------------------------------------------------------- connections

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection, or None when nothing was ever written."""
        if not self.path.is_file():
            yield None
            return
        con = None
        # a read-only folder cannot hold the WAL's shared-memory file: read the file as it is
        for query in ("mode=ro", "immutable=1"):
            try:
                con = sqlite3.connect(f"{self.path.resolve().as_uri()}?{query}", uri=True, timeout=10.0)
                con.execute("SELECT 1 FROM annotations LIMIT 1").fetchall()
                break
            except sqlite3.Error as exc:
                if con is not None:
                    con.close()
                con = None
                if "no such table" in str(exc):  # made this instant by a first writer: nothing in it yet
                    yield None
                    return
        if con is None:
            raise CimIOError(f"{ACCESS_DIR}/{ANNOTATIONS_NAME} cannot be read (damaged, or not an annotations database)")
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one immediate transaction (committed when the block ends)."""
        refused = f"this city's folder cannot be written to, so its annotations are read-only ({ACCESS_DIR}/{ANNOTATIONS_NAME})"
        try:
            os.makedirs(self.path.parent, mode=0o700, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise AnnotationsReadOnly(refused) from exc
        try:
            try:
                if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    con.execute("PRAGMA journal_mode = WAL")
                if con.execute("PRAGMA user_version").fetchone()[0] == 0:
                    con.executescript(_SCHEMA)
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "readonly" in str(exc) or "unable to open" in str(exc) or "disk I/O" in str(exc):
                    raise AnnotationsReadOnly(refused) from exc
                raise CimIOError(f"{ACCESS_DIR}/{ANNOTATIONS_NAME}: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise CimIOError(f"{ACCESS_DIR}/{ANNOTATIONS_NAME} is not an annotations database ({exc})") from exc
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                con.execute("ROLLBACK")
                raise CimIOError(f"{ACCESS_DIR}/{ANNOTATIONS_NAME}: the change could not be saved ({exc})") from exc
        finally:
            con.close()

    # -------------------------------------------------------------- reading

    def page(
        self,
        *,
        bbox: Sequence[float] | None = None,
        limit: int = 50,
        offset: int = 0,
        reader: Author | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """``(total, notes)``: one page of the notes touching ``bbox`` (all without), newest first.

        Parameters
        ----------
        bbox : (west, south, east, north), optional
            Degrees; a note is in when its bounding box meets this one.
        limit, offset : int
            The page.
        reader : Author, optional
            Who asks: each note then says whether it is ``editable`` by them.
        """
        box = check_bbox(bbox)
        where, args = ("WHERE east >= ? AND west <= ? AND north >= ? AND south <= ?", [box[0], box[2], box[1], box[3]]) if box else ("", [])
        with self._reading() as con:
            if con is None:
                return 0, []
            total = con.execute(f"SELECT COUNT(*) FROM annotations {where}", args).fetchone()[0]
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM annotations {where} ORDER BY id DESC LIMIT ? OFFSET ?", [*args, limit, offset]
            ).fetchall()
        return int(total), [_note(row, reader) for row in rows]

    def all(self, *, bbox: Sequence[float] | None = None) -> list[dict[str, Any]]:
        """Every note (touching ``bbox``), oldest first: the order of an export."""
        _, notes = self.page(bbox=bbox, limit=-1)
        notes.reverse()
        return notes

    def get(self, note_id: int, reader: Author | None = None) -> dict[str, Any]:
        """One note.

        Raises
        ------
        CimNotFound
            There is no note ``note_id``.
        """
        with self._reading() as con:
            row = None if con is None else con.execute(f"SELECT {_COLUMNS} FROM annotations WHERE id = ?", (note_id,)).fetchone()
        if row is None:
            raise CimNotFound(f"no annotation {note_id}")
        return _note(row, reader)

    # -------------------------------------------------------------- writing

    def create(self, author: Author, kind: str, coordinates: object, text: object, title: object = "") -> dict[str, Any]:
        """Add a note and return it (with its ``id`` and times).

        Raises
        ------
        CimInputError
            A field is wrong (named in the message).
        AnnotationsReadOnly
            The city's folder cannot be written to.
        """
        vertices = check_coordinates(kind, coordinates)
        body = check_text(text, "text", MAX_TEXT)
        heading = check_text(title if title is not None else "", "title", MAX_TITLE, single_line=True)
        now = _now()
        with self._writing() as con:
            cursor = con.execute(
                "INSERT INTO annotations (kind, coordinates, text, title, author, author_key, created, updated,"
                " west, south, east, north) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, _dumps(vertices), body, heading, author.name, author.key, now, now, *_bounds(vertices)),
            )
            note_id = int(cursor.lastrowid or 0)
            row = con.execute(f"SELECT {_COLUMNS} FROM annotations WHERE id = ?", (note_id,)).fetchone()
        return _note(row, author)

    def update(
        self,
        note_id: int,
        author: Author,
        *,
        kind: str | None = None,
        coordinates: object = None,
        text: object = None,
        title: object = None,
    ) -> dict[str, Any]:
        """Change the given fields of the author's own note and return it.

        A new ``kind`` needs new ``coordinates`` to match (or the old ones must suit it).

        Raises
        ------
        CimNotFound
            No note ``note_id``.
        CimForbidden
            The note is someone else's.
        CimInputError
            A field is wrong.
        AnnotationsReadOnly
            The city's folder cannot be written to.
        """
        if kind is None and coordinates is None and text is None and title is None:
            raise CimInputError("nothing to change: give kind, coordinates, text or title")
        body = check_text(text, "text", MAX_TEXT) if text is not None else None
        heading = check_text(title, "title", MAX_TITLE, single_line=True) if title is not None else None
        if not self.path.is_file():
            raise CimNotFound(f"no annotation {note_id}")
        with self._writing() as con:
            row = con.execute(f"SELECT {_COLUMNS} FROM annotations WHERE id = ?", (note_id,)).fetchone()
            if row is None:
                raise CimNotFound(f"no annotation {note_id}")
            if row[6] != author.key:
                raise CimForbidden(f"annotation {note_id} is {row[5]}'s: only its author may edit it")
            new_kind = kind if kind is not None else row[1]
            source = coordinates if coordinates is not None else json.loads(row[2])
            vertices = check_coordinates(new_kind, source)
            con.execute(
                "UPDATE annotations SET kind = ?, coordinates = ?, text = ?, title = ?, updated = ?,"
                " west = ?, south = ?, east = ?, north = ? WHERE id = ?",
                (
                    new_kind,
                    _dumps(vertices),
                    body if body is not None else row[3],
                    heading if heading is not None else row[4],
                    _now(),
                    *_bounds(vertices),
                    note_id,
                ),
            )
            row = con.execute(f"SELECT {_COLUMNS} FROM annotations WHERE id = ?", (note_id,)).fetchone()
        return _note(row, author)

    def delete(self, note_id: int, author: Author) -> dict[str, Any]:
        """Remove the author's own note (an admin: any note) and return what it was.

        Raises
        ------
        CimNotFound
            No note ``note_id``.
        CimForbidden
            The note is someone else's and ``author`` is no admin.
        AnnotationsReadOnly
            The city's folder cannot be written to.
        """
        if not self.path.is_file():
            raise CimNotFound(f"no annotation {note_id}")
        with self._writing() as con:
            row = con.execute(f"SELECT {_COLUMNS} FROM annotations WHERE id = ?", (note_id,)).fetchone()
            if row is None:
                raise CimNotFound(f"no annotation {note_id}")
            if row[6] != author.key and not author.admin:
                raise CimForbidden(f"annotation {note_id} is {row[5]}'s: only its author (or an admin) may delete it")
            con.execute("DELETE FROM annotations WHERE id = ?", (note_id,))
        return _note(row, author)


def _dumps(vertices: list[list[float]]) -> str:
    return json.dumps(vertices, separators=(",", ":"))


def _note(row: Sequence[Any], reader: Author | None) -> dict[str, Any]:
    note = {
        "id": int(row[0]),
        "kind": row[1],
        "coordinates": json.loads(row[2]),
        "text": row[3],
        "title": row[4],
        "author": row[5],
        "created": row[7],
        "updated": row[8],
    }
    if reader is not None:
        note["editable"] = row[6] == reader.key
    return note


# ---------------------------------------------------------------------- GeoJSON


def to_geojson(notes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of notes (RFC 7946): a pin is a Point, a polyline a LineString,
    a polygon a Polygon (its ring closed, counterclockwise); id, kind, title, text, author and
    times are properties."""
    features = []
    for note in notes:
        coords = [list(v) for v in note["coordinates"]]
        geometry: dict[str, Any]
        if note["kind"] == "pin":
            geometry = {"type": "Point", "coordinates": coords[0]}
        elif note["kind"] == "polyline":
            geometry = {"type": "LineString", "coordinates": coords}
        else:
            if _signed_area(coords) < 0:  # RFC 7946: an exterior ring runs counterclockwise
                coords = [coords[0], *reversed(coords[1:])]
            geometry = {"type": "Polygon", "coordinates": [[*coords, coords[0]]]}
        properties = {key: note[key] for key in ("kind", "title", "text", "author", "created", "updated")}
        features.append({"type": "Feature", "id": note["id"], "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def _signed_area(ring: Sequence[Sequence[float]]) -> float:
    """Twice the signed area of an open ring in lon/lat (positive: counterclockwise)."""
    total = 0.0
    for (x0, y0, *_), (x1, y1, *_) in zip(ring, [*ring[1:], ring[0]]):
        total += x0 * y1 - x1 * y0
    return total


def geojson_bytes(notes: Sequence[Mapping[str, Any]]) -> bytes:
    """:func:`to_geojson` as UTF-8 JSON (Chinese as itself; the same notes give the same bytes)."""
    return (json.dumps(to_geojson(notes), ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def export_geojson(city_dir: str | Path, out: str | Path, *, bbox: Sequence[float] | None = None) -> int:
    """Write the notes of the city in ``city_dir`` (touching ``bbox``) to ``out`` as GeoJSON,
    atomically, and return how many there were.

    Raises
    ------
    CimNotFound
        ``city_dir`` is not a built city.
    CimIOError
        ``out`` cannot be written.
    """
    from cim.store import atomic_write_bytes

    if not (Path(city_dir) / "city.json").is_file():
        raise CimNotFound(f"{city_dir}: not a built city (no city.json)")
    notes = AnnotationStore(city_dir).all(bbox=bbox)
    atomic_write_bytes(out, geojson_bytes(notes))
    return len(notes)
