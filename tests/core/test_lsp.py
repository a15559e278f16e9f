"""`promptc lsp`, driven as an editor drives it: a real client (pytest-lsp) talks to the server
subprocess over stdio. Diagnostics as you type, hover, definition, references, rename, completion,
symbols, formatting, and a stream of random edits that must never bring the server down."""

from __future__ import annotations

import asyncio
import random
import shutil
import sys

import pytest

pytest.importorskip("pygls", reason="the language server needs the [lsp] extra: pip install 'promptc[lsp]'")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types as lsp  # noqa: E402
from pygls.uris import from_fs_path  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities  # noqa: E402

from promptc.fmt import format_text  # noqa: E402
from promptc.lsp.analysis import analyze  # noqa: E402
from tests.conftest import PROGRAMS  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

# a fixed triage program (tests/cases/lsp_triage.prompt, programs/triage.prompt as it was when these tests
# were written) with its own examples file: stable text whose positions the tests below name, while
# programs/triage.prompt grows with the product
TRIAGE = (PROGRAMS.parent / "tests" / "cases" / "lsp_triage.prompt").read_text(encoding="utf-8")
REFERENCE_DATA = PROGRAMS.parent / "tests" / "cases" / "reference_triage.jsonl"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("lsp")
    (d / "data").mkdir()
    shutil.copy(REFERENCE_DATA, d / "data" / "triage.jsonl")
    (d / "data" / "bad.jsonl").write_text(
        '{"input": {"ticket": {"subject": "s", "body": "b"}}, "output": {"tag": "billing", "reply": "ok"}}\n'
        '{"input": {"ticket": {"subject": "s", "body": "b"}}, "output": {"tag": "refund", "reply": "ok"}}\n',
        encoding="utf-8")
    return d


@pytest_lsp.fixture(scope="module",
                    config=ClientServerConfig(server_command=[sys.executable, "-m", "promptc", "lsp"]))
async def client(lsp_client: LanguageClient, project):
    await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=from_fs_path(str(project))))
    yield
    await lsp_client.shutdown_session()


def _at(text: str, needle: str, k: int = 0, delta: int = 0) -> lsp.Position:
    i = -1
    for _ in range(k + 1):
        i = text.index(needle, i + 1)
    i += delta
    line = text.count("\n", 0, i)
    return lsp.Position(line, i - (text.rfind("\n", 0, i) + 1))


async def _open(client: LanguageClient, path, text: str) -> str:
    uri = from_fs_path(str(path))
    path.write_text(text, encoding="utf-8")
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(
        lsp.TextDocumentItem(uri=uri, language_id="promptc", version=1, text=text)))
    await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return uri


async def _replace_all(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
        [lsp.TextDocumentContentChangeWholeDocument(text=text)]))
    await _diagnostics_for(client, uri, version)


async def _diagnostics_for(client: LanguageClient, uri: str, version: int) -> list[lsp.Diagnostic]:
    for _ in range(50):
        params = await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        if params.uri == uri and (params.version is None or params.version >= version):
            return list(params.diagnostics)
    raise AssertionError("no diagnostics for the edit")


async def test_diagnostics_as_you_type(client: LanguageClient, project):
    text = TRIAGE.replace("{{ ticket.subject }}", "{{ tikcet.subject }}").replace("tag: Tag", "tag: Tagg")
    uri = await _open(client, project / "typos.prompt", text)
    diags = sorted(client.diagnostics[uri], key=lambda d: (d.range.start.line, d.range.start.character))
    by_code = {d.code: d for d in diags}
    assert {"E201", "E202"} <= set(by_code), [(d.code, d.message) for d in diags]
    e201 = by_code["E201"]
    assert e201.range.start == _at(text, "tikcet") and e201.range.end == _at(text, "tikcet", delta=6)
    assert "hint: did you mean 'ticket'?" in e201.message and e201.source == "promptc"
    assert by_code["E202"].range.start == _at(text, "Tagg")

    # an incremental edit fixes the template typo; the diagnostics follow
    start = _at(text, "tikcet")
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [lsp.TextDocumentContentChangePartial(
            range=lsp.Range(start, lsp.Position(start.line, start.character + 6)), text="ticket")]))
    diags = await _diagnostics_for(client, uri, 2)
    assert [d.code for d in diags] == ["E202"]

    # a syntax error is reported, and the last good analysis keeps answering
    broken = text.replace("tikcet", "ticket").replace("type Triage {", "type Triage {{")
    await _replace_all(client, uri, broken, 3)
    diags = client.diagnostics[uri]
    assert [d.code for d in diags] == ["E102"] and diags[0].range.start == _at(broken, "{{\n", delta=1)
    hover = await client.text_document_hover_async(lsp.HoverParams(
        lsp.TextDocumentIdentifier(uri), _at(broken, "Ticket)")))
    assert hover is not None and "subject: str [max_len=120]" in hover.contents.value


