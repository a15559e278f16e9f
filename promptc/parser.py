"""Parse stage: .prompt source text -> ast.Program, via the Lark LALR grammar in promptc/grammar/promptc.lark.

Syntax errors become located diagnostics that name what was expected in words.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from promptc import ast, codes
from promptc.diagnostics import Diagnostic, Diagnostics
from promptc.errors import DiagnosticError
from promptc.source import SourceFile, Span, first_surrogate


def grammar_text() -> str:
    """The grammar source, shipped inside the package (promptc/promptc/grammar/promptc.lark)."""
    return resources.files("promptc.grammar").joinpath("promptc.lark").read_text(encoding="utf-8")


def _cache_file(text: str) -> str | bool:
    """Where Lark keeps its built parse tables: a private per-user directory (Lark's own default is
    the shared temp directory, where another user could plant the file). False disables caching."""
    import hashlib
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = os.path.join(base, "promptc")
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        if os.stat(d).st_uid != os.getuid() or not os.access(d, os.W_OK):
            return False
    except OSError:
        return False
    import lark

    digest = hashlib.sha256(f"{lark.__version__}\0{text}".encode()).hexdigest()[:20]
    return os.path.join(d, f"grammar-{digest}.lark-cache")


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    text = grammar_text()
    return Lark(text, parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True,
                cache=_cache_file(text))


# Terminal names -> words for "expected ..." messages.
_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "LONG_STRING": 'a """triple-quoted""" string',
    "SIGNED_INT": "a number",
    "INT": "an integer",
    "SIGNED_FLOAT": "a number",
    "REGEX": "a /regex/",
    "CMP_OP": "a comparison (== != < <= > >=)",
    "$END": "end of file",
}


def _describe(terminals: set[str] | frozenset[str]) -> list[str]:
    defs = {t.name: t for t in _lark().terminals}
    words: set[str] = set()
    for name in terminals:
        if name in _WORDS:
            words.add(_WORDS[name])
        elif name in defs and defs[name].pattern.type == "str":
            words.add(f"'{defs[name].pattern.value}'")
        else:
            words.add(name.lower())
    # Quoted tokens first, then descriptions; stable order for golden files.
    return sorted(words, key=lambda w: (not w.startswith("'"), w))


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    if len(words) > 8:
        words = words[:8] + ["..."]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _token_desc(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type in ("STRING", "LONG_STRING"):
        return "a string"
    value = str(tok)
    if len(value) > 20:
        value = value[:20] + "..."
    return f"'{value}'"


_HINTS = [
    # (expected contains, token value, hint)
    ({"'->'"}, None, "a task declares its output type: `task name(input: Type) -> Output { ... }`"),
    ({"':'"}, None, "fields and parameters are written `name: Type`"),
    ({"'for'"}, None, "targets are written `target text NAME for TASK { key = value }`"),
]


def _syntax_diagnostic(src: SourceFile, err: UnexpectedInput) -> Diagnostic:
    diags = Diagnostics()
    if isinstance(err, UnexpectedCharacters):
        pos = err.pos_in_stream or 0
        ch = src.text[pos] if pos < len(src.text) else ""
        if ch == '"':
            triple = src.text.startswith('"""', pos)
            diags.error(codes.UNTERMINATED_STRING, "unterminated string", src.span(pos, pos + (3 if triple else 1)),
                        hint='close it with """' if triple else
                        'strings end on the same line; use """...""" for text over several lines')
        elif ch == "/":
            diags.error(codes.SYNTAX, "unexpected '/'", src.span(pos, pos + 1),
                        hint="a regex is written /pattern/flags on one line and is only allowed as a value")
        elif ch == ";":
            diags.error(codes.UNEXPECTED_CHAR, "unexpected character ';'", src.span(pos, pos + 1),
                        hint="promptc has no ';': separate fields and items with newlines or commas")
        else:
            expected = _describe(err.allowed or set())
            shown = repr(ch)[1:-1] if ch.isprintable() else f"\\u{ord(ch):04x}"
            diags.error(codes.UNEXPECTED_CHAR, f"unexpected character '{shown}'", src.span(pos, pos + 1),
                        hint=f"expected {_join(expected)}" if expected else None)
        return diags.items[0]
    if isinstance(err, UnexpectedToken):
        tok = err.token
        expected = _describe(err.expected)
        if tok.type == "$END":
            pos = len(src.text.rstrip()) or 0
            span = src.span(max(0, pos - 1), pos) if pos else src.span(0, 0)
            msg = "unexpected end of file"
        else:
            span = src.span(tok.start_pos, tok.end_pos)
            msg = f"unexpected {_token_desc(tok)}"
        hint = None
        if str(tok) == "=" and _WORDS["CMP_OP"] in expected:
            hint = "did you mean `==`? `=` sets options and given values; conditions compare with =="
        for want, _, text in _HINTS:
            if hint is None and want & set(expected):
                hint = text
                break
        return Diagnostic("error", codes.SYNTAX, f"{msg}; expected {_join(expected)}", span, hint)
    if isinstance(err, UnexpectedEOF):
        pos = len(src.text)
        return Diagnostic("error", codes.SYNTAX, "unexpected end of file", src.span(max(0, pos - 1), pos))
    return Diagnostic("error", codes.SYNTAX, "syntax error", src.span(0, 0))


