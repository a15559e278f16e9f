"""What the language server knows about one open document, without any LSP library.

`analyze(path, text, previous)` parses and checks the text and indexes every name in it: where each
type, enum, member, task, input, field and target is declared and where it is used (in type uses,
expressions, record literals, `given` paths and `{{ }}` templates). Editor features are queries on
that index: `hover`, `definition`, `references`, `rename`, `complete`, `symbols`.

Editors send broken text all the time. When the text does not parse, the analysis reports the syntax
error and keeps answering from the last text that did (positions before the edit still line up).
All positions here are 0-based (line, character) in code points; the server converts them for the
client.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from promptc import ast, codes
from promptc.diagnostics import CODES as CODE_MEANINGS
from promptc.diagnostics import Diagnostic, Diagnostics
from promptc.fmt import type_use as fmt_type_use
from promptc.options import OPTIONS, TUNE_METHODS, OptionSpec
from promptc.source import SourceFile, Span

Pos = tuple[int, int]
Range = tuple[Pos, Pos]

PRIMITIVES = ("str", "int", "float", "bool")
TOP_KEYWORDS = ("program", "enum", "type", "task", "test", "target")
TASK_KEYWORDS = ("system", "prompt", "example", "examples", "constraint")
TEST_KEYWORDS = ("case", "property")
CASE_KEYWORDS = ("input", "expect")
EXAMPLE_KEYWORDS = ("input", "output")
PROPERTY_KEYWORDS = ("given", "check", "max_examples")
EXPR_KEYWORDS = ("and", "or", "not", "in", "contains", "matches", "when", "true", "false", "null")
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
KEYWORDS = frozenset((*TOP_KEYWORDS, *TASK_KEYWORDS, *TEST_KEYWORDS, *CASE_KEYWORDS, *EXAMPLE_KEYWORDS,
                      "given", "check", "list", "variant", "for", *EXPR_KEYWORDS))


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One place a symbol appears: its declaration (`decl`) or a use."""

    start: int
    end: int
    key: tuple  # ("type", T) ("field", T, f) ("member", E, m) ("task", t) ("param", t, p) ("target", n)
    #           ("option", kind, name) ("generator", name) ("function", name) ("file", path)
    decl: bool = False


@dataclass
class Index:
    """Every name of a program: where it is declared and used, and the declarations by name."""

    occurrences: list[Occurrence] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    decls: dict[tuple, Occurrence] = field(default_factory=dict)
    types: dict[str, ast.TypeDecl] = field(default_factory=dict)
    enums: dict[str, ast.EnumDecl] = field(default_factory=dict)
    tasks: dict[str, ast.TaskDecl] = field(default_factory=dict)
    targets: dict[str, ast.TargetDecl] = field(default_factory=dict)


