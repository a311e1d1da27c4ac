"""Comparing two built cities: the search index by its rows, city.json without its timings."""

from __future__ import annotations

import sqlite3
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
