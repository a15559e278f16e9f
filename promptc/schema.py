"""Schemas: validate JSON values against IR types, emit JSON Schema, build pydantic models and
hypothesis strategies. Field constraints feed all of them, so the three never disagree."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from promptc import ir
from promptc.source import escape_surrogates, first_surrogate


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a value does not fit its type. `kind` is "schema" (shape) or "constraint" (a bound)."""

    path: tuple[str | int, ...]
    message: str
    kind: str = "schema"
    hint: str | None = None

    def where(self, root: str = "") -> str:
        out = root
        for p in self.path:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
        return out or "value"

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"


def type_name_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "record"
    return type(value).__name__


_RE_CACHE: dict[str, re.Pattern] = {}


def compiled(pattern: str) -> re.Pattern:
    r = _RE_CACHE.get(pattern)
    if r is None:
        r = _RE_CACHE[pattern] = re.compile(pattern)
    return r


# One rule per type, used for inputs, examples, model outputs and property checks alike (every path
# calls `validate`, `is_valid_fn` or `conform` below; tests/core/test_schema.py holds them to one verdict):
# - `int` is a 64-bit signed integer. A number with no fractional part (`3.0`) is an int, as in JSON
#   Schema's "integer" (a model's JSON may well print it that way); `conform` reads it as the int 3.
#   Booleans and strings are never numbers.
# - `float` is a finite IEEE double: any int or float, never NaN or an infinity (JSON has neither).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def number_problem(t: ir.IntT | ir.FloatT, v: Any) -> str | None:
    """Why `v` is not a number of `t`'s kind (bounds aside), or None when it is."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"expected {t}, got {type_name_of(v)}"
    if isinstance(v, float) and not math.isfinite(v):
        return f"expected {t}, got {v} (not a finite number)"
    if isinstance(t, ir.IntT):
        if isinstance(v, float) and not v.is_integer():
            return f"expected {t}, got float {v!r} (it has a fractional part)"
        if not INT_MIN <= v <= INT_MAX:
            return f"{v:.0f} is outside the 64-bit int range" if isinstance(v, float) else \
                f"{v} is outside the 64-bit int range"
    return None


def conform(t: ir.Type, v: Any) -> Any:
    """A valid value in its canonical form: ints of an `int` type as Python ints (`3.0` -> `3`), and
    optional record fields that were left out as None. Call it after `validate` found nothing."""
    if isinstance(t, ir.OptionalT):
        return None if v is None else conform(t.inner, v)
    if isinstance(t, ir.IntT) and isinstance(v, float):
        return int(v)
    if isinstance(t, ir.ListT) and isinstance(v, list):
        return [conform(t.item, x) for x in v]
    if isinstance(t, ir.RecordT) and isinstance(v, dict):
        return {k: conform(ft, v.get(k)) for k, ft in t.fields}
    return v


def validate(t: ir.Type, value: Any, path: tuple[str | int, ...] = ()) -> list[Violation]:
    """Every way `value` (a JSON value; enums as member-name strings) fails to fit `t`."""
    out: list[Violation] = []
    _validate(t, value, path, out)
    return out


def _bounds_len(t, n: int, what: str, path, out: list[Violation]) -> None:
    if t.min_len is not None and n < t.min_len:
        out.append(Violation(path, f"{what} {n} is under min_len={t.min_len}", "constraint"))
    if t.max_len is not None and n > t.max_len:
        out.append(Violation(path, f"{what} {n} is over max_len={t.max_len}", "constraint"))


def _validate(t: ir.Type, v: Any, path, out: list[Violation]) -> None:
    if isinstance(t, ir.OptionalT):
        if v is not None:
            _validate(t.inner, v, path, out)
        return
    if isinstance(t, ir.AnyT):
        return
    if v is None:
        out.append(Violation(path, f"expected {t}, got null"))
        return
    if isinstance(t, ir.StrT):
        if not isinstance(v, str):
            out.append(Violation(path, f"expected str, got {type_name_of(v)}"))
            return
        bad = first_surrogate(v)
        if bad >= 0:  # a Python str (or a JSON "\ud800" escape) can hold one; no prompt or file can
            out.append(Violation(path, f"holds a lone surrogate U+{ord(v[bad]):04X} at character {bad + 1}, which "
                                       "cannot be encoded as UTF-8", hint="surrogates come in pairs; pass the "
                                                                         "character itself"))
            return
        _bounds_len(t, len(v), "length", path, out)
        if t.pattern is not None and not compiled(t.pattern).fullmatch(v):
            out.append(Violation(path, f"does not match pattern /{t.pattern}/", "constraint"))
    elif isinstance(t, ir.BoolT):
        if not isinstance(v, bool):
            out.append(Violation(path, f"expected bool, got {type_name_of(v)}"))
    elif isinstance(t, (ir.IntT, ir.FloatT)):
        problem = number_problem(t, v)
        if problem is not None:
            out.append(Violation(path, problem))
            return
        if t.ge is not None and v < t.ge:
            out.append(Violation(path, f"{v} is under ge={t.ge}", "constraint"))
        if t.le is not None and v > t.le:
            out.append(Violation(path, f"{v} is over le={t.le}", "constraint"))
    elif isinstance(t, ir.EnumT):
        if not isinstance(v, str):
            out.append(Violation(path, f"expected a member of {t.name}, got {type_name_of(v)}"))
        elif v not in t.members:
            from promptc.diagnostics import closest

            near = closest(v, t.members)
            out.append(Violation(path, f"'{escape_surrogates(v)}' is not a member of {t.name} ({', '.join(t.members)})",
                                 hint=f"did you mean '{near}'?" if near else None))
    elif isinstance(t, ir.ListT):
        if not isinstance(v, list):
            out.append(Violation(path, f"expected {t}, got {type_name_of(v)}"))
            return
        _bounds_len(t, len(v), "item count", path, out)
        for i, item in enumerate(v):
            _validate(t.item, item, (*path, i), out)
    elif isinstance(t, ir.RecordT):
        if not isinstance(v, dict):
            out.append(Violation(path, f"expected {t.name} (a record), got {type_name_of(v)}"))
            return
        for k, ft in t.fields:
            if k not in v:
                if not isinstance(ft, ir.OptionalT):
                    out.append(Violation((*path, k), f"missing field '{k}' of {t.name}"))
            else:
                _validate(ft, v[k], (*path, k), out)
        for k in v:
            if not isinstance(k, str):  # a dict from Python code, not JSON
                out.append(Violation(path, f"field names are strings; got {type_name_of(k)} {escape_surrogates(repr(k))[:80]}"))
                continue
            if t.field(k) is None:
                from promptc.diagnostics import closest

                near = closest(k, t.field_names)
                out.append(Violation((*path, escape_surrogates(k)), f"unknown field '{escape_surrogates(k)}' in {t.name}",
                                     hint=f"did you mean '{near}'?" if near else None))


_SURROGATE_SEARCH = re.compile("[\ud800-\udfff]").search  # lone surrogates: no prompt or file can hold one


def is_valid_fn(t: ir.Type):
    """A fast yes/no validator for `t`: generated once as one flat Python function (no call per
    field), so validating every render stays cheap. `validate` explains a failure."""
    ns: dict[str, Any] = {}
    lines = ["def check(v0):"]
    counter = [0]

    def const(value: Any) -> str:
        name = f"_c{len(ns)}"
        ns[name] = value
        return name

    def var() -> str:
        counter[0] += 1
        return f"v{counter[0]}"

    def length_bounds(t: ir.StrT | ir.ListT, v: str, ind: str) -> None:
        if t.min_len is not None:
            lines.append(f"{ind}if len({v}) < {t.min_len}: return False")
        if t.max_len is not None:
            lines.append(f"{ind}if len({v}) > {t.max_len}: return False")

    def gen(t: ir.Type, v: str, ind: str) -> None:
        if isinstance(t, ir.OptionalT):
            lines.append(f"{ind}if {v} is not None:")
            gen(t.inner, v, ind + " ")
            lines.append(f"{ind} pass")
        elif isinstance(t, ir.AnyT):
            return
        elif isinstance(t, ir.StrT):
            lines.append(f"{ind}if not isinstance({v}, str): return False")
            lines.append(f"{ind}if {const(_SURROGATE_SEARCH)}({v}) is not None: return False")
            length_bounds(t, v, ind)
            if t.pattern is not None:
                lines.append(f"{ind}if {const(compiled(t.pattern).fullmatch)}({v}) is None: return False")
        elif isinstance(t, ir.BoolT):
            lines.append(f"{ind}if not isinstance({v}, bool): return False")
        elif isinstance(t, (ir.IntT, ir.FloatT)):
            lines.append(f"{ind}if isinstance({v}, bool) or not isinstance({v}, (int, float)): return False")
            if isinstance(t, ir.IntT):  # is_integer() is False for NaN and the infinities too
                lines.append(f"{ind}if isinstance({v}, float) and not {v}.is_integer(): return False")
                lines.append(f"{ind}if not {INT_MIN} <= {v} <= {INT_MAX}: return False")
            else:
                lines.append(f"{ind}if isinstance({v}, float) and not {const(math.isfinite)}({v}): return False")
        elif isinstance(t, ir.EnumT):
            lines.append(f"{ind}if not isinstance({v}, str) or {v} not in {const(frozenset(t.members))}: "
                         "return False")
        elif isinstance(t, ir.ListT):
            lines.append(f"{ind}if not isinstance({v}, list): return False")
            length_bounds(t, v, ind)
            item = var()
            lines.append(f"{ind}for {item} in {v}:")
            gen(t.item, item, ind + " ")
            lines.append(f"{ind} pass")
        elif isinstance(t, ir.RecordT):
            names = const(frozenset(t.field_names))
            lines.append(f"{ind}if not isinstance({v}, dict) or not {names}.issuperset({v}): return False")
            for k, ft in t.fields:
                fv = var()
                if isinstance(ft, ir.OptionalT):
                    lines.append(f"{ind}{fv} = {v}.get({k!r})")
                else:
                    lines.append(f"{ind}if {k!r} not in {v}: return False")
                    lines.append(f"{ind}{fv} = {v}[{k!r}]")
                gen(ft, fv, ind)
        if isinstance(t, (ir.IntT, ir.FloatT)):
            if t.ge is not None:
                lines.append(f"{ind}if {v} < {t.ge!r}: return False")
            if t.le is not None:
                lines.append(f"{ind}if {v} > {t.le!r}: return False")

    gen(t, "v0", " ")
    lines.append(" return True")
    exec(compile("\n".join(lines), f"<promptc validator for {t}>", "exec"), ns)  # noqa: S102 - our own code
    return ns["check"]


# ------------------------------------------------------------------ JSON Schema
def json_schema(t: ir.Type, *, strict: bool = True) -> dict[str, Any]:
    """The JSON Schema of a type. Records forbid extra keys; named types go into `$defs`."""
    defs: dict[str, Any] = {}
    root = _js(t, defs, strict)
    if defs:
        root = {**root, "$defs": defs} if "$ref" not in root else {"$ref": root["$ref"], "$defs": defs}
    return root


def _js(t: ir.Type, defs: dict, strict: bool) -> dict[str, Any]:
    if isinstance(t, ir.OptionalT):
        return {"anyOf": [_js(t.inner, defs, strict), {"type": "null"}]}
    if isinstance(t, ir.StrT):
        s: dict[str, Any] = {"type": "string"}
        if t.min_len is not None:
            s["minLength"] = t.min_len
        if t.max_len is not None:
            s["maxLength"] = t.max_len
        if t.pattern is not None:
            s["pattern"] = f"^(?:{t.pattern})$"
        return s
    if isinstance(t, (ir.IntT, ir.FloatT)):
        s = {"type": "integer" if isinstance(t, ir.IntT) else "number"}
        if t.ge is not None:
            s["minimum"] = t.ge
        if t.le is not None:
            s["maximum"] = t.le
        return s
    if isinstance(t, ir.BoolT):
        return {"type": "boolean"}
    if isinstance(t, ir.EnumT):
        defs.setdefault(t.name, {"type": "string", "enum": list(t.members)})
        return {"$ref": f"#/$defs/{t.name}"}
    if isinstance(t, ir.ListT):
        s = {"type": "array", "items": _js(t.item, defs, strict)}
        if t.min_len is not None:
            s["minItems"] = t.min_len
        if t.max_len is not None:
            s["maxItems"] = t.max_len
        return s
    if isinstance(t, ir.RecordT):
        if t.name not in defs:
            defs[t.name] = {}  # reserve the name first: records may nest
            body = {
                "type": "object",
                "properties": {k: _js(ft, defs, strict) for k, ft in t.fields},
                "required": [k for k, ft in t.fields if not isinstance(ft, ir.OptionalT) or strict],
                "additionalProperties": False,
            }
            defs[t.name] = body
        return {"$ref": f"#/$defs/{t.name}"}
    return {}


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a schema with every `$ref` into `$defs` replaced by its definition."""
    defs = schema.get("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node and node["$ref"].startswith("#/$defs/"):
                return walk(defs[node["$ref"][len("#/$defs/"):]])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(x) for x in node]
        return node

    return walk(schema)


