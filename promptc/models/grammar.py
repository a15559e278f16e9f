"""Constrained decoding, the grammar side: an output type -> a bounded llguidance grammar, and a tracker
that knows, after any prefix the grammar allows, the shortest text that completes a valid value.

Why our own grammar rather than llguidance's JSON-Schema compiler: a JSON Schema cannot bound the
digits of a number, so a `float` field let a random model print `9999...` until the budget ran out
(FACTS.md, "Unbounded JSON numbers"). Here every terminal is bounded:
- a float has at most 17 digits (all an IEEE double holds) and an exponent of at most 290 in magnitude,
  so no value can overflow to infinity; a float with a `ge`/`le` bound is written in plain decimal;
- an int is bounded by its `ge`/`le`, and by the 64-bit range otherwise;
- strings and lists use their `max_len`, or the decoding caps `max_str_len` / `max_items` (target
  options) where the type declares none.
Output is compact JSON with `", "` and `": "` separators and every record field present (optional ones
as `null`), in declaration order. Strings are inline `%json` string schemas (length bounds, the
pattern, and short escapes only: no `\\u`).

The tracker mirrors that language in Python (`Tracker.feed`, `Tracker.completion`), so the hf backend
can force the shortest completion when the budget is only just enough to close the value.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from promptc import ir
from promptc.schema import INT_MAX, INT_MIN, engine_pattern, engine_unsupported

GRAMMAR_VERSION = 1  # part of the cache key: a new grammar may decode differently
FLOAT_DIGITS = 17
EXP_MAX = 290

# Every string is an inline llguidance JSON string schema (its native string lexeme; a hand-written
# terminal measured about as fast), with short escapes only (no \\u, no \\/), so that each
# escape or character of the JSON text is one character of the value, as the tracker counts them.
_STRING_OPTIONS = {"whitespace_flexible": False, "json_allowed_escapes": 'nrbtf\\"'}


# ------------------------------------------------------------------ numeric range regexes
def _same_len(lo: str, hi: str) -> list[str]:
    """Regex alternatives for the digit strings of one length from `lo` to `hi` (leading zeros allowed)."""
    if lo == hi:
        return [lo]
    if len(lo) == 1:
        return [f"[{lo}-{hi}]"]
    i = 0
    while lo[i] == hi[i]:
        i += 1
    p, a, b = lo[:i], lo[i:], hi[i:]
    rest = len(a) - 1
    out: list[str] = []
    start, end = int(a[0]), int(b[0])
    if a[1:] != "0" * rest:
        out += [p + a[0] + x for x in _same_len(a[1:], "9" * rest)]
        start += 1
    tail: list[str] = []
    if b[1:] != "9" * rest:
        tail = [p + b[0] + x for x in _same_len("0" * rest, b[1:])]
        end -= 1
    if start <= end:
        cls = str(start) if start == end else f"[{start}-{end}]"
        out.append(p + cls + f"[0-9]{{{rest}}}")
    return out + tail


def uint_range(a: int, b: int | None) -> str:
    """A regex for the decimal numerals (no leading zeros) of the integers in [a, b] (b None: no limit)."""
    parts: list[str] = []
    top = b if b is not None else 10 ** max(len(str(a)), 1) - 1
    for n in range(len(str(a)), len(str(top)) + 1):
        lo, hi = max(a, 10 ** (n - 1) if n > 1 else 0), min(top, 10**n - 1)
        if lo <= hi:
            parts += _same_len(str(lo), str(hi))
    if b is None:
        parts.append(f"[1-9][0-9]{{{len(str(top))},}}")
    return "|".join(parts)


def int_regex(ge: float | None, le: float | None) -> str:
    lo = max(math.ceil(ge), INT_MIN) if ge is not None else INT_MIN
    hi = min(math.floor(le), INT_MAX) if le is not None else INT_MAX
    alts = []
    if lo < 0:  # negatives: -1 .. -lo mirrored
        alts.append(f"-(?:{uint_range(max(1, -hi), -lo)})")
    if hi >= 0:
        alts.append(f"(?:{uint_range(max(0, lo), hi)})")
    return "|".join(alts) if alts else "(?!)"


def _frac_ge(f: str) -> str:
    """Fraction digit strings F (after the point) with 0.F >= 0.f; f has no trailing zeros."""
    if not f:
        return r"(?:\.[0-9]+)?"
    alts = [f"{f[:i]}[{int(f[i]) + 1}-9][0-9]*" for i in range(len(f)) if f[i] != "9"]
    alts.append(f"{f}[0-9]*")
    return r"\.(?:" + "|".join(alts) + ")"


def _frac_le(f: str) -> str:
    """Fraction digit strings F (or none) with 0.F <= 0.f; f has no trailing zeros."""
    if not f:
        return r"(?:\.0+)?"
    alts = [f"{f[:i]}[0-{int(f[i]) - 1}][0-9]*" for i in range(len(f)) if f[i] != "0"]
    alts += [f[:i] for i in range(1, len(f) + 1)]
    alts.append(f"{f}0+")
    return r"(?:\.(?:" + "|".join(alts) + "))?"


def _split(d: Decimal) -> tuple[int, str]:
    whole, _, frac = format(d, "f").partition(".")
    return int(whole), frac.rstrip("0")


_UNSIGNED = r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"


def _ge_unsigned(a: Decimal) -> str:
    """Unsigned plain decimals >= a (a >= 0)."""
    A, fa = _split(a)
    return f"(?:{A}{_frac_ge(fa)})|(?:(?:{uint_range(A + 1, None)})(?:\\.[0-9]+)?)"


def _le_unsigned(b: Decimal) -> str:
    """Unsigned plain decimals <= b (b >= 0)."""
    B, fb = _split(b)
    alts = [f"{B}{_frac_le(fb)}"]
    if B >= 1:
        alts.insert(0, f"(?:{uint_range(0, B - 1)})(?:\\.[0-9]+)?")
    return "|".join(f"(?:{x})" for x in alts)


def float_regexes(ge: float | None, le: float | None) -> list[str]:
    """Regexes whose intersection is the JSON numbers of a float type. Unbounded: at most 17 digits and
    an exponent of at most 290. Bounded: plain decimals (no exponent) >= ge, <= le, with 17 digits."""
    if ge is None and le is None:
        mant = "|".join([rf"0(?:\.[0-9]{{1,{FLOAT_DIGITS}}})?"] +
                        [rf"[1-9][0-9]{{{k}}}(?:\.[0-9]{{1,{FLOAT_DIGITS - 1 - k}}})?" for k in range(FLOAT_DIGITS - 1)] +
                        [rf"[1-9][0-9]{{{FLOAT_DIGITS - 1}}}"])
        exp = rf"(?:[eE][+-]?(?:[0-9]{{1,2}}|1[0-9][0-9]|2[0-8][0-9]|{EXP_MAX}))?"  # 05 too, as Python writes 1e-05
        return [rf"-?(?:{mant}){exp}"]
    out = []
    if ge is not None:
        a = Decimal(repr(float(ge)))
        out.append(_ge_unsigned(a) if a >= 0 else f"(?:{_UNSIGNED})|(?:-(?:{_le_unsigned(-a)}))")
    if le is not None:
        b = Decimal(repr(float(le)))
        out.append(f"(?:-{_UNSIGNED})|(?:{_le_unsigned(b)})" if b >= 0 else f"-(?:{_ge_unsigned(-b)})")
    out.append(digits_regex())
    return out


def digits_regex() -> str:
    """At most 17 digits, for intersection with a bounded float's range."""
    return rf"-?(?:0(?:\.[0-9]{{1,{FLOAT_DIGITS}}})?|[1-9](?:\.?[0-9]){{0,{FLOAT_DIGITS - 1}}})"