async def test_related_locations_and_examples_files(client: LanguageClient, project):
    text = TRIAGE.replace('examples "data/triage.jsonl"', 'examples "data/bad.jsonl"') + \
        "\ntype Ticket { x: str }\n"
    uri = await _open(client, project / "dupes.prompt", text)
    for _ in range(5):  # the examples file's diagnostics arrive on their own uri
        bad_uri = from_fs_path(str(project / "data" / "bad.jsonl"))
        if bad_uri in client.diagnostics:
            break
        await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    bad = client.diagnostics[bad_uri]
    assert [d.code for d in bad] == ["E207"] and bad[0].range.start.line == 1
    mine = client.diagnostics[uri]
    dup = next(d for d in mine if d.code == "E206")
    assert dup.related_information and dup.related_information[0].location.uri == uri
    assert dup.related_information[0].location.range.start == _at(text, "Ticket {")
    summary = next(d for d in mine if d.severity == lsp.DiagnosticSeverity.Information)
    assert summary.range.start.line == _at(text, 'examples "data/bad').line and "1 problem" in summary.message
    # fixing the program clears the examples file's diagnostics
    await _replace_all(client, uri, TRIAGE, 2)
    for _ in range(5):
        if not client.diagnostics.get(bad_uri):
            break
        await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    assert not client.diagnostics[bad_uri] and not client.diagnostics[uri]


async def test_hover(client: LanguageClient, project):
    uri = await _open(client, project / "hover.prompt", TRIAGE)

    async def hover(needle: str, k: int = 0, delta: int = 0) -> str:
        h = await client.text_document_hover_async(lsp.HoverParams(
            lsp.TextDocumentIdentifier(uri), _at(TRIAGE, needle, k, delta)))
        assert h is not None, needle
        return h.contents.value

    assert "type Ticket {\n  subject: str [max_len=120]\n  body: str [min_len=1, max_len=2000]\n}" in \
        await hover("Ticket)")
    assert "body: str [min_len=1, max_len=2000]" in await hover("ticket.body", delta=7)
    assert "field of `Ticket`" in await hover("ticket.body", delta=7)
    assert "enum Tag { billing, bug, account, other }" in await hover("Tag\n")
    assert "member of `enum Tag" in await hover("billing when")
    shots = await hover("shots")
    assert "how many examples to show" in shots and "default: `0`" in shots
    method = await hover("method")
    assert "one of:" in method and '"lora"' in method
    assert "task triage(ticket: Ticket) -> Triage" in await hover("test triage", delta=5)


async def test_hover_explains_a_diagnostic_code(client: LanguageClient, project):
    text = TRIAGE.replace("{{ ticket.body }}", "{{ ticket.bdy }}")
    uri = await _open(client, project / "explain.prompt", text)
    h = await client.text_document_hover_async(lsp.HoverParams(
        lsp.TextDocumentIdentifier(uri), _at(text, "bdy", delta=1)))
    from promptc import codes

    assert h is not None and "**E204**" in h.contents.value
    assert codes.CODES["E204"].explanation.split("\n")[0] in h.contents.value  # the `promptc explain` text


