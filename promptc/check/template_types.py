"""Check stage, template types: what each jinja2 expression in a template evaluates to, for every input
the task's schema accepts, so that a template `check` accepts renders every valid input.

A type here is a union of runtime shapes (`Alt`): a str, an int or float with a bound on its size, a
bool, null, a list (with a minimum length), a record, a tuple, a generator (what `map` and `select`
return: iterable once, no length), jinja2's loop object, and `undef`, jinja2's undefined value (an
index past the end, the first item of an empty list), which StrictUndefined refuses to print, and
plain jinja2 refuses to compute with. Each operator, test and filter of the accepted subset
(template_safety.py) has a rule: what its operands must be for Python and jinja2 not to raise, and
what it returns. An operand that may be something the rule does not accept is reported (E315) at
the template line, with the expression and the shape that fails. Rules follow jinja2's own code
(filters.py, tests.py); a filter or test without a rule here is refused.

Numbers carry the log10 of a bound on their magnitude: a float past 1.8e308 may be inf (which `int`
refuses), an int past it cannot become a float, and an int of more than 4,300 digits cannot be
printed. Inputs are read in their canonical form (`schema.conform`: optional fields present, as null).
"""

from __future__ import annotations

import inspect
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from promptc import ir

LOG_MAXF = math.log10(sys.float_info.max)  # a float beyond 10**LOG_MAXF may be inf
MAX_INT_DIGITS = 4300  # Python's default limit on int -> str conversion
LOG_INT64 = math.log10(2.0 ** 63)
NUM = frozenset({"int", "float", "bool"})
UNDEF = frozenset({"undef", "lundef"})


@dataclass(frozen=True, slots=True)
class Alt:
    """One runtime shape a value may have."""

    kind: str  # str int float bool none list tuple gen record dict loop obj undef lundef err
    item: frozenset | None = None  # list/gen/loop items; dict keys
    min_len: int = 0  # list, str, tuple
    mag: float = 0.0  # int/float: log10 of a bound on the magnitude (math.inf: unbounded)
    record: ir.RecordT | None = None
    parts: tuple = ()  # tuple elements (each a type); dict: (values,)
    names: tuple[str, ...] = ()  # tuple field names (groupby's namedtuple)
    why: str = ""  # undef: how it comes about


TT = frozenset  # a type: a frozenset of Alt


def one(kind: str, **kw: Any) -> TT:
    return frozenset({Alt(kind, **kw)})


ERR = one("err")  # something already reported: accepted everywhere, so one mistake is reported once
STR = one("str")
BOOL = one("bool")
NONE = one("none")


def union(*ts: TT) -> TT:
    out: set = set()
    for t in ts:
        out |= t
    return frozenset(out)


def kinds(t: TT) -> set[str]:
    return {a.kind for a in t}


def num(kind: str, mag: float) -> TT:
    return one(kind, mag=max(0.0, mag))


def items_of(t: TT) -> TT:
    """The item type of an iterable type (str -> str, record -> its keys)."""
    out: list[TT] = []
    for a in t:
        if a.kind in ("list", "gen"):
            out.append(a.item or ERR)
        elif a.kind == "str":
            out.append(STR)
        elif a.kind == "record":
            out.append(one("str", min_len=1))
        elif a.kind == "dict":
            out.append(a.item or ERR)
        elif a.kind == "tuple":
            out.append(union(*a.parts) if a.parts else ERR)
        else:
            out.append(ERR)
    return union(*out) if out else ERR


def from_ir(t: ir.Type | None) -> TT:
    """The runtime shapes of a schema-valid (conformed) value of `t`."""
    if t is None or isinstance(t, (ir.AnyT, ir.RegexT)):
        return ERR
    if isinstance(t, ir.OptionalT):
        return union(from_ir(t.inner), NONE)
    if isinstance(t, ir.NullT):
        return NONE
    if isinstance(t, ir.StrT):
        return one("str", min_len=t.min_len or 0, mag=float(t.max_len) if t.max_len is not None else math.inf)
    if isinstance(t, ir.EnumT):
        return one("str", min_len=min((len(m) for m in t.members), default=0), mag=float(max(
            (len(m) for m in t.members), default=0)))
    if isinstance(t, (ir.IntT, ir.FloatT)):
        kind = "int" if isinstance(t, ir.IntT) else "float"
        if t.ge is not None and t.le is not None:
            return num(kind, _log(max(abs(t.ge), abs(t.le))))
        return num(kind, LOG_INT64 if kind == "int" else LOG_MAXF)
    if isinstance(t, ir.BoolT):
        return BOOL
    if isinstance(t, ir.ListT):
        return one("list", item=from_ir(t.item), min_len=t.min_len or 0)
    if isinstance(t, ir.RecordT):
        return one("record", record=t, min_len=len(t.fields))
    return ERR


def _log(v: float) -> float:
    v = abs(v)
    if v == math.inf or v != v:
        return math.inf
    return math.log10(v) + 1e-9 if v > 1 else 0.0


def of_const(v: Any) -> TT:
    if v is None:
        return NONE
    if isinstance(v, bool):
        return BOOL
    if isinstance(v, int):
        return num("int", _log(v))
    if isinstance(v, float):
        return num("float", _log(v))
    if isinstance(v, str):
        return one("str", min_len=len(v), mag=float(len(v)))
    if isinstance(v, (list, tuple)):
        return one("list", item=union(*(of_const(x) for x in v)) if v else ERR, min_len=len(v))
    return ERR


def show(t: TT) -> str:
    """A type in words, for messages: 'str', 'int or null', 'list[str]', 'undefined'."""
    words = []
    for a in sorted(t, key=lambda a: (a.kind, repr(a))):
        if a.kind == "err":
            continue
        w = {"none": "null", "undef": "undefined", "lundef": "undefined", "gen": "a generator",
             "loop": "the loop object", "obj": "a function", "dict": "a dict", "float": "float"}.get(a.kind, a.kind)
        if a.kind == "list":
            w = f"list[{show(a.item or ERR) or 'any'}]"
        elif a.kind == "record" and a.record is not None:
            w = a.record.name
        elif a.kind == "tuple":
            w = f"a tuple of {len(a.parts)}"
        elif a.kind == "float" and a.mag > LOG_MAXF:
            w = "a float that may be inf or nan"
        elif a.kind == "int" and a.mag > MAX_INT_DIGITS:
            w = "an int of more than 4,300 digits (too long to print)"
        if w not in words:
            words.append(w)
    return " or ".join(words)


def _orderable(a: Alt, b: Alt) -> bool:
    """Whether `a < b` cannot raise in Python for values of these shapes."""
    if "err" in (a.kind, b.kind):
        return True
    if a.kind in NUM and b.kind in NUM:
        return True
    if a.kind == b.kind == "str":
        return True
    if a.kind in ("list", "tuple") and a.kind == b.kind:
        xs, ys = (items_of(frozenset({a})), items_of(frozenset({b})))
        return all(_orderable(x, y) for x in xs for y in ys)
    return False


def _hashable(a: Alt) -> bool:
    return a.kind in ("str", "int", "float", "bool", "none", "err") or \
        (a.kind == "tuple" and all(_hashable(x) for p in a.parts for x in p))


def _printable(a: Alt) -> bool:
    """str(value) works: an int of more than 4,300 digits raises, so does undefined (strict)."""
    if a.kind == "int":
        return a.mag <= MAX_INT_DIGITS
    if a.kind == "undef":
        return False
    if a.kind in ("list", "gen", "dict", "tuple"):
        inner = [a.item or ERR, *a.parts]
        return all(_printable(x) for t in inner for x in t)
    if a.kind == "record" and a.record is not None:
        return all(_printable(x) for _, ft in a.record.fields for x in from_ir(ft))
    return True


def _jsonable(a: Alt) -> bool:
    if a.kind in ("str", "float", "bool", "none", "err"):
        return True
    if a.kind == "int":
        return a.mag <= MAX_INT_DIGITS
    if a.kind in ("list", "tuple"):
        return all(_jsonable(x) for t in [a.item or ERR, *a.parts] for x in t)
    if a.kind == "record" and a.record is not None:
        return all(_jsonable(x) for _, ft in a.record.fields for x in from_ir(ft))
    if a.kind == "dict":
        return all(k.kind == "str" for k in (a.item or ERR)) and all(_jsonable(x) for x in a.parts[0])
    return False


