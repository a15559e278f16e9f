"""The command line: `promptc check | compile | render | run | test | tune | ...`.

Exit codes follow the error's class (promptc.errors): 0 clean, 1 diagnostics, failing tests or a failed
run, 2 usage or internal error, 130 interrupted. A mistake in a user's program never shows a traceback."""

from __future__ import annotations

from promptc.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