async def test_definition_and_references(client: LanguageClient, project):
    uri = await _open(client, project / "defs.prompt", TRIAGE)

    async def definition(needle, k=0, delta=0):
        return await client.text_document_definition_async(lsp.DefinitionParams(
            lsp.TextDocumentIdentifier(uri), _at(TRIAGE, needle, k, delta)))

    loc = await definition("Ticket)")
    assert loc.uri == uri and loc.range.start == _at(TRIAGE, "Ticket {")
    loc = await definition("output.tag == account", delta=7)
    assert loc.range.start == _at(TRIAGE, "tag: Tag")
    loc = await definition("account\n")
    assert loc.range.start == _at(TRIAGE, "account,")
    loc = await definition("for triage", delta=4)
    assert loc.range.start == _at(TRIAGE, "triage(ticket", )
    loc = await definition("data/triage.jsonl")
    assert loc.uri == from_fs_path(str(project / "data" / "triage.jsonl"))

    refs = await client.text_document_references_async(lsp.ReferenceParams(
        text_document=lsp.TextDocumentIdentifier(uri), position=_at(TRIAGE, "subject:"),
        context=lsp.ReferenceContext(include_declaration=True)))
    starts = {(r.range.start.line, r.range.start.character) for r in refs}
    expected = [_at(TRIAGE, "subject:"), _at(TRIAGE, "ticket.subject", delta=7),  # declaration, template
                _at(TRIAGE, 'subject: "Charged'), _at(TRIAGE, "given ticket.subject", delta=13)]
    assert {(p.line, p.character) for p in expected} <= starts
    assert len(refs) == 7  # + the subject keys of the three test cases


async def test_rename(client: LanguageClient, project):
    uri = await _open(client, project / "rename.prompt", TRIAGE)
    edit = await client.text_document_rename_async(lsp.RenameParams(
        lsp.TextDocumentIdentifier(uri), _at(TRIAGE, "billing,"), "invoicing"))
    edits = edit.changes[uri]
    assert len(edits) == 4  # the member, the example output, the constraint and a test case
    renamed = _apply(TRIAGE, edits)
    assert "billing" not in renamed.replace("billing\"", "")  # only the examples file's strings remain
    an = analyze(str(project / "rename.prompt"), renamed)
    # what is left is the examples file, whose rows still say "billing" (rename edits the program only)
    assert all(d.code == "E207" and d.span.path.endswith("triage.jsonl") for d in an.diagnostics)

    edit = await client.text_document_rename_async(lsp.RenameParams(
        lsp.TextDocumentIdentifier(uri), _at(TRIAGE, "reply:"), "answer"))
    renamed = _apply(TRIAGE, edit.changes[uri])
    assert "output.answer" in renamed and "answer: str [max_len=400]" in renamed
    assert "reply" not in renamed.split("examples")[0].replace("first reply", "")

    with pytest.raises(Exception, match="not a valid name"):
        await client.text_document_rename_async(lsp.RenameParams(
            lsp.TextDocumentIdentifier(uri), _at(TRIAGE, "Ticket)"), "task"))


def _apply(text: str, edits: list[lsp.TextEdit]) -> str:
    lines = text.split("\n")
    offs = [0]
    for ln in lines:
        offs.append(offs[-1] + len(ln) + 1)
    spans = sorted(((offs[e.range.start.line] + e.range.start.character,
                     offs[e.range.end.line] + e.range.end.character, e.new_text) for e in edits), reverse=True)
    for s, e, t in spans:
        text = text[:s] + t + text[e:]
    return text


async def test_completion(client: LanguageClient, project):
    cases = [
        ("Subject: {{ ticket.subject }}", "Subject: {{ ticket.", {"subject", "body"}, set()),
        ("expect output.tag == account", "expect output.tag == ", {"billing", "bug", "account", "other"}, {"len"}),
        ('{ format = "chat", shots = 2 }', "{ format = ", {'"plain"', '"chat"', '"hf_chat"'}, set()),
        ('{ format = "chat", shots = 2 }', '{ format = "chat", ', {"shots", "select", "delimit"}, {"lr"}),
        ("given ticket.subject = text(max_len=60)", "given ticket.subject = ", {"text", "one_of", "ints"}, set()),
        ("  reply: str [max_len=400]", "  reply: ", {"str", "int", "Ticket", "Tag", "list"}, set()),
        ('  examples "data/triage.jsonl"', "  ", {"system", "prompt", "example", "constraint"}, {"case"}),
        ("check len(output.reply) <= 400", "check len(output.", {"tag", "reply"}, set()),
        ("check len(output.reply) <= 400", "check ", {"ticket", "output", "len"}, set()),
    ]
    uri = from_fs_path(str(project / "complete.prompt"))
    await _open(client, project / "complete.prompt", TRIAGE)
    version = 1
    for old, new_prefix, must, must_not in cases:
        version += 1
        text = TRIAGE.replace(old, new_prefix + "§", 1)
        pos = _at(text, "§")
        await _replace_all(client, uri, text.replace("§", ""), version)
        result = await client.text_document_completion_async(lsp.CompletionParams(
            lsp.TextDocumentIdentifier(uri), pos))
        labels = {i.label for i in result.items}
        assert must <= labels, (new_prefix, labels)
        assert not (must_not & labels), (new_prefix, must_not & labels)


