"""Defects a new user hit in round 3 (installed wheel, fresh programs), one regression test each: no torch."""

from __future__ import annotations

import jinja2.parser
import pytest

from promptc.compiler import compile_text

TWO_TEMPLATES = '''
task t(a: str, b: str, unused: str) -> str {
  system "You answer about {{ a }}."
  prompt "Question: {{ b }}"
}
'''


def test_each_template_is_parsed_by_jinja_once_per_check(monkeypatch):
    parses = []
    real = jinja2.parser.Parser.parse

    def counting(self):
        parses.append(self.name)
        return real(self)

    monkeypatch.setattr(jinja2.parser.Parser, "parse", counting)
    r = compile_text(TWO_TEMPLATES)
    assert len(parses) == 2  # one system, one prompt: the unused-input check reuses the checker's parse
    # and the names it finds are the same: only `unused` is reported
    assert [(d.code, d.message) for d in r.diagnostics] == [("W201", "input 'unused' is never used in the prompt")]


E105_CASES = '''
task a(x: str, y: str) -> str {
  system "About {{ x }} and {{ y }"
  prompt """
  Read {{ x }} carefully.
  Then {{ x }} and {{ y z }}.
  """
}
task b(x: str) -> str {
  prompt """
  Start.
  {% for c in x %}
    {% if c %}{{ c }}{% endif %}
  Done.
  """
}
task c(x: str) -> str {
  prompt "Hi {% frob %} {{ x !}}"
}
task d(x: str) -> str {
  prompt "Hi {{ x }} {# never closed"
}
'''


def test_a_template_syntax_error_points_at_the_token_not_the_whole_template():
    r = compile_text(E105_CASES, "e.prompt")
    got = [(d.span.line, d.span.col, d.span.end - d.span.start, d.span.source.text[d.span.start:d.span.end])
           for d in r.diagnostics if d.code == "E105"]
    assert got == [
        (3, 34, 1, "}"),  # a one-line system text: the lone brace
        (6, 25, 1, "z"),  # the third line of a triple-quoted prompt, the token after `y`
        (12, 3, 6, "{% for"),  # the text ends too soon: the block that was never closed
        (18, 17, 4, "frob"),  # an unknown tag
        (21, 22, 2, "{#"),  # a comment that never closes
    ]


# ---------------------------------------------------------------- a mistyped or unreachable tune base
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_mistyped_base_fails_at_once_with_the_builtin_it_resembles(monkeypatch, tmp_path):
    from promptc.errors import ModelError
    from promptc.targets.tune.model import resolve_base

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match="unknown base model 'minlm'") as e:
        resolve_base("minlm")
    assert e.value.hint.startswith("did you mean 'minilm'?")
    with pytest.raises(ModelError, match="unknown base model 'tiny-casual'") as e:
        resolve_base("tiny-casual")
    assert e.value.hint.startswith("did you mean 'tiny-causal'?")
    (tmp_path / "minlm").mkdir()  # a local directory of that name is what it says
    assert resolve_base("minlm").source == "dir"


