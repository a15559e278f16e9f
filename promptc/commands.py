"""CLI commands beyond `check`, registered here so cli.py stays small. Each imports its stage lazily."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from promptc.cli import EXIT_DIAGNOSTICS, EXIT_OK, UsageError, _emit_diagnostics


def load_program(path: str, fmt: str = "text"):
    """Load a program for a command; diagnostics (errors) become exit 1 through PromptcError."""
    from promptc.api import Program
    from promptc.compiler import compile_file

    result = compile_file(path)
    if result.program is None:
        from promptc.diagnostics import PromptcError

        raise PromptcError(result.diagnostics)
    warnings = [d for d in result.diagnostics if not d.is_error]
    if warnings and fmt != "json":
        _emit_diagnostics(warnings, "text")
    return Program(result)


def parse_json_arg(value: str, what: str) -> Any:
    """`--input '{"a": 1}'` or `--input @file.json`."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read {what} file {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{what} file {path} is not UTF-8") from None
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise UsageError(f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def _text_target(prog, name: str):
    t = prog.target(name)
    if t.kind != "text":
        raise UsageError(f"target '{name}' is a {t.kind} target; `compile` and `render` take text targets "
                         "(build tune targets with `promptc tune`)")
    return t


def cmd_compile(args: argparse.Namespace) -> int:
    prog = load_program(args.file)
    _text_target(prog, args.target)
    out = prog.compile(args.target, args.output)
    print(f"wrote {out}/ (prompt.jinja, messages.json, output.schema.json, input.schema.json, manifest.json)")
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from promptc.targets.text import InputError

    prog = load_program(args.file)
    t = _text_target(prog, args.target)
    inputs = parse_json_arg(args.input, "--input")
    if not isinstance(inputs, dict):
        raise UsageError("--input must be a JSON object with one entry per task input")
    task = prog.task(t.task)
    try:
        out = task.render(inputs, target=args.target, format=args.format, tokenizer=args.tokenizer)
    except InputError as e:
        print(f"promptc: error: {e}", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    if isinstance(out, list):
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compile", help="compile a text target to a portable prompt artifact",
                       description="Write a text target's artifact directory atomically: prompt.jinja "
                                   "(renders with plain jinja2), messages.json, output.schema.json, "
                                   "input.schema.json and manifest.json.")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--target", required=True, metavar="NAME", help="a `target text` of the program")
    c.add_argument("-o", "--output", metavar="DIR", help="artifact directory (default: out/TARGET)")
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("render", help="print the prompt of a text target for one input",
                       description="Render a text target for one input, validated against the input schema.")
    r.add_argument("file", metavar="FILE")
    r.add_argument("--target", required=True, metavar="NAME")
    r.add_argument("--input", required=True, metavar="JSON|@FILE", help="the task inputs as a JSON object")
    r.add_argument("--format", choices=("plain", "chat", "hf_chat"),
                   help="override the target's format")
    r.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory for --format hf_chat")
    r.set_defaults(func=cmd_render)
