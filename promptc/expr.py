"""The constraint expression language: type checking (AST -> typed IR nodes with diagnostics),
evaluation with explanations, and a phrase in natural language for rendered prompts."""

from __future__ import annotations

import contextvars
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from promptc import ast, codes, ir
from promptc.diagnostics import Diagnostics, did_you_mean

# ------------------------------------------------------------------ IR nodes


@dataclass(frozen=True, slots=True)
class Const:
    value: Any


@dataclass(frozen=True, slots=True)
class Var:
    root: str
    parts: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class Fn:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Cmp:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # "and" | "or"
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node


@dataclass(frozen=True, slots=True)
class When:
    then: Node
    cond: Node


@dataclass(frozen=True, slots=True)
class ListE:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Pattern:
    pattern: str
    flags: str = ""

    def compiled(self) -> re.Pattern:
        return _compile(self.pattern, self.flags)


Node = Const | Var | Fn | Cmp | Logic | Neg | When | ListE | Pattern

_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_RE_CACHE: dict[tuple[str, str], re.Pattern] = {}


def _compile(pattern: str, flags: str) -> re.Pattern:
    key = (pattern, flags)
    r = _RE_CACHE.get(key)
    if r is None:
        f = 0
        for ch in flags:
            f |= _FLAGS.get(ch, 0)
        with warnings.catch_warnings():  # "possible set difference" and the like: not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            r = _RE_CACHE[key] = re.compile(pattern, f)
    return r


# ------------------------------------------------------------------ functions
@dataclass(frozen=True, slots=True)
class FnSig:
    params: tuple[tuple[type, ...], ...]  # accepted IR type classes per argument
    result: Callable[[list[ir.Type]], ir.Type]
    impl: Callable[..., Any]
    doc: str


_STR = (ir.StrT,)
_NUM = (ir.IntT, ir.FloatT)


def _words(s: str) -> int:
    return len(s.split())


FUNCTIONS: dict[str, FnSig] = {
    "len": FnSig(((ir.StrT, ir.ListT),), lambda a: ir.IntT(), len,
                 "length of a string (characters) or a list (items)"),
    "words": FnSig((_STR,), lambda a: ir.IntT(), _words, "number of whitespace-separated words"),
    "lower": FnSig((_STR,), lambda a: ir.StrT(), str.lower, "the string in lower case"),
    "upper": FnSig((_STR,), lambda a: ir.StrT(), str.upper, "the string in upper case"),
    "strip": FnSig((_STR,), lambda a: ir.StrT(), str.strip, "the string without surrounding whitespace"),
    "startswith": FnSig((_STR, _STR), lambda a: ir.BoolT(), str.startswith, "whether a string starts with a prefix"),
    "endswith": FnSig((_STR, _STR), lambda a: ir.BoolT(), str.endswith, "whether a string ends with a suffix"),
    "abs": FnSig((_NUM,), lambda a: ir.strip_optional(a[0]), abs, "absolute value of a number"),
    # Model-backed, for tests only (`expect` and `check`): see promptc/testing/judging.py.
    "similar": FnSig((_STR, _STR), lambda a: ir.FloatT(), lambda a, b: _model_runtime().similar(a, b),
                     "cosine similarity (-1 to 1) of the MiniLM embeddings of two strings; tests only"),
    "judge": FnSig((_STR,), lambda a: ir.BoolT(), lambda rubric: _model_runtime().judge(rubric),
                   "whether the judge model (--judge-model) says the output meets the rubric; tests only"),
}
TEST_ONLY_FUNCTIONS = ("similar", "judge")

# The test runner binds the runtime that serves judge() and similar() for the output being judged.
MODEL_RUNTIME: contextvars.ContextVar[Any] = contextvars.ContextVar("promptc_model_runtime", default=None)


def _model_runtime() -> Any:
    rt = MODEL_RUNTIME.get()
    if rt is None:
        raise RuntimeError("judge() and similar() run only inside a test run (promptc test, compare or pytest)")
    return rt


