"""The combined-conditions grammar: right answers, three-valued logic, and a 400-class error
(CimInputError naming the parameter) for anything else, hostile text included."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cim.errors import CimInputError
from cim.query.where import MAX_DEPTH, evaluate, parse_where

TYPES = {"height": "number", "floors": "integer", "use": "string", "old": "boolean", "名称": "string"}


@pytest.fixture(scope="module")
def columns():
    rng = np.random.default_rng(3)
    n = 500
    height = np.round(rng.uniform(3, 120, n), 1)
    height[::17] = np.nan  # missing values
    use = np.array([["residential", "commercial", "it's", None][i % 4] for i in range(n)], dtype=object)
    return {
        "height": height,
        "floors": rng.integers(1, 40, n).astype(np.float64),
        "use": use,
        "old": (rng.random(n) < 0.3).astype(np.float64),
        "名称": np.array([f"楼{i}" for i in range(n)], dtype=object),
    }


def rows(text, columns):
    return set(np.flatnonzero(evaluate(parse_where(text, TYPES), columns)).tolist())


def test_conditions_give_the_rows_python_gives(columns):
    h, f, u, o = columns["height"], columns["floors"], columns["use"], columns["old"]
    n = len(h)

    def py(pred):
        return {i for i in range(n) if pred(i)}

    known = ~np.isnan(h)
    assert rows("height > 50 AND use = 'residential'", columns) == py(lambda i: known[i] and h[i] > 50 and u[i] == "residential")
    assert rows("floors BETWEEN 10 AND 20", columns) == py(lambda i: 10 <= f[i] <= 20)
    assert rows("floors NOT BETWEEN 10 AND 20", columns) == py(lambda i: not 10 <= f[i] <= 20)
    assert rows("use IN ('commercial', 'it''s')", columns) == py(lambda i: u[i] in ("commercial", "it's"))
    assert rows("use = 'it''s' OR (height <= 10 AND NOT old = TRUE)", columns) == py(
        lambda i: u[i] == "it's" or (known[i] and h[i] <= 10 and o[i] != 1)
    )
    assert rows("use IS NULL", columns) == py(lambda i: u[i] is None)
    assert rows("height IS NOT NULL AND floors >= 39", columns) == py(lambda i: known[i] and f[i] >= 39)
    assert rows("\"名称\" = '楼7'", columns) == {7}
    assert rows("名称 <> '楼7' AND floors < 2", columns) == py(lambda i: i != 7 and f[i] < 2)
    assert rows("use != 'residential'", columns) == py(lambda i: u[i] is not None and u[i] != "residential")
    assert rows("height > 1e1", columns) == py(lambda i: known[i] and h[i] > 10)


def test_missing_values_are_unknown_as_in_sql(columns):
    missing = set(np.flatnonzero(np.isnan(columns["height"])).tolist())
    above, not_above = rows("height > 50", columns), rows("NOT height > 50", columns)
    assert missing and not (above | not_above) & missing
    assert above | not_above | missing == set(range(len(columns["height"])))
    # unknown OR true is true; unknown AND false is false
    assert missing <= rows("height > 50 OR floors >= 1", columns)
    assert not missing & rows("NOT (height > 50 AND floors < 0)", columns) - rows("floors >= 0", columns)


@pytest.mark.parametrize(
    "text, words",
    [
        ("heigth > 5", ["unknown attribute", "heigth", "height"]),
        ("use > 5", ["use", "string", "quote"]),
        ("height = 'tall'", ["height", "number"]),
        ("old = 1 AND height = TRUE", ["height", "boolean"]),
        ("height >", ["expected a value", "height"]),
        ("height > 5 AND", ["attribute name"]),
        ("(height > 5", ["expected )"]),
        ("height > 5)", ["unexpected"]),
        ("height BETWEEN 1 OR 2", ["expected AND"]),
        ("use IN ()", ["expected a value"]),
        ("use NOT = 'x'", ["BETWEEN or IN"]),
        ("", ["empty"]),
        ("height > 5; DROP TABLE features", ["unexpected", "character 11"]),
        ("height > 5 -- comment", ["unexpected", "--"]),
        ("use = 'unterminated", ["unexpected"]),
        ("height > 1e999", ["not finite"]),
    ],
)
def test_errors_name_the_parameter_and_the_problem(columns, text, words):
    with pytest.raises(CimInputError) as err:
        evaluate(parse_where(text, TYPES), columns)
    message = str(err.value)
    assert message.startswith("parameter 'where'")
    for word in words:
        assert word in message, (text, message)


def test_deep_nesting_and_long_text_are_refused_not_crashing(columns):
    deep = "(" * (MAX_DEPTH + 5) + "height > 1" + ")" * (MAX_DEPTH + 5)
    with pytest.raises(CimInputError, match="nests deeper"):
        parse_where(deep, TYPES)
    with pytest.raises(CimInputError, match="nests deeper"):
        parse_where("NOT " * 1000 + "height > 1", TYPES)
    with pytest.raises(CimInputError, match="longer than"):
        parse_where("height > 1 AND " * 800 + "height > 1", TYPES)
    # the longest flat chain the length allows evaluates (no recursion limit is reached)
    chain = " OR ".join(["old=1"] * 450)
    assert len(chain) < 4096 and rows(chain, columns) == rows("old = 1", columns)
    shallow = "(" * 10 + "height > 1" + ")" * 10
    assert rows(shallow, columns) == rows("height > 1", columns)
    long_string = "use = '" + "x" * 3000 + "'"
    assert rows(long_string, columns) == set()


def test_random_hostile_text_is_an_input_error_or_an_answer(columns):
    """Seeded fuzzing: fragments of the grammar, SQL, quotes, unicode and junk, shuffled."""
    pieces = [
        "height", "floors", "use", "old", "名称", "AND", "OR", "NOT", "BETWEEN", "IN", "IS", "NULL", "TRUE",
        "(", ")", ",", "=", "<>", "!=", "<", ">=", "'", "''", '"', "'x'", "'秦州区'", "5", "-3.5e2", "1e400",
        ";", "--", "/*", "*/", "DROP TABLE features", "\x00", "\u202e", "🏢", "\\", "%", "_", "0x10", "\n",
    ]  # fmt: skip
    rnd = random.Random(13)
    answered = refused = 0
    valid = [
        "height > 50 AND use = 'residential'",
        "floors BETWEEN 3 AND 9 OR NOT old = TRUE",
        "use IN ('commercial', '秦州区') AND ( height <= 20 OR height IS NULL )",
    ]
    for k in range(3000):
        if k % 2:  # junk
            text = " ".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 12)))
        else:  # a valid condition with one token replaced, dropped or added
            words = rnd.choice(valid).split()
            at = rnd.randrange(len(words))
            action = rnd.choice(("replace", "drop", "add", "keep"))
            if action == "replace":
                words[at] = rnd.choice(pieces)
            elif action == "drop":
                del words[at]
            elif action == "add":
                words.insert(at, rnd.choice(pieces))
            text = " ".join(words)
        try:
            mask = evaluate(parse_where(text, TYPES), columns)
        except CimInputError as exc:
            assert str(exc).startswith("parameter 'where'"), text
            refused += 1
        else:
            assert mask.dtype == bool and mask.shape == (500,)
            answered += 1
    assert answered > 300 and refused > 1500
