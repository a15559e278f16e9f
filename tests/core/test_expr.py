"""The expression language: typing, evaluation, explanations and phrases."""

from __future__ import annotations

import pytest

from promptc import ir
from promptc.compiler import compile_text
from promptc.expr import evaluate, explain, phrase

PROGRAM = '''
enum Tag { billing, bug, account }
type Item { name: str, qty: int }
type Out { tag: Tag, reply: str?, items: list[Item], score: float }
task t(body: str, n: int) -> Out {
  prompt "{{ body }} {{ n }}"
  constraint c: %s
}
'''


def node(src: str):
    r = compile_text(PROGRAM % src)
    assert r.ok, r.diagnostics
    return r.program.tasks["t"].constraints[0].expr


ENV = {"body": "Please REFUND me", "n": 3,
       "output": {"tag": "bug", "reply": "x" * 512, "items": [{"name": "a", "qty": 2}], "score": 0.5}}


@pytest.mark.parametrize("src,expected", [
    ("len(output.reply) <= 400", False),
    ("len(output.items) == 1", True),
    ("output.tag == billing when body matches /refund/i", False),
    ("output.tag == billing when body matches /refund/", True),
    ("output.tag in [bug, account]", True),
    ("output.tag not in [bug, account]", False),
    ("body contains \"REFUND\" and not (body contains \"refund\")", True),
    ("output.items[0].qty >= 2 or n > 100", True),
    ("output.items[5].qty > 0", False),
    ("output.items contains output.items[0]", True),
    ("lower(body) == \"please refund me\"", True),
    ("words(body) == 3 and startswith(body, \"Please\") and endswith(upper(body), \"ME\")", True),
    ("abs(output.score) < 1", True),
    ("output.reply != null", True),
    ("\"REF\" in body", True),
])
def test_evaluation(src, expected):
    assert evaluate(node(src), ENV) is expected


def test_null_semantics():
    env = {**ENV, "output": {**ENV["output"], "reply": None}}
    assert evaluate(node("len(output.reply) <= 400"), env) is False
    assert evaluate(node("output.reply == null"), env) is True
    assert evaluate(node("output.reply matches /x/"), env) is False


def test_explain_shows_sub_values():
    why = explain(node("len(output.reply) <= 400"), ENV)
    assert why == ["len(output.reply) = 512"]
    why = explain(node("output.tag == billing when body matches /refund/i"), ENV)
    assert why == ['body = "Please REFUND me"', 'output.tag = "bug"']


@pytest.mark.parametrize("src,text", [
    ("len(output.reply) <= 400", "reply: at most 400 characters"),
    ("len(output.items) >= 1", "items: at least 1 items"),
    ("words(body) < 20", "body: fewer than 20 words"),
    ("not (output.reply matches /sk-[a-z]+/)", "reply: must not match /sk-[a-z]+/"),
    ("output.tag == billing when body matches /refund/i", "tag: must be billing, when body matches /refund/i"),
    ("output.tag in [bug, account]", "tag: must be one of bug, account"),
    ("output.score >= 0 and output.score <= 1", "score: at least 0; and score: at most 1"),
])
def test_phrases(src, text):
    n = node(src)
    types = {"output.items": ir.ListT(ir.AnyT())}
    from promptc.expr import to_source

    assert phrase(n, lambda x: types.get(to_source(x))) == text


@pytest.mark.parametrize("src,code", [
    ("len(n) > 1", "E301"),
    ("body matches 3", "E301"),
    ("n matches /x/", "E301"),
    ("output.tag == biling", "E207"),
    ("output.tag < bug", "E301"),
    ("output.nope == 1", "E204"),
    ("output.items.name == \"a\"", "E204"),
    ("n[0] == 1", "E301"),
    ("len(body, body) > 1", "E310"),
    ("foo(body)", "E205"),
    ("body", "E301"),
    ("body == \"x\" when n", "E301"),
    ("output.tag in body", "E301"),
    ("[1, \"a\"] contains 1", "E301"),
    ("body matches /(/", "E106"),
    ("body matches /a/q", "E106"),
])
def test_type_errors(src, code):
    r = compile_text(PROGRAM % src)
    assert not r.ok
    assert code in [d.code for d in r.diagnostics], r.diagnostics
