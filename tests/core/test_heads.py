"""The encoder family's heads (promptc/heads.py): which outputs they serve, how outputs become
targets, and best-first decoding that keeps the schema and the constraints. No model: logits are given."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import promptc
from promptc import heads as H
from promptc import ir

TAG = ir.EnumT("Tag", ("billing", "bug", "account"))
URG = ir.EnumT("Urgency", ("low", "normal", "high"))
TRIAGE = ir.RecordT("Triage", (("tag", TAG), ("urgency", URG), ("needs_human", ir.BoolT()),
                               ("reply", ir.StrT(max_len=100))))
REPLIES = ["Thanks, billing will fix it.", "Thanks, we logged the bug.", "Thanks, see your settings."]


def _outputs(n: int = 12) -> list[dict]:
    return [{"tag": TAG.members[i % 3], "urgency": URG.members[i % 3], "needs_human": i % 2 == 0,
             "reply": REPLIES[i % 3]} for i in range(n)]


def test_plan_a_record_one_head_per_field():
    hs = H.plan(TRIAGE, _outputs())
    assert [(h.field, h.kind, h.size) for h in hs.heads] == [("tag", "single", 3), ("urgency", "single", 3),
                                                             ("needs_human", "single", 2), ("reply", "single", 3)]
    assert hs.size == 11 and [h.start for h in hs.heads] == [0, 3, 6, 8]
    assert "reply from 3 templates" in hs.describe() and "enum Tag (3 labels)" in hs.describe()
    assert hs.labels[:4] == ["tag=billing", "tag=bug", "tag=account", "urgency=low"]
    assert H.Heads.from_list(hs.as_list(), TRIAGE) == hs


def test_plan_an_enum_is_the_plain_classifier():
    hs = H.plan(TAG, ["bug", "billing"])
    assert hs.is_root and hs.labels == list(TAG.members)


def test_plan_optional_int_and_multilabel():
    t = ir.RecordT("R", (("stars", ir.IntT(ge=1, le=5)), ("tags", ir.ListT(TAG, max_len=2)),
                         ("team", ir.OptionalT(TAG))))
    hs = H.plan(t, [{"stars": 1, "tags": [], "team": None}])
    assert hs.heads[0].values == (1, 2, 3, 4, 5)
    assert hs.heads[1].kind == "multi" and hs.heads[1].max_items == 2
    assert hs.heads[2].values == ("billing", "bug", "account", None)
    assert hs.encode({"stars": 2, "tags": ["bug", "account"], "team": None}) == [
        0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1]


@pytest.mark.parametrize("field_type, outputs, words", [
    (ir.StrT(), [{"x": f"reply {i}"} for i in range(10)], ["free text", "10 distinct values", "seen only once"]),
    (ir.StrT(), [{"x": f"r{i % 31}"} for i in range(62)], ["31 distinct values", "at most 30"]),
    (ir.IntT(ge=0, le=100), [{"x": 1}], ["101 values", "at most 20"]),
    (ir.IntT(), [{"x": 1}], ["without both `ge` and `le`"]),
    (ir.ListT(TAG), [{"x": []}], ["needs `max_len`"]),
    (ir.FloatT(ge=0, le=1), [{"x": 0.5}], ["is not a finite value"]),
])
def test_unservable_fields_say_why(field_type, outputs, words):
    with pytest.raises(H.Unservable) as e:
        H.plan(ir.RecordT("R", (("x", field_type),)), outputs)
    assert e.value.field == "x"
    for w in words:
        assert w in e.value.why


def test_best_first_is_sorted_and_complete():
    factors = [sorted([(-0.1, 0), (-2.0, 1), (-3.0, 2)], key=lambda p: -p[0]),
               sorted([(-0.5, 0), (-0.9, 1)], key=lambda p: -p[0])]
    got = list(H.best_first(factors))
    assert len(got) == 6 and len({tuple(c) for c in got}) == 6
    scores = [dict((o, lp) for lp, o in factors[0])[c[0]] + dict((o, lp) for lp, o in factors[1])[c[1]] for c in got]
    assert scores == sorted(scores, reverse=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-6, 6).map(lambda v: round(v, 3)), min_size=11, max_size=11))
def test_decode_is_the_argmax_without_constraints(logits):
    hs = H.plan(TRIAGE, _outputs())
    out, tried = hs.decode(logits, {}, ())
    want = {h.field: h.values[max(range(h.size), key=lambda i: (logits[h.start + i], -i))] for h in hs.heads}
    assert out == want and tried == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-6, 6).map(lambda v: round(v, 3)), min_size=11, max_size=11))
def test_decode_keeps_constraints_and_picks_the_most_probable_valid_record(logits):
    prog = promptc.loads(PROGRAM)
    task = prog.ir.tasks["t"]
    hs = H.plan(task.output, _outputs())
    inputs = {"x": "please refund me"}
    out, _ = hs.decode(logits, inputs, task.constraints)
    assert out["tag"] == "billing"
    assert out["needs_human"] or out["urgency"] != "high"
    # exhaustive: no valid record is more probable
    def lp(rec):
        total = 0.0
        for h in hs.heads:
            row = logits[h.start:h.end]
            z = max(row) + math.log(sum(math.exp(v - max(row)) for v in row))
            total += row[h.values.index(rec[h.field])] - z
        return total
    best = max((dict(zip(("tag", "urgency", "needs_human", "reply"), c)) for c in itertools.product(
        TAG.members, URG.members, (False, True), REPLIES)),
        key=lambda r: (r["tag"] == "billing" and (r["needs_human"] or r["urgency"] != "high"), lp(r)))
    assert lp(out) == pytest.approx(lp(best))


PROGRAM = """program p "1"
enum Tag { billing, bug, account }
enum Urgency { low, normal, high }
type Triage { tag: Tag, urgency: Urgency, needs_human: bool, reply: str [max_len=100] }
task t(x: str) -> Triage {
  prompt "{{ x }}"
  constraint refunds: output.tag == billing when x matches /refund/
  constraint escalate: output.needs_human when output.urgency == high
}
"""


def test_violation_table_covers_the_constrained_heads_only():
    prog = promptc.loads(PROGRAM)
    task = prog.ir.tasks["t"]
    hs = H.plan(task.output, _outputs())
    assert H.constrained_fields(task.constraints) == {"tag", "urgency", "needs_human"}
    got = H.violation_table(hs, task.constraints, {"x": "hello"}, _outputs()[0])
    assert got is not None
    fields, table = got
    assert [h.field for h in fields] == ["tag", "urgency", "needs_human"] and len(table) == 18
    # only urgency=high with needs_human=false breaks a constraint for this input: one per tag
    broken = [c for c, v in zip(itertools.product(TAG.members, URG.members, (False, True)), table) if v]
    assert broken == [(t, "high", False) for t in TAG.members]


def test_predict_text_is_json_for_records_and_the_member_for_enums():
    hs = H.plan(TRIAGE, _outputs())
    text = hs.predict_text([0.0] * 11, None)
    assert set(json.loads(text)) == {"tag", "urgency", "needs_human", "reply"}
    assert H.plan(TAG, []).predict_text([0.0, 2.0, 1.0], None) == "bug"


@pytest.mark.parametrize("text, kind, value, where", [
    ("Total due: 1,500.00 EUR.", "float", 1500.0, "1,500.00"),
    ("pay 42 now", "int", 42, "42"),
    ("pay 42.50 now", "int", 42, None),  # 42.50 is not the int 42
    ("ref 2024-03-01, 7 items", "int", 7, "7"),
    ("no numbers here", "float", 3.0, None),
])
def test_numbers_written_in_the_input_are_found_as_written(text, kind, value, where):
    got = H.find_value(value, text, kind)
    assert (text[got[0]:got[1]] if got else None) == where
    if where:
        assert H.parse_number(where, kind) == value


def test_span_candidates_copy_exact_text_and_offer_null_for_optional_fields():
    text = "x\nInvoice from ACME GmbH total 12.50"
    # tokens: [CLS], "x", then the field's tokens by character offsets
    offsets = [(0, 0), (0, 1), (2, 9), (10, 14), (15, 19), (20, 24), (25, 30), (31, 36)]
    start = [0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0]
    end = [0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0]
    cands = H.span_candidates(start, end, offsets, text, (2, 36), nullable=True)
    assert cands[0][1] == "ACME GmbH" and any(v is None for _, v in cands)
    assert all(v is None or v in text[2:36] for _, v in cands)
    nums = H.span_candidates([0, 0, 0, 0, 0, 0, 0, 5.0], [0, 0, 0, 0, 0, 0, 0, 5.0], offsets, text, (2, 36),
                             nullable=False, number="float")
    assert nums[0][1] == 12.5 and all(isinstance(v, float) for _, v in nums)


def test_a_bounded_int_written_in_the_input_is_copied_and_one_inferred_is_a_class():
    t = ir.RecordT("R", (("seats", ir.OptionalT(ir.IntT(ge=1, le=10))), ("stars", ir.IntT(ge=1, le=5))))
    inputs = [{"m": f"we need {n} seats, great service"} for n in (2, 4, 7)]
    outputs = [{"seats": n, "stars": s} for n, s in ((2, 5), (4, 4), (7, 5))]
    hs = H.plan(t, outputs, inputs)
    assert [(h.field, h.kind) for h in hs.heads] == [("seats", "span"), ("stars", "single")]
    assert hs.heads[0].number == "int" and "int written in m (3 of 3" in hs.heads[0].why
    assert hs.heads[1].why == "int 1..5"
    none_written = H.plan(t, outputs, [{"m": "x"}] * 3)
    assert none_written.heads[0].why == "int 1..10 or null"
