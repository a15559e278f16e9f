"""Check stage, evaluation tests: `cases "FILE.jsonl"` datasets, the `perturb` and `from cases` parts of
robustness properties, and the rule that judge()/similar() appear only in tests.

A dataset line is an examples line (`{"input": ..., "output": ...}`), read and validated by the same
reader, with diagnostics at the line and key; its rows are test inputs, so a row equal to an example is
W401, and ir.Program.without_test_inputs keeps them out of shots, training and distillation.
"""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Any

from promptc import ast, codes, expr, ir
from promptc.check.context import CheckedExample, CheckedTask, Context
from promptc.diagnostics import did_you_mean
from promptc.source import Span

DATASET_SETTINGS = {"min_pass": "a rate between 0 and 1: the share of rows that must pass (default: --min-pass)"}

# The language's perturbations: name -> (keyword arguments with (kind, low, high), what it changes).
# promptc/testing/perturb.py implements each one; a test keeps the two in step.
PERTURBATIONS: dict[str, tuple[dict[str, tuple[type, float, float]], str]] = {
    "typos": ({"rate": (float, 0.0, 1.0)}, "str"),
    "case": ({"mode": (str, 0, 0)}, "str"),
    "whitespace": ({"rate": (float, 0.0, 1.0)}, "str"),
    "punctuation": ({"rate": (float, 0.0, 1.0)}, "str"),
    "distractor": ({"n": (int, 1, 8)}, "str"),
    "injection": ({"index": (int, 0, 1_000_000)}, "str"),
    "reorder": ({}, "record"),
    "paraphrase": ({}, "str"),
}
CASE_MODES = ("random", "lower", "upper", "title")


# ------------------------------------------------------------------ datasets
def cases_file(cx: Context, item: ast.CasesFile, ct: CheckedTask,
               example_inputs: dict[str, CheckedExample]) -> ir.Dataset | None:
    """Read a `cases "PATH"` file (relative to the program, with the same refusals as examples files)."""
    from promptc import datafiles
    from promptc.check.examples import read_examples

    since = cx.d.checkpoint()
    min_pass = _dataset_settings(cx, item)
    program_dir = FsPath(cx.src.path).parent if cx.src.path not in ("<string>", "") else None
    rows: list[ir.Case] = []
    try:
        reader = datafiles.open_examples(str(item.path.value), program_dir)
        for ce in read_examples(reader, ct.input_type, ct.output, cx.d):
            ex = ce.example
            dup = example_inputs.get(_canon(ex.input))
            if dup is not None:
                cx.d.warning(codes.TEST_DUPLICATES_EXAMPLE, f"dataset row {ex.origin} uses the same input as an example",
                             ce.span, notes=(f"the example is at {dup.example.origin}",),
                             hint="tests must be unseen: drop the row or the example")
            rows.append(ir.Case(ex.name or ex.origin, ex.input, (), ex.origin, ex.output, True))
    except datafiles.DataFileError as e:
        cx.d.error(e.code, e.message, item.path.span, hint=e.hint)
        return None
    if not since.ok:
        return None
    return ir.Dataset(item.name, tuple(rows), min_pass, str(item.span))


def _dataset_settings(cx: Context, item: ast.CasesFile) -> float | None:
    min_pass = None
    for s in item.settings:
        key = s.name.name
        if key not in DATASET_SETTINGS:
            cx.d.error(codes.UNKNOWN_SETTING, f"unknown dataset setting '{key}'", s.name.span,
                       hint=did_you_mean(key, DATASET_SETTINGS, "settings") or f"settings: {', '.join(DATASET_SETTINGS)}")
            continue
        v = s.value
        if not (isinstance(v, ast.Literal) and isinstance(v.value, (int, float)) and not isinstance(v.value, bool)
                and 0 <= v.value <= 1):
            cx.d.error(codes.BAD_SETTING, f"{key} takes {DATASET_SETTINGS[key]}", v.span)
            continue
        min_pass = float(v.value)
    return min_pass


# ------------------------------------------------------------------ robustness properties
def robust_env(ct: CheckedTask) -> dict[str, ir.Type]:
    """The names a robustness property's checks see: the (perturbed) inputs, `output`, and `original`,
    a record of the unperturbed inputs and `original.output`."""
    original = ir.RecordT("original", (*((p.name, p.type) for p in ct.params), ("output", ct.output)))
    return {**ct.env, "original": original}


