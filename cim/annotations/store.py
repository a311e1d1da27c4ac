"""The notes of one city in ``CITY/.cim/annotations.sqlite``: who wrote them (:class:`Author`),
and the store that lists, adds, edits and deletes them (:class:`AnnotationStore`)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cim.access import ACCESS_DIR, private_dir
from cim.annotations.checks import MAX_TEXT, MAX_TITLE, bounds, check_bbox, check_coordinates, check_text
from cim.errors import CimForbidden, CimInputError, CimIOError, CimNotFound

__all__ = ["ANNOTATIONS_NAME", "AnnotationStore", "AnnotationsReadOnly", "Author"]

ANNOTATIONS_NAME = "annotations.sqlite"
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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
                (kind, _dumps(vertices), body, heading, author.name, author.key, now, now, *bounds(vertices)),
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
                    *bounds(vertices),
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