def test_an_uncached_hub_id_fails_fast_offline_or_unreachable_naming_the_id(monkeypatch, tmp_path):
    from promptc.errors import ModelError
    from promptc.targets.tune.model import resolve_base

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"'acme/tiny-lm' is not in the local hub cache and the hub is offline "
                                         r"\(HF_HUB_OFFLINE=1\)") as e:
        resolve_base("acme/tiny-lm")
    assert "local model directory" in e.value.hint
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for var in ("TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens: refused on the first try
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(ModelError, match=f"the hub \\({endpoint}\\) cannot be reached"):
        resolve_base("acme/tiny-lm")


def test_a_cached_hub_id_loads_from_the_cache_folder_without_the_network(monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    from promptc.targets.tune.model import resolve_base

    snap = tmp_path / "hub" / "models--acme--tiny-lm" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (tmp_path / "hub" / "models--acme--tiny-lm" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny-lm" / "refs" / "main").write_text("a" * 40)
    (snap / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from promptc.errors import ModelError

    with pytest.raises(ModelError, match="not in the local hub cache"):  # a config without weights is not enough
        resolve_base("acme/tiny-lm")
    (snap / "model.safetensors").write_bytes(b"")
    b = resolve_base("acme/tiny-lm")
    assert (b.name, b.source, b.path) == ("acme/tiny-lm", "hub", str(snap))


# ---------------------------------------------------------------- a stale tuned artifact names what changed
SENTI = '''
enum Mood { happy, sad }
task mood(text: str) -> Mood {
  prompt "How does this sound? {{ text }}"
  example { input { text: "what a lovely day" } output happy }
  example { input { text: "I feel awful" } output sad }
}
'''


def test_a_stale_fingerprint_names_only_the_dependencies_that_changed():
    import promptc
    from promptc.execution import _what_changed
    from promptc.targets.tune.artifact import changed_dependencies, dependency_fingerprint

    prog = promptc.loads(SENTI)
    task = prog.ir.tasks["mood"]
    manifest = {"kind": "tune", "family": "causal", "base": {"id": "tiny-causal"},
                "depends": dependency_fingerprint(prog.ir, task, "causal", "tiny-causal")}
    assert changed_dependencies(manifest, prog.ir, task) == []
    edited = promptc.loads(SENTI.replace("I feel awful", "I feel dreadful"))
    assert changed_dependencies(manifest, edited.ir, edited.ir.tasks["mood"]) == ["examples"]
    assert _what_changed(manifest, edited.ir, edited.ir.tasks["mood"]) == \
        "what it depends on changed: its examples"
    relabelled = promptc.loads(SENTI.replace("{ happy, sad }", "{ happy, sad, meh }"))
    assert _what_changed(manifest, relabelled.ir, relabelled.ir.tasks["mood"]) == \
        "what it depends on changed: its output schema"
    # a manifest from before per-dependency hashes cannot tell which: it says so, with the whole list
    del manifest["depends"]["parts"]
    assert changed_dependencies(manifest, edited.ir, edited.ir.tasks["mood"]) is None
    assert _what_changed(manifest, edited.ir, edited.ir.tasks["mood"]) == \
        "what it depends on changed: one of its base, examples, input schema, output schema, prompt"


# ---------------------------------------------------------------- read-only cache commands create nothing
def test_cache_info_and_clear_do_not_create_a_cache(tmp_path, monkeypatch, capsys):
    from promptc.cli import main
    from promptc.models.cache import Cache

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROMPTC_CACHE_DIR", raising=False)
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.strip() == "no cache at .promptc/cache.db"
    assert main(["cache", "clear", "--dir", "elsewhere"]) == 0
    assert capsys.readouterr().out.strip() == "no cache at elsewhere/cache.db; nothing to clear"
    assert list(tmp_path.iterdir()) == []  # no .promptc, no elsewhere/
    c = Cache(tmp_path / ".promptc" / "cache.db")
    c.put_many([("k", "text", 1, 1, 0.1)])
    c.close()
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.strip() == ".promptc/cache.db: 1 cached generations"


# ---------------------------------------------------------------- the model card speaks in words, not Python
def test_the_model_card_prints_yes_no_none_and_json_never_python_literals(tmp_path):
    import re

    from promptc.cli import main
    from promptc.targets.model_card import model_card
    from tests.conftest import PROGRAMS

    assert main(["compile", str(PROGRAMS / "triage.prompt"), "--target", "triage_chat", "-o", str(tmp_path / "a")]) == 0
    text_card = (tmp_path / "a" / "README.md").read_text()
    tuned = {"kind": "tune", "program": {"name": "p", "version": "1"}, "task": {"name": "t"}, "target": "m",
             "status": "failed", "labels": None, "base": {"id": "tiny-causal", "source": None},
             "options": {"gradient_checkpointing": False, "lr": None, "target_modules": ["c_attn"], "init_text": ""},
             "data": {"train": 3, "val": 0, "provenance": {"declared": 3, "teachers": {}}},
             "tests": {"summary": "0 passed", "min_pass": 1.0, "gate": "failed",
                       "results": {"c": {"kind": "case", "status": "failed", "pass_rate": None}}},
             "training": {"steps": 2, "stopped": "completed 2 steps", "best_step": None, "best": {"split": None}}}
    tuned_card = model_card(tuned)
    for card in (text_card, tuned_card):
        assert not re.search(r"\b(True|False|None)\b", card), card
    assert "- `delimit` = `yes`" in text_card
    assert "- `gradient_checkpointing` = `no`" in tuned_card and "- `lr` = `none`" in tuned_card
    assert '- `target_modules` = `["c_attn"]`' in tuned_card and '- `init_text` = `""`' in tuned_card
    assert "| labels | `none` |" in tuned_card and "| c | case | failed | none |" in tuned_card
    assert "- best step: none (none accuracy none, loss none)" in tuned_card


# ---------------------------------------------------------------- --device/--dtype on run and test
TICKET = '{"ticket": {"subject": "Charged twice", "body": "My card was charged twice."}}'


def test_device_and_dtype_are_refused_for_a_model_on_a_server(capsys):
    from promptc.cli import main
    from tests.conftest import PROGRAMS

    for cmd in ("run", "test"):
        argv = [cmd, str(PROGRAMS / "triage.prompt"), "--target", "triage_chat", "--model",
                "openai:m@http://127.0.0.1:9/v1", "--dtype", "float16"]
        assert main(argv + (["--input", TICKET] if cmd == "run" else [])) == 2
        err = capsys.readouterr().err
        assert "--dtype applies to local models (hf:, tiny-causal) and tuned artifacts" in err
    assert main(["run", str(PROGRAMS / "triage.prompt"), "--target", "triage_chat", "--model", "tiny-causal",
                 "--device", "tpu", "--input", TICKET]) == 2
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


# ---------------------------------------------------------------- a server that is not there, or answers 404
class _Teacher:
    """A real OpenAI-shaped server on 127.0.0.1: 404 (an unknown model) for every request, or only for
    requests that mention `fail_on`; otherwise a valid triage reply."""

    def __init__(self, fail_on: str | None = None):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                return

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if fail_on is None or fail_on in body:
                    status, obj = 404, {"error": {"message": "The model 'gtp' does not exist", "code": "model_not_found"}}
                else:
                    content = json.dumps({"tag": "billing", "urgency": "normal", "needs_human": False, "reply": (
                        "Thanks for telling us about this charge. Our billing team will correct it within two "
                        "business days.")})
                    status, obj = 200, {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                                        "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": content}}],
                                        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _unlabelled(tmp_path, n: int = 3, fail_first: bool = False):
    import json

    path = tmp_path / "in.jsonl"
    rows = [{"ticket": {"subject": f"{'FAIL-ME' if fail_first and i == 0 else 'Charged'} {i}",
                        "body": "My card was charged twice."}} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def no_proxy(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_test_and_run_against_a_server_that_is_not_there_are_one_error_not_a_red_report(capsys, no_proxy):
    from promptc.cli import main
    from tests.conftest import PROGRAMS

    url = f"http://127.0.0.1:{_free_port()}/v1"
    prog = str(PROGRAMS / "triage.prompt")
    assert main(["test", prog, "--target", "triage_chat", "--model", f"openai:m@{url}", "--no-cache"]) == 1
    out = capsys.readouterr()
    assert f"nothing answered at {url} (Connection refused)" in out.err
    assert "FAIL" not in out.out and "passed" not in out.out  # no test report
    assert main(["run", prog, "--target", "triage_chat", "--model", f"openai:m@{url}", "--input", TICKET]) == 1
    assert f"nothing answered at {url}" in capsys.readouterr().err


def test_a_report_whose_every_call_failed_says_the_server_answered_nothing(capsys, no_proxy):
    from promptc.cli import main
    from tests.conftest import PROGRAMS

    with _Teacher() as t:  # the server is there, but 404s every request (a wrong model name)
        code = main(["test", str(PROGRAMS / "triage.prompt"), "--target", "triage_chat", "--model",
                     f"openai:gtp@{t.url}", "--no-cache", "--retries", "0"])
    out = capsys.readouterr().out
    assert code == 1
    warning = next(line for line in out.splitlines() if line.startswith("warning: "))
    assert warning.startswith(f"warning: openai:gtp@{t.url} answered no request (all ")
    assert f"the first: HTTP 404 from {t.url}/chat/completions" in warning and "model_not_found" in warning


def test_distill_whose_teacher_answers_nothing_exits_1(tmp_path, capsys, no_proxy):
    import json

    from promptc.cli import main
    from tests.conftest import PROGRAMS

    prog = str(PROGRAMS / "triage.prompt")
    data = tmp_path / "data.jsonl"
    url = f"http://127.0.0.1:{_free_port()}/v1"
    assert main(["distill", prog, "--target", "triage_chat", "--teacher", f"openai:m@{url}",
                 "--inputs", str(_unlabelled(tmp_path)), "-o", str(data), "--no-cache"]) == 1
    assert f"nothing answered at {url}" in capsys.readouterr().err and not data.exists()
    with _Teacher() as t:  # every request is a 404: the files are written, with the reasons, but it fails
        assert main(["distill", prog, "--target", "triage_chat", "--teacher", f"openai:gtp@{t.url}",
                     "--inputs", str(_unlabelled(tmp_path)), "-o", str(data), "--no-cache", "--retries", "0"]) == 1
    err = capsys.readouterr().err
    assert f"the teacher openai:gtp@{t.url} answered no request: all 3 calls failed; the first: HTTP 404" in err
    assert data.read_text() == ""
    rejected = [json.loads(x) for x in (tmp_path / "data.rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 3 and all("HTTP 404" in r["reasons"][0] for r in rejected)
    with _Teacher(fail_on="FAIL-ME") as t:  # some answered: partial results, written as before, exit 0
        assert main(["distill", prog, "--target", "triage_chat", "--teacher", f"openai:m@{t.url}",
                     "--inputs", str(_unlabelled(tmp_path, fail_first=True)), "-o", str(data), "--no-cache",
                     "--retries", "0"]) == 0
    assert "kept 2 of 3 teacher outputs" in capsys.readouterr().out
    assert len(data.read_text().splitlines()) == 2


def test_a_stale_text_artifact_names_the_files_that_would_differ(tmp_path):
    import promptc
    from promptc.errors import ArtifactError
    from promptc.execution import load_artifact
    from tests.conftest import PROGRAMS

    text = (PROGRAMS / "triage.prompt").read_text(encoding="utf-8")
    prog = promptc.loads(text, str(PROGRAMS / "triage.prompt"))
    out = prog.compile("triage_chat", tmp_path / "a")
    load_artifact(out, prog.ir, prog.ir.tasks["triage"])  # unchanged: loads

    def refusal(edited: str) -> str:
        p = promptc.loads(edited, str(PROGRAMS / "triage.prompt"))
        with pytest.raises(ArtifactError) as e:
            load_artifact(out, p.ir, p.ir.tasks["triage"])
        return str(e.value).split("(", 1)[1]

    assert "Classify the ticket" in text and "reply: str [max_len=400]" in text
    assert refusal(text.replace("Classify the ticket", "Sort the ticket")) == \
        "the task hash differs: its prompt changed)"
    assert refusal(text.replace("reply: str [max_len=400]", "reply: str [max_len=300]")) == \
        "the task hash differs: its prompt, output schema changed)"  # the format instructions say the bound too
