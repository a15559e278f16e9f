"""The formatter: .prompt source -> the canonical layout, keeping every comment.

`format_text(text)` is what `promptc fmt` and the language server use. It parses the text, prints the AST
in the canonical layout and puts each `#` comment back where it was written:
- a comment on a line of its own leads the item that follows it (or closes the block it ends);
- a comment after code on the same line stays at the end of that line;
- a comment inside a construct that is printed on one line (an expression, a task header, a type's
  `[...]` constraints) moves to its own line just above that construct, so nothing is lost.
Blank lines between items are kept (at most one); top-level declarations are separated by one blank line.
Triple-quoted blocks keep their text exactly; only their indentation follows the block they sit in.
`{ ... }` records, `[ ... ]` lists, enums and target options stay on one line when they fit in
`WIDTH` columns and hold no comment, else they get one entry per line.

`fmt(program)` prints an AST alone (no comments, no source) and is what the round-trip tests build on:
`parse(fmt(p)) == p`, and `fmt(fmt(x)) == fmt(x)` through `format_text`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from promptc import ast
from promptc.source import SourceFile

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
IND = "  "
WIDTH = 100


_NEEDS_ESCAPE = re.compile('[\\\\"\x00-\x1f\x7f\x85\u2028\u2029]')


def quote(s: str) -> str:
    if not _NEEDS_ESCAPE.search(s):  # the common case, without the per-character loop
        return '"' + s + '"'
    out = ['"']
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or ch in "\u2028\u2029\x85":
            out.append(f"\\u{ord(ch):04x}")
        else:  # everything else, astral characters included, is written as itself
            out.append(ch)
    out.append('"')
    return "".join(out)


def _can_be_long(s: str) -> bool:
    if "\n" not in s or '"""' in s or "\r" in s or s.endswith('"') or not s.strip():
        return False
    if any(ch in s for ch in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        return False
    lines = s.split("\n")
    indents = [len(ln) - len(ln.lstrip(" \t")) for ln in lines if ln.strip()]
    return min(indents) == 0 and not lines[0].startswith((" ", "\t"))


def text(lit: ast.Literal, indent: str) -> str:
    s = lit.value
    assert isinstance(s, str)
    if not _can_be_long(s):
        return quote(s)
    inner = indent + IND
    body = "\n".join((inner + ln) if ln.strip() else ln for ln in s.split("\n"))
    return f'"""\n{body}\n{inner}"""'


def regex(r: ast.Regex) -> str:
    return "/" + r.pattern.replace("/", "\\/") + "/" + r.flags


def name(s: str) -> str:
    return s if _IDENT.match(s) else quote(s)


def literal(lit: ast.Literal, indent: str = "") -> str:
    v = lit.value
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if any(c in r for c in ".eE") else r + ".0"
    return text(lit, indent) if lit.long else quote(v)


def value(v: ast.Value | ast.Expr, indent: str = "") -> str:
    if isinstance(v, ast.Literal):
        return literal(v, indent)
    if isinstance(v, ast.Regex):
        return regex(v)
    if isinstance(v, ast.EnumRef):
        return v.name
    if isinstance(v, ast.ListLit):
        return "[" + ", ".join(value(i, indent) if not _is_expr(i) else expr(i) for i in v.items) + "]"
    if isinstance(v, ast.RecordLit):
        if not v.fields:
            return "{}"
        return "{ " + ", ".join(f"{name(f.key.name)}: {value(f.value, indent)}" for f in v.fields) + " }"
    return expr(v)


def _is_expr(v) -> bool:
    return isinstance(v, (ast.Path, ast.Call, ast.BinOp, ast.BoolOp, ast.Not, ast.When))


# precedence: when 0 < or 1 < and 2 < not 3 < comparison 4 < atom 5
def _prec(e: ast.Expr) -> int:
    if isinstance(e, ast.When):
        return 0
    if isinstance(e, ast.BoolOp):
        return 1 if e.op == "or" else 2
    if isinstance(e, ast.Not):
        return 3
    if isinstance(e, ast.BinOp):
        return 4
    return 5


def expr(e: ast.Expr, need: int = 0) -> str:
    s = _expr(e)
    return f"({s})" if _prec(e) < need else s


def _expr(e: ast.Expr) -> str:
    if isinstance(e, ast.Path):
        out = e.root.name
        for p in e.parts:
            out += f"[{p}]" if isinstance(p, int) else f".{p}"
        return out
    if isinstance(e, ast.Call):
        args = [f"{a.name.name}={expr(a.value)}" if isinstance(a, ast.KwArg) else expr(a) for a in e.args]
        return f"{e.func.name}({', '.join(args)})"
    if isinstance(e, ast.When):
        return f"{expr(e.then, 1)} when {expr(e.cond, 1)}"
    if isinstance(e, ast.BoolOp):
        p = 1 if e.op == "or" else 2
        return f"{expr(e.left, p)} {e.op} {expr(e.right, p + 1)}"
    if isinstance(e, ast.Not):
        # `not (a matches b)` reads better than the equivalent `not a matches b`
        return f"not {expr(e.operand, 5 if isinstance(e.operand, ast.BinOp) else 3)}"
    if isinstance(e, ast.BinOp):
        return f"{expr(e.left, 5)} {e.op} {expr(e.right, 5)}"
    if isinstance(e, ast.ListLit):
        return "[" + ", ".join(expr(i) for i in e.items) + "]"
    return value(e)  # literals, regexes


def type_expr(t: ast.TypeExpr) -> str:
    if isinstance(t, ast.OptionalType):
        return type_expr(t.inner) + "?"
    if isinstance(t, ast.ListType):
        return f"list[{type_use(t.item)}]"
    return t.name.name


def type_use(t: ast.TypeUse) -> str:
    s = type_expr(t.type)
    if t.constraints:
        s += " [" + ", ".join(f"{c.name.name}={value(c.value)}" for c in t.constraints) + "]"
    return s


# ------------------------------------------------------------------ comments
@dataclass(frozen=True, slots=True)
class Comment:
    """A `# ...` comment: its character range in the source and its text (trailing blanks dropped)."""

    start: int
    end: int
    text: str


# The tokens that can hide a '#': strings, triple-quoted blocks and regexes; a '#' outside them starts a
# comment. This mirrors the terminals of grammar/promptc.lark (LONG_STRING before STRING, as its priority
# says), so it finds exactly the COMMENT tokens the lexer ignores, in one regex pass.
_HIDING = re.compile(r'"""[\s\S]*?"""|"(?:[^"\\\n]|\\.)*"|/(?:[^/\\\n]|\\.)+/[a-zA-Z]*|#[^\n]*')


def scan_comments(text: str) -> list[Comment]:
    """Every comment of a program that parses, in source order."""
    out = []
    for m in _HIDING.finditer(text):
        if m.group().startswith("#"):
            out.append(Comment(m.start(), m.end(), m.group().rstrip()))
    return out


def reindent_long(raw: str, inner: str, value: str) -> str:
    """Re-indent the source of a triple-quoted block so its content lines start at `inner`.

    The text of the block (what the parser's dedent makes of it) is kept exactly; if re-indenting
    could change it (tabs mixed oddly, an empty block), the block is kept as written."""
    from promptc.parser import dedent_block

    body = raw[3:-3]
    lines = body.split("\n")
    if len(lines) == 1:
        return raw
    first_dropped = not lines[0].strip()
    rest = lines[1:]
    last_dropped = (len(lines) - first_dropped) > 1 and not lines[-1].strip()
    kept = rest[:-1] if last_dropped else rest
    indents = [len(ln) - len(ln.lstrip(" \t")) for ln in kept if ln.strip()]
    cut = min(indents) if indents else 0
    new = ["" if first_dropped else lines[0]]
    for ln in kept:
        new.append(inner + ln[cut:] if ln[cut:] else "")
    if last_dropped:
        new.append(inner)
    out = '"""' + "\n".join(new) + '"""'
    if dedent_block(out[3:-3], 1, 4)[0] != value:
        return raw
    return out


# ------------------------------------------------------------------ the printer
class _Printer:
    """Prints a program line by line; with a source, it also places comments and keeps blank lines."""

    def __init__(self, src: SourceFile | None):
        self.src = src
        self.text = src.text if src is not None else ""
        self.comments = scan_comments(self.text) if src is not None else []
        self.starts = [c.start for c in self.comments]
        self.ci = 0
        self.out: list[str] = []
        self.last = 0  # source offset just past what was printed last
        self.fresh = True  # at the start of a block: no blank line goes here

    # --- positions
    def pos(self, node) -> tuple[int, int]:
        span = getattr(node, "span", None) if self.src is not None else None
        return (span.start, span.end) if span is not None else (0, 0)

    def has_comments(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.starts, start)
        return i < len(self.starts) and self.starts[i] < end

    def open_brace(self, pos: int) -> int:
        """The offset of the next '{' at or after `pos`, skipping comments and strings."""
        if self.src is None:
            return 0
        text = self.text
        n = len(text)
        while pos < n:
            ch = text[pos]
            if ch == "{":
                return pos
            if ch == "#":
                pos = text.find("\n", pos)
                pos = n if pos < 0 else pos
                continue
            if ch == '"':
                m = _HIDING.match(text, pos)
                pos = m.end() if m else pos + 1
                continue
            pos += 1
        return n

    # --- emitting
    def blank(self, pos: int) -> None:
        """Keep one blank line where the source had at least one before `pos`."""
        if self.src is None or self.fresh or not self.out or self.out[-1] == "":
            return
        if pos > self.last and self.text.count("\n", self.last, pos) >= 2:
            gap = self.text[self.last:pos]
            if any(not ln.strip(" \t\r,") for ln in gap.split("\n")[1:-1]):
                self.out.append("")

    def lead(self, pos: int, ind: str, blanks: bool = True) -> None:
        """Print the comments that start before `pos`, each on its own line."""
        cs = self.comments
        while self.ci < len(cs) and cs[self.ci].start < pos:
            c = cs[self.ci]
            if blanks:
                self.blank(c.start)
            self.out.append(ind + c.text)
            self.last = max(self.last, c.end)
            self.ci += 1
            self.fresh = False

    def trail(self, end: int) -> str:
        """The comment that follows `end` on the same line, with only commas between, if any."""
        cs = self.comments
        if self.ci < len(cs):
            c = cs[self.ci]
            if c.start >= end and not self.text[end:c.start].strip(" \t,"):
                self.ci += 1
                self.last = max(self.last, c.end)
                return "  " + c.text
        return ""

    def begin(self, ind: str, start: int) -> None:
        self.lead(start, ind)
        self.blank(start)

    def line(self, ind: str, body: str, start: int, end: int) -> None:
        """One item printed as `body` (continuation lines of a triple-quoted block carry their own indent)."""
        self.begin(ind, start)
        self.lead(end, ind, blanks=False)  # comments inside an item printed on one line move above it
        self.out.append(ind + body + self.trail(end))
        self.last = max(self.last, end)
        self.fresh = False

    def block(self, ind: str, opener: str, start: int, end: int, open_at: int, body: Callable[[str], None],
              close: str = "}", suffix: str = "") -> None:
        """`opener` (ending in `{` or `[`), the body one level in, then `close` (+ `suffix`, a list's comma)."""
        self.begin(ind, start)
        self.lead(open_at, ind, blanks=False)
        self.out.append(ind + opener + self.trail(open_at + 1))
        self.last = max(self.last, open_at + 1)
        self.fresh = True
        body(ind + IND)
        self.lead(max(end - 1, 0), ind + IND)
        self.out.append(ind + close + suffix + self.trail(end))
        self.last = max(self.last, end)
        self.fresh = False

    # --- values
    def long_text(self, lit: ast.Literal, ind: str) -> str:
        """A triple-quoted block whose lines (and closing quotes) line up with the item at `ind`."""
        if self.src is not None and lit.span is not None:
            raw = self.text[lit.span.start:lit.span.end]
            if raw.startswith('"""'):
                return reindent_long(raw, ind, lit.value)  # type: ignore[arg-type]
        return text(lit, ind[:-len(IND)] if ind else ind)

    def inline(self, v, ind: str) -> str | None:
        """A value on one line, or None when it cannot be (it holds a multi-line block)."""
        if isinstance(v, ast.Literal):
            s = self.long_text(v, ind) if v.long else literal(v)
            return None if "\n" in s else s
        if isinstance(v, ast.ListLit):
            parts = [self.inline(i, ind) if not _is_expr(i) else expr(i) for i in v.items]
            return None if None in parts else "[" + ", ".join(parts) + "]"  # type: ignore[arg-type]
        if isinstance(v, ast.RecordLit):
            if not v.fields:
                return "{}"
            kvs = []
            for f in v.fields:
                fv = self.inline(f.value, ind)
                if fv is None:
                    return None
                kvs.append(f"{name(f.key.name)}: {fv}")
            return "{ " + ", ".join(kvs) + " }"
        return value(v)

    def value_line(self, ind: str, prefix: str, v, start: int | None = None, end: int | None = None,
                   suffix: str = "") -> None:
        """`prefix VALUE`, on one line when it fits, else a record or list with one entry per line."""
        vs, ve = self.pos(v)
        start = vs if start is None else start
        end = ve if end is None else end
        one = self.inline(v, ind)
        inner_comments = self.src is not None and vs < ve and self.has_comments(vs + 1, ve - 1)
        splittable = isinstance(v, (ast.RecordLit, ast.ListLit)) and (
            v.fields if isinstance(v, ast.RecordLit) else v.items)
        if one is not None and (not splittable or (len(ind + prefix + one + suffix) <= WIDTH
                                                   and not inner_comments)):
            self.line(ind, prefix + one + suffix, start, end)
            return
        if isinstance(v, ast.Literal):  # a triple-quoted block
            self.line(ind, prefix + self.long_text(v, ind) + suffix, start, end)
            return
        if isinstance(v, ast.RecordLit):
            def fields(i: str) -> None:
                for f in v.fields:
                    fs, fe = self.pos(f)
                    self.value_line(i, f"{name(f.key.name)}: ", f.value, fs, fe)
            self.block(ind, prefix + "{", start, end, vs, fields, "}", suffix)
            return
        assert isinstance(v, ast.ListLit)

        def items(i: str) -> None:
            for k, item in enumerate(v.items):
                comma = "," if k < len(v.items) - 1 else ""
                if _is_expr(item):
                    s, e = self.pos(item)
                    self.line(i, expr(item) + comma, s, e)
                else:
                    self.value_line(i, "", item, suffix=comma)
        self.block(ind, prefix + "[", start, end, vs, items, "]", suffix)

    # --- declarations
    def program(self, p: ast.Program) -> str:
        first = True

        def sep() -> None:
            nonlocal first
            if not first and self.out and self.out[-1] != "":
                self.out.append("")
            first = False

        if p.name is not None:
            sep()
            start = self.pos(p.name)[0]
            # `program` comes before its name: comments above the keyword lead the header
            kw = self.text.rfind("program", 0, start) if self.src is not None else 0
            end = self.pos(p.version)[1] if p.version is not None else self.pos(p.name)[1]
            version = quote(p.version.value) if p.version is not None else '"0.0.0"'  # type: ignore[arg-type]
            self.line("", f"program {p.name.name} {version}", max(kw, 0), end)
        for d in p.decls:
            sep()
            self.decl(d)
        if self.src is not None:
            self.lead(len(self.text) + 1, "")
        out = "\n".join(self.out).strip("\n")
        return out + "\n" if out else ""

    def decl(self, d) -> None:
        start, end = self.pos(d)
        if isinstance(d, ast.EnumDecl):
            open_at = self.open_brace(self.pos(d.name)[1])
            members = ", ".join(m.name for m in d.members)
            one = f"enum {d.name.name} {{ {members} }}" if members else f"enum {d.name.name} {{}}"
            if len(one) <= WIDTH and not (self.src is not None and self.has_comments(open_at, end)):
                self.line("", one, start, end)
                return

            def members_(ind: str) -> None:
                for k, m in enumerate(d.members):
                    s, e = self.pos(m)
                    self.line(ind, m.name + ("," if k < len(d.members) - 1 else ""), s, e)
            self.block("", f"enum {d.name.name} {{", start, end, open_at, members_)
        elif isinstance(d, ast.TypeDecl):
            open_at = self.open_brace(self.pos(d.name)[1])
            if not d.fields and not (self.src is not None and self.has_comments(open_at, end)):
                self.line("", f"type {d.name.name} {{}}", start, end)
                return

            def fields(ind: str) -> None:
                for f in d.fields:
                    s, e = self.pos(f)
                    self.line(ind, f"{f.name.name}: {type_use(f.type)}", s, e)
            self.block("", f"type {d.name.name} {{", start, end, open_at, fields)
        elif isinstance(d, ast.TaskDecl):
            params = ", ".join(f"{p.name.name}: {type_use(p.type)}" for p in d.params)
            head = f"task {d.name.name}({params}) -> {type_use(d.returns)}"
            open_at = self.open_brace(self.pos(d.returns)[1])
            self.block("", head + " {", start, end, open_at, lambda ind: self.task_items(d, ind))
        elif isinstance(d, ast.TestDecl):
            open_at = self.open_brace(self.pos(d.task)[1])
            self.block("", f"test {d.task.name} {{", start, end, open_at, lambda ind: self.test_items(d, ind))
        elif isinstance(d, ast.TargetDecl):
            head = f"target {d.kind.name} {d.name.name} for {d.task.name}"
            open_at = self.open_brace(self.pos(d.task)[1])
            opts = ", ".join(f"{o.key.name} = {self.inline(o.value, '') or '?'}" for o in d.options)
            one = f"{head} {{ {opts} }}" if opts else f"{head} {{}}"
            fits = all(self.inline(o.value, "") is not None for o in d.options)
            if fits and len(one) <= WIDTH and not (self.src is not None and self.has_comments(open_at, end)):
                self.line("", one, start, end)
                return

            def options(ind: str) -> None:
                for o in d.options:
                    s, e = self.pos(o)
                    self.value_line(ind, f"{o.key.name} = ", o.value, s, e)
            self.block("", head + " {", start, end, open_at, options)

    def task_items(self, t: ast.TaskDecl, ind: str) -> None:
        for item in t.items:
            start, end = self.pos(item)
            if isinstance(item, ast.TextItem):
                variant = f" variant {quote(item.variant)}" if item.variant is not None else ""
                body = self.long_text(item.text, ind) if item.text.long else literal(item.text)
                self.line(ind, f"{item.kind}{variant} {body}", start, end)
            elif isinstance(item, ast.Example):
                label = f" {quote(item.name)}" if item.name is not None else ""
                open_at = self.open_brace(start + len("example"))

                def parts(i: str, item=item) -> None:
                    self.value_line(i, "input ", item.input)
                    self.value_line(i, "output ", item.output)
                self.block(ind, f"example{label} {{", start, end, open_at, parts)
            elif isinstance(item, ast.ExamplesFile):
                self.line(ind, f"examples {quote(item.path.value)}", start, end)  # type: ignore[arg-type]
            elif isinstance(item, ast.ConstraintDecl):
                desc = f" {quote(item.description)}" if item.description is not None else ""
                self.line(ind, f"constraint {item.name.name}{desc}: {expr(item.expr)}", start, end)

    def test_items(self, t: ast.TestDecl, ind: str) -> None:
        for item in t.items:
            start, end = self.pos(item)
            if isinstance(item, ast.Case):
                open_at = self.open_brace(start + len("case"))

                def case(i: str, item=item) -> None:
                    self.value_line(i, "input ", item.input)
                    for e in item.expects:
                        s, en = self.pos(e)
                        self.line(i, f"expect {expr(e)}", s, en)
                self.block(ind, f"case {quote(item.name)} {{", start, end, open_at, case)
            elif isinstance(item, ast.CasesFile):
                head = f"cases {quote(item.name)}"
                if not item.settings:
                    self.line(ind, head, start, end)
                else:
                    def dataset(i: str, item=item) -> None:
                        for s in item.settings:
                            a, b = self.pos(s)
                            self.value_line(i, f"{s.name.name} = ", s.value, a, b)
                    self.block(ind, head + " {", start, end, self.open_brace(start + len("cases")), dataset)
            else:
                open_at = self.open_brace(start + len("property"))

                def prop(i: str, item=item) -> None:
                    parts: list[tuple[int, int, object]] = []
                    parts += [(self.pos(g)[0], 0, g) for g in item.givens]
                    parts += [(self.pos(c)[0], 1, c) for c in item.checks]
                    parts += [(self.pos(s)[0], 2, s) for s in item.settings]
                    parts[len(item.givens):len(item.givens)] = [(self.pos(p)[0], -1, p) for p in item.perturbs]
                    if item.from_cases is not None:
                        parts.insert(0, (self.pos(item.from_cases)[0], -2, item.from_cases))
                    if self.src is not None:  # source order, so comments stay next to their line
                        parts.sort(key=lambda x: x[0])
                    for _, _, part in parts:
                        s, e = self.pos(part)
                        if isinstance(part, ast.FromCases):
                            self.line(i, "from cases", s, e)
                        elif isinstance(part, ast.Perturb):
                            self.line(i, f"perturb {expr(part.path)} = {expr(part.perturbation)}", s, e)
                        elif isinstance(part, ast.Given):
                            self.line(i, f"given {expr(part.path)} = {expr(part.generator)}", s, e)
                        elif isinstance(part, ast.Setting):
                            self.value_line(i, f"{part.name.name} = ", part.value, s, e)
                        else:
                            self.line(i, f"check {expr(part)}", s, e)  # type: ignore[arg-type]
                self.block(ind, f"property {quote(item.name)} {{", start, end, open_at, prop)


def fmt(p: ast.Program, src: SourceFile | None = None) -> str:
    """Print a program in the canonical layout. With the `src` it was parsed from, comments and blank
    lines between items are kept and triple-quoted blocks keep their text as written."""
    return _Printer(src).program(p)


def format_text(text: str, path: str = "<string>") -> str:
    """Format program source; raise DiagnosticError (located syntax diagnostics) if it does not parse."""
    from promptc.errors import DiagnosticError
    from promptc.parser import parse_source

    src = SourceFile(path, text)
    program, diags = parse_source(src)
    if program is None:
        raise DiagnosticError(diags)
    return fmt(program, src)
