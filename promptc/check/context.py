"""Check stage, shared context: what every concern of the checker reads and adds to.

The checker is split by concern, the way mypy splits its checker: `types` (declarations and type uses),
`values` (literals -> JSON), `tasks` with `templates` and `examples`, `tests` with `generators`, and
`targets`. Each concern is a set of functions over one `Context`; the driver is `promptc.check.check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from promptc import ast, codes, ir
from promptc.diagnostics import Diagnostics
from promptc.expr import Checker, Node
from promptc.source import SourceFile, Span


@dataclass
class CheckedExample:
    example: ir.Example
    span: Span | None  # inline examples and examples-file lines both have one


@dataclass
class CheckedTask:
    decl: ast.TaskDecl
    params: tuple[ir.Param, ...]
    output: ir.Type
    env: dict[str, ir.Type]
    examples: list[CheckedExample] = field(default_factory=list)
    constraints: list[ir.Constraint] = field(default_factory=list)
    example_files: list[tuple[str, bytes]] = field(default_factory=list)  # (path, content) for hashing

    @property
    def input_type(self) -> ir.RecordT:
        """The task's inputs as one record: what an example's or a test case's `input` must be."""
        return input_record(self.decl.name.name, self.params)


@dataclass
class Checked:
    """What the checker resolved. `lower` turns it into an ir.Program when there are no errors."""

    program: ast.Program
    source: SourceFile
    types: dict[str, ir.Type] = field(default_factory=dict)
    tasks: dict[str, CheckedTask] = field(default_factory=dict)
    tests: list[ir.TestSuite] = field(default_factory=list)
    targets: dict[str, ir.Target] = field(default_factory=dict)


class Unresolved(Exception):
    """A type could not be resolved (a recursive record); the use becomes `any`."""


@dataclass
class Context:
    """The checker's shared state: the program, the collector, and what has been resolved so far."""

    program: ast.Program
    src: SourceFile
    d: Diagnostics
    out: Checked = field(init=False)
    enums: dict[str, ir.EnumT] = field(default_factory=dict)
    records: dict[str, ast.TypeDecl] = field(default_factory=dict)
    resolved: dict[str, ir.Type] = field(default_factory=dict)
    resolving: list[str] = field(default_factory=list)  # records being resolved, to report cycles
    pattern_spans: dict[str, Span] = field(default_factory=dict)  # field pattern -> where it was written

    def __post_init__(self) -> None:
        self.out = Checked(self.program, self.src)

    def dup(self, seen: dict[str, Span], ident: ast.Ident, what: str) -> bool:
        """Report `ident` as a duplicate (E206) if `seen` has it; else remember it. True if duplicate."""
        if ident.name in seen:
            prev = seen[ident.name]
            self.d.error(codes.DUPLICATE_NAME, f"duplicate {what} '{ident.name}'", ident.span,
                         notes=(f"first declared at {prev}",))
            return True
        seen[ident.name] = ident.span
        return False

    def condition(self, env: dict[str, ir.Type], e: ast.Expr) -> Node | None:
        """Type-check a boolean expression (a constraint, `expect` or `check`); None if it has errors."""
        since = self.d.checkpoint()
        node = Checker(env, self.enums, self.d).check_bool(e)
        return node if since.ok else None

    def task_names(self) -> list[str]:
        return [t.name.name for t in self.program.of(ast.TaskDecl)]


def input_record(task: str, params: tuple[ir.Param, ...] | list[ir.Param]) -> ir.RecordT:
    return ir.RecordT(f"{task} input", tuple((p.name, p.type) for p in params))
