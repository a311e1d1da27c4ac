"""Text search (place names, addresses, keywords; Chinese and Latin), ranked, with a fuzzy fallback.

Every word of the query must occur in a feature's id, title or text attributes, as a substring
(case-insensitive): ``秦州`` finds ``天水市秦州区环城路12号``. Two paths give the same rows:

- a query with a word of three characters or more whose rarest trigram few features hold (the
  index's vocabulary says how many, :data:`SELECTIVE` at most) goes through the FTS5
  ``trigram`` table: the word's trigrams narrow the candidates, then the word itself is checked
  on them (trigrams in another order would match too);
- otherwise (words of one or two characters, which have no trigram, such as ``秦`` or
  ``麦积``; or common words such as ``天水市`` that half the city holds) every feature's text is
  scanned with ``numpy.strings.find`` on UTF-8 bytes: one vectorised pass, a few milliseconds
  for 80,000 features, where fetching and checking tens of thousands of index hits one by one
  would take a hundred.

Ranking: the title (or id) equal to the query, then starting with it, then containing it, then
the rest; within each, FTS5's bm25 on the index path, then the build order.

A query that finds nothing exactly is tried fuzzily: the features holding most of its rarest
trigrams (read from the index's posting lists; at most :data:`FUZZY_CANDIDATES`), kept when at
least :data:`FUZZY_MIN` of the query's trigrams occur in their text, best first (ties among the
best: more of the query's words found whole, such as a building number, then the title or
text attribute most like the query, by ``difflib``). So a misspelt Latin name (``Yingbn Residnce``) still finds its
feature.
"""

from __future__ import annotations

import difflib
import re
import sqlite3

import numpy as np

from cim.errors import CimInputError
from cim.query.store import FeatureStore
from cim.searchindex import text_words

__all__ = ["TextMatch", "text_search", "FUZZY_CANDIDATES", "FUZZY_MIN"]

#: candidates a fuzzy search scores
FUZZY_CANDIDATES = 200
#: share of the query's trigrams a fuzzy match must contain
FUZZY_MIN = 0.5
#: the most features the rarest trigram of a query may be in for the index path
SELECTIVE = 2000
#: the rarest trigrams a fuzzy search asks the index for, and the features they may hold in all
FUZZY_TERMS = 6
FUZZY_POSTINGS = 6000
#: fuzzy matches whose likeness to the query is measured (to order the best ones)
FUZZY_LIKENESS = 12


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


def _doc_counts(store: FeatureStore, grams: set[str]) -> dict[str, int]:
    """How many features hold each trigram (absent: none)."""
    docs = store.trigram_docs
    return {g: docs[g] for g in grams if g in docs}


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
    con = store.connection()
    grams = _trigrams(whole)
    counts = _doc_counts(store, grams)
    if grams and len(counts) < len(grams):  # a trigram no feature holds: no exact match
        return TextMatch(_fuzzy(store, con, grams, counts, whole, candidates), True)
    long = [w for w in words if len(w) >= 3]
    if long and min(counts.values()) <= SELECTIVE:
        # the two rarest trigrams narrow enough (intersecting common ones' posting lists costs more
        # than checking the words on the few rows left)
        rarest = sorted((g for w in long for g in _trigrams(w)), key=lambda g: (counts[g], g))[:2]
        query = " AND ".join('"' + g.replace('"', '""') + '"' for g in rarest)
        got = con.execute("SELECT rowid, rank FROM features_text WHERE features_text MATCH ?", (query,)).fetchall()
        rows = _rows_of(store, np.array([r[0] for r in got], dtype=np.int64))
        bm25 = np.array([r[1] for r in got], dtype=np.float64)
        keep = np.array([all(w in h for w in words) for h in store.haystack[rows].tolist()], dtype=bool)
        if candidates is not None:
            keep &= candidates[rows]
        rows, bm25 = rows[keep], bm25[keep]
    else:
        mask = np.ones(len(store), dtype=bool) if candidates is None else candidates.copy()

        def rarity(w: str) -> tuple[int, int]:  # the rarest word first: it rules out most
            return (min((counts[g] for g in _trigrams(w)), default=len(store)), -len(w))

        for w in sorted(words, key=rarity):
            at = np.flatnonzero(mask)
            scanned = store.haystack_utf8 if w.isascii() else store.wide_utf8  # a non-ASCII word lies in a non-ASCII word
            mask[at] = np.strings.find(scanned[at], w.encode("utf-8")) >= 0
        rows = np.flatnonzero(mask)
        bm25 = np.zeros(len(rows))
    if len(rows):
        return TextMatch(_ranked(store, rows, bm25, whole), False)
    return TextMatch(_fuzzy(store, con, grams, counts, whole, candidates), True)