def _to_float_ok(a: Alt) -> bool:
    """float(value) cannot overflow (an int beyond the float range raises OverflowError)."""
    return a.kind != "int" or a.mag <= LOG_MAXF


class Problem(Exception):
    """An operand that may make an expression raise: reported once, at the expression."""

    def __init__(self, message: str, needle: str | None, hint: str | None = None):
        super().__init__(message)
        self.message, self.needle, self.hint = message, needle, hint


_OPS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "FloorDiv": "//", "Mod": "%", "Pow": "**"}
_CMP = {"eq": "==", "ne": "!=", "lt": "<", "lteq": "<=", "gt": ">", "gteq": ">=", "in": "in", "notin": "not in"}


def src(node: Any) -> str:
    """A short source text of an expression, for messages."""
    from jinja2 import nodes

    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Const):
        if isinstance(node.value, str):
            return '"' + node.value.replace('"', '\\"') + '"'
        return repr(node.value)
    if isinstance(node, nodes.Getattr):
        return f"{src(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem):
        if isinstance(node.arg, nodes.Slice):
            return f"{src(node.node)}[...]"
        return f"{src(node.node)}[{src(node.arg)}]"
    if isinstance(node, nodes.BinExpr):
        return f"{src(node.left)} {_OPS.get(type(node).__name__, node.operator)} {src(node.right)}"
    if isinstance(node, nodes.Concat):
        return " ~ ".join(src(n) for n in node.nodes)
    if isinstance(node, nodes.Not):
        return f"not {src(node.node)}"
    if isinstance(node, nodes.Neg):
        return f"-{src(node.node)}"
    if isinstance(node, nodes.Filter):
        args = ", ".join([src(a) for a in node.args] + [f"{k.key}={src(k.value)}" for k in node.kwargs])
        head = f"{src(node.node)} | " if node.node is not None else ""
        return f"{head}{node.name}" + (f"({args})" if args else "")
    if isinstance(node, nodes.Test):
        args = ", ".join(src(a) for a in node.args)
        return f"{src(node.node)} is {node.name}" + (f"({args})" if args else "")
    if isinstance(node, nodes.Compare):
        return src(node.expr) + "".join(f" {_CMP.get(o.op, o.op)} {src(o.expr)}" for o in node.ops)
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return "[" + ", ".join(src(i) for i in node.items) + "]"
    if isinstance(node, nodes.Call):
        return f"{src(node.node)}(...)"
    if isinstance(node, nodes.CondExpr):
        tail = f" else {src(node.expr2)}" if node.expr2 is not None else ""
        return f"{src(node.expr1)} if {src(node.test)}{tail}"
    if isinstance(node, (nodes.And, nodes.Or)):
        return f"{src(node.left)} {'and' if isinstance(node, nodes.And) else 'or'} {src(node.right)}"
    return "..."


def _needle(node: Any) -> str | None:
    """The word of an expression to point at: its leading name."""
    from jinja2 import nodes

    for n in node.find_all(nodes.Name) if not isinstance(node, nodes.Name) else [node]:
        return n.name
    return None


HINT_UNDEF = "guard it ({% if xs %}...{% endif %}), or give a fallback: {{ ... | default('') }}"
Report = Callable[[str, int, "str | None", "str | None"], None]


