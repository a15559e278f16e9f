"""The command line: `promptc check | compile | render | ...`. Exit codes: 0 clean, 1 diagnostics or
failing tests, 2 usage or internal error. A mistake in a user's program never shows a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from promptc._version import __version__
from promptc.cli.output import EXIT_DIAGNOSTICS, emit_diagnostics, report_error
from promptc.cli.usage import near_miss_hints
from promptc.diagnostics import Diagnostic, summary, to_json
from promptc.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, InternalError, PromptcError


def cmd_check(args: argparse.Namespace) -> int:
    from promptc.compiler import compile_file

    all_diags: list[Diagnostic] = []
    failed = False
    for path in _program_files(args.files):
        result = compile_file(path)
        diags = near_miss_hints(result.diagnostics, path) if result.program is None else result.diagnostics
        all_diags.extend(diags)
        failed |= not result.ok
        if args.format == "text":
            emit_diagnostics(diags, "text")
            if result.ok:
                tail = f" ({summary(result.diagnostics)})" if result.diagnostics else ""
                if not args.quiet:
                    print(f"{path}: ok{tail}")
    if args.format == "json":
        print(to_json(all_diags))
    elif failed:
        print(f"promptc: {summary(all_diags)}", file=sys.stderr)
    return EXIT_DIAGNOSTICS if failed else EXIT_OK


def _program_files(paths: list[str]) -> list[str]:
    """The files `check` reads: each FILE as given, and each DIR as every *.prompt file under it, sorted
    (hidden folders and virtual environments skipped). A folder with none is a usage error."""
    from pathlib import Path

    from promptc.errors import UsageError

    out: list[str] = []
    for p in paths:
        if not Path(p).is_dir():
            out.append(p)
            continue
        found = sorted(str(f) for f in Path(p).rglob("*.prompt")
                       if not any(part.startswith(".") or part in ("node_modules", "__pycache__")
                                  for part in f.relative_to(p).parts[:-1]))
        if not found:
            raise UsageError(f"no .prompt files under {p}", hint="give .prompt files or a folder that holds some")
        out.extend(found)
    return out


def build_parser(only_check: bool = False) -> argparse.ArgumentParser:
    """The whole CLI; with `only_check`, just `check`: the command editors and pre-commit hooks run most
    often starts without importing the other commands' modules (bench/cli_start.py measures it)."""
    p = argparse.ArgumentParser(
        prog="promptc",
        description="Compile declarative .prompt programs to text prompts or PEFT-tuned artifacts, "
                    "and test both with the same suite.",
    )
    p.add_argument("--version", action="version", version=f"promptc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("check", help="parse and check programs; report every mistake",
                       description="Parse and check .prompt files (a folder: every .prompt file under it). "
                                   "Exit 0 when clean (warnings allowed), 1 when any file has errors.")
    c.add_argument("files", nargs="+", metavar="FILE|DIR",
                   help=".prompt files to check; a folder means every .prompt file under it")
    c.add_argument("--format", choices=("text", "json"), default="text", help="diagnostic format")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing for clean files")
    c.set_defaults(func=cmd_check)
    if only_check:
        _data_options(c)
        return p

    from promptc.cli import authoring, commands

    commands.register(sub)
    authoring.register(sub)  # fmt, lsp, init
    for name, sp in sub.choices.items():  # every command that loads a program reads its data files
        if name not in _NO_PROGRAM:
            _data_options(sp)
    return p


_NO_PROGRAM = {"explain", "init", "lsp", "fmt", "cache"}


def _size(text: str) -> int:
    from promptc.datafiles import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _data_options(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("data files (docs/security.md)")
    g.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="also read `examples` files from DIR (repeatable; default: only the program's folder)")
    g.add_argument("--max-data-bytes", type=_size, default=None, metavar="N",
                   help="largest data file to read, e.g. 200M (default 64M)")


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    parser = build_parser(only_check=args_in[:1] == ["check"])
    from promptc.cli import usage

    unknown = usage.unknown_command(parser, args_in)
    if unknown is not None:
        return unknown
    try:
        args, extras = parser.parse_known_args(args_in)
    except SystemExit as e:  # argparse exits 2 on usage errors and 0 for --help/--version
        return int(e.code or 0)
    if extras:  # the command's own usage and a did-you-mean, not the top-level usage
        return usage.unknown_arguments(parser, args, extras)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        from promptc.datafiles import using

        with using(getattr(args, "data_root", None) or (), getattr(args, "max_data_bytes", None)):
            return func(args)
    except PromptcError as e:
        return report_error(e, getattr(args, "format", "text"))
    except KeyboardInterrupt:
        print("promptc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - an internal error: say so plainly, keep the traceback for reports
        import traceback

        err = InternalError(f"{type(e).__name__}: {e}")
        print(f"promptc: internal error: {err}", file=sys.stderr)
        if _debug():
            traceback.print_exc()
        else:
            print("promptc: this is a bug in promptc; rerun with PROMPTC_DEBUG=1 for the traceback",
                  file=sys.stderr)
        return err.exit_code


def _debug() -> bool:
    import os

    return bool(os.environ.get("PROMPTC_DEBUG"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
