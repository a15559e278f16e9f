"""Check stage, templates: jinja2 `system` and `prompt` texts against the task's declared inputs.

Every variable, attribute path, filter and test is checked on the template's syntax tree, and
each mistake is located inside the triple-quoted text in the .prompt source.
"""

from __future__ import annotations

import re
from typing import Any

from promptc import ast, codes, ir
from promptc.check.context import Context
from promptc.check.template_types import not_null_paths as _not_null_paths
from promptc.check.template_types import path_text as _path_text
from promptc.diagnostics import did_you_mean
from promptc.source import Span

# Names jinja2 provides to every template; a template may use them without declaring them.
_JINJA_GLOBALS = {"loop", "range", "namespace", "cycler", "joiner", "dict", "lipsum"}


def check_template(cx: Context, lit: ast.Literal, env: dict[str, ir.Type]) -> Any:
    """Check one template; returns its jinja2 syntax tree (None when it does not parse), so callers that
    need more from it (`names`) reuse this one parse."""
    from jinja2 import nodes

    from promptc.template_safety import check_template as check_safety
    from promptc.templating import environment

    jenv = environment()
    # The safety walk parses the template, bounds its nesting and refuses everything outside the
    # accepted subset, so compiled prompts are safe to render in a plain jinja2 Environment.
    assert isinstance(lit.value, str)  # the parser builds template literals from string tokens only
    tree, findings = check_safety(lit.value, inputs=env)
    for f in findings:
        span = syntax_error_span(lit) if f.code == codes.TEMPLATE_SYNTAX else None
        cx.d.error(f.code, f.message, span or template_span(lit, f.lineno, f.needle), hint=f.hint)
    if tree is None:
        return None
    bound: set[str] = set(_JINJA_GLOBALS)
    for n in tree.find_all(nodes.Name):
        if n.ctx in ("store", "param"):
            bound.add(n.name)
    scope: dict[str, ir.Type | None] = {**env}
    _TemplateWalker(cx, lit, jenv).visit(tree, scope, bound)
    _check_types(cx, lit, jenv, tree, env, bound - _JINJA_GLOBALS)
    return tree


def _check_types(cx: Context, lit: ast.Literal, jenv, tree, env: dict[str, ir.Type], stored: set[str]) -> None:
    """Type every expression (template_types) and report those that may raise for a valid input (E315).
    A line that already has an error (a name, a field, a null read, the subset) is not reported twice."""
    from promptc.check.template_types import Typer

    src = lit.span.source

    def report(message: str, lineno: int, needle: str | None, hint: str | None, code: str = codes.TEMPLATE_TYPE) -> None:
        span = template_span(lit, lineno, needle)
        if any(d.is_error and d.span is not None and d.span.source is src and d.span.line == span.line
               for d in cx.d.items):
            return
        cx.d.error(code, message, span, hint=hint)

    Typer(report, env, stored, jenv).template(tree)
    # jinja2 refuses some parsed templates only when it compiles them ({% for loop in xs %})
    from jinja2 import TemplateSyntaxError

    try:
        jenv.compile(tree)  # the tree already parsed (as lit.value + "\n."); jinja2 generates its code
    except TemplateSyntaxError as e:
        report(f"template error: {e.message}", e.lineno or 1, "loop" if "loop" in (e.message or "") else None,
               "rename the variable" if "loop" in (e.message or "") else None, codes.TEMPLATE_SYNTAX)
    except Exception as e:  # noqa: BLE001 - a limit of Python's compiler: the template could never render
        report(f"template cannot be compiled: {type(e).__name__}: {e}", 1, None, "simplify the template",
               codes.TEMPLATE_SYNTAX)


def names(tree: Any) -> set[str]:
    """Every name a parsed template mentions (empty for None: a template that did not parse is reported
    by `check_template`)."""
    from jinja2 import nodes

    return set() if tree is None else {n.name for n in tree.find_all(nodes.Name)}


