"""Golden CLI errors: each tests/cases/cli_errors/NAME.cli is a command line (earlier lines are setup whose
output is not compared), run in a fresh copy of that folder; NAME.out holds the command, the exit code and
everything printed. Every user mistake exits 1 or 2, says what to do (a hint or the command's usage) and
never shows a traceback. PROMPTC_UPDATE_GOLDEN=1 rewrites the .out files."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest

from promptc.cli import main

CASES = Path(__file__).resolve().parents[1] / "cases" / "cli_errors"
COMMANDS = sorted(CASES.glob("*.cli"))


def _collapse_usage(text: str) -> str:
    """A usage block becomes its first words (`usage: promptc test ...`): which command's usage it is, not
    its every option, so adding an option to a command does not rewrite these files."""
    out, inside = [], False
    for ln in text.splitlines(keepends=True):
        if ln.startswith("usage: "):
            words = ln.split()
            out.append(" ".join(words[:3] if not words[2].startswith("[") else words[:2]) + " ...\n")
            inside = True
        elif not (inside and ln.startswith(" ")):
            inside = False
            out.append(ln)
    return "".join(out)


def _run(line: str) -> int:
    argv = shlex.split(line)
    assert argv[0] == "promptc", line
    return main(argv[1:])


@pytest.mark.parametrize("case", COMMANDS, ids=lambda p: p.stem)
def test_cli_error_golden(case: Path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps usage lines at the terminal width
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    work = tmp_path / "case"
    shutil.copytree(CASES, work, ignore=shutil.ignore_patterns("*.cli", "*.out"))
    monkeypatch.chdir(work)
    *setup, line = [ln for ln in case.read_text(encoding="utf-8").splitlines() if ln.strip()]
    for s in setup:
        assert _run(s) == 0, s
    capsys.readouterr()
    code = _run(line)
    out = capsys.readouterr()
    text = f"$ {line}\nexit {code}\n{_collapse_usage(out.out + out.err)}"
    expected_file = case.with_suffix(".out")
    if os.environ.get("PROMPTC_UPDATE_GOLDEN"):
        expected_file.write_text(text, encoding="utf-8")
    assert text == expected_file.read_text(encoding="utf-8")
    assert code in (1, 2), "a user mistake exits 1 (diagnostics, bad data) or 2 (usage)"
    assert "Traceback" not in text and "internal error" not in text
    assert any(w in text for w in ("hint: ", "usage: ", "did you mean")), "every CLI error says what to do"


def test_every_case_has_its_golden_output():
    assert len(COMMANDS) >= 20
    assert {p.stem for p in CASES.glob("*.out")} == {p.stem for p in COMMANDS}


def test_a_stale_tuned_artifact_names_the_tune_command(monkeypatch):
    """The tuned half of stale_artifact (training one is too slow here): the manifest's kind and target
    pick the command, and a directory other than out/TARGET is passed back with -o."""
    from promptc.api import load
    from promptc.execution import rebuild_hint

    monkeypatch.chdir(CASES)
    prog = load("prog.prompt").ir
    assert rebuild_hint({"kind": "tune", "target": "soft"}, prog, Path("out/soft")) == \
        "rebuild it: promptc tune prog.prompt --target soft"
    assert rebuild_hint({"kind": "tune", "target": "soft"}, prog, Path("arts/v2")) == \
        "rebuild it: promptc tune prog.prompt --target soft -o arts/v2"
    assert rebuild_hint({"kind": "text", "target": {"name": "chat"}}, prog, Path("out/chat")) == \
        "rebuild it: promptc compile prog.prompt --target chat"