def _rows_of(store: FeatureStore, rowids: np.ndarray) -> np.ndarray:
    """Store rows of SQLite rowids (the store holds them sorted)."""
    return np.searchsorted(store.rowids, rowids)


def _tier(names: np.ndarray, whole: bytes) -> np.ndarray:
    """0 equal, 1 starts with, 2 contains, 3 otherwise (``names``: UTF-8 bytes)."""
    at = np.strings.find(names, whole)
    return np.where(at < 0, 3, np.where(at > 0, 2, np.where(np.strings.str_len(names) == len(whole), 0, 1)))


def _ranked(store: FeatureStore, rows: np.ndarray, bm25: np.ndarray, whole: str) -> np.ndarray:
    key = whole.encode("utf-8")
    tier = np.minimum(_tier(store.title_utf8[rows], key), _tier(store.fid_utf8[rows], key))
    order = np.lexsort((rows, bm25, tier))
    return rows[order]


_WORD = re.compile(r"[^\W_]+")


def _trigrams(text: str) -> set[str]:
    """The trigrams of the words of ``text`` (lower-case), as the index splits them."""
    return {w[i : i + 3] for w in _WORD.findall(text.lower()) for i in range(len(w) - 2)}


def _fuzzy(
    store: FeatureStore, con: sqlite3.Connection, wanted: set[str], counts: dict[str, int], whole: str, candidates: np.ndarray | None
) -> np.ndarray:
    # the rarest trigrams the index has (up to FUZZY_TERMS, until they cover FUZZY_POSTINGS
    # features): each one's features straight from its posting list, no ranking
    rare: list[str] = []
    covered = 0
    for g in sorted((g for g in wanted if g in counts), key=lambda g: (counts[g], g)):
        if len(rare) >= FUZZY_TERMS or (rare and covered + counts[g] > FUZZY_POSTINGS):
            break
        rare.append(g)
        covered += counts[g]
    if not rare:
        return np.zeros(0, dtype=np.int64)
    rowids = [
        r[0]
        for g in rare
        for r in con.execute("SELECT rowid FROM features_text WHERE features_text MATCH ?", ('"' + g.replace('"', '""') + '"',))
    ]
    hits = np.bincount(_rows_of(store, np.array(rowids, dtype=np.int64)), minlength=len(store))
    if candidates is not None:
        hits[~candidates] = 0
    rows = np.flatnonzero(hits)
    rows = rows[np.lexsort((rows, -hits[rows]))][:FUZZY_CANDIDATES]  # most rare trigrams first
    words = set(_WORD.findall(whole))
    scores = np.zeros(len(rows))
    whole_words = np.zeros(len(rows))  # query words found as whole words (numbers, short words)
    for k, h in enumerate(store.haystack[rows].tolist()):
        found = _WORD.findall(h)
        grams = {w[i : i + 3] for w in found for i in range(len(w) - 2)}
        scores[k] = len(wanted & grams) / len(wanted)
        whole_words[k] = len(words.intersection(found))
    keep = scores >= FUZZY_MIN
    rows, scores, whole_words = rows[keep], scores[keep], whole_words[keep]
    likeness = np.zeros(len(rows))
    best = np.lexsort((rows, -whole_words, -scores))[:FUZZY_LIKENESS]  # ties among the best broken by likeness
    text_columns = [c for c, kind in store.attribute_types.items() if kind == "string"]
    for k in best.tolist():
        row = int(rows[k])
        fields = [str(store.title[row]), str(store.fid[row])]
        fields += [str(v) for c in text_columns if (v := store.columns[c][row]) is not None]
        similar = [f.lower() for f in fields if len(whole) / 2 <= len(f) <= 2 * len(whole)]
        likeness[k] = max((difflib.SequenceMatcher(None, whole, f).ratio() for f in similar), default=0.0)
    order = np.lexsort((rows, -likeness, -whole_words, -scores))  # best first, then build order
    return rows[order]