class Typer:
    """Infers the type of every expression in a template and reports those that may raise."""

    def __init__(self, report: Report, inputs: dict[str, ir.Type], stored: set[str], env: Any):
        self.report = report
        self.env = env
        filters, tests = env.filters, env.tests
        self.inputs = {k: from_ir(t) for k, t in inputs.items() if k != "output"}
        self.stored = stored  # names some {% set %} or {% for %} assigns
        self.filters = filters
        self.tests = tests
        self.quiet = 0  # > 0 while a loop body is walked once to learn what it assigns

    # ------------------------------------------------------------ statements
    def template(self, tree: Any) -> None:
        self.body(tree.body, dict(self.inputs))

    def body(self, stmts: Any, scope: dict[str, TT]) -> dict[str, TT]:
        for s in stmts:
            scope = self.stmt(s, scope)
        return scope

    def fail(self, p: Problem, node: Any) -> None:
        if not self.quiet:
            self.report(p.message, getattr(node, "lineno", 1) or 1, p.needle, p.hint)

    def stmt(self, node: Any, scope: dict[str, TT]) -> dict[str, TT]:
        from jinja2 import nodes

        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    continue
                self.printed(self.expr(child, scope), child, "printed")
            return scope
        if isinstance(node, nodes.If):
            self.check(node.test, lambda: self.truth(self.expr(node.test, scope), node.test))
            then = self.body(node.body, self.narrow(node.test, scope, True))
            rest = self.narrow(node.test, scope, False)
            if node.elif_:
                rest = self.stmt(nodes.If(node.elif_[0].test, node.elif_[0].body, node.elif_[1:], node.else_,
                                          lineno=node.elif_[0].lineno), rest)
            else:
                rest = self.body(node.else_, rest)
            return _join(scope, then, rest)
        if isinstance(node, nodes.For):
            return self.for_(node, scope)
        if isinstance(node, nodes.Assign):
            t = self.expr(node.node, scope)
            return self.assign(node.target, t, node, scope)
        if isinstance(node, nodes.AssignBlock):
            inner = self.body(node.body, dict(scope))
            t = STR
            if node.filter is not None:
                t = self.filter_chain(node.filter, STR, scope)
            return self.assign(node.target, t, node, _join(scope, inner))
        if isinstance(node, nodes.FilterBlock):
            inner = self.body(node.body, dict(scope))
            t = self.filter_chain(node.filter, STR, scope)
            bad = frozenset(a for a in t if a.kind not in ("str", "err"))
            if bad:  # jinja2 joins the block's result with the rest of the output, without str()
                self.fail(Problem(f"a {{% filter %}} block must produce text, but '{src(node.filter)}' returns "
                                  f"{show(bad)}", node.filter.name,
                                  f"print the value instead: {{% set v %}}...{{% endset %}}{{{{ v | {node.filter.name} }}}}"),
                          node)
            return _join(scope, inner)
        if isinstance(node, nodes.Scope):
            return _join(scope, self.body(node.body, dict(scope)))
        return scope  # everything else is refused by template_safety

    def check(self, node: Any, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Problem as p:
            self.fail(p, node)
            return ERR

    def assign(self, target: Any, t: TT, node: Any, scope: dict[str, TT]) -> dict[str, TT]:
        from jinja2 import nodes

        if isinstance(target, nodes.Name):
            return _bind(scope, target.name, t)
        if isinstance(target, nodes.Tuple):
            parts = self.check(node, lambda: self.unpack(t, len(target.items), node))
            for i, n in enumerate(target.items):
                if isinstance(n, nodes.Name):
                    scope = _bind(scope, n.name, parts[i] if isinstance(parts, list) else ERR)
        return scope

    def unpack(self, t: TT, n: int, node: Any) -> list[TT]:
        out: list[list[TT]] = [[] for _ in range(n)]
        for a in t:
            if a.kind == "err":
                for o in out:
                    o.append(ERR)
            elif a.kind == "tuple" and len(a.parts) == n:
                for o, p in zip(out, a.parts):
                    o.append(p)
            else:
                raise Problem(f"cannot unpack {show(frozenset({a}))} into {n} names", None,
                              "unpack only pairs from `items` or `dictsort`: {% for k, v in x | items %}")
        return [union(*o) for o in out]

    def for_(self, node: Any, scope: dict[str, TT]) -> dict[str, TT]:
        from jinja2 import nodes

        it = self.expr(node.iter, scope)
        item = self.check(node.iter, lambda: self.iterable(it, node.iter, "looped over"))
        inner = self.assign(node.target, item, node, scope)
        inner = _bind(inner, "loop", one("loop", item=item))
        after = inner
        if any(True for _ in node.find_all((nodes.Assign, nodes.AssignBlock))):
            self.quiet += 1  # once quietly, to learn what the body assigns, then again with the join
            try:
                after = self.loop_body(node, inner)
            finally:
                self.quiet -= 1
            inner = _join(inner, after)
        after = self.loop_body(node, inner)
        local = {n.name for n in node.target.find_all(nodes.Name)} | {"loop"}
        after = {k: v for k, v in after.items()
                 if not any(k == n or (k.startswith(_FACT) and re.match(re.escape(_FACT + n) + r"($|[.\[])", k))
                            for n in local)}
        after.update({k: scope[k] for k in local if k in scope})
        rest = self.body(node.else_, dict(scope))
        return _join(scope, after, rest)

    def loop_body(self, node: Any, inner: dict[str, TT]) -> dict[str, TT]:
        if node.test is not None:
            self.check(node.test, lambda: self.truth(self.expr(node.test, inner), node.test))
            inner = self.narrow(node.test, inner, True)
        return self.body(node.body, dict(inner))

    # ------------------------------------------------------------ narrowing
    def narrow(self, test: Any, scope: dict[str, TT], holds: bool) -> dict[str, TT]:
        """The scope where `test` is true (holds) or false: paths proved not null, lists not empty."""
        from jinja2 import nodes

        out = dict(scope)
        if isinstance(test, nodes.Not):
            return self.narrow(test.node, scope, not holds)
        if isinstance(test, nodes.And) and holds:
            return self.narrow(test.right, self.narrow(test.left, scope, True), True)
        if isinstance(test, nodes.Or) and not holds:
            return self.narrow(test.right, self.narrow(test.left, scope, False), False)
        if not holds:
            if isinstance(test, nodes.Test) and test.name == "none" and _plain_path(test.node):
                self._refine(out, test.node, lambda a: a.kind != "none")
            return out
        for path in not_null_paths(test):
            try:
                now = self._path_now(path, out)
            except Problem:  # reported where the test is typed
                continue
            out[_FACT + path] = frozenset(a for a in now if a.kind not in ("none", "undef")) or ERR
        if _plain_path(test):  # truthy: not null, not undefined, and a list or str is not empty
            self._refine(out, test, lambda a: a.kind not in ("none", "undef", "lundef"), nonempty=True)
        if isinstance(test, nodes.Test) and test.name == "defined" and _plain_path(test.node):
            self._refine(out, test.node, lambda a: a.kind not in UNDEF)
        at_least = _length_bound(test)  # `xs | length > 2`: xs has at least 3 items
        if at_least is not None:
            path_node, n = at_least
            self._refine(out, path_node, lambda a: a.kind not in ("none", "undef", "lundef"), min_len=n)
        return out

    def _path_now(self, path: str, scope: dict[str, TT]) -> TT:
        from jinja2 import nodes

        fact = scope.get(_FACT + path)
        if fact is not None:
            return fact
        tree = _parse_path(path)
        return self.path(tree, scope) if isinstance(tree, (nodes.Name, nodes.Getattr, nodes.Getitem)) else ERR

    def _refine(self, scope: dict[str, TT], node: Any, keep: Callable[[Alt], bool], nonempty: bool = False,
                min_len: int = 0) -> None:
        path = _path_of(node)
        if path is None:
            return
        t = scope.get(_FACT + path)
        if t is None:
            try:
                t = self.path(node, scope)
            except Problem:
                return
        alts = [a for a in t if keep(a)]
        if nonempty or min_len:
            n = max(min_len, 1 if nonempty else 0)
            alts = [Alt(a.kind, a.item, max(a.min_len, n), a.mag, a.record, a.parts, a.names)
                    if a.kind in ("list", "str") else a for a in alts]
        scope[_FACT + path] = frozenset(alts) or ERR

    # ------------------------------------------------------------ expressions
    def expr(self, node: Any, scope: dict[str, TT]) -> TT:
        try:
            return self._expr(node, scope)
        except Problem as p:
            self.fail(p, node)
            return ERR

    def _expr(self, node: Any, scope: dict[str, TT]) -> TT:
        from jinja2 import nodes

        if isinstance(node, nodes.Const):
            return of_const(node.value)
        if isinstance(node, (nodes.BinExpr, nodes.UnaryExpr, nodes.Filter)):
            self.folded(node)
        if isinstance(node, nodes.TemplateData):
            return STR
        if isinstance(node, (nodes.Name, nodes.Getattr, nodes.Getitem)):
            return self.path(node, scope)
        if isinstance(node, (nodes.List, nodes.Tuple)):
            items = [self.expr(i, scope) for i in node.items]
            if isinstance(node, nodes.Tuple):
                return one("tuple", parts=tuple(items), min_len=len(items))
            return one("list", item=union(*items) if items else ERR, min_len=len(items))
        if isinstance(node, nodes.Dict):
            keys = [self.expr(p.key, scope) for p in node.items]
            vals = [self.expr(p.value, scope) for p in node.items]
            for k, p in zip(keys, node.items):
                self.need(k, _hashable, p.key, "a dict key", "str, number, bool or null")
            known = [p.key.value for p in node.items if isinstance(p.key, nodes.Const) and isinstance(p.key.value, str)]
            names = tuple(known) if len(known) == len(node.items) else (_UNKNOWN_KEY,)
            return one("dict", item=union(*keys) if keys else ERR, parts=(union(*vals) if vals else ERR,),
                       min_len=min(len(keys), 1), names=names)
        if isinstance(node, nodes.Concat):
            for n in node.nodes:
                self.printed(self.expr(n, scope), n, "joined with ~")
            return STR
        if isinstance(node, (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow)):
            return self.binop(node, self.expr(node.left, scope), self.expr(node.right, scope))
        if isinstance(node, (nodes.Neg, nodes.Pos)):
            t = self.expr(node.node, scope)
            self.need(t, lambda a: a.kind in NUM, node, f"'{'-' if isinstance(node, nodes.Neg) else '+'}'",
                      "a number", "-" if isinstance(node, nodes.Neg) else "+")
            return frozenset(Alt("int", mag=1.0) if a.kind == "bool" else a for a in t)
        if isinstance(node, nodes.Not):
            self.truth(self.expr(node.node, scope), node.node)
            return BOOL
        if isinstance(node, (nodes.And, nodes.Or)):
            left = self.expr(node.left, scope)
            self.truth(left, node.left)
            right = self.expr(node.right, self.narrow(node.left, scope, isinstance(node, nodes.And)))
            if isinstance(node, nodes.Or):  # `a or b` is a only where a is true: never null or undefined
                left = frozenset(a for a in left if a.kind not in ("none", "lundef"))
            return union(left, right)
        if isinstance(node, nodes.CondExpr):
            self.truth(self.expr(node.test, scope), node.test)
            a = self.expr(node.expr1, self.narrow(node.test, scope, True))
            if node.expr2 is None:
                return union(a, one("lundef", why="the inline if has no else"))
            return union(a, self.expr(node.expr2, self.narrow(node.test, scope, False)))
        if isinstance(node, nodes.Compare):
            return self.compare(node, scope)
        if isinstance(node, nodes.Filter):
            subject = self.expr(node.node, scope) if node.node is not None else STR
            return self.filter_(node, node.name, subject, node.args, node.kwargs, scope)
        if isinstance(node, nodes.Test):
            return self.test(node, node.name, self.expr(node.node, scope), node.args, node.kwargs, scope)
        if isinstance(node, nodes.Call):
            return self.call(node, scope)
        return ERR  # refused by template_safety

    def folded(self, node: Any) -> None:
        """jinja2 computes a constant expression when it compiles the template and writes the value into
        the code it generates: a float that is inf or nan becomes the name `inf` or `nan` there, which
        raises NameError at render (an int of more than 4,300 digits cannot be written at all)."""
        from jinja2 import nodes

        try:
            v = node.as_const(nodes.EvalContext(self.env))
        except Exception:  # noqa: BLE001 - nodes.Impossible, or whatever the constant operation raises
            return
        if isinstance(v, float) and not math.isfinite(v):
            raise Problem(f"'{src(node)}' is the constant {v}, which jinja2 cannot write into a compiled template",
                          _OPS.get(type(node).__name__, getattr(node, "name", None)),
                          "keep constants in the float range, or write the value as text: \"inf\"")
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10 ** MAX_INT_DIGITS:
            raise Problem(f"'{src(node)}' is a constant of more than 4,300 digits", None, "use smaller constants")

    def need(self, t: TT, ok: Callable[[Alt], bool], node: Any, what: str, wants: str,
             needle: str | None = None, hint: str | None = None) -> None:
        bad = frozenset(a for a in t if a.kind != "err" and not ok(a))
        if bad:
            raise Problem(f"{what} needs {wants}, but '{src(node)}' may be {show(bad)}",
                          needle or _needle(node), hint or _hint_for(bad, wants))

    def truth(self, t: TT, node: Any) -> None:
        self.need(t, lambda a: a.kind != "undef", node, "a condition", "a defined value", hint=HINT_UNDEF)

    def printed(self, t: TT, node: Any, how: str) -> None:
        try:
            self.need_printable(t, node, how)
        except Problem as p:
            self.fail(p, node)

    def need_printable(self, t: TT, node: Any, how: str) -> None:
        undef = [a for a in t if a.kind == "undef"]
        if undef:
            why = undef[0].why
            raise Problem(f"'{src(node)}' may be undefined when the prompt is rendered"
                          + (f" ({why})" if why else ""), _needle(node), _hint_undef(node))
        self.need(t, _printable, node, f"a value {how}", "at most 4,300 digits",
                  hint="a number read from a string can have as many digits as the string: declare max_len on "
                       "it, or declare the input as int")

    # ------------------------------------------------------------ paths
    def path(self, node: Any, scope: dict[str, TT]) -> TT:
        from jinja2 import nodes

        text = _path_of(node)
        if text is not None and _FACT + text in scope:
            return scope[_FACT + text]
        if isinstance(node, nodes.Name):
            if node.name in scope:
                return scope[node.name]
            if node.name in self.stored:  # assigned somewhere, but not before this point
                return one("undef", why=f"'{node.name}' is not set yet here")
            return ERR  # undeclared: E201
        base = self.path(node.node, scope) if _plain_path(node.node) else self.expr(node.node, scope)
        out: list[TT] = []
        for a in base:
            out.append(self.member(a, node))
        return union(*out) if out else ERR

    def member(self, a: Alt, node: Any) -> TT:
        from jinja2 import nodes

        if isinstance(node, nodes.Getattr):
            key: Any = node.attr
            by_attr = True
        else:
            if isinstance(node.arg, nodes.Slice):
                if a.kind in ("list", "tuple"):
                    return one("list", item=items_of(frozenset({a})))
                if a.kind == "str":
                    return STR
                if a.kind == "err":
                    return ERR
                return one("undef", why=f"{show(frozenset({a}))} cannot be sliced")
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            by_attr = False
        if a.kind == "err":
            return ERR
        if a.kind == "none":  # jinja2 reads a field of None as undefined: default() catches it, nothing else
            return one("undef", why=f"'{src(node.node)}' may be null")
        if a.kind == "record" and a.record is not None and isinstance(key, str):
            ft = a.record.field(key)
            if ft is None:
                return ERR  # E204
            if by_attr and hasattr(dict, key):
                raise Problem(f"'{src(node)}' reads the dict method '{key}', not the field '{key}'", key,
                              f"write {src(node.node)}['{key}']")
            return from_ir(ft)
        if a.kind == "dict" and key is not None:
            if by_attr and hasattr(dict, key):
                raise Problem(f"'{src(node)}' reads the dict method '{key}'", key, f"write {src(node.node)}['{key}']")
            if key in a.names:
                return a.parts[0]
            return union(a.parts[0], one("undef", why=f"the dict may have no key {key!r}"))
        if a.kind in ("list", "str", "tuple") and isinstance(key, int) and not isinstance(key, bool):
            item = a.parts[key] if a.kind == "tuple" and -len(a.parts) <= key < len(a.parts) else \
                (a.item or ERR) if a.kind == "list" else STR if a.kind == "str" else None
            if item is None:
                return one("undef", why=f"the tuple has no item {key}")
            if (key >= 0 and a.min_len > key) or (key < 0 and a.min_len >= -key):
                return item
            return union(item, one("undef", why=f"{src(node.node)} may have no item {key}"))
        if a.kind == "tuple" and isinstance(key, str) and key in a.names:
            return a.parts[a.names.index(key)]
        if a.kind == "loop" and by_attr:
            if key in ("index", "index0", "revindex", "revindex0", "length", "depth", "depth0"):
                return num("int", LOG_INT64)
            if key in ("first", "last"):
                return BOOL
            if key in ("previtem", "nextitem"):
                return union(a.item or ERR, one("undef", why=f"loop.{key} on the {'first' if key == 'previtem' else 'last'} item"))
            if key in ("cycle", "changed"):
                return one("obj")
            return one("undef", why=f"the loop has no attribute '{key}'")
        if a.kind in UNDEF:
            raise Problem(f"'{src(node.node)}' may be undefined, and reading '{src(node)}' from it fails"
                          + (f" ({a.why})" if a.why else ""), key if isinstance(key, str) else None, HINT_UNDEF)
        raise Problem(f"{show(frozenset({a}))} has no field {key!r}, so '{src(node)}' is undefined",
                      key if isinstance(key, str) else None, None)

    # ------------------------------------------------------------ operators
    def binop(self, node: Any, left: TT, right: TT) -> TT:
        from jinja2 import nodes

        op = _OPS[type(node).__name__]
        out: list[TT] = []
        for a in left:
            for b in right:
                if "err" in (a.kind, b.kind):
                    out.append(ERR)
                    continue
                r = _arith(op, a, b, node)
                if r is None:
                    lt, rt = show(frozenset({a})), show(frozenset({b}))
                    what = {"+": "numbers on both sides, or two strings, or two lists",
                            "*": "numbers, or a string or list and an int"}.get(op, "numbers on both sides")
                    raise Problem(f"'{op}' needs {what}, but '{src(node)}' may be {lt} {op} {rt}",
                                  op, _hint_arith(op, a, b))
                if isinstance(r, str):
                    raise Problem(f"'{src(node)}': {r}", op, "keep numbers in the range of the declared inputs "
                                  "(declare ge/le bounds), or divide instead")
                out.append(r)
        del nodes
        return union(*out) if out else ERR

    def compare(self, node: Any, scope: dict[str, TT]) -> TT:
        left = self.expr(node.expr, scope)
        left_node = node.expr
        for op in node.ops:
            right = self.expr(op.expr, scope)
            sym = _CMP.get(op.op, op.op)
            for t, n in ((left, left_node), (right, op.expr)):
                self.need(t, lambda a: a.kind != "undef", n, f"'{sym}'", "defined values", sym, HINT_UNDEF)
            if op.op in ("lt", "lteq", "gt", "gteq"):
                self.ordered(left, right, node, sym)
            elif op.op in ("in", "notin"):
                self.member_test(left, right, node, sym)
            left, left_node = right, op.expr
        return BOOL

    def ordered(self, left: TT, right: TT, node: Any, sym: str) -> None:
        for a in left:
            for b in right:
                if not _orderable(a, b):
                    raise Problem(f"'{sym}' needs two numbers or two strings, but '{src(node)}' may compare "
                                  f"{show(frozenset({a}))} with {show(frozenset({b}))}", sym,
                                  "compare values of one kind; guard null values first ({% if x is not none %})"
                                  if "none" in (a.kind, b.kind) else "convert one side: x | int, x | string")

    def member_test(self, left: TT, right: TT, node: Any, sym: str) -> None:
        for b in right:
            if b.kind in ("err", "list", "gen", "tuple"):
                continue
            if b.kind == "str":
                self.need(left, lambda a: a.kind == "str", node, f"'{sym}' on a string", "a string on its left",
                          sym, "test a string: x | string in text")
            elif b.kind in ("record", "dict"):
                self.need(left, _hashable, node, f"'{sym}' on a record", "a key (a string) on its left", sym)
            else:
                raise Problem(f"'{sym}' needs a string, list or record on its right, but '{src(node)}' may test "
                              f"membership in {show(frozenset({b}))}", sym,
                              "guard null values first ({% if xs %})" if b.kind == "none" else None)

    def call(self, node: Any, scope: dict[str, TT]) -> TT:
        from jinja2 import nodes

        from promptc.template_safety import _const_value

        f = node.node
        args = [self.expr(a, scope) for a in node.args]
        if isinstance(f, nodes.Name) and f.name == "range":
            vals = [_const_value(a)[1] for a in node.args]
            if all(isinstance(v, int) and not isinstance(v, bool) for v in vals) and 1 <= len(vals) <= 3 \
                    and (len(vals) < 3 or vals[2] != 0):
                r = range(*vals)  # len() overflows a C ssize_t for 2**63 items (refused by template_safety)
                return one("list", item=num("int", _log(max((abs(v) for v in vals), default=0))), min_len=1 if r else 0)
            return ERR
        if isinstance(f, nodes.Getattr) and f.attr in ("cycle", "changed"):
            if node.kwargs or (f.attr == "cycle" and not args):
                raise Problem(f"loop.{f.attr}(...) takes positional values" + (", at least one" if f.attr == "cycle"
                                                                               else ""), f.attr, "loop.cycle('odd', 'even')")
            return union(*args) if f.attr == "cycle" else BOOL
        return ERR  # refused by template_safety

    # ------------------------------------------------------------ filters and tests
    def filter_chain(self, node: Any, subject: TT, scope: dict[str, TT]) -> TT:
        from jinja2 import nodes

        chain = []
        cur = node
        while isinstance(cur, nodes.Filter):
            chain.append(cur)
            cur = cur.node
        t = subject
        for f in reversed(chain):
            try:
                t = self.filter_(f, f.name, t, f.args, f.kwargs, scope)
            except Problem as p:
                self.fail(p, f)
                t = ERR
        return t

    def bind(self, fn: Callable, name: str, kind: str, args: list, kwargs: dict, node: Any) -> dict[str, Any]:
        """The filter's or test's parameters as jinja2 would bind them; a mismatch raises TypeError."""
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return {}
        params = list(sig.parameters.values())
        # an async variant (list, slice, ...) wraps its sync function, whose own signature this is
        if getattr(inspect.unwrap(fn), "jinja_pass_arg", None) is not None:
            params = params[1:]
        sig = sig.replace(parameters=params)
        try:
            bound = sig.bind(*[None] * 1, *args, **kwargs)
        except TypeError as e:
            raise Problem(f"wrong arguments for the {kind} '{name}': {e}", name,
                          "see jinja2's list of builtin filters and tests for the arguments it takes") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def filter_(self, node: Any, name: str, s: TT, arg_nodes: Any, kwarg_nodes: Any,
                scope: dict[str, TT]) -> TT:
        from promptc.template_safety import _const_value

        fn = self.filters.get(name)
        rule = _FILTERS.get(name)
        if fn is None or rule is None:
            if fn is not None and name not in ("attr", "random"):
                raise Problem(f"the filter '{name}' has no type rule in promptc", name,
                              "use another filter from docs/language.md, Templates")
            return ERR
        arg_types = [self.expr(a, scope) for a in arg_nodes]
        kw_types = {k.key: self.expr(k.value, scope) for k in kwarg_nodes}
        consts = [_const_value(a) for a in arg_nodes]
        kw_consts = {k.key: _const_value(k.value) for k in kwarg_nodes}
        # constant arguments bind as themselves; others as a placeholder (their type is checked by the rule)
        bound = self.bind(fn, name, "filter", [v if ok else _Dyn(t) for (ok, v), t in zip(consts, arg_types)],
                          {k: v if ok else _Dyn(kw_types[k]) for k, (ok, v) in kw_consts.items()}, node)
        if name not in ("default", "d"):
            undef = [a for a in s if a.kind in UNDEF]
            if undef:
                raise Problem(f"'{src(node)}': the value may be undefined"
                              + (f" ({undef[0].why})" if undef[0].why else ""), name, HINT_UNDEF)
        return rule(self, _Call(node, name, s, bound, scope))

    def test(self, node: Any, name: str, s: TT, arg_nodes: Any, kwarg_nodes: Any, scope: dict[str, TT]) -> TT:
        from promptc.template_safety import _const_value

        fn = self.tests.get(name)
        if fn is None:
            return ERR  # E205
        arg_types = [self.expr(a, scope) for a in arg_nodes]
        consts = [_const_value(a) for a in arg_nodes]
        self.bind(fn, name, "test", [v if ok else _Dyn(t) for (ok, v), t in zip(consts, arg_types)],
                  {k.key: _Dyn(self.expr(k.value, scope)) for k in kwarg_nodes}, node)
        if name in ("defined", "undefined"):
            return BOOL
        self.need(s, lambda a: a.kind not in UNDEF, node, f"the test '{name}'", "a defined value", name, HINT_UNDEF)
        for t, n in zip(arg_types, arg_nodes):
            self.need(t, lambda a: a.kind not in UNDEF, n, f"the test '{name}'", "defined arguments", name, HINT_UNDEF)
        if name in ("odd", "even"):
            self.need(s, lambda a: a.kind in NUM, node, f"the test '{name}'", "a number", name)
        elif name == "divisibleby":
            ok, v = consts[0] if consts else (False, None)
            if not (ok and isinstance(v, (int, float)) and not isinstance(v, bool) and v != 0):
                raise Problem("the test 'divisibleby' needs a non-zero constant number", name,
                              "write the divisor itself: x is divisibleby(3)")
            self.need(s, lambda a: a.kind in NUM, node, "the test 'divisibleby'", "a number", name)
        elif name in ("lt", "le", "gt", "ge", "<", "<=", ">", ">=", "lessthan", "greaterthan"):
            self.ordered(s, arg_types[0] if arg_types else ERR, node, name)
        elif name == "in":
            self.member_test(s, arg_types[0] if arg_types else ERR, node, "in")
        elif name in ("filter", "test"):
            self.need(s, _hashable, node, f"the test '{name}'", "a string", name)
        elif name not in _TESTS_ANY:
            raise Problem(f"the test '{name}' has no type rule in promptc", name, None)
        return BOOL

    def iterable(self, t: TT, node: Any, how: str, sized: bool = False, reversible: bool = False,
                 needle: str | None = None) -> TT:
        kinds_ok = {"list", "str", "record", "dict", "tuple"} | (set() if sized or reversible else {"gen"})
        what = "a list, string or record" + ("" if sized or reversible else " (or a filter's generator)")
        ks = {a.kind for a in t if a.kind not in kinds_ok}
        hint = "guard null values first ({% if xs %}), or fall back: (xs or [])" if "none" in ks else \
            "a filter such as map or select returns a generator: add | list first" if "gen" in ks else \
            "a number is not a list; print it as it is, or declare the input as list[...]" if ks & NUM else None
        self.need(t, lambda a: a.kind in kinds_ok, node, f"a value {how}", what, needle, hint)
        return items_of(t)


_FACT = "\0fact:"
_UNKNOWN_KEY = "\0?"  # a dict literal's key that is not a constant string


class _Dyn:
    """A filter argument that is not a constant: bound for arity only."""

    def __init__(self, t: TT):
        self.t = t


@dataclass
class _Call:
    node: Any
    name: str
    s: TT  # the subject
    args: dict[str, Any]  # bound parameters: constants, or _Dyn for expressions
    scope: dict[str, TT]

    def const(self, key: str) -> Any:
        v = self.args.get(key)
        return None if isinstance(v, _Dyn) else v

    def type(self, key: str) -> TT:
        v = self.args.get(key)
        return v.t if isinstance(v, _Dyn) else of_const(v)


def _join(base: dict[str, TT], *scopes: dict[str, TT]) -> dict[str, TT]:
    """The scope after one of several branches ran: a name one branch set may keep its old value."""
    keys = set(base).union(*scopes)
    out: dict[str, TT] = {}
    for k in keys:
        ts = [s[k] for s in (base, *scopes) if k in s]
        if k.startswith(_FACT):
            if all(k in s for s in scopes):
                out[k] = union(*(s[k] for s in scopes))
            continue
        if any(k not in s for s in (base, *scopes)):
            ts.append(one("undef", why=f"'{k}' may not be set here"))
        out[k] = union(*ts)
    return out


def _length_bound(test: Any) -> tuple[Any, int] | None:
    """(path, n) when `test` is `path | length > k` (or >= k, or count): where it holds, path has n items."""
    from jinja2 import nodes

    if not (isinstance(test, nodes.Compare) and len(test.ops) == 1 and test.ops[0].op in ("gt", "gteq")):
        return None
    f, k = test.expr, test.ops[0].expr
    if not (isinstance(f, nodes.Filter) and f.name in ("length", "count") and not f.args and f.node is not None
            and _plain_path(f.node) and isinstance(k, nodes.Const) and isinstance(k.value, int)
            and not isinstance(k.value, bool)):
        return None
    n = k.value + 1 if test.ops[0].op == "gt" else k.value
    return (f.node, n) if 0 < n <= 10_000 else None


def _bind(scope: dict[str, TT], name: str, t: TT) -> dict[str, TT]:
    """`scope` with `name` set to `t`, and what was proved about the old value's paths dropped."""
    out = {k: v for k, v in scope.items()
           if not (k.startswith(_FACT) and re.match(re.escape(_FACT + name) + r"($|[.\[])", k))}
    out[name] = t
    return out


def path_text(node: Any) -> str | None:
    """`x.a[0].b` as text, or None for anything that is not a plain path."""
    from jinja2 import nodes

    parts: list[str] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            parts.append(f".{node.attr}")
        elif isinstance(node.arg, nodes.Const):
            parts.append(f"[{node.arg.value!r}]")
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return node.name + "".join(reversed(parts))


def not_null_paths(test: Any) -> list[str]:
    """The paths a test proves not null where it holds: `x`, `x.a`, `x is not none`, `x is defined`,
    `x and ...`, `x.a | length > 0` is not counted (it would fail on null anyway)."""
    from jinja2 import nodes

    if isinstance(test, nodes.And):
        return not_null_paths(test.left) + not_null_paths(test.right)
    if isinstance(test, nodes.Not) and isinstance(test.node, nodes.Test) and test.node.name == "none":
        test = test.node.node
    elif isinstance(test, nodes.Test) and test.name in ("defined", "string", "mapping", "sequence", "number",
                                                        "integer", "float", "true", "iterable"):
        test = test.node
    elif isinstance(test, nodes.Compare) and len(test.ops) == 1 and test.ops[0].op == "ne" \
            and isinstance(test.ops[0].expr, nodes.Const) and test.ops[0].expr.value is None:
        test = test.expr
    path = path_text(test)
    if path is None:
        return []
    out = [path]  # and every prefix: `x.a` being set means `x` is too
    cut = len(path)
    while True:
        i = max(path.rfind(".", 0, cut), path.rfind("[", 0, cut))
        if i <= 0:
            break
        out.append(path[:i])
        cut = i
    return out


def _plain_path(node: Any) -> bool:
    return _path_of(node) is not None


def _path_of(node: Any) -> str | None:
    return path_text(node)


def _parse_path(path: str) -> Any:
    from promptc.templating import environment

    out: Any = environment().parse("{{ " + path + " }}").body[0]
    return out.nodes[0]


def _hint_undef(node: Any) -> str:
    from jinja2 import nodes

    base = node
    while isinstance(base, (nodes.Getitem, nodes.Getattr, nodes.Filter)) and base.node is not None:
        base = base.node
    guard = src(base) if isinstance(base, (nodes.Name, nodes.Getattr)) and base is not node else None
    fallback = f"give a fallback: {{{{ {src(node)} | default('') }}}}"
    return f"guard it: {{% if {guard} %}}...{{% endif %}}, or {fallback}" if guard else fallback


def _hint_for(bad: frozenset, wants: str) -> str | None:
    ks = {a.kind for a in bad}
    if "none" in ks:
        return "the value may be null: guard it ({% if x is not none %}...{% endif %}) or give a fallback: " \
               "(x if x is not none else 0), x | default(0, true)"
    if ks & UNDEF:
        return HINT_UNDEF
    if "gen" in ks:
        return "a filter such as map, select or reverse returns a generator: add | list first"
    if "str" in ks and "number" in wants:
        return "the input is a string; declare it as int or float to compute with it"
    return None


def _hint_arith(op: str, a: Alt, b: Alt) -> str | None:
    ks = {a.kind, b.kind}
    if "none" in ks:
        return "the value may be null: guard it ({% if x is not none %}...{% endif %}) or give a fallback: " \
               "(x if x is not none else 0), x | default(0, true)"
    if "str" in ks and op == "+":
        return "join text with ~ (it converts both sides): {{ a ~ b }}"
    if "str" in ks:
        return "the value is a string; declare the input as int or float to compute with it"
    if ks & UNDEF:
        return HINT_UNDEF
    return None


def _arith(op: str, a: Alt, b: Alt, node: Any) -> TT | str | None:
    """The result of `a op b`, None when Python raises TypeError, a str when it may raise otherwise."""
    if a.kind in NUM and b.kind in NUM:
        is_float = "float" in (a.kind, b.kind) or op == "/"
        if "float" in (a.kind, b.kind) or op == "/":  # the int side is converted to a float
            for x in (a, b):
                if x.kind == "int" and not _to_float_ok(x):
                    return "an int this large cannot be converted to a float (OverflowError)"
        ma, mb = (max(x.mag, 0.0) if x.kind != "bool" else 0.0 for x in (a, b))
        if op in ("+", "-"):
            mag = max(ma, mb) + math.log10(2)
        elif op == "*":
            mag = ma + mb
        elif op in ("/", "//"):
            from promptc.template_safety import _const_value

            ok, c = _const_value(node.right)
            if not (ok and isinstance(c, (int, float)) and not isinstance(c, bool) and c != 0):
                return "division by a value that may be zero"
            mag = ma - min(0.0, math.log10(abs(c))) + (1 if op == "//" else 0)
        elif op == "%":
            mag = mb
        else:
            return None
        return num("float" if is_float else "int", mag)
    if op == "+" and a.kind == b.kind == "str":
        return STR
    if op == "+" and a.kind in ("list", "tuple") and b.kind in ("list", "tuple") and a.kind == b.kind:
        return one("list", item=union(items_of(frozenset({a})), items_of(frozenset({b}))),
                   min_len=a.min_len + b.min_len)
    if op == "*":
        for x, y in ((a, b), (b, a)):
            if x.kind in ("str", "list") and y.kind in ("int", "bool"):
                return frozenset({Alt(x.kind, x.item, 0, x.mag, None, (), ())})
    return None


# ------------------------------------------------------------------ the filters' rules
def _any_value(c: _Call) -> None:
    pass


def _f_str(typer: Typer, c: _Call) -> TT:
    """Filters that convert their subject with str(): any printable value."""
    typer.need(c.s, _printable, c.node, f"the filter '{c.name}'", "a printable value", c.name)
    return STR


def _f_needs_str(typer: Typer, c: _Call) -> TT:
    """indent, truncate, wordwrap: string methods on the subject itself."""
    typer.need(c.s, lambda a: a.kind == "str", c.node, f"the filter '{c.name}'", "a string", c.name,
               "convert it first: x | string | " + c.name)
    if c.name == "truncate":
        length, end, leeway = c.const("length"), c.const("end"), c.const("leeway")
        if not (isinstance(length, int) and isinstance(end, str) and length >= len(end)) or \
                not (leeway is None or (isinstance(leeway, int) and leeway >= 0)):
            raise Problem("truncate needs a constant length at least as long as its end text (default '...'), "
                          "and a leeway of 0 or more", c.name, "truncate(20) or truncate(5, end='')")
    if c.name == "wordwrap":
        width = c.const("width")
        if not (isinstance(width, int) and not isinstance(width, bool) and width > 0):
            raise Problem("wordwrap needs a positive constant width", c.name, "wordwrap(60)")
    if c.name == "indent":
        width = c.const("width")
        if not (isinstance(width, (int, str)) and not isinstance(width, bool)):
            raise Problem("indent needs a constant width (a number or a string)", c.name, "indent(2)")
    return STR


def _f_center(typer: Typer, c: _Call) -> TT:
    width = c.const("width")
    if not (isinstance(width, int) and not isinstance(width, bool)):
        raise Problem("center needs a constant integer width", c.name, "center(40)")
    return _f_str(typer, c)


def _f_trim(typer: Typer, c: _Call) -> TT:
    if not (c.args.get("chars") is None or isinstance(c.const("chars"), str)):
        raise Problem("trim takes a constant string of characters", c.name, "trim('.')")
    return _f_str(typer, c)


def _f_replace(typer: Typer, c: _Call) -> TT:
    count = c.args.get("count")
    if not (count is None or (isinstance(count, int) and not isinstance(count, bool))):
        raise Problem("replace takes a constant integer count", c.name, "replace('a', 'b', 1)")
    for k in ("old", "new"):
        v = c.args.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > 10 ** 100:
            raise Problem("replace takes short constants", c.name, None)
    return _f_str(typer, c)


def _f_urlize(typer: Typer, c: _Call) -> TT:
    if c.args.get("extra_schemes") is not None:
        raise Problem("urlize's extra_schemes is not supported in templates", c.name, None)
    lim = c.args.get("trim_url_limit")
    if not (lim is None or (isinstance(lim, int) and not isinstance(lim, bool))):
        raise Problem("urlize's trim_url_limit must be a constant integer", c.name, None)
    for k in ("target", "rel"):
        if not (c.args.get(k) is None or isinstance(c.args.get(k), str)):
            raise Problem(f"urlize's {k} must be a constant string", c.name, None)
    return _f_str(typer, c)


def _f_escape(typer: Typer, c: _Call) -> TT:
    return _f_str(typer, c)


def _f_length(typer: Typer, c: _Call) -> TT:
    typer.iterable(c.s, c.node, f"given to '{c.name}'", sized=True, needle=c.name)
    return num("int", LOG_INT64)


def _f_wordcount(typer: Typer, c: _Call) -> TT:
    _f_str(typer, c)
    return num("int", LOG_INT64)


def _f_abs(typer: Typer, c: _Call) -> TT:
    typer.need(c.s, lambda a: a.kind in NUM, c.node, f"the filter '{c.name}'", "a number", c.name)
    return frozenset(Alt("int", mag=0.0) if a.kind == "bool" else a for a in c.s)


def _f_round(typer: Typer, c: _Call) -> TT:
    p, method = c.args.get("precision"), c.args.get("method")
    if not (isinstance(p, int) and not isinstance(p, bool)) or method not in ("common", "floor", "ceil"):
        raise Problem("round takes a constant integer precision and a method of 'common', 'floor' or 'ceil'",
                      c.name, "round(2) or round(0, 'floor')")
    typer.need(c.s, lambda a: a.kind in NUM, c.node, "the filter 'round'", "a number", "round")
    out = []
    for a in c.s:
        if a.kind == "err":
            out.append(ERR)
        elif method == "common":
            out.append(num("float" if a.kind == "float" else "int", a.mag + 1))
        else:
            if a.mag + max(p, 0) > LOG_MAXF:
                raise Problem(f"'{src(c.node)}' may overflow: round(..., '{method}') multiplies by 10**{p} and "
                              f"'{src(c.node.node)}' may be as large as {show(frozenset({a}))} allows", "round",
                              "declare ge/le bounds on the input, or round with 'common'")
            out.append(num("float", a.mag + 1))
    return union(*out) if out else ERR


def _f_int(typer: Typer, c: _Call) -> TT:
    out: list[TT] = [c.type("default")]
    for a in c.s:
        if a.kind == "err":
            out.append(ERR)
        elif a.kind == "float":
            if a.mag > LOG_MAXF:
                raise Problem(f"'{src(c.node)}' fails when the value is inf ({show(frozenset({a}))})", "int",
                              "int() of an infinite float raises; keep floats in range (declare ge/le bounds)")
            out.append(num("int", a.mag))
        elif a.kind in ("int", "bool"):
            out.append(num("int", a.mag))
        elif a.kind == "str":
            out.append(num("int", min(a.mag, float(MAX_INT_DIGITS))))
    return union(*out)


def _f_float(typer: Typer, c: _Call) -> TT:
    out: list[TT] = [c.type("default")]
    for a in c.s:
        if a.kind == "err":
            out.append(ERR)
        elif a.kind in NUM:
            if not _to_float_ok(a):
                raise Problem(f"'{src(c.node)}': an int this large cannot be converted to a float", "float", None)
            out.append(num("float", a.mag))
        elif a.kind == "str":
            out.append(num("float", math.inf))  # "inf", "nan", "1e999"
    return union(*out)


def _f_default(typer: Typer, c: _Call) -> TT:
    gone = UNDEF | {"err"} | ({"none"} if c.args.get("boolean") is True else set())  # boolean: falsy values too
    kept = frozenset(a for a in c.s if a.kind not in gone)
    return union(kept, c.type("default_value"))


def _f_first_last(typer: Typer, c: _Call) -> TT:
    item = typer.iterable(c.s, c.node, f"given to '{c.name}'", reversible=c.name == "last", needle=c.name)
    if all(a.min_len > 0 or a.kind == "err" for a in c.s):
        return item
    return union(item, one("undef", why=f"{c.name} of an empty sequence"))


def _f_join(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, "given to 'join'", needle=c.name)
    attr = c.const("attribute")
    if attr is not None:
        items = _attribute(typer, c, items, attr)
    typer.need(items, _printable, c.node, "the filter 'join'", "printable items", "join", HINT_UNDEF)
    if not isinstance(c.args.get("d"), str):
        raise Problem("join takes a constant string separator", "join", "join(', ')")
    return STR


def _attribute(typer: Typer, c: _Call, items: TT, attr: Any) -> TT:
    """The type of `item.attr` (a dotted path or an index) for each item, as jinja2's attrgetter reads it."""
    parts = [int(p) if p.isdigit() else p for p in str(attr).split(".")] if isinstance(attr, str) else [attr]
    t = items
    for p in parts:
        out: list[TT] = []
        for a in t:
            if a.kind == "err":
                out.append(ERR)
            elif a.kind == "record" and a.record is not None and isinstance(p, str) and a.record.field(p) is not None:
                out.append(from_ir(a.record.field(p)))
            elif a.kind == "tuple" and isinstance(p, int) and 0 <= p < len(a.parts) and a.min_len > p:
                out.append(a.parts[p])
            elif a.kind == "tuple" and isinstance(p, str) and p in a.names:
                out.append(a.parts[a.names.index(p)])
            else:
                raise Problem(f"'{c.name}' reads the attribute {attr!r} of each item, which "
                              f"{show(frozenset({a}))} does not have", c.name,
                              "name a field of the list's records: map(attribute='name')")
        t = union(*out)
    return t


def _f_map(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, "given to 'map'", needle=c.name)
    node = c.node
    if node.args:  # map('filter', *args): the filter applied to each item
        from jinja2 import nodes

        inner = node.args[0].value if isinstance(node.args[0], nodes.Const) else None
        if not isinstance(inner, str):
            return ERR  # refused by template_safety
        if inner in ("map", "select", "reject", "selectattr", "rejectattr", "format", "xmlattr", "groupby"):
            raise Problem(f"map('{inner}') has no type rule in promptc", "map", "apply it in a separate step")
        return one("gen", item=typer.filter_(node, inner, items, node.args[1:], node.kwargs, c.scope))
    kw = {k.key: k.value for k in node.kwargs}
    from promptc.template_safety import _const_value

    attr = _const_value(kw["attribute"])[1] if "attribute" in kw else None
    if attr is None:
        raise Problem("map needs a filter name or attribute='field'", "map", "map(attribute='name') or map('upper')")
    t = _attribute(typer, c, items, attr)
    if "default" in kw:
        t = union(t, typer.expr(kw["default"], c.scope))
    return one("gen", item=t)


def _f_minmax(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, f"given to '{c.name}'", needle=c.name)
    attr = c.const("attribute")
    keys = _attribute(typer, c, items, attr) if attr is not None else items
    typer.ordered(keys, keys, c.node, c.name)
    if all(a.min_len > 0 or a.kind == "err" for a in c.s):
        return items
    return union(items, one("undef", why=f"{c.name} of an empty sequence"))


def _f_sort(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, "given to 'sort'", needle=c.name)
    attr = c.const("attribute")
    keys = _attribute(typer, c, items, attr) if attr is not None else items
    typer.ordered(keys, keys, c.node, "sort")
    return one("list", item=items, min_len=min((a.min_len for a in c.s), default=0))


def _f_unique(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, "given to 'unique'", needle=c.name)
    attr = c.const("attribute")
    keys = _attribute(typer, c, items, attr) if attr is not None else items
    typer.need(keys, _hashable, c.node, "the filter 'unique'", "strings, numbers or bools", "unique")
    return one("gen", item=items)


def _f_sum(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, "given to 'sum'", needle=c.name)
    attr = c.const("attribute")
    if attr is not None:
        items = _attribute(typer, c, items, attr)
    start = c.type("start")
    typer.need(items, lambda a: a.kind in NUM, c.node, "the filter 'sum'", "numbers", "sum")
    typer.need(start, lambda a: a.kind in NUM, c.node, "the filter 'sum'", "a number to start from", "sum")
    all_ = union(items, start)
    is_float = "float" in kinds(all_)
    for a in all_:
        if is_float and not _to_float_ok(a):
            raise Problem("sum mixes floats with an int too large for a float", "sum", None)
    mag = max((a.mag for a in all_ if a.kind in NUM), default=0.0) + 13  # at most 10**13 items
    return num("float" if is_float else "int", mag)


def _f_list(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, "given to 'list'", needle=c.name)
    return one("list", item=items, min_len=min((a.min_len for a in c.s if a.kind != "gen"), default=0))


def _f_reverse(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, "given to 'reverse'", needle=c.name)
    out = []
    for a in c.s:
        if a.kind == "str":
            out.append(frozenset({a}))
        elif a.kind == "gen":
            out.append(one("list", item=items))
        elif a.kind != "err":
            out.append(one("gen", item=items))
        else:
            out.append(ERR)
    return union(*out)


def _f_select(typer: Typer, c: _Call) -> TT:
    from jinja2 import nodes

    items = typer.iterable(c.s, c.node, f"given to '{c.name}'", needle=c.name)
    node = c.node
    if c.name.endswith("attr"):
        attr = node.args[0].value if node.args and isinstance(node.args[0], nodes.Const) else None
        if attr is None:
            return ERR  # refused by template_safety
        keys = _attribute(typer, c, items, attr)
        rest = node.args[1:]
    else:
        keys, rest = items, node.args
    if rest:
        test = rest[0].value if isinstance(rest[0], nodes.Const) else None
        if isinstance(test, str) and test in typer.tests:
            typer.test(node, test, keys, rest[1:], [], c.scope)
        else:
            return ERR  # refused or E205 by the other walks
    else:
        typer.truth(keys, node)
    if not c.name.endswith("attr") and ((c.name == "select" and not rest) or (c.name == "reject" and rest
                                                                             and rest[0].value == "none")):
        items = frozenset(a for a in items if a.kind != "none") or ERR  # the items kept are not null
    return one("gen", item=items)


def _f_batch(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, f"given to '{c.name}'", needle=c.name)
    n = c.args.get("linecount", c.args.get("slices"))
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise Problem(f"{c.name} needs a positive constant count", c.name, f"{c.name}(3)")
    fill = c.args.get("fill_with")
    item = items if fill is None else union(items, c.type("fill_with"))
    return one("gen", item=one("list", item=item, min_len=1 if c.name == "batch" else 0))


def _mapping(typer: Typer, c: _Call) -> tuple[TT, TT]:
    typer.need(c.s, lambda a: a.kind in ("record", "dict"), c.node, f"the filter '{c.name}'", "a record",
               c.name)
    keys: list[TT] = []
    vals: list[TT] = []
    for a in c.s:
        if a.kind == "record" and a.record is not None:
            keys.append(one("str", min_len=1))
            vals.extend(from_ir(ft) for _, ft in a.record.fields)
        elif a.kind == "dict":
            keys.append(a.item or ERR)
            vals.append(a.parts[0])
        else:
            keys.append(ERR)
            vals.append(ERR)
    return union(*keys), union(*vals) if vals else ERR


def _f_items(typer: Typer, c: _Call) -> TT:
    k, v = _mapping(typer, c)
    return one("gen", item=one("tuple", parts=(k, v), min_len=2))


def _f_dictsort(typer: Typer, c: _Call) -> TT:
    k, v = _mapping(typer, c)
    by = c.args.get("by")
    if by not in ("key", "value"):
        raise Problem("dictsort sorts by 'key' or 'value'", c.name, "dictsort(by='value')")
    typer.ordered(k if by == "key" else v, k if by == "key" else v, c.node, "dictsort")
    return one("list", item=one("tuple", parts=(k, v), min_len=2))


def _f_groupby(typer: Typer, c: _Call) -> TT:
    items = typer.iterable(c.s, c.node, "given to 'groupby'", needle=c.name)
    attr = c.const("attribute")
    keys = _attribute(typer, c, items, attr)
    if c.args.get("default") is not None:
        keys = union(keys, c.type("default"))
    typer.ordered(keys, keys, c.node, "groupby")
    return one("list", item=one("tuple", parts=(keys, one("list", item=items, min_len=1)), min_len=2,
                                names=("grouper", "list")))


def _f_xmlattr(typer: Typer, c: _Call) -> TT:
    k, v = _mapping(typer, c)
    for a in c.s:
        if a.kind == "dict" and any(kv == _UNKNOWN_KEY or re.search(r"[\s/>=]", kv) for kv in a.names):
            raise Problem("xmlattr needs constant keys without spaces, '/', '>' or '='", c.name, None)
    typer.need(v, _printable, c.node, "the filter 'xmlattr'", "printable values", c.name)
    return STR


def _f_filesizeformat(typer: Typer, c: _Call) -> TT:
    typer.need(c.s, lambda a: a.kind in NUM and _to_float_ok(a), c.node, "the filter 'filesizeformat'",
               "a number", c.name)
    return STR


def _f_tojson(typer: Typer, c: _Call) -> TT:
    typer.need(c.s, _jsonable, c.node, "the filter 'tojson'", "a JSON value (not a generator)", c.name,
               "add | list first")
    ind = c.args.get("indent")
    if not (ind is None or (isinstance(ind, int) and not isinstance(ind, bool))):
        raise Problem("tojson takes a constant integer indent", c.name, None)
    return STR


def _f_urlencode(typer: Typer, c: _Call) -> TT:
    typer.need(c.s, lambda a: a.kind in ("str", "int", "float", "bool", "none", "record", "dict") and _printable(a),
               c.node, "the filter 'urlencode'", "a string, a number or a record", c.name)
    return STR


_FORMAT_SPEC = re.compile(r"%(\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?([a-zA-Z%])")


def _f_format(typer: Typer, c: _Call) -> TT:
    from jinja2 import nodes

    node = c.node
    fmt = node.node.value if isinstance(node.node, nodes.Const) and isinstance(node.node.value, str) else None
    if fmt is None:
        return ERR  # refused by template_safety
    if node.kwargs:
        raise Problem("format takes positional arguments in templates", "format", '"%s: %d" | format(a, b)')
    specs = [m for m in _FORMAT_SPEC.finditer(fmt) if m.group(4) != "%"]
    stray = _FORMAT_SPEC.sub("", fmt)
    if "%" in stray or any(m.group(1) for m in specs) or len(specs) != len(node.args):
        raise Problem(f"the format string {fmt!r} needs {len(specs)} argument(s) and got {len(node.args)}",
                      "format", "give one argument per %s, %d or %f")
    for m, a in zip(specs, node.args):
        conv = m.group(4)
        t = typer.expr(a, c.scope)
        if conv in "sra":
            typer.need(t, _printable, a, f"'%{conv}' in format", "a printable value", "format", HINT_UNDEF)
        elif conv in "diu":
            typer.need(t, lambda x: x.kind in NUM and (x.kind != "float" or x.mag <= LOG_MAXF)
                       and _printable(x), a, f"'%{conv}' in format", "a finite number", "format")
        elif conv in "eEfFgG":
            typer.need(t, lambda x: x.kind in NUM and _to_float_ok(x), a, f"'%{conv}' in format", "a number", "format")
        elif conv in "xXo":
            typer.need(t, lambda x: x.kind in ("int", "bool") and _printable(x), a, f"'%{conv}' in format",
                       "an int", "format")
        else:
            raise Problem(f"'%{conv}' is not supported in format strings in templates", "format",
                          "use %s, %d or %f")
    return STR


_FILTERS: dict[str, Callable[[Typer, _Call], TT]] = {
    "abs": _f_abs, "batch": _f_batch, "capitalize": _f_str, "center": _f_center, "count": _f_length,
    "d": _f_default, "default": _f_default, "dictsort": _f_dictsort, "e": _f_escape, "escape": _f_escape,
    "filesizeformat": _f_filesizeformat, "first": _f_first_last, "float": _f_float,
    "forceescape": _f_escape, "format": _f_format, "groupby": _f_groupby, "indent": _f_needs_str,
    "int": _f_int, "items": _f_items, "join": _f_join, "last": _f_first_last, "length": _f_length,
    "list": _f_list, "lower": _f_str, "map": _f_map, "max": _f_minmax, "min": _f_minmax, "pprint": _f_str,
    "reject": _f_select, "rejectattr": _f_select, "replace": _f_replace, "reverse": _f_reverse,
    "round": _f_round, "safe": _f_str, "select": _f_select, "selectattr": _f_select, "slice": _f_batch,
    "sort": _f_sort, "string": _f_str, "striptags": _f_str, "sum": _f_sum, "title": _f_str,
    "tojson": _f_tojson, "trim": _f_trim, "truncate": _f_needs_str, "unique": _f_unique, "upper": _f_str,
    "urlencode": _f_urlencode, "urlize": _f_urlize, "wordcount": _f_wordcount, "wordwrap": _f_needs_str,
    "xmlattr": _f_xmlattr,
}
# Tests that accept any defined value.
_TESTS_ANY = {"none", "boolean", "false", "true", "integer", "float", "number", "string", "mapping", "iterable",
              "callable", "sameas", "escaped", "sequence", "lower", "upper", "eq", "ne", "==", "!=", "equalto"}
