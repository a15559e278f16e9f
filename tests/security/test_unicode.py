"""Issue 23 item 3: Unicode. Lone surrogates, NUL, BOM, CRLF and the Unicode line separators in source text,
data files and API inputs are a clear user error or handled, never an internal error; every JSONL promptc
writes escapes U+2028, U+2029 and U+0085, and every JSONL it reads is split on newline only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import promptc
from promptc import jsonl
from promptc.cli import main
from promptc.compiler import compile_file, compile_text
from promptc.errors import DiagnosticError, InputError, UsageError
from tests.conftest import PROGRAMS
from tests.core.conftest import fake  # noqa: F401 - the fake OpenAI server fixture

BREAKS = "\u2028\u2029\u0085"
SMALL = '''program uni "1.0.0"
type Out { reply: str }
task t(text: str) -> Out {
  prompt """Answer {{ text }}"""
  examples "data.jsonl"
}
'''


def _program(tmp: Path, data: bytes) -> Path:
    (tmp / "data.jsonl").write_bytes(data)
    p = tmp / "uni.prompt"
    p.write_text(SMALL, encoding="utf-8")
    return p


# ------------------------------------------------------------------ source text and the API
@pytest.mark.parametrize("ch", ["\ud800", "\udfff", "\x00", "\u2028", "\u2029", "\x85", "\x1b"])
def test_odd_characters_in_source_are_located_diagnostics_that_print(ch):
    src = (PROGRAMS / "triage.prompt").read_text(encoding="utf-8")
    for pos in (0, src.index("task"), len(src)):
        text = src[:pos] + ch + src[pos:]
        with pytest.raises(DiagnosticError) as e:
            promptc.loads(text, "x.prompt")
        shown = str(e.value)
        shown.encode("utf-8")  # never a UnicodeEncodeError when printed or logged
        assert "x.prompt:" in shown and ch not in shown.split("\n", 1)[1]  # the quoted line shows it visibly
        r = compile_text(text, "x.prompt")
        from promptc.diagnostics import to_json

        assert json.loads(to_json(r.diagnostics))[0]["line"] >= 1


def test_caret_stays_under_a_surrogate():
    r = compile_text('program p "1"\ntask \ud800', "x.prompt")
    from promptc.diagnostics import render

    out = render(r.diagnostics[0])
    lines = out.splitlines()
    assert lines[1] == "2 | task \ufffd" and lines[2].index("^") == lines[1].index("\ufffd")


def test_bom_and_line_endings_are_handled_like_a_file():
    src = (PROGRAMS / "triage.prompt").read_text(encoding="utf-8")
    base = compile_text(src, str(PROGRAMS / "triage.prompt"))
    assert base.ok
    for text in ("\ufeff" + src, src.replace("\n", "\r\n"), ("\ufeff" + src).encode("utf-8"),
                 src.replace("\n", "\r\n").encode("utf-8")):
        r = compile_text(text, str(PROGRAMS / "triage.prompt"))
        assert r.ok, r.diagnostics
        crlf = "\r" in (text if isinstance(text, str) else text.decode("utf-8"))
        assert crlf or r.program.hash == base.program.hash  # a BOM is not part of the program


def test_loads_and_load_refuse_wrong_values_clearly(tmp_path):
    with pytest.raises(UsageError, match="must be a str"):
        promptc.loads(None)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not int"):
        promptc.loads(5)  # type: ignore[arg-type]
    with pytest.raises(DiagnosticError, match="not valid UTF-8"):
        promptc.loads(b'program x "1"\n\xff')
    for bad in ("a\x00b.prompt", "\ud800.prompt"):
        with pytest.raises(DiagnosticError, match="E108") as e:
            promptc.load(bad)
        str(e.value).encode("utf-8")
    assert promptc.load(str(PROGRAMS / "triage.prompt").encode()).ir.name == "triage"


def test_api_inputs_with_surrogates_are_input_errors_and_odd_text_renders():
    task = promptc.load(PROGRAMS / "triage.prompt").task("triage")
    good = {"ticket": {"subject": "Hi", "body": "x"}}
    for bad in ({"ticket": {"subject": "\ud800", "body": "x"}}, {"ticket": {"subject": "a", "body": "b\udfff"}},
                {"ticket": {"subject": "a", "body": "b", "\ud800": 1}}, {"ticket": {1: "a", "subject": "a", "body": "b"}},
                {("t",): 1}):
        for fmt in ("plain", "chat"):
            with pytest.raises(InputError) as e:
                task.render(bad, format=fmt)
            str(e.value).encode("utf-8")
    assert task.check(good, {"tag": "billing", "reply": "\ud800"})  # a bad output is reported, not raised
    for text in ("a\x00b", "\ufeffx", "a\r\nb", f"a{BREAKS}b", "\x1b[31m"):
        out = task.render({"ticket": {"subject": text, "body": "x"}}, format="plain")
        assert text in out  # data is data: passed through unchanged, and it encodes
        out.encode("utf-8")


# ------------------------------------------------------------------ data files
def test_examples_file_with_bom_crlf_and_separators(tmp_path):
    rows = [{"input": {"text": f"one{BREAKS}two"}, "output": {"reply": "ok\u2028"}},
            {"input": {"text": "b"}, "output": {"reply": "c"}}]
    data = "\ufeff" + "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n"
    prog = promptc.load(_program(tmp_path, data.encode("utf-8")))
    examples = prog.ir.tasks["t"].examples
    assert [e.input["text"] for e in examples] == [f"one{BREAKS}two", "b"]  # a separator inside a string is no line break


@pytest.mark.parametrize("line, words", [
    (b'{"input": {"text": "a\x00"}, "output": {"reply": "b"}}', "Invalid control character"),
    (b'{"input": {"text": "\\ud800"}, "output": {"reply": "b"}}', "lone surrogate"),
    (b'{"input": {"text": "a"}, "output": {"reply": "b"}}\r{"input": {"text": "a"}, "output": {"reply": "b"}}',
     "(Extra data|two JSON values)"),
    (b'\xff\xfe{"input": 1}', "not valid UTF-8"),
])
def test_bad_characters_in_data_files_are_located_errors(tmp_path, line, words):
    r = compile_file(_program(tmp_path, line + b"\n"))
    assert not r.ok
    text = "\n".join(str(d.message) for d in r.diagnostics)
    import re

    assert re.search(words, text) and all(d.span is not None for d in r.diagnostics)
    from promptc.diagnostics import render

    for d in r.diagnostics:
        render(d).encode("utf-8")
        assert "\x00" not in render(d)  # a NUL in a quoted line is shown as U+2400


# ------------------------------------------------------------------ JSON lines written and read
def test_jsonl_helper_escapes_separators_and_splits_on_newline_only():
    value = {"a": f"x{BREAKS}y\u00e9\n", "b": [BREAKS]}
    text = jsonl.dumps(value)
    assert not any(c in text for c in BREAKS) and "\\u2028" in text and "\\u0085" in text and "é" in text
    assert json.loads(text) == value and len(text.splitlines()) == 1
    assert jsonl.split('\ufeff{"a": "x\u2028y"}\r\n{"b": 1}\n') == ['{"a": "x\u2028y"}', '{"b": 1}']
    assert jsonl.split("") == [] and jsonl.split("a\n\nb") == ["a", "", "b"]


def _written_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert not any(c in text for c in BREAKS), "a JSONL file promptc writes holds a raw line separator"
    return text.splitlines()  # so the strictest reader sees one record per line


def test_every_jsonl_writer_uses_the_helper():
    """No module writes JSON lines by hand: `json.dumps(...) + "\\n"` and `.jsonl` writers go through
    promptc.jsonl (found by grep; a new writer that does not fails here)."""
    import re

    root = Path(promptc.__file__).parent
    offenders = []
    for p in root.rglob("*.py"):
        if p.name == "jsonl.py":
            continue
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r'json\.dumps\(.*\)\s*\+\s*"\\n"', line) and "indent=" not in line and "owner" not in line:
                offenders.append(f"{p.relative_to(root)}:{n}: {line.strip()}")
            if ".splitlines(" in line and ("inputs" in p.name or "jsonl" in line):
                offenders.append(f"{p.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_init_writes_escaped_jsonl(tmp_path, monkeypatch):
    from promptc import scaffold

    monkeypatch.setattr(scaffold, "EXAMPLES", [(f"great{BREAKS}film", "positive"), ("bad", "negative")])
    text = scaffold.files("demo")["data/reviews.jsonl"]
    assert not any(c in text for c in BREAKS)
    assert [json.loads(x)["input"]["review"] for x in text.splitlines()] == [f"great{BREAKS}film", "bad"]


def test_save_failures_writes_escaped_jsonl(tmp_path, monkeypatch):
    from promptc.testing import failures

    rows = [{"input": {"text": f"a{BREAKS}"}, "output": {"reply": "\u2029"}, "name": "x", "provenance": {}}]
    monkeypatch.setattr(failures, "failure_rows", lambda reports, subject: rows)
    assert failures.save_failures([], tmp_path / "f.jsonl", {}) == 1
    lines = _written_lines(tmp_path / "f.jsonl")
    assert [json.loads(x) for x in lines] == rows


def test_inputs_file_is_split_on_newline_only(tmp_path):
    from promptc.cli.inputs import read_inputs

    rows = [{"text": f"a{BREAKS}b"}, {"text": "c"}]
    (tmp_path / "in.jsonl").write_text("\ufeff" + "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows),
                                       encoding="utf-8")
    got = read_inputs(None, str(tmp_path / "in.jsonl"))
    assert [g.value for g in got] == rows and [g.where.rsplit(":", 1)[1] for g in got] == ["1", "2"]


def test_run_prints_escaped_json_lines(fake, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    fake.reply = f"bug{BREAKS}"
    model = f"openai:m@{fake.url}"
    (tmp_path / "in.jsonl").write_text(json.dumps({"ticket": {"subject": "s", "body": "b"}}) + "\n")
    main(["run", str(PROGRAMS / "route.prompt"), "--model", model, "--inputs", str(tmp_path / "in.jsonl"),
          "--details", "--no-cache", "--retries", "0", "--timeout", "5"])
    out = capsys.readouterr().out
    assert out and not any(c in out for c in BREAKS)
    record = json.loads(out.splitlines()[0])
    assert BREAKS in record["raw"]
