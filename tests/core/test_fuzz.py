"""Grammar fuzzing and the formatter round trip.

- from_lark: every generated string either compiles or yields located diagnostics, never a traceback.
- AST strategies + the formatter: valid programs reach the checker, and parse(fmt(p)) == p.
"""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark

from promptc import ast
from promptc.compiler import compile_text
from promptc.fmt import fmt
from promptc.parser import grammar_text, parse

# A fresh, uncached Lark: hypothesis reads the grammar object, which a cached parser does not keep.
GRAMMAR = Lark(grammar_text(), parser="lalr", lexer="contextual")


def _assert_located(text: str) -> None:
    r = compile_text(text, "fuzz.prompt")
    if r.ok:
        return
    assert r.diagnostics, "a failed compile must say why"
    for d in r.diagnostics:
        assert d.span is not None, d
        assert 1 <= d.span.line <= text.count("\n") + 1, (d, text)
        assert d.code[0] in "EW" and d.code[1:].isdigit()


@settings(max_examples=300)
@given(from_lark(GRAMMAR, start="start"))
def test_from_lark_strings_never_crash(text: str):
    _assert_located(text)


@settings(max_examples=200)
@given(st.text(alphabet=string.printable + "é→\u00a0", max_size=200))
def test_arbitrary_text_never_crashes(text: str):
    _assert_located(text)


# ------------------------------------------------------------------ AST strategies
KEYWORDS = {"program", "enum", "type", "list", "task", "system", "prompt", "variant", "example", "examples",
            "input", "output", "constraint", "test", "case", "expect", "property", "given", "check", "target",
            "for", "when", "or", "and", "not", "in", "contains", "matches", "true", "false", "null"}
names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
idents = names.map(ast.Ident)
strings = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
long_texts = st.lists(st.text(alphabet=string.ascii_letters + " {}.,!'", max_size=20), min_size=2, max_size=4) \
    .map(lambda ls: "\n".join(ls))

scalars = st.one_of(
    strings.map(ast.Literal),
    st.integers(-10**6, 10**6).map(ast.Literal),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(ast.Literal),
    st.sampled_from([True, False, None]).map(ast.Literal),
)
regexes = st.builds(ast.Regex, st.from_regex(r"[a-z/\\.\[\]+*]{1,8}", fullmatch=True)
                    .filter(lambda s: not s.endswith("\\") and "\\\\" not in s), st.sampled_from(["", "i", "im"]))
values = st.recursive(
    st.one_of(scalars, regexes, names.map(ast.EnumRef)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: ast.ListLit(tuple(xs))),
        st.lists(st.builds(ast.RecordField, idents, inner), max_size=3).map(lambda fs: ast.RecordLit(tuple(fs))),
    ),
    max_leaves=6,
)
paths = st.builds(ast.Path, idents, st.lists(st.one_of(names, st.integers(0, 9)), max_size=3).map(tuple))
atoms = st.one_of(scalars, regexes, paths)
exprs = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(ast.BinOp, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains",
                                              "matches"]), inner, inner),
        st.builds(ast.BoolOp, st.sampled_from(["and", "or"]), inner, inner),
        st.builds(ast.Not, inner),
        st.builds(ast.When, inner, inner),
        st.builds(ast.Call, idents, st.lists(inner, max_size=2).map(tuple)),
        st.lists(inner, max_size=3).map(lambda xs: ast.ListLit(tuple(xs))),
    ),
    max_leaves=8,
)
type_exprs = st.recursive(
    st.builds(ast.NamedType, idents),
    lambda inner: st.one_of(
        st.builds(ast.ListType, st.builds(ast.TypeUse, inner, st.just(()))),
        inner.filter(lambda t: not isinstance(t, ast.OptionalType)).map(ast.OptionalType),
    ),
    max_leaves=3,
)
constraints = st.lists(st.builds(ast.FieldConstraint, idents, scalars), max_size=2).map(tuple)
type_uses = st.builds(ast.TypeUse, type_exprs, constraints)
records = st.lists(st.builds(ast.RecordField, idents, values), max_size=3).map(lambda fs: ast.RecordLit(tuple(fs)))
text_lits = st.one_of(strings.map(ast.Literal), long_texts.map(lambda s: ast.Literal(s, long=True)))
task_items = st.one_of(
    st.builds(ast.TextItem, st.sampled_from(["system", "prompt"]), text_lits, st.one_of(st.none(), strings)),
    st.builds(ast.Example, st.one_of(st.none(), strings), records, values),
    st.builds(ast.ExamplesFile, strings.map(ast.Literal)),
    st.builds(ast.ConstraintDecl, idents, st.one_of(st.none(), strings), exprs),
)
decls = st.one_of(
    st.builds(ast.EnumDecl, idents, st.lists(idents, max_size=4).map(tuple)),
    st.builds(ast.TypeDecl, idents, st.lists(st.builds(ast.Field, idents, type_uses), max_size=3).map(tuple)),
    st.builds(ast.TaskDecl, idents, st.lists(st.builds(ast.Param, idents, type_uses), max_size=2).map(tuple),
              type_uses, st.lists(task_items, max_size=4).map(tuple)),
    st.builds(ast.TestDecl, idents, st.lists(st.one_of(
        st.builds(ast.Case, strings, records, st.lists(exprs, max_size=2).map(tuple)),
        st.builds(ast.Property, strings,
                  st.lists(st.builds(ast.Given, paths, st.builds(ast.Call, idents, st.lists(
                      st.one_of(atoms, st.builds(ast.KwArg, idents, atoms)), max_size=2).map(tuple))),
                      max_size=2).map(tuple),
                  st.lists(exprs, max_size=2).map(tuple),
                  st.lists(st.builds(ast.Setting, idents, values), max_size=1).map(tuple)),
    ), max_size=3).map(tuple)),
    st.builds(ast.TargetDecl, st.sampled_from(["text", "tune", "other"]).map(ast.Ident), idents, idents,
              st.lists(st.builds(ast.Option, idents, values), max_size=3).map(tuple)),
)
programs = st.builds(ast.Program, st.one_of(st.none(), idents),
                     strings.map(ast.Literal), st.lists(decls, max_size=5).map(tuple)) \
    .map(lambda p: p if p.name is not None else ast.Program(None, None, p.decls))


@settings(max_examples=300)
@given(programs)
def test_formatter_round_trip(p: ast.Program):
    text = fmt(p)
    assert parse(text) == p
    assert fmt(parse(text)) == text


@settings(max_examples=300)
@given(programs)
def test_generated_valid_syntax_reaches_the_checker_without_crashing(p: ast.Program):
    _assert_located(fmt(p))