# ------------------------------------------------------------------ shapes: one tree for grammar and tracker
@dataclass(frozen=True)
class Caps:
    """Bounds for what a type leaves unbounded (target options max_str_len and max_items)."""

    max_str_len: int = 2000
    max_items: int = 100


@dataclass(eq=False)
class Node:
    kind: str  # str | num | alt | list | record | opt | raw
    lo: int = 0  # str: min chars; list: min items
    hi: int = 0  # str: max chars; list: max items
    regex: str = ""  # num: the regex text; str and raw: the pattern
    options: tuple[str, ...] = ()  # alt: literal alternatives; num: more regexes to intersect with
    item: Node | None = None  # list item, opt inner
    fields: tuple[tuple[str, Node], ...] = ()
    # Built on first use, so compiling a grammar costs no more than its text: the tracker's matchers
    # and shortest texts are only needed once a decode gets near its budget.
    _rx: Any = None
    _shortest: str | None = None

    @property
    def rx(self) -> Any:
        """The matcher of a num, or of a str's or raw's pattern (None: no pattern, or not modelled)."""
        if self._rx is None and self.regex:
            m = _Rx.of(self.regex)
            for more in self.options if self.kind == "num" else ():
                m = _Rx.both(m, _Rx.of(more))
            self._rx = m if m is not None else False
        return self._rx or None

    @property
    def shortest(self) -> str:
        if self._shortest is None:
            self._shortest = _shortest(self)
        return self._shortest


