"""Template safety (core): the subset of jinja2 that `system` and `prompt` templates may use.

A compiled artifact (`prompt.jinja`, `messages.json`) is rendered by whoever uses it, often with a plain,
non-sandboxed `jinja2.Environment()`. So the checker does not rely on jinja2's sandbox: it accepts only
templates that are safe in *any* jinja2 environment, and refuses everything else with a located finding.

The accepted subset (docs/language.md, "Templates", lists it for users):

- output `{{ ... }}`, `{% if %}`, `{% for %}` (not `recursive`), `{% set %}` (to a plain name),
  `{% filter %}`, `{% raw %}`, comments;
- names, constants, list/tuple/dict literals, `~ + -`, comparisons, `and or not`, `in`, `if/else`,
  tests (`is odd`);
- attribute and `[...]` access only along a path that starts at a name (`a.b[0].c`), never on a call
  result, a filter result or a literal; never a name starting with `_`; a `[...]` key is a constant;
- calls only to `range(...)` with constant bounds, `loop.cycle(...)` and `loop.changed(...)`;
- `*` only by a constant of at most MAX_REPEAT; `/ // %` only by a non-zero constant (`%` on numbers);
  no `**`;
- the filters in FILTERS, with constant arguments where a size or an attribute name is given.

Refused: `include`, `import`, `extends`, `block`, `macro`, `call`, `with`, `namespace`, the `attr` and
`random` filters, method calls (`x.format(...)`, `"{0.__class__}".format_map(...)`), any name or key
starting with `_`, computed keys (`x['_' ~ '_class__']`), and anything whose rendered size could grow
faster than the budget allows: a render can produce at most about AMPLIFICATION times the size of its
inputs and constants, loops over static ranges run at most MAX_ITERATIONS times in all, and loops over
inputs nest at most MAX_INPUT_LOOPS deep. Nesting is bounded (MAX_DEPTH), so no stage recurses deeply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from promptc import codes

MAX_DEPTH = 40  # syntax-tree levels (expressions and statements); jinja's parser and codegen recurse
MAX_BLOCK_DEPTH = 12  # nested {% if/for/filter/set %} blocks; CPython refuses > 20 nested loops
MAX_RANGE = 1000  # iterations of one range(...)
MAX_ITERATIONS = 10_000  # product of the static iteration counts of nested loops
MAX_INPUT_LOOPS = 2  # nested loops over input values: rendering is at most quadratic in the inputs
MAX_REPEAT = 100  # `s * n`
MAX_ARG = 1000  # a numeric filter argument (widths, counts)
AMPLIFICATION = 100_000  # rendered size, in units of the largest input value or constant

# Filters accepted in templates. Value: (growth factor, rule for arguments).
#   "const": every argument is a constant;  "any": arguments are expressions, checked like any other;
#   a growth factor of None is computed from the constant arguments (join, replace, indent).
FILTERS: dict[str, tuple[float | None, str]] = {
    "abs": (1, "const"), "batch": (2, "const"), "capitalize": (1, "const"), "center": (1, "const"),
    "count": (1, "const"), "d": (1, "any"), "default": (1, "any"), "dictsort": (1, "const"),
    "e": (6, "const"), "escape": (6, "const"), "filesizeformat": (1, "const"), "first": (1, "const"),
    "float": (1, "const"), "forceescape": (6, "const"), "format": (1, "any"), "groupby": (2, "const"),
    "indent": (None, "const"), "int": (1, "const"), "items": (2, "const"), "join": (None, "const"),
    "last": (1, "const"), "length": (1, "const"), "list": (3, "const"), "lower": (1, "const"),
    "map": (1, "const"), "max": (1, "const"), "min": (1, "const"), "pprint": (6, "const"),
    "reject": (1, "const"), "rejectattr": (1, "const"), "replace": (None, "const"), "reverse": (1, "const"),
    "round": (1, "const"), "safe": (1, "const"), "select": (1, "const"), "selectattr": (1, "const"),
    "slice": (2, "const"), "sort": (1, "const"), "string": (1, "const"), "striptags": (1, "const"),
    "sum": (1, "const"), "title": (1, "const"), "tojson": (6, "const"), "trim": (1, "const"),
    "truncate": (1, "const"), "unique": (1, "const"), "upper": (1, "const"), "urlencode": (3, "const"),
    "urlize": (4, "const"), "wordcount": (1, "const"), "wordwrap": (2, "const"), "xmlattr": (6, "const"),
}
REFUSED_FILTERS = {
    "attr": "`attr` reads any attribute by name; write the path instead: {{ x.field }}",
    "random": "`random` makes the prompt differ from render to render; pick a value in the program",
}
# Filters that take an attribute name (possibly dotted): (positional index, keyword).
ATTRIBUTE_ARGS = {"map": (None, "attribute"), "sort": (None, "attribute"), "sum": (None, "attribute"),
                  "unique": (None, "attribute"), "min": (None, "attribute"), "max": (None, "attribute"),
                  "groupby": (0, "attribute"), "selectattr": (0, None), "rejectattr": (0, None)}
# Globals jinja2 provides that templates may not use (range and loop are allowed, with rules).
REFUSED_GLOBALS = {
    "lipsum": "`lipsum` generates text of any size",
    "cycler": "use loop.cycle(...) inside a for loop",
    "joiner": "use `loop.first` / `loop.last` inside a for loop",
    "namespace": "namespaces let a loop grow a value without bound; compute it in the program instead",
    "dict": "write a dict literal: {'a': 1}",
    "self": "templates have no blocks to refer to",
    "caller": "templates have no macros",
    "varargs": "templates have no macros", "kwargs": "templates have no macros",
}
SAFE_LOOP_CALLS = {"cycle", "changed"}

HINT_UNSAFE = "templates may only read declared input fields"
HINT_SUBSET = "promptc accepts a small subset of jinja2 (see docs/language.md, Templates)"


@dataclass(frozen=True, slots=True)
class Finding:
    """A refusal at a template line; `needle` is the word to point at on that line (or None)."""

    code: str  # a promptc.codes constant: E105, E210, E218, E219 (or E205 for an unknown test)
    message: str
    lineno: int
    needle: str | None
    hint: str | None = None


class _TooDeep(Exception):
    def __init__(self, lineno: int):
        self.lineno = lineno


_BRACKETS = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
_BLOCK_OPEN = {"if", "for", "filter", "with", "macro", "call", "block", "autoescape", "trans"}
_BLOCK_CLOSE = {"end" + k for k in _BLOCK_OPEN}


def _lex_depth(env, source: str) -> Finding | None:
    """Nesting measured on the token stream (the lexer does not recurse), before jinja's parser does."""
    depth = block = 0
    unary = 0
    prev_block_begin = False
    try:
        tokens = list(env.lex(source))
    except Exception:  # a lexer error: parse() reports it as a syntax error
        return None
    for lineno, kind, value in tokens:
        if kind == "operator" and value in _BRACKETS:
            depth += _BRACKETS[value]
            if depth > MAX_DEPTH:
                return Finding(codes.TEMPLATE_UNBOUNDED, f"template expression nested more than {MAX_DEPTH} levels deep", lineno,
                               value, "split the expression with {% set %}")
        if kind in ("operator", "name") and value in ("not", "-", "+"):
            unary += 1
            if unary > MAX_DEPTH:
                return Finding(codes.TEMPLATE_UNBOUNDED, f"more than {MAX_DEPTH} unary operators in a row", lineno, value,
                               "simplify the expression")
        elif kind != "whitespace":
            unary = 0
        if prev_block_begin and kind == "name":
            if value in _BLOCK_OPEN:
                block += 1
                if block > MAX_BLOCK_DEPTH:
                    return Finding(codes.TEMPLATE_UNBOUNDED, f"template blocks nested more than {MAX_BLOCK_DEPTH} deep", lineno,
                                   value, "flatten the template")
            elif value in _BLOCK_CLOSE:
                block = max(0, block - 1)
        if kind != "whitespace":
            prev_block_begin = kind == "block_begin"
    return None


