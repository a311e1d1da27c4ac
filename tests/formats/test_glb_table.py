"""ColumnBlock writes the property tables add_property_table writes, and only valid buffer views."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cim.formats.glb import (
    BOOLEAN_ENUM,
    BOOLEAN_ENUM_DEFINITION,
    BOOLEAN_ENUM_NO_DATA,
    FeatureColumns,
    GltfBuilder,
    add_property_table,
    read_glb,
    read_property_table,
)
from cim.formats.glb_table import ColumnBlock

N = 37
TYPES = {
    "name": "STRING",
    "label": "STRING",
    "empty": "STRING",
    "area": "FLOAT64",
    "storeys": "INT32",
    "code": "INT64",
    "external": "BOOLEAN",
    "rooms": "INT32",
    "loadbearing": "BOOLEAN",
}


def _columns(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "name": np.array([None if rng.random() < 0.3 else "wäll-" * int(rng.integers(0, 4)) for _ in range(N)], dtype=object),
        "label": np.array(["标高 1"] * N, dtype=object),
        "empty": np.array([None] * N, dtype=object),  # no value in any row: never written
        "area": np.where(rng.random(N) < 0.4, np.nan, rng.random(N) * 100),
        "storeys": rng.integers(-5, 5, N).astype(np.int64),  # odd row counts need padding to 8 bytes
        "code": np.where(rng.random(N) < 0.4, np.nan, rng.integers(0, 9, N)).astype(float),
        "external": rng.random(N) < 0.5,
        "rooms": rng.integers(0, 50, N).astype(np.int64),  # a second column of each fixed kind: rows must stay 8-aligned
        "loadbearing": rng.random(N) < 0.5,
    }


def _tables(rows: np.ndarray, block: ColumnBlock, columns: FeatureColumns) -> tuple[dict, dict, dict, bytes]:
    """The reference (add_property_table on the columns encoded one by one) and the block's table."""
    used = [c for c, keep in zip(columns.columns, block.has_value[:, rows].any(axis=1)) if keep]
    ref, ours = GltfBuilder(), GltfBuilder()
    for b in (ref, ours):
        b.buffer_view(b"xyz")  # a view before the table: offsets must not assume they start at 0
    add_property_table(ref, FeatureColumns(used).take(rows, "element"))
    block.add_table(ours, rows, "element")
    ref_doc, ref_bin = read_glb(ref.to_glb())
    doc, binary = read_glb(ours.to_glb())
    return ref_doc, read_property_table(ref_doc, ref_bin), doc, binary


@pytest.mark.parametrize("pick", ["all", "five", "one", "eight-shuffled"])
def test_block_tables_match_add_property_table(pick):
    raw = _columns()
    columns = FeatureColumns.encode(raw, TYPES)
    present = {"external": np.random.default_rng(2).random(N) < 0.7}
    block = ColumnBlock(raw, TYPES, present)
    rng = np.random.default_rng(3)
    rows = {"all": np.arange(N), "five": np.sort(rng.permutation(N)[:5]), "one": np.array([3]), "eight-shuffled": rng.permutation(N)[:8]}[
        pick
    ]
    ref_doc, ref_values, doc, binary = _tables(rows, block, columns)
    values = read_property_table(doc, binary)
    # a boolean some rows lack reads back as no value there (an enum with noData), else the same
    ref_values["external"] = [bool(raw["external"][i]) if present["external"][i] else None for i in rows.tolist()]
    assert values == ref_values
    assert "empty" not in values  # a column with no value in these rows is left out
    ext, ref_ext = doc["extensions"]["EXT_structural_metadata"], ref_doc["extensions"]["EXT_structural_metadata"]
    schema, ref_schema = json.loads(json.dumps(ext["schema"])), json.loads(json.dumps(ref_ext["schema"]))
    external = schema["classes"]["element"]["properties"].pop("external")
    ref_schema["classes"]["element"]["properties"].pop("external")
    assert external == {"name": "external", "type": "ENUM", "enumType": BOOLEAN_ENUM, "noData": BOOLEAN_ENUM_NO_DATA}
    assert schema.pop("enums") == {BOOLEAN_ENUM: BOOLEAN_ENUM_DEFINITION}
    assert schema == ref_schema  # same definitions, noData included
    assert list(ext["propertyTables"][0]["properties"]) == list(ref_ext["propertyTables"][0]["properties"])  # same order
    views = doc["bufferViews"]
    for entry in ext["propertyTables"][0]["properties"].values():
        for key in ("values", "stringOffsets"):
            if key in entry:
                view = views[entry[key]]
                assert view["byteOffset"] % 8 == 0 and view["byteLength"] > 0
                assert view["byteOffset"] + view["byteLength"] <= len(binary)


