"""The front end as one call: read -> parse -> check -> lower, collecting every diagnostic."""

from __future__ import annotations

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


def compile_file(path: str | Path) -> FrontEndResult:
    """Compile a .prompt file. Never raises for a mistake in the file: everything is a diagnostic."""
    path = str(path)
    diags = Diagnostics()
    try:
        src = SourceFile.read(path)
    except SourceDecodeError as e:
        bad = SourceFile(e.path, e.text)
        diags.error(codes.NOT_UTF8, f"file is not valid UTF-8 (byte 0x{e.byte:02x})", bad.span_at(e.line, e.col),
                    hint="save the file as UTF-8")
        return FrontEndResult(None, diags.sorted())
    except FileNotFoundError:
        diags.error(codes.FILE_NOT_FOUND, f"no such file: {path}", None)
        return FrontEndResult(None, diags.sorted())
    except IsADirectoryError:
        diags.error(codes.FILE_NOT_FOUND, f"{path} is a directory, not a .prompt file", None)
        return FrontEndResult(None, diags.sorted())
    except OSError as e:
        diags.error(codes.FILE_NOT_FOUND, f"cannot read {path}: {e.strerror}", None)
        return FrontEndResult(None, diags.sorted())
    return compile_source(src)


def compile_text(text: str, path: str = "<string>") -> FrontEndResult:
    return compile_source(SourceFile(path, text))