# ------------------------------------------------------------------ type checking
class Checker:
    """Type-checks one expression against an environment of root names (inputs, `output`)."""

    def __init__(self, env: dict[str, ir.Type], enums: dict[str, ir.EnumT], diags: Diagnostics):
        self.env = env
        self.enums = enums
        self.diags = diags

    def check_bool(self, e: ast.Expr) -> Node:
        t, node = self.check(e)
        self._want_bool(t, e)
        return node

    def _want_bool(self, t: ir.Type, e: ast.Expr) -> None:
        if not isinstance(ir.strip_optional(t), (ir.BoolT, ir.AnyT)):
            self.diags.error(codes.TYPE_MISMATCH, f"expected a boolean condition, got {t}", e.span,
                             hint="compare values with == != < <= > >= in contains matches")

    def check(self, e: ast.Expr | ast.KwArg, expected: ir.Type | None = None) -> tuple[ir.Type, Node]:
        m = getattr(self, "_" + type(e).__name__)
        return m(e, expected)

    # --- leaves
    def _Literal(self, e: ast.Literal, expected):
        v = e.value
        if v is None:
            return ir.NullT(), Const(None)
        if isinstance(v, bool):
            return ir.BoolT(), Const(v)
        if isinstance(v, int):
            return ir.IntT(), Const(v)
        if isinstance(v, float):
            return ir.FloatT(), Const(v)
        exp = ir.strip_optional(expected) if expected is not None else None
        if isinstance(exp, ir.EnumT):  # a string that names a member stands for the member
            if v in exp.members:
                return exp, Const(v)
            self.diags.error(codes.UNKNOWN_MEMBER, f"'{v}' is not a member of enum {exp.name}", e.span,
                             hint=did_you_mean(v, exp.members, "members"))
            return ir.AnyT(), StrConst(v)
        return ir.StrT(), StrConst(v)

    def _Regex(self, e: ast.Regex, expected):
        check_regex(e, self.diags)
        return ir.RegexT(), Pattern(e.pattern, e.flags)

    def _EnumRef(self, e: ast.EnumRef, expected):  # only in value position; treat as a bare name
        return self._Path(ast.Path(ast.Ident(e.name, e.span), (), e.span), expected)

    def _Path(self, e: ast.Path, expected):
        root = e.root.name
        if root not in self.env:
            if not e.parts:
                return self._enum_member(e, expected)
            self.diags.error(codes.UNKNOWN_NAME, f"unknown name '{root}'", e.root.span,
                             hint=did_you_mean(root, sorted(self.env), "names in scope"))
            return ir.AnyT(), Const(None)
        t = self.env[root]
        for part, span in zip(e.parts, e.part_spans or (e.span,) * len(e.parts)):
            base = ir.strip_optional(t)
            opt = isinstance(t, ir.OptionalT)
            if isinstance(part, int):
                if isinstance(base, ir.ListT):
                    t = ir.OptionalT(base.item) if not isinstance(base.item, ir.OptionalT) else base.item
                    continue
                if not isinstance(base, ir.AnyT):
                    self.diags.error(codes.TYPE_MISMATCH, f"cannot index {base}: only lists take [n]", span)
                return ir.AnyT(), Const(None)
            if isinstance(base, ir.RecordT):
                ft = base.field(part)
                if ft is None:
                    self.diags.error(codes.UNKNOWN_FIELD, f"unknown field '{part}' in {base.name}", span,
                                     hint=did_you_mean(part, base.field_names, f"fields of {base.name}"))
                    return ir.AnyT(), Const(None)
                t = ir.OptionalT(ft) if opt and not isinstance(ft, ir.OptionalT) else ft
                continue
            if not isinstance(base, ir.AnyT):
                self.diags.error(codes.UNKNOWN_FIELD, f"{base} has no field '{part}'", span,
                                 hint="only records have fields")
            return ir.AnyT(), Const(None)
        return t, Var(root, e.parts)

    def _enum_member(self, e: ast.Path, expected) -> tuple[ir.Type, Node]:
        name = e.root.name
        exp = ir.strip_optional(expected) if expected is not None else None
        if isinstance(exp, ir.EnumT):
            if name in exp.members:
                return exp, Const(name)
            self.diags.error(codes.UNKNOWN_MEMBER, f"'{name}' is not a member of enum {exp.name}", e.span,
                             hint=literal_hint(name) or did_you_mean(name, exp.members, "members"))
            return ir.AnyT(), Const(name)
        owners = [en for en in self.enums.values() if name in en.members]
        if len(owners) == 1:
            return owners[0], Const(name)
        if len(owners) > 1:
            return ir.AnyT(), Const(name)  # ambiguous on its own; the other operand decides
        candidates = list(self.env) + [m for en in self.enums.values() for m in en.members]
        self.diags.error(codes.UNKNOWN_NAME, f"unknown name '{name}'", e.span,
                         hint=literal_hint(name) or did_you_mean(name, candidates) or
                         did_you_mean(name, sorted(self.env), "names in scope"))
        return ir.AnyT(), Const(None)

    def _ListLit(self, e: ast.ListLit, expected):
        exp_item = None
        base = ir.strip_optional(expected) if expected is not None else None
        if isinstance(base, ir.ListT):
            exp_item = base.item
        elif base is not None:
            exp_item = base
        types, nodes = [], []
        for item in e.items:
            t, n = self.check(item, exp_item)
            types.append(t)
            nodes.append(n)
        item_t: ir.Type = ir.AnyT()
        for t in types:
            if not isinstance(t, ir.AnyT):
                item_t = t
                break
        for t, item in zip(types, e.items):
            if not compatible(item_t, t):
                self.diags.error(codes.TYPE_MISMATCH, f"list items must share one type: {item_t} and {t}", item.span)
        return ir.ListT(item_t), ListE(tuple(nodes))

    def _RecordLit(self, e: ast.RecordLit, expected):
        self.diags.error(codes.TYPE_MISMATCH, "record literals cannot be used in expressions", e.span,
                         hint="compare fields one by one, e.g. output.tag == billing")
        return ir.AnyT(), Const(None)

    def _KwArg(self, e: ast.KwArg, expected):
        self.diags.error(codes.WRONG_ARG_COUNT, f"keyword arguments are not accepted here ('{e.name.name}=')", e.span)
        return ir.AnyT(), Const(None)

    # --- compound
    def _Call(self, e: ast.Call, expected):
        name = e.func.name
        sig = FUNCTIONS.get(name)
        arg_tn = [self.check(a) for a in e.args]
        if sig is None:
            self.diags.error(codes.UNKNOWN_FUNCTION, f"unknown function '{name}'", e.func.span,
                             hint=did_you_mean(name, sorted(FUNCTIONS), "functions"))
            return ir.AnyT(), Const(None)
        if len(e.args) != len(sig.params):
            self.diags.error(codes.WRONG_ARG_COUNT, f"{name}() takes {len(sig.params)} argument"
                             f"{'s' if len(sig.params) != 1 else ''}, got {len(e.args)}", e.span)
            return sig.result([ir.AnyT()] * len(sig.params)), Const(None)
        for (t, _), accepted, a in zip(arg_tn, sig.params, e.args):
            base = ir.strip_optional(t)
            if not isinstance(base, (ir.AnyT, *accepted)):
                kinds = " or ".join({ir.StrT: "str", ir.ListT: "list", ir.IntT: "int",
                                     ir.FloatT: "float"}[k] for k in accepted)
                self.diags.error(codes.TYPE_MISMATCH, f"{name}() expects {kinds}, got {t}", a.span)
        return sig.result([t for t, _ in arg_tn]), Fn(name, tuple(n for _, n in arg_tn))

    def _BinOp(self, e: ast.BinOp, expected):
        op = e.op
        lt, ln, rt, rn = self._operands(e)
        bad, rn = self._operator_problem(e, lt, rt, rn)
        if bad:
            self.diags.error(codes.TYPE_MISMATCH, bad, e.op_span if op in ("==", "!=", "<", "<=", ">", ">=") else e.span)
        return ir.BoolT(), Cmp(op, ln, rn)

    def _operands(self, e: ast.BinOp) -> tuple[ir.Type, Node, ir.Type, Node]:
        """Check both operands. A bare enum name or a string literal is resolved against the other
        operand's type, so `output.tag == billing`, `output == "billing"` and `billing == output.tag`
        all name the member, and `"billling"` is an unknown member (E207) rather than a type mismatch."""
        op = e.op
        members = op in ("==", "!=", "in", "not in", "contains")  # where a name or a string can be a member
        if self._late(e.left) and not self._late(e.right):
            rt, rn = self.check(e.right)
            ctx: ir.Type | None = rt
            if op in ("in", "not in") and isinstance(ir.strip_optional(rt), ir.ListT):
                ctx = ir.strip_optional(rt).item  # type: ignore[union-attr]
            lt, ln = self.check(e.left, ctx if members else None)
            return lt, ln, rt, rn
        lt, ln = self.check(e.left)
        ctx = lt
        if op in ("in", "not in"):
            ctx = ir.ListT(lt)
        elif op == "contains" and isinstance(ir.strip_optional(lt), ir.ListT):
            ctx = ir.strip_optional(lt).item  # type: ignore[union-attr]
        rt, rn = self.check(e.right, ctx if members else None)
        return lt, ln, rt, rn

    def _late(self, e: ast.Expr) -> bool:
        """An operand whose meaning depends on the other side: a bare name that is not an input or
        `output` (an enum member), or a string literal (which may name a member)."""
        if isinstance(e, ast.EnumRef):
            return True
        if isinstance(e, ast.Path):
            return not e.parts and e.root.name not in self.env
        return isinstance(e, ast.Literal) and isinstance(e.value, str)

    def _operator_problem(self, e: ast.BinOp, lt: ir.Type, rt: ir.Type, rn: Node) -> tuple[str | None, Node]:
        """What is wrong with the operand types for this operator (None if nothing), and the right
        operand (a string literal after `matches` becomes a pattern)."""
        op = e.op
        L, R = ir.strip_optional(lt), ir.strip_optional(rt)
        bad = None
        if op in ("==", "!="):
            if not (compatible(L, R) or isinstance(lt, ir.NullT) or isinstance(rt, ir.NullT)):
                bad = f"cannot compare {lt} with {rt}"
        elif op in ("<", "<=", ">", ">="):
            if not ((ir.is_numeric(L) or isinstance(L, ir.AnyT)) and (ir.is_numeric(R) or isinstance(R, ir.AnyT))):
                bad = f"'{op}' needs numbers, got {lt} and {rt}"
        elif op in ("in", "not in"):
            if isinstance(R, ir.StrT):
                if not isinstance(L, (ir.StrT, ir.AnyT)):
                    bad = f"'{op}' on a string needs a string on the left, got {lt}"
            elif isinstance(R, ir.ListT):
                if not compatible(L, R.item):
                    bad = f"cannot look for {lt} in {rt}"
            elif not isinstance(R, ir.AnyT):
                bad = f"'{op}' needs a list or a string on the right, got {rt}"
        elif op == "contains":
            if isinstance(L, ir.StrT):
                if not isinstance(R, (ir.StrT, ir.AnyT)):
                    bad = f"a string can only contain a string, got {rt}"
            elif isinstance(L, ir.ListT):
                if not compatible(L.item, R):
                    bad = f"{lt} cannot contain {rt}"
            elif not isinstance(L, ir.AnyT):
                bad = f"'contains' needs a string or a list on the left, got {lt}"
        elif op == "matches":
            if not isinstance(L, (ir.StrT, ir.AnyT)):
                bad = f"'matches' needs a string on the left, got {lt}"
            elif isinstance(R, ir.StrT) and isinstance(rn, Const):
                try:
                    re.compile(rn.value)
                except re.error as err:
                    self.diags.error(codes.BAD_REGEX, f"invalid regular expression: {err}", e.right.span)
                rn = Pattern(rn.value)
            elif not isinstance(R, (ir.RegexT, ir.AnyT)):
                bad = f"'matches' needs a /regex/ on the right, got {rt}"
        return bad, rn

    def _BoolOp(self, e: ast.BoolOp, expected):
        lt, ln = self.check(e.left)
        self._want_bool(lt, e.left)
        rt, rn = self.check(e.right)
        self._want_bool(rt, e.right)
        return ir.BoolT(), Logic(e.op, ln, rn)

    def _Not(self, e: ast.Not, expected):
        t, n = self.check(e.operand)
        self._want_bool(t, e.operand)
        return ir.BoolT(), Neg(n)

    def _When(self, e: ast.When, expected):
        tt, tn = self.check(e.then)
        self._want_bool(tt, e.then)
        ct, cn = self.check(e.cond)
        self._want_bool(ct, e.cond)
        return ir.BoolT(), When(tn, cn)


