"""Data files (core): the one reader for `examples "FILE.jsonl"` and `--extra-examples FILE`.

A program may come from someone else, so the files it names are treated as hostile:

- a path resolves inside the program's folder, or inside a data root the user names
  (`--data-root DIR` or PROMPTC_DATA_ROOT); absolute paths, `..` and symlinks that leave the allowed
  roots are refused (E110);
- only regular files are read: FIFOs, devices, sockets and directories are refused before they are
  opened, and the file is opened non-blocking and checked again on the open descriptor;
- a file larger than the size limit (64 MiB; `--max-data-bytes N` or PROMPTC_MAX_DATA_BYTES) is refused
  before it is read, and reading stops at the limit if the file grows;
- lines are streamed: the whole file is never decoded or indexed at once, and a diagnostic keeps only a
  bounded excerpt of its line (source.LineExcerpt);
- JSON is strict: NaN and Infinity, numbers out of range, duplicate keys, lone surrogates and nesting
  deeper than MAX_JSON_DEPTH are located errors (E107), never values.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptc import codes
from promptc.nearby import near_hint, near_path
from promptc.source import excerpt_span, first_surrogate

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
ENV_ROOT = "PROMPTC_DATA_ROOT"
ENV_MAX_BYTES = "PROMPTC_MAX_DATA_BYTES"
MAX_JSON_DEPTH = 64
MAX_INT_DIGITS = 100
_CHUNK = 1 << 20
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

E_DECODE, E_LINE, E_FILE, E_REFUSED = codes.NOT_UTF8, codes.BAD_EXAMPLES_LINE, codes.FILE_NOT_FOUND, \
    codes.DATA_FILE_REFUSED


class DataFileError(Exception):
    """A data file that is refused or cannot be read: `code` is E108 (missing) or E110 (refused)."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass(frozen=True)
class Policy:
    """Where data files may come from, and how large they may be."""

    roots: tuple[Path, ...] = ()  # extra allowed roots, besides the program's folder
    max_bytes: int = DEFAULT_MAX_BYTES


_OVERRIDE: list[Policy] = []


def policy() -> Policy:
    """The policy in force: the CLI's --data-root / --max-data-bytes (see `using`), else the
    environment (PROMPTC_DATA_ROOT, os.pathsep-separated; PROMPTC_MAX_DATA_BYTES), else the defaults."""
    if _OVERRIDE:
        return _OVERRIDE[-1]
    roots = tuple(Path(p) for p in os.environ.get(ENV_ROOT, "").split(os.pathsep) if p)
    raw = os.environ.get(ENV_MAX_BYTES, "").strip()
    max_bytes = DEFAULT_MAX_BYTES
    if raw:
        try:
            max_bytes = parse_size(raw)
        except ValueError:
            from promptc.errors import UsageError

            raise UsageError(f"{ENV_MAX_BYTES}={raw!r} is not a size", hint="write bytes, or 64M, 2G") from None
    return Policy(roots, max_bytes)


@contextlib.contextmanager
def using(roots: list[str] | tuple[str, ...] = (), max_bytes: int | None = None) -> Iterator[Policy]:
    """Within the block, data files may also come from `roots`, and may be up to `max_bytes`."""
    base = policy()
    pol = Policy(base.roots + tuple(Path(r) for r in roots), max_bytes if max_bytes is not None else base.max_bytes)
    _OVERRIDE.append(pol)
    try:
        yield pol
    finally:
        _OVERRIDE.pop()