def example_value(t: ir.Type) -> Any:
    """A short illustrative value of a type, for output-format instructions."""
    if isinstance(t, ir.OptionalT):
        return example_value(t.inner)
    if isinstance(t, ir.StrT):
        return "..."
    if isinstance(t, ir.IntT):
        return t.ge if t.ge is not None else 0
    if isinstance(t, ir.FloatT):
        return float(t.ge) if t.ge is not None else 0.0
    if isinstance(t, ir.BoolT):
        return True
    if isinstance(t, ir.EnumT):
        return t.members[0] if t.members else ""
    if isinstance(t, ir.ListT):
        return [example_value(t.item)]
    if isinstance(t, ir.RecordT):
        return {k: example_value(ft) for k, ft in t.fields}
    return None


# ------------------------------------------------------------------ hypothesis strategies
# What is drawn (docs/testing.md, "What property tests draw"): every value of the declared domain can be
# drawn, and each boundary is drawn on purpose. A length or a number is drawn as one_of(the bounds, any
# value between them), so about half the draws of a bounded leaf sit on a bound; `domain()` adds a sweep,
# a short list of inputs that pins every bound, every enum member and null for each optional, which the
# property runner draws first. Two caps keep unbounded types finite; they are settable (`Limits`,
# `--max-text-len`, `--max-list-len`), and every cut they make is named in `Domain.cuts` and the report.
DEFAULT_MAX_TEXT = 200  # strings without max_len are drawn up to this many characters
DEFAULT_MAX_ITEMS = 5  # lists without max_len are drawn up to this many items
SEGMENT = 256  # a string longer than this repeats a drawn run of up to SEGMENT characters (speed)
RUN = 16  # a list longer than this repeats a drawn run of up to RUN items (speed)
# (hypothesis draws at most 8,192 choices per input, one per character, so an input of a few long strings
# drawn in full would overflow it; both runs are settable: Limits(text_run=, list_run=), --text-run/--list-run)
FLOAT_MAX = 1.7976931348623157e308  # the largest finite double: the bounds of an unbounded float


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on drawn sizes. `max_text`/`max_list`: the longest string/list drawn, declared max_len or not
    (None: the declared max_len in full, and DEFAULT_MAX_TEXT/DEFAULT_MAX_ITEMS where none is declared).
    A cap never goes below a declared min_len. `text_run`/`list_run`: past this length a string or list
    repeats a drawn run of up to that many characters or items (None: SEGMENT, RUN)."""

    max_text: int | None = None
    max_list: int | None = None
    text_run: int | None = None
    list_run: int | None = None


@dataclass
class Domain:
    """What the generators of a type draw: `strategy` (the general strategy, bounds mixed in), `sweep`
    (strategies that together pin every bound, enum member and null: draw each once) and `cuts` (where a
    cap kept the draws from part of the declared domain, in words)."""

    strategy: Any
    sweep: list[Any] = field(default_factory=list)
    cuts: list[str] = field(default_factory=list)


def _where(path: tuple) -> str:
    out = "input"
    for p in path:
        out += "[]" if p == "[]" else f".{p}"
    return out


def _tile(n: int):
    return lambda s: (s * (n // max(1, len(s)) + 1))[:n]


def _text_of_length(n: int, alphabet: str | None = None, run: int = SEGMENT):
    """Strings of exactly n characters; past `run` a drawn run repeats, so hypothesis never needs more
    than `run` choices for one string (it draws at most 8,192 in all per example)."""
    from hypothesis import strategies as st

    chars = {} if alphabet is None else {"alphabet": alphabet}
    if n <= run:
        return st.text(**chars, min_size=n, max_size=n)
    return st.text(**chars, min_size=1, max_size=max(1, run)).map(_tile(n))


def _list_of_length(n: int, item, run: int = RUN):
    from hypothesis import strategies as st

    if n <= run:
        return st.lists(item, min_size=n, max_size=n)
    return st.lists(item, min_size=1, max_size=max(1, run)).map(_tile(n))


def _run_cut(what: str, hi: int, run: int, path: tuple, cuts: list[str]) -> None:
    """Name the repetition past `run` (content, not length: every length is still drawn)."""
    if hi > run:
        unit, flag = ("characters", "--text-run") if what == "str" else ("items", "--list-run")
        cuts.append(f"{_where(path)}: past {run} {unit} a drawn run of up to {run} {unit} repeats "
                    f"({flag} N draws longer runs)")


def _bounded(lo: Any, hi: Any, general):
    """one_of(anything between, the bounds): the bounds are drawn on purpose. The general strategy comes
    first because hypothesis shrinks towards the first branch: a failure at a bound still shrinks to the
    smallest failing value in between, not only to `lo` or stuck at `hi`."""
    from hypothesis import strategies as st

    bounds = [lo] if lo == hi else [lo, hi]
    return st.one_of(general, st.sampled_from(bounds))


def _length_range(what: str, lo: int, declared: int | None, cap: int | None, default: int, path: tuple,
                  cuts: list[str], option: str) -> int:
    """The longest length drawn for a str or list, recording a cut when a cap shortens the domain."""
    unit = "characters" if what == "str" else "items"
    if declared is None:
        hi = max(lo, cap if cap is not None else default)
        cuts.append(f"{_where(path)}: {what} has no max_len; drawn up to {hi} {unit} ({option} N draws longer)")
        return hi
    if cap is not None and cap < declared:
        hi = max(lo, cap)
        if hi < declared:
            cuts.append(f"{_where(path)}: drawn up to {hi} {unit} of max_len={declared} ({option} {cap})")
        return hi
    return declared


def text_domain(lo: int, hi: int, alphabet: str | None = None, run: int = SEGMENT) -> Domain:
    """Strings of lo..hi characters: any length in between, with lo and hi drawn on purpose."""
    from hypothesis import strategies as st

    lengths = _bounded(lo, hi, st.integers(lo, hi))
    sweep = [_text_of_length(n, alphabet, run) for n in sorted({lo, hi})]
    return Domain(lengths.flatmap(lambda n: _text_of_length(n, alphabet, run)), sweep)


def number_domain(kind: type, lo: Any, hi: Any) -> Domain:
    from hypothesis import strategies as st

    general: Any
    if kind is int:
        general = st.integers(min_value=lo, max_value=hi)
    else:
        general = st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)
    return Domain(_bounded(lo, hi, general), [st.just(v) for v in sorted({lo, hi})])


class _Builder:
    def __init__(self, overrides: dict[tuple, Any] | None, limits: Limits | None):
        self.overrides = overrides or {}
        self.limits = limits or Limits()
        self.cuts: list[str] = []

    def below(self, path: tuple) -> bool:
        return any(p[: len(path)] == path and len(p) > len(path) for p in self.overrides)

    def build(self, t: ir.Type, path: tuple) -> Domain:
        from hypothesis import strategies as st

        if path in self.overrides:
            o = self.overrides[path]
            if isinstance(o, Domain):
                self.cuts.extend(o.cuts)
                return o
            return Domain(o)
        if isinstance(t, ir.OptionalT):
            inner = self.build(t.inner, path)
            if self.below(path):
                return inner  # an override below this path asks for a value, not null
            return Domain(st.one_of(st.none(), inner.strategy), [st.none(), *(inner.sweep or [inner.strategy])])
        if isinstance(t, ir.StrT):
            lo = t.min_len or 0
            if t.pattern is not None:  # lengths come from the regex; the declared bounds only filter
                top = t.max_len if t.max_len is not None else math.inf
                return Domain(st.from_regex(t.pattern, fullmatch=True).filter(lambda s: lo <= len(s) <= top))
            hi = _length_range("str", lo, t.max_len, self.limits.max_text, DEFAULT_MAX_TEXT, path, self.cuts,
                               "--max-text-len")
            run = self.limits.text_run or SEGMENT
            _run_cut("str", hi, run, path, self.cuts)
            return text_domain(lo, hi, None, run)
        if isinstance(t, ir.IntT):
            lo = max(math.ceil(t.ge), INT_MIN) if t.ge is not None else INT_MIN
            hi = min(math.floor(t.le), INT_MAX) if t.le is not None else INT_MAX
            return number_domain(int, lo, hi)
        if isinstance(t, ir.FloatT):
            return number_domain(float, float(t.ge) if t.ge is not None else -FLOAT_MAX,
                                 float(t.le) if t.le is not None else FLOAT_MAX)
        if isinstance(t, ir.BoolT):
            return Domain(st.booleans(), [st.just(False), st.just(True)])
        if isinstance(t, ir.EnumT):
            return Domain(st.sampled_from(t.members), [st.just(m) for m in t.members])
        if isinstance(t, ir.ListT):
            return self.list_domain(t, path)
        if isinstance(t, ir.RecordT):
            fields = {k: self.build(ft, (*path, k)) for k, ft in t.fields}
            general = {k: d.strategy for k, d in fields.items()}
            sweep = [st.fixed_dictionaries({k: d.sweep[i] if i < len(d.sweep) else d.strategy
                                            for k, d in fields.items()})
                     for i in range(max((len(d.sweep) for d in fields.values()), default=0))]
            return Domain(st.fixed_dictionaries(general), sweep)
        return Domain(st.nothing())

    def list_domain(self, t: ir.ListT, path: tuple) -> Domain:
        from hypothesis import strategies as st

        item = self.build(t.item, (*path, "[]"))
        lo = t.min_len or 0
        hi = _length_range("list", lo, t.max_len, self.limits.max_list, DEFAULT_MAX_ITEMS, path, self.cuts,
                           "--max-list-len")
        run = self.limits.list_run or RUN
        _run_cut("list", hi, run, path, self.cuts)
        lengths = _bounded(lo, hi, st.integers(lo, hi))
        general = lengths.flatmap(lambda n: _list_of_length(n, item.strategy, run))
        # the sweep: a list of each bound length, then more of the longest until every item bound was in one
        sweep: list[Any] = []
        used = 0

        def one(n: int) -> None:
            nonlocal used
            k = min(n, run)
            items = [item.sweep[(used + j) % len(item.sweep)] if item.sweep else item.strategy for j in range(k)]
            used += k
            sweep.append(st.tuples(*items).map(list).map(_tile(n)) if k else st.just([]))

        for n in sorted({lo, hi}):
            one(n)
        while hi > 0 and used < len(item.sweep):
            one(hi)
        return Domain(general, sweep)


def domain(t: ir.Type, overrides: dict[tuple, Any] | None = None, limits: Limits | None = None) -> Domain:
    """The strategy, the boundary sweep and the cuts of valid values of `t`. `overrides` maps a path (a
    tuple of field names, "[]" for list items) to a strategy or a Domain that replaces that path's."""
    b = _Builder(overrides, limits)
    d = b.build(t, ())
    d.cuts = list(dict.fromkeys(b.cuts))
    return d


