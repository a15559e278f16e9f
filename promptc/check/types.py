"""Check stage, types: enum and record declarations, type uses, and field constraints -> IR types."""

from __future__ import annotations

from typing import Any

from promptc import ast, codes, ir
from promptc.check.context import Context, Unresolved
from promptc.diagnostics import did_you_mean
from promptc.expr import check_regex
from promptc.source import Span

PRIMITIVES: dict[str, ir.Type] = {"str": ir.StrT(), "int": ir.IntT(), "float": ir.FloatT(), "bool": ir.BoolT()}
FIELD_CONSTRAINTS = ("min_len", "max_len", "pattern", "ge", "le")
# field constraint -> (the IR types it applies to, those types in words)
_APPLIES: dict[str, tuple[tuple[type, ...], str]] = {
    "min_len": ((ir.StrT, ir.ListT), "str and list"),
    "max_len": ((ir.StrT, ir.ListT), "str and list"),
    "pattern": ((ir.StrT,), "str"),
    "ge": ((ir.IntT, ir.FloatT), "int and float"),
    "le": ((ir.IntT, ir.FloatT), "int and float"),
}
_BAD = object()


def check_types(cx: Context) -> None:
    """Declare every enum and record, then resolve every record (reporting cycles)."""
    declare_types(cx)
    for name in list(cx.records):
        record(cx, name, cx.records[name].name.span)
    cx.out.types = {**cx.enums, **cx.resolved}


def declare_types(cx: Context) -> None:
    seen: dict[str, Span] = {}
    for d in cx.program.decls:
        if isinstance(d, (ast.EnumDecl, ast.TypeDecl)):
            if d.name.name in PRIMITIVES or d.name.name == "list":
                cx.d.error(codes.DUPLICATE_NAME, f"'{d.name.name}' is a built-in type and cannot be redeclared", d.name.span)
                continue
            if cx.dup(seen, d.name, "type"):
                continue
        if isinstance(d, ast.EnumDecl):
            members: dict[str, Span] = {}
            for m in d.members:
                cx.dup(members, m, f"member of enum {d.name.name}")
            if not d.members:
                cx.d.error(codes.EMPTY_ENUM, f"enum {d.name.name} has no members", d.span,
                           hint=f"list its members: enum {d.name.name} {{ first, second }}")
            cx.enums[d.name.name] = ir.EnumT(d.name.name, tuple(members))
        elif isinstance(d, ast.TypeDecl):
            cx.records[d.name.name] = d


def record(cx: Context, name: str, use_span: Span) -> ir.Type:
    """Resolve a record declaration to an ir.RecordT (once; later calls reuse it)."""
    if name in cx.resolved:
        return cx.resolved[name]
    if name in cx.resolving:
        cycle = " -> ".join(cx.resolving[cx.resolving.index(name):] + [name])
        cx.d.error(codes.RECURSIVE_TYPE, f"recursive type: {cycle}", use_span,
                   hint="records cannot contain themselves; flatten the structure or use a list of ids")
        raise Unresolved
    cx.resolving.append(name)
    decl = cx.records[name]
    fields: list[tuple[str, ir.Type]] = []
    seen: dict[str, Span] = {}
    try:
        for f in decl.fields:
            if cx.dup(seen, f.name, f"field in {name}"):
                continue
            fields.append((f.name.name, type_use(cx, f.type)))
    except Unresolved:
        cx.resolving.pop()
        cx.resolved[name] = ir.AnyT()
        raise
    cx.resolving.pop()
    t = ir.RecordT(name, tuple(fields))
    cx.resolved[name] = t
    return t


def type_use(cx: Context, tu: ast.TypeUse) -> ir.Type:
    """A written type with its field constraints -> an IR type (`any` where it cannot be resolved)."""
    try:
        base = _type_expr(cx, tu.type, _after(tu))
    except Unresolved:
        return ir.AnyT()
    if tu.constraints:
        base = apply_constraints(cx, base, tu.constraints)
    return base


