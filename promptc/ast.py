"""Parse stage output: the typed syntax tree. Frozen dataclasses with tuples; every node has a Span.

Spans never take part in equality, so `parse(fmt(p)) == p` compares structure only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from promptc.source import Span


def _span() -> Span:
    return field(default=None, compare=False, repr=False)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Ident:
    name: str
    span: Span = _span()


# ------------------------------------------------------------------ literals and expressions
@dataclass(frozen=True, slots=True)
class Literal:
    """A scalar literal: str, int, float, bool or None (`null`)."""

    value: str | int | float | bool | None
    span: Span = _span()
    # Triple-quoted strings keep the (line, col) where each line of `value` starts in the source,
    # so template diagnostics can point inside them.
    line_origins: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)
    long: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Regex:
    pattern: str
    flags: str = ""
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class EnumRef:
    """A bare name used as a value: an enum member, resolved against the expected type."""

    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class RecordField:
    key: Ident
    value: Value
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class RecordLit:
    fields: tuple[RecordField, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    span: Span = _span()


Value = Union[Literal, Regex, EnumRef, RecordLit, ListLit]


@dataclass(frozen=True, slots=True)
class Path:
    """`ticket.body`, `output.items[0].name`: a root name and a tuple of str (field) / int (index)."""

    root: Ident
    parts: tuple[str | int, ...] = ()
    span: Span = _span()
    part_spans: tuple[Span, ...] = field(default=(), compare=False, repr=False)

    def dotted(self) -> str:
        out = self.root.name
        for p in self.parts:
            out += f"[{p}]" if isinstance(p, int) else f".{p}"
        return out


@dataclass(frozen=True, slots=True)
class KwArg:
    name: Ident
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Call:
    func: Ident
    args: tuple[Expr | KwArg, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BinOp:
    """Comparison and membership: == != < <= > >= in, `not in`, contains, matches."""

    op: str
    left: Expr
    right: Expr
    span: Span = _span()
    op_span: Span = _span()


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class When:
    """`A when B`: A must hold whenever B holds (B false means the constraint does not apply)."""

    then: Expr
    cond: Expr
    span: Span = _span()


Expr = Union[Literal, Regex, Path, Call, BinOp, BoolOp, Not, When, ListLit]


# ------------------------------------------------------------------ types
@dataclass(frozen=True, slots=True)
class FieldConstraint:
    name: Ident
    value: Value
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class NamedType:
    name: Ident
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ListType:
    item: TypeUse
    span: Span = _span()
    # Written `T[]` (a newcomer's list, which promptc writes `list[T]`): the checker reports it once, at
    # the declaration, and reads it as `list[T]` so that the rest of the program checks as intended.
    suffix: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class OptionalType:
    inner: TypeExpr
    span: Span = _span()


TypeExpr = Union[NamedType, ListType, OptionalType]


@dataclass(frozen=True, slots=True)
class TypeUse:
    type: TypeExpr
    constraints: tuple[FieldConstraint, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Field:
    name: Ident
    type: TypeUse
    span: Span = _span()


# ------------------------------------------------------------------ declarations
@dataclass(frozen=True, slots=True)
class EnumDecl:
    name: Ident
    members: tuple[Ident, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class TypeDecl:
    name: Ident
    fields: tuple[Field, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Param:
    name: Ident
    type: TypeUse
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class TextItem:
    """`system [variant "v"] "..."` or `prompt [variant "v"] "..."`."""

    kind: str  # "system" | "prompt"
    text: Literal
    variant: str | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Example:
    name: str | None
    input: RecordLit
    output: Value
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExamplesFile:
    path: Literal
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ConstraintDecl:
    name: Ident
    description: str | None
    expr: Expr
    span: Span = _span()


TaskItem = Union[TextItem, Example, ExamplesFile, ConstraintDecl]


@dataclass(frozen=True, slots=True)
class TaskDecl:
    name: Ident
    params: tuple[Param, ...]
    returns: TypeUse
    items: tuple[TaskItem, ...]
    span: Span = _span()

    def texts(self, kind: str) -> tuple[TextItem, ...]:
        return tuple(i for i in self.items if isinstance(i, TextItem) and i.kind == kind)

    @property
    def examples(self) -> tuple[Example, ...]:
        return tuple(i for i in self.items if isinstance(i, Example))

    @property
    def example_files(self) -> tuple[ExamplesFile, ...]:
        return tuple(i for i in self.items if isinstance(i, ExamplesFile))

    @property
    def constraints(self) -> tuple[ConstraintDecl, ...]:
        return tuple(i for i in self.items if isinstance(i, ConstraintDecl))


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    input: RecordLit
    expects: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Given:
    path: Path
    generator: Call
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Setting:
    name: Ident
    value: Value
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Perturb:
    """`perturb PATH = KIND(args)` in a robustness property."""

    path: Path
    perturbation: Call
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class FromCases:
    """`from cases`: a property over the suite's case and dataset inputs instead of drawn ones."""

    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Property:
    name: str
    givens: tuple[Given, ...]
    checks: tuple[Expr, ...]
    settings: tuple[Setting, ...]
    span: Span = _span()
    perturbs: tuple[Perturb, ...] = ()
    from_cases: FromCases | None = None


@dataclass(frozen=True, slots=True)
class CasesFile:
    """`cases "data.jsonl" { min_pass = 0.9 }`: a labelled dataset, one test."""

    path: Literal
    settings: tuple[Setting, ...] = ()
    span: Span = _span()

    @property
    def name(self) -> str:
        return str(self.path.value)


@dataclass(frozen=True, slots=True)
class TestDecl:
    task: Ident
    items: tuple[Case | Property | CasesFile, ...]
    span: Span = _span()

    __test__ = False  # not a pytest test class


@dataclass(frozen=True, slots=True)
class Option:
    key: Ident
    value: Value
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class TargetDecl:
    kind: Ident  # "text" | "tune"
    name: Ident
    task: Ident
    options: tuple[Option, ...]
    span: Span = _span()


Decl = Union[EnumDecl, TypeDecl, TaskDecl, TestDecl, TargetDecl]


@dataclass(frozen=True, slots=True)
class Program:
    name: Ident | None
    version: Literal | None
    decls: tuple[Decl, ...]
    span: Span = _span()

    def of(self, kind: type) -> tuple:
        return tuple(d for d in self.decls if isinstance(d, kind))
