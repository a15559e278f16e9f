"""Backends against real models: tiny-causal and a saved-and-reloaded hf: directory. The `openai:` HTTP
backend is tested without torch against a fake server in tests/core/test_http_backend.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promptc
from promptc import ir
from promptc.models import Decoding, Request, generate, load_backend
from promptc.models.cache import Cache
from promptc.models.hf import HFBackend
from promptc.outputs import parse_output
from promptc.schema import validate
from tests.conftest import PROGRAMS, ROOT


@pytest.fixture(scope="module")
def tiny() -> HFBackend:
    return load_backend("tiny-causal")


def req(messages_text: str, output: ir.Type) -> Request:
    return Request([{"role": "user", "content": messages_text}], messages_text + "\nAnswer:", output)


# ------------------------------------------------------------------ hf / tiny-causal
def test_tiny_is_deterministic_and_batched_matches_sequential(tiny):
    t = ir.EnumT("Q", ("billing", "bug", "account", "other"))
    rs = [req(f"ticket number {i} about {w}", t) for i, w in enumerate(["refunds", "crashes", "login", "x" * 40])]
    batched = generate(tiny, rs, Decoding(max_new_tokens=8))
    seq = [generate(tiny, [r], Decoding(max_new_tokens=8))[0] for r in rs]
    assert [g.text for g in batched] == [g.text for g in seq]
    assert all(g.text in t.members for g in batched)
    assert all(g.prompt_tokens > 0 and g.completion_tokens > 0 for g in batched)


def test_saved_directory_loads_back_identically(tiny, tmp_path):
    from promptc.models.tiny import save_tiny

    save_tiny(str(tmp_path / "m"))
    local = load_backend(f"hf:{tmp_path / 'm'}")
    out_t = ir.RecordT("R", (("a", ir.StrT(max_len=8)), ("n", ir.IntT(0, 99))))
    rs = [req("hello", out_t), req("another prompt, longer than the first", out_t)]
    a = generate(tiny, rs, Decoding(max_new_tokens=64))
    b = generate(local, rs, Decoding(max_new_tokens=64))
    assert [g.text for g in a] == [g.text for g in b]
    assert local.identity().startswith("dir:") and local.identity() != tiny.identity()


def test_unconstrained_differs_from_constrained(tiny):
    t = ir.EnumT("Q", ("yes", "no"))
    r = [req("answer yes or no", t)]
    free = generate(tiny, r, Decoding(max_new_tokens=12, constrained=False))[0].text
    guided = generate(tiny, r, Decoding(max_new_tokens=12))[0].text
    assert guided in ("yes", "no")
    assert free != guided  # a random model does not answer the enum by itself


def test_too_long_prompt_is_a_failed_generation_not_a_crash(tiny):
    g = generate(tiny, [req("x" * 5000, ir.StrT())], Decoding(max_new_tokens=16))[0]
    assert g.error and "context" in g.error


def test_sampling_is_seeded(tiny):
    r = [req("write something", ir.StrT(max_len=20))]
    texts = [generate(tiny, r, Decoding(max_new_tokens=20, temperature=3.0, seed=s))[0].text for s in range(4)]
    again = generate(tiny, r, Decoding(max_new_tokens=20, temperature=3.0, seed=0))[0].text
    assert again == texts[0] and len(set(texts)) > 1


SCHEMAS = {
    "enum": ir.EnumT("Tag", ("billing", "bug", "account", "other")),
    "record": ir.RecordT("Triage", (("tag", ir.EnumT("Tag", ("billing", "bug"))), ("reply", ir.StrT(1, 12)),
                                    ("score", ir.IntT(0, 5)), ("ok", ir.BoolT()))),
    "list_of_records": ir.ListT(ir.RecordT("Party", (("name", ir.StrT(1, 6)),
                                                    ("role", ir.EnumT("Role", ("buyer", "seller"))))), 1, 3),
    "optional_fields": ir.RecordT("Opt", (("email", ir.OptionalT(ir.StrT(max_len=10, pattern=r"[a-z]+@[a-z]+"))),
                                          ("note", ir.OptionalT(ir.StrT(max_len=5))),
                                          ("tags", ir.ListT(ir.StrT(max_len=4), max_len=2)))),
    "pattern": ir.StrT(pattern=r"[A-Z]{3}-\d{2}"),
}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_constrained_decoding_always_validates(tiny, name):
    t = SCHEMAS[name]

    @settings(max_examples=4, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.text(min_size=0, max_size=60), min_size=6, max_size=6))
    def prop(texts):
        gens = generate(tiny, [req(x, t) for x in texts], Decoding(max_new_tokens=160))
        for g in gens:
            p = parse_output(t, g.text)
            assert p.ok, (g.text, p.error)
            assert validate(t, p.value) == []

    prop()


# ------------------------------------------------------------------ output parsing
@pytest.mark.parametrize("text,ok,value_or_error", [
    ('```json\n{"tag": "bug", "reply": "hi", "score": 1, "ok": true}\n```', True, None),
    ('Here you go: {"tag": "bug", "reply": "hi", "score": 1, "ok": true} -- hope it helps', True, None),
    ('{"tag": "bugs", "reply": "hi", "score": 1, "ok": true}', False, "output.tag: 'bugs' is not a member of Tag"),
    ('{"tag": "bug", "reply": "", "score": 1, "ok": true}', False, "output.reply: length 0 is under min_len=1"),
    ('{"tag": "bug", "reply": "hi", "score": 9, "ok": true}', False, "output.score: 9 is over le=5"),
    ('{"tag": "bug", "reply": "hi", "score": 1, "ok": true, "x": 1}', False, "output.x: unknown field 'x' in"),
    ('{"tag": "bug", "reply": "hi", "ok": true}', False, "output.score: missing field 'score'"),
    ("no json at all", False, "output: no JSON value found"),
])
def test_parse_output_record(text, ok, value_or_error):
    p = parse_output(SCHEMAS["record"], text)
    assert p.ok is ok and p.raw == text
    if not ok:
        assert p.error.startswith(value_or_error), p.error
    else:
        assert p.value == {"tag": "bug", "reply": "hi", "score": 1, "ok": True}


def test_parse_output_scalars():
    assert parse_output(SCHEMAS["enum"], " Billing.\n").value == "billing"
    assert parse_output(SCHEMAS["enum"], '"bug"').value == "bug"
    assert not parse_output(SCHEMAS["enum"], "feature").ok
    assert parse_output(ir.StrT(), "  raw text, kept\n").value == "raw text, kept"
    assert "over max_len=3" in parse_output(ir.StrT(max_len=3), "toolong").error
    assert parse_output(ir.OptionalT(ir.StrT()), "null").value is None
    assert parse_output(ir.ListT(ir.IntT()), "[1, 2]").value == [1, 2]


# ------------------------------------------------------------------ the cache
class Counting:
    def __init__(self, inner):
        self.inner, self.calls, self.spec = inner, 0, inner.spec

    def identity(self):
        return self.inner.identity()

    def request_key(self, r, d):
        return self.inner.request_key(r, d)

    def generate(self, rs, d, sample=0):
        self.calls += len(rs)
        return self.inner.generate(rs, d, sample)


def test_second_identical_run_makes_no_model_call(tiny, tmp_path):
    cache = Cache(tmp_path / "cache.db")
    b = Counting(tiny)
    rs = [req(f"prompt {i}", SCHEMAS["enum"]) for i in range(5)]
    first = generate(b, rs, Decoding(max_new_tokens=8), cache)
    assert b.calls == 5 and not any(g.cached for g in first)
    second = generate(b, rs, Decoding(max_new_tokens=8), cache)
    assert b.calls == 5 and all(g.cached for g in second)
    assert [g.text for g in first] == [g.text for g in second]
    generate(b, rs, Decoding(max_new_tokens=9), cache)  # other decoding parameters: other keys
    assert b.calls == 10
    generate(b, rs[:2], Decoding(max_new_tokens=8), cache, sample=1)  # other sample index: other keys
    assert b.calls == 12
    assert cache.count() == 12
    assert cache.clear() == 12 and cache.count() == 0


WRITER = r"""
import sys
from promptc.models.cache import Cache
c = Cache(sys.argv[1])
me = sys.argv[2]
for i in range(300):
    c.put_many([(f"{me}-{i}", "x" * (i % 50), i, i, 0.1)])
    assert c.get_many([f"{me}-{i}"])[f"{me}-{i}"][0] == "x" * (i % 50)