def shape(t: ir.Type, caps: Caps) -> Node:
    """The bounded JSON language of `t` as a node tree."""
    if isinstance(t, ir.OptionalT):
        inner = shape(t.inner, caps)
        return Node("opt", item=inner)
    if isinstance(t, ir.StrT):
        hi = t.max_len if t.max_len is not None else max(caps.max_str_len, t.min_len or 0)
        pat = t.pattern if t.pattern is not None and not engine_unsupported(t.pattern) else None
        return Node("str", lo=t.min_len or 0, hi=hi, regex=pat or "")
    if isinstance(t, ir.IntT):
        return Node("num", regex=int_regex(t.ge, t.le))
    if isinstance(t, ir.FloatT):
        rxs = float_regexes(t.ge, t.le)
        return Node("num", regex=rxs[0], options=tuple(rxs[1:]))
    if isinstance(t, ir.BoolT):
        return Node("alt", options=("true", "false"))
    if isinstance(t, ir.EnumT):
        return Node("alt", options=tuple(json.dumps(m) for m in t.members))
    if isinstance(t, ir.ListT):
        hi = t.max_len if t.max_len is not None else max(caps.max_items, t.min_len or 0)
        return Node("list", lo=t.min_len or 0, hi=hi, item=shape(t.item, caps))
    if isinstance(t, ir.RecordT):
        return Node("record", fields=tuple((k, shape(ft, caps)) for k, ft in t.fields))
    return Node("alt", options=("null",))


def _shortest(n: Node) -> str:
    if n.kind == "str":
        if n.rx is not None:
            body = n.rx.complete(n.rx.start(), n.lo)
            return '"' + (body if body is not None else "a" * n.lo) + '"'
        return '"' + "a" * n.lo + '"'
    if n.kind == "num":
        return n.rx.complete(n.rx.start(), 0) or "0"
    if n.kind == "alt":
        return min(n.options, key=len)
    if n.kind == "opt":
        return "null"
    if n.kind == "list":
        assert n.item is not None  # shape() always gives a list its item
        return "[" + ", ".join([n.item.shortest] * n.lo) + "]"
    return "{" + ", ".join(f"{json.dumps(k)}: {v.shortest}" for k, v in n.fields) + "}"


def raw_pattern(pattern: str, lo: int, hi: int | None, null_ok: bool) -> Node | None:
    """A raw-text `str` output with a pattern (read without quotes), or None when it cannot be tracked."""
    rx = _Rx.of(pattern)
    if rx is None:
        return None
    n = Node("raw", lo=lo, hi=hi if hi is not None else 1 << 30, regex=pattern,
             options=("null",) if null_ok else (), _rx=rx)
    body = rx.complete(rx.start(), lo)
    if body is None:
        return None
    n._shortest = min([body, *n.options], key=len)
    return n


def raw_choice(options: tuple[str, ...]) -> Node:
    """A raw-text choice (an enum output, read without quotes)."""
    return Node("alt", options=tuple(options))


def max_growth(n: Node) -> int:
    """The most one structure-opening step can add to the shortest completion: the longest shortest text
    of any list item or optional value (plus a separator)."""
    if n.kind == "opt":
        assert n.item is not None  # shape() always gives an opt its inner value
        return max(len(n.item.shortest), max_growth(n.item))
    if n.kind == "list":
        assert n.item is not None  # shape() always gives a list its item
        return max(len(n.item.shortest) + 2, max_growth(n.item))
    if n.kind == "record":
        return max((max_growth(v) for _, v in n.fields), default=0)
    return 0


# ------------------------------------------------------------------ shapes from a client's JSON Schema
# What `promptc serve` takes in `response_format.json_schema`. Keywords that only annotate are ignored;
# any other keyword outside this subset makes the whole schema fall back to llguidance's own JSON-Schema
# grammar (enforced, but not budget-closed).
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment",
                          "deprecated", "readOnly", "writeOnly", "additionalProperties", "$defs", "definitions"})
