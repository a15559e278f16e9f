"""`promptc lsp`: the Language Server Protocol over stdio, on pygls (the [lsp] extra).

pygls because it is the maintained Python LSP framework (lsprotocol types, stdio transport, the
document store with incremental sync), and pytest-lsp drives it as a real client in the tests.

Every feature is a query on `promptc.lsp.analysis`; this module only converts positions and types.
Analysis runs off the event loop, one at a time, always on the newest text: edits that arrive while
one runs are folded into the next run, so a fast typist never queues stale work.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from promptc._version import __version__
from promptc.diagnostics import Diagnostic
from promptc.lsp.analysis import Analysis, Completion, analyze, complete

log = logging.getLogger(__name__)

_SEVERITY = {"error": lsp.DiagnosticSeverity.Error, "warning": lsp.DiagnosticSeverity.Warning,
             "note": lsp.DiagnosticSeverity.Information}
_SYMBOL = {"enum": lsp.SymbolKind.Enum, "member": lsp.SymbolKind.EnumMember, "type": lsp.SymbolKind.Struct,
           "field": lsp.SymbolKind.Field, "task": lsp.SymbolKind.Function, "param": lsp.SymbolKind.Variable,
           "text": lsp.SymbolKind.String, "example": lsp.SymbolKind.Object, "file": lsp.SymbolKind.File,
           "constraint": lsp.SymbolKind.Boolean, "test": lsp.SymbolKind.Module, "case": lsp.SymbolKind.Method,
           "target": lsp.SymbolKind.Constant}
_COMPLETION = {"keyword": lsp.CompletionItemKind.Keyword, "type": lsp.CompletionItemKind.Struct,
               "enum": lsp.CompletionItemKind.Enum, "member": lsp.CompletionItemKind.EnumMember,
               "field": lsp.CompletionItemKind.Field, "param": lsp.CompletionItemKind.Variable,
               "option": lsp.CompletionItemKind.Property, "value": lsp.CompletionItemKind.Value,
               "function": lsp.CompletionItemKind.Function, "generator": lsp.CompletionItemKind.Function}
_AT = re.compile(r"(?:at |is at )(\S+):(\d+):(\d+)")


def _path(uri: str) -> str:
    return to_fs_path(uri) or uri


def _uri(path: str) -> str:
    return from_fs_path(str(Path(path).resolve())) or path


class PromptcServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("promptc", __version__)
        self.analyses: dict[str, Analysis] = {}
        self.analysed_version: dict[str, int | None] = {}
        self.published: dict[str, set[str]] = {}  # document uri -> other files it published on
        self.lock = asyncio.Lock()
        self.full_timers: dict[str, asyncio.TimerHandle] = {}

    # ------------------------------------------------------------ positions (code points <-> client units)
    def _units(self, line: str, ch: int) -> int:
        if line.isascii():
            return ch
        return self.workspace.position_codec.client_num_units(line[:ch])

    def _from_client(self, line: str, ch: int) -> int:
        if line.isascii():
            return min(ch, len(line))
        pos = self.workspace.position_codec.position_from_client_units([line], lsp.Position(0, ch))
        return pos.character

    def to_range(self, an_src, rng) -> lsp.Range:
        (l0, c0), (l1, c1) = rng
        return lsp.Range(lsp.Position(l0, self._units(an_src.line_text(l0 + 1), c0)),
                         lsp.Position(l1, self._units(an_src.line_text(l1 + 1), c1)))

    def server_pos(self, text_line: str, p: lsp.Position) -> tuple[int, int]:
        return p.line, self._from_client(text_line, p.character)

    # ------------------------------------------------------------ analysis and diagnostics
    async def refresh(self, uri: str) -> None:
        timer = self.full_timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        async with self.lock:
            doc = self.workspace.get_text_document(uri)
            if self.analysed_version.get(uri, -1) == doc.version and uri in self.analyses:
                return  # a newer run already covered this edit
            version, text = doc.version, doc.source
            if _is_dotprompt(text):  # Google's Dotprompt shares the .prompt extension: not ours to judge
                self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri, [], version))
                return
            previous = self.analyses.get(uri)
            an = await asyncio.to_thread(analyze, _path(uri), text, previous)
            self.analyses[uri] = an
            self.analysed_version[uri] = version
            self.publish(uri, an, version)
            if an.partial:  # only the edited task was checked: check everything once typing pauses
                loop = asyncio.get_running_loop()
                self.full_timers[uri] = loop.call_later(
                    FULL_CHECK_DELAY, lambda: asyncio.ensure_future(self.full_check(uri, version)))

    async def full_check(self, uri: str, version: int | None) -> None:
        async with self.lock:
            an = self.analyses.get(uri)
            if an is None or not an.partial or self.analysed_version.get(uri) != version:
                return  # closed, already complete, or a newer edit will schedule its own
            doc = self.workspace.get_text_document(uri)
            if doc.version != version:
                return
            new = await asyncio.to_thread(analyze, _path(uri), an.text, an, True)
            self.analyses[uri] = new
            if _signature(new.diagnostics) != _signature(an.diagnostics):
                self.publish(uri, new, version)

    def publish(self, uri: str, an: Analysis, version: int | None) -> None:
        by_file: dict[str, list[lsp.Diagnostic]] = {}
        for d in an.diagnostics:
            path = d.span.path if d.span is not None else an.path
            target = uri if path == an.path else _uri(path)
            by_file.setdefault(target, []).append(self.to_lsp(d, an))
        mine = by_file.pop(uri, [])
        # an examples file's problems are also summarised on the line that names the file
        for other, ds in by_file.items():
            line = _examples_line(an, _path(other))
            if line is not None:
                mine.append(lsp.Diagnostic(
                    range=lsp.Range(lsp.Position(line, 0), lsp.Position(line, len(an.text.split("\n")[line]))),
                    message=f"{len(ds)} problem{'s' * (len(ds) != 1)} in {Path(_path(other)).name}",
                    severity=lsp.DiagnosticSeverity.Information, source="promptc",
                    related_information=[lsp.DiagnosticRelatedInformation(lsp.Location(other, x.range), x.message)
                                         for x in ds[:20]]))
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri, mine, version))
        for other, ds in by_file.items():
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(other, ds))
        for gone in self.published.get(uri, set()) - set(by_file):
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(gone, []))
        self.published[uri] = set(by_file)

    def to_lsp(self, d: Diagnostic, an: Analysis) -> lsp.Diagnostic:
        s = d.span
        if s is None:
            rng = lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
        else:
            src = s.source
            end_line, end_col = s.end_line, s.end_col
            if (end_line, end_col) == (s.line, s.col):
                end_col += 1  # an empty span still gets a visible squiggle
            rng = lsp.Range(lsp.Position(s.line - 1, self._units(src.line_text(s.line), s.col - 1)),
                            lsp.Position(end_line - 1, self._units(src.line_text(end_line), end_col - 1)))
        message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
        related = []
        for note in d.notes:
            m = _AT.search(note)
            if m:
                p = m.group(1)
                path = an.path if p == Path(an.path).name or p == an.path else str(Path(an.path).parent / p)
                line, col = int(m.group(2)) - 1, int(m.group(3)) - 1
                related.append(lsp.DiagnosticRelatedInformation(
                    lsp.Location(_uri(path), lsp.Range(lsp.Position(line, col), lsp.Position(line, col + 1))), note))
            else:
                message += f"\nnote: {note}"
        tags = [lsp.DiagnosticTag.Unnecessary] if d.code == "W201" else None
        return lsp.Diagnostic(range=rng, message=message, severity=_SEVERITY[d.severity], code=d.code,
                              source="promptc", related_information=related or None, tags=tags)

    def analysis(self, uri: str) -> Analysis:
        an = self.analyses.get(uri)
        if an is None:  # a request before the first analysis finished: analyse now
            doc = self.workspace.get_text_document(uri)
            an = analyze(_path(uri), doc.source)
            self.analyses[uri] = an
        return an

    def position(self, uri: str, p: lsp.Position) -> tuple[int, int]:
        doc = self.workspace.get_text_document(uri)
        lines = doc.lines
        line = lines[p.line] if p.line < len(lines) else ""
        return self.server_pos(line.rstrip("\r\n"), p)


# How long typing must pause before a partial analysis (only the edited task re-checked) is completed
# by a check of the whole program.
FULL_CHECK_DELAY = 0.3


def _signature(diags: list[Diagnostic]) -> list[tuple]:
    return [(d.code, d.message, d.span and (d.span.path, d.span.line, d.span.col, d.span.end_line, d.span.end_col))
            for d in diags]


def _is_dotprompt(text: str) -> bool:
    """A Dotprompt file opens with YAML front matter (`---`); a promptc program never does."""
    return text.lstrip("\ufeff \t\r\n").startswith("---")


def _examples_line(an: Analysis, path: str) -> int | None:
    for o in an.occurrences:
        if o.key == ("file", path) or (o.key[0] == "file" and Path(o.key[1]).resolve() == Path(path).resolve()):
            return an.pos(o.start)[0]
    return None


server = PromptcServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: PromptcServer, params: lsp.DidOpenTextDocumentParams) -> None:
    await ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: PromptcServer, params: lsp.DidChangeTextDocumentParams) -> None:
    await ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
async def did_save(ls: PromptcServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.analysed_version.pop(params.text_document.uri, None)  # examples files may have changed on disk
    await ls.refresh(params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: PromptcServer, params: lsp.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.analyses.pop(uri, None)
    ls.analysed_version.pop(uri, None)
    for other in {uri, *ls.published.pop(uri, set())}:
        ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(other, []))


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def hover(ls: PromptcServer, params: lsp.HoverParams) -> lsp.Hover | None:
    uri = params.text_document.uri
    an = ls.analysis(uri)
    pos = ls.position(uri, params.position)
    text = an.hover(pos)
    if text is None:
        return None
    o = an.at(pos)
    rng = ls.to_range(an.src, an.range(o.start, o.end)) if o is not None else None
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text), rng)


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def definition(ls: PromptcServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    uri = params.text_document.uri
    an = ls.analysis(uri)
    found = an.definition(ls.position(uri, params.position))
    if found is None:
        return None
    path, rng = found
    if path != an.path:
        return lsp.Location(_uri(path), lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0)))
    return lsp.Location(uri, ls.to_range(an.src, rng))


@server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
def references(ls: PromptcServer, params: lsp.ReferenceParams) -> list[lsp.Location]:
    uri = params.text_document.uri
    an = ls.analysis(uri)
    rngs = an.references(ls.position(uri, params.position), params.context.include_declaration)
    return [lsp.Location(uri, ls.to_range(an.src, r)) for r in rngs]


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
def highlight(ls: PromptcServer, params: lsp.DocumentHighlightParams) -> list[lsp.DocumentHighlight]:
    uri = params.text_document.uri
    an = ls.analysis(uri)
    return [lsp.DocumentHighlight(ls.to_range(an.src, r)) for r in an.references(ls.position(uri, params.position))]


@server.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)
def prepare_rename(ls: PromptcServer, params: lsp.PrepareRenameParams):
    uri = params.text_document.uri
    an = ls.analysis(uri)
    found = an.prepare_rename(ls.position(uri, params.position))
    if found is None:
        return None
    rng, placeholder = found
    return lsp.PrepareRenamePlaceholder(ls.to_range(an.src, rng), placeholder)


@server.feature(lsp.TEXT_DOCUMENT_RENAME)
def rename(ls: PromptcServer, params: lsp.RenameParams) -> lsp.WorkspaceEdit | None:
    uri = params.text_document.uri
    an = ls.analysis(uri)
    if not an.syntax_ok:
        raise JsonRpcInvalidRequest("fix the syntax error first: renaming needs a program that parses")
    edits = an.rename(ls.position(uri, params.position), params.new_name)
    if isinstance(edits, str):
        raise JsonRpcInvalidRequest(edits)
    return lsp.WorkspaceEdit(changes={uri: [lsp.TextEdit(ls.to_range(an.src, r), t) for r, t in edits]})


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                lsp.CompletionOptions(trigger_characters=[".", "{", " ", "=", "[", "("]))
def completion(ls: PromptcServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    uri = params.text_document.uri
    an = ls.analysis(uri)
    doc = ls.workspace.get_text_document(uri)
    items = complete(an, doc.source, ls.position(uri, params.position))
    return lsp.CompletionList(is_incomplete=False, items=[_item(c) for c in items])


def _item(c: Completion) -> lsp.CompletionItem:
    doc = lsp.MarkupContent(lsp.MarkupKind.Markdown, c.doc) if c.doc else None
    return lsp.CompletionItem(label=c.label, kind=_COMPLETION.get(c.kind), detail=c.detail or None,
                              documentation=doc, insert_text=c.insert)


_DID_YOU_MEAN = re.compile(r"hint: did you mean '([^']+)'\?")


@server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
def code_action(ls: PromptcServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    """Quick fixes: apply a diagnostic's "did you mean 'x'?" hint."""
    uri = params.text_document.uri
    out = []
    for d in params.context.diagnostics:
        if d.source != "promptc":
            continue
        m = _DID_YOU_MEAN.search(d.message)
        if m is None:
            continue
        fix = m.group(1)
        out.append(lsp.CodeAction(title=f"Change to '{fix}'", kind=lsp.CodeActionKind.QuickFix, diagnostics=[d],
                                  is_preferred=True,
                                  edit=lsp.WorkspaceEdit(changes={uri: [lsp.TextEdit(d.range, fix)]})))
    return out


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def document_symbol(ls: PromptcServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    an = ls.analysis(params.text_document.uri)

    def conv(s: dict) -> lsp.DocumentSymbol:
        return lsp.DocumentSymbol(name=s["name"] or "?", kind=_SYMBOL.get(s["kind"], lsp.SymbolKind.Object),
                                  range=ls.to_range(an.src, s["range"]),
                                  selection_range=ls.to_range(an.src, s["selection"]),
                                  detail=s["detail"] or None, children=[conv(c) for c in s["children"]] or None)
    return [conv(s) for s in an.symbols()]


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: PromptcServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
    from promptc.errors import DiagnosticError
    from promptc.fmt import format_text

    doc = ls.workspace.get_text_document(params.text_document.uri)
    text = doc.source
    try:
        out = format_text(text, _path(params.text_document.uri))
    except DiagnosticError:
        return None  # the syntax error is already on screen; nothing to format until it is fixed
    if out == text:
        return []
    lines = text.split("\n")
    end = lsp.Position(len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2)
    return [lsp.TextEdit(lsp.Range(lsp.Position(0, 0), end), out)]


def serve() -> None:
    """Run the server on stdin/stdout until the client exits."""
    logging.basicConfig(level=logging.WARNING)
    server.start_io()