def strategy(t: ir.Type, overrides: dict[tuple, Any] | None = None, limits: Limits | None = None):
    """A hypothesis strategy for valid values of `t`, over the whole declared domain with every bound
    drawn on purpose (see `domain`). `overrides` maps a path to a strategy that replaces that path's."""
    return domain(t, overrides, limits).strategy


def generator_domain(name: str, args: tuple, kwargs: dict[str, Any], limits: Limits | None = None,
                     path: tuple = ()) -> Domain:
    """What a `given` generator draws, e.g. text(max_len=60) or one_of(a, b), with its own bounds swept."""
    from hypothesis import strategies as st

    if name == "text":
        lo = kwargs.get("min_len", 0)
        cuts: list[str] = []
        lim = limits or Limits()
        hi = _length_range("str", lo, kwargs.get("max_len"), lim.max_text, DEFAULT_MAX_TEXT, path, cuts,
                           "--max-text-len")
        run = lim.text_run or SEGMENT
        _run_cut("str", hi, run, path, cuts)
        d = text_domain(lo, hi, kwargs.get("alphabet"), run)
        d.cuts = cuts
        return d
    if name == "regex":
        return Domain(st.from_regex(args[0], fullmatch=True))
    if name == "one_of":
        return Domain(st.sampled_from(list(args)), [st.just(a) for a in args])
    if name == "ints":
        return number_domain(int, int(args[0]), int(args[1]))
    if name == "floats":
        return number_domain(float, float(args[0]), float(args[1]))
    if name == "bools":
        return Domain(st.booleans(), [st.just(False), st.just(True)])
    raise ValueError(name)


