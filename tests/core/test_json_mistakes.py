"""The common JSONL mistakes in plain words (datafiles.json_mistake), at the right column; anything else
keeps json's own words. tests/cases/errors/examples_mistakes.out shows them through `promptc check`."""

from __future__ import annotations

import json

import pytest

from promptc.datafiles import json_mistake

CASES = [
    ('{"a": 1,}', "trailing comma before '}'", 8),
    ('[1, 2,]', "trailing comma before ']'", 6),
    ("{'a': 1}", "single-quoted string", 2),
    ('{"a": \'x\'}', "single-quoted string", 7),
    ('{"a": [1, 2', "the line ends before ']': the '[' at column 7 is never closed", 12),
    ('{', "the line ends before '}': the '{' at column 1 is never closed", 2),
    ('{"a": "[{", "b": 1', "the line ends before '}': the '{' at column 1 is never closed", 19),
    ('{"a": 1}{"b": 2}', "two JSON values on one line", 9),
    ('{"a": 1} x', "unexpected text after the object", 10),
    ('\ufeff{"a": 1}', "a byte-order mark (BOM) inside the file", 1),
    ('{"a": True}', "True is not JSON", 7),
    ('{"a": None}', "None is not JSON", 7),
    ('{a: 1}', "an object key without double quotes", 2),
    ('{"a": [1, 2}', "'}' where ']' should close the '[' at column 7", 12),
    ('{"a" 1}', "a colon is missing after the key", 6),
    ('{"a": 1 "b": 2}', "a comma is missing between two items", 9),
    ('{"a": "abc', "a string is never closed", 7),
]


@pytest.mark.parametrize("text,message,col", CASES, ids=[c[1][:30] for c in CASES])
def test_mistakes_in_plain_words(text, message, col):
    with pytest.raises(json.JSONDecodeError) as e:
        json.loads(text)
    got, got_col, hint = json_mistake(text, e.value)
    assert got.startswith(message) and got_col == col, (got, got_col)
    assert hint and "Expecting" not in got


def test_a_bom_inside_a_string_is_not_blamed():
    text = '{"a": "\ufeff", "b": 1,}'
    with pytest.raises(json.JSONDecodeError) as e:
        json.loads(text)
    assert json_mistake(text, e.value)[0] == "trailing comma before '}'"


def test_anything_else_keeps_json_words():
    text = '{"a": -}'
    with pytest.raises(json.JSONDecodeError) as e:
        json.loads(text)
    message, col, _ = json_mistake(text, e.value)
    assert message == f"invalid JSON: {e.value.msg}" and col == e.value.colno
