"""What a finished layer build produced, kept so that a rebuild with unchanged inputs skips it.

A city rebuilt after one layer's inputs changed should cost that layer's work only. A layer
whose cache key (its plan's build key, its options, and the content of the layers built before
it, see :func:`cim.layers.base.run_layer`) is the one of its last published build, with every
file of that build still on disk, has nothing to make: :func:`cim.layers.base.run_layer` then takes its :class:`LayerOutput` (counts,
bounds, schema, kind-specific info, search rows, warnings) from this cache instead of running
its jobs. The layer's index is read back from disk (the store checks it is unchanged).

The cache lives in the city's admin folder, ``CITY/.cim/layers/<layer id>.json`` (the search
rows' numeric arrays beside it in ``<layer id>.npz``; no pickle: a city folder is data, never
code). Anything it cannot represent (an attribute column of mixed objects) means no cache for
that layer, never a wrong one. Only :func:`cim.build` uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from cim.store import atomic_path, atomic_write_json

__all__ = ["CACHE_DIR", "save_result", "load_result", "drop_result"]

CACHE_DIR = ".cim/layers"
FORMAT = 3  # 2: the heights note kept too; 3: footprint rings and areas of the search rows


class _Unrepresentable(Exception):
    pass


def _plain(value: Any) -> Any:
    """JSON-ready copy of ``value`` (numpy scalars and arrays as Python values)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise _Unrepresentable(type(value).__name__)


