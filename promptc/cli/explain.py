"""`promptc explain CODE`: the long explanation of a diagnostic code, from the table in promptc.codes
(as `rustc --explain`). `--list` prints every code with its one-line meaning."""

from __future__ import annotations

import argparse

from promptc.errors import EXIT_OK, UsageError


def cmd_explain(args: argparse.Namespace) -> int:
    from promptc.codes import CODES, explain
    from promptc.diagnostics import did_you_mean

    if args.list:
        for info in CODES.values():
            print(f"{info.code}  {info.meaning}")
        return EXIT_OK
    if not args.code:
        raise UsageError("explain needs a code, e.g. `promptc explain E201`",
                         hint="`promptc explain --list` lists every code")
    code = args.code.strip().upper()
    if code not in CODES:
        raise UsageError(f"unknown diagnostic code '{args.code}'",
                         hint=did_you_mean(code, CODES) or "`promptc explain --list` lists every code")
    print(explain(code), end="")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("explain", help="explain a diagnostic code, e.g. `promptc explain E201`",
                        description="Print the long explanation of a diagnostic code: what it means, why, "
                                    "and what to write instead.")
    ex.add_argument("code", nargs="?", metavar="CODE", help="a code such as E201 or W401")
    ex.add_argument("--list", action="store_true", help="list every code with its one-line meaning")
    ex.set_defaults(func=cmd_explain)
