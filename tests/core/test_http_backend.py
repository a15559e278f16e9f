"""The `openai:` HTTP backend against a fake OpenAI server on 127.0.0.1 (stdlib http.server, no torch):
retries and Retry-After, 5xx, malformed and truncated bodies, stalls and trickles under a deadline, a
redirect to another origin (the key must not follow), error bodies that echo the key, finish_reason,
structured outputs for every type, json-repair, rate limits, usage and cost."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from promptc import ir
from promptc.errors import UsageError
from promptc.execution import run_requests
from promptc.models import Decoding, Request, generate, load_backend
from promptc.models.cache import Cache
from promptc.models.openai import redact, response_format, retry_after_seconds, unwrap
from tests.conftest import PROGRAMS

SECRET = "sk-test-SECRET-0123456789abcdef"
ENUM = ir.EnumT("Tag", ("billing", "bug"))
RECORD = ir.RecordT("Form", (("tag", ENUM), ("reply", ir.StrT(max_len=40))))


def completion(content, finish="stop", usage=(7, 3)):
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


class Fake(BaseHTTPRequestHandler):
    """Plays one scripted fault per request from `faults`, then answers `reply` (a content string)."""

    protocol_version = "HTTP/1.1"
    faults: list = []
    reply: object = "bug"
    finish_reason = "stop"
    seen: list = []
    redirect_to = ""

    def log_message(self, *a):
        return

    def _json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        cls = type(self)
        cls.seen.append({"auth": self.headers.get("Authorization"), "body": body, "path": self.path})
        fault = cls.faults.pop(0) if cls.faults else None
        if fault is None:
            return self._json(200, completion(cls.reply, cls.finish_reason))
        kind, _, arg = fault.partition(":")
        if kind == "status":
            return self._json(int(arg), {"error": {"message": f"status {arg}"}})
        if kind == "429":
            return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": arg})
        if kind == "malformed":
            data = b"<html>not json"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if kind == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"choices": [')
            self.wfile.flush()
            self.close_connection = True
            return
        if kind == "stall":
            time.sleep(float(arg))
            return self._json(200, completion(cls.reply))
        if kind == "trickle":  # a byte every `arg` seconds: each read succeeds, the whole never ends
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(float(arg))
            except OSError:
                pass
            self.close_connection = True
            return
        if kind == "redirect":
            self.send_response(307)
            self.send_header("Location", cls.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind == "echo":  # an error body that echoes the request headers, key included
            return self._json(400, {"error": {"message": "bad request", "headers": dict(self.headers)}})
        if kind == "content":
            return self._json(200, completion(json.loads(arg)))
        raise AssertionError(fault)


def start(handler):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def backend(fake, **kw):
    return load_backend(f"openai:m@{fake.url}", **{"timeout": 5, "retries": 3, "backoff": 0.01, **kw})


def req(text="hi", t: ir.Type = ENUM) -> Request:
    return Request([{"role": "user", "content": text}], text, t)


def one(b, t: ir.Type = ENUM, **dec):
    return generate(b, [req("hi", t)], Decoding(**{"max_new_tokens": 8, **dec}))[0]


def test_roundtrip_usage_and_finish_reason(fake):
    g = one(backend(fake))
    assert (g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason, g.error) == ("bug", 7, 3, "stop", None)
    assert fake.seen[0]["body"]["max_tokens"] == 8 and fake.seen[0]["path"] == "/v1/chat/completions"


def test_finish_reason_length_is_a_cutoff_not_a_repair(fake):
    fake.reply, fake.finish_reason = '{"tag": "bug", "reply": "a long rep', "length"
    b = backend(fake)
    (r,) = run_requests(b, [req("hi", RECORD)], [{}], Decoding(max_new_tokens=8))
    assert r.generation.finish_reason == "length" and not getattr(r.generation, "repaired", False)
    assert r.parsed.cutoff and "--max-new-tokens" in r.error and "8" in r.error


def test_retries_500_then_succeeds(fake):
    fake.faults = ["status:500", "status:503"]
    b = backend(fake)
    g = one(b)
    assert g.error is None and b.attempts == 3


def test_429_honours_retry_after(fake):
    fake.faults = ["429:0.4"]
    b = backend(fake)
    t0 = time.perf_counter()
    g = one(b)
    assert g.error is None and b.attempts == 2 and time.perf_counter() - t0 >= 0.4


@pytest.mark.parametrize("value", ["-1", "garbage", "inf", "nan", ""])
def test_bad_retry_after_falls_back_to_backoff(fake, value):
    fake.faults = [f"429:{value}"]
    b = backend(fake, max_backoff=0.2)
    t0 = time.perf_counter()
    g = one(b)
    assert g.error is None and b.attempts == 2 and time.perf_counter() - t0 < 2


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after": "2.5"}) == 2.5
    assert retry_after_seconds({"retry-after": "-1"}) is None
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert retry_after_seconds({}) is None


def test_client_errors_are_not_retried(fake):
    fake.faults = ["status:404"]
    b = backend(fake)
    g = one(b)
    assert g.error.startswith("HTTP 404") and b.attempts == 1


def test_malformed_json_is_a_clear_error(fake):
    fake.faults = ["malformed"]
    b = backend(fake)
    g = one(b)
    assert "malformed response" in g.error and "not JSON" in g.error and b.attempts == 1


def test_truncated_body_is_a_clear_error(fake):
    fake.faults = ["truncated", "truncated"]
    b = backend(fake, retries=1)
    g = one(b)
    assert "truncated" in g.error and "gave up after 2 attempts" in g.error


@pytest.mark.parametrize("content", ['[{"type": "text", "text": "bug"}]', "42", "null"])
def test_non_string_content_is_a_clear_error(fake, content):
    fake.faults = [f"content:{content}"]
    g = one(backend(fake, retries=0))
    assert "not a string" in g.error and "malformed response" in g.error


def test_stall_times_out_within_the_deadline(fake):
    fake.faults = ["stall:3", "stall:3"]
    b = backend(fake, timeout=0.5, retries=1)
    t0 = time.perf_counter()
    g = one(b)
    assert "timed out after 0.5 s" in g.error and b.attempts == 2
    assert time.perf_counter() - t0 < 2.5


def test_trickle_times_out(fake):
    # each byte arrives well inside a per-read timeout; only an overall deadline ends it
    fake.faults = ["trickle:0.2"]
    b = backend(fake, timeout=1.0, retries=0)
    t0 = time.perf_counter()
    g = one(b)
    assert g.error and "timed out" in g.error
    assert time.perf_counter() - t0 < 3


def test_total_deadline_bounds_retries(fake):
    fake.faults = ["stall:2"] * 5
    b = backend(fake, timeout=0.4, deadline=1.0, retries=4)
    t0 = time.perf_counter()
    g = one(b)
    assert g.error and time.perf_counter() - t0 < 1.8


def test_redirect_to_another_origin_is_refused_without_sending_the_key(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    other = type("Other", (Fake,), {"faults": [], "seen": [], "reply": "bug", "finish_reason": "stop"})
    srv = start(other)
    try:
        fake.redirect_to = f"http://localhost:{srv.server_address[1]}"  # another origin (host differs)
        fake.faults = ["redirect"]
        b = backend(fake)
        g = one(b)
        assert g.error and "another origin" in g.error and SECRET not in g.error
        assert other.seen == []  # never contacted, so never sent the key
        assert fake.seen[0]["auth"] == f"Bearer {SECRET}" and b.attempts == 1
    finally:
        srv.shutdown()
        srv.server_close()


def test_same_origin_307_is_followed(fake):
    fake.redirect_to = fake.url.rsplit("/v1", 1)[0] + "/moved"
    fake.faults = ["redirect"]
    g = one(backend(fake))
    assert g.error is None and fake.seen[1]["path"] == "/moved/v1/chat/completions"


def test_key_redacted_from_error_bodies_and_never_cached(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    fake.faults = ["echo"]
    b = backend(fake)
    cache = Cache(tmp_path / "c.db")
    bad = generate(b, [req()], Decoding(max_new_tokens=5), cache)[0]
    assert bad.error and "HTTP 400" in bad.error and "[redacted]" in bad.error
    assert SECRET not in bad.error and SECRET[:12] not in bad.error
    good = generate(b, [req()], Decoding(max_new_tokens=5), cache)[0]
    assert good.error is None and fake.seen[-1]["auth"] == f"Bearer {SECRET}"
    cache.close()
    for f in tmp_path.iterdir():
        assert SECRET.encode() not in f.read_bytes()


def test_key_never_reaches_cli_output_details_or_junit(fake, tmp_path, monkeypatch, capsys):
    from promptc.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    fake.faults = ["echo"] * 50
    model = f"openai:m@{fake.url}"
    inp = json.dumps({"ticket": {"subject": "s", "body": "b"}})
    main(["run", str(PROGRAMS / "route.prompt"), "--model", model, "--input", inp, "--details"])
    junit = tmp_path / "r.xml"
    main(["test", str(PROGRAMS / "route.prompt"), "--model", model, "--format", "junit", "-o", str(junit),
          "--max-examples", "1"])
    out = capsys.readouterr()
    assert "[redacted]" in out.out + out.err + junit.read_text()
    for text in (out.out, out.err, junit.read_text()):
        assert SECRET not in text


def test_redact():
    assert redact(f"x {SECRET} y Bearer abc.def", [SECRET]) == "x [redacted] y Bearer [redacted]"


def test_concurrency_keeps_order(fake):
    b = backend(fake, concurrency=3)
    rs = [req(f"prompt {i}") for i in range(7)]
    gens = generate(b, rs, Decoding(max_new_tokens=6))
    assert len(gens) == 7 and all(g.text == "bug" for g in gens)
    assert sorted(s["body"]["messages"][0]["content"] for s in fake.seen) == sorted(f"prompt {i}" for i in range(7))



def test_concurrency_is_the_number_in_flight_across_client_shards():
    """Requests spread over several httpx clients (CLIENT_CONNECTIONS each); `concurrency` still bounds
    what is in flight at once, and is reached: 6 slots over two clients, against a server that holds
    each request 0.15 s and counts how many it holds."""
    from promptc.models.openai import CLIENT_CONNECTIONS

    state = {"now": 0, "most": 0}
    guard = threading.Lock()

    class Slow(Fake):
        faults: list = []
        seen: list = []
        reply, finish_reason = "bug", "stop"

        def do_POST(self):
            with guard:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(0.15)
            with guard:
                state["now"] -= 1
            super().do_POST()

    srv = start(Slow)
    try:
        b = load_backend(f"openai:m@http://127.0.0.1:{srv.server_address[1]}/v1", timeout=5, concurrency=6)
        gens = generate(b, [req(f"p{i}") for i in range(18)], Decoding(max_new_tokens=6))
    finally:
        srv.shutdown()
        srv.server_close()
    assert CLIENT_CONNECTIONS < 6  # the slots span more than one client
    assert [g.text for g in gens] == ["bug"] * 18 and not any(g.error for g in gens)
    assert state["most"] == 6


# ------------------------------------------------------------------ structured outputs and repair
@pytest.mark.parametrize("t, reply, expected", [
    (ENUM, '{"value": "billing"}', "billing"),
    (ir.StrT(max_len=10), '{"value": "hello"}', "hello"),
    (ir.ListT(ir.IntT()), '{"value": [1, 2]}', [1, 2]),
    (ir.OptionalT(ENUM), '{"value": null}', None),
    (ir.IntT(ge=0, le=9), '{"value": 7}', 7),
    (RECORD, '{"tag": "bug", "reply": "ok"}', {"tag": "bug", "reply": "ok"}),
])
def test_every_type_is_sent_as_strict_json_schema_and_unwrapped(fake, t, reply, expected):
    fake.reply = reply
    b = backend(fake)
    (r,) = run_requests(b, [req("x", t)], [{}], Decoding(max_new_tokens=20, structured=True))
    rf = fake.seen[-1]["body"]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["schema"]["type"] == "object"
    assert r.ok and r.output == expected, r.error


def test_wrapped_enum_schema_lists_members():
    schema = response_format(ENUM)["json_schema"]["schema"]
    assert schema["properties"]["value"]["enum"] == ["billing", "bug"] and schema["required"] == ["value"]
    assert unwrap(ENUM, '{"value": "bug"}') == "bug" and unwrap(ENUM, "bug") == "bug"


def test_near_json_is_repaired_recorded_and_still_validated(fake):
    fake.reply = "Sure! {'tag': 'bug', 'reply': 'on it',}"
    b = backend(fake)
    (r,) = run_requests(b, [req("x", RECORD)], [{}], Decoding(max_new_tokens=20))
    assert r.ok and r.output == {"tag": "bug", "reply": "on it"} and r.generation.repaired is True
    fake.reply = "{'tag': 'refund', 'reply': 'x',}"  # repairs to JSON that breaks the schema
    (r,) = run_requests(b, [req("y", RECORD)], [{}], Decoding(max_new_tokens=20))
    assert not r.ok and r.generation.repaired is True and "output.tag" in r.error


def test_valid_json_is_not_marked_repaired(fake):
    fake.reply = '{"tag": "bug", "reply": "x"}'
    (r,) = run_requests(backend(fake), [req("x", RECORD)], [{}], Decoding(max_new_tokens=20))
    assert r.ok and not getattr(r.generation, "repaired", False)


# ------------------------------------------------------------------ rate limits, usage, cost
def test_rate_limit_requests_per_minute(fake):
    b = backend(fake, rpm=2, concurrency=4)
    b.limiter.window = 0.5  # the same limiter on a half-second window, so the test is quick
    t0 = time.perf_counter()
    gens = generate(b, [req(f"p{i}") for i in range(5)], Decoding(max_new_tokens=4))
    assert all(g.error is None for g in gens)
    assert time.perf_counter() - t0 >= 1.0  # 5 requests at 2 per window need three windows


def test_rate_limit_tokens_per_minute(fake):
    b = backend(fake, tpm=40, concurrency=4)
    b.limiter.window = 0.4
    t0 = time.perf_counter()
    generate(b, [req(f"p{i}") for i in range(3)], Decoding(max_new_tokens=25))
    assert time.perf_counter() - t0 >= 0.8


def test_usage_and_cost_from_the_price_table(fake, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"m": {"input": 2.0, "output": 10.0}}))
    b = backend(fake, prices=str(prices))
    gens = generate(b, [req("a"), req("b")], Decoding(max_new_tokens=4))
    assert b.spend.prompt_tokens == 14 and b.spend.completion_tokens == 6
    assert b.spend.cost == pytest.approx((14 * 2.0 + 6 * 10.0) / 1e6)
    assert gens[0].cost == pytest.approx((7 * 2.0 + 3 * 10.0) / 1e6)


def test_max_cost_stops_before_going_over(fake, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"m": {"input": 1000.0, "output": 1000.0}}))
    b = backend(fake, prices=str(prices), max_cost=0.1, concurrency=1)
    gens = generate(b, [req(f"p{i}") for i in range(10)], Decoding(max_new_tokens=4))
    sent = [g for g in gens if g.error is None]
    refused = [g for g in gens if g.error]
    assert sent and refused and "--max-cost" in refused[0].error and "not sent" in refused[0].error
    assert b.spend.cost <= 0.1 and len(fake.seen) == len(sent)


def test_max_cost_without_a_price_is_a_usage_error(fake):
    with pytest.raises(UsageError, match="needs a price"):
        backend(fake, max_cost=1.0)


def test_bad_price_table_is_a_usage_error(fake, tmp_path):
    p = tmp_path / "p.json"
    p.write_text('{"m": {"input": "cheap"}}')
    with pytest.raises(UsageError, match="price table"):
        backend(fake, prices=str(p))


def test_bad_base_url_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "ftp://x")
    with pytest.raises(UsageError, match="base URL"):
        load_backend("openai:m")


def test_model_names_may_hold_at_signs():
    b = load_backend("openai:route_text@1.0.0@http://127.0.0.1:1/v1")
    assert (b.model, b.base_url) == ("route_text@1.0.0", "http://127.0.0.1:1/v1")


def test_run_prints_tokens_and_cost_and_max_cost_refuses(fake, tmp_path, monkeypatch, capsys):
    from promptc.cli import main

    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"m": {"input": 1.0, "output": 2.0}}))
    model = f"openai:m@{fake.url}"
    lines = "".join(json.dumps({"ticket": {"subject": f"s{i}", "body": "b"}}) + "\n" for i in range(3))
    (tmp_path / "in.jsonl").write_text(lines)
    args = ["run", str(PROGRAMS / "route.prompt"), "--model", model, "--inputs", str(tmp_path / "in.jsonl"),
            "--prices", str(prices), "--no-cache", "--retries", "0", "--timeout", "5"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "3 requests, 21 prompt + 9 completion tokens; cost $0.000039" in err
    assert main([*args, "--max-cost", "0.0000001"]) == 1
    err = capsys.readouterr().err
    assert "not sent" in err and "--max-cost" in err and len(fake.seen) == 3  # nothing more was sent