def _array(value: np.ndarray, name: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """An array: numeric, boolean and fixed-width text ones go to the npz file, object ones of
    plain values (text, numbers, None) to JSON."""
    if value.dtype.kind in "biufUS":
        arrays[name] = value
        return {"npz": name}
    if value.dtype.kind == "O":
        items = value.tolist()
        if all(v is None or isinstance(v, (str, int, float, bool)) for v in items):
            return {"object": items}
    raise _Unrepresentable(f"array {name} of dtype {value.dtype}")


def _unarray(doc: dict[str, Any], arrays: Any) -> np.ndarray:
    if "npz" in doc:
        return np.asarray(arrays[doc["npz"]])
    out = np.empty(len(doc["object"]), dtype=object)
    out[:] = doc["object"]
    return out


_ROW_ARRAYS = ("ids", "titles", "texts", "lon", "lat", "west", "south", "east", "north", "base", "top")


def _rows_doc(rows: Any, n: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    doc: dict[str, Any] = {"layer": rows.layer}
    for name in _ROW_ARRAYS:
        value = getattr(rows, name)
        doc[name] = None if value is None else _array(np.asarray(value), f"r{n}_{name}", arrays)
    doc["properties"] = None if rows.properties is None else _plain(rows.properties)
    doc["columns"] = None if rows.columns is None else {k: _array(np.asarray(v), f"r{n}_c_{k}", arrays) for k, v in rows.columns.items()}
    doc["types"] = rows.types
    doc["title_column"] = rows.title_column
    doc["text_columns"] = list(rows.text_columns)
    # the footprints the index's feature store keeps (lon/lat rings) and their areas
    rings = getattr(rows, "rings", None)
    doc["rings"] = None if rings is None else [_array(np.asarray(a), f"r{n}_ring{i}", arrays) for i, a in enumerate(rings)]
    areas = getattr(rows, "areas", None)
    doc["areas"] = None if areas is None else _array(np.asarray(areas), f"r{n}_areas", arrays)
    doc["derived"] = list(getattr(rows, "derived", ()))
    return doc


def _rows_from(doc: dict[str, Any], arrays: Any) -> Any:
    from cim.searchindex import SearchRows

    values: dict[str, Any] = {name: None if doc[name] is None else _unarray(doc[name], arrays) for name in _ROW_ARRAYS}
    columns = None if doc["columns"] is None else {k: _unarray(v, arrays) for k, v in doc["columns"].items()}
    return SearchRows(
        doc["layer"],
        **values,
        properties=doc["properties"],
        columns=columns,
        types=doc["types"],
        title_column=doc["title_column"],
        text_columns=tuple(doc["text_columns"]),
        rings=None if doc.get("rings") is None else cast(Any, tuple(_unarray(a, arrays) for a in doc["rings"])),
        areas=None if doc.get("areas") is None else _unarray(doc["areas"], arrays),
        derived=tuple(doc.get("derived", ())),
    )


def _paths(city: Path, layer_id: str) -> tuple[Path, Path]:
    folder = city / CACHE_DIR
    return folder / f"{layer_id}.json", folder / f"{layer_id}.npz"


def save_result(
    city: Path,
    layer_id: str,
    key: str,
    files: int,
    output: Any,
    rows: list[Any],
    warnings: Sequence[Warning],
    heights: str = "as given",
) -> bool:
    """Keep what a published layer build produced (``output``: its :class:`LayerOutput`, the
    index left out; ``rows``: the search rows it handed over; ``files``: its file count;
    ``heights``: how its heights reached the city's datum).
    Returns False when something could not be represented (then no cache is kept)."""
    doc_path, npz_path = _paths(city, layer_id)
    arrays: dict[str, np.ndarray] = {}
    try:
        info = output.info
        doc = {
            "format": FORMAT,
            "key": key,
            "files": files,
            "output": {
                f.name: _plain(getattr(output, f.name)) for f in dataclasses.fields(output) if f.name not in ("index", "info", "search")
            },
            "info": None
            if info is None
            else {"class": f"{type(info).__module__}:{type(info).__qualname__}", "fields": _plain(dataclasses.asdict(info))},
            "search": None if output.search is None or any(r is output.search for r in rows) else _rows_doc(output.search, 0, arrays),
            "search_row": next((i for i, r in enumerate(rows) if r is output.search), None),
            "rows": [_rows_doc(r, i + 1, arrays) for i, r in enumerate(rows)],
            "warnings": [{"class": f"{type(w).__module__}:{type(w).__qualname__}", "message": str(w)} for w in warnings],
            "heights": heights,
        }
    except _Unrepresentable:
        drop_result(city, layer_id)
        return False
    doc_path.parent.parent.mkdir(mode=0o700, exist_ok=True)  # CITY/.cim is private (cim.access)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(doc_path)  # the record goes last: never a record with another build's arrays
    if arrays:
        with atomic_path(npz_path) as tmp, open(tmp, "wb") as f:
            cast(Any, np.savez)(f, **arrays)  # (numpy stubs read a second argument as allow_pickle)
    atomic_write_json(doc_path, doc, pretty=False)
    return True


def drop_result(city: Path, layer_id: str) -> None:
    """Forget a layer's cached result (its build is running again)."""
    for path in _paths(city, layer_id):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _load_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def load_result(city: Path, layer_id: str, key: str, files: int) -> tuple[dict[str, Any], Any, Any, list[Any], list[Warning], str] | None:
    """The cached result of the layer's build with ``key`` and ``files`` files, or None:
    ``(output fields, info, search rows, rows handed over, warnings, heights)``."""
    doc_path, npz_path = _paths(city, layer_id)
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT or doc.get("key") != key or doc.get("files") != files:
            return None
        arrays = np.load(npz_path, allow_pickle=False) if npz_path.exists() else {}
        info = None
        if doc["info"] is not None:
            info = _load_class(doc["info"]["class"])(**doc["info"]["fields"])
        rows = [_rows_from(r, arrays) for r in doc["rows"]]
        search = rows[doc["search_row"]] if doc.get("search_row") is not None else None
        if doc["search"] is not None:
            search = _rows_from(doc["search"], arrays)
        warns: list[Warning] = [_load_class(w["class"])(w["message"]) for w in doc["warnings"]]
        return doc["output"], info, search, rows, warns, str(doc.get("heights", "as given"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError):
        return None