# ------------------------------------------------------------------ strings
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "0": "\0", "/": "/"}
_ESCAPE_RE = re.compile(r"\\(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)")


class _ParseIssue(Exception):
    def __init__(self, diag: Diagnostic):
        super().__init__(diag.message)
        self.diag = diag


def _unescape(raw: str, span: Span) -> str:
    def repl(m: re.Match) -> str:
        e = m.group(1)
        if e in _ESCAPES:
            return _ESCAPES[e]
        if e.startswith("u") and len(e) == 11:  # a surrogate pair, as JSON writes characters beyond U+FFFF
            hi, lo = int(e[1:5], 16), int(e[7:11], 16)
            return chr(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
        start = span.start + 1 + m.start()
        if e.startswith("u") and len(e) == 5 and 0xD800 <= int(e[1:], 16) <= 0xDFFF:
            raise _ParseIssue(Diagnostic("error", codes.BAD_ESCAPE, f"lone surrogate escape '\\{e}' in string",
                                         span.sub(start, start + 6),
                                         hint="\\uD800-\\uDFFF only come in pairs (\\ud83d\\ude00); "
                                              "or write the character itself"))
        if e.startswith("u") and len(e) == 5:
            return chr(int(e[1:], 16))
        raise _ParseIssue(Diagnostic("error", codes.BAD_ESCAPE, f"invalid escape '\\{e}' in string",
                                     span.sub(start, start + 2),
                                     hint=r'valid escapes: \n \t \r \" \\ \uXXXX'))

    return _ESCAPE_RE.sub(repl, raw)


def dedent_block(raw: str, first_line: int, first_col: int) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Dedent the body of a triple-quoted string, recording where each kept line starts.

    A first line holding only whitespace and a last line holding only whitespace are dropped;
    then the indentation common to the non-blank lines is removed.
    """
    lines = raw.split("\n")
    origins = [(first_line + i, (first_col if i == 0 else 1)) for i in range(len(lines))]
    if len(lines) > 1 and not lines[0].strip():
        lines, origins = lines[1:], origins[1:]
    if len(lines) > 1 and not lines[-1].strip():
        lines, origins = lines[:-1], origins[:-1]
    indents = [len(ln) - len(ln.lstrip(" \t")) for ln in lines if ln.strip()]
    # The first line may start right after the quotes and carries no indentation of its own.
    if origins and origins[0][1] != 1 and indents and lines[0].strip():
        indents = indents[1:] or [0]
    cut = min(indents) if indents else 0
    out, outs = [], []
    for ln, (line, col) in zip(lines, origins):
        if col == 1 and ln[:cut].strip() == "":
            out.append(ln[cut:])
            outs.append((line, col + min(cut, len(ln))))
        else:
            out.append(ln)
            outs.append((line, col))
    return "\n".join(out), tuple(outs)


# ------------------------------------------------------------------ the transformer
@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, src: SourceFile):
        super().__init__()
        self.src = src

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return self.src.span(0, 0)
        return self.src.span(meta.start_pos, meta.end_pos)

    def _tok_span(self, tok: Token) -> Span:
        return self.src.span(tok.start_pos or 0, tok.end_pos or 0)

    def _text(self, tok: Token) -> str:
        """The value of a STRING or LONG_STRING token."""
        return str(self._string(tok).value)

    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), self._tok_span(tok))

    def _string(self, tok: Token) -> ast.Literal:
        span = self._tok_span(tok)
        if tok.type == "LONG_STRING":
            line, col = span.line, span.col + 3
            value, origins = dedent_block(str(tok)[3:-3], line, col)
            return ast.Literal(value, span, origins, long=True)
        return ast.Literal(_unescape(str(tok)[1:-1], span), span)

    # --- program
    def start(self, meta, children):
        header = children[0] if children and isinstance(children[0], tuple) else None
        decls = tuple(c for c in children if not isinstance(c, tuple) and c is not None)
        name, version = header if header else (None, None)
        return ast.Program(name, version, decls, self._span(meta))

    def header(self, meta, children):
        return (self._ident(children[0]), self._string(children[1]))

    # --- types
    def enum_decl(self, meta, children):
        name, *members = children
        return ast.EnumDecl(self._ident(name), tuple(self._ident(m) for m in members if m is not None),
                            self._span(meta))

    def type_decl(self, meta, children):
        name, *fields = children
        return ast.TypeDecl(self._ident(name), tuple(fields), self._span(meta))

    def field(self, meta, children):
        return ast.Field(self._ident(children[0]), children[1], self._span(meta))

    def type_use(self, meta, children):
        texpr, constraints, more = (list(children) + [None, None])[:3]
        span = self._span(meta)
        if more is not None and (constraints != () or more == ()):
            raise _ParseIssue(self._two_constraint_lists(texpr, constraints, more, span))
        if constraints == ():  # `T[]`: empty brackets constrain nothing; the writer meant a list
            # `T[] [max_len=3]`: the list's constraints follow; the checker reports the `T[]` once, with
            # what to write instead, and reads it as list[T] [max_len=3]
            end = self.src.text.index("]", texpr.span.end) + 1
            listed = ast.ListType(ast.TypeUse(texpr, (), texpr.span), self.src.span(texpr.span.start, end), suffix=True)
            return ast.TypeUse(listed, tuple(more or ()), span)
        return ast.TypeUse(texpr, tuple(constraints or ()), span)

    def _two_constraint_lists(self, texpr, first, more, span: Span) -> Diagnostic:
        text = self.src.text
        item = text[texpr.span.start:texpr.span.end]
        cons = ", ".join(text[c.span.start:c.span.end] for c in first)
        second = text.rindex("[", span.start, span.end)
        where = self.src.span(second, span.end)
        if first == () and more == ():  # `T[][]`
            return Diagnostic("error", codes.SYNTAX, f"'{text[span.start:span.end]}' is not a list type in promptc",
                              self.src.span(texpr.span.start, span.end), hint=f"use list[list[{item}]]")
        if more == ():  # `str [max_len=3] []`: a list of constrained items
            return Diagnostic("error", codes.SYNTAX, f"'{text[span.start:span.end]}' is not a list type in promptc",
                              where, hint=f"a list of constrained items is written list[{item} [{cons}]]")
        extra = ", ".join(text[c.span.start:c.span.end] for c in more)
        return Diagnostic("error", codes.SYNTAX, "a type takes one constraint list", where,
                          hint=f"put them in one: {item} [{cons}, {extra}]")

    def named_type(self, meta, children):
        return ast.NamedType(self._ident(children[0]), self._span(meta))

    def list_type(self, meta, children):
        return ast.ListType(children[0], self._span(meta))

    def optional_type(self, meta, children):
        return ast.OptionalType(children[0], self._span(meta))

    def field_constraints(self, meta, children):
        return tuple(c for c in children if c is not None)

    def field_constraint(self, meta, children):
        return ast.FieldConstraint(self._ident(children[0]), children[1], self._span(meta))

    # --- tasks
    def task_decl(self, meta, children):
        name = children[0]
        i = 1
        params = []
        while i < len(children) and (children[i] is None or isinstance(children[i], ast.Param)):
            if children[i] is not None:
                params.append(children[i])
            i += 1
        returns = children[i]
        items = tuple(children[i + 1:])
        return ast.TaskDecl(self._ident(name), tuple(params), returns, items, self._span(meta))

    def param(self, meta, children):
        return ast.Param(self._ident(children[0]), children[1], self._span(meta))

    def _text_item(self, kind, meta, children):
        variant, text = children
        lit = self._string(text) if isinstance(text, Token) else text
        return ast.TextItem(kind, lit, variant, self._span(meta))

    def system_item(self, meta, children):
        return self._text_item("system", meta, children)

    def prompt_item(self, meta, children):
        return self._text_item("prompt", meta, children)

    def variant(self, meta, children):
        return self._text(children[0])

    def example_item(self, meta, children):
        name, record, output = children
        return ast.Example(self._text(name) if name is not None else None, record, output,
                           self._span(meta))

    def examples_item(self, meta, children):
        return ast.ExamplesFile(self._string(children[0]), self._span(meta))

    def constraint_item(self, meta, children):
        name, desc, expr = children
        return ast.ConstraintDecl(self._ident(name), self._text(desc) if desc is not None else None,
                                  expr, self._span(meta))

    # --- tests
    def test_decl(self, meta, children):
        task, *items = children
        return ast.TestDecl(self._ident(task), tuple(items), self._span(meta))

    def case_item(self, meta, children):
        name, record, *expects = children
        return ast.Case(self._text(name), record, tuple(expects), self._span(meta))

    def expect_item(self, meta, children):
        return children[0]

    def property_item(self, meta, children):
        name, *parts = children
        return ast.Property(
            self._text(name),
            tuple(p for p in parts if isinstance(p, ast.Given)),
            tuple(p[1] for p in parts if isinstance(p, tuple)),
            tuple(p for p in parts if isinstance(p, ast.Setting)),
            self._span(meta),
            tuple(p for p in parts if isinstance(p, ast.Perturb)),
            next((p for p in parts if isinstance(p, ast.FromCases)), None),
        )

    def cases_item(self, meta, children):
        path, *settings = children
        return ast.CasesFile(self._string(path), tuple(s for s in settings if s is not None), self._span(meta))

    def perturb_item(self, meta, children):
        return ast.Perturb(children[0], children[1], self._span(meta))

    def from_item(self, meta, children):
        return ast.FromCases(self._span(meta))

    def given_item(self, meta, children):
        return ast.Given(children[0], children[1], self._span(meta))

    def check_item(self, meta, children):
        return ("check", children[0])

    def setting_item(self, meta, children):
        return ast.Setting(self._ident(children[0]), children[1], self._span(meta))

    # --- targets
    def target_decl(self, meta, children):
        kind, name, task, *options = children
        return ast.TargetDecl(self._ident(kind), self._ident(name), self._ident(task),
                              tuple(o for o in options if o is not None), self._span(meta))

    def option(self, meta, children):
        return ast.Option(self._ident(children[0]), children[1], self._span(meta))

    # --- values
    def enum_ref(self, meta, children):
        return ast.EnumRef(str(children[0]), self._span(meta))

    def record(self, meta, children):
        return ast.RecordLit(tuple(c for c in children if c is not None), self._span(meta))

    def record_field(self, meta, children):
        key, value = children
        if key.type == "STRING":
            k = ast.Ident(self._text(key), self._tok_span(key))
        else:
            k = self._ident(key)
        return ast.RecordField(k, value, self._span(meta))

    def list_lit(self, meta, children):
        return ast.ListLit(tuple(c for c in children if c is not None), self._span(meta))

    list_expr = list_lit

    def literal(self, meta, children):
        tok: Token = children[0]
        span = self._tok_span(tok)
        t = tok.type
        if t in ("STRING", "LONG_STRING"):
            return self._string(tok)
        if t == "SIGNED_INT":
            digits = len(tok.lstrip("-"))
            value = int(tok) if digits <= 20 else None  # int() refuses > 4,300 digits; ints are 64-bit
            if value is None or not -(2 ** 63) <= value < 2 ** 63:
                raise _ParseIssue(Diagnostic("error", codes.NUMBER_OUT_OF_RANGE,
                                             f"integer {_clip_number(tok)} is out of range", span,
                                             hint="integers are 64-bit: -9223372036854775808 to "
                                                  "9223372036854775807"))
            return ast.Literal(value, span)
        if t == "SIGNED_FLOAT":
            fvalue = float(tok) if len(tok) <= 400 else float("inf")
            if fvalue in (float("inf"), float("-inf")):
                raise _ParseIssue(Diagnostic("error", codes.NUMBER_OUT_OF_RANGE,
                                             f"number {_clip_number(tok)} is out of range", span,
                                             hint="floats are 64-bit: at most about 1.8e308"))
            return ast.Literal(fvalue, span)
        if t == "TRUE":
            return ast.Literal(True, span)
        if t == "FALSE":
            return ast.Literal(False, span)
        if t == "NULL":
            return ast.Literal(None, span)
        if t == "REGEX":
            text = str(tok)
            end = text.rfind("/")
            pattern = text[1:end].replace("\\/", "/")
            return ast.Regex(pattern, text[end + 1:], span)
        raise AssertionError(t)  # pragma: no cover - grammar and transformer disagree

    # --- expressions
    def path(self, meta, children):
        root, *rest = children
        parts, spans = [], []
        for tok in rest:
            if tok.type == "INT" and len(tok) > 18:  # an index is a 64-bit integer (and int() stops at 4,300 digits)
                raise _ParseIssue(Diagnostic("error", codes.NUMBER_OUT_OF_RANGE,
                                             f"index {_clip_number(tok)} is out of range", self._tok_span(tok),
                                             hint="list indexes are 64-bit integers"))
            parts.append(int(tok) if tok.type == "INT" else str(tok))
            spans.append(self._tok_span(tok))
        return ast.Path(self._ident(root), tuple(parts), self._span(meta), tuple(spans))

    def call(self, meta, children):
        name, *args = children
        return ast.Call(self._ident(name), tuple(a for a in args if a is not None), self._span(meta))

    def kwarg(self, meta, children):
        return ast.KwArg(self._ident(children[0]), children[1], self._span(meta))

    def compare(self, meta, children):
        left, op, right = children
        return ast.BinOp(str(op), left, right, self._span(meta), self._tok_span(op))

    def _binop(self, op, meta, children):
        left, right = children
        span = self._span(meta)
        return ast.BinOp(op, left, right, span, span)

    def in_(self, meta, children):
        return self._binop("in", meta, children)

    def not_in(self, meta, children):
        return self._binop("not in", meta, children)

    def contains(self, meta, children):
        return self._binop("contains", meta, children)

    def matches(self, meta, children):
        return self._binop("matches", meta, children)

    def and_(self, meta, children):
        return ast.BoolOp("and", children[0], children[1], self._span(meta))

    def or_(self, meta, children):
        return ast.BoolOp("or", children[0], children[1], self._span(meta))

    def not_(self, meta, children):
        return ast.Not(children[0], self._span(meta))

    def when(self, meta, children):
        return ast.When(children[0], children[1], self._span(meta))


# Later stages walk the AST recursively; a bound on the parse tree's depth keeps them all far from
# Python's recursion limit (a 500-term `or` or 250 nested `list[` once crashed the checker).
MAX_NESTING = 100
_NESTING_HINTS = {
    "or_": "split the condition into several constraints, or test membership: x in [a, b, c]",
    "and_": "split the condition into several constraints",
    "list_type": "nest fewer lists; a record type can group the inner levels",
    "record": "flatten the value; records nest at most about 50 levels",
    "list_lit": "flatten the value; lists nest at most about 50 levels",
}


def _too_deep(src: SourceFile, tree: Tree) -> Diagnostic | None:
    stack = [(tree, 1, "")]
    while stack:
        node, depth, parent = stack.pop()
        if depth > MAX_NESTING:
            meta = node.meta
            start = getattr(meta, "start_pos", 0) if not getattr(meta, "empty", True) else 0
            hint = _NESTING_HINTS.get(node.data) or _NESTING_HINTS.get(parent)
            return Diagnostic("error", codes.NESTED_TOO_DEEPLY,
                              f"nested more than {MAX_NESTING} levels deep", src.span(start, start + 1),
                              hint=hint or "flatten it: promptc bounds nesting so that every stage stays fast "
                                           "and safe")
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1, node.data if node.data in _NESTING_HINTS else parent))
    return None


def _clip_number(tok: str) -> str:
    return tok if len(tok) <= 24 else f"{tok[:12]}…({len(tok):,} characters)"


def parse_source(src: SourceFile) -> tuple[ast.Program | None, list[Diagnostic]]:
    """Parse one source file. Returns the program, or None and the syntax diagnostics."""
    bad = first_surrogate(src.text)
    if bad >= 0:  # only text that did not come from a file can hold one (decoding UTF-8 refuses them)
        return None, [Diagnostic("error", codes.NOT_UTF8, f"lone surrogate U+{ord(src.text[bad]):04X} in the text",
                                 src.span(bad, bad + 1), hint="the text cannot be encoded as UTF-8")]
    try:
        tree: Tree = _lark().parse(src.text)
    except UnexpectedInput as e:
        return None, [_syntax_diagnostic(src, e)]
    deep = _too_deep(src, tree)
    if deep is not None:
        return None, [deep]
    try:
        return _ToAst(src).transform(tree), []
    except VisitError as e:
        if isinstance(e.orig_exc, _ParseIssue):
            return None, [e.orig_exc.diag]
        raise


def parse(text: str, path: str = "<string>") -> ast.Program:
    """Parse program text; raise PromptcError with located diagnostics on a syntax error."""
    program, diags = parse_source(SourceFile(path, text))
    if program is None:
        raise DiagnosticError(diags)
    return program