def parse_size(text: str) -> int:
    """'1000', '64M', '2GiB' -> bytes; ValueError for anything else."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (write bytes, or 64M, 2G)")
    n = int(m.group(1))
    unit = m.group(2).lower()
    return n * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


# ------------------------------------------------------------------ resolving and opening
def resolve(rel: str, program_dir: Path | None, pol: Policy | None = None) -> Path:
    """The real path of a data file named `rel` by a program in `program_dir` (None: the current
    directory), or DataFileError if it leaves the allowed roots or is not a regular file."""
    pol = pol or policy()
    if "\0" in rel:
        raise DataFileError(E_FILE, f"invalid examples file path {rel!r}")
    base = Path(program_dir) if program_dir is not None else Path(".")
    roots = [base, *pol.roots]
    candidate = Path(rel) if os.path.isabs(rel) else base / rel
    try:
        real = candidate.resolve(strict=True)
    except FileNotFoundError:
        near = near_path(candidate)
        shown = os.path.relpath(near, base) if near is not None and not os.path.isabs(rel) else near
        raise DataFileError(E_FILE, f"examples file not found: {rel}",
                            (f"did you mean '{shown}'? " if near is not None else "") +
                            f"the path is resolved relative to the program: {candidate}") from None
    except (OSError, RuntimeError) as e:  # a symlink loop, a permission error
        raise DataFileError(E_FILE, f"cannot read examples file {rel}: {getattr(e, 'strerror', None) or e}") \
            from None
    real_roots = []
    for r in roots:
        try:
            real_roots.append(r.resolve(strict=False))
        except (OSError, RuntimeError):
            continue
    if not any(real == r or r in real.parents for r in real_roots):
        extra = f" and {', '.join(str(r) for r in pol.roots)}" if pol.roots else ""
        raise DataFileError(E_REFUSED, f"examples file {rel} is outside the program's folder",
                            f"data files are read only from the program's folder{extra}; to allow another "
                            f"folder, pass --data-root DIR (or set {ENV_ROOT})")
    check_regular(real, rel)
    return real


def check_regular(path: Path, shown: str) -> os.stat_result:
    try:
        st = path.stat()
    except OSError as e:
        raise DataFileError(E_FILE, f"cannot read examples file {shown}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):  # a plain mistake rather than a hostile path
        raise DataFileError(E_FILE, f"cannot read examples file {shown}: it is a directory")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else \
            "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
        raise DataFileError(E_REFUSED, f"examples file {shown} is {kind}, not a regular file",
                            "examples are read only from regular files")
    return st


def check_size(size: int, shown: str, pol: Policy) -> None:
    if size > pol.max_bytes:
        raise DataFileError(E_REFUSED, f"examples file {shown} is {_human(size)}, over the "
                                       f"{_human(pol.max_bytes)} limit for data files",
                            f"to read it anyway, raise the limit: --max-data-bytes {size} "
                            f"(or set {ENV_MAX_BYTES})")


def read_bytes_bounded(path: Path, shown: str, pol: Policy | None = None) -> Iterator[bytes]:
    """The file's bytes in chunks: opened without blocking and without following a last-moment
    symlink, re-checked on the descriptor, and never more than the size limit."""
    pol = pol or policy()
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise DataFileError(E_FILE, f"cannot read examples file {shown}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataFileError(E_REFUSED, f"examples file {shown} is not a regular file",
                                "examples are read only from regular files")
        check_size(st.st_size, shown, pol)
        total = 0
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                return
            total += len(chunk)
            if total > pol.max_bytes:
                check_size(total, shown, pol)
            yield chunk


# ------------------------------------------------------------------ lines and JSON
@dataclass
class DataLine:
    """One line of a data file. `text` is only kept while the line is read; spans keep an excerpt."""

    path: str
    lineno: int
    text: str

    def span(self, col: int = 1, length: int | None = None):
        if length is None:
            length = max(1, len(self.text) - col + 1)
        return excerpt_span(self.path, self.lineno, self.text, col, length)

    def key_span(self, key: str):
        """The span of `"key"` on this line (the first occurrence), or the whole line."""
        needle = json.dumps(key, ensure_ascii=False)
        i = self.text.find(needle)
        if i < 0:
            return self.span()
        return self.span(i + 1, len(needle))


@dataclass
class Reader:
    """Streams `path` line by line; `digest` is the SHA-256 of the bytes read (for program hashes)."""

    path: Path
    shown: str
    pol: Policy = field(default_factory=policy)
    digest: bytes = b""

    def lines(self) -> Iterator[tuple[int, bytes]]:
        h = hashlib.sha256()
        pending = b""
        lineno = 0
        for chunk in read_bytes_bounded(self.path, self.shown, self.pol):
            h.update(chunk)
            pending += chunk
            parts = pending.split(b"\n")
            pending = parts.pop()
            for raw in parts:
                lineno += 1
                yield lineno, raw
        if pending:
            lineno += 1
            yield lineno, pending
        self.digest = h.digest()


class _LineProblem(Exception):
    def __init__(self, message: str, col: int = 1, needle: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message, self.col, self.needle, self.hint = message, col, needle, hint


def _no_constants(name: str) -> Any:
    raise _LineProblem(f"{name} is not valid JSON", needle=name,
                       hint="JSON numbers are finite; write null, or a number")


def _float(text: str) -> float:
    v = float(text)
    if v in (float("inf"), float("-inf")):
        raise _LineProblem(f"number {text[:40]} is out of range", needle=text[:40],
                           hint="JSON numbers here must fit in a 64-bit float")
    return v


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _LineProblem(f"integer with {len(text.lstrip('-')):,} digits is too long", needle=text[:40],
                           hint=f"integers have at most {MAX_INT_DIGITS} digits")
    return int(text)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # in C; only a duplicate needs the slow look
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _LineProblem(f"duplicate key '{clip(k)}'", needle=json.dumps(k, ensure_ascii=False),
                                   hint="JSON parsers disagree on which value wins; give each key once")
            seen.add(k)
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_no_constants, parse_float=_float,
                            parse_int=_int)


_INF = float("inf")


def _walk(value: Any, check_surrogates: bool) -> int:
    """Checks what the fast decoder lets through (depth, infinite floats, huge integers, lone
    surrogates) and returns the number of object keys, to compare with the keys in the text."""
    keys = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            if d > MAX_JSON_DEPTH:
                raise _LineProblem(f"JSON nested more than {MAX_JSON_DEPTH} levels deep",
                                   hint="examples are records of the task's types; flatten the data")
            keys += len(v)
            for k, x in v.items():
                if check_surrogates and first_surrogate(k) >= 0:
                    raise _LineProblem("a key holds a lone surrogate escape (\\ud800-\\udfff)",
                                       hint="surrogates come in pairs; write the character itself")
                stack.append((x, d + 1))
        elif isinstance(v, list):
            if d > MAX_JSON_DEPTH:
                raise _LineProblem(f"JSON nested more than {MAX_JSON_DEPTH} levels deep",
                                   hint="examples are records of the task's types; flatten the data")
            stack.extend((x, d + 1) for x in v)
        elif isinstance(v, str):
            if check_surrogates and first_surrogate(v) >= 0:
                raise _LineProblem("a string holds a lone surrogate escape (\\ud800-\\udfff)",
                                   hint="surrogates come in pairs; write the character itself")
        elif isinstance(v, float):
            if v in (_INF, -_INF):
                raise _LineProblem("a number is out of range", hint="JSON numbers here must fit in a 64-bit float")
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10 ** MAX_INT_DIGITS:
            raise _LineProblem(f"an integer has more than {MAX_INT_DIGITS} digits",
                               hint=f"integers have at most {MAX_INT_DIGITS} digits")
    return keys


def parse_json_line(text: str) -> Any:
    """Strict JSON for one line; raises _LineProblem (see module doc) or json.JSONDecodeError. One
    reused decoder with hooks costs about as much as json.loads plus a walk of the value (measured);
    the walk for depth and surrogates runs only on lines that could need it."""
    value = _strict(text)
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH or ("\\u" in text and _SURROGATE_ESCAPE.search(text)):
        _walk(value, True)
    return value


def _strict(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise _LineProblem(f"JSON nested more than {MAX_JSON_DEPTH} levels deep",
                           hint="examples are records of the task's types; flatten the data") from None
    except ValueError as e:
        if isinstance(e, (json.JSONDecodeError, _LineProblem)):
            raise
        raise _LineProblem(f"invalid JSON: {clip(str(e))}") from None


def clip(text: str, n: int = 80) -> str:
    """At most `n` characters of `text` for a message (a key or value from data can be huge)."""
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


_CLOSER = {"{": "}", "[": "]"}


def _unclosed(text: str, upto: int) -> list[tuple[str, int]]:
    """The brackets still open at `upto` (outside strings), as (bracket, 0-based index)."""
    stack: list[tuple[str, int]] = []
    in_str = esc = False
    for i, c in enumerate(text[:upto]):
        if in_str:
            esc, in_str = (False, True) if esc else (c == "\\", c != '"')
        elif c == '"':
            in_str = True
        elif c in _CLOSER:
            stack.append((c, i))
        elif c in "]}" and stack:
            stack.pop()
    return stack


def json_mistake(text: str, e: json.JSONDecodeError) -> tuple[str, int, str]:
    """The common JSONL mistakes in plain words, instead of Python's json text: (message, 1-based column
    on the line, hint). Trailing commas, single quotes, unquoted keys, Python's True/None, a missing
    bracket or comma, a BOM, and two objects on one line; anything else keeps json's own words."""
    pos = e.pos
    at = text[pos:pos + 1]
    before = text[:pos].rstrip()
    one_per_line = 'each line is one JSON object: {"input": {...}, "output": ...}'
    if at == "\ufeff" or e.msg.startswith("Unexpected UTF-8 BOM"):  # not one inside a string value
        return ("a byte-order mark (BOM) inside the file", pos + 1,
                "a BOM is only dropped at the very start of a file; this one usually comes from joining files: "
                "remove it, and save the file as UTF-8 without a BOM")
    if e.msg == "Extra data":
        if at in "{[":
            return ("two JSON values on one line", pos + 1, "put each object on its own line")
        return (f"unexpected text after the object: {clip(text[pos:], 20)!r}", pos + 1,
                "a line holds exactly one JSON object; remove what follows it")
    if before.endswith(",") and at in ("}", "]"):
        return (f"trailing comma before '{at}'", len(before), "JSON allows no comma after the last item; remove it")
    if at == "'":
        return ("single-quoted string: JSON strings use double quotes", pos + 1,
                "write \"text\", not 'text' (and \"key\": not 'key':)")
    for word, right in (("True", "true"), ("False", "false"), ("None", "null"), ("NaN", "null"),
                        ("undefined", "null")):
        if text.startswith(word, pos):
            return (f"{word} is not JSON", pos + 1, f"write {right}")
    if e.msg.startswith("Expecting property name") and (at.isalpha() or at == "_"):
        return ("an object key without double quotes", pos + 1, 'JSON keys are strings: write "key": value')
    opened = _unclosed(text, pos)
    if pos >= len(text.rstrip()) and opened:
        bracket, i = opened[-1]
        return (f"the line ends before '{_CLOSER[bracket]}': the '{bracket}' at column {i + 1} is never closed",
                pos + 1, f"add the missing '{_CLOSER[bracket]}'; {one_per_line}, on one line")
    if at in ("}", "]") and opened and _CLOSER[opened[-1][0]] != at:
        bracket, i = opened[-1]
        return (f"'{at}' where '{_CLOSER[bracket]}' should close the '{bracket}' at column {i + 1}", pos + 1,
                f"a '{_CLOSER[bracket]}' is missing before it")
    if e.msg == "Expecting ',' delimiter":
        return ("a comma is missing between two items", pos + 1, "separate the entries of an object or list with ','")
    if e.msg == "Expecting ':' delimiter":
        return ("a colon is missing after the key", pos + 1, 'write "key": value')
    if e.msg == "Unterminated string starting at":
        return ("a string is never closed: its closing '\"' is missing", pos + 1,
                'close the string with "; a quote inside a string is written \\"')
    return (f"invalid JSON: {e.msg}", e.colno, one_per_line)