class _TemplateWalker:
    """Walks a jinja AST and checks names and attribute paths against the declared input types."""

    def __init__(self, cx: Context, lit: ast.Literal, jenv):
        self.cx = cx
        self.lit = lit
        self.jenv = jenv

    def visit(self, node, scope: dict[str, ir.Type | None], bound: set[str]) -> None:
        from jinja2 import nodes

        if isinstance(node, nodes.For):
            self._visit_for(node, scope, bound)
            return
        if isinstance(node, (nodes.If, nodes.CondExpr)):
            self._visit_guarded(node, scope, bound)
            return
        if isinstance(node, nodes.And):  # `x and x.name`: the right side runs only where x holds
            self.visit(node.left, scope, bound)
            self.visit(node.right, {**scope, **{_NARROWED + p: None for p in _not_null_paths(node.left)}}, bound)
            return
        if isinstance(node, nodes.Filter) and node.name in ("default", "d") and node.node is not None:
            # `x.name | default('')` renders when x is null: the path may read through nulls
            self.type_of(node.node, {**scope, _DEFAULTED: None}, bound, report=True)
            for child in (*node.args, *(k.value for k in node.kwargs)):
                self.visit(child, scope, bound)
            return
        if isinstance(node, (nodes.Name, nodes.Getattr, nodes.Getitem)):
            self.type_of(node, scope, bound, report=True)
            if isinstance(node, nodes.Getitem):
                self.visit(node.arg, scope, bound)
            return
        if isinstance(node, nodes.Filter) and node.name not in self.jenv.filters:
            self._err(codes.UNKNOWN_FUNCTION, f"unknown filter '{node.name}'", node.lineno, node.name,
                      hint=did_you_mean(node.name, self.jenv.filters))
        if isinstance(node, nodes.Test) and node.name not in self.jenv.tests:
            self._err(codes.UNKNOWN_FUNCTION, f"unknown test '{node.name}'", node.lineno, node.name,
                      hint=did_you_mean(node.name, self.jenv.tests))
        for child in node.iter_child_nodes():
            self.visit(child, scope, bound)

    def _visit_for(self, node, scope: dict[str, ir.Type | None], bound: set[str]) -> None:
        """`{% for x in xs %}`: inside the loop, `x` has the item type of `xs` when that is a list."""
        from jinja2 import nodes

        self.visit(node.iter, scope, bound)
        item_t = None
        it = self.type_of(node.iter, scope, bound, report=False)
        looped = node.iter
        if isinstance(looped, nodes.Filter) and looped.name in ("default", "d") and looped.node is not None and \
                not any(isinstance(a, nodes.Const) and a.value is True for a in (*looped.args[1:], *(
                    k.value for k in looped.kwargs if k.key == "boolean"))):
            looped = looped.node  # default() replaces undefined values, not null ones
        path = _path_text(looped)
        null_t = self.type_of(looped, scope, bound, report=False)
        if isinstance(null_t, ir.OptionalT) and path is not None and _NARROWED + path not in scope:
            it = null_t
            self._err(codes.FIELD_OF_NULLABLE, f"'{path}' may be null ({it}), and a loop over null fails when "
                      "the prompt is rendered", node.lineno, path.split(".")[-1].split("[")[0],
                      hint=f"guard it: {{% if {path} %}}{{% for ... in {path} %}}...{{% endfor %}}{{% endif %}}, "
                           f"or loop over a fallback: {path} or []")
        if it is not None:
            base = ir.strip_optional(it)
            item_t = base.item if isinstance(base, ir.ListT) else None
        inner = dict(scope)
        if isinstance(node.target, nodes.Name):
            inner[node.target.name] = item_t
        for n in node.target.find_all(nodes.Name):  # tuple unpacking: element types unknown
            inner[n.name] = None
        inner["loop"] = None
        for child in (*node.body, *node.else_):
            self.visit(child, inner, bound)
        if node.test is not None:
            self.visit(node.test, inner, bound)

    def _visit_guarded(self, node, scope: dict[str, ir.Type | None], bound: set[str]) -> None:
        """`{% if x %}...{% else %}...{% endif %}` and `a if x else b`: where the test holds, the paths it
        tests are not null (E314 reports a field read through a value that may be null)."""
        from jinja2 import nodes

        self.visit(node.test, scope, bound)
        inner = dict(scope)
        for path in _not_null_paths(node.test):
            inner[_NARROWED + path] = None
        if isinstance(node, nodes.If):
            for child in node.body:
                self.visit(child, inner, bound)
            for child in (*node.elif_, *node.else_):
                self.visit(child, scope, bound)
        else:
            self.visit(node.expr1, inner, bound)
            if node.expr2 is not None:
                self.visit(node.expr2, scope, bound)

    def type_of(self, node, scope, bound, report: bool) -> ir.Type | None:
        """The IR type of a name/attribute chain, or None when it cannot be known statically."""
        from jinja2 import nodes

        if isinstance(node, nodes.Name):
            return self._name_type(node, scope, bound, report)
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            return self._member_type(node, scope, bound, report)
        return None

    def _name_type(self, node, scope, bound, report: bool) -> ir.Type | None:
        if node.ctx != "load":
            return None
        if node.name in scope:
            return scope[node.name]
        if node.name in bound:
            return None
        if report:
            names = [k for k in scope if k != "output"]
            self._err(codes.UNDECLARED_VARIABLE, f"undeclared variable '{node.name}'", node.lineno, node.name,
                      hint=did_you_mean(node.name, names, "the task's inputs are") if names else
                      "the task has no inputs")
        return None

    def _member_type(self, node, scope, bound, report: bool) -> ir.Type | None:
        from jinja2 import nodes

        if isinstance(node, nodes.Getattr):
            key: str | int | None = node.attr
        else:
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        if isinstance(key, str) and key.startswith("_"):
            if report:
                self._err(codes.UNSAFE_TEMPLATE_ACCESS, f"access to '{key}' is not allowed in templates", node.lineno, key,
                          hint="templates may only read declared input fields")
            return None
        base_t = self.type_of(node.node, scope, bound, report)
        if base_t is None or key is None:
            return None
        if isinstance(base_t, ir.OptionalT) and report and _DEFAULTED not in scope:
            path = _path_text(node.node)
            if path is not None and _NARROWED + path not in scope:
                read = f"{path}.{key}" if isinstance(node, nodes.Getattr) else f"{path}[{key!r}]"
                self._err(codes.FIELD_OF_NULLABLE, f"'{path}' may be null ({base_t}), so '{read}' may "
                          "not exist when the prompt is rendered", node.lineno, str(key),
                          hint=f"guard it: {{% if {path} %}}...{{% endif %}}, or give a fallback: "
                               f"{{{{ {read} | default('') }}}}")
        base = ir.strip_optional(base_t)
        if isinstance(base, ir.RecordT) and isinstance(key, str):
            ft = base.field(key)
            if ft is None and report:
                self._err(codes.UNKNOWN_FIELD, f"unknown field '{key}' in {base.name}", node.lineno, key,
                          hint=did_you_mean(key, base.field_names, f"fields of {base.name}"))
            return ft
        if isinstance(base, ir.ListT) and isinstance(key, int):
            return base.item
        if isinstance(base, ir.AnyT):
            return None
        if report:
            hint = "use a filter instead, e.g. {{ x | upper }}" if isinstance(base, ir.StrT) else None
            self._err(codes.UNKNOWN_FIELD, f"{base} has no field '{key}'", node.lineno, str(key), hint=hint)
        return None

    def _err(self, code: str, msg: str, lineno: int, needle: str, hint: str | None = None) -> None:
        self.cx.d.error(code, msg, template_span(self.lit, lineno, needle), hint=hint)