# Literals as other languages spell them (Python, JSON's friends): `None` for null, `True` for true.
_LITERAL_SPELLINGS = {"None": "null", "NULL": "null", "Null": "null", "nil": "null", "none": "null",
                      "True": "true", "TRUE": "true", "False": "false", "FALSE": "false"}


def literal_hint(name: str) -> str | None:
    """"use null" for `None`, "use true" for `True`, ...: a hint for a name that is a misspelt literal."""
    lit = _LITERAL_SPELLINGS.get(name)
    return f"use {lit} (literals are lower case: null, true, false)" if lit else None


def compatible(a: ir.Type, b: ir.Type) -> bool:
    a, b = ir.strip_optional(a), ir.strip_optional(b)
    if isinstance(a, ir.AnyT) or isinstance(b, ir.AnyT):
        return True
    if ir.is_numeric(a) and ir.is_numeric(b):
        return True
    if isinstance(a, ir.EnumT) and isinstance(b, ir.EnumT):
        return a.name == b.name
    if isinstance(a, ir.ListT) and isinstance(b, ir.ListT):
        return compatible(a.item, b.item)
    if isinstance(a, ir.RecordT) and isinstance(b, ir.RecordT):
        return a.name == b.name
    return type(a) is type(b)


def check_regex(e: ast.Regex, diags: Diagnostics) -> bool:
    bad_flags = [c for c in e.flags if c not in _FLAGS]
    if bad_flags:
        diags.error(codes.BAD_REGEX, f"unknown regex flag '{bad_flags[0]}'", e.span, hint="flags are i, m, s and x")
        return False
    try:
        _compile(e.pattern, e.flags)
    except re.error as err:
        start = e.span.start + 1 + (err.pos or 0) if err.pos is not None else e.span.start
        diags.error(codes.BAD_REGEX, f"invalid regular expression: {err.msg}", e.span.sub(start, start + 1))
        return False
    except (OverflowError, RecursionError, ValueError):  # a{99999999999}, a 5,000-digit count, deep groups
        diags.error(codes.BAD_REGEX, "invalid regular expression: too large or nested too deeply", e.span,
                    hint=f"repeat counts go up to {MAX_REGEX_REPEAT:,}")
        return False
    problem = regex_cost_problem(e.pattern, e.flags)
    if problem:
        diags.error(codes.BAD_REGEX, f"regular expression {problem[0]}", e.span, hint=problem[1])
        return False
    return True


