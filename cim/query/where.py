"""Combined attribute conditions: a small grammar of our own, evaluated on numpy columns.

The grammar (keywords in any case; strings in single quotes, ``''`` for a quote)::

    expr      := or
    or        := and ("OR" and)*
    and       := not ("AND" not)*
    not       := "NOT" not | "(" expr ")" | condition
    condition := name op value
               | name ["NOT"] "BETWEEN" value "AND" value
               | name ["NOT"] "IN" "(" value ("," value)* ")"
               | name "IS" ["NOT"] "NULL"
    op        := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    value     := number | 'string' | TRUE | FALSE
    name      := a letter or _ then letters, digits, _ ; or "any text" in double quotes

A name must be an attribute of the schema (:attr:`cim.query.store.FeatureStore.attribute_types`)
and each value must suit its type: the error names the attribute, the value and what was
expected. Nothing is turned into SQL: the parsed tree is evaluated on arrays, with SQL's
three-valued logic (a missing value is neither ``> 50`` nor ``NOT > 50``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cim.errors import CimInputError

__all__ = ["Condition", "parse_where", "evaluate", "MAX_WHERE_CHARS", "MAX_DEPTH"]

#: the longest condition text accepted
MAX_WHERE_CHARS = 4096
#: the deepest nesting of parentheses and NOT accepted
MAX_DEPTH = 40

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<op><=|>=|<>|!=|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[^\W\d]\w*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "IN", "IS", "NULL", "TRUE", "FALSE"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, string, name, op, punct, kw, end
    text: str
    value: Any
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            start = len(text) - len(text[pos:].lstrip())
            raise CimInputError(f"parameter 'where': unexpected {text[start : start + 20]!r} at character {start + 1}")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        at = m.start(kind)
        if kind == "number":
            value: Any = float(raw)
            if not math.isfinite(value):
                raise CimInputError(f"parameter 'where': number {raw[:20]!r} at character {at + 1} is not finite")
            out.append(_Tok("number", raw, value, at))
        elif kind == "string":
            out.append(_Tok("string", raw, raw[1:-1].replace("''", "'"), at))
        elif kind == "quoted":
            out.append(_Tok("name", raw, raw[1:-1].replace('""', '"'), at))
        elif kind == "word" and raw.upper() in _KEYWORDS:
            out.append(_Tok("kw", raw.upper(), raw.upper(), at))
        elif kind == "word":
            out.append(_Tok("name", raw, raw, at))
        else:
            out.append(_Tok(kind, raw, raw, at))
        pos = m.end()
    out.append(_Tok("end", "", None, len(text)))
    return out


# the parsed tree: tuples ("and"|"or", a, b), ("not", a), ("cmp", name, op, value),
# ("between", name, lo, hi), ("in", name, values), ("null", name)
Condition = tuple


class _Parser:
    def __init__(self, text: str, types: Mapping[str, str]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.types = types
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, text: str | None = None) -> _Tok:
        tok = self.take()
        if tok.kind != kind or (text is not None and tok.text != text):
            want = text or kind
            got = tok.text[:20] or "the end"
            raise CimInputError(f"parameter 'where': expected {want} at character {tok.pos + 1}, found {got!r}")
        return tok

    def kw(self, word: str) -> bool:
        tok = self.peek()
        if tok.kind == "kw" and tok.text == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Condition:
        tree = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise CimInputError(f"parameter 'where': unexpected {tok.text[:20]!r} at character {tok.pos + 1}")
        return tree

    def or_(self) -> Condition:
        tree = self.and_()
        while self.kw("OR"):
            tree = ("or", tree, self.and_())
        return tree

    def and_(self) -> Condition:
        tree = self.not_()
        while self.kw("AND"):
            tree = ("and", tree, self.not_())
        return tree

    def not_(self) -> Condition:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CimInputError(f"parameter 'where' nests deeper than {MAX_DEPTH} levels")
        try:
            if self.kw("NOT"):
                return ("not", self.not_())
            tok = self.peek()
            if tok.kind == "punct" and tok.text == "(":
                self.take()
                tree = self.or_()
                self.expect("punct", ")")
                return tree
            return self.condition()
        finally:
            self.depth -= 1

    def name(self) -> tuple[str, str]:
        tok = self.take()
        if tok.kind != "name":
            got = tok.text[:20] or "the end"
            raise CimInputError(f"parameter 'where': expected an attribute name at character {tok.pos + 1}, found {got!r}")
        kind = self.types.get(tok.value)
        if kind is None:
            known = ", ".join(sorted(self.types)) or "none"
            raise CimInputError(f"parameter 'where': unknown attribute {str(tok.value)[:40]!r} (queryable: {known})")
        return tok.value, kind

    def value(self, name: str, kind: str) -> Any:
        tok = self.take()
        if tok.kind == "kw" and tok.text in ("TRUE", "FALSE"):
            if kind != "boolean":
                raise CimInputError(f"parameter 'where': {name} is a {kind}, not a boolean ({tok.text})")
            return 1.0 if tok.text == "TRUE" else 0.0
        if tok.kind == "number":
            if kind == "string":
                raise CimInputError(f"parameter 'where': {name} is a string: quote the value ('{tok.text[:20]}')")
            return tok.value
        if tok.kind == "string":
            if kind != "string":
                raise CimInputError(f"parameter 'where': {name} is a {kind}, not a string ({tok.text[:20]})")
            return tok.value
        got = tok.text[:20] or "the end"
        raise CimInputError(f"parameter 'where': expected a value for {name} at character {tok.pos + 1}, found {got!r}")

    def condition(self) -> Condition:
        name, kind = self.name()
        if self.kw("IS"):
            negate = self.kw("NOT")
            self.expect("kw", "NULL")
            tree: Condition = ("null", name)
            return ("not", tree) if negate else tree
        negate = self.kw("NOT")
        if self.kw("BETWEEN"):
            lo = self.value(name, kind)
            self.expect("kw", "AND")
            hi = self.value(name, kind)
            tree = ("between", name, lo, hi)
        elif self.kw("IN"):
            self.expect("punct", "(")
            values = [self.value(name, kind)]
            while self.peek().kind == "punct" and self.peek().text == ",":
                self.take()
                values.append(self.value(name, kind))
            self.expect("punct", ")")
            tree = ("in", name, tuple(values))
        elif negate:
            tok = self.peek()
            raise CimInputError(f"parameter 'where': expected BETWEEN or IN after NOT at character {tok.pos + 1}")
        else:
            op = self.expect("op").text
            tree = ("cmp", name, "!=" if op == "<>" else op, self.value(name, kind))
        return ("not", tree) if negate else tree


def parse_where(text: str, types: Mapping[str, str]) -> Condition:
    """Parse a condition against the attribute ``types`` (name → string, number, integer, boolean).

    Raises
    ------
    CimInputError
        A syntax error, an unknown attribute, a value of the wrong type, text too long or nested
        too deep; the message names the parameter and the place.
    """
    if len(text) > MAX_WHERE_CHARS:
        raise CimInputError(f"parameter 'where' is longer than {MAX_WHERE_CHARS} characters")
    if not text.strip():
        raise CimInputError("parameter 'where' is empty")
    return _Parser(text, types).parse()


def evaluate(tree: Condition, columns: Mapping[str, np.ndarray], known: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """The rows where the condition holds (a missing value makes a condition unknown: neither it
    nor its negation holds, as in SQL).

    ``columns``: float arrays (NaN: missing) and string arrays (object arrays with None for
    missing; or numpy ``str`` arrays, fastest, with ``known`` giving where a value is present).
    """
    if known is None:
        names = _names(tree)
        known = {name: _known(columns[name]) for name in names}
        columns = {name: _as_str(columns[name], known[name]) for name in names}
    true, _ = _eval(tree, columns, known)
    return true


def _names(tree: Condition) -> set[str]:
    if tree[0] in ("and", "or"):
        return _names(tree[1]) | _names(tree[2])
    if tree[0] == "not":
        return _names(tree[1])
    return {tree[1]}


def _as_str(column: np.ndarray, known: np.ndarray) -> np.ndarray:
    """An object column of strings as a numpy ``str`` array (missing: empty)."""
    if column.dtype != object:
        return column
    return np.array(["" if v is None else v for v in column.tolist()], dtype=np.str_)


def _eval(tree: Condition, columns: Mapping[str, np.ndarray], known: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(rows where true, rows where false)."""
    op = tree[0]
    if op == "and":
        t1, f1 = _eval(tree[1], columns, known)
        t2, f2 = _eval(tree[2], columns, known)
        return t1 & t2, f1 | f2
    if op == "or":
        t1, f1 = _eval(tree[1], columns, known)
        t2, f2 = _eval(tree[2], columns, known)
        return t1 | t2, f1 & f2
    if op == "not":
        t, f = _eval(tree[1], columns, known)
        return f, t
    column = columns[tree[1]]
    present = known[tree[1]]
    if op == "null":
        return ~present, present
    if op == "cmp":
        hit = _compare(column, tree[2], tree[3])
    elif op == "between":
        hit = _compare(column, ">=", tree[2]) & _compare(column, "<=", tree[3])
    else:  # in
        hit = np.zeros(len(column), dtype=bool)
        for v in tree[2]:
            hit |= _compare(column, "=", v)
    return hit & present, ~hit & present


_OPS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _known(column: np.ndarray) -> np.ndarray:
    if column.dtype == object:
        return np.array([v is not None for v in column.tolist()], dtype=bool)
    return ~np.isnan(column)


def _compare(column: np.ndarray, op: str, value: Any) -> np.ndarray:
    """``column op value``, vectorised (numbers, or numpy ``str`` arrays compared as Python
    compares strings, by code point); where a value is missing the answer is discarded."""
    with np.errstate(invalid="ignore"):
        return np.asarray(_OPS[op](column, value), dtype=bool)