_KEYWORDS = {
    "string": {"type", "minLength", "maxLength", "pattern"},
    "integer": {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "number": {"type", "minimum", "maximum"},
    "boolean": {"type"}, "null": {"type"},
    "array": {"type", "items", "minItems", "maxItems"},
    "object": {"type", "properties", "required"},
}


class _NotModelled(Exception):
    pass


def shape_from_json_schema(schema: Any, caps: Caps) -> Node | None:
    """The bounded JSON language of a JSON Schema, as the shape `shape()` builds for an output type (numbers
    bounded by their minimum/maximum or the float/64-bit limits, strings and arrays by their max lengths or
    `caps`), or None when the schema uses something this does not model (recursive `$ref`, `anyOf` other
    than X-or-null, `format`, exclusive float bounds, `uniqueItems`, an object without properties, ...).
    Every property is written, in the schema's order, so a value is valid whether or not it is required."""
    try:
        return _js_node(schema, _JsCtx(schema, caps), 0)
    except (_NotModelled, TypeError, ValueError, KeyError, IndexError):
        return None


@dataclass(frozen=True)
class _JsCtx:
    root: Any  # for $ref
    caps: Caps


def _js_node(s: Any, ctx: _JsCtx, depth: int) -> Node:
    if not isinstance(s, dict) or depth > 32:
        raise _NotModelled
    if "$ref" in s:
        if set(s) - _ANNOTATIONS - {"$ref"}:
            raise _NotModelled
        return _js_node(_js_ref(s["$ref"], ctx.root), ctx, depth + 1)  # a recursive ref runs past the depth
    if "enum" in s or "const" in s:
        values = s["enum"] if "enum" in s else [s["const"]]
        if set(s) - _ANNOTATIONS - {"enum", "const", "type"} or not isinstance(values, list) or not values:
            raise _NotModelled
        return Node("alt", options=tuple(dict.fromkeys(json.dumps(v, ensure_ascii=False, separators=(", ", ": "))
                                                       for v in values)))
    for key in ("anyOf", "oneOf"):
        if key in s:
            alts = s[key]
            nulls = [a for a in alts if a == {"type": "null"}] if isinstance(alts, list) else []
            if set(s) - _ANNOTATIONS - {key} or len(alts) != 2 or len(nulls) != 1:
                raise _NotModelled
            inner = next(a for a in alts if a != {"type": "null"})
            return Node("opt", item=_js_node(inner, ctx, depth + 1))
    t = s.get("type", "object" if "properties" in s else "array" if "items" in s else None)
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        if len(rest) != 1 or len(t) != 2:
            raise _NotModelled
        return Node("opt", item=_js_node({**s, "type": rest[0]}, ctx, depth + 1))
    if t not in _KEYWORDS or set(s) - _ANNOTATIONS - _KEYWORDS[t]:
        raise _NotModelled
    return _JS_TYPES[t](s, ctx, depth)


def _js_ref(ref: Any, root: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#/"):
        raise _NotModelled
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _js_int(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _js_string(s: dict[str, Any], ctx: _JsCtx, depth: int) -> Node:
    lo, hi = s.get("minLength", 0), s.get("maxLength")
    if not isinstance(lo, int) or (hi is not None and not isinstance(hi, int)):
        raise _NotModelled
    pat = s.get("pattern")
    if pat is not None:
        # a JSON Schema pattern may match anywhere; the grammar holds the whole string to it, which is
        # stricter and so still valid. Anchors at the ends are dropped: the grammar anchors it.
        if not isinstance(pat, str) or engine_unsupported(pat):
            raise _NotModelled
        pat = pat[1:] if pat.startswith("^") else pat
        pat = pat[:-1] if pat.endswith("$") and not pat.endswith("\\$") else pat
    return Node("str", lo=lo, hi=hi if hi is not None else max(ctx.caps.max_str_len, lo), regex=pat or "")


def _js_number(s: dict[str, Any], ctx: _JsCtx, depth: int) -> Node:
    ge, le = s.get("minimum"), s.get("maximum")
    if any(v is not None and not _js_int(v) for v in (ge, le)):
        raise _NotModelled
    if s.get("type") == "integer":
        xge, xle = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
        if any(v is not None and not _js_int(v) for v in (xge, xle)):
            raise _NotModelled
        if xge is not None:  # the least integer above it
            ge = max(ge, math.floor(xge) + 1) if ge is not None else math.floor(xge) + 1
        if xle is not None:  # the greatest integer below it
            le = min(le, math.ceil(xle) - 1) if le is not None else math.ceil(xle) - 1
        return Node("num", regex=int_regex(ge, le))
    rxs = float_regexes(ge, le)
    return Node("num", regex=rxs[0], options=tuple(rxs[1:]))


def _js_array(s: dict[str, Any], ctx: _JsCtx, depth: int) -> Node:
    lo, hi = s.get("minItems", 0), s.get("maxItems")
    if "items" not in s or not isinstance(lo, int) or (hi is not None and not isinstance(hi, int)):
        raise _NotModelled
    return Node("list", lo=lo, hi=hi if hi is not None else max(ctx.caps.max_items, lo),
                item=_js_node(s["items"], ctx, depth + 1))


def _js_object(s: dict[str, Any], ctx: _JsCtx, depth: int) -> Node:
    props = s.get("properties")
    if not isinstance(props, dict) or not props:
        raise _NotModelled  # any object at all: llguidance's grammar
    req = s.get("required", [])
    if not isinstance(req, list) or set(req) - set(props):
        raise _NotModelled
    return Node("record", fields=tuple((k, _js_node(v, ctx, depth + 1)) for k, v in props.items()))


def _js_literal(s: dict[str, Any], ctx: _JsCtx, depth: int) -> Node:
    return Node("alt", options=("true", "false") if s["type"] == "boolean" else ("null",))


_JS_TYPES = {"string": _js_string, "integer": _js_number, "number": _js_number, "array": _js_array,
             "object": _js_object, "boolean": _js_literal, "null": _js_literal}


# ------------------------------------------------------------------ the llguidance lark grammar
def _lark_str(s: str) -> str:
    return json.dumps(s)  # a lark string literal takes the same escapes as JSON


def lark_grammar(t: ir.Type, caps: Caps) -> str:
    """The llguidance (Lark) grammar of an output type's bounded JSON."""
    return lark_from_shape(shape(t, caps))


def lark_from_shape(root: Node) -> str:
    """The llguidance (Lark) grammar of a shape."""
    rules: list[str] = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def emit(n: Node) -> str:
        if n.kind == "alt":
            return "(" + " | ".join(_lark_str(o) for o in n.options) + ")"
        if n.kind == "str":
            r = name("s")
            schema: dict[str, Any] = {"x-guidance": _STRING_OPTIONS, "type": "string", "minLength": n.lo,
                                      "maxLength": n.hi}
            if n.regex:
                schema["pattern"] = f"^(?:{engine_pattern(n.regex)})$"  # Python's \s and \w, for the engine
            rules.append(f"{r}: %json {json.dumps(schema)}")
            return r
        if n.kind == "num":
            term = name("N")
            rules.append(f"{term}: " + " & ".join(f"/{x}/" for x in (n.regex, *n.options)))
            return term
        if n.kind == "opt":
            assert n.item is not None  # shape() always gives an opt its inner value
            return f"({emit(n.item)} | \"null\")"
        if n.kind == "list":
            assert n.item is not None  # shape() always gives a list its item
            r = name("l")
            item = emit(n.item)
            if n.hi == 0:
                rules.append(f'{r}: "[" "]"')
            elif n.lo >= 1:
                rep = f" (\", \" {item}){{{n.lo - 1},{n.hi - 1}}}" if n.hi > 1 else ""
                rules.append(f'{r}: "[" {item}{rep} "]"')
            else:
                rep = f" (\", \" {item}){{0,{n.hi - 1}}}" if n.hi > 1 else ""
                rules.append(f'{r}: "[" ({item}{rep})? "]"')
            return r
        r = name("r")
        parts = []
        for i, (k, v) in enumerate(n.fields):
            parts.append(_lark_str(("" if i == 0 else ", ") + json.dumps(k) + ": "))
            parts.append(emit(v))
        rules.append(f'{r}: "{{" {" ".join(parts)} "}}"')
        return r

    top = emit(root)
    return "\n".join([f"start: {top}", *rules]) + "\n"


# ------------------------------------------------------------------ regex matchers for the tracker
class _Rx:
    """A Python-side NFA of a regex (from `re`'s own parser), enough to step and to find the shortest
    completion; `None` from `of` for a feature it does not model (the hf backend then cannot force
    that value closed, and a cut-off is reported instead)."""

    def __init__(self):
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[Any, int]]] = []
        self.start_state = 0
        self.accept = 0
        self.parts: tuple[_Rx, _Rx] | None = None

    @staticmethod
    def of(pattern: str | None) -> _Rx | None:
        return None if pattern is None else _rx_of(pattern)

    @staticmethod
    def _parse(pattern: str) -> _Rx | None:
        try:
            import re._parser as sre  # the stdlib's own regex parser (Python 3.11+)

            tree = sre.parse(pattern)
            if tree.state.flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE):
                return None
            rx = _Rx()
            s = rx._new()
            e = rx._build(list(tree), s)
            rx.start_state, rx.accept = s, e
            return rx
        except (_Unsupported, re.error, RecursionError):
            return None

    @staticmethod
    def both(a: _Rx | None, b: _Rx | None) -> _Rx | None:
        if a is None or b is None:
            return None
        rx = _Rx()
        rx.parts = (a, b)
        return rx

    def _new(self) -> int:
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def _build(self, items: list, s: int) -> int:
        from re._constants import (
            ANY,
            AT,
            BRANCH,
            IN,
            LITERAL,
            MAX_REPEAT,
            MAXREPEAT,
            MIN_REPEAT,
            NOT_LITERAL,
            SUBPATTERN,
        )

        cur = s
        for op, av in items:
            if op in (LITERAL, NOT_LITERAL, ANY, IN):
                nxt = self._new()
                self.edges[cur].append(((op, av), nxt))
                cur = nxt
            elif op == SUBPATTERN:
                cur = self._build(list(av[-1]), cur)
            elif op == BRANCH:
                end = self._new()
                for alt in av[1]:
                    st = self._new()
                    self.eps[cur].append(st)
                    self.eps[self._build(list(alt), st)].append(end)
                cur = end
            elif op in (MAX_REPEAT, MIN_REPEAT) or str(op) == "POSSESSIVE_REPEAT":
                lo, hi, sub = av
                sub = list(sub)
                if lo > 64 or (hi != MAXREPEAT and hi > 64):
                    raise _Unsupported
                for _ in range(lo):
                    cur = self._build(sub, cur)
                if hi == MAXREPEAT:
                    loop = self._new()
                    self.eps[cur].append(loop)
                    self.eps[self._build(sub, loop)].append(loop)
                    cur = loop
                else:
                    end = self._new()
                    self.eps[cur].append(end)
                    for _ in range(hi - lo):
                        cur = self._build(sub, cur)
                        self.eps[cur].append(end)
                    cur = end
            elif op == AT:
                continue  # ^ and $: the pattern is matched whole anyway
            else:
                raise _Unsupported
        return cur

    def _closure(self, states) -> frozenset:
        seen = set(states)
        todo = list(states)
        while todo:
            for n in self.eps[todo.pop()]:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return frozenset(seen)

    # --- the matcher interface: start / step / accepting / complete
    def start(self) -> Any:
        if self.parts:
            return (self.parts[0].start(), self.parts[1].start())
        return self._closure([self.start_state])

    def step(self, state: Any, ch: str) -> Any:
        if self.parts:
            a, b = self.parts[0].step(state[0], ch), self.parts[1].step(state[1], ch)
            return (a, b) if a is not None and b is not None else None
        nxt = [t for s in state for cls, t in self.edges[s] if _matches(cls, ch)]
        return self._closure(nxt) if nxt else None

    def accepting(self, state: Any) -> bool:
        if self.parts:
            return self.parts[0].accepting(state[0]) and self.parts[1].accepting(state[1])
        return self.accept in state

    def candidates(self, state: Any) -> list[str]:
        if self.parts:
            return self.parts[0].candidates(state[0])
        out: list[str] = []
        for s in state:
            for cls, _ in self.edges[s]:
                c = _representative(cls)
                if c is not None and c not in out:
                    out.append(c)
        return out

    def complete(self, state: Any, min_chars: int = 0, limit: int = 4000) -> str | None:
        """The shortest text that takes `state` to acceptance (with at least `min_chars` chars), found
        breadth-first over state sets; one representative character per outgoing class suffices."""
        from collections import deque

        start = (state, min_chars)
        seen = {start}
        q = deque([(state, min_chars, "")])
        while q and len(seen) < limit:
            st, need, text = q.popleft()
            if need <= 0 and self.accepting(st):
                return text
            for c in self.candidates(st):
                nx = self.step(st, c)
                if nx is None:
                    continue
                key = (nx, max(need - 1, 0))
                if key not in seen:
                    seen.add(key)
                    q.append((nx, max(need - 1, 0), text + c))
        return None