def json_lines(reader: Reader, diags) -> Iterator[tuple[DataLine, Any]]:
    """(line, value) for each non-blank line that is valid, strict JSON; E101/E107 for the others."""
    for lineno, raw in reader.lines():
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            good = raw[: e.start].decode("utf-8", "replace")
            shown = raw.decode("utf-8", "replace")
            diags.error(E_DECODE, f"examples file is not valid UTF-8 (byte 0x{raw[e.start]:02x})",
                        excerpt_span(reader.shown, lineno, shown, len(good) + 1), hint="save the file as UTF-8")
            continue
        if not text.strip():
            continue
        line = DataLine(reader.shown, lineno, text)
        try:
            value = parse_json_line(text)
        except json.JSONDecodeError as e:
            message, col, hint = json_mistake(text, e)
            diags.error(E_LINE, message, line.span(col, 1), hint=hint)
            continue
        except _LineProblem as p:
            span = line.span(p.col, 1)
            if p.needle:
                i = text.find(p.needle)
                if p.message.startswith("duplicate key"):
                    i = text.find(p.needle, i + 1) if i >= 0 else -1
                if i >= 0:
                    span = line.span(i + 1, len(p.needle))
            diags.error(E_LINE, p.message, span, hint=p.hint)
            continue
        yield line, value


