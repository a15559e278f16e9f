"""How the CLI answers a mistake in its own command line: an unknown command or option gets the usage of
the command that was meant, a did-you-mean, and, for a target setting given as a flag (`promptc tune FILE
--target T --epochs 5`), where that setting is written instead. Exit 2, as every usage error."""

from __future__ import annotations

import argparse
import json
import sys

from promptc.diagnostics import closest
from promptc.errors import EXIT_USAGE


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def unknown_command(parser: argparse.ArgumentParser, argv: list[str]) -> int | None:
    """`promptc frobnicate ...`: the top usage, the commands and the nearest one; None when argv names a
    command (or starts with an option)."""
    if not argv or argv[0].startswith("-"):
        return None
    commands = _subparsers(parser)
    if argv[0] in commands:
        return None
    near = closest(argv[0], commands)
    sys.stderr.write(parser.format_usage())
    print(f"promptc: error: unknown command '{argv[0]}'", file=sys.stderr)
    print(f"  hint: {f'did you mean {near!r}? ' if near else ''}commands: {', '.join(commands)}", file=sys.stderr)
    return EXIT_USAGE


def _setting_hint(command: str, key: str, value: str | None, args: argparse.Namespace) -> str | None:
    """Where a target option given as a flag is written: in the program's `target` block."""
    from promptc.options import TEXT_OPTIONS, TUNE_OPTIONS

    kind = "tune" if command == "tune" else "text"
    spec = (TUNE_OPTIONS if kind == "tune" else TEXT_OPTIONS).get(key)
    if spec is None or command not in ("tune", "compile", "render", "run", "test", "optimize", "distill"):
        return None
    shown = value if value is not None else "..."
    if value is not None and spec.kind == "str" and not value.startswith('"'):
        shown = json.dumps(value)
    target = getattr(args, "target", None) or "NAME"
    where = f" of {args.file}" if getattr(args, "file", None) else ""
    return (f"{key} is a setting of the {kind} target, not a command-line option: write `{key} = {shown}` in "
            f"`target {kind} {target} {{ ... }}`{where}, then rerun")


def unknown_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]) -> int:
    """Arguments no option of the command takes: that command's usage, what was not understood, and what
    was probably meant."""
    command = getattr(args, "command", None) or ""
    sub = _subparsers(parser).get(command, parser)
    sys.stderr.write(sub.format_usage())
    prog = f"promptc {command}".rstrip()
    flags = [(i, a) for i, a in enumerate(extras) if a.startswith("-") and a != "-"]
    if not flags:
        print(f"{prog}: error: unexpected argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}",
              file=sys.stderr)
        print(f"  hint: `{prog} --help` lists what it takes", file=sys.stderr)
        return EXIT_USAGE
    i, flag = flags[0]
    name, _, inline = flag.partition("=")
    value: str | None = inline if "=" in flag else None
    if value is None and i + 1 < len(extras) and not extras[i + 1].startswith("-"):
        value = extras[i + 1]
    print(f"{prog}: error: unrecognized option '{name}'", file=sys.stderr)
    hint = _setting_hint(command, name.lstrip("-").replace("-", "_"), value, args)
    if hint is None:
        options = sorted({o for o in sub._option_string_actions if o.startswith("--")})
        near = closest(name, options)
        hint = f"did you mean '{near}'?" if near else f"`{prog} --help` lists its options"
    print(f"  hint: {hint}", file=sys.stderr)
    return EXIT_USAGE


def near_miss_hints(diags: list, path: str) -> list:
    """A missing program file (E108 `no such file`) gets a did-you-mean when a near name lies beside it."""
    from dataclasses import replace

    from promptc import codes
    from promptc.nearby import near_hint

    out = []
    for d in diags:
        if d.code == codes.FILE_NOT_FOUND and d.span is None and d.hint is None and d.message.startswith("no such file"):
            d = replace(d, hint=near_hint(path))
        out.append(d)
    return out
