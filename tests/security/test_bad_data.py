"""Class 10, front-end parts (issue 11): bad examples data is a located diagnostic at check time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptc.compiler import compile_file, compile_text

PROGRAM = ('type O { score: float [ge=0, le=1], n: int? }\n'
           'task t(x: str) -> O {\n  prompt "{{ x }}"\n  examples "ex.jsonl"\n}\n')


def _check(tmp_path: Path, *lines: str):
    (tmp_path / "p.prompt").write_text(PROGRAM, encoding="utf-8")
    (tmp_path / "ex.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return compile_file(tmp_path / "p.prompt")


def _line(**kw) -> str:
    return json.dumps({"input": {"x": "a"}, "output": {"score": 0.5}, **kw})


@pytest.mark.parametrize("prov", ['"x"', "1", "[1]", "true"])
def test_provenance_must_be_an_object(tmp_path: Path, prov: str):
    bad = _line()[:-1] + ', "provenance": ' + prov + "}"
    r = _check(tmp_path, _line(), bad)
    (d,) = [d for d in r.diagnostics if d.is_error]
    assert d.code == "E107" and d.span.line == 2 and "provenance" in d.message
    assert d.span.col == bad.index('"provenance"') + 1
    ok = _check(tmp_path, _line(provenance={"source": "promptc distill", "teacher": "m"}))
    assert ok.ok and ok.program.tasks["t"].examples[0].provenance["source"] == "promptc distill"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused(tmp_path: Path, value: str):
    line = '{"input": {"x": "a"}, "output": {"score": ' + value + "}}"
    r = _check(tmp_path, line)
    (d,) = [d for d in r.diagnostics if d.is_error]
    assert d.code == "E107" and d.span.line == 1 and d.span.col == line.index(value) + 1


def test_nan_never_reaches_a_prompt():
    import promptc
    from promptc.errors import InputError

    prog = promptc.loads('task t(x: float [ge=0, le=1]) -> str { prompt "{{ x }}" }')
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(InputError):
            prog.task("t").render({"x": bad}, format="plain")
    r = compile_text('type O { a: float [ge=1e999] }\ntask t(x: str) -> O { prompt "{{ x }}" }')
    assert [d.code for d in r.diagnostics] == ["E112"]


def test_duplicate_keys_are_located(tmp_path: Path):
    line = '{"input": {"x": "a", "x": "b"}, "output": {"score": 0.5}}'
    r = _check(tmp_path, _line(), line)
    (d,) = [d for d in r.diagnostics if d.is_error]
    assert d.code == "E107" and "duplicate key 'x'" in d.message
    assert (d.span.line, d.span.col) == (2, line.index('"x"', line.index('"x"') + 1) + 1)


@pytest.mark.parametrize("line,needle", [
    ('{"input": {"x": "\\ud800"}, "output": {"score": 0.5}}', "surrogate"),
    ('{"input": {"x": "a"}, "output": {"score": 0.5, "n": ' + "9" * 5000 + "}}", "digits"),
    ('{"input": {"x": ' + "[" * 5000 + "]" * 5000 + '}, "output": {"score": 0.5}}', "nested"),
    ('{"input": {"x": "a"}, "output": {"score": 0.5}, "name": 3}', "name"),
])
def test_odd_json_is_a_located_error(tmp_path: Path, line: str, needle: str):
    r = _check(tmp_path, line)
    errors = [d for d in r.diagnostics if d.is_error]
    assert errors and errors[0].code == "E107" and needle in errors[0].message and errors[0].span.line == 1


def test_invalid_utf8_is_located_per_line(tmp_path: Path):
    (tmp_path / "p.prompt").write_text(PROGRAM, encoding="utf-8")
    (tmp_path / "ex.jsonl").write_bytes((_line() + "\n").encode() + b'{"input": {"x": "\xff"}}\n' +
                                        (_line() + "\n").encode())
    r = compile_file(tmp_path / "p.prompt")
    (d,) = [d for d in r.diagnostics if d.is_error]
    assert d.code == "E101" and d.span.line == 2


def test_examples_are_streamed_and_hashed(tmp_path: Path):
    """The program hash covers the data file's bytes, read once as a stream."""
    a = _check(tmp_path, _line(), _line(name="two"))
    b = _check(tmp_path, _line(), _line(name="three"))
    assert a.ok and b.ok and a.program.hash != b.program.hash
    assert [e.origin.rsplit(":", 1)[1] for e in a.program.tasks["t"].examples] == ["1", "2"]


def test_the_same_mistake_on_several_lines_is_reported_on_each(tmp_path: Path):
    """Excerpted data lines keep their own positions: diagnostics sort by line and are not merged."""
    dup = '{"input": {"x": "a", "x": "b"}, "output": {"score": 0.5}}'
    wrong = '{"input": {"x": 1}, "output": {"score": 0.5}}'
    r = _check(tmp_path, dup, wrong, dup, wrong)
    assert [(d.code, d.span.line) for d in r.diagnostics if d.is_error] == [
        ("E107", 1), ("E302", 2), ("E107", 3), ("E302", 4)]