def _after(tu: ast.TypeUse) -> str:
    """The constraints written after a `T[]` (`T[] [max_len=3]`), as written, for the hint."""
    te = tu.type
    if not (isinstance(te, ast.ListType) and te.suffix and tu.constraints):
        return ""
    text = te.span.source.text
    return " [" + ", ".join(text[c.span.start:c.span.end] for c in tu.constraints) + "]"


def _type_expr(cx: Context, te: ast.TypeExpr, after: str = "") -> ir.Type:
    if isinstance(te, ast.OptionalType):
        inner = _type_expr(cx, te.inner)
        return inner if isinstance(inner, ir.OptionalT) else ir.OptionalT(inner)
    if isinstance(te, ast.ListType):
        if te.suffix:
            item = te.item.span.source.text[te.item.span.start:te.item.span.end]
            cx.d.error(codes.SYNTAX, f"'{item}[]' is not a list type in promptc", te.span,
                       hint=f"use list[{item}]{after}")
        return ir.ListT(type_use(cx, te.item))
    name = te.name.name
    if name in PRIMITIVES:
        return PRIMITIVES[name]
    if name in cx.enums:
        return cx.enums[name]
    if name in cx.records:
        try:
            return record(cx, name, te.span)
        except Unresolved:
            if cx.resolving:
                raise
            return ir.AnyT()
    cx.d.error(codes.UNKNOWN_TYPE, f"unknown type '{name}'", te.name.span,
               hint=did_you_mean(name, [*PRIMITIVES, *cx.enums, *cx.records]) or "declare it with `type` or `enum`")
    return ir.AnyT()


# ---------------------------------------------------------------- field constraints
def apply_constraints(cx: Context, t: ir.Type, cs: tuple[ast.FieldConstraint, ...]) -> ir.Type:
    """`T [key=value, ...]` -> T with its bounds and pattern; each mistake is reported at its key."""
    if isinstance(t, ir.OptionalT):
        return ir.OptionalT(apply_constraints(cx, t.inner, cs))
    if isinstance(t, ir.AnyT):
        return t
    vals = _constraint_values(cx, t, cs)
    _check_bounds(cx, cs, vals)
    return _constrained(t, vals)


def _constraint_values(cx: Context, t: ir.Type, cs: tuple[ast.FieldConstraint, ...]) -> dict[str, Any]:
    vals: dict[str, Any] = {}
    seen: dict[str, Span] = {}
    for c in cs:
        key = c.name.name
        if key not in FIELD_CONSTRAINTS:
            cx.d.error(codes.UNKNOWN_FIELD_CONSTRAINT, f"unknown field constraint '{key}'", c.name.span,
                       hint=_constraint_hint(key, t))
            continue
        if cx.dup(seen, c.name, "field constraint"):
            continue
        applies, kinds = _APPLIES[key]
        if not isinstance(t, applies):
            cx.d.error(codes.CONSTRAINT_NOT_APPLICABLE, f"'{key}' does not apply to {t}", c.span,
                       hint=f"'{key}' applies to {kinds}")
            continue
        v = _constraint_value(cx, key, c.value)
        if v is not _BAD:
            vals[key] = v
    return vals


# Keys newcomers reach for (from JSON Schema, pydantic, other languages), by the kind of bound they mean;
# which promptc key fits depends on the type: `int [min=1]` is `ge`, `str [min=1]` is `min_len`.
_LOWER_WORDS = {"min", "minimum", "gte", "min_value", "minvalue", "min_length", "minlength", "min_items", "minitems",
                "lower", "low"}
_UPPER_WORDS = {"max", "maximum", "lte", "max_value", "maxvalue", "max_length", "maxlength", "max_items", "maxitems",
                "upper", "high"}


def _constraint_hint(key: str, t: ir.Type) -> str:
    """What to write instead of an unknown field constraint, for this type."""
    fits = [k for k in FIELD_CONSTRAINTS if isinstance(t, _APPLIES[k][0])]
    if not fits:
        return f"no field constraint applies to {t}; field constraints: {', '.join(FIELD_CONSTRAINTS)}"
    numeric = isinstance(t, (ir.IntT, ir.FloatT))
    bounds = "ge and le (inclusive)" if numeric else "min_len and max_len (inclusive)"
    word = key.lower().replace("-", "_")
    if word in _LOWER_WORDS or word in _UPPER_WORDS:
        want = ("ge" if numeric else "min_len") if word in _LOWER_WORDS else ("le" if numeric else "max_len")
        return f"did you mean '{want}'? {t} bounds are {bounds}"
    return did_you_mean(key, fits, f"field constraints for {t}") or ""