MAX_REGEX_REPEAT = 10_000


def regex_cost_problem(pattern: str, flags: str = "") -> tuple[str, str] | None:
    """Why matching `pattern` could take unbounded time or memory, or None. Patterns are matched on
    examples at check time and on every output, and drive hypothesis and constrained decoding, so a
    program's regex must not be a denial of service: repeat counts are bounded, and a repeated group
    may not consist only of repeats one of which is unbounded (`(a+)+`, `(\\w+\\s?)*`), the shape
    behind catastrophic backtracking. `([a-z]+\\.)+` is fine: the `.` anchors each round."""
    import re._parser as sre  # the stdlib's own regex parser: the pattern compiled already

    try:
        tree = sre.parse(pattern, _compile(pattern, flags).flags)
    except Exception:  # noqa: BLE001 - compile() accepted it; be permissive about the analysis
        return None
    repeats = (sre.MAX_REPEAT, sre.MIN_REPEAT)
    zero_width = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)

    def items(sub):
        """The top-level items of a group body, unwrapping plain (...) groups."""
        out = []
        for op, av in sub:
            if op == sre.SUBPATTERN:
                out.extend(items(av[-1]))
            else:
                out.append((op, av))
        return out

    def has_unbounded(sub) -> bool:
        stack = [sub]
        while stack:
            for op, av in stack.pop():
                if op in repeats:
                    if av[1] == sre.MAXREPEAT or av[1] > 100:
                        return True
                    stack.append(av[2])
                elif op == sre.SUBPATTERN:
                    stack.append(av[-1])
                elif op == sre.BRANCH:
                    stack.extend(av[1])
        return False

    stack = [tree]
    while stack:
        for op, av in stack.pop():
            if op in (*repeats, sre.POSSESSIVE_REPEAT):
                lo, hi, sub = av
                if max(lo, hi if hi != sre.MAXREPEAT else 0) > MAX_REGEX_REPEAT:
                    return (f"repeats up to {max(lo, hi):,} times", f"repeat counts go up to {MAX_REGEX_REPEAT:,}")
                body = items(sub)
                only_repeats = all(o in repeats or o in zero_width or (o == sre.BRANCH and any(
                    all(x in repeats or x in zero_width for x, _ in items(alt)) and has_unbounded(alt)
                    for alt in a[1])) for o, a in body)
                if op in repeats and hi > 1 and only_repeats and has_unbounded(sub):
                    return ("repeats a group that is itself an unbounded repeat, which can take exponential "
                            "time to match",
                            "drop the outer repeat or anchor each round with a character: (a+)+ is a+, "
                            "(\\w+\\s?)* is [\\w\\s]*, ([a-z]+\\.)+ is fine")
                stack.append(sub)
            elif op == sre.SUBPATTERN:
                stack.append(av[-1])
            elif op == sre.BRANCH:
                stack.extend(av[1])
            elif op in (sre.ASSERT, sre.ASSERT_NOT):
                stack.append(av[1])
            elif op == sre.ATOMIC_GROUP:
                stack.append(av)
            elif op == sre.GROUPREF_EXISTS:
                stack.extend(b for b in av[1:] if b is not None)
    return None


