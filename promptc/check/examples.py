"""Check stage, examples data: `examples "FILE.jsonl"` files are read, decoded and validated line by line,
and every example (inline or from a file) is checked against the task's constraints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path as FsPath

from promptc import ast, codes, ir
from promptc.check.context import CheckedExample, CheckedTask, Context
from promptc.diagnostics import Diagnostics
from promptc.expr import constraint_failures
from promptc.schema import validate
from promptc.source import Span

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
    """Read one `examples "PATH"` file (relative to the program) into the task's examples. The file is
    resolved, checked and streamed by promptc.datafiles: inside the program's folder or a --data-root,
    a regular file, within the size limit (E110 otherwise)."""
    from promptc import datafiles

    program_dir = FsPath(cx.src.path).parent if cx.src.path not in ("<string>", "") else None
    assert isinstance(ef.path.value, str)  # the parser builds the path from a string token
    try:
        reader = datafiles.open_examples(ef.path.value, program_dir)
        for ce in read_examples(reader, ct.input_type, ct.output, cx.d):
            example_constraints(cx, ct, ce, ce.span)
            ct.examples.append(ce)
    except datafiles.DataFileError as e:
        cx.d.error(e.code, e.message, ef.path.span, hint=e.hint)
        return
    ct.example_files.append((reader.shown, reader.digest))  # the program hash covers the data


def read_examples(reader, in_t: ir.RecordT, out_t: ir.Type, diags: Diagnostics) -> Iterator[CheckedExample]:
    """Stream a JSONL examples file (a datafiles.Reader): each line `{"input": ..., "output": ...}`
    (optionally `name`, a string, and `provenance`, an object), validated against the input and output
    types. Mistakes become diagnostics at their line and key, quoting a bounded excerpt of the line;
    lines with mistakes are left out. Raises datafiles.DataFileError if the file is refused."""
    from promptc import datafiles

    for line, obj in datafiles.json_lines(reader, diags):
        if not isinstance(obj, dict) or "input" not in obj or "output" not in obj:
            diags.error(codes.BAD_EXAMPLES_LINE, 'each line must be an object with "input" and "output"',
                        line.span(), hint=_LINE_HINT)
            continue
        extra = [k for k in obj if k not in EXAMPLE_KEYS]
        if extra:
            diags.error(codes.BAD_EXAMPLES_LINE, f"unknown key '{datafiles.clip(extra[0])}' in an example line",
                        line.key_span(extra[0]), hint=f"keys: {', '.join(sorted(EXAMPLE_KEYS))}")
            continue
        if not _extras_ok(line, obj, diags) or not _validate_line(line, obj, in_t, out_t, diags):
            continue
        yield CheckedExample(ir.Example(obj["input"], obj["output"], f"{reader.shown}:{line.lineno}",
                                        obj.get("name"), obj.get("provenance")), line.span())


def _extras_ok(line, obj: dict, diags: Diagnostics) -> bool:
    """`name` is a string and `provenance` an object (later stages read its fields)."""
    ok = True
    if obj.get("name") is not None and not isinstance(obj["name"], str):
        diags.error(codes.BAD_EXAMPLES_LINE, '"name" must be a string', line.key_span("name"),
                    hint='name the example: "name": "double charge"')
        ok = False
    if obj.get("provenance") is not None and not isinstance(obj["provenance"], dict):
        diags.error(codes.BAD_EXAMPLES_LINE, '"provenance" must be an object', line.key_span("provenance"),
                    hint='provenance records where an example came from: {"source": "promptc distill", ...}')
        ok = False
    return ok


def _validate_line(line, obj: dict, in_t: ir.RecordT, out_t: ir.Type, diags: Diagnostics) -> bool:
    from promptc.datafiles import clip

    ok = True
    for root, t, val in (("input", in_t, obj["input"]), ("output", out_t, obj["output"])):
        for viol in validate(t, val):
            ok = False
            key = next((p for p in reversed(viol.path) if isinstance(p, str)), root)
            code = codes.FIELD_CONSTRAINT_VIOLATED if viol.kind == "constraint" else (
                codes.UNKNOWN_MEMBER if "not a member" in viol.message else codes.SCHEMA_MISMATCH)
            diags.error(code, clip(f"{viol.where(root)}: {viol.message}", 300), line.key_span(key),
                        hint=clip(viol.hint, 300) if viol.hint else None)
    return ok