async def test_symbols_and_formatting(client: LanguageClient, project):
    text = TRIAGE.replace("enum Tag { billing, bug, account, other }",
                          "enum   Tag {billing,bug,   # the usual\n account, other}")
    uri = await _open(client, project / "symbols.prompt", text)
    syms = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(lsp.TextDocumentIdentifier(uri)))
    names = [s.name for s in syms]
    assert names == ["Tag", "Ticket", "Triage", "triage", "test triage", "triage_chat", "triage_soft"]
    tag = syms[0]
    assert tag.kind == lsp.SymbolKind.Enum and [c.name for c in tag.children] == ["billing", "bug", "account", "other"]
    task = syms[3]
    assert [c.name for c in task.children][:3] == ["ticket", "system", "prompt"]
    edits = await client.text_document_formatting_async(lsp.DocumentFormattingParams(
        lsp.TextDocumentIdentifier(uri), lsp.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert len(edits) == 1
    formatted = _apply(text, edits)
    assert formatted == format_text(text) and "  bug,  # the usual\n" in formatted


async def test_random_edits_never_crash_the_server(client: LanguageClient, project):
    rng = random.Random(15)
    text = TRIAGE
    uri = await _open(client, project / "fuzz.prompt", text)
    alphabet = ['{', '}', '"', '"""', '#', '/', '\n', ' ', 'x', '.', '==', '[', ']', '(', ')', ':', ',', 'é', '😀',
                'task ', 'type ', '{{ ', ' }}', 'output.', '\\', '\t']
    for version in range(2, 202):
        lines = text.split("\n")
        line = rng.randrange(len(lines))
        a = rng.randint(0, len(lines[line]))
        b = min(len(lines[line]), a + rng.choice([0, 0, 1, 3, 10]))
        new = "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 1, 2, 5])))
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [lsp.TextDocumentContentChangePartial(
                range=lsp.Range(lsp.Position(line, _u16(lines[line][:a])), lsp.Position(line, _u16(lines[line][:b]))),
                text=new)]))
        lines[line] = lines[line][:a] + new + lines[line][b:]
        text = "\n".join(lines)
        if version % 10 == 0:  # requests at random places while the text is broken
            nl = text.split("\n")
            pl = rng.randrange(len(nl))
            pos = lsp.Position(pl, rng.randint(0, _u16(nl[pl])))
            ident = lsp.TextDocumentIdentifier(uri)
            await client.text_document_hover_async(lsp.HoverParams(ident, pos))
            await client.text_document_completion_async(lsp.CompletionParams(ident, pos))
            await client.text_document_definition_async(lsp.DefinitionParams(ident, pos))
            await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(ident))
            await client.text_document_formatting_async(lsp.DocumentFormattingParams(
                ident, lsp.FormattingOptions(tab_size=2, insert_spaces=True)))
    await _diagnostics_for(client, uri, 201)
    await asyncio.sleep(1.0)  # the whole-program check that follows a pause in typing
    diags = client.diagnostics[uri]
    assert client.error is None
    expected = analyze(str(project / "fuzz.prompt"), text).diagnostics
    assert [d.code for d in diags if d.source == "promptc" and d.severity != lsp.DiagnosticSeverity.Information] \
        == [d.code for d in expected if d.span is None or d.span.path.endswith("fuzz.prompt")]


def _u16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


async def test_dotprompt_files_are_left_alone(client: LanguageClient, project):
    uri = await _open(client, project / "greet.prompt", "---\nmodel: googleai/gemini-1.5-pro\n---\nHello {{name}}!\n")
    assert not client.diagnostics[uri]



async def test_quick_fix_applies_the_did_you_mean_hint(client: LanguageClient, project):
    text = TRIAGE.replace("{{ ticket.subject }}", "{{ tikcet.subject }}")
    uri = await _open(client, project / "fix.prompt", text)
    diag = next(d for d in client.diagnostics[uri] if d.code == "E201")
    actions = await client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=lsp.TextDocumentIdentifier(uri), range=diag.range,
        context=lsp.CodeActionContext(diagnostics=[diag])))
    assert [a.title for a in actions] == ["Change to 'ticket'"]
    fixed = _apply(text, actions[0].edit.changes[uri])
    assert fixed == TRIAGE
