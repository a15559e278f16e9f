"""Golden diagnostics: each tests/cases/errors/*.prompt against its .out (the exact CLI output)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from promptc.cli import main

CASES = Path(__file__).resolve().parents[1] / "cases" / "errors"
PROGRAMS = sorted(CASES.glob("*.prompt"))


def run_check(path: Path, capsys, *extra: str) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(path.parent)
    try:
        code = main(["check", *extra, path.name])
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.stem)
def test_golden(path: Path, capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    code, text = run_check(path, capsys)
    expected_file = path.with_suffix(".out")
    if os.environ.get("PROMPTC_UPDATE_GOLDEN"):
        expected_file.write_text(f"exit {code}\n{text}", encoding="utf-8")
    expected = expected_file.read_text(encoding="utf-8")
    assert f"exit {code}\n{text}" == expected
    assert "Traceback" not in text


def test_enough_distinct_mistakes():
    codes = set()
    for out in CASES.glob("*.out"):
        for line in out.read_text(encoding="utf-8").splitlines():
            if ": error: " in line:
                codes.add(line.rsplit("[", 1)[1].rstrip("]"))
    assert len(PROGRAMS) >= 25
    assert len(codes) >= 25, sorted(codes)


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.stem)
def test_json_format_has_same_fields(path: Path, capsys, monkeypatch):
    import json

    code, text = run_check(path, capsys, "--format", "json")
    diags = json.loads(text)
    golden = path.with_suffix(".out").read_text(encoding="utf-8").splitlines()
    heads = [ln for ln in golden if ": error: " in ln or ": warning: " in ln]
    assert len(diags) == len(heads)
    for d, head in zip(diags, heads):
        assert head.startswith(f"{d['file']}:{d['line']}:{d['column']}: {d['severity']}: {d['message']} [{d['code']}]")