# ------------------------------------------------------------------ evaluation
def lookup(env: dict[str, Any], root: str, parts: tuple[str | int, ...]) -> Any:
    v = env.get(root)
    for p in parts:
        if v is None:
            return None
        if isinstance(p, int):
            v = v[p] if isinstance(v, list) and -len(v) <= p < len(v) else None
        else:
            v = v.get(p) if isinstance(v, dict) else None
    return v


def evaluate(n: Node, env: dict[str, Any]) -> Any:
    """Evaluate a node. A null operand makes ordering, `matches` and `contains` false."""
    if isinstance(n, Const):
        return n.value
    if isinstance(n, Var):
        return lookup(env, n.root, n.parts)
    if isinstance(n, Fn):
        args = [evaluate(a, env) for a in n.args]
        if any(a is None for a in args):
            return None
        return FUNCTIONS[n.name].impl(*args)
    if isinstance(n, Cmp):
        lv, rv = evaluate(n.left, env), evaluate(n.right, env)
        op = n.op
        if op == "==":
            return lv == rv
        if op == "!=":
            return lv != rv
        if lv is None or rv is None:
            return False if op != "not in" else True
        if op == "<":
            return lv < rv
        if op == "<=":
            return lv <= rv
        if op == ">":
            return lv > rv
        if op == ">=":
            return lv >= rv
        if op == "in":
            return lv in rv
        if op == "not in":
            return lv not in rv
        if op == "contains":
            return rv in lv
        if op == "matches":
            pat = rv if isinstance(rv, re.Pattern) else _compile(str(rv), "")
            return isinstance(lv, str) and pat.search(lv) is not None
        raise AssertionError(op)
    if isinstance(n, Logic):
        if n.op == "and":
            return bool(evaluate(n.left, env)) and bool(evaluate(n.right, env))
        return bool(evaluate(n.left, env)) or bool(evaluate(n.right, env))
    if isinstance(n, Neg):
        return not evaluate(n.operand, env)
    if isinstance(n, When):
        return (not evaluate(n.cond, env)) or bool(evaluate(n.then, env))
    if isinstance(n, ListE):
        return [evaluate(i, env) for i in n.items]
    if isinstance(n, Pattern):
        return n.compiled()
    raise AssertionError(n)