def test_block_has_value_follows_nulls_and_presence():
    raw = _columns()
    present = {"external": np.arange(N) % 3 == 0}
    block = ColumnBlock(raw, TYPES, present)
    has = dict(zip(TYPES, block.has_value))
    assert has["name"].tolist() == [v is not None and v != "" for v in raw["name"]]
    assert not has["empty"].any() and has["label"].all() and has["storeys"].all()
    assert has["area"].tolist() == (~np.isnan(raw["area"])).tolist()
    assert has["code"].tolist() == (~np.isnan(raw["code"])).tolist()
    assert has["external"].tolist() == present["external"].tolist()


def test_block_encodes_as_encode_column():
    """Column by column, the block's matrices and strings are what encode_column makes (noData
    declared where a column holds a null; integers given as integers converted exactly)."""
    raw = _columns() | {"big": np.array([2**53 + 1] * N, dtype=np.int64), "odd": np.array([1.0, "x", None] * 12 + [3], dtype=object)}
    types = TYPES | {"big": "INT64", "odd": "STRING"}
    block = ColumnBlock(raw, types)
    for j, (name, ref) in enumerate(zip(raw, FeatureColumns.encode(raw, types).columns)):
        assert block.definitions[j] == {
            "name": name,
            **({"type": ref.kind} if ref.kind in ("STRING", "BOOLEAN") else {"type": "SCALAR", "componentType": ref.kind}),
            **({"noData": ref.no_data} if ref.no_data is not None else {}),
        }
        pos, data = block.groups[ref.kind]
        k = int(np.flatnonzero(pos == j)[0])
        if ref.kind == "STRING":
            values, offsets = data
            assert values[offsets[k * N] : offsets[(k + 1) * N]].tobytes() == ref.values.tobytes()
            np.testing.assert_array_equal(offsets[k * N : (k + 1) * N + 1] - offsets[k * N], ref.offsets)
        else:
            assert data[k].dtype == ref.values.dtype
            np.testing.assert_array_equal(data[k], ref.values)
    assert block.groups["INT64"][1][-1][0] == 2**53 + 1


def test_block_refuses_what_it_cannot_write():
    raw = _columns()
    with pytest.raises(ValueError, match="at least one row"):
        ColumnBlock(raw, TYPES).add_table(GltfBuilder(), np.array([], dtype=np.int64), "element")
    with pytest.raises(ValueError, match="different lengths"):
        ColumnBlock({"area": raw["area"], "x": np.arange(3.0)}, {"area": "FLOAT64", "x": "FLOAT64"})
    with pytest.raises(ValueError, match="unsupported metadata type 'FLOAT16' for 'x'"):
        ColumnBlock({"x": np.arange(3.0)}, {"x": "FLOAT16"})


def test_raw_json_is_spliced_verbatim_even_when_a_name_looks_like_its_placeholder(monkeypatch):
    import json

    import cim.formats.glb as glb

    first = bytes([1] * 6)
    tags = iter([first, bytes([2] * 6)])  # the first tag is taken by a value below: drawn again
    monkeypatch.setattr(glb.os, "urandom", lambda n: next(tags))
    taken = f"cim-raw-{first.hex()}-0"
    tree = {"b": taken, "a": glb.RawJSON('{"x":[1,2.5,"y"]}'), "c": [glb.RawJSON("-1.7976931348623157e+308")]}
    out = json.loads(glb._dumps(tree))
    assert out == {"b": taken, "a": {"x": [1, 2.5, "y"]}, "c": [-1.7976931348623157e308]}


def test_names_that_make_one_identifier_keep_the_last_column():
    """ "Pset.A" and "Pset_A" are both property Pset_A: one entry, the last column's (as
    add_property_table's dictionary keeps it), never a duplicate JSON key."""
    raw = {"Pset.A": np.array(["x", "y"], dtype=object), "Pset_A": np.array([1.5, 2.5])}
    types = {"Pset.A": "STRING", "Pset_A": "FLOAT64"}
    block = ColumnBlock(raw, types)
    b = GltfBuilder()
    block.add_table(b, np.arange(2), "element")
    doc, binary = read_glb(b.to_glb())
    ref = GltfBuilder()
    add_property_table(ref, FeatureColumns.encode(raw, types).take(np.arange(2), "element"))
    ref_doc, ref_bin = read_glb(ref.to_glb())
    assert read_property_table(doc, binary) == read_property_table(ref_doc, ref_bin) == {"Pset_A": [1.5, 2.5]}
    glb = b.to_glb()
    text = glb[20 : 20 + int.from_bytes(glb[12:16], "little")].decode()
    assert text.count('"Pset_A":{"name"') == 1  # (json.loads would hide a duplicate key)