@functools.lru_cache(maxsize=512)
def _rx_of(pattern: str) -> _Rx | None:
    return _Rx._parse(pattern)  # matchers are immutable once built, so one per pattern serves all


class _Unsupported(Exception):
    pass


def _in_class(items, ch: str) -> bool:
    from re._constants import CATEGORY, LITERAL, NEGATE, RANGE

    neg = False
    hit = False
    o = ord(ch)
    for op, av in items:
        if op == NEGATE:
            neg = True
        elif op == LITERAL:
            hit = hit or o == av
        elif op == RANGE:
            hit = hit or av[0] <= o <= av[1]
        elif op == CATEGORY:
            hit = hit or _category(str(av), ch)
        else:
            raise _Unsupported
    return hit != neg


def _category(cat: str, ch: str) -> bool:
    base = {"CATEGORY_DIGIT": ch.isdigit(), "CATEGORY_WORD": ch.isalnum() or ch == "_",
            "CATEGORY_SPACE": ch.isspace()}
    for k, v in base.items():
        if cat == k:
            return v
        if cat == k.replace("CATEGORY_", "CATEGORY_NOT_"):
            return not v
    raise _Unsupported


def _matches(cls, ch: str) -> bool:
    from re._constants import ANY, IN, LITERAL, NOT_LITERAL

    op, av = cls
    if op == LITERAL:
        return ord(ch) == av
    if op == NOT_LITERAL:
        return ord(ch) != av
    if op == ANY:
        return ch != "\n"
    if op == IN:
        return _in_class(av, ch)
    return False