def generator_strategy(name: str, args: tuple, kwargs: dict[str, Any]):
    """The strategy of a `given` generator, e.g. text(max_len=60) or one_of(a, b)."""
    return generator_domain(name, args, kwargs).strategy


_UNSUPPORTED = [
    (re.compile(r"\(\?<?[=!]"), "look-around"),
    (re.compile(r"\\[1-9]|\(\?P="), "back-references"),
    (re.compile(r"\(\?\("), "conditional groups"),
    (re.compile(r"\(\?>"), "atomic groups"),
    (re.compile(r"[*+?}][+]"), "possessive quantifiers"),
    (re.compile(r"\\Z"), "\\Z (use $)"),
]


def engine_unsupported(pattern: str) -> str | None:
    """The regex feature that constrained decoding (llguidance, Rust regex syntax) cannot enforce."""
    for rx, what in _UNSUPPORTED:
        if rx.search(pattern):
            return what
    return None


# What Python's `re` means by a class escape, written so that llguidance (Rust regex syntax, Unicode
# classes) means the same: Python's \s also matches the separators \x1c-\x1f, which Rust's does not, and
# Python's \w is exactly letters, numbers and '_', where Rust's adds combining marks and connector
# punctuation. \d and \w are spelled as explicit ranges from Python's own Unicode database
# (_python_digits, _python_word): the engine's Unicode tables are newer. Without this the decoder could write
# a character the output validator then refuses.
_SPACE = r"\s\x1c-\x1f"
_ENGINE_ESCAPES = {  # escape -> (outside a class, inside a class)
    "s": (f"[{_SPACE}]", _SPACE), "S": (f"[^{_SPACE}]", f"[^{_SPACE}]"),
}


