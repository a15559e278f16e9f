"""Diagnostic codes: one table (promptc.codes) behind the constants, docs/language.md §8 and
`promptc explain`; a code has one meaning."""

from __future__ import annotations

import re

import pytest

from promptc import codes
from promptc.cli import main
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
SOURCES = [p for p in (ROOT / "promptc").rglob("*.py") if p.name != "codes.py"]


def test_doc_table_matches_the_code_table_exactly():
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| ([EW]\d{3}) \|.*$", DOC, re.M)}
    assert set(rows) == set(codes.CODES)
    for code, info in codes.CODES.items():
        assert rows[code] == f"| {code} | {info.meaning} | {info.example} |"


def test_every_constant_is_in_the_table_once():
    consts = {v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str)}
    assert consts == set(codes.CODES)
    for info in codes.CODES.values():
        assert info.explanation.strip() and "\n" not in info.meaning


def test_no_stage_reports_a_bare_code_string():
    bare = re.compile(r"""\.(error|warning)\(\s*["'][EW]\d{3}["']|Diagnostic\(\s*"\w+",\s*["'][EW]\d{3}""")
    offenders = [f"{p.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}"
                 for p in SOURCES for text in [p.read_text(encoding="utf-8")] for m in bare.finditer(text)]
    assert offenders == []


def test_every_code_is_used_somewhere():
    text = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    names = {v: k for k, v in vars(codes).items() if k.isupper() and isinstance(v, str)}
    unused = [code for code, name in names.items() if f"codes.{name}" not in text]
    assert unused == []


def test_explain_prints_the_long_explanation(capsys):
    assert main(["explain", "E313"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("E313 (error): enum has no members\n")
    assert codes.CODES["E313"].explanation in out and "enum Tag { }" in out


def test_explain_is_case_insensitive_and_knows_warnings(capsys):
    assert main(["explain", "w201"]) == 0
    assert capsys.readouterr().out.startswith("W201 (warning): input never used in the prompt")


@pytest.mark.parametrize("arg,hint", [("W2O1", "did you mean 'W201'?"), ("nope", "promptc explain --list")])
def test_explain_unknown_code_is_a_usage_error(capsys, arg, hint):
    assert main(["explain", arg]) == 2
    err = capsys.readouterr().err
    assert f"unknown diagnostic code '{arg}'" in err and hint in err


def test_explain_list(capsys):
    assert main(["explain", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(codes.CODES)
    assert lines[0].startswith("E101  file is not valid UTF-8")


def test_every_code_explains_itself():
    for code, info in codes.CODES.items():
        text = codes.explain(code.lower())
        assert text.startswith(f"{code} (") and info.meaning in text and info.explanation in text
