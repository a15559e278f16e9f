"""Authoring speed on a generated ~2,000-line program: the language server, the formatter, the checker.

- didChange -> publishDiagnostics through a real `promptc lsp` subprocess over stdio (pygls client),
  median over edits to a prompt in the middle of the file. Target: < 150 ms. Also with edits that add a
  line (every later declaration moves, so it is parsed again and the whole program is checked).
- `format_text` (parse + print with comments). Target: < 200 ms.
- parse + check, as `promptc check` runs them. Aim: < 100 ms.
Each is printed with its ratio against the bare Lark parse of the same text, measured in this run.

    python bench/lsp.py [--edits N] [--lines N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from frontend import program  # noqa: E402 - the generated program of bench/frontend.py

from promptc.check import check  # noqa: E402
from promptc.diagnostics import Diagnostics  # noqa: E402
from promptc.fmt import format_text  # noqa: E402
from promptc.lsp.analysis import analyze  # noqa: E402
from promptc.parser import _lark, parse_source  # noqa: E402
from promptc.source import SourceFile  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


async def lsp_latency(text: str, edits: int, newline: bool = False) -> list[float]:
    """Seconds from each didChange to its publishDiagnostics. `newline`: each edit adds a line, which
    moves every later declaration, so they are parsed again and the whole program is checked."""
    from lsprotocol import types as lsp
    from pygls.lsp.client import LanguageClient
    from pygls.uris import from_fs_path

    client = LanguageClient("bench", "1")
    got: dict[int, float] = {}
    waiters: dict[int, asyncio.Future] = {}

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diags(params: lsp.PublishDiagnosticsParams) -> None:
        v = params.version or 0
        got[v] = time.perf_counter()
        fut = waiters.pop(v, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    await client.start_io(sys.executable, "-m", "promptc", "lsp")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.prompt"
        path.write_text(text, encoding="utf-8")
        uri = from_fs_path(str(path))
        await client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities(),
                                                           root_uri=from_fs_path(d)))
        client.initialized(lsp.InitializedParams())
        loop = asyncio.get_running_loop()
        waiters[1] = loop.create_future()
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri=uri, language_id="promptc", version=1, text=text)))
        await waiters[1] if 1 in waiters else None
        lines = text.split("\n")
        target = next(i for i in range(len(lines) // 2, len(lines)) if "Classify the ticket" in lines[i])
        times = []
        for k in range(edits):
            version = k + 2
            waiters[version] = loop.create_future()
            fut = waiters[version]
            new = f"Classify the ticket ({k}) and draft a first reply." + ("\n  Classify" if newline else "")
            old_line = lines[target]
            col = old_line.index("Classify")
            change = lsp.TextDocumentContentChangePartial(
                range=lsp.Range(lsp.Position(target, col), lsp.Position(target, len(old_line))), text=new)
            lines[target:target + 1] = (old_line[:col] + new).split("\n")
            t0 = time.perf_counter()
            client.text_document_did_change(lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(uri=uri, version=version), [change]))
            await asyncio.wait_for(fut, 30)
            times.append(got[version] - t0)
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    return times


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:7.1f} ms   best {min(xs) * 1000:7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    text = program(args.lines)
    src = SourceFile("bench.prompt", text)
    lark = _lark()
    lark.parse(text)  # warm

    def front() -> None:
        d = Diagnostics()
        tree, _ = parse_source(src)
        check(tree, src, d)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"program: {text.count(chr(10))} lines, {len(text)} chars; load average {load:.1f} on "
          f"{os.cpu_count()} cores{'  (busy machine: numbers are inflated)' if load > (os.cpu_count() or 1) else ''}")
    base = timed(lambda: lark.parse(text), args.repeat)
    rows = [
        ("baseline: bare lark.parse", base, None),
        ("parse + check (promptc check)", timed(front, args.repeat), 0.100),
        ("lsp analysis from scratch (didOpen)", timed(lambda: analyze("bench.prompt", text), args.repeat), None),
        ("fmt (format_text)", timed(lambda: format_text(text), args.repeat), 0.200),
    ]
    lsp_times = asyncio.run(lsp_latency(text, args.edits))
    rows.append(("lsp didChange -> publishDiagnostics", lsp_times, 0.150))
    rows.append(("  the same, each edit adding a line", asyncio.run(lsp_latency(text, max(3, args.edits // 3), True)),
                 None))
    b = statistics.median(base)
    for name, xs, target in rows:
        med = statistics.median(xs)
        verdict = "" if target is None else f"   target {target * 1000:.0f} ms: {'OK' if med < target else 'OVER'}"
        print(f"{name:38s} {ms(xs)}   {med / b:5.2f}x baseline{verdict}")


if __name__ == "__main__":
    main()
