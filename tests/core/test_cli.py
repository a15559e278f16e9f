"""The CLI contract: exit codes, --version, --help, colour rules, JSON output, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptc import __version__
from promptc.cli import main
from tests.conftest import PROGRAMS, ROOT

ERRORS = ROOT / "tests" / "cases" / "errors"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "promptc", *args], capture_output=True, text=True, env=e,
                          cwd=ROOT, timeout=120)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"promptc {__version__}"


def test_help_on_every_command(capsys):
    from promptc.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "check" in sub.choices
    for name in sub.choices:
        with pytest.raises(SystemExit) as ei:
            parser.parse_args([name, "--help"])
        assert ei.value.code == 0
        assert "usage: promptc " + name in capsys.readouterr().out


def test_exit_codes(tmp_path: Path):
    assert run("check", *map(str, PROGRAMS.glob("*.prompt"))).returncode == 0
    assert run("check", str(ERRORS / "unknown_type.prompt")).returncode == 1
    assert run("check").returncode == 2  # usage
    assert run("frobnicate").returncode == 2
    assert run().returncode == 2


@pytest.mark.parametrize("target", ["missing.prompt", "."])
def test_unreadable_files_are_diagnostics_not_tracebacks(target):
    r = run("check", target)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "error" in r.stderr


def test_warnings_alone_exit_zero():
    r = run("check", str(ERRORS / "test_duplicates_example.prompt"))
    assert r.returncode == 0 and "warning" in r.stderr


def test_no_color_and_force_color():
    bad = str(ERRORS / "unknown_type.prompt")
    plain = run("check", bad, env={"NO_COLOR": "1", "FORCE_COLOR": ""})
    assert "\x1b[" not in plain.stderr
    colored = run("check", bad, env={"NO_COLOR": "", "FORCE_COLOR": "1"})
    assert "\x1b[1;31merror" in colored.stderr
    both = run("check", bad, env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert "\x1b[" not in both.stderr  # NO_COLOR wins


def test_json_format(capsys):
    code = main(["check", "--format", "json", str(ERRORS / "template_typo.prompt"), str(PROGRAMS / "route.prompt")])
    assert code == 1
    diags = json.loads(capsys.readouterr().out)
    (d,) = diags
    assert d["code"] == "E201" and d["line"] == 5 and d["column"] == 15 and d["hint"] == "did you mean 'ticket'?"
    assert set(d) >= {"severity", "code", "message", "file", "line", "column", "end_line", "end_column", "hint"}


def test_check_compile_and_render_are_fast_to_start(tmp_path):
    """`check`, `compile` and `render` of a text target must not import torch, transformers or peft."""
    prog = str(PROGRAMS / "triage.prompt")
    code = ("import sys, promptc.cli as c; "
            f"c.main(['check', '-q', {prog!r}]); "
            f"c.main(['compile', {prog!r}, '--target', 'triage_chat', '-o', {str(tmp_path / 'a')!r}]); "
            f"c.main(['render', {prog!r}, '--target', 'triage_chat', '--input', "
            "'{\"ticket\": {\"subject\": \"a\", \"body\": \"b\"}}']); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'hypothesis') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout + r.stderr


# ------------------------------------------------------------------ exit codes follow the error's class
@pytest.mark.parametrize("argv,code,needle", [
    (["render", "route.prompt", "--target", "route_text", "--format", "hf_chat",
      "--input", '{"ticket": {"subject": "a", "body": "b"}}'], 2, "needs a tokenizer"),
    (["render", "route.prompt", "--target", "nope", "--input", "{}"], 2, "no target 'nope'"),
    (["render", "route.prompt", "--target", "route_txt", "--input", "{}"], 2, "did you mean 'route_text'"),
    (["compile", "route.prompt", "--target", "route_soft"], 2, "is a tune target"),
    (["render", "route.prompt", "--target", "route_text", "--input", '{"ticket": 3}'], 1, "invalid input"),
])
def test_usage_errors_exit_2_and_program_errors_exit_1(argv, code, needle, capsys, monkeypatch):
    monkeypatch.chdir(PROGRAMS)
    assert main(argv) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and "internal error" not in err


def test_a_text_artifact_without_a_model_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(PROGRAMS)
    assert main(["compile", "route.prompt", "--target", "route_text", "-o", str(tmp_path / "art")]) == 0
    assert main(["test", "route.prompt", "--artifact", str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err
    assert "needs a model" in err and "--model" in err


def test_every_error_class_has_the_documented_exit_code():
    from promptc import errors

    expected = {errors.PromptcError: 1, errors.DiagnosticError: 1, errors.InputError: 1, errors.ModelError: 1,
                errors.ArtifactError: 1, errors.UsageError: 2, errors.InternalError: 2, errors.Interrupted: 130}
    assert {cls: cls.exit_code for cls in expected} == expected
    assert all(issubclass(cls, errors.PromptcError) for cls in expected)


def test_a_mistyped_openai_base_url_is_refused_not_sent_to_the_default_endpoint():
    from promptc.errors import UsageError
    from promptc.models.loading import parse_model_spec

    for spec in ("openai:MODEL@URL", "openai:gpt-4o@ftp://x", "openai:m@localhost:8000"):
        with pytest.raises(UsageError, match="not an http"):
            parse_model_spec(spec)
    assert parse_model_spec("openai:tag@1.0.0").name == "tag@1.0.0"  # a served subject's name@version
    assert parse_model_spec("openai:tag@1.0.0@http://h:1/v1").base_url == "http://h:1/v1"


def test_the_task_follows_from_the_target_in_a_program_with_two_tasks(tmp_path, capsys):
    (tmp_path / "two.prompt").write_text(
        'task a(x: str) -> str { prompt "A {{ x }}" }\n'
        'task b(y: str) -> str { prompt "B {{ y }}" }\n'
        'target text bt for b { }\n')
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"y": 3}\n')
    # the task is b (from the target): its input y is validated, and no "name one of" refusal
    assert main(["run", str(tmp_path / "two.prompt"), "--target", "bt", "--model", "tiny-causal",
                 "--inputs", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "in.jsonl:1: invalid input" in err and "name one of" not in err


def test_check_quiet_prints_nothing_for_clean_files(capsys):
    assert main(["check", "-q", str(PROGRAMS / "route.prompt")]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_a_missing_artifact_directory_is_a_usage_error_like_a_missing_inputs_file(tmp_path, capsys):
    assert main(["run", str(PROGRAMS / "route.prompt"), "--artifact", str(tmp_path / "nope"),
                 "--input", "{}"]) == 2
    assert main(["run", str(PROGRAMS / "route.prompt"), "--target", "route_text", "--model", "tiny-causal",
                 "--inputs", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "artifact directory not found" in err and "cannot read --inputs" in err


def test_check_takes_a_folder_of_programs(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "a.prompt").write_text('program a "1"\ntask t(x: str) -> str {\n  prompt "{{ x }}"\n}\n',
                                       encoding="utf-8")
    (tmp_path / "sub" / "b.prompt").write_text('program b "1"\ntask t(x: str) -> strr {\n  prompt "{{ x }}"\n}\n',
                                              encoding="utf-8")
    (tmp_path / ".hidden" / "c.prompt").write_text("not a program", encoding="utf-8")
    assert main(["check", str(tmp_path)]) == 1  # the worst of the files: b has an error
    out = capsys.readouterr()
    assert f"{tmp_path / 'sub' / 'b.prompt'}:2:" in out.err and "did you mean 'str'" in out.err
    assert f"{tmp_path / 'a.prompt'}: ok" in out.out
    assert "c.prompt" not in out.out + out.err  # hidden folders are skipped
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["check", str(empty)]) == 2
    assert "no .prompt files under" in capsys.readouterr().err


def test_check_alone_does_not_import_the_other_commands():
    code = ("import sys, promptc.cli as c; c.main(['check', '-q', 'programs/route.prompt']); "
            "print('promptc.cli.commands' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "False", r.stdout + r.stderr
