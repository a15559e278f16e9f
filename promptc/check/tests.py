"""Check stage, tests: `test TASK { case ... property ... }` blocks -> ir.TestSuite.

A case's input is checked like an example's, and a test input equal to an example input is W401:
tests are never shots or training data.
"""

from __future__ import annotations

import json
from typing import Any

from promptc import ast, codes, ir
from promptc.check import datasets, generators, values
from promptc.check.context import CheckedExample, CheckedTask, Context
from promptc.diagnostics import did_you_mean
from promptc.expr import to_source
from promptc.source import Span

PROPERTY_SETTINGS = {"max_examples": "int"}


def check_tests(cx: Context) -> None:
    for test in cx.program.of(ast.TestDecl):
        ct = cx.out.tasks.get(test.task.name)
        if ct is None:
            cx.d.error(codes.UNKNOWN_TASK, f"unknown task '{test.task.name}'", test.task.span,
                       hint=did_you_mean(test.task.name, cx.task_names()) or "tests name the task they test")
            continue
        cx.out.tests.append(check_test(cx, test, ct))


def check_test(cx: Context, test: ast.TestDecl, ct: CheckedTask) -> ir.TestSuite:
    example_inputs = {_canon(ce.example.input): ce for ce in ct.examples}
    cases: list[ir.Case] = []
    props: list[ir.Property] = []
    sets: list[ir.Dataset] = []
    names: dict[str, Span] = {}
    for item in test.items:
        cx.dup(names, ast.Ident(item.name, item.span), "test")
        if isinstance(item, ast.Case):
            case = check_case(cx, item, ct, example_inputs)
            if case is not None:
                cases.append(case)
        elif isinstance(item, ast.CasesFile):
            ds = datasets.cases_file(cx, item, ct, example_inputs)
            if ds is not None:
                sets.append(ds)
        else:
            prop = check_property(cx, item, ct)
            if prop is not None:
                props.append(prop)
    return ir.TestSuite(ct.decl.name.name, tuple(cases), tuple(props), tuple(sets))


def check_case(cx: Context, item: ast.Case, ct: CheckedTask,
               example_inputs: dict[str, CheckedExample]) -> ir.Case | None:
    since = cx.d.checkpoint()
    inp = values.value(cx, item.input, ct.input_type)
    ok = since.ok
    expects = []
    for e in item.expects:
        node = cx.condition(ct.env, e)
        if node is not None:
            expects.append((node, to_source(node)))
    if not ok:
        return None
    dup = example_inputs.get(_canon(inp))
    if dup is not None:
        cx.d.warning(codes.TEST_DUPLICATES_EXAMPLE, f"test case '{item.name}' uses the same input as an example",
                     item.input.span, notes=(f"the example is at {dup.example.origin}",),
                     hint="tests must be unseen: change the case or drop the example")
    return ir.Case(item.name, inp, tuple(expects), str(item.span))


def check_property(cx: Context, item: ast.Property, ct: CheckedTask) -> ir.Property | None:
    since = cx.d.checkpoint()
    in_t = ct.input_type
    givens = []
    gseen: dict[str, Span] = {}
    for g in item.givens:
        cx.dup(gseen, ast.Ident(g.path.dotted(), g.path.span), "given path")
        ft = _given_target(cx, g.path, in_t)
        gen = generators.generator(cx, g.generator, ft)
        if gen is not None and ft is not None:
            givens.append(ir.Given((g.path.root.name, *g.path.parts), gen[0], gen[1], gen[2],
                                   f"{g.path.dotted()} = {g.generator.func.name}(...)"))
    perturbs = [datasets.perturbation(cx, p, ct) for p in item.perturbs]
    env = datasets.robust_env(ct) if item.perturbs else ct.env
    checks = []
    for e in item.checks:
        node = cx.condition(env, e)
        if node is not None:
            checks.append((node, to_source(node)))
    max_examples = _settings(cx, item)
    if not since.ok:
        return None
    return ir.Property(item.name, tuple(givens), tuple(checks), max_examples, str(item.span),
                       tuple(p for p in perturbs if p is not None), item.from_cases is not None)


def _settings(cx: Context, item: ast.Property) -> int | None:
    max_examples = None
    for s in item.settings:
        key = s.name.name
        if key not in PROPERTY_SETTINGS:
            cx.d.error(codes.UNKNOWN_SETTING, f"unknown property setting '{key}'", s.name.span,
                       hint=f"settings: {', '.join(PROPERTY_SETTINGS)}")
            continue
        v = s.value
        if not (isinstance(v, ast.Literal) and isinstance(v.value, int) and not isinstance(v.value, bool)
                and v.value > 0):
            cx.d.error(codes.BAD_SETTING, f"{key} takes a positive integer", v.span)
            continue
        max_examples = v.value
    return max_examples


def _given_target(cx: Context, path: ast.Path, in_t: ir.RecordT) -> ir.Type | None:
    """The type of the input field a `given` path names, or None (reported) if there is none."""
    t: ir.Type | None = in_t.field(path.root.name)
    if t is None:
        cx.d.error(codes.BAD_GIVEN_PATH, f"given path '{path.dotted()}' does not exist: no input '{path.root.name}'",
                   path.root.span, hint=did_you_mean(path.root.name, in_t.field_names, "inputs"))
        return None
    spans = path.part_spans or (path.span,) * len(path.parts)
    for part, span in zip(path.parts, spans):
        base = ir.strip_optional(t)
        ft = base.field(part) if isinstance(part, str) and isinstance(base, ir.RecordT) else None
        if ft is not None:
            t = ft
            continue
        if isinstance(part, int) and isinstance(base, ir.ListT):
            t = base.item
            continue
        hint = None
        if isinstance(base, ir.RecordT):
            hint = did_you_mean(str(part), base.field_names, f"fields of {base.name}")
        cx.d.error(codes.BAD_GIVEN_PATH, f"given path '{path.dotted()}' does not exist: {base} has no '{part}'", span, hint=hint)
        return None
    return t


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