def applies(n: Node, env: dict[str, Any]) -> bool:
    """False when the node is `A when B` and B does not hold (the check is vacuous)."""
    return not isinstance(n, When) or bool(evaluate(n.cond, env))


# ------------------------------------------------------------------ printing and explanations
_PREC = {Logic: 1, When: 0, Neg: 3, Cmp: 4}


def to_source(n: Node, parent: int = -1) -> str:
    """Print a node in the surface syntax (enum members print as bare names)."""
    if isinstance(n, Const):
        v = n.value
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return v if re.fullmatch(r"[A-Za-z_]\w*", v) and not _is_str_const(n) else _quote(v)
        return repr(v)
    if isinstance(n, Var):
        out = n.root
        for p in n.parts:
            out += f"[{p}]" if isinstance(p, int) else f".{p}"
        return out
    if isinstance(n, Fn):
        return f"{n.name}({', '.join(to_source(a) for a in n.args)})"
    if isinstance(n, Pattern):
        return f"/{n.pattern.replace('/', chr(92) + '/')}/{n.flags}"
    if isinstance(n, ListE):
        return "[" + ", ".join(to_source(i) for i in n.items) + "]"
    prec = 2 if isinstance(n, Logic) and n.op == "and" else _PREC[type(n)]
    if isinstance(n, Cmp):
        s = f"{to_source(n.left, 5)} {n.op} {to_source(n.right, 5)}"
    elif isinstance(n, Logic):
        s = f"{to_source(n.left, prec)} {n.op} {to_source(n.right, prec + 1)}"
    elif isinstance(n, Neg):
        s = f"not {to_source(n.operand, prec)}"
    else:
        s = f"{to_source(n.then, 1)} when {to_source(n.cond, 1)}"
    return f"({s})" if prec < parent or (parent >= 3 and isinstance(n, (Logic, When))) else s


