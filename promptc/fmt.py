"""The formatter: ast.Program -> canonical .prompt source. `parse(fmt(p)) == p` for every program."""

from __future__ import annotations

import re

from promptc import ast

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
IND = "  "


def quote(s: str) -> str:
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


def value(v: ast.Value, indent: str = "") -> str:
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
    return expr(v)  # type: ignore[arg-type]


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
        return f"not {expr(e.operand, 3)}"
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


def _task(t: ast.TaskDecl) -> list[str]:
    params = ", ".join(f"{p.name.name}: {type_use(p.type)}" for p in t.params)
    out = [f"task {t.name.name}({params}) -> {type_use(t.returns)} {{"]
    for item in t.items:
        if isinstance(item, ast.TextItem):
            variant = f" variant {quote(item.variant)}" if item.variant is not None else ""
            out.append(f"{IND}{item.kind}{variant} {literal(item.text, IND)}")
        elif isinstance(item, ast.Example):
            label = f" {quote(item.name)}" if item.name is not None else ""
            out.append(f"{IND}example{label} {{")
            out.append(f"{IND * 2}input {value(item.input, IND * 2)}")
            out.append(f"{IND * 2}output {value(item.output, IND * 2)}")
            out.append(f"{IND}}}")
        elif isinstance(item, ast.ExamplesFile):
            out.append(f"{IND}examples {quote(item.path.value)}")
        elif isinstance(item, ast.ConstraintDecl):
            desc = f" {quote(item.description)}" if item.description is not None else ""
            out.append(f"{IND}constraint {item.name.name}{desc}: {expr(item.expr)}")
    out.append("}")
    return out


def _test(t: ast.TestDecl) -> list[str]:
    out = [f"test {t.task.name} {{"]
    for item in t.items:
        if isinstance(item, ast.Case):
            out.append(f"{IND}case {quote(item.name)} {{")
            out.append(f"{IND * 2}input {value(item.input, IND * 2)}")
            out.extend(f"{IND * 2}expect {expr(e)}" for e in item.expects)
            out.append(f"{IND}}}")
        else:
            out.append(f"{IND}property {quote(item.name)} {{")
            out.extend(f"{IND * 2}given {expr(g.path)} = {expr(g.generator)}" for g in item.givens)
            out.extend(f"{IND * 2}check {expr(c)}" for c in item.checks)
            out.extend(f"{IND * 2}{s.name.name} = {value(s.value)}" for s in item.settings)
            out.append(f"{IND}}}")
    out.append("}")
    return out


def fmt(p: ast.Program) -> str:
    """Format a program in the canonical layout (two-space indent, one blank line between decls)."""
    blocks: list[list[str]] = []
    if p.name is not None:
        version = quote(p.version.value) if p.version is not None else '"0.0.0"'
        blocks.append([f"program {p.name.name} {version}"])
    for d in p.decls:
        if isinstance(d, ast.EnumDecl):
            blocks.append([f"enum {d.name.name} {{ {', '.join(m.name for m in d.members)} }}"])
        elif isinstance(d, ast.TypeDecl):
            blocks.append([f"type {d.name.name} {{", *(f"{IND}{f.name.name}: {type_use(f.type)}" for f in d.fields),
                           "}"])
        elif isinstance(d, ast.TaskDecl):
            blocks.append(_task(d))
        elif isinstance(d, ast.TestDecl):
            blocks.append(_test(d))
        elif isinstance(d, ast.TargetDecl):
            opts = ", ".join(f"{o.key.name} = {value(o.value)}" for o in d.options)
            blocks.append([f"target {d.kind.name} {d.name.name} for {d.task.name} {{ {opts} }}"
                           if opts else f"target {d.kind.name} {d.name.name} for {d.task.name} {{}}"])
    return "\n\n".join("\n".join(b) for b in blocks) + "\n"
