"""Class 8 (issue 11): deep or odd input gets a diagnostic or success, never an internal error, and a
program that checks compiles and renders. The mutation fuzz lives in tests/core/test_fuzz.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from promptc.cli import main
from promptc.compiler import compile_text

CASES = {
    "100 parentheses in a template": ('task t(x: str) -> str { prompt "{{ ' + "(" * 100 + "x" + ")" * 100 + ' }}" }',
                                     "E219"),
    "250 nested list[": ("task t(x: " + "list[" * 250 + "str" + "]" * 250 + ') -> str { prompt "{{ x }}" }', "E111"),
    "250 nested record literals": ('type R { a: str }\ntask t(x: str) -> str { prompt "{{ x }}"\n'
                                   "  example { input { x: " + "{ a: " * 250 + '"v"' + " }" * 250
                                   + ' } output "o" } }', "E111"),
    "250 nested list literals": ('task t(x: str) -> str { prompt "{{ x }}"\n  constraint c: len('
                                 + "[" * 250 + "]" * 250 + ") > 0 }", "E111"),
    "a 500-term or": ('task t(x: str) -> bool { prompt "{{ x }}"\n  constraint c: '
                      + " or ".join(['x == "a"'] * 500) + " }", "E111"),
    "a lone surrogate escape": ('task t(x: str) -> str { prompt "{{ x }}\\ud800" }', "E109"),
    "a huge regex repeat": ('type T { a: str [pattern=/a{99999999999}/] }\n'
                            'task t(x: str) -> T { prompt "{{ x }}" }', "E106"),
    "a catastrophic regex": ('task t(x: str) -> str { prompt "{{ x }}"\n  constraint c: not (output matches /(a+)+$/) }',
                             "E106"),
    "a 5,000-digit integer": ('task t(x: str) -> int { prompt "{{ x }}"\n  example { input { x: "a" } output '
                              + "9" * 5000 + " } }", "E112"),
    "a 5,000-digit path index": ('task t(x: list[str]) -> str { prompt "{{ x }}"\n  constraint c: x['
                                 + "9" * 5000 + '] == "a" }', "E112"),
    "an integer over 64 bits": ('task t(x: str) -> int { prompt "{{ x }}"\n  example { input { x: "a" } output '
                                "9223372036854775808 } }", "E112"),
    "a float literal that overflows": ('type T { a: float [le=1e999] }\ntask t(x: str) -> T { prompt "{{ x }}" }',
                                       "E112"),
    "not 400 times in a template": ('task t(x: str) -> str { prompt "{{ ' + "not " * 400 + 'x }}" }', "E219"),
    "a 5,000-digit number in a template": ('task t(x: str) -> str { prompt "{{ x }}{{ ' + "9" * 5000 + ' }}" }',
                                           "E112"),
    "an unterminated comment at the end of a template": ('task t(x: str) -> str { prompt "{{ x }} {#" }', "E105"),
    "loop outside a for loop": ('task t(x: str) -> str { prompt "{{ x }}{{ loop.index }}" }', "E201"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_odd_input_is_a_located_diagnostic(name: str):
    text, code = CASES[name]
    r = compile_text(text, "odd.prompt")
    assert not r.ok
    errors = [d for d in r.diagnostics if d.is_error]
    assert errors[0].code == code, errors
    assert all(d.span is not None and d.span.line >= 1 for d in errors)


def test_a_lone_surrogate_in_text_is_a_diagnostic_not_a_crash():
    r = compile_text('task t(x: str) -> str { prompt "{{ x }}\ud800" }')
    assert [d.code for d in r.diagnostics] == ["E101"]


def test_surrogate_pairs_are_characters():
    r = compile_text('task t(x: str) -> str { prompt "{{ x }} \\ud83d\\ude00" }')
    assert r.ok and r.program.tasks["t"].prompt[0].text.endswith("\U0001F600")


def test_json_format_never_crashes_on_odd_data(tmp_path: Path, capsys):
    (tmp_path / "p.prompt").write_text('task t(x: str) -> str {\n  prompt "{{ x }}"\n  examples "e.jsonl"\n}\n',
                                       encoding="utf-8")
    (tmp_path / "e.jsonl").write_text('{"input": {"x": "\\ud800"}, "output": "\\udfff"}\n', encoding="utf-8")
    assert main(["check", "--format", "json", str(tmp_path / "p.prompt")]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out[0]["code"] == "E107" and out[0]["line"] == 1


def test_deep_input_in_a_subprocess_finishes(tmp_path: Path):
    """The CLI on the worst cases, as a user runs it: exit 1 with diagnostics, never 2 (internal error)."""
    for i, (text, _) in enumerate(CASES.values()):
        (tmp_path / f"c{i}.prompt").write_text(text, encoding="utf-8", errors="surrogatepass")
    files = [str(p) for p in sorted(tmp_path.glob("*.prompt"))]
    res = subprocess.run([sys.executable, "-m", "promptc", "check", *files], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


def test_a_program_that_checks_compiles_and_renders_in_plain_jinja2(tmp_path: Path):
    """The shapes that once passed check and then failed in compile or render."""
    programs = [
        'task t(x: str) -> str { prompt "{{ x }}{#" }',  # refused now (E105)
        'task t(x: str) -> str { prompt "{{ x }}"\n  constraint c "{%": output != "{#" }',
        'task t(x: str) -> str { prompt "{{ x }}"\n  constraint c "a { b } {{ c }} {% d %} {# e #}": true }',
        'task t(x: str) -> str { prompt "{% raw %}{{ x }}{% endraw %}{{ x }}" }',
        'task t(x: str) -> str { prompt "{{ x }}"\n  system "{{ x }} {% raw %}" }',
        'type O { a: str [pattern=/\\{\\{ x \\}\\}/] }\ntask t(x: str) -> O { prompt "{{ x }}" }',
    ]
    from promptc.targets.text.prompt import compile_text_target

    for text in programs:
        r = compile_text(text)
        if not r.ok:
            assert all(d.span is not None for d in r.diagnostics)
            continue
        tp = compile_text_target(r.program, "t", {"delimit": True})
        src = tp.artifact_template()
        assert jinja2.Environment().from_string(src).render(x="v") == tp.render({"x": "v"}, "plain")


@pytest.mark.parametrize("template,ok", [
    ("{{ x.name }}", False),
    ("{% for i in xs %}{{ i }}{% endfor %}", False),
    ("{% for i in xs | default([]) %}{{ i }}{% endfor %}", False),  # default() keeps null as it is
    ("{{ xs[0] }}", False),
    ("{% if x %}{{ x.name }}{% endif %}", True),
    ("{% if x is not none and xs %}{{ x.name }}{{ xs[0] }}{% endif %}", True),
    ("{{ x.name if x else '-' }}", True),
    ("{{ x.name | default('-') }}", True),
    ("{% if x and x.name %}{{ x.name }}{% endif %}", True),
    ("{% for i in xs or [] %}{{ i }}{% endfor %}", True),
])
def test_a_field_of_a_nullable_input_needs_a_guard(template: str, ok: bool):
    """E314: reading through a value that may be null would fail to render for a valid input."""
    import promptc

    src = ("type R { name: str }\ntask t(x: R?, xs: list[str]?) -> str {\n  prompt \"\"\"\n  " + template
           + '\n  """\n}\n')
    r = compile_text(src)
    assert r.ok == ok, r.diagnostics
    if ok:
        task = promptc.loads(src).task("t")
        for inputs in ({"x": None, "xs": None}, {"x": {"name": "n"}, "xs": ["a"]}):
            task.render(inputs, format="plain")
    else:
        assert [d.code for d in r.diagnostics if d.is_error] == ["E314"]
