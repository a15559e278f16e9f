"""Schemas: the fast validator agrees with the explaining one; strategies only draw valid values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptc import ir
from promptc.schema import is_valid_fn, json_schema, strategy, validate

TYPES = [
    ir.StrT(1, 5),
    ir.StrT(pattern=r"[a-z]+\d"),
    ir.IntT(0, 10),
    ir.FloatT(-1.5, 2.5),
    ir.BoolT(),
    ir.EnumT("E", ("a", "b")),
    ir.ListT(ir.StrT(max_len=3), 1, 2),
    ir.OptionalT(ir.IntT()),
    ir.RecordT("R", (("x", ir.StrT(max_len=4)), ("y", ir.OptionalT(ir.ListT(ir.EnumT("E", ("a", "b"))))))),
    ir.RecordT("Outer", (("inner", ir.RecordT("R2", (("n", ir.IntT(ge=1)),))),)),
]

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-20, 20), st.floats(-3, 3), st.text(max_size=6),
              st.sampled_from(["a", "b", "c", "ab1"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["x", "y", "z", "inner", "n"]), inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=400)
@given(st.sampled_from(TYPES), json_values)
def test_fast_validator_agrees_with_validate(t, value):
    assert is_valid_fn(t)(value) == (not validate(t, value)), (t, value, validate(t, value))


@settings(max_examples=200)
@given(st.data())
def test_strategies_draw_only_valid_values(data):
    t = data.draw(st.sampled_from(TYPES))
    value = data.draw(strategy(t))
    assert validate(t, value) == []


def test_given_overrides_replace_a_path():
    t = ir.RecordT("In", (("ticket", ir.RecordT("T", (("subject", ir.StrT()), ("body", ir.StrT())))),))
    s = strategy(t, {("ticket", "subject"): st.just("fixed")})

    @settings(max_examples=20)
    @given(s)
    def prop(v):
        assert v["ticket"]["subject"] == "fixed"

    prop()


def test_json_schema_shapes():
    t = TYPES[8]
    s = json_schema(t)
    assert s["$ref"] == "#/$defs/R"
    r = s["$defs"]["R"]
    assert r["additionalProperties"] is False and r["properties"]["x"] == {"type": "string", "maxLength": 4}
    assert r["properties"]["y"]["anyOf"][1] == {"type": "null"}
    assert s["$defs"]["E"] == {"type": "string", "enum": ["a", "b"]}
    assert json_schema(ir.StrT(pattern="a+"))["pattern"] == "^(?:a+)$"


# ------------------------------------------------------------------ one rule per type, on every path
# (int: a 64-bit integer, `3.0` included; float: finite). The same value gets the same verdict as an
# inline example, a JSONL example, a task input, a parsed model output, and through Task.check.
ONE_RULE = [
    ("int", "3", True), ("int", "3.0", True), ("int", "-3.0", True), ("int", "3.5", False),
    ("int", "true", False), ("int", '"3"', False), ("int", "9223372036854775807", True),
    ("int", "9223372036854775808", False), ("int", "1e300", False),
    ("float", "3", True), ("float", "2.5e-3", True), ("float", "false", False), ("float", '"1.0"', False),
]


def _program(kind: str, example: str | None) -> str:
    ex = f'  example "e" {{ input {{ x: 1 }} output {{ v: {example} }} }}\n' if example is not None else ""
    return (f'type Out {{ v: {kind} }}\n'
            f'task t(x: {kind}) -> Out {{\n  prompt "{{{{ x }}}}"\n{ex}}}\n')


@pytest.mark.parametrize("kind,text,accepted", ONE_RULE)
def test_one_validation_rule_on_every_path(kind, text, accepted, tmp_path):
    import json

    import promptc
    from promptc.compiler import compile_file, compile_text
    from promptc.errors import InputError
    from promptc.outputs import parse_output
    from promptc.targets.text.prompt import check_inputs

    value = json.loads(text)
    t = ir.IntT() if kind == "int" else ir.FloatT()
    verdicts = {"validate": not validate(t, value), "is_valid_fn": is_valid_fn(t)(value)}
    # an inline example in the program source
    inline = compile_text(_program(kind, text))
    verdicts["inline example"] = not [d for d in inline.diagnostics if d.severity == "error"]
    # a JSONL examples file
    (tmp_path / "ex.jsonl").write_text(json.dumps({"input": {"x": 1}, "output": {"v": value}}) + "\n")
    src = _program(kind, None).replace('  prompt "{{ x }}"\n', '  prompt "{{ x }}"\n  examples "ex.jsonl"\n')
    (tmp_path / "p.prompt").write_text(src)
    jsonl = compile_file(tmp_path / "p.prompt")
    verdicts["jsonl example"] = not [d for d in jsonl.diagnostics if d.severity == "error"]
    # a task input, a parsed model output, and the API's judge of an output
    task = promptc.loads(_program(kind, None)).task("t")
    try:
        check_inputs(task.ir, {"x": value})
        verdicts["input"] = True
    except InputError:
        verdicts["input"] = False
    parsed = parse_output(task.ir.output, json.dumps({"v": value}))
    verdicts["output"] = parsed.ok
    verdicts["Task.check"] = not task.check({"x": 1}, {"v": value})
    assert verdicts == dict.fromkeys(verdicts, accepted), verdicts
    if accepted and kind == "int":
        assert parsed.value == {"v": int(value)} and type(parsed.value["v"]) is int


def test_non_finite_numbers_are_never_floats():
    from promptc.outputs import parse_output

    for text in ("NaN", "Infinity", "-Infinity"):
        assert not parse_output(ir.FloatT(), text).ok
        assert validate(ir.FloatT(), float(text.replace("Infinity", "inf")))
        assert not is_valid_fn(ir.FloatT())(float(text.replace("Infinity", "inf")))
