"""Source files and spans: the positions every later stage reports against."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path


class SourceDecodeError(Exception):
    """A file that is not valid UTF-8; carries the line and column of the first bad byte."""

    def __init__(self, path: str, line: int, col: int, text: str, byte: int) -> None:
        super().__init__(f"{path}:{line}:{col}: not valid UTF-8")
        self.path, self.line, self.col, self.text, self.byte = path, line, col, text, byte


@dataclass(eq=False)
class SourceFile:
    """The text of one file, with a line index for offset -> (line, col) lookups."""

    path: str
    text: str
    _starts: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        starts = [0]
        find = self.text.find
        i = find("\n")
        while i >= 0:
            starts.append(i + 1)
            i = find("\n", i + 1)
        self._starts = starts

    @classmethod
    def read(cls, path: str | Path) -> SourceFile:
        """Read a file as UTF-8; raise SourceDecodeError located at the first bad byte."""
        data = Path(path).read_bytes()
        return cls.from_bytes(str(path), data)

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> SourceFile:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            line_start = data.rfind(b"\n", 0, e.start) + 1
            col = len(data[line_start : e.start].decode("utf-8", "replace")) + 1
            text = data.decode("utf-8", "replace")
            raise SourceDecodeError(path, line, col, text, data[e.start]) from None
        if text.startswith("\ufeff"):
            text = text[1:]
        return cls(path, text)

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based line and column of a character offset."""
        i = bisect.bisect_right(self._starts, offset) - 1
        return i + 1, offset - self._starts[i] + 1

    def offset(self, line: int, col: int) -> int:
        """Character offset of a 1-based line and column (clamped to the file)."""
        line = max(1, min(line, len(self._starts)))
        return min(self._starts[line - 1] + col - 1, len(self.text))

    def line_text(self, line: int) -> str:
        if line < 1 or line > len(self._starts):
            return ""
        start = self._starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)].rstrip("\r")

    @property
    def line_count(self) -> int:
        return len(self._starts)

    def span(self, start: int, end: int) -> Span:
        line, col = self.line_col(start)
        end_line, end_col = self.line_col(max(start, end))
        return Span(self, start, max(start, end), line, col, end_line, end_col)

    def span_at(self, line: int, col: int, length: int = 1) -> Span:
        start = self.offset(line, col)
        return self.span(start, start + length)


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open character range [start, end) in one SourceFile, with 1-based line/col."""

    source: SourceFile = field(repr=False, compare=False)
    start: int
    end: int
    line: int
    col: int
    end_line: int
    end_col: int

    @property
    def path(self) -> str:
        return self.source.path

    def __str__(self) -> str:
        return f"{self.source.path}:{self.line}:{self.col}"

    def sub(self, start: int, end: int) -> Span:
        """A span for a range of absolute offsets inside the same file."""
        return self.source.span(start, end)

    def join(self, other: Span) -> Span:
        return self.source.span(min(self.start, other.start), max(self.end, other.end))



class LineExcerpt(SourceFile):
    """A bounded excerpt of one line of a (possibly huge) data file, for diagnostics.

    Spans into it report the real line and column (`file:line:col`), but it keeps at most
    EXCERPT_CHARS characters around the column of interest, so a 10 MB JSON line never becomes 10 MB
    of stderr, nor of memory held by a diagnostic. The renderer marks a clipped start or end with "…"."""

    EXCERPT_CHARS = 160

    def __init__(self, path: str, lineno: int, line: str, col: int = 1) -> None:
        width = self.EXCERPT_CHARS
        start = 0 if col - 1 < width // 2 else col - 1 - width // 3
        start = max(0, min(start, max(0, len(line) - width)))
        self.path = path
        self.text = line[start:start + width]
        self.lineno = lineno
        self.first_col = start + 1  # the real column of text[0]
        self.clipped_end = start + width < len(line)
        self._starts = [0]

    # Offsets are virtual: line n, column c is n * LINE_STRIDE + c - 1, so spans of different lines of
    # one file sort by line and never compare equal (Diagnostics.sorted orders and de-duplicates by
    # offset). `text` is not indexed by them; the renderer reads line_text and the column.
    LINE_STRIDE = 1 << 40

    def line_col(self, offset: int) -> tuple[int, int]:
        return self.lineno, offset - self.lineno * self.LINE_STRIDE + 1

    def offset(self, line: int, col: int) -> int:
        return self.lineno * self.LINE_STRIDE + max(1, col) - 1

    def line_text(self, line: int) -> str:
        return self.text if line == self.lineno else ""

    @property
    def line_count(self) -> int:
        return self.lineno

    def span_at(self, line: int, col: int, length: int = 1) -> Span:
        start = self.offset(line, col)
        n = max(1, length)
        return Span(self, start, start + n, self.lineno, col, self.lineno, col + n)


def excerpt_span(path: str, lineno: int, line: str, col: int = 1, length: int = 1) -> Span:
    """A span at `path:lineno:col` whose source keeps only a bounded excerpt of `line`."""
    return LineExcerpt(path, lineno, line, col).span_at(lineno, col, length)


_SURROGATE = re.compile("[\ud800-\udfff]")


def first_surrogate(text: str) -> int:
    """The index of the first lone surrogate (U+D800..U+DFFF) in `text`, or -1. Such text cannot be
    encoded as UTF-8, so it cannot be hashed, written to a file or printed."""
    m = _SURROGATE.search(text)
    return m.start() if m else -1


def escape_surrogates(text: str) -> str:
    """`text` with every surrogate code point written as its `\\uXXXX` escape, so that it can be encoded
    as UTF-8 (printed, written, sent); other text is returned as it is."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _SURROGATE.search(text) else text
