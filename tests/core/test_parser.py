"""Parse stage: the grammar covers the language, positions are right, syntax errors are located."""

from __future__ import annotations

import pytest

from promptc import ast
from promptc.errors import PromptcError
from promptc.parser import dedent_block, parse, parse_source
from promptc.source import SourceFile
from tests.conftest import PROGRAMS


def test_reference_program_parses_with_spans():
    src = (PROGRAMS.parent / "docs" / "reference.prompt").read_text()  # the design's reference, as written
    p = parse(src, "triage.prompt")
    assert p.name.name == "triage" and p.version.value == "1.0.0"
    kinds = [type(d).__name__ for d in p.decls]
    assert kinds == ["EnumDecl", "TypeDecl", "TypeDecl", "TaskDecl", "TestDecl", "TargetDecl", "TargetDecl"]
    task = p.of(ast.TaskDecl)[0]
    assert task.name.span.line == 16 and task.name.span.col == 6
    assert task.texts("prompt")[0].text.value.startswith("Classify the ticket")
    c = task.constraints[1]
    assert isinstance(c.expr, ast.When)
    assert c.expr.cond.right == ast.Regex("refund|charged", "i")


def test_every_node_has_a_span():
    p = parse((PROGRAMS / "extract.prompt").read_text(), "extract.prompt")
    seen = 0

    def walk(node):
        nonlocal seen
        if isinstance(node, tuple):
            for n in node:
                walk(n)
            return
        if not hasattr(node, "__dataclass_fields__"):
            return
        assert node.span is not None, node
        assert node.span.line >= 1
        seen += 1
        for f in node.__dataclass_fields__:
            if f not in ("span", "line_origins", "part_spans", "op_span"):
                walk(getattr(node, f))

    walk(p)
    assert seen > 100


def test_types_optional_list_and_constraints_anywhere():
    p = parse('type A { x: list[str [max_len=3]]? [max_len=2] }\n'
              'task t(a: A [], n: int [ge=1, le=5]) -> str [max_len=600] { prompt "{{ a }}{{ n }}" }')
    ty = p.of(ast.TypeDecl)[0].fields[0].type
    assert isinstance(ty.type, ast.OptionalType)
    assert isinstance(ty.type.inner, ast.ListType)
    assert ty.type.inner.item.constraints[0].name.name == "max_len"
    assert ty.constraints[0].value.value == 2
    task = p.of(ast.TaskDecl)[0]
    assert task.returns.constraints[0].value.value == 600


def test_literals():
    p = parse('task t(x: str) -> str { prompt "{{ x }}" example { input { x: "a\\n\\"b\\u00e9" } output "c" } }\n'
              'target tune z for t { lr = 1.5e-3, epochs = -2, a = true, b = false, c = null, d = [1, 2.5, "s"], '
              'e = /a\\/b/i, f = member }')
    ex = p.of(ast.TaskDecl)[0].examples[0]
    assert ex.input.fields[0].value.value == 'a\n"bé'
    opts = {o.key.name: o.value for o in p.of(ast.TargetDecl)[0].options}
    assert opts["lr"].value == 1.5e-3 and opts["epochs"].value == -2
    assert opts["a"].value is True and opts["b"].value is False and opts["c"].value is None
    assert [i.value for i in opts["d"].items] == [1, 2.5, "s"]
    assert opts["e"] == ast.Regex("a/b", "i")
    assert opts["f"] == ast.EnumRef("member")


def test_keywords_are_soft_where_only_a_name_fits():
    p = parse('type T { type: str, output: str, test: int, input: bool }\n'
              'task t(x: T) -> T { prompt "{{ x.type }}" constraint c: output.test > 1 }')
    assert [f.name.name for f in p.of(ast.TypeDecl)[0].fields] == ["type", "output", "test", "input"]


def test_triple_quoted_dedent_and_origins():
    value, origins = dedent_block("\n    a\n      b\n\n    c\n    ", 10, 12)
    assert value == "a\n  b\n\nc"
    assert origins[0] == (11, 5) and origins[1] == (12, 5) and origins[3] == (14, 5)


def test_comments_anywhere():
    p = parse("# header\nenum E { a, # first\n b } # trailing\n")
    assert [m.name for m in p.of(ast.EnumDecl)[0].members] == ["a", "b"]


def test_variants():
    p = parse('task t(x: str) -> str {\n prompt "A {{ x }}"\n prompt variant "terse" "B {{ x }}"\n'
              ' system variant "formal" "Be formal."\n}')
    items = p.of(ast.TaskDecl)[0].items
    assert [(i.kind, i.variant) for i in items] == [("prompt", None), ("prompt", "terse"), ("system", "formal")]


@pytest.mark.parametrize("text,line,col,needle", [
    ("task t(x: str) str {}", 1, 16, "expected '->'"),
    ('enum E { a b }', 1, 12, "expected ',' or '}'"),
    ("type T {\n  a: str\n", 2, 8, "unexpected end of file"),
    ('task t(x: str) -> str {\n  prompt "oops\n}', 2, 10, "unterminated string"),
    ("type T { a: str } @", 1, 19, "unexpected character '@'"),
])
def test_syntax_errors_are_located_in_words(text, line, col, needle):
    prog, diags = parse_source(SourceFile("x.prompt", text))
    assert prog is None
    (d,) = diags
    assert (d.span.line, d.span.col) == (line, col), d
    assert needle in d.message
    assert "__ANON" not in d.message and "LBRACE" not in d.message and "RBRACE" not in (d.hint or "")


def test_parse_raises_promptc_error_with_diagnostics():
    with pytest.raises(PromptcError) as ei:
        parse("enum {")
    assert ei.value.diagnostics[0].code == "E102"


def test_list_suffix_parses_as_a_marked_list():
    """`T[]` is not promptc syntax, but it is read as `list[T]` (marked) so the checker can say so once."""
    p = parse("type I { n: str }\ntype T { items: I[] }")
    tu = p.decls[1].fields[0].type
    assert isinstance(tu.type, ast.ListType) and tu.type.suffix
    assert tu.type.item.type == ast.NamedType(ast.Ident("I")) and tu.constraints == ()
    assert tu.type == ast.ListType(ast.TypeUse(ast.NamedType(ast.Ident("I")), ()))  # same structure as list[I]


@pytest.mark.parametrize("item", ["expect output.tag = billing", "expect len(output) = 3"])
def test_single_equals_in_a_condition_suggests_double(item):
    text = 'enum Tag { billing }\ntask t(x: str) -> Tag { prompt "{{ x }}" }\n' \
           'test t { case "c" { input { x: "a" } ' + item + ' } }'
    program, diags = parse_source(SourceFile("p.prompt", text))
    assert program is None
    (d,) = diags
    assert d.code == "E102" and d.message.startswith("unexpected '='")
    assert d.hint.startswith("did you mean `==`?")
    assert text[d.span.start:d.span.end] == "="


def test_single_equals_in_given_and_options_is_still_fine():
    text = ('task t(x: str) -> str { prompt "{{ x }}" }\n'
            'test t { property "p" { given x = text(max_len=3)\n check len(output) >= 0\n max_examples = 5 } }\n'
            'target text tt for t { shots = 1 }')
    program, diags = parse_source(SourceFile("p.prompt", text))
    assert program is not None and diags == []