class StrConst(Const):
    """A string constant that must print quoted (distinct from an enum member)."""

    __slots__ = ()


def _is_str_const(n: Const) -> bool:
    return isinstance(n, StrConst)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _short(v: Any, limit: int = 80) -> str:
    import json

    if isinstance(v, re.Pattern):
        return f"/{v.pattern}/"
    try:
        s = json.dumps(v, ensure_ascii=False)
    except TypeError:
        s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def explain(n: Node, env: dict[str, Any]) -> list[str]:
    """Why a node evaluated as it did: the sub-values of the part that failed, e.g.
    `len(output.reply) = 512`. Constants are not repeated."""
    out: list[str] = []
    _explain(n, env, out)
    return out


def _explain(n: Node, env, out: list[str]) -> None:
    if isinstance(n, Logic):
        lv = bool(evaluate(n.left, env))
        if n.op == "and":
            _explain(n.left if not lv else n.right, env, out)
        else:
            _explain(n.left, env, out)
            _explain(n.right, env, out)
    elif isinstance(n, Neg):
        _explain(n.operand, env, out)
    elif isinstance(n, When):
        _explain(n.cond, env, out)
        _explain(n.then, env, out)
    elif isinstance(n, Cmp):
        for side in (n.left, n.right):
            if not isinstance(side, (Const, Pattern, ListE)):
                out.append(f"{to_source(side)} = {_short(evaluate(side, env))}")
    elif isinstance(n, (Var, Fn)):
        out.append(f"{to_source(n)} = {_short(evaluate(n, env))}")


# ------------------------------------------------------------------ natural-language phrases
def _subject(n: Node) -> str:
    if isinstance(n, Var):
        if n.root == "output":
            if not n.parts:
                return "the output"
            return to_source(Var(str(n.parts[0]), n.parts[1:]))
        return to_source(n)
    return to_source(n)


_CMP_WORDS = {"<=": "at most", "<": "fewer than", ">=": "at least", ">": "more than"}
_UNIT = {"len": "characters", "words": "words"}


