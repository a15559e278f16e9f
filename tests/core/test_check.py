"""Check and lower stages: every program is checked, the IR is complete, and mistakes are collected."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptc import ir
from promptc.compiler import compile_file, compile_text
from tests.conftest import PROGRAMS

PROGRAM_FILES = sorted(PROGRAMS.glob("*.prompt"))


@pytest.mark.parametrize("path", PROGRAM_FILES, ids=lambda p: p.stem)
def test_every_program_checks_clean(path: Path):
    r = compile_file(path)
    assert r.ok, [str(d.span) + " " + d.message for d in r.diagnostics]
    assert not [d for d in r.diagnostics if d.severity == "warning"]
    suite_names = {t.task for t in r.program.tests}
    for task in r.program.tasks:
        suite = r.program.tests_for(task)
        assert task in suite_names
        assert len(suite.cases) >= 3 and len(suite.properties) >= 1


def test_route_program_has_balanced_varied_data():
    r = compile_file(PROGRAMS / "route.prompt")
    task = r.program.tasks["route"]
    from collections import Counter

    counts = Counter(e.output for e in task.examples)
    assert len(task.examples) >= 120
    assert set(counts) == {"billing", "bug", "account", "other"}
    assert max(counts.values()) - min(counts.values()) <= 2
    subjects = {e.input["ticket"]["subject"] for e in task.examples}
    assert len(subjects) == len(task.examples)
    assert r.program.targets["route_soft"].options["base"] == "minilm"
    assert r.program.targets["route_text"].kind == "text"


def test_reference_ir():
    r = compile_file(PROGRAMS / "triage.prompt")
    p = r.program
    assert p.name == "triage" and p.version == "1.0.0" and len(p.hash) == 64
    t = p.tasks["triage"]
    assert t.params[0].name == "ticket"
    ticket = t.params[0].type
    assert isinstance(ticket, ir.RecordT)
    assert ticket.field("body") == ir.StrT(min_len=1, max_len=2000)
    assert isinstance(t.output, ir.RecordT) and t.output.field("tag") == ir.EnumT("Tag", ("billing", "bug", "account", "other"))
    assert t.examples[0].output == {"tag": "billing", "urgency": "normal", "needs_human": False, "reply": (
        "Thanks for telling us about this charge. Our billing team will correct it within two business days.")}
    assert t.examples[1].origin.endswith("triage.jsonl:1")
    assert [c.name for c in t.constraints] == ["no_secrets", "refunds", "escalate"]
    assert p.targets["triage_heads"].options["base"] == "minilm"
    assert p.targets["triage_chat"].options["select"] == "first"  # default filled in


def test_collects_every_error_not_just_the_first():
    r = compile_text('''
type T { a: Strr, b: int [max_len=3] }
task t(x: T) -> Tagg {
  prompt "{{ y }}"
  constraint c: len(x.b) > 1
}
target text tt for nope { shot = 1 }
''')
    codes = sorted(d.code for d in r.diagnostics if d.is_error)
    assert codes == ["E201", "E202", "E202", "E203", "E208", "E301", "E306"]


def test_task_hash_changes_with_content_not_with_whitespace():
    a = compile_text('task t(x: str) -> str { prompt "A {{ x }}" }').program.tasks["t"].hash
    b = compile_text('task t(x: str) -> str {\n\n  prompt "A {{ x }}"\n}').program.tasks["t"].hash
    c = compile_text('task t(x: str) -> str { prompt "B {{ x }}" }').program.tasks["t"].hash
    assert a == b != c


def test_examples_file_violating_task_constraint_is_located(tmp_path: Path):
    (tmp_path / "ex.jsonl").write_text(
        '{"input": {"body": "fine"}, "output": "bug"}\n'
        '{"input": {"body": "please refund me"}, "output": "bug"}\n')
    (tmp_path / "p.prompt").write_text(
        'enum Q { billing, bug }\n'
        'task t(body: str) -> Q {\n  prompt "{{ body }}"\n  examples "ex.jsonl"\n'
        '  constraint r: output == billing when body matches /refund/\n}\n')
    r = compile_file(tmp_path / "p.prompt")
    (d,) = [d for d in r.diagnostics if d.is_error]
    assert d.code == "E304" and d.span.path.endswith("ex.jsonl") and d.span.line == 2


def test_template_for_loops_bind_item_types():
    ok = compile_text('type P { name: str }\ntask t(ps: list[P]) -> str {\n'
                      '  prompt "{% for p in ps %}{{ p.name }} {{ loop.index }}{% endfor %}"\n}')
    assert ok.ok, ok.diagnostics
    bad = compile_text('type P { name: str }\ntask t(ps: list[P]) -> str {\n'
                       '  prompt "{% for p in ps %}{{ p.nam }}{% endfor %}"\n}')
    assert [d.code for d in bad.diagnostics] == ["E204"]


@pytest.mark.parametrize("template", [
    "{{ x.__class__ }}", "{{ x['__class__'] }}", "{{ x.mro }}", "{{ x.__class__.__mro__ }}",
    "{{ x.__subclasses__() }}",
])
def test_templates_cannot_reach_python_internals(template):
    r = compile_text('task t(x: str) -> str { prompt "' + template.replace('"', '\\"') + '" }')
    assert not r.ok
    assert r.diagnostics[0].code in ("E210", "E204")


def test_optional_input_and_none_in_expressions():
    r = compile_text('type O { a: str?, n: int? }\n'
                     'task t(x: str?) -> O {\n  prompt "{% if x %}{{ x }}{% endif %}"\n'
                     '  constraint c: len(output.a) < 5 when output.a != null\n'
                     '  example { input { x: null } output { a: null, n: null } }\n'
                     '  example { input { x: "q" } output { a: "abc" } }\n}')
    assert r.ok, r.diagnostics
    assert r.program.tasks["t"].examples[1].output == {"a": "abc"}


def test_string_output_with_constraint_on_return_type():
    r = compile_text('task t(x: str) -> str [max_len=5] {\n  prompt "{{ x }}"\n'
                     '  example { input { x: "a" } output "too long here" }\n}')
    assert [d.code for d in r.diagnostics] == ["E303"]


REFERENCE = (Path(__file__).resolve().parents[2] / "docs" / "reference.prompt")


def test_reference_program_exactly_as_designed(tmp_path: Path):
    """The reference program (docs/reference.prompt), byte for byte, checks clean next to an examples file."""
    (tmp_path / "data").mkdir()
    # the reference's own examples file (programs/triage.prompt has grown past the reference's schema)
    (tmp_path / "data" / "triage.jsonl").write_bytes((Path(__file__).resolve().parents[1] / "cases" /
                                                      "reference_triage.jsonl").read_bytes())
    (tmp_path / "triage.prompt").write_bytes(REFERENCE.read_bytes())
    r = compile_file(tmp_path / "triage.prompt")
    assert r.ok and not r.diagnostics, r.diagnostics


@pytest.mark.parametrize("path,needle", [("a\\u0000b", "invalid examples file path"), (".", "cannot read examples file")])
def test_unusable_examples_paths_are_diagnostics(path, needle):
    r = compile_text('task t(x: str) -> str {\n  prompt "{{ x }}"\n  examples "' + path + '"\n}')
    (d,) = r.diagnostics
    assert d.code == "E108" and needle in d.message and d.span.line == 3


# ------------------------------------------------------------------ newcomer mistakes (issue 10, defect 5)
LINE_ITEMS = '''
type LineItem { name: str, qty: int }
type Invoice { items: LineItem[] }
task t(x: str) -> Invoice {
  prompt "{{ x }}"
  example { input { x: "a" } output { items: [{ name: "a", qty: 1 }] } }
  constraint some: len(output.items) > 0 and output.items[0].qty >= 1
}
'''


def test_list_suffix_is_one_error_at_the_declaration():
    r = compile_text(LINE_ITEMS)
    (d,) = r.diagnostics
    assert (d.code, d.span.line, d.hint) == ("E102", 3, "use list[LineItem]")
    assert "'LineItem[]' is not a list type" in d.message
    fixed = compile_text(LINE_ITEMS.replace("LineItem[]", "list[LineItem]"))
    assert fixed.ok and not fixed.diagnostics


@pytest.mark.parametrize("decl,key,want", [
    ("int [min=1]", "min", "did you mean 'ge'?"),
    ("int [max=9]", "max", "did you mean 'le'?"),
    ("float? [minimum=0]", "minimum", "did you mean 'ge'?"),
    ("str [min=1]", "min", "did you mean 'min_len'?"),
    ("str [max_length=80]", "max_length", "did you mean 'max_len'?"),
    ("list[str] [max=3]", "max", "did you mean 'max_len'?"),
    ("str [patern=/a/]", "patern", "did you mean 'pattern'?"),
    ("bool [min=1]", "min", "no field constraint applies to bool"),
])
def test_unknown_field_constraint_suggests_the_key_for_the_type(decl, key, want):
    r = compile_text(f'type T {{ a: {decl} }}\ntask t(x: str) -> T {{ prompt "{{{{ x }}}}" }}')
    (d,) = r.diagnostics
    assert d.code == "E215" and d.message == f"unknown field constraint '{key}'"
    assert d.hint.startswith(want), d.hint


@pytest.mark.parametrize("out,want", [
    ("{ total: None, paid: true }", "use null"),
    ("{ total: 1.0, paid: True }", "use true"),
    ("{ total: 1.0, paid: FALSE }", "use false"),
])
def test_python_literals_in_values_say_what_to_write(out, want):
    r = compile_text('type O { total: float?, paid: bool }\ntask t(x: str) -> O {\n  prompt "{{ x }}"\n'
                     f'  example {{ input {{ x: "a" }} output {out} }}\n}}')
    (d,) = r.diagnostics
    assert d.code == "E302" and d.message.endswith("got a name") and d.hint.startswith(want)


def test_python_none_in_an_expression_says_use_null():
    r = compile_text('type O { total: float? }\ntask t(x: str) -> O {\n  prompt "{{ x }}"\n'
                     '  constraint c: output.total != None\n}')
    (d,) = r.diagnostics
    assert d.code == "E211" and d.hint.startswith("use null")


ENUM_OUT = '''
enum Sentiment { positive, negative, neutral }
type Review { label: Sentiment }
task bare(text: str) -> Sentiment { prompt "{{ text }}" }
task rec(text: str) -> Review { prompt "{{ text }}" }
test bare { case "c" { input { text: "a" } expect %s } }
test rec { case "c" { input { text: "a" } expect %s } }
'''


@pytest.mark.parametrize("cond", ['== "positive"', '!= "negative"', 'in ["positive", "neutral"]',
                                  'not in ["negative"]', "== positive"])
def test_bare_enum_output_accepts_what_a_record_field_accepts(cond):
    r = compile_text(ENUM_OUT % (f"output {cond}", f"output.label {cond}"))
    assert r.ok and not r.diagnostics, r.diagnostics
    from promptc.expr import evaluate

    (bare,) = r.program.tests_for("bare").cases[0].expects
    (rec,) = r.program.tests_for("rec").cases[0].expects
    assert evaluate(bare[0], {"output": "positive"}) is True
    assert evaluate(rec[0], {"output": {"label": "positive"}}) is True
    assert evaluate(bare[0], {"output": "negative"}) is False
    assert bare[1].replace("output", "output.label", 1) == rec[1]  # the same expression, printed alike


@pytest.mark.parametrize("cond", ['== "negatve"', '"negatve" == {}', 'in ["positive", "negatve"]'])
def test_unknown_member_string_is_the_same_error_on_both(cond):
    def expr(lhs: str) -> str:
        return cond.format(lhs) if "{}" in cond else f"{lhs} {cond}"

    r = compile_text(ENUM_OUT % (expr("output"), expr("output.label")))
    diags = [(d.code, d.message, d.hint) for d in r.diagnostics]
    want = ("E207", "'negatve' is not a member of enum Sentiment", "did you mean 'negative'?")
    assert diags == [want, want]


def test_a_string_still_compares_with_a_string_output():
    r = compile_text('task t(x: str) -> str { prompt "{{ x }}" }\n'
                     'test t { case "c" { input { x: "a" } expect output == "negatve" } }')
    assert r.ok and not r.diagnostics


def test_empty_enum_has_its_own_code():
    r = compile_text('enum Tag { }\ntask t(x: str) -> Tag { prompt "{{ x }}" }')
    assert [d.code for d in r.diagnostics] == ["E313"]


def test_checkpoint_sees_only_errors_after_it():
    from promptc.diagnostics import Diagnostics

    d = Diagnostics()
    d.error("E202", "before", None)
    since = d.checkpoint()
    assert since.ok
    d.warning("W201", "a warning is not an error", None)
    assert since.ok and not since.has_errors
    d.error("E204", "after", None)
    assert since.has_errors and not since.ok


def test_did_you_mean_is_the_one_hint():
    from promptc.diagnostics import did_you_mean

    assert did_you_mean("tikcet", ["ticket", "audience"]) == "did you mean 'ticket'?"
    assert did_you_mean("TICKET", ["ticket"]) == "did you mean 'ticket'?"
    assert did_you_mean("zzz", ["ticket", "audience"]) is None
    assert did_you_mean("zzz", ["ticket", "audience"], "inputs") == "inputs: ticket, audience"
    assert did_you_mean("zzz", [], "inputs") == "there are no inputs"
