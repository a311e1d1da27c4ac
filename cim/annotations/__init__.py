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

from cim.annotations.checks import KINDS, MAX_TEXT, MAX_TITLE, MAX_VERTICES, check_bbox, check_coordinates, check_text
from cim.annotations.geojson import export_geojson, geojson_bytes, to_geojson
from cim.annotations.store import ANNOTATIONS_NAME, AnnotationsReadOnly, AnnotationStore, Author

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