print("done")
"""


def test_two_processes_share_the_cache_safely(tmp_path):
    db = tmp_path / "cache.db"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for name in ("a", "b")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    c = Cache(db)
    assert c.count() == 600
    assert c._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert c._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ------------------------------------------------------------------ promptc run
def test_run_cli_prints_one_output_per_input_in_order(tmp_path, monkeypatch, capsys):
    from promptc.cli import main

    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    lines = (PROGRAMS / "data" / "route.jsonl").read_text().splitlines()[:5]
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(lines) + "\n")
    assert main(["run", str(PROGRAMS / "route.prompt"), "--target", "route_text", "--model", "tiny-causal",
                 "--inputs", str(f), "--max-new-tokens", "8"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(out) == 5 and all(o in ("billing", "bug", "account", "other") for o in out)
    # warm run: identical, from the cache
    assert main(["run", str(PROGRAMS / "route.prompt"), "--target", "route_text", "--model", "tiny-causal",
                 "--inputs", str(f), "--max-new-tokens", "8", "--details"]) == 0
    det = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["output"] for d in det] == out and all(d["cached"] for d in det)
    assert main(["cache", "clear"]) == 0
    assert "removed 5 cached generations" in capsys.readouterr().out


def test_run_cli_reports_unparseable_outputs(tmp_path, monkeypatch, capsys):
    from promptc.cli import main

    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["run", str(PROGRAMS / "route.prompt"), "--target", "route_text", "--model", "tiny-causal",
                 "--unconstrained", "--max-new-tokens", "4", "--input",
                 '{"ticket": {"subject": "a", "body": "b"}}'])
    captured = capsys.readouterr()
    assert code == 1 and captured.out.strip() == "null"
    assert "input 1: output:" in captured.err


def test_run_text_artifact(tmp_path, monkeypatch, capsys):
    from promptc.cli import main

    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    prog = promptc.load(PROGRAMS / "route.prompt")
    art = prog.compile("route_text", tmp_path / "art")
    inp = (ROOT / "tests/cases/render/route.input.json").read_text()
    assert main(["run", str(PROGRAMS / "route.prompt"), "--artifact", str(art), "--model", "tiny-causal",
                 "--input", inp, "--max-new-tokens", "8"]) == 0
    via_artifact = capsys.readouterr().out
    assert main(["run", str(PROGRAMS / "route.prompt"), "--target", "route_text", "--model", "tiny-causal",
                 "--input", inp, "--max-new-tokens", "8", "--details"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True  # same request: the artifact renders the same
    assert json.loads(via_artifact) in ("billing", "bug", "account", "other")
    (art / "prompt.jinja").write_text("tampered {{ ticket }}")
    assert main(["run", str(PROGRAMS / "route.prompt"), "--artifact", str(art), "--model", "tiny-causal",
                 "--input", inp]) == 1
    assert "does not match the hash" in capsys.readouterr().err


def test_task_run_api(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    task = promptc.load(PROGRAMS / "triage.prompt").task("triage")
    r = task.run({"ticket": {"subject": "a", "body": "b"}}, target="triage_chat", model="tiny-causal",
                 max_new_tokens=120)
    assert r.ok and set(r.output) == {"tag", "urgency", "needs_human", "reply"}
    out = {"tag": "bug", "urgency": "low", "needs_human": False, "reply": "x"}
    assert task.check({"ticket": {"subject": "a", "body": "refund me"}}, out) == [
        "constraint 'refunds' (refund requests are billing) failed: output.tag == billing when ticket.body "
        'matches /refund|charged/i -- ticket.body = "refund me"; output.tag = "bug"']
    assert task.check({"ticket": {"subject": "a", "body": "b"}}, {**out, "tag": "nope"})[0].startswith(
        "schema: output.tag:")