@dataclass
class Analysis:
    path: str
    text: str  # the text last analysed (it may not parse)
    src: SourceFile  # the source the index below belongs to: the last text that parsed
    program: ast.Program | None
    diagnostics: list[Diagnostic]  # of the current text, in every file (examples files too)
    syntax_ok: bool
    chunks: list = field(default_factory=list)  # the declarations, parsed one by one (see `analyze`)
    partial: bool = False  # only the edited task was checked again; a full check is due
    index: Index | None = None  # built on the first query, not on every keystroke

    def _index(self) -> Index:
        if self.index is None:
            idx = Index()
            if self.program is not None:
                try:
                    _Indexer(self.program, self.src, idx).run()
                except Exception:  # noqa: BLE001 - a gap in the index must not cost the other features
                    idx.occurrences, idx.starts = [], []
            self.index = idx
        return self.index

    @property
    def occurrences(self) -> list[Occurrence]:
        return self._index().occurrences

    @property
    def starts(self) -> list[int]:
        return self._index().starts

    @property
    def decls(self) -> dict[tuple, Occurrence]:
        return self._index().decls

    @property
    def types(self) -> dict[str, ast.TypeDecl]:
        return self._index().types

    @property
    def enums(self) -> dict[str, ast.EnumDecl]:
        return self._index().enums

    @property
    def tasks(self) -> dict[str, ast.TaskDecl]:
        return self._index().tasks

    @property
    def targets(self) -> dict[str, ast.TargetDecl]:
        return self._index().targets

    # ------------------------------------------------------------ positions
    def offset(self, pos: Pos) -> int:
        return self.src.offset(pos[0] + 1, pos[1] + 1)

    def pos(self, offset: int) -> Pos:
        line, col = self.src.line_col(offset)
        return line - 1, col - 1

    def range(self, start: int, end: int) -> Range:
        return self.pos(start), self.pos(end)

    def at(self, pos: Pos) -> Occurrence | None:
        """The occurrence under the cursor (a cursor just after a name still counts)."""
        off = self.offset(pos)
        i = bisect.bisect_right(self.starts, off) - 1
        while i >= 0:
            o = self.occurrences[i]
            if o.start <= off <= o.end:
                return o
            if self.starts[i] < off - 200:
                break
            i -= 1
        return None

    # ------------------------------------------------------------ queries
    def definition(self, pos: Pos) -> tuple[str, Range] | None:
        """(path, range) of what the name under the cursor refers to."""
        o = self.at(pos)
        if o is None:
            return None
        if o.key[0] == "file":
            return o.key[1], ((0, 0), (0, 0))
        d = self.decls.get(o.key)
        if d is None:
            return None
        return self.path, self.range(d.start, d.end)

    def references(self, pos: Pos, include_decl: bool = True) -> list[Range]:
        o = self.at(pos)
        if o is None or o.key[0] not in _RENAMEABLE:
            return []
        return [self.range(x.start, x.end) for x in self.occurrences
                if x.key == o.key and (include_decl or not x.decl)]

    def prepare_rename(self, pos: Pos) -> tuple[Range, str] | None:
        o = self.at(pos)
        if o is None or o.key[0] not in _RENAMEABLE or o.key not in self.decls:
            return None
        return self.range(o.start, o.end), self.src.text[o.start:o.end]

    def rename(self, pos: Pos, new: str) -> list[tuple[Range, str]] | str:
        """The edits of a rename, or why it cannot be done (a message)."""
        o = self.at(pos)
        if o is None or o.key[0] not in _RENAMEABLE or o.key not in self.decls:
            return "only types, enums, enum members, fields, tasks and inputs can be renamed"
        if not IDENT_RE.match(new) or new in KEYWORDS or new in PRIMITIVES or new == "output":
            return f"'{new}' is not a valid name (letters, digits and _, not a keyword)"
        clash = {
            "type": lambda: new in self.types or new in self.enums,
            "task": lambda: new in self.tasks,
            "field": lambda: any(f.name.name == new for f in self.types[o.key[1]].fields),
            "member": lambda: any(m.name == new for m in self.enums[o.key[1]].members),
            "param": lambda: any(p.name.name == new for p in self.tasks[o.key[1]].params),
        }[o.key[0]]
        if clash():
            return f"'{new}' is already declared there"
        return [(self.range(x.start, x.end), new) for x in self.occurrences if x.key == o.key]

    def diagnostics_at(self, pos: Pos) -> list[Diagnostic]:
        off = self.src.offset(pos[0] + 1, pos[1] + 1)
        out = []
        for d in self.diagnostics:
            s = d.span
            if s is None or s.path != self.path:
                continue
            start, end = self.src.offset(s.line, s.col), self.src.offset(s.end_line, s.end_col)
            if start <= off <= max(end, start + 1):
                out.append(d)
        return out

    def hover(self, pos: Pos) -> str | None:
        """Markdown for the name under the cursor, and the explanation of any diagnostic there."""
        parts = []
        o = self.at(pos)
        if o is not None:
            h = self._hover_key(o.key)
            if h:
                parts.append(h)
        for d in self.diagnostics_at(pos)[:2]:
            parts.append(explain_code(d.code))
        return "\n\n---\n\n".join(parts) or None

    def _hover_key(self, key: tuple) -> str | None:
        kind = key[0]
        if kind == "type":
            if key[1] in self.types:
                return _code(type_block(self.types[key[1]]))
            if key[1] in self.enums:
                e = self.enums[key[1]]
                return _code(f"enum {e.name.name} {{ {', '.join(m.name for m in e.members)} }}")
            return None
        if kind == "field":
            t = self.types.get(key[1])
            f = next((f for f in t.fields if f.name.name == key[2]), None) if t else None
            if f is None:
                return None
            extra = self._type_summary(f.type)
            return _code(f"{f.name.name}: {fmt_type_use(f.type)}") + f"\n\nfield of `{key[1]}`" + extra
        if kind == "member":
            en = self.enums.get(key[1])
            if en is None:
                return None
            return _code(f"{key[2]}") + f"\n\nmember of `enum {key[1]} {{ {', '.join(m.name for m in en.members)} }}`"
        if kind == "task":
            tk = self.tasks.get(key[1])
            if tk is None:
                return None
            n_ex = len(tk.examples)
            n_c = len(tk.constraints)
            tests = [tt for tt in (self.program.of(ast.TestDecl) if self.program else ())
                     if tt.task.name == tk.name.name]
            n_t = sum(len(tt.items) for tt in tests)
            return _code(task_signature(tk)) + (f"\n\n{n_ex} inline example{'s' * (n_ex != 1)}, {n_c} constraint"
                                               f"{'s' * (n_c != 1)}, {n_t} test{'s' * (n_t != 1)}")
        if kind == "param":
            tk = self.tasks.get(key[1])
            p = next((p for p in tk.params if p.name.name == key[2]), None) if tk else None
            if p is None:
                return None
            return _code(f"{p.name.name}: {fmt_type_use(p.type)}") + f"\n\ninput of task `{key[1]}`" + \
                self._type_summary(p.type)
        if kind == "target":
            tg = self.targets.get(key[1])
            if tg is None:
                return None
            return _code(f"target {tg.kind.name} {tg.name.name} for {tg.task.name}")
        if kind == "option":
            spec = OPTIONS.get(key[1], {}).get(key[2])
            return option_doc(key[1], spec) if spec else None
        if kind == "generator":
            from promptc.check import GENERATORS

            gen = GENERATORS.get(key[1])
            if gen is None:
                return None
            (lo, hi), kws, _ = gen
            args = ["ARG"] * lo + ([] if hi == lo else ["..."]) + [f"{k}=..." for k in kws]
            return _code(f"{key[1]}({', '.join(args)})") + "\n\ngenerator for `given` in property tests"
        if kind == "function":
            from promptc.expr import FUNCTIONS

            sig = FUNCTIONS.get(key[1])
            return _code(f"{key[1]}(...)") + f"\n\n{sig.doc}" if sig else None
        if kind == "file":
            fpath = Path(key[1])
            note = "" if fpath.exists() else "\n\n(the file does not exist)"
            return f"examples file `{fpath}`{note}"
        return None

    def _type_summary(self, tu: ast.TypeUse) -> str:
        name = _base_name(tu)
        if name in self.types:
            return "\n\n" + _code(type_block(self.types[name]))
        if name in self.enums:
            e = self.enums[name]
            return "\n\n" + _code(f"enum {name} {{ {', '.join(m.name for m in e.members)} }}")
        return ""

    # ------------------------------------------------------------ symbols
    def symbols(self) -> list[dict]:
        """Document symbols as a tree of {name, kind, detail, range, selection, children}."""
        if self.program is None:
            return []
        out = []

        def sym(name: str, kind: str, node, sel, detail: str = "", children=()) -> dict:
            s, e = node.span.start, node.span.end
            ss, se = (sel.span.start, sel.span.end) if sel is not None else (s, s)
            return {"name": name, "kind": kind, "detail": detail, "range": self.range(s, e),
                    "selection": self.range(ss, se), "children": list(children)}

        for d in self.program.decls:
            if isinstance(d, ast.EnumDecl):
                out.append(sym(d.name.name, "enum", d, d.name, "enum",
                               [sym(m.name, "member", m, m) for m in d.members]))
            elif isinstance(d, ast.TypeDecl):
                out.append(sym(d.name.name, "type", d, d.name, "type",
                               [sym(f.name.name, "field", f, f.name, fmt_type_use(f.type)) for f in d.fields]))
            elif isinstance(d, ast.TaskDecl):
                kids = [sym(p.name.name, "param", p, p.name, fmt_type_use(p.type)) for p in d.params]
                for it in d.items:
                    if isinstance(it, ast.TextItem):
                        label = it.kind + (f" ({it.variant})" if it.variant else "")
                        kids.append(sym(label, "text", it, None))
                    elif isinstance(it, ast.Example):
                        kids.append(sym(f"example {it.name or ''}".strip(), "example", it, None))
                    elif isinstance(it, ast.ExamplesFile):
                        kids.append(sym(f"examples {it.path.value}", "file", it, it.path))
                    elif isinstance(it, ast.ConstraintDecl):
                        kids.append(sym(it.name.name, "constraint", it, it.name, it.description or ""))
                out.append(sym(d.name.name, "task", d, d.name, f"-> {fmt_type_use(d.returns)}", kids))
            elif isinstance(d, ast.TestDecl):
                kids = [sym(f"{'case' if isinstance(i, ast.Case) else 'property'} {i.name}", "case", i, None)
                        for i in d.items]
                out.append(sym(f"test {d.task.name}", "test", d, d.task, "", kids))
            elif isinstance(d, ast.TargetDecl):
                out.append(sym(d.name.name, "target", d, d.name, f"{d.kind.name} for {d.task.name}"))
        return out


