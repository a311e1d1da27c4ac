"""CityJSON attributes as typed columns for property tables."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["attribute_columns"]


def attribute_columns(attributes: Iterable[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Typed columns of the objects' attributes, keys in order of first appearance.

    A key whose values are all booleans is BOOLEAN when every object has it, else STRING
    (``"true"``/``"false"``: a metadata BOOLEAN has no noData for the objects without it);
    whole numbers INT32 (INT64 beyond 32 bits); numbers FLOAT64 (NaN where missing); anything
    else STRING, with objects and arrays as JSON text and missing values None (noData).
    """
    rows = list(attributes)
    keys: dict[str, None] = {}
    for a in rows:
        for k in a:
            keys.setdefault(str(k), None)
    columns: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    for key in keys:
        values = [a.get(key) for a in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            if len(present) == len(values):
                columns[key], types[key] = np.array(values, dtype=bool), "BOOLEAN"
            else:
                columns[key] = np.array([None if v is None else ("true" if v else "false") for v in values], dtype=object)
                types[key] = "STRING"
        elif present and all(isinstance(v, int) and not isinstance(v, bool) for v in present) and max(abs(v) for v in present) < 2**63:
            types[key] = "INT32" if max(abs(v) for v in present) < 2**31 else "INT64"
            # missing whole numbers: NaN in a float column, noData when written (exact to 2**53)
            columns[key] = (
                np.array(values, dtype=np.int64)
                if len(present) == len(values)
                else np.array([float("nan") if v is None else float(v) for v in values])
            )
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            columns[key] = np.array([float("nan") if v is None else float(v) for v in values], dtype=np.float64)
            types[key] = "FLOAT64"
        else:
            columns[key] = np.array([None if v is None else v if isinstance(v, str) else _json_text(v) for v in values], dtype=object)
            types[key] = "STRING"
    return columns, types


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