def perturbation(cx: Context, p: ast.Perturb, ct: CheckedTask) -> ir.Perturb | None:
    """Check `perturb PATH = KIND(args)` against the input it changes."""
    call = p.perturbation
    name = call.func.name
    spec = PERTURBATIONS.get(name)
    if spec is None:
        cx.d.error(codes.BAD_PERTURBATION, f"unknown perturbation '{name}'", call.func.span,
                   hint=did_you_mean(name, PERTURBATIONS, "perturbations"))
        return None
    params, target = spec
    since = cx.d.checkpoint()
    path, t = _perturb_target(cx, p.path, ct.input_type)
    if t is not None:
        base = ir.strip_optional(t)
        want = ir.StrT if target == "str" else ir.RecordT
        if not isinstance(base, (want, ir.AnyT)):
            cx.d.error(codes.BAD_PERTURBATION, f"{name}() changes a {'string' if target == 'str' else 'record'}, "
                       f"and '{p.path.dotted()}' is {t}", p.path.span,
                       hint="text perturbations change a str field; reorder() changes a record (or `input`)")
    kwargs = []
    for a in call.args:
        if not isinstance(a, ast.KwArg):
            cx.d.error(codes.BAD_PERTURBATION, f"{name}() takes keyword arguments only",
                       a.span, hint=f"arguments: {', '.join(params) or 'none'}")
            continue
        key = a.name.name
        if key not in params:
            cx.d.error(codes.BAD_PERTURBATION, f"{name}() has no argument '{key}'", a.name.span,
                       hint=f"arguments: {', '.join(params)}" if params else f"{name}() takes no arguments")
            continue
        value = _argument(cx, name, key, a.value, params[key])
        if value is not None:
            kwargs.append((key, value))
    if not since.ok or path is None:
        return None
    return ir.Perturb(path, name, (), tuple(kwargs), f"{p.path.dotted()} = {name}(...)")


def _argument(cx: Context, name: str, key: str, v: ast.Expr, spec: tuple[type, float, float]) -> Any:
    kind, lo, hi = spec
    if kind is str:
        if isinstance(v, ast.Literal) and v.value in CASE_MODES:
            return v.value
        cx.d.error(codes.BAD_PERTURBATION, f"{name}({key}=...) takes one of: {', '.join(map(json.dumps, CASE_MODES))}",
                   v.span)
        return None
    num = v.value if isinstance(v, ast.Literal) else None
    ok = isinstance(num, (int, float)) and not isinstance(num, bool) and (kind is float or isinstance(num, int))
    if not ok or not lo <= num <= hi:  # type: ignore[operator]
        what = "an integer" if kind is int else "a number"
        cx.d.error(codes.BAD_PERTURBATION, f"{name}({key}=...) takes {what} from {lo:g} to {hi:g}", v.span)
        return None
    return num


def _perturb_target(cx: Context, path: ast.Path, in_t: ir.RecordT) -> tuple[tuple[str | int, ...] | None,
                                                                             ir.Type | None]:
    """The IR path and type a `perturb` path names; `input` alone (when no parameter is called that) is the
    task's inputs as a whole."""
    if path.root.name == "input" and not path.parts and in_t.field("input") is None:
        return (), in_t
    t: ir.Type | None = in_t.field(path.root.name)
    if t is None:
        cx.d.error(codes.BAD_PERTURBATION, f"perturb path '{path.dotted()}' does not exist: no input "
                   f"'{path.root.name}'", path.root.span,
                   hint=did_you_mean(path.root.name, [*in_t.field_names, "input"], "inputs"))
        return None, None
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
        hint = did_you_mean(str(part), base.field_names, f"fields of {base.name}") \
            if isinstance(base, ir.RecordT) else None
        cx.d.error(codes.BAD_PERTURBATION, f"perturb path '{path.dotted()}' does not exist: {base} has no '{part}'",
                   span, hint=hint)
        return None, None
    return (path.root.name, *path.parts), t


# ------------------------------------------------------------------ judge() and similar()
def test_only_functions(cx: Context, node: Any, span: Span | None) -> bool:
    """E405 where a constraint calls judge() or similar(): they run only inside a test run. True if clean."""
    found = _first_call(node, expr.TEST_ONLY_FUNCTIONS)
    if found is not None:
        cx.d.error(codes.TEST_ONLY_FUNCTION, f"{found}() can only be used in a test's `expect` or `check`", span,
                   hint="constraints are also prompt sentences and training-data filters; move it into a test")
    return found is None


def _first_call(node: Any, names: tuple[str, ...]) -> str | None:
    if isinstance(node, expr.Fn) and node.name in names:
        return node.name
    for slot in getattr(node, "__slots__", ()):
        child = getattr(node, slot, None)
        for c in (child if isinstance(child, tuple) else (child,)):
            if hasattr(c, "__slots__"):
                hit = _first_call(c, names)
                if hit:
                    return hit
    return None


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
