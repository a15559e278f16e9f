"""The front end as one call: read -> parse -> check -> lower, collecting every diagnostic."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from promptc import codes, ir
from promptc.check import check
from promptc.diagnostics import Diagnostic, Diagnostics
from promptc.lower import lower
from promptc.parser import parse_source
from promptc.source import SourceDecodeError, SourceFile


@dataclass
class FrontEndResult:
    program: ir.Program | None
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return self.program is not None


def compile_source(src: SourceFile) -> FrontEndResult:
    diags = Diagnostics()
    tree, syntax = parse_source(src)
    diags.extend(syntax)
    if tree is None:
        return FrontEndResult(None, diags.sorted())
    checked = check(tree, src, diags)
    if diags.has_errors:
        return FrontEndResult(None, diags.sorted())
    return FrontEndResult(lower(checked), diags.sorted())


def compile_file(path: str | bytes | Path) -> FrontEndResult:
    """Compile a .prompt file. Never raises for a mistake in the file: everything is a diagnostic."""
    path = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    diags = Diagnostics()
    try:
        src = SourceFile.read(path)
    except SourceDecodeError as e:
        return _not_utf8(e)
    except FileNotFoundError:
        diags.error(codes.FILE_NOT_FOUND, f"no such file: {path}", None)
        return FrontEndResult(None, diags.sorted())
    except IsADirectoryError:
        diags.error(codes.FILE_NOT_FOUND, f"{path} is a directory, not a .prompt file", None)
        return FrontEndResult(None, diags.sorted())
    except OSError as e:
        diags.error(codes.FILE_NOT_FOUND, f"cannot read {path}: {e.strerror}", None)
        return FrontEndResult(None, diags.sorted())
    except ValueError:  # a NUL in the path, or a lone surrogate the file system cannot encode
        diags.error(codes.FILE_NOT_FOUND, f"cannot read {path!a}: no file name can hold a NUL character or a "
                                          "lone surrogate", None)
        return FrontEndResult(None, diags.sorted())
    return compile_source(src)


def _not_utf8(e: SourceDecodeError) -> FrontEndResult:
    diags = Diagnostics()
    bad = SourceFile(e.path, e.text)
    diags.error(codes.NOT_UTF8, f"file is not valid UTF-8 (byte 0x{e.byte:02x})", bad.span_at(e.line, e.col),
                hint="save the file as UTF-8")
    return FrontEndResult(None, diags.sorted())


def compile_text(text: str | bytes, path: str = "<string>") -> FrontEndResult:
    """Compile program text (a str, or bytes read as UTF-8, as a file is). A leading byte-order mark is
    dropped, as it is from files; lone surrogates, NUL and the like become diagnostics. A value that is
    neither str nor bytes is a UsageError."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            return compile_source(SourceFile.from_bytes(path, bytes(text)))
        except SourceDecodeError as e:
            return _not_utf8(e)
    if not isinstance(text, str):
        from promptc.errors import UsageError

        raise UsageError(f"program text must be a str (or UTF-8 bytes), not {type(text).__name__}",
                         hint="promptc.loads(text) takes the source; promptc.load(path) reads a file")
    return compile_source(SourceFile(path, text[1:] if text.startswith("\ufeff") else text))
