"""Text search (place names, addresses, keywords; Chinese and Latin), ranked, with a fuzzy fallback.

Every word of the query must occur in a feature's id, title or text attributes, as a substring
(case-insensitive): ``秦州`` finds ``天水市秦州区环城路12号``. Words of three characters or more go
through the index's FTS5 ``trigram`` table first (a word's trigrams narrow the candidates; the
word itself is then checked, since trigrams in any order would match); a query of only one- or
two-character words (``秦``, ``麦积``) has no trigram and scans the in-memory text of every
feature instead (tens of thousands of ``in`` tests, a few milliseconds).

Ranking: the title equal to the query, then titles starting with it, then titles containing it,
then the rest; within each, FTS5's bm25, then the build order.

A query that finds nothing exactly is tried fuzzily: candidates sharing any trigram with it
(bm25 order, at most :data:`FUZZY_CANDIDATES`), kept when at least :data:`FUZZY_MIN` of the
query's trigrams occur in one of their fields (title or a text attribute), best first. So a
misspelt Latin name (``Yingbn Residnce``) still finds its feature.
"""

from __future__ import annotations

import difflib
import sqlite3

import numpy as np

from cim.errors import CimInputError
from cim.query.store import FeatureStore
from cim.searchindex import text_words, trigram_query

__all__ = ["TextMatch", "text_search", "FUZZY_CANDIDATES", "FUZZY_MIN"]

#: candidates a fuzzy search scores
FUZZY_CANDIDATES = 400
#: share of the query's trigrams a fuzzy match must contain
FUZZY_MIN = 0.5


class TextMatch:
    """Rows matching a text, best first, and whether the match was fuzzy.

    Attributes
    ----------
    rows : (k,) int64, store rows in rank order
    fuzzy : bool
    """

    def __init__(self, rows: np.ndarray, fuzzy: bool) -> None:
        self.rows = rows
        self.fuzzy = fuzzy


def text_search(store: FeatureStore, text: str, candidates: np.ndarray | None = None) -> TextMatch:
    """The rows of ``store`` matching ``text`` (among ``candidates``, a boolean mask, when given).

    Raises
    ------
    CimInputError
        The text has no letter or digit.
    """
    words = text_words(text)
    if not words:
        raise CimInputError(f"parameter 'text' has no letter or digit to search for: {text[:40]!r}")
    whole = " ".join(words)
    query = trigram_query([w for w in words if len(w) >= 3])
    con = store.connection()
    if query:
        try:
            got = con.execute("SELECT rowid, rank FROM features_text WHERE features_text MATCH ?", (query,)).fetchall()
        except sqlite3.OperationalError as exc:  # pragma: no cover - every term is a quoted phrase
            raise CimInputError(f"parameter 'text' cannot be searched: {exc}") from None
        rowids = np.array([r[0] for r in got], dtype=np.int64)
        bm25 = np.array([r[1] for r in got], dtype=np.float64)
        rows = _rows_of(store, rowids)
    else:
        rows = np.arange(len(store))
        bm25 = np.zeros(len(rows))
    if candidates is not None:
        keep = candidates[rows]
        rows, bm25 = rows[keep], bm25[keep]
    hay = store.haystack[rows].tolist()
    keep = np.array([all(w in h for w in words) for h in hay], dtype=bool)
    rows, bm25 = rows[keep], bm25[keep]
    if len(rows):
        return TextMatch(_ranked(store, rows, bm25, whole), False)
    return TextMatch(_fuzzy(store, con, words, candidates), True)


def _rows_of(store: FeatureStore, rowids: np.ndarray) -> np.ndarray:
    """Store rows of SQLite rowids (the store holds them sorted)."""
    return np.searchsorted(store.rowids, rowids)


def _tier(name: str, whole: str) -> int:
    return 0 if name == whole else 1 if name.startswith(whole) else 2 if whole in name else 3


def _ranked(store: FeatureStore, rows: np.ndarray, bm25: np.ndarray, whole: str) -> np.ndarray:
    titles = [str(t).lower() for t in store.title[rows].tolist()]
    ids = [str(t).lower() for t in store.fid[rows].tolist()]
    tier = np.array([min(_tier(t, whole), _tier(i, whole)) for t, i in zip(titles, ids)], dtype=np.int64)
    order = np.lexsort((rows, bm25, tier))
    return rows[order]


def _trigrams(text: str) -> set[str]:
    return {w[i : i + 3] for w in text_words(text) for i in range(len(w) - 2)}


def _fuzzy(store: FeatureStore, con: sqlite3.Connection, words: list[str], candidates: np.ndarray | None) -> np.ndarray:
    wanted = _trigrams(" ".join(words))
    if not wanted:
        return np.zeros(0, dtype=np.int64)
    got = con.execute(
        "SELECT rowid FROM features_text WHERE features_text MATCH ? ORDER BY rank LIMIT ?",
        (trigram_query(words, any_of=True), FUZZY_CANDIDATES),
    ).fetchall()
    rows = _rows_of(store, np.array([r[0] for r in got], dtype=np.int64))
    if candidates is not None:
        rows = rows[candidates[rows]]
    text_columns = [c for c, kind in store.attribute_types.items() if kind == "string"]
    whole = " ".join(words)
    scores = np.zeros(len(rows))
    likeness = np.zeros(len(rows))
    for k, row in enumerate(rows.tolist()):
        fields = [str(store.title[row]), str(store.fid[row])]
        fields += [str(v) for c in text_columns if (v := store.columns[c][row]) is not None]
        shared = [len(wanted & _trigrams(f)) for f in fields]
        best = int(np.argmax(shared))
        scores[k] = shared[best] / len(wanted)
        if scores[k] >= FUZZY_MIN:  # ties broken by how alike the whole texts are
            likeness[k] = difflib.SequenceMatcher(None, whole, fields[best].lower()).ratio()
    keep = scores >= FUZZY_MIN
    rows, scores, likeness = rows[keep], scores[keep], likeness[keep]
    order = np.lexsort((np.arange(len(rows)), -likeness, -scores))  # best first, then FTS5's order
    return rows[order]
