"""Diagnostics: the collector, and the rustc/mypy-style renderer shared by every stage."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Literal

from promptc import codes as _codes
from promptc.source import Span, escape_surrogates

Severity = Literal["error", "warning", "note"]

# Every code, its one-line meaning and its long explanation live in promptc.codes.
CODES = _codes.CODES


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding, located at a span, with an optional hint. Immutable and sortable."""

    severity: Severity
    code: str
    message: str
    span: Span | None
    hint: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple:
        s = self.span
        return (s.path, s.start, s.end) if s else ("", 0, 0)

    def to_json(self) -> dict:
        s = self.span
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": s.path if s else None,
            "line": s.line if s else None,
            "column": s.col if s else None,
            "end_line": s.end_line if s else None,
            "end_column": s.end_col if s else None,
            "hint": self.hint,
            "notes": list(self.notes),
        }


@dataclass
class Diagnostics:
    """A collector: stages add to it and keep going, so a run reports every mistake at once."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span | None, hint: str | None = None,
              notes: tuple[str, ...] = ()) -> None:
        self.items.append(Diagnostic("error", code, message, span, hint, notes))

    def warning(self, code: str, message: str, span: Span | None, hint: str | None = None,
                notes: tuple[str, ...] = ()) -> None:
        self.items.append(Diagnostic("warning", code, message, span, hint, notes))

    def checkpoint(self) -> Checkpoint:
        """Remember how many diagnostics there are now, to ask later whether errors came after it:
        `since = diags.checkpoint(); ...; if since.ok: ...`."""
        return Checkpoint(self, len(self.items))

    def extend(self, other: list[Diagnostic] | Diagnostics) -> None:
        self.items.extend(other.items if isinstance(other, Diagnostics) else other)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        seen: set[tuple] = set()
        out = []
        for d in sorted(self.items, key=Diagnostic.sort_key):
            key = (d.code, d.message, d.sort_key())
            if key not in seen:
                seen.add(key)
                out.append(d)
        return out

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A point in a Diagnostics collector; see `Diagnostics.checkpoint`."""

    diags: Diagnostics
    start: int

    @property
    def has_errors(self) -> bool:
        """Whether an error was reported since the checkpoint."""
        return any(d.is_error for d in self.diags.items[self.start:])

    @property
    def ok(self) -> bool:
        """No error since the checkpoint (warnings allowed)."""
        return not self.has_errors


_COLORS = {"error": "\x1b[1;31m", "warning": "\x1b[1;33m", "note": "\x1b[1;36m"}
_BOLD, _BLUE, _GREEN, _RESET = "\x1b[1m", "\x1b[1;34m", "\x1b[1;32m", "\x1b[0m"


def use_color(stream=None) -> bool:
    """Colour only on a TTY, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def render(d: Diagnostic, color: bool = False) -> str:
    """Render one diagnostic as `file:line:col: severity: message [CODE]`, the line, and a caret."""

    def c(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    s = d.span
    loc = f"{s.path}:{s.line}:{s.col}: " if s else "promptc: "
    out = [f"{c(_BOLD, loc)}{c(_COLORS[d.severity], d.severity)}: {d.message} [{d.code}]"]
    if s is not None:
        text = s.source.line_text(s.line)
        if text or s.line <= s.source.line_count:
            gutter = str(s.line)
            pad = " " * len(gutter)
            expanded, col, width = _excerpt(s, text)
            marker = "^" + "~" * (width - 1)
            out.append(f"{c(_BLUE, gutter + ' |')} {expanded}")
            out.append(f"{c(_BLUE, pad + ' |')} {' ' * (col - 1)}{c(_COLORS[d.severity], marker)}")
    for note in d.notes:
        out.append(f"  note: {note}")
    if d.hint:
        out.append(f"  {c(_GREEN, 'hint')}: {d.hint}")
    return escape_surrogates("\n".join(out))  # a path or message from a str may hold one; output must encode


EXCERPT_WIDTH = 160  # characters of a source line a diagnostic quotes, at most
# Quoted source is shown one character per character, so the caret stays under its column: control
# characters as their Control Pictures (NUL as U+2400, ESC as U+241B, so a quoted line cannot drive the
# terminal), line and paragraph separators and NEL (which would break the quoted line) as U+2424, and a
# lone surrogate (text from a Python str; it cannot be printed) as U+FFFD.
_VISIBLE = str.maketrans({**{i: 0x2400 + i for i in range(32) if i != 9}, 0x7F: 0x2421, 0x85: 0x2424,
                          0x2028: 0x2424, 0x2029: 0x2424, **{i: 0xFFFD for i in range(0xD800, 0xE000)}})


def _excerpt(s: Span, text: str) -> tuple[str, int, int]:
    """The quoted line, the caret's column in it and the caret's width. A long line (a minified JSON
    examples line can be megabytes) is cut to a window around the caret, marked with "…"; a
    source.LineExcerpt already holds only a window, starting at its `first_col`."""
    first = getattr(s.source, "first_col", 1)
    col = max(1, s.col - first + 1)
    expanded = text.replace("\t", " ").translate(_VISIBLE)
    width = (s.end_col - s.col) if s.end_line == s.line else len(text) - col + 1
    lead = "…" if first > 1 else ""
    tail = "…" if getattr(s.source, "clipped_end", False) else ""
    if len(expanded) > EXCERPT_WIDTH:
        start = max(0, min(col - 1 - EXCERPT_WIDTH // 3, len(expanded) - EXCERPT_WIDTH))
        if start > 0:
            lead = "…"
        if start + EXCERPT_WIDTH < len(expanded):
            tail = "…"
        expanded = expanded[start:start + EXCERPT_WIDTH]
        col -= start
    col = min(col, len(expanded) + 1)
    width = max(1, min(width, max(1, len(expanded) - col + 1)))
    return lead + expanded + tail, col + len(lead), width


def render_all(diags: list[Diagnostic], color: bool = False) -> str:
    return "\n".join(render(d, color) for d in diags)


def to_json(diags: list[Diagnostic]) -> str:
    # a surrogate (from a str path or message) is written as its JSON escape, so the output encodes
    return escape_surrogates(json.dumps([d.to_json() for d in diags], indent=2, ensure_ascii=False))


def summary(diags: list[Diagnostic]) -> str:
    errors = sum(d.is_error for d in diags)
    warnings = sum(d.severity == "warning" for d in diags)
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)


def closest(name: str, candidates) -> str | None:
    """The nearest candidate by edit distance, for 'did you mean' hints (None if nothing is close)."""
    import difflib

    cands = list(candidates)
    if not cands:
        return None
    lowered = {c.lower(): c for c in cands}
    if name.lower() in lowered:
        return lowered[name.lower()]
    m = difflib.get_close_matches(name, cands, n=1, cutoff=0.6)
    if m:
        return m[0]
    m = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[m[0]] if m else None


def did_you_mean(name: str, candidates, what: str = "") -> str | None:
    """The one 'did you mean' hint: the closest candidate, else (when `what` is given) the list of them."""
    cands = list(candidates)
    near = closest(name, cands)
    if near is not None:
        return f"did you mean '{near}'?"
    if what:
        return f"{what}: {', '.join(cands)}" if cands else f"there are no {what}"
    return None