_RENAMEABLE = ("type", "field", "member", "task", "param")


def _code(s: str) -> str:
    return f"```promptc\n{s}\n```"


def type_block(t: ast.TypeDecl) -> str:
    lines = [f"type {t.name.name} {{"] + [f"  {f.name.name}: {fmt_type_use(f.type)}" for f in t.fields] + ["}"]
    return "\n".join(lines)


def task_signature(t: ast.TaskDecl) -> str:
    params = ", ".join(f"{p.name.name}: {fmt_type_use(p.type)}" for p in t.params)
    return f"task {t.name.name}({params}) -> {fmt_type_use(t.returns)}"


def option_doc(kind: str, spec: OptionSpec) -> str:
    lines = [_code(f"{spec.name}: {spec.kind}"), "", f"{kind} target option: {spec.help}", ""]
    if spec.default is not None:
        lines.append(f"- default: `{_lit(spec.default)}`")
    if spec.choices:
        lines.append(f"- one of: {', '.join(f'`{_lit(c)}`' for c in spec.choices)}")
    if spec.min is not None or spec.max is not None:
        lines.append(f"- range: {spec.min if spec.min is not None else ''}..{spec.max if spec.max is not None else ''}")
    if spec.methods:
        lines.append(f"- methods: {', '.join(spec.methods)}")
    return "\n".join(lines).rstrip()


