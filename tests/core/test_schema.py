"""Schemas: the fast validator agrees with the explaining one; strategies only draw valid values."""

from __future__ import annotations

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
