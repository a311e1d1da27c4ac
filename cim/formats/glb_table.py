"""Property tables cut from one block of columns: each tile's table in a few numpy calls.

:func:`cim.formats.glb.add_property_table` writes a table column by column: a gather, a buffer
view and a schema entry each, in Python. A BIM model's property sets make hundreds of columns
for a few dozen elements, so that Python, paid per column and per tile, outweighs the data. A
:class:`ColumnBlock` packs a layer's columns once, by kind, into matrices (one row per column):
a tile's table is then one fancy-index per kind (one ragged gather for all its string columns),
written as one blob of 8-byte-aligned buffer views; only the JSON entries remain per column,
built from definitions made once.

The tables it writes are the ones ``add_property_table`` writes for the same columns (same
schema, same values, same noData); only the order of the buffer views differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

import numpy as np

from cim.formats.glb import (
    BOOLEAN_ENUM,
    BOOLEAN_ENUM_DEFINITION,
    NO_DATA,
    GltfBuilder,
    RawJSON,
    attach_property_table,
    column_definition,
    property_id,
)

__all__ = ["ColumnBlock", "BlockTable"]

#: bytes per value of the fixed-width kinds, and their dtypes
_WIDTH = {"INT32": 4, "INT64": 8, "FLOAT64": 8}
_DTYPE = {"INT32": np.int32, "INT64": np.int64, "FLOAT64": np.float64}


def _ceil8(n: np.ndarray | int):
    return (n + 7) // 8 * 8


class ColumnBlock:
    """A layer's attribute columns (all of one length), encoded and packed by kind.

    Encodes as :func:`cim.formats.glb.encode_column` does, a kind at a time (tests hold the
    two equal): nulls (None, NaN) become the kind's noData, declared only for columns that hold
    one; strings are UTF-8 by a Python pass (no pyarrow: importing it costs more than
    converting a small IFC model, and BIM tables have thousands of rows, not millions).

    Parameters
    ----------
    columns : ``{name: values}``: STRING an object array (None for null), numbers float (NaN for
        null) or int, BOOLEAN bool
    types : ``{name: "STRING" | "FLOAT64" | "INT32" | "INT64" | "BOOLEAN"}``
    present : for BOOLEAN columns, which rows hold a value; a BOOLEAN column not named holds a
        value in every row, one with absent values is written as an ENUM whose noData marks
        them (:data:`cim.formats.glb.BOOLEAN_ENUM`: EXT_structural_metadata's BOOLEAN has none)

    Attributes
    ----------
    has_value : (columns, rows) bool, which rows hold a value in each column (a string column:
        a non-empty one; a number column with noData: not the noData value)
    """

    def __init__(self, columns: dict[str, np.ndarray], types: dict[str, str], present: dict[str, np.ndarray] | None = None) -> None:
        present = present or {}
        names = list(columns)
        # a boolean some rows do not have: an enum with noData (see cim.formats.glb.BOOLEAN_ENUM)
        kinds = [
            "BOOLEAN_ENUM"
            if types[name] == "BOOLEAN" and name in present and not np.asarray(present[name], dtype=bool).all()
            else types[name]
            for name in names
        ]
        lengths = {len(columns[name]) for name in names}
        if len(lengths) > 1:
            raise ValueError("ColumnBlock: columns of different lengths")
        self.count = n = lengths.pop() if lengths else 0
        self.ids = [property_id(name) for name in names]
        no_data: list[object] = [None] * len(names)
        self.has_value = np.ones((len(names), n), dtype=bool)
        #: kind -> (positions of its columns, data): a (k, n) matrix for fixed-width and BOOLEAN
        #: kinds; for STRING (all values one after the other, (k * n + 1,) int64 item offsets)
        self.groups: dict[str, tuple[np.ndarray, np.ndarray | tuple[np.ndarray, np.ndarray]]] = {}
        for kind in dict.fromkeys(kinds):
            pos = np.array([i for i, k in enumerate(kinds) if k == kind], dtype=np.int64)
            cols = [columns[names[i]] for i in pos]
            if kind == "STRING":
                flat = [v for c in cols for v in (c.tolist() if isinstance(c, np.ndarray) else list(c))]
                encoded = [b"" if v is None else (v if isinstance(v, str) else str(v)).encode("utf-8") for v in flat]
                sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
                offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
                np.cumsum(sizes, out=offsets[1:])
                self.groups[kind] = (pos, (np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets))
                self.has_value[pos] = (sizes > 0).reshape(len(pos), n)
                is_null = np.fromiter((v is None for v in flat), dtype=bool, count=len(flat)).reshape(len(pos), n)
                nulls = cast(np.ndarray, is_null.any(axis=1))  # a row per column (numpy's stubs allow a scalar)
                for i, null in zip(pos.tolist(), nulls.tolist()):
                    no_data[i] = NO_DATA["STRING"] if null else None
            elif kind == "BOOLEAN":
                self.groups[kind] = (pos, np.array([np.asarray(c, dtype=bool) for c in cols], dtype=bool).reshape(len(pos), n))
            elif kind == "BOOLEAN_ENUM":  # 0 false, 1 true, 255 absent (the enum's noData)
                matrix = np.array([np.asarray(c, dtype=bool) for c in cols], dtype=np.uint8).reshape(len(pos), n)
                for j, i in enumerate(pos.tolist()):
                    self.has_value[i] = np.asarray(present[names[i]], dtype=bool)
                    matrix[j, ~self.has_value[i]] = 255
                self.groups[kind] = (pos, matrix)
            elif kind in _WIDTH:
                matrix, nulls = _numbers(cols, kind, n)
                self.groups[kind] = (pos, matrix)
                for j, (i, null) in enumerate(zip(pos.tolist(), nulls.tolist())):
                    if null:
                        no_data[i] = NO_DATA[kind]
                        self.has_value[i] = matrix[j] != NO_DATA[kind]
            else:
                raise ValueError(f"ColumnBlock: unsupported metadata type {kind!r} for {names[pos[0]]!r}")
        # two names that make one identifier ("a b", "a_b"): the last wins, as in add_property_table
        last = {pid: j for j, pid in enumerate(self.ids)}
        for j, pid in enumerate(self.ids):
            if last[pid] != j:
                self.has_value[j] = False
        self.definitions = [column_definition(name, kind, nd) for name, kind, nd in zip(names, kinds, no_data)]
        #: each column's ``"id":{definition}`` as JSON text, made once for all the tiles
        self._json = [
            json.dumps(pid) + ":" + json.dumps(d, separators=(",", ":"), allow_nan=False) for pid, d in zip(self.ids, self.definitions)
        ]

    def add_table(self, builder: GltfBuilder, rows: np.ndarray, class_name: str, description: str = "", schema_id: str = "cim") -> int:
        """Write the table of ``rows`` into ``builder`` (EXT_structural_metadata), leaving out
        the columns that hold no value in any of them; returns the table's index."""
        rows = np.asarray(rows, dtype=np.int64)
        m = len(rows)
        if m == 0:
            raise ValueError("ColumnBlock.add_table: a property table needs at least one row")
        keep = cast(np.ndarray, self.has_value[:, rows].any(axis=1))  # a (k,) array, not a scalar
        entries: dict[int, dict] = {}
        for kind, (pos, data) in self.groups.items():
            sel = np.flatnonzero(keep[pos])
            if len(sel) == 0:
                continue
            if kind == "STRING":
                assert isinstance(data, tuple)
                values_views, offsets_views = _write_strings(builder, data, sel, rows, self.count)
                for j, v, o in zip(pos[sel].tolist(), values_views, offsets_views):
                    entries[j] = {"values": v, "stringOffsets": o, "stringOffsetType": "UINT32"}
                continue
            assert isinstance(data, np.ndarray)
            sub = data[np.ix_(sel, rows)]
            if kind == "BOOLEAN":
                sub = np.packbits(sub, axis=1, bitorder="little")
                width = sub.shape[1]
            elif kind == "BOOLEAN_ENUM":
                width = m
            else:
                width = m * _WIDTH[kind]
            views = _write_rows(builder, sub, width)
            for j, v in zip(pos[sel].tolist(), views):
                entries[j] = {"values": v}
        used = np.flatnonzero(keep).tolist()
        props = RawJSON("{" + ",".join(self._json[j] for j in used) + "}")
        values = {self.ids[j]: entries[j] for j in used}
        pos = self.groups.get("BOOLEAN_ENUM", (np.empty(0, dtype=np.int64), None))[0]
        enums = {BOOLEAN_ENUM: BOOLEAN_ENUM_DEFINITION} if keep[pos].any() else None
        return attach_property_table(builder, class_name, description, props, values, m, schema_id, enums)

    def table(self, rows: np.ndarray, class_name: str, description: str = "") -> BlockTable:
        """The table of ``rows``, for writers that take a table (:meth:`BlockTable.add_to`)."""
        return BlockTable(self, np.asarray(rows, dtype=np.int64), class_name, description)


@dataclass
class BlockTable:
    """Rows of a :class:`ColumnBlock` as one property table: what
    :class:`cim.formats.glb.PropertyTable` is to ``add_property_table``."""

    block: ColumnBlock
    rows: np.ndarray
    class_name: str
    class_description: str = ""

    def add_to(self, builder: GltfBuilder, schema_id: str = "cim") -> int:
        return self.block.add_table(builder, self.rows, self.class_name, self.class_description, schema_id)


def _numbers(cols: list[np.ndarray], kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, n) matrix of a number kind with nulls (NaN, ±inf for FLOAT64) as the kind's noData,
    and which columns held a null: :func:`cim.formats.glb.encode_column` for k columns at once.
    Integer columns given as integers convert exactly (not through float)."""
    dtype = _DTYPE[kind]
    out = np.empty((len(cols), n), dtype=dtype)
    nulls = np.zeros(len(cols), dtype=bool)
    arrays = [np.asarray(c) for c in cols]
    floats = [j for j, a in enumerate(arrays) if kind == "FLOAT64" or a.dtype.kind == "f"]
    if floats:
        f = np.array([arrays[j] for j in floats], dtype=np.float64).reshape(len(floats), n)
        null = ~np.isfinite(f) if kind == "FLOAT64" else np.isnan(f)
        out[floats] = np.where(null, NO_DATA[kind], f if kind == "FLOAT64" else np.nan_to_num(f)).astype(dtype)
        nulls[floats] = null.any(axis=1)
    rest = [j for j in range(len(cols)) if j not in set(floats)]
    if rest:
        out[rest] = np.array([arrays[j].astype(dtype) for j in rest], dtype=dtype).reshape(len(rest), n)
    return out, nulls


def _write_rows(builder: GltfBuilder, sub: np.ndarray, width: int) -> list[int]:
    """One buffer view per row of ``sub`` (each row's first ``width`` bytes), every row padded to
    a multiple of 8 bytes: one blob."""
    sub = np.ascontiguousarray(sub)
    k, row_bytes = sub.shape[0], sub.shape[1] * sub.itemsize
    padded = _ceil8(row_bytes)
    if padded != row_bytes:
        raw = np.zeros((k, padded), dtype=np.uint8)
        raw[:, :row_bytes] = sub.view(np.uint8).reshape(k, row_bytes)
        sub = raw
    return builder.buffer_views(sub.tobytes(), np.arange(k, dtype=np.int64) * padded, np.full(k, width, dtype=np.int64))


def _write_strings(
    builder: GltfBuilder, data: tuple[np.ndarray, np.ndarray], sel: np.ndarray, rows: np.ndarray, n: int
) -> tuple[list[int], list[int]]:
    """The values and offsets views of the string columns ``sel`` (group positions) cut to
    ``rows``: one gather of every item, one blob of values (each column's bytes 8-aligned, at
    least one: a buffer view cannot be empty), one blob of UINT32 offsets."""
    values, item_offsets = data
    k, m = len(sel), len(rows)
    items = (sel[:, None] * n + rows[None, :]).ravel()
    starts = item_offsets[items]
    lengths = item_offsets[items + 1] - starts
    cum = np.zeros(k * m + 1, dtype=np.int64)
    np.cumsum(lengths, out=cum[1:])
    col_start = cum[0 : k * m : m]  # each column's first byte in the gathered order
    col_bytes = cum[m::m] - col_start
    padded = _ceil8(np.maximum(col_bytes, 1))
    dest = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(padded, out=dest[1:])
    total = int(cum[-1])
    out = np.zeros(int(dest[-1]), dtype=np.uint8)
    if total:
        idx = np.arange(total, dtype=np.int64)
        out[np.repeat(np.repeat(dest[:-1] - col_start, m), lengths) + idx] = values[np.repeat(starts - cum[:-1], lengths) + idx]
    value_views = builder.buffer_views(out.tobytes(), dest[:-1], np.maximum(col_bytes, 1))
    width = m + 1 + (m + 1) % 2  # UINT32 offsets, rows padded to 8 bytes
    rel = np.zeros((k, width), dtype=np.uint32)
    rel[:, :m] = cum[:-1].reshape(k, m) - col_start[:, None]
    rel[:, m] = col_bytes
    offset_views = builder.buffer_views(rel.tobytes(), np.arange(k, dtype=np.int64) * width * 4, np.full(k, (m + 1) * 4, dtype=np.int64))
    return value_views, offset_views
