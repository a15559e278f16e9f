"""Check stage: names, types, templates, examples, constraints, tests and targets.

It reports every mistake it can find (it never stops at the first) and, along the way, resolves
what the lower stage needs: IR types, example values, typed constraint expressions.

The checker is split by concern, the way mypy splits its own (checker, checkexpr, checkmember):

    context     the shared state (`Context`) and the results (`Checked`, `CheckedTask`, `CheckedExample`)
    types       enum and record declarations, type uses, field constraints
    values      literals -> JSON values of a declared type
    tasks       parameters, texts, constraints, inline examples
    templates   jinja2 templates against the declared inputs
    examples    examples files (JSONL) and examples against the task's constraints
    tests       test blocks: cases and properties
    generators  the `given` generators of properties
    targets     targets and their options

Each concern is a set of functions over one `Context`. A new check goes in the module of its concern
and is called from that module's entry point (`check_task`, `check_test`, ...), or from `check` below
when it is a new pass over the whole program.
"""

from __future__ import annotations

from promptc import ast
from promptc.check import targets, tasks, tests, types
from promptc.check.context import Checked, CheckedExample, CheckedTask, Context
from promptc.check.examples import EXAMPLE_KEYS, read_examples
from promptc.check.generators import GENERATORS
from promptc.check.tests import PROPERTY_SETTINGS
from promptc.check.types import FIELD_CONSTRAINTS, PRIMITIVES
from promptc.diagnostics import Diagnostics
from promptc.source import SourceFile

__all__ = [
    "EXAMPLE_KEYS", "FIELD_CONSTRAINTS", "GENERATORS", "PRIMITIVES", "PROPERTY_SETTINGS",
    "Checked", "CheckedExample", "CheckedTask", "Context", "check", "read_examples",
]


def check(program: ast.Program, src: SourceFile, diags: Diagnostics) -> Checked:
    """Run every check; diagnostics go into `diags`. The result is only complete without errors."""
    cx = Context(program, src, diags)
    types.check_types(cx)
    tasks.check_tasks(cx)
    tests.check_tests(cx)
    targets.check_targets(cx)
    return cx.out
