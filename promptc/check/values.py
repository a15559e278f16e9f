"""Check stage, values: literals in the source (examples, test inputs, generator arguments) -> JSON values
of a declared type, with every mismatch reported at its span."""

from __future__ import annotations

from typing import Any

from promptc import ast, codes, ir
from promptc.check.context import Context
from promptc.diagnostics import did_you_mean
from promptc.expr import literal_hint
from promptc.schema import validate
from promptc.source import Span


def value(cx: Context, v: ast.Value, t: ir.Type) -> Any:
    """Convert a literal to a JSON value of type `t`, reporting every mismatch at its span."""
    if isinstance(t, ir.OptionalT):
        if isinstance(v, ast.Literal) and v.value is None:
            return None
        return value(cx, v, t.inner)
    if isinstance(t, ir.AnyT):
        return any_value(v)
    if isinstance(v, ast.Literal) and v.value is None:
        cx.d.error(codes.SCHEMA_MISMATCH, f"expected {t}, got null", v.span, hint=f"make the type optional ({t}?) to allow null")
        return None
    if isinstance(t, ir.EnumT):
        return _enum_value(cx, v, t)
    if isinstance(t, ir.RecordT):
        return _record_value(cx, v, t)
    if isinstance(t, ir.ListT):
        return _list_value(cx, v, t)
    return _scalar_value(cx, v, t)


def _enum_value(cx: Context, v: ast.Value, t: ir.EnumT) -> Any:
    if isinstance(v, ast.EnumRef) or (isinstance(v, ast.Literal) and isinstance(v.value, str)):
        name = v.name if isinstance(v, ast.EnumRef) else str(v.value)
        if name not in t.members:
            cx.d.error(codes.UNKNOWN_MEMBER, f"'{name}' is not a member of enum {t.name}", v.span,
                       hint=(literal_hint(name) if isinstance(v, ast.EnumRef) else None) or
                       did_you_mean(name, t.members, "members"))
        return name
    return _mismatch(cx, v, t)


def _record_value(cx: Context, v: ast.Value, t: ir.RecordT) -> Any:
    if not isinstance(v, ast.RecordLit):
        return _mismatch(cx, v, t)
    out: dict[str, Any] = {}
    seen: dict[str, Span] = {}
    for f in v.fields:
        if f.key.name in seen:
            cx.d.error(codes.DUPLICATE_KEY, f"duplicate key '{f.key.name}'", f.key.span,
                       notes=(f"first given at {seen[f.key.name]}",))
            continue
        seen[f.key.name] = f.key.span
        ft = t.field(f.key.name)
        if ft is None:
            cx.d.error(codes.UNKNOWN_FIELD, f"unknown field '{f.key.name}' in {t.name}", f.key.span,
                       hint=did_you_mean(f.key.name, t.field_names, f"fields of {t.name}"))
            continue
        out[f.key.name] = value(cx, f.value, ft)
    missing = [k for k, ft in t.fields if k not in seen and not isinstance(ft, ir.OptionalT)]
    if missing:
        cx.d.error(codes.SCHEMA_MISMATCH, f"missing field{'s' if len(missing) > 1 else ''} "
                   f"{', '.join(repr(m) for m in missing)} of {t.name}", v.span)
    return out


def _list_value(cx: Context, v: ast.Value, t: ir.ListT) -> Any:
    if not isinstance(v, ast.ListLit):
        return _mismatch(cx, v, t)
    items = [value(cx, i, t.item) for i in v.items]  # type: ignore[arg-type]  # list items are values here
    for viol in validate(ir.ListT(ir.AnyT(), t.min_len, t.max_len), items):
        cx.d.error(codes.FIELD_CONSTRAINT_VIOLATED, viol.message, v.span)
    return items


def _scalar_value(cx: Context, v: ast.Value, t: ir.Type) -> Any:
    if not (isinstance(v, ast.Literal) and not isinstance(v.value, (dict, list))):
        return _mismatch(cx, v, t)
    val: Any = v.value
    ok = (isinstance(t, ir.StrT) and isinstance(val, str)) or \
         (isinstance(t, ir.BoolT) and isinstance(val, bool)) or \
         (isinstance(t, ir.IntT) and _integral(val)) or \
         (isinstance(t, ir.FloatT) and isinstance(val, (int, float)) and not isinstance(val, bool))
    if not ok:
        return _mismatch(cx, v, t)
    for viol in validate(t, val):
        cx.d.error(codes.FIELD_CONSTRAINT_VIOLATED, viol.message, v.span)
    return float(val) if isinstance(t, ir.FloatT) else int(val) if isinstance(t, ir.IntT) else val


def _integral(val: Any) -> bool:
    """An int, or a float with no fractional part (`3.0`): schema.py's one rule for `int`."""
    return not isinstance(val, bool) and (isinstance(val, int) or (isinstance(val, float) and val.is_integer()))


def _mismatch(cx: Context, v: ast.Value, t: ir.Type) -> Any:
    got = literal_kind(v)
    hint = literal_hint(v.name) if isinstance(v, ast.EnumRef) else None
    if hint is not None:
        pass
    elif isinstance(t, ir.EnumT):
        hint = f"write a member of {t.name} as a bare name: {', '.join(t.members[:5])}"
    elif isinstance(t, ir.StrT) and isinstance(v, ast.EnumRef):
        hint = f'strings are quoted: "{v.name}"'
    cx.d.error(codes.SCHEMA_MISMATCH, f"expected {t}, got {got}", v.span, hint=hint)
    return any_value(v)


def any_value(v: ast.Value) -> Any:
    """A literal as JSON without a type to check it against."""
    if isinstance(v, ast.Literal):
        return v.value
    if isinstance(v, ast.EnumRef):
        return v.name
    if isinstance(v, ast.Regex):
        return v.pattern
    if isinstance(v, ast.ListLit):
        return [any_value(i) for i in v.items]  # type: ignore[arg-type]
    if isinstance(v, ast.RecordLit):
        return {f.key.name: any_value(f.value) for f in v.fields}
    return None


def literal_kind(v: ast.Value) -> str:
    """What a literal is, in words, for "expected T, got ..." messages."""
    if isinstance(v, ast.Literal):
        x = v.value
        if isinstance(x, bool):
            return "bool"
        if isinstance(x, int):
            return "int"
        if isinstance(x, float):
            return "float"
        if isinstance(x, str):
            return "str"
        return "null"
    return {ast.RecordLit: "a record", ast.ListLit: "a list", ast.EnumRef: "a name", ast.Regex: "a regex"}.get(
        type(v), type(v).__name__)