_NARROWED = "\0not-null:"  # scope keys that no template name can clash with
_DEFAULTED = "\0defaulted"


def template_span(lit: ast.Literal, lineno: int, needle: str | None) -> Span:
    """Map a template line (1-based) and a word on it to a span in the .prompt source."""
    src = lit.span.source
    if lit.line_origins:
        idx = min(max(lineno - 1, 0), len(lit.line_origins) - 1)
        line, col = lit.line_origins[idx]
    else:
        line, col = lit.span.line, lit.span.col + 1
    text = src.line_text(line)
    if needle:
        m = re.search(r"(?<![\w.])" + re.escape(needle) + r"(?!\w)", text[col - 1:]) or \
            re.search(re.escape(needle), text[col - 1:])
        if m:
            return src.span_at(line, col + m.start(), len(needle))
    return src.span_at(line, col, max(1, len(text) - col + 1))


_OPENER = re.compile(r"\{([{%#])-?\s*(\w*)")
_BLOCKS = {"for", "if", "macro", "call", "filter", "block", "with", "autoescape", "raw"}


def syntax_error_place(text: str) -> tuple[int, int] | None:
    """Where jinja2 stops on a template that does not parse, as (offset into `text`, length); None when
    it parses or the place cannot be told. jinja2's errors carry only a line, so the template is parsed
    again here (on the error path only) with the token stream's positions recorded: the token the
    parser stopped at, the first character the lexer refused, or, when the text ends too soon, the
    opening tag that was never closed."""
    from jinja2 import TemplateSyntaxError
    from jinja2.lexer import TokenStream
    from jinja2.parser import Parser

    from promptc.templating import environment

    env = environment()
    source = text + "\n."  # as template_safety parses it
    places: dict[int, tuple[int, int]] = {}  # id(wrapped token) -> (offset, length)
    kept: list = []  # the wrapped tokens, so their ids stay unique
    state = {"pos": 0, "start": 0, "len": 0, "lexed": True, "found": True}

    def raw():
        try:
            for lineno, kind, value in env.lexer.tokeniter(source, None):
                i = source.find(value, state["pos"]) if value else state["pos"]
                state["found"] &= i >= 0
                state["start"], state["len"] = max(i, state["pos"]), len(value)
                state["pos"] = state["start"] + len(value)
                yield lineno, kind, value
        except TemplateSyntaxError:
            state["lexed"] = False
            raise

    def wrapped():
        for tok in env.lexer.wrap(raw()):
            places[id(tok)] = (state["start"], state["len"])
            kept.append(tok)
            yield tok

    try:
        parser = Parser(env, source)
        parser.stream = TokenStream(wrapped(), None, None)
        parser.parse()
        return None
    except TemplateSyntaxError as e:
        message = e.message or ""
    if not state["found"]:
        return None  # the lexer's text and ours differ (newline forms): only the line is known
    if message.startswith("Missing end of"):  # a comment or raw block that never closes
        return _last_opener(text, "#" if "comment" in message else "%")
    if not state["lexed"]:  # the lexer refused the first character after the last token it read
        rest = source[state["pos"]:]
        return state["pos"] + len(rest) - len(rest.lstrip()), 1
    at, n = places.get(id(parser.stream.current), (-1, 0))
    if 0 <= at < len(text):
        return at, max(1, n)
    return _unclosed_block(text, message) or _last_opener(text, "{%#")


