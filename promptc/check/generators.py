"""Check stage, generators: the `given PATH = GENERATOR(...)` calls of property tests."""

from __future__ import annotations

from typing import Any

from promptc import ast, codes, ir
from promptc.check import values
from promptc.check.context import Context
from promptc.diagnostics import did_you_mean
from promptc.expr import check_regex

# given generators: name -> (positional arity range, keyword names, the kinds of field they fill)
GENERATORS: dict[str, tuple[tuple[int, int], tuple[str, ...], tuple[type, ...]]] = {
    "text": ((0, 0), ("min_len", "max_len", "alphabet"), (ir.StrT,)),
    "regex": ((1, 1), (), (ir.StrT,)),
    "one_of": ((1, 10_000), (), (ir.StrT, ir.IntT, ir.FloatT, ir.BoolT, ir.EnumT)),
    "ints": ((2, 2), (), (ir.IntT, ir.FloatT)),
    "floats": ((2, 2), (), (ir.FloatT,)),
    "bools": ((0, 0), (), (ir.BoolT,)),
}

Generator = tuple[str, tuple[Any, ...], tuple[tuple[str, Any], ...]]  # (name, args, kwargs)


def generator(cx: Context, call: ast.Call, ft: ir.Type | None) -> Generator | None:
    """Check a generator call against the field it fills (`ft`, None when the path is unknown)."""
    name = call.func.name
    spec = GENERATORS.get(name)
    if spec is None:
        cx.d.error(codes.UNKNOWN_GENERATOR, f"unknown generator '{name}'", call.func.span,
                   hint=did_you_mean(name, GENERATORS, "generators"))
        return None
    (lo, hi), kwnames, kinds = spec
    pos = [a for a in call.args if not isinstance(a, ast.KwArg)]
    kws = [a for a in call.args if isinstance(a, ast.KwArg)]
    since = cx.d.checkpoint()
    if not lo <= len(pos) <= hi:
        want = str(lo) if lo == hi else f"at least {lo}"
        cx.d.error(codes.BAD_GENERATOR_ARG, f"{name}() takes {want} positional argument{'s' if hi != 1 else ''}, "
                   f"got {len(pos)}", call.span)
    base = ir.strip_optional(ft) if ft is not None else None
    if base is not None and not isinstance(base, (ir.AnyT, *kinds)):
        cx.d.error(codes.BAD_GENERATOR_ARG, f"{name}() cannot generate values for a field of type {ft}", call.span,
                   hint=_generator_hint(base))
    args = _positional(cx, name, pos, base)
    if name in ("ints", "floats") and len(args) == 2 and args[0] > args[1]:
        cx.d.error(codes.CONTRADICTORY_BOUNDS, f"{name}({args[0]}, {args[1]}): the low bound is above the high bound", call.span)
    kwargs = _keywords(cx, name, kws, kwnames)
    kd = dict(kwargs)
    if "min_len" in kd and "max_len" in kd and kd["min_len"] > kd["max_len"]:
        cx.d.error(codes.CONTRADICTORY_BOUNDS, f"min_len={kd['min_len']} is greater than max_len={kd['max_len']}", call.span)
    return (name, tuple(args), tuple(kwargs)) if since.ok else None


def _positional(cx: Context, name: str, pos: list[ast.Expr], base: ir.Type | None) -> list[Any]:
    args: list[Any] = []
    for a in pos:
        if name == "regex":
            if not isinstance(a, ast.Regex):
                cx.d.error(codes.BAD_GENERATOR_ARG, "regex() takes a /regex/", a.span)
            elif check_regex(a, cx.d):
                args.append(a.pattern)
        elif name == "one_of":
            args.append(values.value(cx, _expr_as_value(a), base if base is not None else ir.AnyT()))
        elif isinstance(a, ast.Literal) and isinstance(a.value, (int, float)) and not isinstance(a.value, bool):
            args.append(a.value)
        else:
            cx.d.error(codes.BAD_GENERATOR_ARG, f"{name}() takes numbers", a.span)
    return args


def _keywords(cx: Context, name: str, kws: list[ast.KwArg], kwnames: tuple[str, ...]) -> list[tuple[str, Any]]:
    kwargs: list[tuple[str, Any]] = []
    for k in kws:
        key = k.name.name
        if key not in kwnames:
            cx.d.error(codes.BAD_GENERATOR_ARG, f"{name}() has no argument '{key}'", k.name.span,
                       hint=f"arguments: {', '.join(kwnames)}" if kwnames else None)
            continue
        v = k.value
        if key == "alphabet":
            good = isinstance(v, ast.Literal) and isinstance(v.value, str) and bool(v.value)
        else:
            good = isinstance(v, ast.Literal) and isinstance(v.value, int) and not isinstance(v.value, bool) \
                and v.value >= 0
        if not good:
            cx.d.error(codes.BAD_GENERATOR_ARG, f"{key} takes {'a non-empty string' if key == 'alphabet' else 'a non-negative integer'}",
                       v.span)
            continue
        kwargs.append((key, v.value))  # type: ignore[union-attr]
    return kwargs


def _expr_as_value(e: ast.Expr) -> ast.Value:
    if isinstance(e, ast.Path) and not e.parts:
        return ast.EnumRef(e.root.name, e.span)
    return e  # type: ignore[return-value]


def _generator_hint(t: ir.Type) -> str:
    fits = [g for g, (_, _, kinds) in GENERATORS.items() if isinstance(t, kinds)]
    return f"for {t} use: {', '.join(fits)}" if fits else f"no generator produces {t}; drop the given"