def check_template(source: str, inputs: Collection[str] = ()) -> tuple[Any, list[Finding]]:
    """Parse `source` with promptc's environment and check it against the subset.

    Returns (tree, findings). The tree is None when the template could not be parsed or is nested too
    deeply to walk; otherwise it is returned even with findings, so the caller can type-check it too.
    `inputs` are the task's input names (they shadow jinja2's globals)."""
    from jinja2 import TemplateSyntaxError

    from promptc.templating import environment

    env = environment()
    deep = _lex_depth(env, source)
    if deep is not None:
        return None, [deep]
    try:
        # Parsed with text after it: compiled prompts put text after every template, and jinja2
        # accepts an unterminated `{#` or `{% raw %}` only at the very end of its input.
        tree = env.parse(source + "\n.")
    except TemplateSyntaxError as e:
        return None, [Finding(codes.TEMPLATE_SYNTAX, f"template syntax error: {e.message}", e.lineno or 1, None)]
    except ValueError:  # jinja2's lexer converts integer literals with int(), which refuses > 4,300 digits
        return None, [Finding(codes.NUMBER_OUT_OF_RANGE, "a number in the template is too long", 1, None,
                              "write numbers of at most a few digits in templates")]
    except RecursionError:
        return None, [Finding(codes.TEMPLATE_UNBOUNDED, "template nested too deeply", 1, None, "flatten the template")]
    walker = _Walker(set(inputs), env)
    try:
        walker.template(tree)
    except _TooDeep as e:
        return None, [Finding(codes.TEMPLATE_UNBOUNDED, f"template nested more than {MAX_DEPTH} levels deep", e.lineno, None,
                              "split the expression with {% set %}")]
    return tree, walker.findings


