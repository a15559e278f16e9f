"""Authoring commands: `promptc fmt`, `promptc lsp` and `promptc init`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from promptc.cli.output import EXIT_DIAGNOSTICS, EXIT_OK, emit_diagnostics
from promptc.errors import UsageError
from promptc.nearby import near_hint


def _prompt_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*.prompt") if not any(part.startswith(".") for part in f.parts))
            out.extend(found)
        else:
            out.append(path)
    return out


def cmd_fmt(args: argparse.Namespace) -> int:
    import difflib

    from promptc.errors import DiagnosticError
    from promptc.fmt import format_text
    from promptc.source import SourceDecodeError, SourceFile

    if args.files == ["-"]:
        text = sys.stdin.read()
        try:
            out = format_text(text, "<stdin>")
        except DiagnosticError as e:
            emit_diagnostics(e.diagnostics, "text")
            return EXIT_DIAGNOSTICS
        if args.check or args.diff:
            if args.diff:
                sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), out.splitlines(True),
                                                           "<stdin>", "<stdin> (formatted)"))
            return EXIT_DIAGNOSTICS if args.check and out != text else EXIT_OK
        sys.stdout.write(out)
        return EXIT_OK

    failed = changed = 0
    files = _prompt_files(args.files)
    if not files:
        raise UsageError("no .prompt files found", hint="pass files or directories that hold .prompt files")
    for path in files:
        try:
            src = SourceFile.read(path)
        except SourceDecodeError as e:
            print(f"{e.path}:{e.line}:{e.col}: error: file is not valid UTF-8 [E101]", file=sys.stderr)
            failed += 1
            continue
        except OSError as e:
            print(f"promptc: error: cannot read {path}: {e.strerror}", file=sys.stderr)
            if isinstance(e, FileNotFoundError) and (hint := near_hint(path)):
                print(f"  hint: {hint}", file=sys.stderr)
            failed += 1
            continue
        try:
            out = format_text(src.text, str(path))
        except DiagnosticError as e:
            emit_diagnostics(e.diagnostics, "text")
            failed += 1
            continue
        if out == src.text:
            continue
        changed += 1
        if args.diff:
            sys.stdout.writelines(difflib.unified_diff(src.text.splitlines(True), out.splitlines(True),
                                                       f"{path}", f"{path} (formatted)"))
        if args.check:
            print(f"would reformat {path}", file=sys.stderr)
        elif not args.diff:
            tmp = path.with_name(f".{path.name}.promptc-fmt")
            tmp.write_text(out, encoding="utf-8")
            tmp.replace(path)  # atomic: an interrupted run leaves the old file or the new one
            print(f"reformatted {path}", file=sys.stderr)
    verb = "would be reformatted" if args.check or args.diff else "reformatted"
    kept = len(files) - changed - failed
    parts = [f"{changed} file{'s' if changed != 1 else ''} {verb}", f"{kept} unchanged"]
    if failed:
        parts.append(f"{failed} could not be formatted")
    if not args.quiet:
        print(", ".join(parts), file=sys.stderr)
    if failed or (args.check and changed):
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def cmd_lsp(args: argparse.Namespace) -> int:
    try:
        from promptc.lsp.server import serve
    except ImportError as e:  # pygls is in the [lsp] extra
        raise UsageError(f"the language server needs pygls ({e.name} is not installed)",
                         hint="pip install 'promptc[lsp]'") from None
    serve()
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from promptc.scaffold import init

    written = init(args.dir, args.name)
    for p in written:
        print(f"wrote {p}")
    prog = written[0]
    print(f"\nnext: promptc check {prog}   (README.md has the commands after that)")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("fmt", help="format programs in the canonical layout, keeping comments",
                       description="Rewrite .prompt files in the canonical layout. Comments, blank lines between "
                                   "items and the text of triple-quoted blocks are kept. Directories are searched "
                                   "for *.prompt; '-' formats stdin to stdout.")
    f.add_argument("files", nargs="+", metavar="FILE", help=".prompt files or directories ('-' for stdin)")
    f.add_argument("--check", action="store_true",
                   help="write nothing; list the files that would change and exit 1 if any would")
    f.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of the changes")
    f.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    f.set_defaults(func=cmd_fmt)

    lsp = sub.add_parser("lsp", help="run the language server (stdio) for editors",
                         description="A Language Server Protocol server over stdio: diagnostics as you type, "
                                     "hover, go to definition, references, rename, completion, document "
                                     "symbols and formatting. Needs the [lsp] extra.")
    lsp.add_argument("--stdio", action="store_true", help="accepted for editors that pass it (stdio is the default)")
    lsp.set_defaults(func=cmd_lsp)

    i = sub.add_parser("init", help="write a starter program with examples, tests and targets",
                       description="Write a starter program (NAME.prompt), its examples file (data/reviews.jsonl) "
                                   "and a README of the next commands. Refuses to overwrite existing files.")
    i.add_argument("dir", nargs="?", default=".", metavar="DIR", help="where to write (default: here)")
    i.add_argument("--name", help="the program name (default: from DIR's name)")
    i.set_defaults(func=cmd_init)
