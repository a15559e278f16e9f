"""JSON lines (core): the one writer and the one line splitter for every JSONL file promptc writes or reads.

A JSON string may hold U+2028 and U+2029 (line and paragraph separators) and U+0085 (next line) raw, and
`json.dumps(..., ensure_ascii=False)` leaves them raw. Python's `str.splitlines`, JavaScript before
ES2019, and many editors and log tools treat them as line breaks, so one record would read as two broken
ones. So every JSONL record promptc writes escapes them (`\\u2028`, still the same JSON value), and every
JSONL text promptc reads is split on `\\n` only (a trailing `\\r` is dropped), never with `splitlines`.
"""

from __future__ import annotations

import json
from typing import Any

# characters that some readers take for a line break, inside an otherwise valid JSON string
_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}
_TABLE = str.maketrans(_BREAKS)


def dumps(value: Any, **options: Any) -> str:
    """One JSONL record, without its newline: compact JSON (non-ASCII kept) with U+2028, U+2029 and
    U+0085 escaped. Keyword options go to json.dumps (sort_keys, default, ...)."""
    text = json.dumps(value, ensure_ascii=options.pop("ensure_ascii", False), **options)
    return text.translate(_TABLE) if any(c in text for c in _BREAKS) else text


def line(value: Any, **options: Any) -> str:
    """`dumps(value)` and its newline."""
    return dumps(value, **options) + "\n"


def split(text: str) -> list[str]:
    """The lines of a JSONL text: split on "\\n" only, each without a trailing "\\r"; a final newline
    does not make an extra empty line. A leading byte-order mark is dropped."""
    if text.startswith("\ufeff"):
        text = text[1:]
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]
