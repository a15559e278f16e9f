"""The language server's analysis in-process: incremental re-analysis equals a full one."""

from __future__ import annotations

import random
import re
import shutil

import pytest

from promptc.lsp.analysis import analyze, split_declarations
from tests.conftest import PROGRAMS


def _sig(diags) -> list[tuple]:
    return sorted((d.code, d.message, d.span and (d.span.path, d.span.line, d.span.col, d.span.end_line,
                                                  d.span.end_col)) for d in diags)


@pytest.mark.parametrize("name", ["triage", "extract", "summarize"])
def test_incremental_analysis_matches_a_full_one(name, tmp_path):
    """Edits that stay inside one task re-parse one declaration and re-check one task; the result must
    equal analysing the whole text from scratch (and a full pass after a partial one changes nothing)."""
    shutil.copytree(PROGRAMS / "data", tmp_path / "data")
    path = str(tmp_path / f"{name}.prompt")
    text = (PROGRAMS / f"{name}.prompt").read_text(encoding="utf-8")
    rng = random.Random(name)
    words = ["output.", "len(", " == ", "billing", "{{ ", " }}", "x", " and ", "Tag", "\"", "#", "\n", "1", ")"]
    an = analyze(path, text)
    partial = 0
    for k in range(80):
        if k < 30:  # first, keystrokes inside strings: the common edit, which keeps the program valid
            strings = [m.start() + 1 for m in re.finditer(r'"[^"\n]+"', text)]
            i = rng.choice(strings)
        else:
            i = rng.randrange(len(text))
        j = min(len(text), i + rng.choice([0, 0, 1, 4]))
        word = rng.choice(words[:9] if k < 30 else words)  # no quote, '#' or newline inside a string
        text = text[:i] + word * rng.choice([0, 1]) + text[j:]
        an = analyze(path, text, an)
        partial += an.partial and k < 30
        whole = analyze(path, text)
        assert _sig(an.diagnostics) == _sig(whole.diagnostics), text
        if an.syntax_ok:
            assert _sig(analyze(path, text, an, full=True).diagnostics) == _sig(an.diagnostics)
    assert partial >= 20  # the fast path was taken, not just the full one


def test_declarations_split_at_top_level_keywords_only():
    text = ('# c\nprogram p "1"\ntype T {\n  type: str\n}\ntask t(test: T) -> str {\n  prompt """\ntask x\n"""\n}\n'
            'target text x for test { shots = 1 }\n')
    bounds = split_declarations(text)
    starts = [text[b:].split(None, 1)[0] for b in bounds[1:]]
    assert starts == ["program", "type", "task", "target"]


def test_a_syntax_error_keeps_the_last_good_analysis(tmp_path):
    path = str(tmp_path / "t.prompt")
    text = (PROGRAMS.parent / "tests" / "cases" / "lsp_triage.prompt").read_text(encoding="utf-8")  # fixed text
    good = analyze(path, text)
    bad = analyze(path, text.replace("type Triage {", "type Triage {{"), good)
    assert not bad.syntax_ok and [d.code for d in bad.diagnostics] == ["E102"]
    assert bad.program is good.program and bad.hover((5, 6)) is not None
    assert bad.diagnostics[0].span.line == 11


def test_added_and_removed_lines_move_the_kept_diagnostics(tmp_path):
    """Adding or removing a line moves every later declaration: their diagnostics (and the lines their
    notes point at) move with them, and the result still equals a full analysis."""
    shutil.copytree(PROGRAMS / "data", tmp_path / "data")
    path = str(tmp_path / "triage.prompt")
    text = (PROGRAMS / "triage.prompt").read_text(encoding="utf-8")
    text = text.replace("{{ ticket.body }}", "{{ ticket.bdy }}") + "\ntype Ticket { x: str }\n" \
        + "target text triage_chat for triage { shots = 1 }\n"  # E204, and two E206 with notes
    an = analyze(path, text)
    assert {"E204", "E206"} <= {d.code for d in an.diagnostics}
    rng = random.Random(7)
    partial = 0
    for _ in range(25):
        lines = text.split("\n")
        inside = [i for i, ln in enumerate(lines) if ln.startswith("  ") and '"""' not in ln]
        i = rng.choice(inside)
        if rng.random() < 0.6:
            lines.insert(i, "")
        elif not lines[i - 1].strip():
            del lines[i - 1]
        text = "\n".join(lines)
        an = analyze(path, text, an)
        partial += an.partial
        assert _sig(an.diagnostics) == _sig(analyze(path, text).diagnostics)
        assert [d.notes for d in sorted(an.diagnostics, key=lambda d: (d.code, d.span.line))] == \
            [d.notes for d in sorted(analyze(path, text).diagnostics, key=lambda d: (d.code, d.span.line))]
    assert partial >= 15


def _spans(node, out: list) -> list:
    import dataclasses

    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            if f.name == "line_origins":
                out.append(v)
                continue
            for x in (v if isinstance(v, tuple) else (v,)):
                if hasattr(x, "end_col"):
                    out.append((x.start, x.end, x.line, x.col, x.end_line, x.end_col, x.source.line_text(x.line)))
                else:
                    _spans(x, out)
    return out


def test_moved_declarations_equal_parsed_ones_span_for_span(tmp_path):
    from promptc.lsp.analysis import _assemble, _chunks
    from promptc.source import SourceFile

    text = (PROGRAMS / "summarize.prompt").read_text(encoding="utf-8")
    an = analyze(str(tmp_path / "s.prompt"), text)
    moved_text = "\n\n# a new comment\n" + text
    doc = SourceFile(str(tmp_path / "s.prompt"), moved_text)
    moved = _chunks(doc.path, moved_text, doc, an)
    parsed = _chunks(doc.path, moved_text, doc, None)
    assert any(m.src is not c.src for m, c in zip(moved, an.chunks))
    a, b = _assemble(moved), _assemble(parsed)
    assert a == b
    sa, sb = _spans(a, []), _spans(b, [])
    assert len(sa) > 300 and sa == sb
