"""Check stage: names, types, templates, examples, constraints, tests and targets.

It reports every mistake it can find (it never stops at the first) and, along the way, resolves
what the lower stage needs: IR types, example values, typed constraint expressions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from promptc import ast, ir
from promptc.diagnostics import Diagnostics, closest
from promptc.expr import Checker, check_regex, constraint_failures, to_source
from promptc.options import OPTIONS, TUNE_METHODS, OptionSpec
from promptc.schema import validate
from promptc.source import SourceDecodeError, SourceFile, Span

PRIMITIVES: dict[str, ir.Type] = {"str": ir.StrT(), "int": ir.IntT(), "float": ir.FloatT(), "bool": ir.BoolT()}
FIELD_CONSTRAINTS = ("min_len", "max_len", "pattern", "ge", "le")
EXAMPLE_KEYS = {"input", "output", "name", "provenance"}

# given generators: name -> (positional arity range, keyword names, the kinds of field they fill)
GENERATORS: dict[str, tuple[tuple[int, int], tuple[str, ...], tuple[type, ...]]] = {
    "text": ((0, 0), ("min_len", "max_len", "alphabet"), (ir.StrT,)),
    "regex": ((1, 1), (), (ir.StrT,)),
    "one_of": ((1, 10_000), (), (ir.StrT, ir.IntT, ir.FloatT, ir.BoolT, ir.EnumT)),
    "ints": ((2, 2), (), (ir.IntT, ir.FloatT)),
    "floats": ((2, 2), (), (ir.FloatT,)),
    "bools": ((0, 0), (), (ir.BoolT,)),
}
PROPERTY_SETTINGS = {"max_examples": "int"}


@dataclass
class CheckedExample:
    example: ir.Example
    span: Span | None  # inline examples and examples-file lines both have one


@dataclass
class CheckedTask:
    decl: ast.TaskDecl
    params: tuple[ir.Param, ...]
    output: ir.Type
    env: dict[str, ir.Type]
    examples: list[CheckedExample] = field(default_factory=list)
    constraints: list[ir.Constraint] = field(default_factory=list)
    example_files: list[tuple[str, bytes]] = field(default_factory=list)  # (path, content) for hashing


@dataclass
class Checked:
    """What the checker resolved. `lower` turns it into an ir.Program when there are no errors."""

    program: ast.Program
    source: SourceFile
    types: dict[str, ir.Type] = field(default_factory=dict)
    tasks: dict[str, CheckedTask] = field(default_factory=dict)
    tests: list[ir.TestSuite] = field(default_factory=list)
    targets: dict[str, ir.Target] = field(default_factory=dict)


class _Unresolved(Exception):
    pass


class ProgramChecker:
    def __init__(self, program: ast.Program, src: SourceFile, diags: Diagnostics):
        self.p = program
        self.src = src
        self.d = diags
        self.out = Checked(program, src)
        self.enums: dict[str, ir.EnumT] = {}
        self.records: dict[str, ast.TypeDecl] = {}
        self.resolved: dict[str, ir.Type] = {}
        self._resolving: list[str] = []
        self.pattern_spans: dict[str, Span] = {}

    # ---------------------------------------------------------------- driver
    def run(self) -> Checked:
        self._declare_types()
        for name in list(self.records):
            self._record(name, self.records[name].name.span)
        self.out.types = {**self.enums, **{k: v for k, v in self.resolved.items()}}
        self._check_tasks()
        self._check_tests()
        self._check_targets()
        return self.out

    def _dup(self, seen: dict[str, Span], ident: ast.Ident, what: str) -> bool:
        if ident.name in seen:
            prev = seen[ident.name]
            self.d.error("E206", f"duplicate {what} '{ident.name}'", ident.span,
                         notes=(f"first declared at {prev}",))
            return True
        seen[ident.name] = ident.span
        return False

    # ---------------------------------------------------------------- types
    def _declare_types(self) -> None:
        seen: dict[str, Span] = {}
        for d in self.p.decls:
            if isinstance(d, (ast.EnumDecl, ast.TypeDecl)):
                if d.name.name in PRIMITIVES or d.name.name == "list":
                    self.d.error("E206", f"'{d.name.name}' is a built-in type and cannot be redeclared", d.name.span)
                    continue
                if self._dup(seen, d.name, "type"):
                    continue
            if isinstance(d, ast.EnumDecl):
                members: dict[str, Span] = {}
                for m in d.members:
                    self._dup(members, m, f"member of enum {d.name.name}")
                if not d.members:
                    self.d.error("E302", f"enum {d.name.name} has no members", d.span)
                self.enums[d.name.name] = ir.EnumT(d.name.name, tuple(members))
            elif isinstance(d, ast.TypeDecl):
                self.records[d.name.name] = d

    def _record(self, name: str, use_span: Span) -> ir.Type:
        if name in self.resolved:
            return self.resolved[name]
        if name in self._resolving:
            cycle = " -> ".join(self._resolving[self._resolving.index(name):] + [name])
            self.d.error("E308", f"recursive type: {cycle}", use_span,
                         hint="records cannot contain themselves; flatten the structure or use a list of ids")
            raise _Unresolved
        self._resolving.append(name)
        decl = self.records[name]
        fields: list[tuple[str, ir.Type]] = []
        seen: dict[str, Span] = {}
        try:
            for f in decl.fields:
                if self._dup(seen, f.name, f"field in {name}"):
                    continue
                fields.append((f.name.name, self.type_use(f.type)))
        except _Unresolved:
            self._resolving.pop()
            self.resolved[name] = ir.AnyT()
            raise
        self._resolving.pop()
        t = ir.RecordT(name, tuple(fields))
        self.resolved[name] = t
        return t

    def type_use(self, tu: ast.TypeUse) -> ir.Type:
        try:
            base = self._type_expr(tu.type)
        except _Unresolved:
            return ir.AnyT()
        if tu.constraints:
            base = self._apply_constraints(base, tu.constraints)
        return base

    def _type_expr(self, te: ast.TypeExpr) -> ir.Type:
        if isinstance(te, ast.OptionalType):
            inner = self._type_expr(te.inner)
            return inner if isinstance(inner, ir.OptionalT) else ir.OptionalT(inner)
        if isinstance(te, ast.ListType):
            return ir.ListT(self.type_use(te.item))
        name = te.name.name
        if name in PRIMITIVES:
            return PRIMITIVES[name]
        if name in self.enums:
            return self.enums[name]
        if name in self.records:
            try:
                return self._record(name, te.span)
            except _Unresolved:
                if self._resolving:
                    raise
                return ir.AnyT()
        near = closest(name, [*PRIMITIVES, *self.enums, *self.records])
        self.d.error("E202", f"unknown type '{name}'", te.name.span,
                     hint=f"did you mean '{near}'?" if near else "declare it with `type` or `enum`")
        return ir.AnyT()

    def _apply_constraints(self, t: ir.Type, cs: tuple[ast.FieldConstraint, ...]) -> ir.Type:
        if isinstance(t, ir.OptionalT):
            return ir.OptionalT(self._apply_constraints(t.inner, cs))
        if isinstance(t, ir.AnyT):
            return t
        vals: dict[str, Any] = {}
        seen: dict[str, Span] = {}
        for c in cs:
            key = c.name.name
            if key not in FIELD_CONSTRAINTS:
                near = closest(key, FIELD_CONSTRAINTS)
                self.d.error("E215", f"unknown field constraint '{key}'", c.name.span,
                             hint=f"did you mean '{near}'?" if near else
                             f"field constraints: {', '.join(FIELD_CONSTRAINTS)}")
                continue
            if self._dup(seen, c.name, "field constraint"):
                continue
            applies = {
                "min_len": (ir.StrT, ir.ListT), "max_len": (ir.StrT, ir.ListT), "pattern": (ir.StrT,),
                "ge": (ir.IntT, ir.FloatT), "le": (ir.IntT, ir.FloatT),
            }[key]
            if not isinstance(t, applies):
                kinds = {"min_len": "str and list", "max_len": "str and list", "pattern": "str",
                         "ge": "int and float", "le": "int and float"}[key]
                self.d.error("E306", f"'{key}' does not apply to {t}", c.span, hint=f"'{key}' applies to {kinds}")
                continue
            v = c.value
            if key == "pattern":
                if isinstance(v, ast.Regex):
                    if check_regex(v, self.d):
                        if v.flags:
                            self.d.warning("W402", "flags on a field pattern are ignored", v.span,
                                           hint="patterns must match the whole value; use (?i) inline for case")
                        vals[key] = v.pattern
                        self.pattern_spans.setdefault(v.pattern, v.span)
                elif isinstance(v, ast.Literal) and isinstance(v.value, str):
                    if check_regex(ast.Regex(v.value, "", v.span), self.d):
                        vals[key] = v.value
                        self.pattern_spans.setdefault(v.value, v.span)
                else:
                    self.d.error("E307", "pattern takes a /regex/", v.span)
            elif key in ("min_len", "max_len"):
                if isinstance(v, ast.Literal) and isinstance(v.value, int) and not isinstance(v.value, bool) \
                        and v.value >= 0:
                    vals[key] = v.value
                else:
                    self.d.error("E307", f"{key} takes a non-negative integer", v.span)
            else:
                if isinstance(v, ast.Literal) and isinstance(v.value, (int, float)) and not isinstance(v.value, bool):
                    vals[key] = v.value
                else:
                    self.d.error("E307", f"{key} takes a number", v.span)
        for lo, hi in (("min_len", "max_len"), ("ge", "le")):
            if lo in vals and hi in vals and vals[lo] > vals[hi]:
                span = next(c.span for c in cs if c.name.name == lo).join(
                    next(c.span for c in cs if c.name.name == hi))
                self.d.error("E305", f"{lo}={vals[lo]} is greater than {hi}={vals[hi]}", span,
                             hint="no value could satisfy both bounds")
        if isinstance(t, ir.StrT):
            return ir.StrT(vals.get("min_len"), vals.get("max_len"), vals.get("pattern"))
        if isinstance(t, ir.ListT):
            return ir.ListT(t.item, vals.get("min_len"), vals.get("max_len"))
        if isinstance(t, ir.IntT):
            return ir.IntT(vals.get("ge"), vals.get("le"))
        if isinstance(t, ir.FloatT):
            return ir.FloatT(vals.get("ge"), vals.get("le"))
        return t

    # ---------------------------------------------------------------- values (literals -> JSON)
    def value(self, v: ast.Value, t: ir.Type, code_ctx: str = "") -> Any:
        """Convert a literal to a JSON value of type `t`, reporting every mismatch at its span."""
        if isinstance(t, ir.OptionalT):
            if isinstance(v, ast.Literal) and v.value is None:
                return None
            return self.value(v, t.inner, code_ctx)
        if isinstance(t, ir.AnyT):
            return self._any_value(v)
        if isinstance(v, ast.Literal) and v.value is None:
            self.d.error("E302", f"expected {t}, got null", v.span,
                         hint=f"make the type optional ({t}?) to allow null")
            return None
        if isinstance(t, ir.EnumT):
            if isinstance(v, ast.EnumRef) or (isinstance(v, ast.Literal) and isinstance(v.value, str)):
                name = v.name if isinstance(v, ast.EnumRef) else v.value
                if name not in t.members:
                    near = closest(name, t.members)
                    self.d.error("E207", f"'{name}' is not a member of enum {t.name}", v.span,
                                 hint=f"did you mean '{near}'?" if near else f"members: {', '.join(t.members)}")
                return name
            return self._mismatch(v, t)
        if isinstance(t, ir.RecordT):
            if not isinstance(v, ast.RecordLit):
                return self._mismatch(v, t)
            out: dict[str, Any] = {}
            seen: dict[str, Span] = {}
            for f in v.fields:
                if f.key.name in seen:
                    self.d.error("E214", f"duplicate key '{f.key.name}'", f.key.span,
                                 notes=(f"first given at {seen[f.key.name]}",))
                    continue
                seen[f.key.name] = f.key.span
                ft = t.field(f.key.name)
                if ft is None:
                    near = closest(f.key.name, t.field_names)
                    self.d.error("E204", f"unknown field '{f.key.name}' in {t.name}", f.key.span,
                                 hint=f"did you mean '{near}'?" if near else
                                 f"fields of {t.name}: {', '.join(t.field_names)}")
                    continue
                out[f.key.name] = self.value(f.value, ft, code_ctx)
            missing = [k for k, ft in t.fields if k not in seen and not isinstance(ft, ir.OptionalT)]
            if missing:
                self.d.error("E302", f"missing field{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(repr(m) for m in missing)} of {t.name}", v.span)
            return out
        if isinstance(t, ir.ListT):
            if not isinstance(v, ast.ListLit):
                return self._mismatch(v, t)
            items = [self.value(i, t.item, code_ctx) for i in v.items]
            for viol in validate(ir.ListT(ir.AnyT(), t.min_len, t.max_len), items):
                self.d.error("E303", viol.message, v.span)
            return items
        if isinstance(v, ast.Literal) and not isinstance(v.value, (dict, list)):
            val = v.value
            ok = (isinstance(t, ir.StrT) and isinstance(val, str)) or \
                 (isinstance(t, ir.BoolT) and isinstance(val, bool)) or \
                 (isinstance(t, ir.IntT) and isinstance(val, int) and not isinstance(val, bool)) or \
                 (isinstance(t, ir.FloatT) and isinstance(val, (int, float)) and not isinstance(val, bool))
            if not ok:
                return self._mismatch(v, t)
            for viol in validate(t, val):
                self.d.error("E303", viol.message, v.span)
            return float(val) if isinstance(t, ir.FloatT) else val
        return self._mismatch(v, t)

    def _mismatch(self, v: ast.Value, t: ir.Type) -> Any:
        got = _literal_kind(v)
        hint = None
        if isinstance(t, ir.EnumT):
            hint = f"write a member of {t.name} as a bare name: {', '.join(t.members[:5])}"
        elif isinstance(t, ir.StrT) and isinstance(v, ast.EnumRef):
            hint = f'strings are quoted: "{v.name}"'
        self.d.error("E302", f"expected {t}, got {got}", v.span, hint=hint)
        return self._any_value(v)

    def _any_value(self, v: ast.Value) -> Any:
        if isinstance(v, ast.Literal):
            return v.value
        if isinstance(v, ast.EnumRef):
            return v.name
        if isinstance(v, ast.Regex):
            return v.pattern
        if isinstance(v, ast.ListLit):
            return [self._any_value(i) for i in v.items]
        if isinstance(v, ast.RecordLit):
            return {f.key.name: self._any_value(f.value) for f in v.fields}
        return None

    # ---------------------------------------------------------------- tasks
    def _check_tasks(self) -> None:
        seen: dict[str, Span] = {}
        for task in self.p.of(ast.TaskDecl):
            if self._dup(seen, task.name, "task"):
                continue
            self.out.tasks[task.name.name] = self._task(task)

    def _task(self, task: ast.TaskDecl) -> CheckedTask:
        params: list[ir.Param] = []
        pseen: dict[str, Span] = {}
        for prm in task.params:
            t = self.type_use(prm.type)
            if prm.name.name == "output":
                self.d.error("E206", "'output' is reserved for the task's output", prm.name.span,
                             hint="rename the parameter")
                continue
            if not self._dup(pseen, prm.name, "parameter"):
                params.append(ir.Param(prm.name.name, t))
        out_t = self.type_use(task.returns)
        self._warn_unenforceable(out_t, set())
        env: dict[str, ir.Type] = {p.name: p.type for p in params}
        ct = CheckedTask(task, tuple(params), out_t, {**env, "output": out_t})

        # system and prompt texts (with optional variants)
        template_mark = len(self.d.items)
        for kind in ("system", "prompt"):
            items = task.texts(kind)
            vseen: dict[str, Span] = {}
            defaults = [i for i in items if i.variant is None]
            if len(defaults) > 1:
                self.d.error("E312", f"task '{task.name.name}' has more than one {kind}", defaults[1].span,
                             hint=f'name alternatives: {kind} variant "name" """..."""')
            for i in items:
                if i.variant is not None:
                    self._dup(vseen, ast.Ident(i.variant, i.span), f"{kind} variant")
                self._check_template(i.text, env)
        if not task.texts("prompt"):
            self.d.error("E309", f"task '{task.name.name}' has no prompt", task.name.span,
                         hint='add a template: prompt """ ... {{ input }} ... """')
        elif not any(d.is_error for d in self.d.items[template_mark:]):
            used = set()
            for i in (*task.texts("prompt"), *task.texts("system")):
                used |= _template_names(i.text.value)
            for prm in task.params:
                if prm.name.name not in used and prm.name.name in env:
                    self.d.warning("W201", f"input '{prm.name.name}' is never used in the prompt", prm.name.span,
                                   hint=f"reference it as {{{{ {prm.name.name} }}}}, or remove it")

        # constraints
        cseen: dict[str, Span] = {}
        for c in task.constraints:
            if self._dup(cseen, c.name, "constraint"):
                continue
            mark = len(self.d.items)
            node = Checker(ct.env, self.enums, self.d).check_bool(c.expr)
            if not any(d.is_error for d in self.d.items[mark:]):
                ct.constraints.append(ir.Constraint(c.name.name, c.description, node, to_source(node),
                                                    str(c.span)))

        # examples
        in_t = ir.RecordT(f"{task.name.name} input", tuple((p.name, p.type) for p in params))
        for ex in task.examples:
            mark = len(self.d.items)
            inp = self.value(ex.input, in_t)
            outv = self.value(ex.output, out_t)
            if not any(d.is_error for d in self.d.items[mark:]):
                name = ex.name
                ce = CheckedExample(ir.Example(inp, outv, str(ex.span), name), ex.span)
                self._example_constraints(ct, ce, ex.output.span if ex.output is not None else ex.span)
                ct.examples.append(ce)
        for ef in task.example_files:
            self._examples_file(ct, ef, in_t)
        return ct

    def _warn_unenforceable(self, t: ir.Type, seen: set[str]) -> None:
        """W301: an output pattern that constrained decoding cannot enforce (it is still validated)."""
        from promptc.schema import engine_unsupported

        t = ir.strip_optional(t)
        if isinstance(t, ir.StrT) and t.pattern is not None and t.pattern not in seen:
            seen.add(t.pattern)
            what = engine_unsupported(t.pattern)
            if what:
                self.d.warning("W301", f"constrained decoding cannot enforce {what} in this pattern",
                               self.pattern_spans.get(t.pattern),
                               hint="outputs are still validated against it after generation; "
                                    "rewrite the pattern without it to have it enforced while decoding")
        elif isinstance(t, ir.ListT):
            self._warn_unenforceable(t.item, seen)
        elif isinstance(t, ir.RecordT):
            for _, ft in t.fields:
                self._warn_unenforceable(ft, seen)

    def _example_constraints(self, ct: CheckedTask, ce: CheckedExample, span: Span | None) -> None:
        env = {**ce.example.input, "output": ce.example.output}
        for f in constraint_failures(ct.constraints, env):
            c = f.constraint
            desc = f" ({c.description})" if c.description else ""
            self.d.error("E304", f"example violates constraint '{c.name}'{desc}", span,
                         notes=(f"constraint: {c.source}", *f.details),
                         hint="fix the example, or the constraint if the example is right")

    def _examples_file(self, ct: CheckedTask, ef: ast.ExamplesFile, in_t: ir.RecordT) -> None:
        rel = ef.path.value
        base = FsPath(self.src.path).parent if self.src.path not in ("<string>", "") else FsPath(".")
        path = base / rel
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.d.error("E108", f"examples file not found: {rel}", ef.path.span,
                         hint=f"the path is resolved relative to the program: {path}")
            return
        except OSError as e:
            self.d.error("E108", f"cannot read examples file {rel}: {e.strerror or e}", ef.path.span)
            return
        except ValueError:  # e.g. a NUL byte in the path
            self.d.error("E108", f"invalid examples file path {rel!r}", ef.path.span)
            return
        ct.example_files.append((str(path), data))
        try:
            fsrc = SourceFile.from_bytes(str(path), data)
        except SourceDecodeError as e:
            bad = SourceFile(e.path, e.text)
            self.d.error("E101", f"examples file is not valid UTF-8 (byte 0x{e.byte:02x})",
                         bad.span_at(e.line, e.col), hint="save the file as UTF-8")
            return
        for ce in read_examples(fsrc, str(path), in_t, ct.output, self.d):
            self._example_constraints(ct, ce, ce.span)
            ct.examples.append(ce)

    # ---------------------------------------------------------------- templates
    def _check_template(self, lit: ast.Literal, env: dict[str, ir.Type]) -> None:
        from jinja2 import TemplateSyntaxError, nodes

        from promptc.templating import environment

        jenv = environment()
        try:
            tree = jenv.parse(lit.value)
        except TemplateSyntaxError as e:
            self.d.error("E105", f"template syntax error: {e.message}", _template_span(lit, e.lineno or 1, None))
            return
        bound: set[str] = {"loop", "range", "namespace", "cycler", "joiner", "dict", "lipsum"}
        for n in tree.find_all(nodes.Name):
            if n.ctx in ("store", "param"):
                bound.add(n.name)
        scope: dict[str, ir.Type | None] = {**env}
        _TemplateWalker(self, lit, jenv).visit(tree, scope, bound)

    # ---------------------------------------------------------------- tests
    def _check_tests(self) -> None:
        for test in self.p.of(ast.TestDecl):
            ct = self.out.tasks.get(test.task.name)
            if ct is None:
                near = closest(test.task.name, [t.name.name for t in self.p.of(ast.TaskDecl)])
                self.d.error("E203", f"unknown task '{test.task.name}'", test.task.span,
                             hint=f"did you mean '{near}'?" if near else "tests name the task they test")
                continue
            in_t = ir.RecordT(f"{ct.decl.name.name} input", tuple((p.name, p.type) for p in ct.params))
            example_inputs = {_canon(ce.example.input): ce for ce in ct.examples}
            cases, props = [], []
            names: dict[str, Span] = {}
            for item in test.items:
                self._dup(names, ast.Ident(item.name, item.span), "test")
                if isinstance(item, ast.Case):
                    mark = len(self.d.items)
                    inp = self.value(item.input, in_t)
                    ok = not any(d.is_error for d in self.d.items[mark:])
                    expects = []
                    for e in item.expects:
                        m2 = len(self.d.items)
                        node = Checker(ct.env, self.enums, self.d).check_bool(e)
                        if not any(d.is_error for d in self.d.items[m2:]):
                            expects.append((node, to_source(node)))
                    if ok:
                        dup = example_inputs.get(_canon(inp))
                        if dup is not None:
                            self.d.warning("W401", f"test case '{item.name}' uses the same input as an example",
                                           item.input.span, notes=(f"the example is at {dup.example.origin}",),
                                           hint="tests must be unseen: change the case or drop the example")
                        cases.append(ir.Case(item.name, inp, tuple(expects), str(item.span)))
                else:
                    props.append(self._property(item, ct, in_t))
            self.out.tests.append(ir.TestSuite(ct.decl.name.name, tuple(cases), tuple(p for p in props if p)))

    def _property(self, item: ast.Property, ct: CheckedTask, in_t: ir.RecordT) -> ir.Property | None:
        mark = len(self.d.items)
        givens = []
        gseen: dict[str, Span] = {}
        for g in item.givens:
            self._dup(gseen, ast.Ident(g.path.dotted(), g.path.span), "given path")
            ft = self._given_target(g.path, in_t)
            gen = self._generator(g.generator, ft)
            if gen is not None and ft is not None:
                givens.append(ir.Given((g.path.root.name, *g.path.parts), gen[0], gen[1], gen[2],
                                       f"{g.path.dotted()} = {g.generator.func.name}(...)"))
        checks = []
        for e in item.checks:
            node = Checker(ct.env, self.enums, self.d).check_bool(e)
            checks.append((node, to_source(node)))
        max_examples = None
        for s in item.settings:
            key = s.name.name
            if key not in PROPERTY_SETTINGS:
                self.d.error("E217", f"unknown property setting '{key}'", s.name.span,
                             hint=f"settings: {', '.join(PROPERTY_SETTINGS)}")
                continue
            v = s.value
            if not (isinstance(v, ast.Literal) and isinstance(v.value, int) and not isinstance(v.value, bool)
                    and v.value > 0):
                self.d.error("E402", f"{key} takes a positive integer", v.span)
                continue
            max_examples = v.value
        if any(d.is_error for d in self.d.items[mark:]):
            return None
        return ir.Property(item.name, tuple(givens), tuple(checks), max_examples, str(item.span))

    def _given_target(self, path: ast.Path, in_t: ir.RecordT) -> ir.Type | None:
        t: ir.Type | None = in_t.field(path.root.name)
        if t is None:
            near = closest(path.root.name, in_t.field_names)
            self.d.error("E213", f"given path '{path.dotted()}' does not exist: no input '{path.root.name}'",
                         path.root.span, hint=f"did you mean '{near}'?" if near else
                         f"inputs: {', '.join(in_t.field_names)}")
            return None
        spans = path.part_spans or (path.span,) * len(path.parts)
        for part, span in zip(path.parts, spans):
            base = ir.strip_optional(t)
            if isinstance(part, str) and isinstance(base, ir.RecordT) and base.field(part) is not None:
                t = base.field(part)
                continue
            if isinstance(part, int) and isinstance(base, ir.ListT):
                t = base.item
                continue
            hint = None
            if isinstance(base, ir.RecordT):
                near = closest(str(part), base.field_names)
                hint = f"did you mean '{near}'?" if near else f"fields of {base.name}: {', '.join(base.field_names)}"
            self.d.error("E213", f"given path '{path.dotted()}' does not exist: {base} has no '{part}'", span,
                         hint=hint)
            return None
        return t

    def _generator(self, call: ast.Call, ft: ir.Type | None):
        name = call.func.name
        spec = GENERATORS.get(name)
        if spec is None:
            near = closest(name, GENERATORS)
            self.d.error("E212", f"unknown generator '{name}'", call.func.span,
                         hint=f"did you mean '{near}'?" if near else f"generators: {', '.join(GENERATORS)}")
            return None
        (lo, hi), kwnames, kinds = spec
        pos = [a for a in call.args if not isinstance(a, ast.KwArg)]
        kws = [a for a in call.args if isinstance(a, ast.KwArg)]
        ok = True
        if not lo <= len(pos) <= hi:
            want = str(lo) if lo == hi else f"at least {lo}"
            self.d.error("E403", f"{name}() takes {want} positional argument{'s' if hi != 1 else ''}, "
                         f"got {len(pos)}", call.span)
            ok = False
        base = ir.strip_optional(ft) if ft is not None else None
        if base is not None and not isinstance(base, (ir.AnyT, *kinds)):
            self.d.error("E403", f"{name}() cannot generate values for a field of type {ft}", call.span,
                         hint=_generator_hint(base))
            ok = False
        args: list[Any] = []
        for a in pos:
            if name == "regex":
                if isinstance(a, ast.Regex):
                    if check_regex(a, self.d):
                        args.append(a.pattern)
                    else:
                        ok = False
                else:
                    self.d.error("E403", "regex() takes a /regex/", a.span)
                    ok = False
            elif name == "one_of":
                mark = len(self.d.items)
                target = base if base is not None else ir.AnyT()
                val = self.value(_expr_as_value(a), target)
                if any(d.is_error for d in self.d.items[mark:]):
                    ok = False
                args.append(val)
            else:
                if isinstance(a, ast.Literal) and isinstance(a.value, (int, float)) and not isinstance(a.value, bool):
                    args.append(a.value)
                else:
                    self.d.error("E403", f"{name}() takes numbers", a.span)
                    ok = False
        if name in ("ints", "floats") and len(args) == 2 and args[0] > args[1]:
            self.d.error("E305", f"{name}({args[0]}, {args[1]}): the low bound is above the high bound", call.span)
            ok = False
        kwargs: list[tuple[str, Any]] = []
        for k in kws:
            if k.name.name not in kwnames:
                self.d.error("E403", f"{name}() has no argument '{k.name.name}'", k.name.span,
                             hint=f"arguments: {', '.join(kwnames)}" if kwnames else None)
                ok = False
                continue
            v = k.value
            if k.name.name == "alphabet":
                good = isinstance(v, ast.Literal) and isinstance(v.value, str) and v.value
            else:
                good = isinstance(v, ast.Literal) and isinstance(v.value, int) and not isinstance(v.value, bool) \
                    and v.value >= 0
            if not good:
                self.d.error("E403", f"{k.name.name} takes "
                             f"{'a non-empty string' if k.name.name == 'alphabet' else 'a non-negative integer'}",
                             v.span)
                ok = False
                continue
            kwargs.append((k.name.name, v.value))
        kd = dict(kwargs)
        if "min_len" in kd and "max_len" in kd and kd["min_len"] > kd["max_len"]:
            self.d.error("E305", f"min_len={kd['min_len']} is greater than max_len={kd['max_len']}", call.span)
            ok = False
        return (name, tuple(args), tuple(kwargs)) if ok else None

    # ---------------------------------------------------------------- targets
    def _check_targets(self) -> None:
        seen: dict[str, Span] = {}
        for tg in self.p.of(ast.TargetDecl):
            dup = self._dup(seen, tg.name, "target")
            kind = tg.kind.name
            if kind not in OPTIONS:
                near = closest(kind, OPTIONS)
                self.d.error("E216", f"unknown target kind '{kind}'", tg.kind.span,
                             hint=f"did you mean '{near}'?" if near else "target kinds: text, tune")
                continue
            if tg.task.name not in self.out.tasks:
                near = closest(tg.task.name, [t.name.name for t in self.p.of(ast.TaskDecl)])
                self.d.error("E203", f"unknown task '{tg.task.name}'", tg.task.span,
                             hint=f"did you mean '{near}'?" if near else None)
            opts = self._options(kind, tg.options)
            if opts is not None and kind == "text" and tg.task.name in self.out.tasks:
                self._check_variants(tg, opts)
            if opts is not None and not dup:
                self.out.targets[tg.name.name] = ir.Target(kind, tg.name.name, tg.task.name, opts)

    def _check_variants(self, tg: ast.TargetDecl, opts: dict[str, Any]) -> None:
        task = self.out.tasks[tg.task.name].decl
        for kind in ("system", "prompt"):
            want = opts.get(f"{kind}_variant")
            if want is None:
                continue
            names = [i.variant for i in task.texts(kind) if i.variant is not None]
            if want not in names:
                opt = next(o for o in tg.options if o.key.name == f"{kind}_variant")
                near = closest(want, names)
                self.d.error("E307", f"task '{task.name.name}' has no {kind} variant '{want}'", opt.value.span,
                             hint=f"did you mean '{near}'?" if near else
                             (f"variants: {', '.join(names)}" if names else f'declare one: {kind} variant "{want}" "..."'))

    def _options(self, kind: str, options: tuple[ast.Option, ...]) -> dict[str, Any] | None:
        specs = OPTIONS[kind]
        mark = len(self.d.items)
        vals: dict[str, Any] = {}
        spans: dict[str, ast.Option] = {}
        oseen: dict[str, Span] = {}
        for o in options:
            key = o.key.name
            if self._dup(oseen, o.key, "option"):
                continue
            spec = specs.get(key)
            if spec is None:
                near = closest(key, specs)
                self.d.error("E208", f"unknown {kind} target option '{key}'", o.key.span,
                             hint=f"did you mean '{near}'?" if near else f"options: {', '.join(specs)}")
                continue
            v = self._option_value(spec, o.value)
            if v is not _BAD:
                vals[key] = v
                spans[key] = o
        if kind == "tune":
            method = vals.get("method", specs["method"].default)
            for key, o in spans.items():
                spec = specs[key]
                if spec.methods is not None and method not in spec.methods:
                    self.d.error("E311", f"option '{key}' does not apply to method '{method}'", o.key.span,
                                 hint=f"'{key}' applies to: {', '.join(spec.methods)}")
            if vals.get("init") == "text" and not vals.get("init_text"):
                self.d.error("E307", 'init = "text" needs init_text = "..."', spans["init"].value.span)
        if any(d.is_error for d in self.d.items[mark:]):
            return None
        return vals

    def _option_value(self, spec: OptionSpec, v: ast.Value) -> Any:
        val: Any = _BAD
        if spec.kind == "list[str]":
            if isinstance(v, ast.ListLit) and all(isinstance(i, ast.Literal) and isinstance(i.value, str)
                                                  for i in v.items):
                val = [i.value for i in v.items]
        elif isinstance(v, ast.Literal):
            x = v.value
            if spec.kind == "str" and isinstance(x, str):
                val = x
            elif spec.kind == "int" and isinstance(x, int) and not isinstance(x, bool):
                val = x
            elif spec.kind == "float" and isinstance(x, (int, float)) and not isinstance(x, bool):
                val = float(x)
            elif spec.kind == "bool" and isinstance(x, bool):
                val = x
        elif isinstance(v, ast.EnumRef) and spec.kind == "str" and spec.choices and v.name in spec.choices:
            val = v.name
        if val is _BAD:
            if spec.name == "method" and isinstance(v, (ast.Literal, ast.EnumRef)):
                name = v.value if isinstance(v, ast.Literal) else v.name
                self._unknown_method(str(name), v.span)
                return _BAD
            kind = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
                    "list[str]": "a list of strings"}[spec.kind]
            self.d.error("E307", f"option '{spec.name}' takes {kind}", v.span, hint=spec.help)
            return _BAD
        if spec.choices is not None and val not in spec.choices:
            if spec.name == "method":
                self._unknown_method(val, v.span)
            else:
                near = closest(str(val), [str(c) for c in spec.choices])
                self.d.error("E307", f"option '{spec.name}' must be one of {', '.join(map(str, spec.choices))}",
                             v.span, hint=f"did you mean '{near}'?" if near else None)
            return _BAD
        if spec.min is not None and isinstance(val, (int, float)) and val < spec.min:
            self.d.error("E307", f"option '{spec.name}' must be at least {spec.min:g}", v.span)
            return _BAD
        if spec.max is not None and isinstance(val, (int, float)) and val > spec.max:
            self.d.error("E307", f"option '{spec.name}' must be at most {spec.max:g}", v.span)
            return _BAD
        return val

    def _unknown_method(self, name: str, span: Span) -> None:
        near = closest(name, TUNE_METHODS)
        self.d.error("E209", f"unknown tune method '{name}'", span,
                     hint=(f"did you mean '{near}'? " if near else "") + f"methods: {', '.join(TUNE_METHODS)}")


def read_examples(fsrc: SourceFile, label: str, in_t: ir.RecordT, out_t: ir.Type,
                  diags: Diagnostics) -> list[CheckedExample]:
    """Parse a JSONL examples file: each line `{"input": ..., "output": ...}` (optionally `name`,
    `provenance`), validated against the input and output types. Mistakes become diagnostics at their
    line and key; lines with mistakes are left out."""
    out: list[CheckedExample] = []
    for lineno in range(1, fsrc.line_count + 1):
        line = fsrc.line_text(lineno)
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            diags.error("E107", f"invalid JSON: {e.msg}", fsrc.span_at(lineno, e.colno),
                        hint='each line is one object: {"input": {...}, "output": ...}')
            continue
        whole = fsrc.span_at(lineno, 1, max(1, len(line)))
        if not isinstance(obj, dict) or "input" not in obj or "output" not in obj:
            diags.error("E107", 'each line must be an object with "input" and "output"', whole,
                        hint='each line is one object: {"input": {...}, "output": ...}')
            continue
        extra = [k for k in obj if k not in EXAMPLE_KEYS]
        if extra:
            diags.error("E107", f"unknown key '{extra[0]}' in an example line", _find_key(fsrc, lineno, extra[0]),
                        hint=f"keys: {', '.join(sorted(EXAMPLE_KEYS))}")
            continue
        bad = False
        for root, t, val in (("input", in_t, obj["input"]), ("output", out_t, obj["output"])):
            for viol in validate(t, val):
                bad = True
                key = next((p for p in reversed(viol.path) if isinstance(p, str)), root)
                code = "E303" if viol.kind == "constraint" else ("E207" if "not a member" in viol.message else "E302")
                diags.error(code, f"{viol.where(root)}: {viol.message}", _find_key(fsrc, lineno, key), hint=viol.hint)
        if not bad:
            out.append(CheckedExample(ir.Example(obj["input"], obj["output"], f"{label}:{lineno}", obj.get("name"),
                                                 obj.get("provenance")), whole))
    return out


_BAD = object()


class _TemplateWalker:
    """Walks a jinja AST and checks names and attribute paths against the declared input types."""

    def __init__(self, checker: ProgramChecker, lit: ast.Literal, jenv):
        self.c = checker
        self.lit = lit
        self.jenv = jenv

    def visit(self, node, scope: dict[str, ir.Type | None], bound: set[str]) -> None:
        from jinja2 import nodes

        if isinstance(node, nodes.For):
            self.visit(node.iter, scope, bound)
            item_t = None
            it = self.type_of(node.iter, scope, bound, report=False)
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
            return
        if isinstance(node, (nodes.Name, nodes.Getattr, nodes.Getitem)):
            self.type_of(node, scope, bound, report=True)
            if isinstance(node, nodes.Getitem):
                self.visit(node.arg, scope, bound)
            return
        if isinstance(node, nodes.Filter) and node.name not in self.jenv.filters:
            self._err("E205", f"unknown filter '{node.name}'", node.lineno, node.name,
                      hint=_near_hint(node.name, self.jenv.filters))
        if isinstance(node, nodes.Test) and node.name not in self.jenv.tests:
            self._err("E205", f"unknown test '{node.name}'", node.lineno, node.name,
                      hint=_near_hint(node.name, self.jenv.tests))
        for child in node.iter_child_nodes():
            self.visit(child, scope, bound)

    def type_of(self, node, scope, bound, report: bool) -> ir.Type | None:
        """The IR type of a name/attribute chain, or None when it cannot be known statically."""
        from jinja2 import nodes

        if isinstance(node, nodes.Name):
            if node.ctx != "load":
                return None
            if node.name in scope:
                return scope[node.name]
            if node.name in bound:
                return None
            if report:
                names = [k for k in scope if k != "output"]
                near = closest(node.name, names)
                self._err("E201", f"undeclared variable '{node.name}'", node.lineno, node.name,
                          hint=f"did you mean '{near}'?" if near else
                          (f"the task's inputs are: {', '.join(names)}" if names else "the task has no inputs"))
            return None
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            if isinstance(node, nodes.Getattr):
                key: str | int | None = node.attr
            else:
                key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if isinstance(key, str) and key.startswith("_"):
                if report:
                    self._err("E210", f"access to '{key}' is not allowed in templates", node.lineno, key,
                              hint="templates may only read declared input fields")
                return None
            base_t = self.type_of(node.node, scope, bound, report)
            if base_t is None or key is None:
                return None
            base = ir.strip_optional(base_t)
            if isinstance(base, ir.RecordT) and isinstance(key, str):
                ft = base.field(key)
                if ft is None:
                    if report:
                        near = closest(key, base.field_names)
                        self._err("E204", f"unknown field '{key}' in {base.name}", node.lineno, key,
                                  hint=f"did you mean '{near}'?" if near else
                                  f"fields of {base.name}: {', '.join(base.field_names)}")
                    return None
                return ft
            if isinstance(base, ir.ListT) and isinstance(key, int):
                return base.item
            if isinstance(base, ir.AnyT):
                return None
            if report:
                hint = "use a filter instead, e.g. {{ x | upper }}" if isinstance(base, ir.StrT) else None
                self._err("E204", f"{base} has no field '{key}'", node.lineno, str(key), hint=hint)
            return None
        return None

    def _err(self, code: str, msg: str, lineno: int, needle: str, hint: str | None = None) -> None:
        self.c.d.error(code, msg, _template_span(self.lit, lineno, needle), hint=hint)


def _near_hint(name: str, options) -> str | None:
    near = closest(name, options)
    return f"did you mean '{near}'?" if near else None


def _template_span(lit: ast.Literal, lineno: int, needle: str | None) -> Span:
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


def _template_names(text: str) -> set[str]:
    from jinja2 import TemplateSyntaxError, nodes

    from promptc.templating import environment

    try:
        tree = environment().parse(text)
    except TemplateSyntaxError:
        return set()
    return {n.name for n in tree.find_all(nodes.Name)}


def _find_key(src: SourceFile, lineno: int, key: str) -> Span:
    text = src.line_text(lineno)
    i = text.find(f'"{key}"')
    if i < 0:
        return src.span_at(lineno, 1, max(1, len(text)))
    return src.span_at(lineno, i + 1, len(key) + 2)


def _literal_kind(v: ast.Value) -> str:
    if isinstance(v, ast.Literal):
        x = v.value
        if isinstance(x, bool):
            return "bool"
        if isinstance(x, int):
            return "int"
        if isinstance(x, float):
            return "float"
        if isinstance(x, str):
            return "str"
        return "null"
    return {ast.RecordLit: "a record", ast.ListLit: "a list", ast.EnumRef: "a name", ast.Regex: "a regex"}.get(
        type(v), type(v).__name__)


def _expr_as_value(e: ast.Expr) -> ast.Value:
    if isinstance(e, ast.Path) and not e.parts:
        return ast.EnumRef(e.root.name, e.span)
    return e  # type: ignore[return-value]


def _generator_hint(t: ir.Type) -> str:
    fits = [g for g, (_, _, kinds) in GENERATORS.items() if isinstance(t, kinds)]
    return f"for {t} use: {', '.join(fits)}" if fits else f"no generator produces {t}; drop the given"


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def check(program: ast.Program, src: SourceFile, diags: Diagnostics) -> Checked:
    """Run every check; diagnostics go into `diags`. The result is only complete without errors."""
    return ProgramChecker(program, src, diags).run()