def is_safe(source: str, inputs: Collection[str] = ()) -> bool:
    """Whether `source` parses and lies inside the accepted subset."""
    tree, findings = check_template(source, inputs)
    return tree is not None and not findings


# ------------------------------------------------------------------ the walk
def _const_value(node) -> tuple[bool, Any]:
    """(True, value) for a constant expression: a literal, a negated number, a list/tuple of constants."""
    from jinja2 import nodes

    if isinstance(node, nodes.Const):
        return True, node.value
    if isinstance(node, nodes.Neg) and isinstance(node.node, nodes.Const) \
            and isinstance(node.node.value, (int, float)) and not isinstance(node.node.value, bool):
        return True, -node.node.value
    if isinstance(node, (nodes.List, nodes.Tuple)):
        vals = []
        for item in node.items:
            ok, v = _const_value(item)
            if not ok:
                return False, None
            vals.append(v)
        return True, vals
    return False, None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_FORMAT_SPEC = re.compile(r"%[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")


class _Walker:
    def __init__(self, inputs: set[str], env):
        self.inputs = inputs
        self.env = env
        self.findings: list[Finding] = []
        self.total = 0.0  # rendered size, in units
        self.static = 1  # product of static iteration counts of the enclosing loops
        self.input_loops = 0  # enclosing loops over non-static iterables
        self.loop_units = 1.0  # multiplier for output inside the enclosing loops
        self.set_amp: dict[str, float] = {}  # {% set %} names -> their size in units
        self.loop_vars: list[dict[str, float]] = []
        self.depth = 0

    def bad(self, code: str, message: str, node, needle: str | None, hint: str | None = None) -> None:
        self.findings.append(Finding(code, message, getattr(node, "lineno", 1) or 1, needle, hint))

    # --- statements
    def template(self, tree) -> None:
        self.body(tree.body)

    def body(self, stmts) -> None:
        for s in stmts:
            self.stmt(s)

    def stmt(self, node) -> None:
        from jinja2 import nodes

        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep(getattr(node, "lineno", 1) or 1)
        try:
            if isinstance(node, nodes.Output):
                for child in node.nodes:
                    if isinstance(child, nodes.TemplateData):
                        continue
                    amp = self.expr(child)
                    self.add_output(amp, child)
            elif isinstance(node, nodes.If):
                self.expr(node.test)
                self.body(node.body)
                for elif_ in node.elif_:
                    self.stmt(elif_)
                self.body(node.else_)
            elif isinstance(node, nodes.For):
                self.for_(node)
            elif isinstance(node, nodes.Assign):
                self.assign(node.target, self.expr(node.node), node)
            elif isinstance(node, nodes.AssignBlock):
                amp = self.block_size(node.body)
                if node.filter is not None:
                    amp = self.filter_chain(node.filter, amp)
                self.assign(node.target, amp, node)
            elif isinstance(node, nodes.FilterBlock):
                inner = self.block_size(node.body)
                self.add_output(self.filter_chain(node.filter, inner) if inner else 0.0, node)
            elif isinstance(node, nodes.Scope):
                self.body(node.body)
            else:
                self.refuse_stmt(node)
        finally:
            self.depth -= 1

    def block_size(self, stmts) -> float:
        """The size in units of what a block renders once (its enclosing loops are counted by the caller)."""
        saved = (self.total, self.loop_units)
        self.total, self.loop_units = 0.0, 1.0
        try:
            self.body(stmts)
            return self.total
        finally:
            self.total, self.loop_units = saved

    def refuse_stmt(self, node) -> None:
        from jinja2 import nodes

        words = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "import",
                 nodes.Extends: "extends", nodes.Block: "block", nodes.Macro: "macro", nodes.CallBlock: "call",
                 nodes.With: "with", nodes.ExprStmt: "do", nodes.ScopedEvalContextModifier: "autoescape",
                 nodes.EvalContextModifier: "autoescape", nodes.Continue: "continue", nodes.Break: "break"}
        word = next((w for cls, w in words.items() if isinstance(node, cls)), type(node).__name__.lower())
        hint = {"include": "a compiled prompt must stand alone: paste the text into the program",
                "import": "a compiled prompt must stand alone: paste the text into the program",
                "extends": "a compiled prompt must stand alone: paste the text into the program",
                "macro": "macros can recurse without bound; write the text out, or loop with {% for %}",
                "call": "macros can recurse without bound; write the text out, or loop with {% for %}"}.get(
            word, HINT_SUBSET)
        self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, f"'{{% {word} %}}' is not allowed in templates", node, word, hint)

    def assign(self, target, amp: float, node) -> None:
        from jinja2 import nodes

        if isinstance(target, nodes.Name):
            self.set_amp[target.name] = max(self.set_amp.get(target.name, 0.0), amp)
            return
        if isinstance(target, nodes.Tuple) and all(isinstance(t, nodes.Name) for t in target.items):
            for t in target.items:
                assert isinstance(t, nodes.Name)  # checked just above
                self.set_amp[t.name] = max(self.set_amp.get(t.name, 0.0), amp)
            return
        if isinstance(target, nodes.NSRef):
            self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "assigning to an attribute ({% set ns.x = ... %}) is not allowed in templates", node,
                     target.attr, REFUSED_GLOBALS["namespace"])
            return
        self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "{% set %} assigns to a plain name in templates", node, None, HINT_SUBSET)

    def for_(self, node) -> None:
        from jinja2 import nodes

        if node.recursive:
            self.bad(codes.TEMPLATE_UNBOUNDED, "recursive loops are not allowed in templates", node, "recursive",
                     "a recursive loop can run without bound; loop over a fixed depth instead")
        count = self.static_count(node.iter)
        item_amp = self.expr(node.iter)
        if isinstance(node.iter, nodes.Call):
            item_amp = 1.0  # range(...) yields numbers
        saved = (self.static, self.input_loops, self.loop_units)
        if count is not None:
            self.static *= max(count, 1)
            self.loop_units *= max(count, 1)
            if self.static > MAX_ITERATIONS:
                self.bad(codes.TEMPLATE_UNBOUNDED, f"nested loops run more than {MAX_ITERATIONS:,} times", node, "for",
                         f"keep the product of the loop sizes at or below {MAX_ITERATIONS:,}")
        else:
            self.input_loops += 1
            if self.input_loops > MAX_INPUT_LOOPS:
                self.bad(codes.TEMPLATE_UNBOUNDED, f"loops over input values nest more than {MAX_INPUT_LOOPS} deep", node, "for",
                         "a prompt's size must stay proportional to its inputs; flatten the loops")
        scope: dict[str, float] = {}
        for n in node.target.find_all(nodes.Name):
            scope[n.name] = max(item_amp, 1.0)
        self.loop_vars.append(scope)
        try:
            if node.test is not None:
                self.expr(node.test)
            self.body(node.body)
        finally:
            self.loop_vars.pop()
            self.static, self.input_loops, self.loop_units = saved
        self.body(node.else_)

    def static_count(self, it) -> int | None:
        """Iterations of a loop whose size the template fixes (range(...) or a literal), else None."""
        from jinja2 import nodes

        if isinstance(it, nodes.Call) and isinstance(it.node, nodes.Name) and it.node.name == "range" \
                and "range" not in self.inputs:
            vals = [_const_value(a) for a in it.args]
            if all(ok and isinstance(v, int) and not isinstance(v, bool) for ok, v in vals) and vals \
                    and not it.kwargs and len(vals) <= 3:
                try:
                    return len(range(*[v for _, v in vals]))
                except (ValueError, OverflowError):
                    return None
            return None
        if isinstance(it, (nodes.List, nodes.Tuple)):
            return len(it.items)
        if isinstance(it, nodes.Dict):
            return len(it.items)
        if isinstance(it, nodes.Const) and isinstance(it.value, str):
            return len(it.value)
        return None

    def add_output(self, amp: float, node) -> None:
        self.add_output_units(amp * self.loop_units, node)

    def add_output_units(self, units: float, node) -> None:
        before = self.total
        self.total += units
        if before <= AMPLIFICATION < self.total:
            self.bad(codes.TEMPLATE_UNBOUNDED, "the template can render output far larger than its inputs", node, None,
                     "it multiplies its inputs or constants (loops, `*`, filters such as replace, join or "
                     f"indent) by more than {AMPLIFICATION:,}; reduce the repetition")

    # --- expressions: each returns the value's size in units (1 = an input value or a constant)
    def expr(self, node) -> float:
        from jinja2 import nodes

        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep(getattr(node, "lineno", 1) or 1)
        try:
            if isinstance(node, (nodes.Const, nodes.TemplateData)):
                return 1.0
            if isinstance(node, nodes.Name):
                return self.name(node)
            if isinstance(node, (nodes.Getattr, nodes.Getitem)):
                return self.path(node)
            if isinstance(node, (nodes.List, nodes.Tuple)):
                return sum(self.expr(i) for i in node.items) or 1.0
            if isinstance(node, nodes.Dict):
                return sum(self.expr(p.key) + self.expr(p.value) for p in node.items) or 1.0
            if isinstance(node, nodes.Concat):
                return sum(self.expr(n) for n in node.nodes)
            if isinstance(node, nodes.Add):
                return self.expr(node.left) + self.expr(node.right)
            if isinstance(node, nodes.Sub):
                self.expr(node.left)
                self.expr(node.right)
                return 1.0
            if isinstance(node, nodes.Mul):
                return self.mul(node)
            if isinstance(node, (nodes.Div, nodes.FloorDiv, nodes.Mod)):
                return self.div(node)
            if isinstance(node, nodes.Pow):
                self.bad(codes.TEMPLATE_UNBOUNDED, "'**' is not allowed in templates", node, "**",
                         "powers can produce numbers of any size; compute the value in the program")
                return 1.0
            if isinstance(node, (nodes.And, nodes.Or)):
                return max(self.expr(node.left), self.expr(node.right))
            if isinstance(node, (nodes.Not, nodes.Neg, nodes.Pos)):
                self.expr(node.node)
                return 1.0
            if isinstance(node, nodes.Compare):
                self.expr(node.expr)
                for op in node.ops:
                    self.expr(op.expr)
                return 1.0
            if isinstance(node, nodes.CondExpr):
                self.expr(node.test)
                a = self.expr(node.expr1)
                b = self.expr(node.expr2) if node.expr2 is not None else 0.0
                return max(a, b)
            if isinstance(node, nodes.Filter):
                return self.filter_(node)
            if isinstance(node, nodes.Test):
                self.expr(node.node)
                self.const_args(node, "test", allow_any=True)
                return 1.0
            if isinstance(node, nodes.Call):
                return self.call(node)
            if isinstance(node, nodes.Slice):
                self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "a slice is only allowed inside [...]", node, ":", HINT_SUBSET)
                return 1.0
            self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, f"{type(node).__name__} expressions are not allowed in templates", node, None,
                     HINT_SUBSET)
            return 1.0
        finally:
            self.depth -= 1

    def name(self, node) -> float:
        n = node.name
        for scope in reversed(self.loop_vars):
            if n in scope:
                return scope[n]
        if n in self.set_amp:
            return max(self.set_amp[n], 1.0)
        if n in REFUSED_GLOBALS and n not in self.inputs:
            self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, f"'{n}' is not available in templates", node, n, REFUSED_GLOBALS[n])
        if n == "loop" and n not in self.inputs and not self.loop_vars:
            self.bad(codes.UNDECLARED_VARIABLE, "'loop' is only defined inside a {% for %} loop", node, n,
                     "move it inside a {% for %} ... {% endfor %} block")
        if n == "range" and n not in self.inputs:
            self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "range can only be called: range(n) with constant bounds", node, n, HINT_SUBSET)
        if n.startswith("_"):
            self.bad(codes.UNSAFE_TEMPLATE_ACCESS, f"access to '{n}' is not allowed in templates", node, n, HINT_UNSAFE)
        return 1.0

    def path(self, node) -> float:
        """a.b[0].c: every step has a constant, public key, and the chain starts at a name."""
        from jinja2 import nodes

        steps = []
        cur = node
        while isinstance(cur, (nodes.Getattr, nodes.Getitem)):
            steps.append(cur)
            cur = cur.node
        ok = True
        for step in reversed(steps):
            if isinstance(step, nodes.Getattr):
                if step.attr.startswith("_"):
                    self.bad(codes.UNSAFE_TEMPLATE_ACCESS, f"access to '{step.attr}' is not allowed in templates", step, step.attr,
                             HINT_UNSAFE)
                    ok = False
                continue
            if not self.subscript(step):
                ok = False
        if not isinstance(cur, nodes.Name):
            what = {nodes.Call: "a call", nodes.Filter: "a filter result", nodes.List: "a list literal",
                    nodes.Tuple: "a tuple literal", nodes.Dict: "a dict literal", nodes.Const: "a constant"}
            kind = next((w for cls, w in what.items() if isinstance(cur, cls)), "an expression")
            needle = steps[-1].attr if isinstance(steps[-1], nodes.Getattr) else None
            self.bad(codes.UNSAFE_TEMPLATE_ACCESS, f"attribute or [...] access on {kind} is not allowed in templates", steps[-1],
                     needle, "templates may only read paths that start at an input or loop variable; "
                                 "use {% set v = ... %} first, then v.field")
            self.expr(cur)
            return 1.0
        base = self.name(cur)
        return base if ok else 1.0

    def subscript(self, step) -> bool:
        from jinja2 import nodes

        arg = step.arg
        if isinstance(arg, nodes.Slice):
            for part, what in ((arg.start, "start"), (arg.stop, "stop"), (arg.step, "step")):
                if part is None:
                    continue
                ok, v = _const_value(part)
                if not ok or not isinstance(v, int) or isinstance(v, bool):
                    self.bad(codes.UNSAFE_TEMPLATE_ACCESS, f"a slice {what} in a template must be a constant integer", step, None,
                             HINT_SUBSET)
                    return False
                if what == "step" and v == 0:
                    self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "a slice step cannot be zero", step, None, None)
                    return False
            return True
        ok, v = _const_value(arg)
        if not ok:
            self.bad(codes.UNSAFE_TEMPLATE_ACCESS, "a [...] key in a template must be a constant", step, None,
                     "a computed key can name anything, e.g. x['_' ~ '_class__']; write the key itself: "
                     "x['field'] or x[0], or loop over the list with {% for %}")
            return False
        if isinstance(v, str) and v.startswith("_"):
            self.bad(codes.UNSAFE_TEMPLATE_ACCESS, f"access to '{v}' is not allowed in templates", step, v, HINT_UNSAFE)
            return False
        if not (isinstance(v, (str, int)) and not isinstance(v, bool)):
            self.bad(codes.UNSAFE_TEMPLATE_ACCESS, "a [...] key in a template must be a string or an integer", step, None, HINT_SUBSET)
            return False
        return True

    def mul(self, node) -> float:
        from jinja2 import nodes

        lok, lv = _const_value(node.left)
        rok, rv = _const_value(node.right)
        if lok and rok:
            if (_is_number(lv) and abs(lv) > MAX_REPEAT and not (_is_number(rv) and abs(rv) <= 1)) or \
                    (_is_number(rv) and abs(rv) > MAX_REPEAT and not (_is_number(lv) and abs(lv) <= 1)):
                self.bad(codes.TEMPLATE_UNBOUNDED, f"'*' repeats at most {MAX_REPEAT} times in templates", node, "*",
                         "write the value in the program")
            n = max(abs(lv) if _is_number(lv) else 1, abs(rv) if _is_number(rv) else 1)
            return float(min(n, MAX_REPEAT))
        count, other = (lv, node.right) if lok and _is_number(lv) else (rv, node.left) if rok and _is_number(rv) \
            else (None, None)
        if count is None:
            self.bad(codes.TEMPLATE_UNBOUNDED, "'*' needs a constant count in templates (such as x * 3)", node, "*",
                     f"repetition by a value from the inputs is unbounded; use a constant up to {MAX_REPEAT}")
            self.expr(node.left)
            self.expr(node.right)
            return 1.0
        if isinstance(other, nodes.Mul):
            self.bad(codes.TEMPLATE_UNBOUNDED, "'*' cannot be chained in templates", node, "*",
                     f"use one constant count up to {MAX_REPEAT}")
        if abs(count) > MAX_REPEAT:
            self.bad(codes.TEMPLATE_UNBOUNDED, f"'*' repeats at most {MAX_REPEAT} times in templates", node, "*",
                     f"{count} is too many; write the value in the program")
        amp = self.expr(other)
        return amp * max(1.0, min(float(abs(count)), float(MAX_REPEAT)))

    def div(self, node) -> float:
        from jinja2 import nodes

        op = {nodes.Div: "/", nodes.FloorDiv: "//", nodes.Mod: "%"}[type(node)]
        rok, rv = _const_value(node.right)
        if not (rok and _is_number(rv)) or rv == 0:
            self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, f"'{op}' needs a non-zero constant on its right in templates", node, op,
                     "a value from the inputs could be zero (or, for %, a format string); "
                     "for even/odd use the tests: loop.index is even")
            self.expr(node.right)
        if op == "%":
            lok, lv = _const_value(node.left)
            left_is_loop = isinstance(node.left, nodes.Getattr) and isinstance(node.left.node, nodes.Name) \
                and node.left.node.name == "loop"
            if not ((lok and _is_number(lv)) or left_is_loop):
                self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "'%' is only allowed on numbers (such as loop.index % 2) in templates", node,
                         "%", "string formatting with % can pad to any width; use the format filter "
                              "with a constant format string")
        self.expr(node.left)
        return 1.0

    def call(self, node) -> float:
        from jinja2 import nodes

        f = node.node
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "*args and **kwargs are not allowed in templates", node, None, HINT_SUBSET)
        if isinstance(f, nodes.Name) and f.name == "range" and "range" not in self.inputs:
            vals = [_const_value(a) for a in node.args]
            if node.kwargs or not vals or len(vals) > 3 or \
                    not all(ok and isinstance(v, int) and not isinstance(v, bool) for ok, v in vals):
                self.bad(codes.TEMPLATE_UNBOUNDED, "range(...) takes 1 to 3 constant integers in templates", node, "range",
                         f"a loop runs at most {MAX_RANGE} times; loop over an input list to follow its size")
                return 1.0
            args = [v for _, v in vals]
            if len(args) == 3 and args[2] == 0:
                self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "range() step cannot be zero", node, "range")
                return 1.0
            r = range(*args)
            # counted in Python ints: len() overflows a C ssize_t for a range of 2**63 items or more
            n = max(0, (r.stop - r.start + r.step - (1 if r.step > 0 else -1)) // r.step)
            if n > MAX_RANGE:
                self.bad(codes.TEMPLATE_UNBOUNDED, f"range(...) of {n:,} items; at most {MAX_RANGE:,} in templates", node, "range",
                         "a prompt does not need more; loop over an input list to follow its size")
            return float(max(1, min(n, MAX_RANGE)))
        if isinstance(f, nodes.Getattr) and isinstance(f.node, nodes.Name) and f.node.name == "loop" \
                and f.attr in SAFE_LOOP_CALLS and "loop" not in self.inputs:
            if not self.loop_vars:
                self.name(f.node)
            return max([self.expr(a) for a in node.args] + [1.0])
        if isinstance(f, (nodes.Getattr, nodes.Getitem)):
            self.path(f)  # an unsafe name on the way is the first thing to report
        else:
            self.expr(f)
        needle = f.attr if isinstance(f, nodes.Getattr) else f.name if isinstance(f, nodes.Name) else None
        self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "calling functions or methods is not allowed in templates", node,
                 needle, "use a filter instead: {{ x | upper }}, {{ xs | join(', ') }}; the only calls are "
                         "range(n), loop.cycle(...) and loop.changed(...)")
        for a in node.args:
            self.expr(a)
        for k in node.kwargs:
            self.expr(k.value)
        return 1.0

    # --- filters
    def filter_(self, node) -> float:
        amp = self.expr(node.node) if node.node is not None else 1.0
        return self.apply_filter(node, node.name, amp)

    def filter_chain(self, node, inner: float) -> float:
        """A {% filter %} block or `{% set x | f %}`: node is a Filter whose innermost subject is None."""
        from jinja2 import nodes

        chain = []
        cur = node
        while isinstance(cur, nodes.Filter):
            chain.append(cur)
            cur = cur.node
        amp = inner
        for f in reversed(chain):
            amp = self.apply_filter(f, f.name, amp)
        return amp

    def apply_filter(self, node, name: str, amp: float, args=None, kwargs=None) -> float:
        args = node.args if args is None else args
        kwargs = node.kwargs if kwargs is None else kwargs
        if name in REFUSED_FILTERS:
            self.bad(codes.UNSAFE_TEMPLATE_ACCESS if name == "attr" else codes.TEMPLATE_OUTSIDE_SUBSET, f"the '{name}' filter is not allowed in templates",
                     node, name, REFUSED_FILTERS[name])
            return amp
        spec = FILTERS.get(name)
        if spec is None:
            if name in self.env.filters:
                self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, f"the '{name}' filter is not allowed in templates", node, name, HINT_SUBSET)
            return amp  # an unknown filter is the type checker's E205
        if getattr(node, "dyn_args", None) is not None or getattr(node, "dyn_kwargs", None) is not None:
            self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "*args and **kwargs are not allowed in templates", node, name, HINT_SUBSET)
        factor, rule = spec
        if rule == "any":
            extra = sum(self.expr(a) for a in args) + sum(self.expr(k.value) for k in kwargs)
            if name == "format":
                self.format_string(node)
            return amp * (factor or 1) + extra
        values = self.const_args(node, name, args=args, kwargs=kwargs)
        if values is None:
            return amp
        pos, kw = values
        if name in ATTRIBUTE_ARGS:
            self.attribute_args(node, name, pos, kw)
        if name in ("select", "reject", "selectattr", "rejectattr"):
            i = 1 if name.endswith("attr") else 0
            if len(pos) > i and pos[i] not in self.env.tests:
                self.bad(codes.UNKNOWN_FUNCTION, f"unknown test '{pos[i]}'", node, str(pos[i]))
        if name == "map" and pos:
            inner = pos[0]
            if not isinstance(inner, str) or inner in REFUSED_FILTERS or inner == "map" or inner not in FILTERS:
                self.bad(codes.UNSAFE_TEMPLATE_ACCESS if inner == "attr" else codes.TEMPLATE_OUTSIDE_SUBSET,
                         f"map('{inner}') is not allowed in templates", node, str(inner),
                         "map may apply a filter from the accepted list, or read a public attribute: "
                         "map(attribute='name')")
                return amp
            return self.apply_filter(node, inner, amp, args=args[1:], kwargs=kwargs)
        if name in ("batch", "slice") and pos and (not isinstance(pos[0], int) or pos[0] < 1):
            self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, f"{name}() needs a positive count", node, name)
        if factor is None:
            factor = self.growth(name, pos, kw)
        return amp * factor

    def growth(self, name: str, pos: list, kw: dict) -> float:
        if name == "join":
            sep = pos[0] if pos else kw.get("d", "")
            return 1.0 + (len(sep) if isinstance(sep, str) else 1.0)
        if name == "replace":
            old = pos[0] if pos else kw.get("old", "")
            new = pos[1] if len(pos) > 1 else kw.get("new", "")
            if not isinstance(old, str) or not isinstance(new, str):
                return 1.0
            return float(len(new) + 1) if old == "" else max(1.0, math.ceil(len(new) / len(old)))
        if name == "indent":
            width = pos[0] if pos else kw.get("width", 4)
            return 1.0 + (len(width) if isinstance(width, str) else float(width) if _is_number(width) else 4.0)
        return 1.0

    def const_args(self, node, name: str, args=None, kwargs=None, allow_any: bool = False):
        """Check that a filter's (or test's) arguments are constants; returns (positional, keyword)."""
        args = node.args if args is None else args
        kwargs = node.kwargs if kwargs is None else kwargs
        pos: list = []
        kw: dict = {}
        good = True
        for a in args:
            ok, v = _const_value(a)
            if not ok:
                if allow_any:
                    self.expr(a)
                    continue
                self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, f"the arguments of '{name}' must be constants in templates", node, name,
                         "a size or name taken from the inputs is unbounded; write the value itself")
                good = False
                continue
            pos.append(v)
        for k in kwargs:
            ok, v = _const_value(k.value)
            if not ok:
                if allow_any:
                    self.expr(k.value)
                    continue
                self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, f"the arguments of '{name}' must be constants in templates", node, name,
                         "a size or name taken from the inputs is unbounded; write the value itself")
                good = False
                continue
            kw[k.key] = v
        for v in (*pos, *kw.values()):
            if _is_number(v) and abs(v) > MAX_ARG:
                self.bad(codes.TEMPLATE_UNBOUNDED, f"'{name}' argument {v} is too large for a template (at most {MAX_ARG})", node,
                         name, "widths and counts in templates are bounded so rendering stays small")
                good = False
        return (pos, kw) if good else None

    def attribute_args(self, node, name: str, pos: list, kw: dict) -> None:
        index, key = ATTRIBUTE_ARGS[name]
        values = []
        if key is not None and key in kw:
            values.append(kw[key])
        if index is not None and len(pos) > index:
            values.append(pos[index])
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                continue
            if not isinstance(v, str):
                self.bad(codes.UNSAFE_TEMPLATE_ACCESS, f"the attribute name given to '{name}' must be a string", node, name, HINT_UNSAFE)
                continue
            for part in v.split("."):
                if part.startswith("_"):
                    self.bad(codes.UNSAFE_TEMPLATE_ACCESS, f"access to '{part}' is not allowed in templates", node, name, HINT_UNSAFE)

    def format_string(self, node) -> None:
        """`"%-10s" | format(x)`: the format string is a constant whose widths are bounded."""
        from jinja2 import nodes

        subject = node.node
        if not (isinstance(subject, nodes.Const) and isinstance(subject.value, str)):
            self.bad(codes.TEMPLATE_OUTSIDE_SUBSET, "the format filter needs a constant format string in templates", node, "format",
                     'write it as "%s: %d" | format(a, b)')
            return
        for m in _FORMAT_SPEC.finditer(subject.value):
            for part in (m.group(1), m.group(2)):
                if part == "*":
                    self.bad(codes.TEMPLATE_UNBOUNDED, "a '*' width in a format string is not allowed in templates", node, "format",
                             "write the width as a number")
                elif part and (len(part) > len(str(MAX_ARG)) or int(part) > MAX_ARG):  # int() refuses 4,300+ digits
                    self.bad(codes.TEMPLATE_UNBOUNDED, f"format width {part[:12]}{'...' if len(part) > 12 else ''} is too large for a template (at most {MAX_ARG})",
                             node, "format")
