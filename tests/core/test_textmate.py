"""The TextMate grammar (editors/vscode/syntaxes/promptc.tmLanguage.json), tokenized on every program in
the repo by textmate-grammar-python (a Python port of vscode-textmate on real Oniguruma regexes), and
checked against what promptc's own parser says each piece of text is. Also: the VS Code extension's
package.json is complete enough for `vsce package`."""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import re

import pytest

from promptc import ast
from promptc.fmt import scan_comments
from promptc.parser import parse
from tests.conftest import CASES, PROGRAMS, ROOT

VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = json.loads((VSCODE / "syntaxes" / "promptc.tmLanguage.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tokenize():
    pytest.importorskip("textmate_grammar", reason="textmate-grammar-python is in the [dev] extra")
    from textmate_grammar.parsers.base import LanguageParser

    logging.getLogger("textmate_grammar").setLevel(logging.ERROR)  # it logs every unscoped stretch
    parser = LanguageParser(GRAMMAR)

    def run(text: str):
        starts: dict[int, list[tuple[int, int, tuple[str, ...]]]] = {}
        for (line, col), tok, scopes in parser.parse_string(text).flatten():
            starts.setdefault(line, []).append((col, col + len(tok), tuple(scopes)))
        lines = text.split("\n")
        offsets = [0]
        for ln in lines:
            offsets.append(offsets[-1] + len(ln) + 1)

        def scopes_at(offset: int) -> tuple[str, ...]:
            line = bisect.bisect_right(offsets, offset) - 1
            col = offset - offsets[line]
            for s, e, sc in starts.get(line, []):
                if s <= col < e:
                    return sc
            return ("source.promptc",)
        return scopes_at
    return run


def _programs():
    paths = [*sorted(PROGRAMS.glob("*.prompt")), ROOT / "docs" / "reference.prompt", CASES / "fmt" / "awkward.prompt"]
    out = []
    for p in sorted(CASES.glob("errors/*.prompt")):
        try:
            parse(p.read_text(encoding="utf-8"))
            out.append(p)
        except Exception:  # noqa: BLE001 - only programs that parse have an oracle
            continue
    return paths + out


def _nodes(node):
    """Every AST node under `node`, depth first."""
    yield node
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            if f.name in ("span", "line_origins", "part_spans", "op_span"):
                continue
            v = getattr(node, f.name)
            for item in (v if isinstance(v, tuple) else (v,)):
                if dataclasses.is_dataclass(item):
                    yield from _nodes(item)


def _has(scopes: tuple[str, ...], prefix: str) -> bool:
    return any(s.startswith(prefix) for s in scopes)


@pytest.mark.parametrize("path", _programs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_scopes_agree_with_the_parser(tokenize, path):
    text = path.read_text(encoding="utf-8")
    program = parse(text)
    at = tokenize(text)
    for c in scan_comments(text):
        assert _has(at(c.start), "comment.line"), (path.name, c)
    texts = set()
    for n in _nodes(program):
        if isinstance(n, ast.TextItem):
            texts.add(id(n.text))
            raw = text[n.text.span.start:n.text.span.end]
            for m in re.finditer(r"\{\{", raw):
                assert _has(at(n.text.span.start + m.start()), "meta.embedded.expression.jinja"), (path.name, raw)
            for m in re.finditer(r"\{%", raw):
                assert _has(at(n.text.span.start + m.start()), "meta.embedded.block.jinja")
    for n in _nodes(program):
        span = getattr(n, "span", None)
        if span is None:
            continue
        first = at(span.start)
        if isinstance(n, ast.Literal):
            if isinstance(n.value, str):
                assert _has(first, "string.quoted"), (path.name, text[span.start:span.end])
                if id(n) not in texts:  # jinja only inside prompt and system texts
                    assert not any(_has(at(span.start + m.start()), "meta.embedded")
                                   for m in re.finditer(r"\{\{", text[span.start:span.end]))
            elif isinstance(n.value, bool) or n.value is None:
                assert _has(first, "constant.language"), text[span.start:span.end]
            else:
                assert _has(first, "constant.numeric"), text[span.start:span.end]
        elif isinstance(n, ast.Regex):
            assert _has(first, "string.regexp"), text[span.start:span.end]
        elif isinstance(n, (ast.TypeDecl, ast.EnumDecl)):
            assert _has(at(n.name.span.start), "entity.name.type"), n.name
            assert _has(first, "storage.type")
        elif isinstance(n, ast.TaskDecl):
            assert _has(at(n.name.span.start), "entity.name.function"), n.name
        elif isinstance(n, ast.TargetDecl):
            assert _has(first, "storage.type.target")
            assert _has(at(n.task.span.start), "entity.name.function")
        elif isinstance(n, ast.NamedType) and n.name.name in ("str", "int", "float", "bool"):
            assert _has(first, "support.type.primitive")


def test_jinja_inside_texts(tokenize):
    text = ('task t(x: Doc) -> str {\n  system "Be {{ x.tone | upper }}"\n  prompt variant "b" """\n'
            '  {% for p in x.parts %}{{ p }}{% endfor %} {# note #}\n  """\n'
            '  example { input { x: { tone: "{{ not jinja }}" } } output "ok" }\n}\n')
    at = tokenize(text)
    assert _has(at(text.index("x.tone")), "variable.other.jinja")
    assert _has(at(text.index("tone |")), "variable.other.property.jinja")
    assert _has(at(text.index("upper")), "support.function.filter.jinja")
    assert _has(at(text.index("for p")), "keyword.control.jinja")
    assert _has(at(text.index("{# note")), "comment.block.jinja")
    assert _has(at(text.index('"b"')), "string.quoted.double")
    assert not _has(at(text.index("not jinja")), "meta.embedded")  # an example value is not a template
    assert _has(at(text.index("not jinja")), "string.quoted.double")


def test_first_line_claims_promptc_programs_and_not_dotprompt():
    lang = json.loads((VSCODE / "package.json").read_text())["contributes"]["languages"][0]
    first = re.compile(lang["firstLine"])
    assert first.pattern == GRAMMAR["firstLineMatch"]
    for p in _programs():
        assert first.search(p.read_text(encoding="utf-8").split("\n")[0]), p
    dotprompt = "---\nmodel: googleai/gemini-1.5-pro\n---\nHello {{name}}\n"
    assert not first.search(dotprompt.split("\n")[0])


def test_extension_manifest_is_packageable():
    pkg = json.loads((VSCODE / "package.json").read_text())
    # the fields `vsce package` refuses to go without, and what this extension needs
    for key in ("name", "publisher", "version", "engines", "main", "license", "repository", "contributes"):
        assert pkg.get(key), key
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", pkg["name"]) and re.fullmatch(r"\d+\.\d+\.\d+", pkg["version"])
    assert pkg["engines"]["vscode"].startswith("^")
    assert (VSCODE / pkg["main"]).exists() and (VSCODE / "README.md").exists() and (VSCODE / "LICENSE").exists()
    lang = pkg["contributes"]["languages"][0]
    assert lang["id"] == "promptc" and lang["extensions"] == [".prompt"]
    assert (VSCODE / lang["configuration"]).exists()
    gram = pkg["contributes"]["grammars"][0]
    assert gram["language"] == "promptc" and gram["scopeName"] == GRAMMAR["scopeName"] == "source.promptc"
    assert (VSCODE / gram["path"]).exists()
    assert "vscode-languageclient" in pkg["dependencies"]
    js = (VSCODE / pkg["main"]).read_text()
    assert '"lsp"' in js or "'lsp'" in js or 'get("server.args", ["lsp"])' in js
    assert pkg["contributes"]["configuration"]["properties"]["promptc.server.args"]["default"] == ["lsp"]


def test_the_python_engine_agrees_with_vscode_textmate(tokenize):
    """Where `npm install` has been run in editors/vscode, compare every character's scopes with the
    real vscode-textmate engine, so the Python port is known to stand in for VS Code faithfully."""
    import shutil
    import subprocess

    if shutil.which("node") is None or not (VSCODE / "node_modules" / "vscode-textmate").exists():
        pytest.skip("vscode-textmate is not installed (cd editors/vscode && npm install)")
    files = [str(p) for p in _programs()]
    out = subprocess.run(["node", str(VSCODE / "test" / "tokenize.js"),
                          str(VSCODE / "syntaxes" / "promptc.tmLanguage.json"), *files],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = json.loads(out)
    for f in files:
        text = open(f, encoding="utf-8").read()
        at = tokenize(text)
        offsets = [0]
        for ln in text.split("\n"):
            offsets.append(offsets[-1] + len(ln) + 1)
        for file, line, start, tok, scopes in rows:
            if file != f:
                continue
            for k in range(len(tok)):
                assert at(offsets[line] + start + k) == tuple(scopes), (f, line, start + k, tok)