def _unclosed_block(text: str, message: str) -> tuple[int, int] | None:
    """The innermost block jinja2 names as unclosed (`{% for`), found by pairing block tags."""
    m = re.search(r"innermost block that needs to be closed is '(\w+)'", message)
    if not m:
        return None
    stack: list[tuple[str, re.Match]] = []
    for o in _OPENER.finditer(text):
        tag = o.group(2)
        if o.group(1) != "%":
            continue
        if tag in _BLOCKS or (tag == "set" and not re.match(r"[^%]*=", text[o.end():])):
            stack.append((tag, o))
        elif tag.startswith("end") and stack and stack[-1][0] == tag[3:]:
            stack.pop()
    for tag, o in reversed(stack):
        if tag == m.group(1):
            return o.start(), o.end() - o.start()
    return None


def _last_opener(text: str, kinds: str) -> tuple[int, int] | None:
    openers = [o for o in _OPENER.finditer(text) if o.group(1) in kinds]
    return (openers[-1].start(), 2) if openers else None


def syntax_error_span(lit: ast.Literal) -> Span | None:
    """The .prompt span of the place where a template's syntax error is (see syntax_error_place)."""
    assert isinstance(lit.value, str)
    text = lit.value
    place = syntax_error_place(text)
    if place is None:
        return None
    at, n = place
    line_start = text.rfind("\n", 0, at) + 1
    lineno = text.count("\n", 0, at) + 1
    word = text[at:at + n].split("\n")[0] or text[at:at + 1]
    src = lit.span.source
    origins = lit.line_origins or ((lit.span.line, lit.span.col + 1),)  # a one-line string: after its quote
    if lineno <= len(origins):
        line, col = origins[lineno - 1]
        col += at - line_start
        if src.line_text(line)[col - 1:col - 1 + len(word)] == word:
            return src.span_at(line, col, len(word))
    return template_span(lit, lineno, word)  # escapes in a one-line string shift columns: find the word
