"""Check stage, examples data: `examples "FILE.jsonl"` files are read, decoded and validated line by line,
and every example (inline or from a file) is checked against the task's constraints."""

from __future__ import annotations

import json
from pathlib import Path as FsPath

from promptc import ast, codes, ir
from promptc.check.context import CheckedExample, CheckedTask, Context
from promptc.diagnostics import Diagnostics
from promptc.expr import constraint_failures
from promptc.schema import validate
from promptc.source import SourceDecodeError, SourceFile, Span

EXAMPLE_KEYS = {"input", "output", "name", "provenance"}
_LINE_HINT = 'each line is one object: {"input": {...}, "output": ...}'


def example_constraints(cx: Context, ct: CheckedTask, ce: CheckedExample, span: Span | None) -> None:
    """E304 for each task constraint the example breaks, with the evaluated sub-values as notes."""
    env = {**ce.example.input, "output": ce.example.output}
    for f in constraint_failures(ct.constraints, env):
        c = f.constraint
        desc = f" ({c.description})" if c.description else ""
        cx.d.error(codes.EXAMPLE_VIOLATES_CONSTRAINT, f"example violates constraint '{c.name}'{desc}", span,
                   notes=(f"constraint: {c.source}", *f.details),
                   hint="fix the example, or the constraint if the example is right")


def examples_file(cx: Context, ct: CheckedTask, ef: ast.ExamplesFile) -> None:
    """Read one `examples "PATH"` file (relative to the program) into the task's examples."""
    read = _read_file(cx, ef)
    if read is None:
        return
    path, data = read
    ct.example_files.append((str(path), data))
    try:
        fsrc = SourceFile.from_bytes(str(path), data)
    except SourceDecodeError as e:
        bad = SourceFile(e.path, e.text)
        cx.d.error(codes.NOT_UTF8, f"examples file is not valid UTF-8 (byte 0x{e.byte:02x})",
                   bad.span_at(e.line, e.col), hint="save the file as UTF-8")
        return
    for ce in read_examples(fsrc, str(path), ct.input_type, ct.output, cx.d):
        example_constraints(cx, ct, ce, ce.span)
        ct.examples.append(ce)


def _read_file(cx: Context, ef: ast.ExamplesFile) -> tuple[FsPath, bytes] | None:
    rel = ef.path.value
    base = FsPath(cx.src.path).parent if cx.src.path not in ("<string>", "") else FsPath(".")
    path = base / rel
    try:
        return path, path.read_bytes()
    except FileNotFoundError:
        cx.d.error(codes.FILE_NOT_FOUND, f"examples file not found: {rel}", ef.path.span,
                   hint=f"the path is resolved relative to the program: {path}")
    except OSError as e:
        cx.d.error(codes.FILE_NOT_FOUND, f"cannot read examples file {rel}: {e.strerror or e}", ef.path.span)
    except ValueError:  # e.g. a NUL byte in the path
        cx.d.error(codes.FILE_NOT_FOUND, f"invalid examples file path {rel!r}", ef.path.span)
    return None


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
            diags.error(codes.BAD_EXAMPLES_LINE, f"invalid JSON: {e.msg}", fsrc.span_at(lineno, e.colno), hint=_LINE_HINT)
            continue
        whole = fsrc.span_at(lineno, 1, max(1, len(line)))
        if not isinstance(obj, dict) or "input" not in obj or "output" not in obj:
            diags.error(codes.BAD_EXAMPLES_LINE, 'each line must be an object with "input" and "output"', whole, hint=_LINE_HINT)
            continue
        extra = [k for k in obj if k not in EXAMPLE_KEYS]
        if extra:
            diags.error(codes.BAD_EXAMPLES_LINE, f"unknown key '{extra[0]}' in an example line", _find_key(fsrc, lineno, extra[0]),
                        hint=f"keys: {', '.join(sorted(EXAMPLE_KEYS))}")
            continue
        if _validate_line(fsrc, lineno, obj, in_t, out_t, diags):
            out.append(CheckedExample(ir.Example(obj["input"], obj["output"], f"{label}:{lineno}", obj.get("name"),
                                                 obj.get("provenance")), whole))
    return out


def _validate_line(fsrc: SourceFile, lineno: int, obj: dict, in_t: ir.RecordT, out_t: ir.Type,
                   diags: Diagnostics) -> bool:
    ok = True
    for root, t, val in (("input", in_t, obj["input"]), ("output", out_t, obj["output"])):
        for viol in validate(t, val):
            ok = False
            key = next((p for p in reversed(viol.path) if isinstance(p, str)), root)
            code = codes.FIELD_CONSTRAINT_VIOLATED if viol.kind == "constraint" else (codes.UNKNOWN_MEMBER if "not a member" in viol.message else codes.SCHEMA_MISMATCH)
            diags.error(code, f"{viol.where(root)}: {viol.message}", _find_key(fsrc, lineno, key), hint=viol.hint)
    return ok


def _find_key(src: SourceFile, lineno: int, key: str) -> Span:
    text = src.line_text(lineno)
    i = text.find(f'"{key}"')
    if i < 0:
        return src.span_at(lineno, 1, max(1, len(text)))
    return src.span_at(lineno, i + 1, len(key) + 2)