def open_examples(rel: str, program_dir: Path | None, pol: Policy | None = None) -> Reader:
    """Resolve and check an `examples "rel"` path; the Reader streams it. Raises DataFileError."""
    pol = pol or policy()
    real = resolve(rel, program_dir, pol)
    check_size(real.stat().st_size, rel, pol)
    shown = str(Path(program_dir) / rel) if program_dir is not None and not os.path.isabs(rel) else rel
    return Reader(real, shown, pol)


def open_user_file(path: str, pol: Policy | None = None) -> Reader:
    """A data file the user named on the command line (--extra-examples): any location the user can
    read, but still only a regular file within the size limit. Raises DataFileError."""
    pol = pol or policy()
    p = Path(path)
    try:
        real = p.resolve(strict=True)
    except FileNotFoundError:
        raise DataFileError(E_FILE, f"file not found: {path}", near_hint(path)) from None
    except (OSError, RuntimeError) as e:
        raise DataFileError(E_FILE, f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    st = check_regular(real, path)
    check_size(st.st_size, path, pol)
    return Reader(real, path, pol)


def line_excerpt(path: str, lineno: int, col: int = 1, pol: Policy | None = None):
    """A span for line `lineno` of a data file, found by streaming (for reports made after the check,
    such as a secret found while building training data). None when the file cannot be read."""
    pol = pol or policy()
    try:
        reader = Reader(Path(path), path, pol)
        check_regular(Path(path), path)
        for n, raw in reader.lines():
            if n == lineno:
                line = DataLine(path, n, raw.decode("utf-8", "replace"))
                return line.span(col, max(1, len(line.text) - col + 1))
    except (DataFileError, OSError):
        return None
    return None