def _ranges(member) -> str:
    """Every code point `member` accepts, as explicit class ranges for the engine."""
    import sys

    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        if member(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)


@functools.lru_cache(maxsize=1)
def _python_digits() -> str:
    """Python's \\d as explicit ranges (category Nd in this Python's Unicode database). Both engines say
    "Unicode Nd", but Rust's tables are newer: llguidance wrote U+1CCF1 (a digit since Unicode 16) for
    /\\d{2}/, which Python 3.11 (Unicode 14) refuses (found by the 2,000-draw property test)."""
    import unicodedata

    return _ranges(lambda ch: unicodedata.category(ch) == "Nd")


@functools.lru_cache(maxsize=1)
def _python_word() -> str:
    """Python's \\w as explicit ranges (alphanumerics in this Python's Unicode database, and '_'): Rust's
    \\p{L}\\p{N} are newer (the same U+1CCF1)."""
    return _ranges(lambda ch: ch.isalnum() or ch == "_")


def engine_pattern(pattern: str) -> str:
    """`pattern` (Python `re` syntax, as the validator reads it) rewritten for the constrained decoder so
    that both accept the same strings: \\s, \\S, \\w and \\W become explicit classes (a negated one nests
    inside an enclosing class, which Rust regex reads as a union)."""
    out: list[str] = []
    i, n, in_class, class_start = 0, len(pattern), False, -1
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in "dDwW":
                members = _python_digits() if e in "dD" else _python_word()
                out.append(members if in_class and e in "dw" else f"[{'^' if e in 'DW' else ''}{members}]")
            else:
                out.append(_ENGINE_ESCAPES[e][in_class] if e in _ENGINE_ESCAPES else pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            # a ']' right after '[' or '[^' is a literal member, not the end of the class
            if c == "]" and i > class_start:
                in_class = False
        elif c == "[":
            in_class = True
            class_start = i + 1
            if i + 1 < n and pattern[i + 1] == "^":
                out.append("[^")
                i += 2
                class_start = i
                if i < n and pattern[i] == "]":  # `[^]...]`: the ']' is a member
                    out.append("]")
                    i += 1
                continue
            if i + 1 < n and pattern[i + 1] == "]":  # `[]...]`
                out.append("[]")
                i += 2
                continue
        out.append(c)
        i += 1
    return "".join(out)
