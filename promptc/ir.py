"""Lower stage output: the target-neutral IR. Names resolved, defaults filled, no spans, no syntax.

Types here are the semantic types shared by the checker, schemas, strategies, targets and the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

# ------------------------------------------------------------------ types


@dataclass(frozen=True, slots=True)
class StrT:
    min_len: int | None = None
    max_len: int | None = None
    pattern: str | None = None

    def __str__(self) -> str:
        return "str"


@dataclass(frozen=True, slots=True)
class IntT:
    ge: int | float | None = None
    le: int | float | None = None

    def __str__(self) -> str:
        return "int"


@dataclass(frozen=True, slots=True)
class FloatT:
    ge: int | float | None = None
    le: int | float | None = None

    def __str__(self) -> str:
        return "float"


@dataclass(frozen=True, slots=True)
class BoolT:
    def __str__(self) -> str:
        return "bool"


@dataclass(frozen=True, slots=True)
class EnumT:
    name: str
    members: tuple[str, ...]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class RecordT:
    name: str
    fields: tuple[tuple[str, Type], ...]

    def field(self, name: str) -> Type | None:
        for k, t in self.fields:
            if k == name:
                return t
        return None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.fields)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListT:
    item: Type
    min_len: int | None = None
    max_len: int | None = None

    def __str__(self) -> str:
        return f"list[{self.item}]"


@dataclass(frozen=True, slots=True)
class OptionalT:
    inner: Type

    def __str__(self) -> str:
        return f"{self.inner}?"


# Types that only expressions have.
@dataclass(frozen=True, slots=True)
class NullT:
    def __str__(self) -> str:
        return "null"


@dataclass(frozen=True, slots=True)
class RegexT:
    def __str__(self) -> str:
        return "regex"


@dataclass(frozen=True, slots=True)
class AnyT:
    """The type of something already reported as an error; it unifies with everything."""

    def __str__(self) -> str:
        return "any"


Type = Union[StrT, IntT, FloatT, BoolT, EnumT, RecordT, ListT, OptionalT, NullT, RegexT, AnyT]


def strip_optional(t: Type) -> Type:
    while isinstance(t, OptionalT):
        t = t.inner
    return t


def is_numeric(t: Type) -> bool:
    return isinstance(strip_optional(t), (IntT, FloatT))


# ------------------------------------------------------------------ program
@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Type


@dataclass(frozen=True, slots=True)
class Example:
    """A training / few-shot example: input dict and output JSON value, with its origin `file:line`."""

    input: dict[str, Any] = field(hash=False)
    output: Any = field(hash=False)
    origin: str = ""
    name: str | None = None
    provenance: dict[str, Any] | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class Constraint:
    name: str
    description: str | None
    expr: Any  # expr.Node
    source: str  # the expression as written, for reports
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Variant:
    """A named alternative for the system text or the prompt template (`prompt variant "v" ...`)."""

    name: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    params: tuple[Param, ...]
    output: Type
    system: tuple[Variant, ...]  # first is the default; empty when no system text
    prompt: tuple[Variant, ...]  # first is the default
    examples: tuple[Example, ...]
    constraints: tuple[Constraint, ...]
    hash: str = ""

    @property
    def input_type(self) -> RecordT:
        return RecordT(f"{self.name}.input", tuple((p.name, p.type) for p in self.params))


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    input: dict[str, Any] = field(hash=False)
    expects: tuple[tuple[Any, str], ...] = ()  # (expr.Node, source text)
    origin: str = ""
    expected: Any = field(default=None, hash=False)  # a dataset row's labelled output (when `labelled`)
    labelled: bool = False


@dataclass(frozen=True, slots=True)
class Dataset:
    """`cases "file.jsonl"`: labelled rows (one input and its expected output per line), judged as one
    test whose pass rate is the share of rows that pass; `min_pass` is the share it needs."""

    name: str  # the path as written
    rows: tuple[Case, ...]
    min_pass: float | None = None
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Given:
    path: tuple[str | int, ...]
    generator: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    source: str = ""


@dataclass(frozen=True, slots=True)
class Perturb:
    """`perturb PATH = KIND(args)`: a metamorphic change to one input path (or the whole input)."""

    path: tuple[str | int, ...]
    kind: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    source: str = ""


@dataclass(frozen=True, slots=True)
class Property:
    name: str
    givens: tuple[Given, ...]
    checks: tuple[tuple[Any, str], ...]
    max_examples: int | None = None
    origin: str = ""
    perturbs: tuple[Perturb, ...] = ()  # non-empty: a robustness property (checks see `original`)
    from_cases: bool = False  # `from cases`: perturb the suite's case and dataset inputs, not drawn ones


@dataclass(frozen=True, slots=True)
class TestSuite:
    task: str
    cases: tuple[Case, ...]
    properties: tuple[Property, ...]
    datasets: tuple[Dataset, ...] = ()

    def test_inputs(self) -> list[dict[str, Any]]:
        """Every input a test judges by name: inline cases and every dataset row."""
        return [c.input for c in self.cases] + [r.input for d in self.datasets for r in d.rows]

    __test__ = False


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # "text" | "tune"
    name: str
    task: str
    options: dict[str, Any] = field(hash=False)


T = TypeVar("T")


def input_key(inputs: dict[str, Any]) -> str:
    """A canonical string for a set of inputs, so that equal inputs compare equal however written."""
    import json

    return json.dumps(inputs, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Program:
    name: str
    version: str
    path: str
    tasks: dict[str, Task] = field(hash=False)
    tests: tuple[TestSuite, ...] = ()
    targets: dict[str, Target] = field(default_factory=dict, hash=False)
    types: dict[str, Type] = field(default_factory=dict, hash=False)
    hash: str = ""

    def task(self, name: str | None = None) -> Task:
        """The task called `name`; with no name, the program's only task. A wrong name is a UsageError."""
        from promptc.diagnostics import did_you_mean
        from promptc.errors import UsageError

        if name is None:
            if len(self.tasks) == 1:
                return next(iter(self.tasks.values()))
            raise UsageError(f"the program has {len(self.tasks)} tasks; name one of: {', '.join(self.tasks)}")
        if name not in self.tasks:
            raise UsageError(f"no task '{name}'", hint=did_you_mean(name, self.tasks, "tasks"))
        return self.tasks[name]

    def target(self, name: str, kind: str | None = None, task: str | None = None) -> Target:
        """The target called `name`, refusing one of another kind or for another task (UsageError).
        The one owner of the rule "this target exists, is a text target, and is for this task"."""
        from promptc.diagnostics import did_you_mean
        from promptc.errors import UsageError

        if name not in self.targets:
            raise UsageError(f"no target '{name}'", hint=did_you_mean(name, self.targets, "targets"))
        t = self.targets[name]
        if kind is not None and t.kind != kind:
            how = "build it with `promptc tune`" if t.kind == "tune" else "compile or run it as a text target"
            raise UsageError(f"target '{name}' is a {t.kind} target, not a {kind} target", hint=how)
        if task is not None and t.task != task:
            raise UsageError(f"target '{name}' is for task '{t.task}', not '{task}'")
        return t

    def is_test_input(self, task: str, inputs: dict[str, Any]) -> bool:
        """Whether `inputs` is one of `task`'s test inputs (an inline case or a dataset row)."""
        return input_key(inputs) in {input_key(i) for i in self.tests_for(task).test_inputs()}

    def without_test_inputs(self, task: str, items: Iterable[T], key: Callable[[T], dict[str, Any]]) -> list[T]:
        """The one owner of the rule "test inputs are never shots, training data or distilled inputs":
        `items` less those whose inputs (`key(item)`) equal a test case's inputs."""
        tests = {input_key(i) for i in self.tests_for(task).test_inputs()}
        return [x for x in items if input_key(key(x)) not in tests]

    def tests_for(self, task: str) -> TestSuite:
        cases: list[Case] = []
        props: list[Property] = []
        datasets: list[Dataset] = []
        for t in self.tests:
            if t.task == task:
                cases.extend(t.cases)
                props.extend(t.properties)
                datasets.extend(t.datasets)
        return TestSuite(task, tuple(cases), tuple(props), tuple(datasets))