_PREFERRED = "a0A_-. bcdefxyz123456789BCXYZ"
_ASCII = [chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\']


def _representative(cls) -> str | None:
    """A character of the class that a JSON string holds in one byte (no escape)."""
    from re._constants import IN, LITERAL, RANGE

    op, av = cls
    if op == LITERAL:
        return chr(av)
    if op == IN:
        for op2, av2 in av:
            if op2 == LITERAL and _in_class(av, chr(av2)):
                return chr(av2)
            if op2 == RANGE and _in_class(av, chr(av2[0])):
                return chr(av2[0])
    for c in _PREFERRED + "".join(_ASCII):
        if _matches(cls, c):
            return c
    return None


# ------------------------------------------------------------------ the tracker
class Tracker:
    """Follows the text a constrained decoder emits for one value, and says at any point what the
    shortest completion is. It accepts exactly the grammar's language; `ok` turns False if the text ever
    leaves it (it should not: the grammar is the same), and `completion()` is then None."""

    def __init__(self, root: Node):
        self.root = root
        self.stack: list[list[Any]] = [[root, "start"]]
        self.ok = True
        self.done = False

    # --- feeding
    def feed(self, text: str) -> None:
        for ch in text:
            if not self.ok:
                return
            self._char(ch)

    def _char(self, ch: str) -> None:
        while True:
            if not self.stack:
                self.ok = False
                return
            frame = self.stack[-1]
            r = self._step(frame, ch)
            if r == "eaten":
                return
            if r == "fail":
                self.ok = False
                return
            # "pop": the top value ended before ch; hand ch to the parent
            self.stack.pop()
            self._child_done()
            if not self.stack:
                self.ok = False
                return

    def _push(self, node: Node | None) -> None:
        assert node is not None  # shape() gives every opt and list its item
        self.stack.append([node, "start"])

    def _child_done(self) -> None:
        if not self.stack:
            self.done = True
            return
        parent = self.stack[-1]
        n = parent[0]
        if n.kind == "list":
            parent[1] = ("after", parent[1][1] + 1)
        elif n.kind == "record":
            parent[1] = ("after", parent[1][1])
        elif n.kind == "opt":
            self.stack.pop()
            self._child_done()

    def _finish_top(self) -> None:
        """The top value is complete by its own last character."""
        self.stack.pop()
        self._child_done()
        if not self.stack:
            self.done = True

    def _step(self, frame: list, ch: str) -> str:
        """Feed `ch` to the value on top of the stack: "eaten", "fail", or "pop" (the value ended
        before `ch`, which belongs to its parent)."""
        step = getattr(self, f"_step_{frame[0].kind}", None)
        return step(frame, frame[0], frame[1], ch) if step is not None else "fail"

    def _step_alt(self, frame: list, n: Node, st: Any, ch: str) -> str:
        sofar = (st if st != "start" else "") + ch
        live = [o for o in n.options if o.startswith(sofar)]
        if not live:
            return "fail"
        frame[1] = sofar
        if sofar in n.options and len(live) == 1:
            self._finish_top()
        return "eaten"

    def _step_opt(self, frame: list, n: Node, st: Any, ch: str) -> str:
        if st == "start":
            if ch == "n":
                frame[0] = Node("alt", options=("null",))
                frame[1] = "n"
                return "eaten"
            frame[1] = "value"
            self._push(n.item)
            return self._step(self.stack[-1], ch)
        return "pop"

    def _step_raw(self, frame: list, n: Node, st: Any, ch: str) -> str:
        # state: (text so far, pattern state or None once the pattern cannot match)
        text, rs = ("", n.rx.start()) if st == "start" else st
        rs = n.rx.step(rs, ch) if rs is not None and len(text) < n.hi else None
        text += ch
        if rs is None and not any(o.startswith(text) for o in n.options):
            return "fail"
        frame[1] = (text, rs)
        return "eaten"

    def _step_num(self, frame: list, n: Node, st: Any, ch: str) -> str:
        state = n.rx.start() if st == "start" else st
        nxt = n.rx.step(state, ch)
        if nxt is not None:
            frame[1] = nxt
            return "eaten"
        return "pop" if st != "start" and n.rx.accepting(state) else "fail"

    def _step_str(self, frame: list, n: Node, st: Any, ch: str) -> str:
        if st == "start":
            if ch != '"':
                return "fail"
            frame[1] = (0, False, n.rx.start() if n.rx else None)
            return "eaten"
        count, esc, rs = st
        if esc:
            real = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(ch, ch)
            if ch not in '"\\bfnrt':
                return "fail"
            return self._str_char(frame, n, count, rs, real)
        if ch == "\\":
            frame[1] = (count, True, rs)
            return "eaten"
        if ch == '"':
            if count < n.lo or (n.rx is not None and not n.rx.accepting(rs)):
                return "fail"
            self._finish_top()
            return "eaten"
        return self._str_char(frame, n, count, rs, ch)

    def _step_list(self, frame: list, n: Node, st: Any, ch: str) -> str:
        if st == "start":
            if ch != "[":
                return "fail"
            frame[1] = ("open", 0)
            return "eaten"
        phase, items = st
        if phase == "open":
            if ch == "]" and n.lo == 0:
                self._finish_top()
                return "eaten"
            frame[1] = ("item", items)
            self._push(n.item)
            return self._step(self.stack[-1], ch)
        if phase == "after":
            if ch == "]" and items >= n.lo:
                self._finish_top()
                return "eaten"
            if ch == "," and items < n.hi:
                frame[1] = ("sep", items)
                return "eaten"
            return "fail"
        if phase == "sep":
            if ch != " ":
                return "fail"
            frame[1] = ("item", items)
            self._push(n.item)
            return "eaten"
        return "fail"

    def _step_record(self, frame: list, n: Node, st: Any, ch: str) -> str:
        if st == "start":
            st = ("key", 0, 0)
        if st[0] == "after":
            st = ("key", st[1] + 1, 0)
        phase, i, pos = st
        if i >= len(n.fields):
            if ch == "}":
                self._finish_top()
                return "eaten"
            return "fail"
        key = ("{" if i == 0 else ", ") + json.dumps(n.fields[i][0]) + ": "
        if pos < len(key) and key[pos] == ch:
            pos += 1
            if pos == len(key):
                frame[1] = ("value", i, 0)
                self._push(n.fields[i][1])
            else:
                frame[1] = ("key", i, pos)
            return "eaten"
        return "fail"

    def _str_char(self, frame, n: Node, count: int, rs, ch: str) -> str:
        if count >= n.hi:
            return "fail"
        if n.rx is not None:
            rs = n.rx.step(rs, ch)
            if rs is None:
                return "fail"
        frame[1] = (count + 1, False, rs)
        return "eaten"

    # --- completing
    def completion(self) -> str | None:
        """The shortest text that completes the value from here, or None when unknown."""
        if not self.ok:
            return None
        if self.done:
            return ""
        out = []
        for depth in range(len(self.stack) - 1, -1, -1):
            n, st = self.stack[depth]
            top = depth == len(self.stack) - 1
            part = self._rest(n, st, top)
            if part is None:
                return None
            out.append(part)
        return "".join(out)

    def _rest(self, n: Node, st: Any, top: bool) -> str | None:
        k = n.kind
        if st == "start" and top:
            return n.shortest
        if k == "alt":
            sofar = st if st != "start" else ""
            live = [o for o in n.options if o.startswith(sofar)]
            return min(live, key=len)[len(sofar):] if live else None
        if k == "opt":
            return ""  # the inner value's frame carries the rest
        if k == "num":
            return n.rx.complete(st, 0)
        if k == "raw":
            text, rs = st
            outs = [o[len(text):] for o in n.options if o.startswith(text)]
            if rs is not None:
                body = n.rx.complete(rs, max(n.lo - len(text), 0))
                if body is not None and len(text) + len(body) <= n.hi:
                    outs.append(body)
            return min(outs, key=len) if outs else None
        if k == "str":
            count, esc, rs = st
            if esc:
                if not top:
                    return None
                # close the escape as \n; when the string's pattern cannot take a newline there is no known
                # shortest completion from here (None), rather than a TypeError
                if n.rx is None:
                    tail = self._str_tail(n, count + 1, None)
                else:
                    after = n.rx.step(rs, "\n")
                    tail = None if after is None else self._str_tail(n, count + 1, after)  # None: a dead state
                return None if tail is None else "n" + tail
            return self._str_tail(n, count, rs)
        if k == "list":
            assert n.item is not None  # shape() always gives a list its item
            phase, items = st
            more = max(n.lo - items - (1 if phase in ("item",) else 0), 0)
            if phase == "open" and top:
                return ", ".join([n.item.shortest] * n.lo) + "]"
            if phase == "sep" and top:
                return " " + n.item.shortest + "".join(", " + n.item.shortest for _ in range(more - 1)) + "]" \
                    if more else " " + n.item.shortest + "]"
            tail = "".join(", " + n.item.shortest for _ in range(more))
            return tail + "]"
        if k == "record":
            if st == "start":
                st = ("key", 0, 0)
            if st[0] == "after":
                st = ("key", st[1] + 1, 0)
            phase, i, pos = st
            out = []
            if phase == "key":
                if i < len(n.fields):
                    key = ("{" if i == 0 else ", ") + json.dumps(n.fields[i][0]) + ": "
                    out.append(key[pos:] + n.fields[i][1].shortest)
                i += 1
            else:  # inside field i's value: its frame completes it
                i += 1
            for j in range(i, len(n.fields)):
                out.append(", " + json.dumps(n.fields[j][0]) + ": " + n.fields[j][1].shortest)
            out.append("}")
            return "".join(out)
        return None

    def _str_tail(self, n: Node, count: int, rs) -> str | None:
        if n.rx is not None:
            if rs is None:  # the pattern's automaton is in a dead state: no completion is known
                return None
            body = n.rx.complete(rs, max(n.lo - count, 0))
            if body is None or count + len(body) > n.hi:
                return None
            return body + '"'
        return "a" * max(n.lo - count, 0) + '"'
