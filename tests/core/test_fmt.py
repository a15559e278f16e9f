"""The formatter: round trip, idempotence and comments, on every program in the repo, on generated
programs, on programs with comments sprinkled in by hypothesis, and on a golden file of awkward placements;
and `promptc fmt` on the command line."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptc.cli import main
from promptc.fmt import fmt, format_text, reindent_long, scan_comments
from promptc.parser import parse
from tests.conftest import CASES, PROGRAMS, ROOT
from tests.core.test_fuzz import programs as ast_programs


def _repo_programs() -> list:
    paths = [*sorted(PROGRAMS.glob("*.prompt")), ROOT / "docs" / "reference.prompt",
             *sorted(CASES.rglob("*.prompt"))]
    out = []
    for p in paths:
        try:
            text = p.read_text(encoding="utf-8")
            parse(text)
        except Exception:  # noqa: BLE001 - the error cases that do not parse are not formatter input
            continue
        out.append(p)
    return out


REPO = _repo_programs()


def _comments(text: str) -> list[str]:
    return [c.text for c in scan_comments(text)]


def _assert_good(text: str) -> str:
    out = format_text(text)
    assert parse(out) == parse(text)
    assert format_text(out) == out, "not idempotent"
    assert _comments(out) == _comments(text), "comments lost or reordered"
    assert not any(ln != ln.rstrip() for ln in out.split("\n") if '"""' not in text), "trailing blanks"
    return out


def test_the_repo_has_programs_to_format():
    names = {p.name for p in REPO}
    assert {"triage.prompt", "extract.prompt", "summarize.prompt", "route.prompt", "reference.prompt"} <= names
    assert len(REPO) >= 20


@pytest.mark.parametrize("path", REPO, ids=lambda p: str(p.relative_to(ROOT)))
def test_repo_program_round_trips(path):
    _assert_good(path.read_text(encoding="utf-8"))


def test_golden_awkward_comments():
    src = (CASES / "fmt" / "awkward.prompt").read_text(encoding="utf-8")
    golden = CASES / "fmt" / "awkward.formatted.prompt"
    out = _assert_good(src)
    if os.environ.get("PROMPTC_UPDATE_GOLDEN"):
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8")
    # the placements the golden file pins down, spelled out
    assert 'program awk "1.0"  # trailing on header' in out
    assert "  a,  # after a\n  b  # after b\n  # dangling in enum\n}  # after enum close" in out
    assert "type T {  # after open brace\n  # leading field\n  # inside constraints\n" in out
    assert "# inside params\ntask t(x: T, y: int) -> str {" in out
    assert "    Nested line. # not a comment\n" in out  # a '#' inside a triple-quoted block is text
    assert '    output "ok #not"  # trailing output' in out
    assert "  # end of task\n}" in out
    assert "\n\n\n" not in out


@settings(max_examples=150)
@given(ast_programs)
def test_generated_programs_round_trip(p):
    text = fmt(p)
    assert parse(text) == p
    assert format_text(text) == text  # the source-aware printer agrees with the AST printer


def _code_lines(text: str) -> list[int]:
    """Indices of lines where a comment may be added: not inside a triple-quoted block."""
    inside: set[int] = set()
    for m in re.finditer(r'"""[\s\S]*?"""', text):
        first = text.count("\n", 0, m.start())
        last = text.count("\n", 0, m.end())
        inside.update(range(first + 1, last + 1))
        inside.add(first)  # a comment after the opening quotes would be text
    return [i for i in range(text.count("\n") + 1) if i not in inside]


@settings(max_examples=60)
@given(st.sampled_from([p for p in REPO if p.parent.name != "errors"] or REPO), st.data())
def test_sprinkled_comments_survive(path, data):
    lines = path.read_text(encoding="utf-8").split("\n")
    spots = _code_lines("\n".join(lines))
    picks = data.draw(st.lists(st.tuples(st.sampled_from(spots), st.booleans()), max_size=8, unique_by=lambda x: x[0]))
    for n, (i, own_line) in enumerate(sorted(picks, reverse=True)):
        if own_line:
            lines.insert(i, f"# c{n} own line")
        elif lines[i].strip():
            lines[i] += f"  # c{n} trailing"
    _assert_good("\n".join(lines))


def test_triple_quoted_text_is_kept_and_reindented():
    src = 'task t(x: str) -> str {\n      prompt """\n          Line one {{ x }}\n            indented more\n\n' \
          '          last\n          """\n}\n'
    out = format_text(src)
    assert '  prompt """\n  Line one {{ x }}\n    indented more\n\n  last\n  """\n' in out
    assert parse(out) == parse(src)


def test_reindent_keeps_a_block_it_cannot_reindent_safely():
    assert reindent_long('"""\n"""', "  ", "") == '"""\n"""'
    assert reindent_long('"""one line"""', "    ", "one line") == '"""one line"""'


def test_layout_choices():
    out = format_text('type  T{a:int b : str[max_len=3,]}\nenum E{x,y,}\n'
                      'target text t for k {shots=1 format="chat"}')
    assert out == ('type T {\n  a: int\n  b: str [max_len=3]\n}\n\nenum E { x, y }\n\n'
                   'target text t for k { shots = 1, format = "chat" }\n')
    long_enum = "enum Big { " + ", ".join(f"member_number_{i}" for i in range(8)) + " }\n"
    out = format_text(long_enum)
    assert out.startswith("enum Big {\n  member_number_0,\n") and out.endswith("  member_number_7\n}\n")


# ------------------------------------------------------------------ the command line
def test_cli_check_lists_files_and_exits_1(tmp_path, capsys):
    good = tmp_path / "good.prompt"
    good.write_text(format_text((PROGRAMS / "triage.prompt").read_text()), encoding="utf-8")
    bad = tmp_path / "bad.prompt"
    bad.write_text("enum   E {a,b}  # keep me\n", encoding="utf-8")
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"would reformat {bad}" in err and str(good) not in err.replace("unchanged", "")
    assert bad.read_text() == "enum   E {a,b}  # keep me\n"  # --check writes nothing
    assert main(["fmt", "--diff", str(bad)]) == 0
    assert "+enum E { a, b }  # keep me" in capsys.readouterr().out
    assert main(["fmt", str(bad)]) == 0
    assert bad.read_text() == "enum E { a, b }  # keep me\n"
    assert main(["fmt", "--check", str(tmp_path)]) == 0


def test_cli_reports_syntax_errors_located(tmp_path, capsys):
    f = tmp_path / "broken.prompt"
    f.write_text("type T {\n  a int\n}\n", encoding="utf-8")
    assert main(["fmt", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:2:5: error:" in err and "[E102]" in err and "Traceback" not in err
    assert f.read_text() == "type T {\n  a int\n}\n"


def test_cli_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("enum E{a}#c\n"))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == "enum E { a }  #c\n"


def test_cli_no_files(tmp_path, capsys):
    assert main(["fmt", str(tmp_path)]) == 2
    assert "no .prompt files" in capsys.readouterr().err
