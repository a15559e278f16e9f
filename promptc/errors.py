"""The one error tree. Every failure promptc reports is a `PromptcError`; its class decides the exit code.

    PromptcError                 exit 1   the root; never raised bare
      DiagnosticError            exit 1   a program's mistakes, as located diagnostics
      InputError                 exit 1   an input, examples line or output that breaks the task's schema
      ModelError                 exit 1   a model or backend could not be loaded or called
      ArtifactError              exit 1   an artifact is missing, tampered with, or built for something else
      CacheError                 exit 1   the generation cache file is unreadable (corrupt, not SQLite)
      UsageError                 exit 2   how promptc was called: flags, target and task names, formats
      InternalError              exit 2   a bug in promptc (the CLI adds "this is a bug" and the traceback hint)

The CLI maps `exc.exit_code` to the process exit status and prints `exc.hint` when there is one, so no
module chooses an exit code by picking an exception that happens to be handled a certain way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from promptc.diagnostics import Diagnostic, Diagnostics

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


class PromptcError(Exception):
    """Root of every error promptc reports to a user. `hint` says what to do instead, when known."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str = "", *, hint: str | None = None):
        from promptc.source import escape_surrogates

        # a message quoting a user's str (a path, a key) may hold a lone surrogate; it must still print
        self.hint = escape_surrogates(hint) if hint else hint
        self.diagnostics: list[Diagnostic] = []
        super().__init__(escape_surrogates(message) if message else "promptc error")

    @property
    def message(self) -> str:
        return str(self)


class DiagnosticError(PromptcError):
    """A program has errors: carries every diagnostic, sorted and de-duplicated."""

    def __init__(self, diagnostics: Diagnostics | Iterable[Diagnostic], message: str | None = None):
        from promptc.diagnostics import Diagnostics, render

        items = diagnostics.sorted() if isinstance(diagnostics, Diagnostics) else list(diagnostics)
        text = message or "\n".join(render(d, color=False) for d in items if d.is_error)
        super().__init__(text or "the program has errors")
        self.diagnostics = items


class InputError(PromptcError):
    """A value (an input, an examples line, a model output) that does not fit the task's schema.
    `violations` holds the schema's located findings when there are any."""

    def __init__(self, message: str = "", *, hint: str | None = None, violations: list | None = None):
        super().__init__(message, hint=hint)
        self.violations = violations or []


class ModelError(PromptcError):
    """A model or backend failed: missing weights, an unreadable tokenizer, an HTTP error."""


class ArtifactError(PromptcError):
    """An artifact that cannot be used: missing, not promptc's, tampered with, or built for another task."""


class CacheError(PromptcError):
    """The generation cache cannot be read: a corrupt or foreign file where cache.db should be."""


class UsageError(PromptcError):
    """A mistake in how promptc was called rather than in the program."""

    exit_code = EXIT_USAGE


class Interrupted(PromptcError):
    """Ctrl-C or SIGTERM during a long job; whatever can be resumed was saved first."""

    exit_code = EXIT_INTERRUPTED


class InternalError(PromptcError):
    """A bug in promptc. The CLI reports it with a request to rerun with PROMPTC_DEBUG=1."""

    exit_code = EXIT_USAGE
