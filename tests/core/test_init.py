"""`promptc init`: the starter project checks clean, is already formatted, and nothing is ever overwritten."""

from __future__ import annotations

import json

import pytest

from promptc.cli import main
from promptc.compiler import compile_file
from promptc.fmt import format_text


def test_init_writes_a_project_that_checks_clean(tmp_path, capsys):
    d = tmp_path / "ticket-bot"
    assert main(["init", str(d)]) == 0
    out = capsys.readouterr().out
    prog = d / "ticket_bot.prompt"
    assert f"wrote {prog}" in out and "next: promptc check" in out
    result = compile_file(prog)
    assert result.ok and result.diagnostics == []  # clean: no errors and no warnings
    ir = result.program
    assert sorted(t.kind for t in ir.targets.values()) == ["text", "tune"]
    assert ir.tests and ir.tests[0].cases
    text = prog.read_text(encoding="utf-8")
    assert format_text(text) == text, "the starter program is in the canonical layout"
    assert "target text " in text and "target tune " in text and "test classify" in text
    rows = [json.loads(ln) for ln in (d / "data" / "reviews.jsonl").read_text().splitlines()]
    assert len(rows) >= 6 and all(set(r) == {"input", "output"} for r in rows)
    readme = (d / "README.md").read_text()
    assert "promptc check ticket_bot.prompt" in readme and "promptc tune" in readme


def test_init_refuses_to_overwrite(tmp_path, capsys):
    (tmp_path / "README.md").write_text("mine\n")
    assert main(["init", str(tmp_path), "--name", "demo"]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "README.md" in err and "hint:" in err
    assert (tmp_path / "README.md").read_text() == "mine\n"
    assert not (tmp_path / "demo.prompt").exists()  # nothing written, not even the files that were free


def test_init_rejects_a_bad_name(tmp_path, capsys):
    assert main(["init", str(tmp_path), "--name", "1abc"]) == 2
    assert "not a valid program name" in capsys.readouterr().err


def test_pre_commit_hooks_run_real_commands():
    import re

    yaml = pytest.importorskip("yaml")

    from promptc.cli.main import build_parser
    from tests.conftest import ROOT

    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"promptc-check", "promptc-fmt"}
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    for h in hooks.values():
        assert h["language"] == "python" and re.search(h["files"], "programs/triage.prompt")
        prog, sub, *args = h["entry"].split()
        assert prog == "promptc" and sub in commands
        commands[sub].parse_args([*args, "x.prompt"])  # the flags exist