def _lit(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def explain_code(code: str) -> str:
    """`CODE: meaning` and the long explanation, as `promptc explain CODE` prints it (promptc.codes)."""
    info = codes.CODES.get(code)
    if info is not None:
        return f"**{code}**: {info.meaning}\n\n{info.explanation}"
    meaning = CODE_MEANINGS.get(code)
    return f"**{code}**: {meaning}" if meaning else f"**{code}**"


def _base_name(tu: ast.TypeUse | None) -> str | None:
    if tu is None:
        return None
    t = tu.type
    while isinstance(t, ast.OptionalType):
        t = t.inner
    return t.name.name if isinstance(t, ast.NamedType) else None


def _step(tu: ast.TypeUse | None, part: str | int) -> ast.TypeUse | None:
    """The type of `x.part` / `x[part]` for x of type `tu` (None when unknown)."""
    if tu is None:
        return None
    t = tu.type
    while isinstance(t, ast.OptionalType):
        t = t.inner
    if isinstance(part, int):
        return t.item if isinstance(t, ast.ListType) else None
    return None  # fields are looked up by the indexer, which knows the declared types


# ------------------------------------------------------------------ building the index
class _Indexer:
    def __init__(self, program: ast.Program, src: SourceFile, an: Index):
        self.p = program
        self.src = src
        self.an = an
        self.occ: list[Occurrence] = []
        self.members: dict[str, list[str]] = {}

    def add(self, span: Span | None, key: tuple, decl: bool = False) -> None:
        if span is not None and span.path == self.src.path:
            # by line and column: a span may come from a declaration parsed on its own (see `analyze`)
            if span.source is self.src:
                start, end = span.start, span.end
            else:
                start = self.src.offset(span.line, span.col)
                end = self.src.offset(span.end_line, span.end_col)
            o = Occurrence(start, end, key, decl)
            self.occ.append(o)
            if decl and key not in self.an.decls:
                self.an.decls[key] = o

    def run(self) -> None:
        an = self.an
        for d in self.p.decls:
            if isinstance(d, ast.TypeDecl):
                an.types.setdefault(d.name.name, d)
            elif isinstance(d, ast.EnumDecl):
                an.enums.setdefault(d.name.name, d)
                for m in d.members:
                    self.members.setdefault(m.name, []).append(d.name.name)
            elif isinstance(d, ast.TaskDecl):
                an.tasks.setdefault(d.name.name, d)
            elif isinstance(d, ast.TargetDecl):
                an.targets.setdefault(d.name.name, d)
        for d in self.p.decls:
            if isinstance(d, ast.TypeDecl):
                self.add(d.name.span, ("type", d.name.name), True)
                for f in d.fields:
                    self.add(f.name.span, ("field", d.name.name, f.name.name), True)
                    self.type_use(f.type)
            elif isinstance(d, ast.EnumDecl):
                self.add(d.name.span, ("type", d.name.name), True)
                for m in d.members:
                    self.add(m.span, ("member", d.name.name, m.name), True)
            elif isinstance(d, ast.TaskDecl):
                self.task(d)
            elif isinstance(d, ast.TestDecl):
                self.test(d)
            elif isinstance(d, ast.TargetDecl):
                self.add(d.name.span, ("target", d.name.name), True)
                self.add(d.task.span, ("task", d.task.name))
                kind = d.kind.name
                for o in d.options:
                    self.add(o.key.span, ("option", kind, o.key.name))
        self.occ.sort(key=lambda o: (o.start, -o.end))
        an.occurrences = self.occ
        an.starts = [o.start for o in self.occ]

    # --- types
    def type_use(self, tu: ast.TypeUse) -> None:
        t = tu.type
        while True:
            if isinstance(t, ast.OptionalType):
                t = t.inner
            elif isinstance(t, ast.ListType):
                self.type_use(t.item)
                return
            else:
                break
        name = t.name.name
        if name in self.an.types or name in self.an.enums:
            self.add(t.name.span, ("type", name))

    def field_type(self, tname: str | None, fname: str) -> ast.TypeUse | None:
        t = self.an.types.get(tname) if tname else None
        if t is None:
            return None
        for f in t.fields:
            if f.name.name == fname:
                return f.type
        return None

    # --- tasks
    def task(self, t: ast.TaskDecl) -> None:
        name = t.name.name
        self.add(t.name.span, ("task", name), True)
        env = {}
        for p in t.params:
            self.add(p.name.span, ("param", name, p.name.name), True)
            self.type_use(p.type)
            env[p.name.name] = p.type
        self.type_use(t.returns)
        for it in t.items:
            if isinstance(it, ast.TextItem):
                self.template(it.text, name, env)
            elif isinstance(it, ast.Example):
                self.input_record(it.input, name, env)
                self.value(it.output, t.returns)
            elif isinstance(it, ast.ExamplesFile):
                path = it.path.value
                if isinstance(path, str) and it.path.span is not None:
                    base = Path(self.src.path).parent
                    self.add(it.path.span, ("file", str((base / path).resolve()) if not Path(path).is_absolute()
                                            else path))
            elif isinstance(it, ast.ConstraintDecl):
                self.expr(it.expr, name, env, t.returns)

    def test(self, td: ast.TestDecl) -> None:
        self.add(td.task.span, ("task", td.task.name))
        t = self.an.tasks.get(td.task.name)
        tname = td.task.name
        env = {p.name.name: p.type for p in t.params} if t else {}
        returns = t.returns if t else None
        for item in td.items:
            if isinstance(item, ast.Case):
                self.input_record(item.input, tname, env)
                for e in item.expects:
                    self.expr(e, tname, env, returns)
            elif isinstance(item, ast.CasesFile):  # a dataset: a path, no expressions
                continue
            else:
                for g in item.givens:
                    self.expr(g.path, tname, env, returns)
                    self.add(g.generator.func.span, ("generator", g.generator.func.name))
                    for a in g.generator.args:
                        self.expr(a.value if isinstance(a, ast.KwArg) else a, tname, env, returns)
                for c in item.checks:
                    self.expr(c, tname, env, returns)

    def input_record(self, rec: ast.RecordLit, task: str, env: dict) -> None:
        if not isinstance(rec, ast.RecordLit):
            return
        for f in rec.fields:
            if f.key.name in env:
                self.add(f.key.span, ("param", task, f.key.name))
            self.value(f.value, env.get(f.key.name))

    def value(self, v, tu: ast.TypeUse | None) -> None:
        name = _base_name(tu)
        if isinstance(v, ast.RecordLit):
            for f in v.fields:
                ft = self.field_type(name, f.key.name)
                if ft is not None:
                    self.add(f.key.span, ("field", name, f.key.name))
                self.value(f.value, ft)
        elif isinstance(v, ast.ListLit):
            item = _step(tu, 0)
            for i in v.items:
                self.value(i, item)
        elif isinstance(v, ast.EnumRef):
            self.member(v.name, v.span, name)

    def member(self, mname: str, span: Span | None, enum: str | None) -> None:
        owners = self.members.get(mname, [])
        if enum in owners:
            self.add(span, ("member", enum, mname))
        elif owners:
            self.add(span, ("member", owners[0], mname))

    def expr(self, e, task: str, env: dict, returns: ast.TypeUse | None, want: str | None = None) -> None:
        if isinstance(e, ast.Path):
            root = e.root.name
            if root in env:
                self.add(e.root.span, ("param", task, root))
                tu = env[root]
            elif root == "output":
                tu = returns
            else:
                if not e.parts:
                    self.member(root, e.root.span, want)
                return
            for part, span in zip(e.parts, e.part_spans):
                if isinstance(part, int):
                    tu = _step(tu, part)
                    continue
                tname = _base_name(tu)
                ft = self.field_type(tname, part)
                if ft is not None:
                    self.add(span, ("field", tname, part))
                tu = ft
        elif isinstance(e, ast.Call):
            from promptc.expr import FUNCTIONS

            if e.func.name in FUNCTIONS:
                self.add(e.func.span, ("function", e.func.name))
            for a in e.args:
                self.expr(a.value if isinstance(a, ast.KwArg) else a, task, env, returns, want)
        elif isinstance(e, ast.BinOp):
            left_enum = self.enum_of(e.left, env, returns)
            right_enum = self.enum_of(e.right, env, returns)
            self.expr(e.left, task, env, returns, right_enum)
            self.expr(e.right, task, env, returns, left_enum)
        elif isinstance(e, (ast.BoolOp, ast.When)):
            a, b = (e.left, e.right) if isinstance(e, ast.BoolOp) else (e.then, e.cond)
            self.expr(a, task, env, returns)
            self.expr(b, task, env, returns)
        elif isinstance(e, ast.Not):
            self.expr(e.operand, task, env, returns)
        elif isinstance(e, ast.ListLit):
            for i in e.items:
                self.expr(i, task, env, returns, want)

    def enum_of(self, e, env: dict, returns) -> str | None:
        """The enum type of a path expression, if it has one (for `x == member` and `x in [..]`)."""
        tu = self.path_type(e, env, returns)
        name = _base_name(tu)
        if name in self.an.enums:
            return name
        if tu is not None and isinstance(tu.type, ast.ListType):
            return self.enum_of_tu(tu.type.item)
        return None

    def enum_of_tu(self, tu) -> str | None:
        name = _base_name(tu)
        return name if name in self.an.enums else None

    def path_type(self, e, env: dict, returns) -> ast.TypeUse | None:
        if not isinstance(e, ast.Path):
            return None
        root = e.root.name
        tu = env.get(root) if root in env else (returns if root == "output" else None)
        for part in e.parts:
            if tu is None:
                return None
            tu = _step(tu, part) if isinstance(part, int) else self.field_type(_base_name(tu), part)
        return tu

    # --- templates: `{{ ticket.subject }}` names inputs and their fields
    def template(self, lit: ast.Literal, task: str, env: dict) -> None:
        if lit.span is None:
            return
        lsrc = lit.span.source
        raw_start = lit.span.start
        raw = lsrc.text[raw_start:lit.span.end]
        for block in _JINJA_BLOCK.finditer(raw):
            inner = block.group()
            base = raw_start + block.start()
            for m in _DOTTED.finditer(inner):
                if m.start() > 0 and inner[m.start() - 1] in ".'\"":
                    continue
                root = m.group(1)
                if root not in env:
                    continue
                s = base + m.start(1)
                self.add(lsrc.span(s, s + len(root)), ("param", task, root))
                tu = env[root]
                pos = m.end(1)
                for pm in _ATTR.finditer(m.group(0), pos - m.start()):
                    part = pm.group(1)
                    tname = _base_name(tu)
                    ft = self.field_type(tname, part)
                    if ft is None:
                        break
                    ps = base + m.start() + pm.start(1)
                    self.add(lsrc.span(ps, ps + len(part)), ("field", tname, part))
                    tu = ft


_JINJA_BLOCK = re.compile(r"\{\{[\s\S]*?\}\}|\{%[\s\S]*?%\}")
_DOTTED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)")
_ATTR = re.compile(r"\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


# ------------------------------------------------------------------ analysis
# Each top-level declaration is parsed on its own and cached by (text, first line), so an edit re-parses
# only the declaration it touches. A declaration is parsed from a text padded with the newlines before
# it, so its spans carry the right lines and columns (and `span.source.line_text` the right line) with
# no re-basing; offsets are then taken by line and column against the whole document.
_SCAN = re.compile(r'"""[\s\S]*?(?:"""|\Z)|"(?:[^"\\\n]|\\.)*"?|#[^\n]*|/(?:[^/\\\n]|\\.)+/[a-zA-Z]*|[{}\[\]()]'
                   r'|^[ \t]*(?:program|enum|type|task|test|target)\b', re.M)
_UNIT = re.compile(r"\s*(?:(task|test)\s+([A-Za-z_]\w*)|target\s+\w+\s+\w+\s+for\s+([A-Za-z_]\w*)"
                   r"|(enum|type|program)\b)")


def split_declarations(text: str) -> list[int]:
    """Offsets where top-level declarations start (each at the start of its line), 0 first."""
    bounds = [0]
    depth = 0
    for m in _SCAN.finditer(text):
        tok = m.group()
        ch = tok[:1]
        if ch in "\"#/":
            continue
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth = max(0, depth - 1)
        elif depth == 0 and m.start() > 0:
            bounds.append(m.start())
    return bounds


@dataclass
class Chunk:
    """One top-level declaration (with the comments after it), parsed on its own."""

    start: int  # offset in the document
    text: str
    line: int  # 1-based line of `start`
    src: SourceFile  # the padded text the declaration was parsed from
    program: ast.Program | None
    syntax: list[Diagnostic]
    unit: str | None  # the task a task/test/target belongs to; None for the program's types and header

    @property
    def key(self) -> tuple[str, int]:
        return self.text, self.line


class _PaddedSource(SourceFile):
    """A declaration's text after the newlines that put it on its line; the line index of the padding
    is written down directly instead of searched for (it is most of the text)."""

    def __post_init__(self) -> None:
        text = self.text
        pad = len(text) - len(text.lstrip("\n"))
        starts = list(range(pad + 1))
        find = text.find
        i = find("\n", pad)
        while i >= 0:
            starts.append(i + 1)
            i = find("\n", i + 1)
        self._starts = starts


def _parse_chunk(path: str, text: str, line: int, start: int) -> Chunk:
    from promptc.parser import parse_source

    src = _PaddedSource(path, "\n" * (line - 1) + text)
    program, syntax = parse_source(src)
    m = _UNIT.match(text)
    unit = None
    if m and (m.group(2) or m.group(3)):
        unit = m.group(2) or m.group(3)
    return Chunk(start, text, line, src, program, syntax, unit)


def _chunks(path: str, text: str, doc: SourceFile, previous: Analysis | None) -> list[Chunk]:
    prev = [c for c in previous.chunks if c.src.path == path] if previous is not None else []
    cache = {c.key: c for c in prev}
    by_text = {c.text: c for c in prev if c.program is not None and not c.syntax}
    bounds = split_declarations(text) + [len(text)]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        piece = text[a:b]
        line = doc.line_col(a)[0]
        c = cache.get((piece, line))
        if c is not None:
            c = Chunk(a, c.text, c.line, c.src, c.program, c.syntax, c.unit)
        elif piece in by_text:  # the same declaration, moved up or down: move its tree, do not parse it
            c = _move_chunk(by_text[piece], a, line)
        else:
            c = _parse_chunk(path, piece, line, a)
        out.append(c)
    return out


def _move_chunk(c: Chunk, start: int, line: int) -> Chunk:
    delta = line - c.line
    src = _PaddedSource(c.src.path, "\n" * (line - 1) + c.text)

    def span(s: Span) -> Span:
        # the padding is newlines only, so a move of `delta` lines moves every offset by `delta`
        return Span(src, s.start + delta, s.end + delta, s.line + delta, s.col, s.end_line + delta, s.end_col)

    assert c.program is not None
    return Chunk(start, c.text, line, src, _move_node(c.program, span, delta), [], c.unit)


_NODE_FIELDS: dict[type, tuple[str, ...]] = {}


def _move_node(node, span, delta: int):
    """A copy of an AST node with every span (and the line origins of triple-quoted text) moved."""
    cls = type(node)
    names = _NODE_FIELDS.get(cls)
    if names is None:
        names = _NODE_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    kwargs = {}
    for name in names:
        v = getattr(node, name)
        if isinstance(v, Span):
            v = span(v)
        elif isinstance(v, tuple):
            if name == "line_origins":
                v = tuple((ln + delta, col) for ln, col in v)
            elif v and not isinstance(v[0], (str, int)):
                v = tuple(span(x) if isinstance(x, Span) else _move_node(x, span, delta) for x in v)
        elif v is not None and not isinstance(v, (str, int, float, bool)):
            v = _move_node(v, span, delta)
        kwargs[name] = v
    return cls(**kwargs)


def _assemble(chunks: list[Chunk]) -> ast.Program | None:
    """The whole program from its declarations; None when a header is out of place (the whole text is
    then parsed in one piece, so the syntax error reads as it would in `promptc check`)."""
    name = version = None
    decls: list = []
    for i, c in enumerate(chunks):
        p = c.program
        if p is None:
            return None
        if p.name is not None:
            if name is not None or decls or any(x.program and x.program.decls for x in chunks[:i]):
                return None
            name, version = p.name, p.version
        decls.extend(p.decls)
    return ast.Program(name, version, tuple(decls))


def _unit_of(d) -> str | None:
    if isinstance(d, ast.TaskDecl):
        return d.name.name
    if isinstance(d, ast.TestDecl):
        return d.task.name
    if isinstance(d, ast.TargetDecl):
        return d.task.name
    return None


def analyze(path: str, text: str, previous: Analysis | None = None, full: bool = False) -> Analysis:
    """Parse, check and index `text`. Never raises: an internal failure becomes a diagnostic.

    With a `previous` analysis, unchanged declarations are not parsed again. When an edit stays inside
    one task's declarations (its task, tests and targets) and moves no other declaration, only that task
    is checked again (against the program's types) and the other diagnostics are kept: the result is
    marked `partial`, and a later `analyze(..., full=True)` (the server runs one when typing pauses)
    checks the whole program."""
    from promptc.check import check
    from promptc.parser import parse_source

    doc = SourceFile(path, text)
    diags = Diagnostics()
    program: ast.Program | None = None
    chunks: list[Chunk] = []
    partial = False
    try:
        chunks = _chunks(path, text, doc, previous)
        syntax = [d for c in chunks for d in c.syntax]
        if syntax:
            diags.extend(syntax[:1])  # the first syntax error, as the parser of the whole file reports
        else:
            program = _assemble(chunks)
            if program is None:  # an odd layout: fall back to one parse of the whole text
                chunks = []
                program, syntax = parse_source(doc)
                diags.extend(syntax)
        if program is not None:
            fast = None if full else _recheck_one_task(previous, chunks, program, doc)
            if fast is not None:
                diags.extend(fast)
                partial = True
            else:
                check(program, doc, diags)
    except Exception as e:  # noqa: BLE001 - the server must survive any text; say what happened instead
        program = None
        diags.error(codes.SYNTAX, f"promptc could not analyse this text ({type(e).__name__}: {e})", doc.span(0, 0),
                    hint="this is a bug in promptc; please report it with the text that caused it")
    if program is None:
        if previous is not None and previous.program is not None:
            an = Analysis(path, text, previous.src, previous.program, diags.sorted(), False)
            an.index = previous._index()
            an.chunks = [c for c in chunks if c.program is not None] or previous.chunks
            return an
        an = Analysis(path, text, doc, None, diags.sorted(), False)
        an.chunks = [c for c in chunks if c.program is not None]
        return an
    an = Analysis(path, text, doc, program, diags.sorted(), True)
    an.chunks, an.partial = chunks, partial
    return an


def _recheck_one_task(previous: Analysis | None, chunks: list[Chunk], program: ast.Program,
                      doc: SourceFile) -> list[Diagnostic] | None:
    """The diagnostics after an edit inside one task's declarations, or None when a full check is needed.

    Declarations the edit only moved (a line added or removed above them) keep their diagnostics,
    moved by as many lines."""
    from promptc.check import check

    if previous is None or not previous.syntax_ok or not previous.chunks or len(previous.chunks) != len(chunks):
        return None
    changed = [i for i, (a, b) in enumerate(zip(previous.chunks, chunks)) if a.text != b.text]
    moved = {id(a.src): (b, b.line - a.line) for a, b in zip(previous.chunks, chunks)
             if a.text == b.text and a.line != b.line}
    if not changed and not moved:
        return list(previous.diagnostics)
    units = set()
    for i in changed:
        old, new = previous.chunks[i], chunks[i]
        if old.unit is None or old.unit != new.unit or old.program is None or new.program is None:
            return None
        sig_old = [(type(d).__name__, getattr(getattr(d, "name", None), "name", None), _unit_of(d))
                   for d in old.program.decls]
        sig_new = [(type(d).__name__, getattr(getattr(d, "name", None), "name", None), _unit_of(d))
                   for d in new.program.decls]
        if sig_old != sig_new or any(u != old.unit for _, _, u in sig_new):
            return None
        units.add(old.unit)
    old_srcs = {id(previous.chunks[i].src) for i in changed}
    new_srcs = {id(chunks[i].src) for i in changed}
    examples = _example_paths(program, units, doc)
    shifts = sorted((a.line, a.line + a.text.count("\n"), b.line - a.line)
                    for a, b in zip(previous.chunks, chunks) if a.text == b.text and a.line != b.line)
    # a target's verdict on its task's outputs (E316, W302) reads the task's examples: in the unit's
    # unchanged targets it is checked again too
    old_unit = {id(c.src) for c in previous.chunks if c.unit in units}
    new_unit = {id(c.src) for c in chunks if c.unit in units}
    kept = []
    for d in previous.diagnostics:
        if d.span is not None and (id(d.span.source) in old_srcs or d.span.path in examples):
            continue
        if d.span is not None and d.code in _TASK_READING and id(d.span.source) in old_unit:
            continue
        if d.span is not None and id(d.span.source) in moved:
            d = _moved(d, *moved[id(d.span.source)])
        if shifts and d.notes:
            d = dataclasses.replace(d, notes=tuple(_moved_note(n, doc.path, shifts) for n in d.notes))
        kept.append(d)
    fresh = Diagnostics()
    if units:
        sub = ast.Program(program.name, program.version, tuple(
            d for d in program.decls if isinstance(d, (ast.EnumDecl, ast.TypeDecl)) or _unit_of(d) in units))
        check(sub, doc, fresh)
    return kept + [d for d in fresh.items if d.span is None or id(d.span.source) in new_srcs
                   or d.span.path in examples or (d.code in _TASK_READING and id(d.span.source) in new_unit)]


_TASK_READING = {codes.ENCODER_CANNOT_SERVE, codes.UNSEEN_LABEL}


def _moved(d: Diagnostic, chunk: Chunk, delta: int) -> Diagnostic:
    """`d`, located in a declaration that moved `delta` lines, on the declaration's new source."""
    s, src = d.span, chunk.src
    assert s is not None  # the caller moves only located diagnostics
    start = src.offset(s.line + delta, s.col)
    end = src.offset(s.end_line + delta, s.end_col)
    return dataclasses.replace(d, span=src.span(start, end))


_NOTE_AT = re.compile(r"(\S+):(\d+):(\d+)")


def _moved_note(note: str, path: str, shifts: list[tuple[int, int, int]]) -> str:
    """A note's `file:line:col` moved with the declaration it points into."""
    def repl(m: re.Match) -> str:
        line = int(m.group(2))
        if m.group(1) == path:
            for first, last, delta in shifts:
                if first <= line <= last:
                    return f"{m.group(1)}:{line + delta}:{m.group(3)}"
        return m.group(0)
    return _NOTE_AT.sub(repl, note)


def _example_paths(program: ast.Program, units: set[str], doc: SourceFile) -> set[str]:
    """The examples files of some tasks, as the checker names them in diagnostics."""
    out = set()
    base = Path(doc.path).parent
    for d in program.decls:
        if isinstance(d, ast.TaskDecl) and d.name.name in units:
            for f in d.example_files:
                if isinstance(f.path.value, str):
                    out.add(str(base / f.path.value))
                    out.add(f.path.value)
    return out


# ------------------------------------------------------------------ completion
@dataclass(frozen=True, slots=True)
class Completion:
    label: str
    kind: str  # keyword | type | enum | member | field | param | option | value | function | generator | snippet
    detail: str = ""
    doc: str = ""
    insert: str | None = None


_OPEN_LINE = re.compile(r"^\s*(?P<head>[A-Za-z_]+)?(?:\s+(?P<second>[A-Za-z_]+))?")


def _context(text: str, off: int) -> tuple[list[str], bool, str | None]:
    """What encloses `off` in possibly broken text: the stack of block keywords (`task`, `test`,
    `case`, ...), whether the cursor is inside a `{{ }}`/`{% %}` of a text, and the open string kind."""
    stack: list[str] = []
    i = 0
    n = min(off, len(text))
    line_start = 0
    while i < n:
        ch = text[i]
        if ch == "\n":
            line_start = i + 1
        elif ch == "#":
            j = text.find("\n", i)
            if j < 0 or j >= n:
                return stack, False, "comment"
            i = j
            continue
        elif ch == '"':
            if text.startswith('"""', i):
                j = text.find('"""', i + 3)
                if j < 0 or j + 3 > n:
                    seg = text[i + 3:n]
                    return stack, _in_jinja(seg), "long"
                i = j + 3
                continue
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                return stack, _in_jinja(text[i + 1:n]), "string"
            if text[j] == "\n":
                i = j
                continue
            i = j + 1
            continue
        elif ch == "/":
            # a regex: skip to its closing slash on the same line
            j = i + 1
            while j < n and text[j] not in "/\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        elif ch == "{":
            head = text[line_start:i]
            m = _OPEN_LINE.match(head)
            word = (m.group("head") or "") if m else ""
            stack.append(word if word in _BLOCKS and not stack_is_record(stack) else "record")
        elif ch == "}":
            if stack:
                stack.pop()
        i += 1
    return stack, False, None


_BLOCKS = ("enum", "type", "task", "test", "target", "example", "case", "property")


def stack_is_record(stack: list[str]) -> bool:
    return bool(stack) and stack[-1] == "record"


def _in_jinja(seg: str) -> bool:
    a = max(seg.rfind("{{"), seg.rfind("{%"))
    b = max(seg.rfind("}}"), seg.rfind("%}"))
    return a >= 0 and a > b


def complete(an: Analysis, text: str, pos: Pos) -> list[Completion]:
    """Completions at `pos` in the current `text` (which may not parse); names come from the last good analysis."""
    src = SourceFile(an.path, text)
    off = src.offset(pos[0] + 1, pos[1] + 1)
    line = src.line_text(pos[0] + 1)[:pos[1]]
    stack, jinja, in_string = _context(text, off)
    word = re.search(r"[A-Za-z_][A-Za-z0-9_]*$", line)
    prefix_line = line[:word.start()] if word else line
    enclosing = next((w for w in reversed(stack) if w != "record"), None)
    task = _enclosing_task(an, text, off, stack)
    if in_string == "comment":
        return []
    if in_string is not None:
        if not jinja:
            return []
        return _path_completions(an, task, prefix_line, allow_output=False)
    # targets: option names, then their values
    if enclosing == "target":
        kind = _target_kind(text, off)
        specs = OPTIONS.get(kind or "", {})
        m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\"?[A-Za-z_0-9.]*$", line)
        if m and m.group(1) in specs:
            return _option_values(specs[m.group(1)])
        method = _target_method(text, off)
        return [Completion(s.name, "option", f"{s.kind} = {_lit(s.default) if s.default is not None else '...'}",
                           option_doc(kind or "", s), f"{s.name} = ")
                for s in specs.values() if s.methods is None or method is None or method in s.methods]
    # types after `:` in a type body or a parameter list, after `->`, and inside `list[`
    if re.search(r"(->\s*|list\[\s*)$", prefix_line) or (
            enclosing in ("type",) and re.search(r":\s*$", prefix_line)) or (
            enclosing is None and re.search(r"^\s*task\b.*\(.*:\s*$", prefix_line)):
        return _type_completions(an)
    # generators after `given path =`
    if re.search(r"^\s*given\b[^=]*=\s*$", prefix_line):
        from promptc.check import GENERATORS

        return [Completion(g, "generator", "generator", an._hover_key(("generator", g)) or "") for g in GENERATORS]
    # enum members after `==`, `!=`, `in [`, `in`, and as values in records
    m = re.search(r"([A-Za-z_][A-Za-z0-9_.\[\]]*)\s*(==|!=|\bin)\s*\[?\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*,\s*)*$",
                  prefix_line)
    if m and enclosing in ("task", "test", "case", "property"):
        enum = _enum_of_path(an, task, m.group(1))
        return _member_completions(an, enum)
    expr_ctx = re.search(r"^\s*(expect|check|constraint\s+[A-Za-z_]\w*(\s+\"[^\"]*\")?\s*:|given)\b", line) \
        or re.search(r"(\band\b|\bor\b|\bnot\b|\bwhen\b|\(|,)\s*[A-Za-z_.\[\]0-9]*$", prefix_line) and \
        enclosing in ("task", "case", "property")
    if expr_ctx and enclosing in ("task", "case", "property") and not re.search(r"^\s*$", prefix_line):
        items = _path_completions(an, task, prefix_line, allow_output=not line.lstrip().startswith("given"))
        if not prefix_line.rstrip().endswith("."):
            from promptc.expr import FUNCTIONS

            items += [Completion(f, "function", "function", FUNCTIONS[f].doc, f"{f}(") for f in FUNCTIONS]
            items += [Completion(k, "keyword") for k in EXPR_KEYWORDS]
            items += _member_completions(an, None)
        return items
    if stack and stack[-1] == "record":
        if re.search(r":\s*$", prefix_line):
            return _member_completions(an, None) + [Completion(k, "keyword") for k in ("true", "false", "null")]
        return []
    if prefix_line.strip():
        return []
    # keywords at the start of a line, by block
    words = {None: TOP_KEYWORDS, "task": TASK_KEYWORDS, "test": TEST_KEYWORDS, "case": CASE_KEYWORDS,
             "example": EXAMPLE_KEYWORDS, "property": PROPERTY_KEYWORDS}.get(enclosing, ())
    return [Completion(k, "keyword", "keyword") for k in words]


def _type_completions(an: Analysis) -> list[Completion]:
    out = [Completion(p, "type", "built-in type") for p in PRIMITIVES]
    out.append(Completion("list", "type", "list[T]", insert="list["))
    out += [Completion(n, "type", "type", _code(type_block(t))) for n, t in an.types.items()]
    out += [Completion(n, "enum", "enum", an._hover_key(("type", n)) or "") for n in an.enums]
    return out


def _member_completions(an: Analysis, enum: str | None) -> list[Completion]:
    enums = [an.enums[enum]] if enum in an.enums else list(an.enums.values())
    return [Completion(m.name, "member", f"{e.name.name} member") for e in enums for m in e.members]


def _option_values(spec: OptionSpec) -> list[Completion]:
    if spec.kind == "bool":
        return [Completion("true", "value"), Completion("false", "value")]
    if spec.choices:
        return [Completion(f'"{c}"', "value", spec.name, insert=f'"{c}"') for c in spec.choices]
    if spec.name == "method":
        return [Completion(f'"{m}"', "value", "method") for m in TUNE_METHODS]
    return []


def _enclosing_task(an: Analysis, text: str, off: int, stack: list[str]) -> str | None:
    """The task whose names are in scope at `off`: the task block or the `test TASK` block around it."""
    found = re.findall(r"^(?:task|test)\s+([A-Za-z_][A-Za-z0-9_]*)", text[:off], re.M)
    return found[-1] if found else None


def _target_kind(text: str, off: int) -> str | None:
    found = re.findall(r"^\s*target\s+([A-Za-z_]+)", text[:off], re.M)
    return found[-1] if found else None


def _target_method(text: str, off: int) -> str | None:
    start = text.rfind("target", 0, off)
    end = text.find("}", off)
    m = re.search(r"\bmethod\s*=\s*\"([a-z_]+)\"", text[start:end if end >= 0 else len(text)])
    return m.group(1) if m else None


def _path_type(an: Analysis, task: str | None, dotted: str) -> ast.TypeUse | None | bool:
    t = an.tasks.get(task or "")
    if t is None:
        return None
    parts = [p for p in re.split(r"\.|\[\d*\]?", dotted) if p]
    if not parts:
        return None
    env = {p.name.name: p.type for p in t.params}
    root = parts[0]
    tu = env.get(root) if root in env else (t.returns if root == "output" else None)
    for part in parts[1:]:
        if tu is None:
            return None
        inner = tu.type
        while isinstance(inner, ast.OptionalType):
            inner = inner.inner
        if isinstance(inner, ast.ListType):
            tu = inner.item
            inner = tu.type
        name = _base_name(tu)
        tdecl = an.types.get(name or "")
        f = next((f for f in tdecl.fields if f.name.name == part), None) if tdecl else None
        tu = f.type if f else None
    return tu


def _enum_of_path(an: Analysis, task: str | None, dotted: str) -> str | None:
    tu = _path_type(an, task, dotted)
    if not isinstance(tu, ast.TypeUse):
        return None
    inner = tu.type
    while isinstance(inner, ast.OptionalType):
        inner = inner.inner
    if isinstance(inner, ast.ListType):
        tu = inner.item
    name = _base_name(tu)
    return name if name in an.enums else None


def _path_completions(an: Analysis, task: str | None, prefix_line: str, allow_output: bool) -> list[Completion]:
    t = an.tasks.get(task or "")
    if t is None:
        return []
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)\.\s*$", prefix_line)
    if m:
        tu = _path_type(an, task, m.group(1))
        if not isinstance(tu, ast.TypeUse):
            return []
        inner = tu.type
        while isinstance(inner, ast.OptionalType):
            inner = inner.inner
        if isinstance(inner, ast.ListType):
            return []
        tdecl = an.types.get(_base_name(tu) or "")
        if tdecl is None:
            return []
        return [Completion(f.name.name, "field", fmt_type_use(f.type), f"field of `{tdecl.name.name}`")
                for f in tdecl.fields]
    out = [Completion(p.name.name, "param", fmt_type_use(p.type), f"input of task `{t.name.name}`")
           for p in t.params]
    if allow_output:
        out.append(Completion("output", "param", fmt_type_use(t.returns), "the task's output"))
    return out
