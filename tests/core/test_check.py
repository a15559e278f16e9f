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
    assert t.examples[0].output == {"tag": "billing", "reply": "Sorry about the double charge. We have refunded it."}
    assert t.examples[1].origin.endswith("triage.jsonl:1")
    assert [c.name for c in t.constraints] == ["no_secrets", "refunds"]
    assert p.targets["triage_soft"].options["virtual_tokens"] == 16
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
    """DESIGN.md §3's program, byte for byte, checks clean next to an examples file."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "triage.jsonl").write_bytes((PROGRAMS / "data" / "triage.jsonl").read_bytes())
    (tmp_path / "triage.prompt").write_bytes(REFERENCE.read_bytes())
    r = compile_file(tmp_path / "triage.prompt")
    assert r.ok and not r.diagnostics, r.diagnostics


@pytest.mark.parametrize("path,needle", [("a\\u0000b", "invalid examples file path"), (".", "cannot read examples file")])
def test_unusable_examples_paths_are_diagnostics(path, needle):
    r = compile_text('task t(x: str) -> str {\n  prompt "{{ x }}"\n  examples "' + path + '"\n}')
    (d,) = r.diagnostics
    assert d.code == "E108" and needle in d.message and d.span.line == 3