def phrase(n: Node, types: Callable[[Node], ir.Type | None] | None = None) -> str:
    """A sentence for a constraint, e.g. `len(output.reply) <= 400` -> "reply: at most 400 characters"."""
    if isinstance(n, When):
        return f"{phrase(n.then, types)}, when {_cond(n.cond)}"
    if isinstance(n, Logic) and n.op == "and":
        return f"{phrase(n.left, types)}; and {phrase(n.right, types)}"
    if isinstance(n, Neg) and isinstance(n.operand, Cmp):
        c = n.operand
        if c.op == "matches":
            return f"{_subject(c.left)}: must not match {to_source(c.right)}"
        if c.op == "contains":
            return f"{_subject(c.left)}: must not contain {to_source(c.right)}"
        if c.op == "in":
            return f"{_subject(c.left)}: must not be one of {to_source(c.right)[1:-1]}"
    if isinstance(n, Cmp):
        left, right, op = n.left, n.right, n.op
        if isinstance(right, Fn) and not isinstance(left, Fn) and op in _CMP_WORDS:
            left, right = right, left
            op = {"<=": ">=", "<": ">", ">=": "<=", ">": "<"}[op]
        if isinstance(left, Fn) and left.name in _UNIT and op in _CMP_WORDS and isinstance(right, Const):
            target = left.args[0]
            unit = _UNIT[left.name]
            if left.name == "len" and types is not None and isinstance(ir.strip_optional(types(target) or ir.AnyT()), ir.ListT):
                unit = "items"
            return f"{_subject(target)}: {_CMP_WORDS[op]} {to_source(right)} {unit}"
        if op in _CMP_WORDS and isinstance(right, Const):
            return f"{_subject(left)}: {_CMP_WORDS[op]} {to_source(right)}"
        if op == "==":
            return f"{_subject(left)}: must be {to_source(right)}"
        if op == "!=":
            return f"{_subject(left)}: must not be {to_source(right)}"
        if op == "matches":
            return f"{_subject(left)}: must match {to_source(right)}"
        if op == "contains":
            return f"{_subject(left)}: must contain {to_source(right)}"
        if op == "in":
            return f"{_subject(left)}: must be one of {to_source(right)[1:-1]}"
        if op == "not in":
            return f"{_subject(left)}: must not be one of {to_source(right)[1:-1]}"
    return f"the condition `{to_source(n)}` must hold"


def _cond(n: Node) -> str:
    if isinstance(n, Cmp):
        if n.op == "matches":
            return f"{to_source(n.left)} matches {to_source(n.right)}"
        return to_source(n)
    return to_source(n)


@dataclass(frozen=True)
class Outcome:
    """A checked expression: whether it held, whether its `when` condition applied, and why not."""

    ok: bool
    applicable: bool = True
    details: tuple[str, ...] = ()


def check_expr(n: Node, env: dict[str, Any]) -> Outcome:
    """The one way a constraint, `expect` or `check` is evaluated with its explanation. An expression
    that cannot run on a value of an unexpected shape fails with the reason; it never raises."""
    try:
        ok = bool(evaluate(n, env))
        applicable = applies(n, env)
    except Exception as e:  # noqa: BLE001 - reported as the check's failure
        return Outcome(False, True, (f"evaluation failed: {type(e).__name__}: {e}",))
    return Outcome(ok, applicable, () if ok else tuple(explain(n, env)))


@dataclass(frozen=True)
class ConstraintFailure:
    """A task constraint that an (inputs, output) pair breaks."""

    constraint: ir.Constraint
    details: tuple[str, ...]

    def message(self) -> str:
        c = self.constraint
        desc = f" ({c.description})" if c.description else ""
        why = "; ".join(self.details)
        return f"constraint '{c.name}'{desc} failed: {c.source}" + (f" -- {why}" if why else "")


def constraint_failures(constraints: tuple[ir.Constraint, ...] | list[ir.Constraint],
                        env: dict[str, Any]) -> list[ConstraintFailure]:
    """The constraints that `env` (the inputs plus `output`) breaks, each with its explanation."""
    out = []
    for c in constraints:
        o = check_expr(c.expr, env)
        if not o.ok:
            out.append(ConstraintFailure(c, o.details))
    return out