def _constraint_value(cx: Context, key: str, v: ast.Value) -> Any:
    if key == "pattern":
        return _pattern_value(cx, v)
    if key in ("min_len", "max_len"):
        if isinstance(v, ast.Literal) and isinstance(v.value, int) and not isinstance(v.value, bool) \
                and v.value >= 0:
            return v.value
        cx.d.error(codes.BAD_OPTION_VALUE, f"{key} takes a non-negative integer", v.span)
        return _BAD
    if isinstance(v, ast.Literal) and isinstance(v.value, (int, float)) and not isinstance(v.value, bool):
        return v.value
    cx.d.error(codes.BAD_OPTION_VALUE, f"{key} takes a number", v.span)
    return _BAD


def _pattern_value(cx: Context, v: ast.Value) -> Any:
    if isinstance(v, ast.Regex):
        if not check_regex(v, cx.d):
            return _BAD
        if v.flags:
            cx.d.warning(codes.PATTERN_FLAGS_IGNORED, "flags on a field pattern are ignored", v.span,
                         hint="patterns must match the whole value; use (?i) inline for case")
        cx.pattern_spans.setdefault(v.pattern, v.span)
        return v.pattern
    if isinstance(v, ast.Literal) and isinstance(v.value, str):
        if not check_regex(ast.Regex(v.value, "", v.span), cx.d):
            return _BAD
        cx.pattern_spans.setdefault(v.value, v.span)
        return v.value
    cx.d.error(codes.BAD_OPTION_VALUE, "pattern takes a /regex/", v.span)
    return _BAD


def _check_bounds(cx: Context, cs: tuple[ast.FieldConstraint, ...], vals: dict[str, Any]) -> None:
    for lo, hi in (("min_len", "max_len"), ("ge", "le")):
        if lo in vals and hi in vals and vals[lo] > vals[hi]:
            span = next(c.span for c in cs if c.name.name == lo).join(
                next(c.span for c in cs if c.name.name == hi))
            cx.d.error(codes.CONTRADICTORY_BOUNDS, f"{lo}={vals[lo]} is greater than {hi}={vals[hi]}", span,
                       hint="no value could satisfy both bounds")


def _constrained(t: ir.Type, vals: dict[str, Any]) -> ir.Type:
    if isinstance(t, ir.StrT):
        return ir.StrT(vals.get("min_len"), vals.get("max_len"), vals.get("pattern"))
    if isinstance(t, ir.ListT):
        return ir.ListT(t.item, vals.get("min_len"), vals.get("max_len"))
    if isinstance(t, ir.IntT):
        return ir.IntT(vals.get("ge"), vals.get("le"))
    if isinstance(t, ir.FloatT):
        return ir.FloatT(vals.get("ge"), vals.get("le"))
    return t


# ---------------------------------------------------------------- output patterns
def warn_unenforceable(cx: Context, t: ir.Type, seen: set[str]) -> None:
    """W301: an output pattern that constrained decoding cannot enforce (it is still validated)."""
    from promptc.schema import engine_unsupported

    t = ir.strip_optional(t)
    if isinstance(t, ir.StrT) and t.pattern is not None and t.pattern not in seen:
        seen.add(t.pattern)
        what = engine_unsupported(t.pattern)
        if what:
            cx.d.warning(codes.UNENFORCEABLE_PATTERN, f"constrained decoding cannot enforce {what} in this pattern",
                         cx.pattern_spans.get(t.pattern),
                         hint="outputs are still validated against it after generation; "
                              "rewrite the pattern without it to have it enforced while decoding")
    elif isinstance(t, ir.ListT):
        warn_unenforceable(cx, t.item, seen)
    elif isinstance(t, ir.RecordT):
        for _, ft in t.fields:
            warn_unenforceable(cx, ft, seen)
