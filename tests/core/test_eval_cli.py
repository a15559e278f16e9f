"""`promptc compare` across several models (prices, the paired test, HTML) and `promptc test --baseline`,
through the CLI, against a local OpenAI-style server on 127.0.0.1 (no torch)."""

from __future__ import annotations

import json

import pytest

from tests.core.test_eval import ROUTE, keyword_router, load


# ------------------------------------------------------------------ the CLI against a local OpenAI-style server
class Router:
    """A fake Chat Completions server on 127.0.0.1: model "good" routes by keyword, "bad" always says bug."""

    def __enter__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                return

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                prompt = body["messages"][-1]["content"]
                answer = keyword_router(prompt) if body["model"] == "good" else "bug"
                data = json.dumps({"choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": answer}}],
                                   "usage": {"prompt_tokens": 100, "completion_tokens": 2}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_cli_compare_across_models_with_prices_and_html(tmp_path, monkeypatch, capsys):
    pytest.importorskip("httpx")
    from promptc.cli import main

    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    rows = [(f"charged {i}", "billing") for i in range(12)] + [(f"crash {i}", "bug") for i in range(4)]
    load(tmp_path, ROUTE + '\ntarget text route_plain for route { format = "plain" }\n', rows)
    (tmp_path / "prices.json").write_text(json.dumps({"good": {"input": 3.0, "output": 15.0},
                                                      "bad": {"input": 0.5, "output": 1.0}}))
    with Router() as srv:
        good, bad = f"openai:good@{srv.url}", f"openai:bad@{srv.url}"
        monkeypatch.setenv("PROMPTC_PRICES", str(tmp_path / "prices.json"))  # the same table as --prices FILE
        code = main(["compare", str(tmp_path / "p.prompt"), "route_plain", "--model", good, "--model", bad])
        out = capsys.readouterr().out
        assert code == 1  # the bad model fails the dataset
        head = out.splitlines()[0].split()
        assert head == ["test", f"route_plain@{good}", f"route_plain@{bad}"]
        assert "$0.3300" in out and "$0.0520" in out  # (100 x 3 + 2 x 15) / 1e6 per request, x 1000
        assert f"route_plain@{good} is better (p = " in out
        code = main(["compare", str(tmp_path / "p.prompt"), "route_plain", "--model", good, "--model", bad,
                     "--format", "html", "-o", str(tmp_path / "cmp.html")])
        html = (tmp_path / "cmp.html").read_text()
        assert "<svg" in html and html.count('<table class="confusion">') == 2 and "<script" not in html
        assert main(["compare", str(tmp_path / "p.prompt"), "route_plain", "--model", good, "--model", good]) == 2
        # the documented exit codes (docs/testing.md): 0 only when every subject passes every test, and a
        # subject that fails makes it 1 even though the other one passes
        assert main(["compare", str(tmp_path / "p.prompt"), "route_plain", "--model", good]) == 0
        assert main(["compare", str(tmp_path / "p.prompt"), "route_plain", "--model", bad]) == 1


def test_cli_baseline_catches_a_model_update(tmp_path, monkeypatch, capsys):
    pytest.importorskip("httpx")
    from promptc.cli import main

    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    load(tmp_path, ROUTE + '\ntarget text route_plain for route { format = "plain" }\n')
    base = str(tmp_path / "base.json")
    with Router() as srv:
        prog = str(tmp_path / "p.prompt")
        assert main(["test", prog, "--target", "route_plain", "--model", f"openai:good@{srv.url}",
                     "--save-baseline", base]) == 1  # the dataset fails (4 of 6), but that is the baseline
        capsys.readouterr()
        assert main(["test", prog, "--target", "route_plain", "--model", f"openai:good@{srv.url}",
                     "--baseline", base]) == 0  # nothing regressed
        assert "0 newly failing, 0 newly passing, 0 changed outputs, 6 unchanged" in capsys.readouterr().out
        assert main(["test", prog, "--target", "route_plain", "--model", f"openai:bad@{srv.url}",
                     "--baseline", base]) == 1
        out = capsys.readouterr().out
        assert "3 newly failing" in out and "NEWLY FAILING: rows.jsonl  input {\"text\": \"refund my card\"}" in out
        assert out.strip().splitlines()[-1] == "regression: cases that passed in the baseline fail now"
