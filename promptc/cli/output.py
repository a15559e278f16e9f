"""How the CLI shows results and errors: diagnostics on stderr (text or JSON) and one error tree to exit codes."""

from __future__ import annotations

import sys

from promptc.diagnostics import Diagnostic, render_all, summary, to_json, use_color
from promptc.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PromptcError

EXIT_DIAGNOSTICS = EXIT_FAILED
__all__ = ["EXIT_DIAGNOSTICS", "EXIT_OK", "EXIT_USAGE", "emit_diagnostics", "report_error"]


def emit_diagnostics(diags: list[Diagnostic], fmt: str, stream=None) -> None:
    stream = stream or sys.stderr
    if fmt == "json":
        return
    if diags:
        print(render_all(diags, color=use_color(stream)), file=stream)


def report_error(e: PromptcError, fmt: str = "text") -> int:
    """Print a PromptcError as the user should see it; its class decides the exit code."""
    if not e.diagnostics:
        print(f"promptc: error: {e}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
    elif fmt == "json":
        print(to_json(e.diagnostics))
    else:
        emit_diagnostics(e.diagnostics, "text")
        print(f"promptc: {summary(e.diagnostics)}", file=sys.stderr)
    return e.exit_code
