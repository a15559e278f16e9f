"""`promptc serve` against real clients: the official `openai` package and httpx, on 127.0.0.1.

One server (tiny-causal, a text target on it and that target's compiled artifact) serves the fast tests:
models list/retrieve, plain, streamed and n=2 completions, json_schema and json_object, finish_reason
length, the typed endpoint with its 422s and OpenAPI docs, auth, metrics, malformed and oversized
requests, 100 concurrent clients, and a client that disconnects. Tuned artifacts (LoRA pair sharing a
base, a soft prompt, a MiniLM classifier), export and `artifacts` train real adapters: marked slow.
"""

from __future__ import annotations

import asyncio
import json
import resource
import threading

import httpx
import pytest

from promptc.compiler import compile_text
from promptc.serving.app import ServeOptions
from promptc.serving.server import ServerThread
from promptc.serving.subjects import build_registry

openai = pytest.importorskip("openai")

TOY = '''program toy "1.0.0"
enum Tag { billing, bug }
task tag(text: str [max_len=200]) -> Tag {
  prompt "Tag: {{ text }}"
  example "a" { input { text: "refund my card" } output billing }
  example "b" { input { text: "the app crashes" } output bug }
  example "c" { input { text: "charged twice" } output billing }
  example "d" { input { text: "error on save" } output bug }
}
type Reply { tag: Tag  note: str [max_len=20] }
task reply(text: str) -> Reply {
  prompt "Reply to: {{ text }}"
}
test tag {
  case "t1" { input { text: "invoice is wrong" } expect output == billing }
}
target text tag_text for tag { format = "chat" }
target text reply_text for reply { format = "plain", max_new_tokens = 60 }
target tune tag_lora for tag { method = "lora", base = "tiny-causal", epochs = 2, lr = 0.005, val_split = 0.0, max_new_tokens = 8 }
target tune tag_lora2 for tag { method = "lora", base = "tiny-causal", epochs = 2, lr = 0.02, val_split = 0.0, max_new_tokens = 8, seed = 1 }
target tune tag_soft for tag { method = "prompt_tuning", base = "tiny-causal", epochs = 2, virtual_tokens = 4, val_split = 0.0, max_new_tokens = 8 }
target tune tag_cls for tag { method = "lora", base = "minilm", epochs = 2, val_split = 0.0 }
'''


def toy_program():
    res = compile_text(TOY, "toy.prompt")
    assert res.program is not None, res.diagnostics
    return res.program


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from promptc.targets.text.artifact import write_text_artifact

    prog = toy_program()
    art = tmp_path_factory.mktemp("arts") / "tag_text_art"
    write_text_artifact(prog, prog.targets["tag_text"], art)
    reg = build_registry(model="tiny-causal", targets=[(prog, "tag_text"), (prog, "reply_text")],
                         text_artifacts=[(str(art), prog)], max_batch=32)
    # the artifact is a second subject of the same target: named after its directory
    with ServerThread(reg, opts=ServeOptions(max_body=1 << 20, body_timeout=1.0)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


# ------------------------------------------------------------------ models
def test_models_list_and_retrieve(client, server):
    ids = [m.id for m in client.models.list()]
    assert ids == ["tiny-causal", "tag_text@1.0.0", "reply_text@1.0.0", "tag_text_art@1.0.0"]
    m = client.models.retrieve("tag_text@1.0.0")
    assert m.id == "tag_text@1.0.0" and m.owned_by == "promptc"


def test_unknown_model_is_a_404_in_openai_shape_listing_what_is_served(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    err = e.value.body
    assert err["code"] == "model_not_found" and "tag_text@1.0.0" in err["message"] and err["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


# ------------------------------------------------------------------ chat completions
def test_plain_completion_cut_at_max_tokens_says_length(client):
    r = client.chat.completions.create(model="tiny-causal", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + 5
    assert isinstance(r.choices[0].message.content, str) and r.model == "tiny-causal"


def test_max_completion_tokens_is_honoured(client):
    r = client.chat.completions.create(model="tiny-causal", messages=[{"role": "user", "content": "hi"}],
                                       max_completion_tokens=3)
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"


def test_stream_sends_chunks_ending_in_done_with_the_same_text(client, server):
    kw = {"model": "tiny-causal", "messages": [{"role": "user", "content": "stream me"}], "max_tokens": 40}
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 3 and text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    raw = httpx.post(f"{server.url}/chat/completions", json={**kw, "stream": True}, timeout=60).text
    assert raw.rstrip().endswith("data: [DONE]") and raw.startswith("data: {")


def test_n_returns_n_choices(client):
    r = client.chat.completions.create(model="tiny-causal", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4, n=2)
    assert [c.index for c in r.choices] == [0, 1]
    r = client.chat.completions.create(model="tiny-causal", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4, n=3, temperature=1.0, seed=3)
    assert len(r.choices) == 3


def test_stop_sequence_cuts_and_says_stop(client):
    base = client.chat.completions.create(model="tiny-causal", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=12).choices[0].message.content
    stop = base[3:5]
    r = client.chat.completions.create(model="tiny-causal", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=12, stop=[stop])
    assert r.choices[0].message.content == base[:base.find(stop)] and r.choices[0].finish_reason == "stop"


def test_json_schema_with_an_enum_is_constrained_decoding(client):
    schema = {"type": "object", "properties": {"tag": {"type": "string", "enum": ["billing", "bug"]},
                                               "n": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["tag", "n"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="tiny-causal", messages=[{"role": "user", "content": "classify"}], max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "strict": True, "schema": schema}})
    value = json.loads(r.choices[0].message.content)
    assert value["tag"] in ("billing", "bug") and 0 <= value["n"] <= 9 and r.choices[0].finish_reason == "stop"


def test_parse_with_a_pydantic_model(client):
    from typing import Literal

    from pydantic import BaseModel

    class Out(BaseModel):
        tag: Literal["billing", "bug"]

    r = client.chat.completions.parse(model="tiny-causal", messages=[{"role": "user", "content": "x"}],
                                      max_tokens=40, response_format=Out)
    assert r.choices[0].message.parsed.tag in ("billing", "bug")


def test_json_object_gives_an_object(client):
    r = client.chat.completions.create(model="tiny-causal", messages=[{"role": "user", "content": "json"}],
                                       max_tokens=60, response_format={"type": "json_object"})
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:  # a random model may fill the budget inside the object; then it must say so
        assert r.choices[0].finish_reason == "length" and r.choices[0].message.content.startswith("{")


def test_task_subject_over_chat_returns_the_typed_output(client):
    for model in ("tag_text@1.0.0", "tag_text_art@1.0.0"):
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": '{"text": "refund"}'}])
        assert r.choices[0].message.content in ("billing", "bug")
    # a single str input may be sent as plain text; a JSON response format wraps a non-object output
    r = client.chat.completions.create(
        model="tag_text@1.0.0", messages=[{"role": "user", "content": "my card was charged twice"}],
        response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}})
    assert json.loads(r.choices[0].message.content)["value"] in ("billing", "bug")


def test_promptc_openai_backend_against_promptc_serve(server):
    from promptc.execution import text_subject

    prog = toy_program()
    remote = text_subject(prog, prog.tasks["tag"], None, f"openai:tag_text@1.0.0@{server.url}")
    (r,) = remote.run([{"text": "refund"}])
    assert r.ok and r.output in ("billing", "bug"), r.error


# ------------------------------------------------------------------ typed endpoint
def test_typed_endpoint_returns_the_validated_output(server):
    r = httpx.post(f"{server.url}/tasks/tag_text@1.0.0", json={"text": "refund please"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] in ("billing", "bug") and body["model"] == "tag_text@1.0.0"
    assert body["usage"]["prompt_tokens"] > 0 and body["finish_reason"] in ("stop", "length")
    r = httpx.post(f"{server.url}/tasks/reply_text@1.0.0", json={"text": "hello"}, timeout=60)
    assert r.status_code in (200, 502), r.text
    if r.status_code == 200:
        assert set(r.json()["output"]) == {"tag", "note"}
    else:  # cut off at the budget: said so, with the raw text
        assert r.json()["error"]["code"] == "cutoff" and "raw" in r.json()


@pytest.mark.parametrize("body, field", [
    ({"text": 5}, "text"),
    ({}, "text"),
    ({"text": "x" * 201}, "text"),
    ({"text": "ok", "extra": 1}, "extra"),
])
def test_typed_endpoint_422_names_the_field(server, body, field):
    r = httpx.post(f"{server.url}/tasks/tag_text@1.0.0", json=body, timeout=30)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["error"]["param"] == field and field in err["error"]["message"]
    assert err["detail"] and err["detail"][0]["loc"][:2] == ["body", field]


def test_typed_endpoint_bad_query_is_a_422_in_openai_shape(server):
    r = httpx.post(f"{server.url}/tasks/tag_text@1.0.0?max_tokens=abc", json={"text": "x"}, timeout=30)
    assert r.status_code == 422 and r.json()["error"]["param"] == "max_tokens"
    r = httpx.post(f"{server.url}/tasks/tag_text@1.0.0?max_tokens=0", json={"text": "x"}, timeout=30)
    assert r.status_code == 422 and r.json()["error"]["param"] == "max_tokens"


def test_typed_endpoint_unknown_subject_and_non_object(server):
    r = httpx.post(f"{server.url}/tasks/nope@1", json={}, timeout=30)
    assert r.status_code == 404 and "tag_text@1.0.0" in r.json()["error"]["message"]
    r = httpx.post(f"{server.url}/tasks/tag_text@1.0.0", json=[1], timeout=30)
    assert r.status_code == 422


def test_openapi_documents_each_task_with_its_schema(server):
    spec = httpx.get(f"{server.url[:-3]}/openapi.json", timeout=30).json()
    op = spec["paths"]["/v1/tasks/tag_text@1.0.0"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["text"]["maxLength"] == 200 and schema["required"] == ["text"]
    out = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert out["properties"]["output"]["enum"] == ["billing", "bug"]
    assert httpx.get(f"{server.url[:-3]}/docs", timeout=30).status_code == 200


# ------------------------------------------------------------------ health, metrics, auth
def test_health_and_metrics(server, client):
    assert httpx.get(f"{server.url[:-3]}/health").json()["status"] == "ok"
    client.chat.completions.create(model="tiny-causal", messages=[{"role": "user", "content": "m"}], max_tokens=2)
    text = httpx.get(f"{server.url[:-3]}/metrics").text
    for name in ("promptc_requests_total", "promptc_request_seconds_bucket", "promptc_batch_size_bucket",
                 "promptc_tokens_total", "promptc_errors_total"):
        assert name in text


def test_bearer_auth(monkeypatch):
    reg = build_registry(model="tiny-causal")
    with ServerThread(reg, opts=ServeOptions(api_key="s3cret")) as srv:
        assert httpx.get(f"{srv.url}/models").status_code == 401
        assert httpx.get(f"{srv.url}/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{srv.url}/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{srv.url[:-3]}/metrics").status_code == 401
        assert httpx.get(f"{srv.url[:-3]}/health").status_code == 200
        c = openai.OpenAI(base_url=srv.url, api_key="s3cret", max_retries=0)
        assert c.chat.completions.create(model="tiny-causal", messages=[{"role": "user", "content": "a"}],
                                         max_tokens=2).choices


# ------------------------------------------------------------------ hostile and heavy traffic (issue 11 class 7)
M = "tiny-causal"
U = [{"role": "user", "content": "hi"}]
MALFORMED: list[tuple[str, object]] = [
    ("empty body", b""), ("not json", b"{nope"), ("not utf-8", b'{"model": "\xff\xfe"}'), ("array", [1, 2]),
    ("string", "hi"), ("null", None), ("NaN literal", b'{"model": "tiny-causal", "messages": [], "temperature": NaN}'),
    ("deep nesting", b"[" * 100000 + b"]" * 100000), ("no model", {"messages": U}), ("model not str", {"model": 1, "messages": U}),
    ("unknown model", {"model": "gpt-x", "messages": U}), ("no messages", {"model": M}),
    ("messages empty", {"model": M, "messages": []}), ("messages not list", {"model": M, "messages": "hi"}),
    ("message not object", {"model": M, "messages": ["hi"]}), ("bad role", {"model": M, "messages": [{"role": "x", "content": "a"}]}),
    ("no content", {"model": M, "messages": [{"role": "user"}]}),
    ("content number", {"model": M, "messages": [{"role": "user", "content": 5}]}),
    ("content image part", {"model": M, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
    ("temperature -1", {"model": M, "messages": U, "temperature": -1}),
    ("temperature huge", {"model": M, "messages": U, "temperature": 1e308 * 10}),
    ("temperature str", {"model": M, "messages": U, "temperature": "hot"}),
    ("top_p 5", {"model": M, "messages": U, "top_p": 5}), ("top_p 0", {"model": M, "messages": U, "top_p": 0}),
    ("max_tokens 0", {"model": M, "messages": U, "max_tokens": 0}),
    ("max_tokens -3", {"model": M, "messages": U, "max_tokens": -3}),
    ("max_tokens huge", {"model": M, "messages": U, "max_tokens": 10**12}),
    ("max_tokens float", {"model": M, "messages": U, "max_tokens": 1.5}),
    ("max_tokens bool", {"model": M, "messages": U, "max_tokens": True}),
    ("n 0", {"model": M, "messages": U, "n": 0}), ("n 1000", {"model": M, "messages": U, "n": 1000}),
    ("stop number", {"model": M, "messages": U, "stop": 5}), ("stop five", {"model": M, "messages": U, "stop": list("abcde")}),
    ("stop empty", {"model": M, "messages": U, "stop": [""]}), ("stream str", {"model": M, "messages": U, "stream": "yes"}),
    ("response_format bad type", {"model": M, "messages": U, "response_format": {"type": "xml"}}),
    ("json_schema without schema", {"model": M, "messages": U, "response_format": {"type": "json_schema"}}),
    ("unusable schema", {"model": M, "messages": U, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "strin"}}}}),
    ("logprobs", {"model": M, "messages": U, "logprobs": True}),
    ("tools", {"model": M, "messages": U, "tools": [{"type": "function"}]}),
    ("seed str", {"model": M, "messages": U, "seed": "x"}),
    ("task input wrong type", {"model": "tag_text@1.0.0", "messages": [{"role": "user", "content": "{\"text\": 5}"}]}),
]


def test_malformed_requests_get_4xx_and_the_server_keeps_serving(server, client):
    assert len(MALFORMED) >= 42
    idle = rss_mb()
    url = f"{server.url}/chat/completions"
    bad = []
    with httpx.Client(timeout=30) as h:
        for name, body in MALFORMED:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = h.post(url, content=content, headers={"Content-Type": "application/json"})
            ok = 400 <= r.status_code < 500 and "error" in r.json() and r.json()["error"]["message"]
            if not ok:
                bad.append((name, r.status_code, r.text[:200]))
        assert bad == []
        # wrong method and path are 4xx in the same shape
        assert h.get(url).status_code == 405 and h.get(f"{server.url}/nothing").json()["error"]["type"]
    r = client.chat.completions.create(model=M, messages=U, max_tokens=2)
    assert r.choices[0].message.content is not None
    assert rss_mb() < 2 * idle


def test_oversized_bodies_get_413_before_they_are_read(server, client):
    idle = rss_mb()
    big = b'{"model": "tiny-causal", "messages": [{"role": "user", "content": "' + b"x" * (50 << 20) + b'"}]}'
    with httpx.Client(timeout=60) as h:
        r = h.post(f"{server.url}/chat/completions", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

        def chunks():  # no Content-Length: refused while streaming in, once past the limit
            for _ in range(50):
                yield b"x" * (1 << 20)

        r = h.post(f"{server.url}/tasks/tag_text@1.0.0", content=chunks())
        assert r.status_code == 413
    assert rss_mb() < 2 * idle
    assert client.chat.completions.create(model=M, messages=U, max_tokens=2).choices


def test_a_body_that_stops_arriving_gets_408_and_the_connection_is_closed(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"model\": ")
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 408")


def test_prompt_longer_than_the_context_is_a_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=M, messages=[{"role": "user", "content": "y" * 900_000}], max_tokens=4)
    assert e.value.body["code"] == "context_length_exceeded" and "context of 4096" in e.value.body["message"]


def test_hundred_concurrent_clients_are_all_served(server):
    async def main():
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=120, limits=limits) as h:
            async def one(i):
                return await h.post(f"{server.url}/chat/completions",
                                    json={"model": M, "messages": [{"role": "user", "content": f"c{i % 7}"}],
                                          "max_tokens": 3})
            return await asyncio.gather(*(one(i) for i in range(100)), return_exceptions=True)

    results = asyncio.run(main())
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    assert [r.status_code for r in results] == [200] * 100
    assert all(r.json()["usage"]["completion_tokens"] == 3 for r in results)


def test_a_client_that_disconnects_frees_its_slot(server):
    engine = server.registry.subjects[M].engine
    # Hold the engine's one model thread, so the first request stays running however fast the model is
    # (a timing-free test): the quick requests queue behind it, and their clients give up meanwhile.
    gate = threading.Event()
    engine.pool.submit(gate.wait, 60)

    async def main():
        async with httpx.AsyncClient(timeout=120) as h:
            start = engine.batches
            long = asyncio.create_task(h.post(f"{server.url}/chat/completions",
                                              json={"model": M, "messages": U, "max_tokens": 250}))
            while engine.batches == start:  # wait until the first request is the engine's batch
                await asyncio.sleep(0.02)
            before = engine.batches
            async with httpx.AsyncClient(timeout=0.3) as quick:
                for i in range(4):
                    try:
                        await quick.post(f"{server.url}/chat/completions",
                                         json={"model": M, "messages": U, "max_tokens": 7 + i})
                    except httpx.TimeoutException:
                        pass  # the client gave up and closed its connection
            await asyncio.sleep(0.6)  # the server notices the disconnects and cancels their jobs
            gate.set()
            r = await long
            await asyncio.sleep(0.2)
            return before, r

    before, r = asyncio.run(main())
    assert r.status_code == 200
    assert engine.batches == before  # none of the abandoned requests was run


# ------------------------------------------------------------------ tuned artifacts, export, artifacts (slow)
@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    from promptc.cli import main

    d = tmp_path_factory.mktemp("tuned")
    prog_file = d / "toy.prompt"
    prog_file.write_text(TOY)
    out = {}
    for t in ("tag_lora", "tag_lora2", "tag_soft", "tag_cls"):
        assert main(["tune", str(prog_file), "--target", t, "-o", str(d / t), "--no-gate"]) == 0
        out[t] = str(d / t)
    return prog_file, out


@pytest.mark.slow
def test_tuned_artifacts_of_every_kind_served_with_shared_bases(tuned):
    from promptc.execution import artifact_subject

    prog_file, arts = tuned
    prog = toy_program()
    reg = build_registry(tuned=[(arts[t], prog) for t in ("tag_lora", "tag_lora2", "tag_soft", "tag_cls")],
                         max_batch=16)
    lora, lora2 = reg.subjects["tag_lora@1.0.0"], reg.subjects["tag_lora2@1.0.0"]
    assert lora.engine is lora2.engine and lora.engine.mixed_adapters  # one base copy, one batch
    assert reg.subjects["tag_soft@1.0.0"].engine is not lora.engine
    inputs = [{"text": t} for t in ("refund my card", "the app crashes", "charged twice", "error on save")]
    expected = {t: [r.output for r in artifact_subject(arts[t], prog, prog.tasks["tag"]).run(inputs)]
                for t in ("tag_lora", "tag_lora2", "tag_soft", "tag_cls")}
    with ServerThread(reg) as srv:
        async def main():
            async with httpx.AsyncClient(timeout=120) as h:
                jobs = [(t, i, h.post(f"{srv.url}/tasks/{t}@1.0.0", json=inp))
                        for t in expected for i, inp in enumerate(inputs)]
                rs = await asyncio.gather(*(j[2] for j in jobs))
                return {(t, i): r for (t, i, _), r in zip(jobs, rs)}

        got = asyncio.run(main())
        for (t, i), r in got.items():
            assert r.status_code == 200, r.text
            assert r.json()["output"] == expected[t][i], (t, i)
        c = openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0)
        assert {m.id for m in c.models.list()} == {f"{t}@1.0.0" for t in expected}
        # logit_bias: applied on a tuned causal artifact (composed with its enum grammar), refused on classes
        msg = [{"role": "user", "content": "refund my card"}]
        r = c.chat.completions.create(model="tag_lora@1.0.0", messages=msg, logit_bias={"5": -100})
        assert r.choices[0].message.content in ("billing", "bug")
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="tag_cls@1.0.0", messages=msg, logit_bias={"5": -100})
        assert e.value.body["param"] == "logit_bias" and "classes" in e.value.body["message"]


@pytest.mark.slow
# peft's from_pretrained asks transformers a deprecated question (peft, not promptc: warnings are errors here)
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_export_peft_and_vllm_layouts(tuned, tmp_path):
    import torch
    from peft import PeftModel

    from promptc.errors import UsageError
    from promptc.models.tiny import build_tiny
    from promptc.serving.export import export

    _, arts = tuned
    out = export(arts["tag_lora"], "peft", tmp_path / "peft")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "promptc-export.json"} <= set(out.files)
    base, _ = build_tiny()
    model = PeftModel.from_pretrained(base, str(out.directory))
    ours = PeftModel.from_pretrained(build_tiny()[0], f"{arts['tag_lora']}/adapter")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ours(ids).logits)

    v = export(arts["tag_lora"], "vllm", tmp_path / "vllm", name="tagger")
    cfg = json.loads((v.directory / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] > 0 and cfg["target_modules"] and "lora_alpha" in cfg
    assert (v.directory / "adapter_model.safetensors").is_file()
    assert "--enable-lora" in v.command and f"tagger={v.directory.resolve()}" in v.command
    assert "vllm serve" in (v.directory / "README.md").read_text()
    with pytest.raises(UsageError, match="LoRA"):
        export(arts["tag_soft"], "vllm", tmp_path / "v2")
    cls = export(arts["tag_cls"], "peft", tmp_path / "cls")
    assert {"head.safetensors", "labels.json"} <= set(cls.files)
    export(arts["tag_lora"], "peft", tmp_path / "peft")  # re-export replaces its own earlier export
    (tmp_path / "peft" / "mine.txt").write_text("user file")
    from promptc.errors import ArtifactError

    with pytest.raises(ArtifactError, match="did not write"):
        export(arts["tag_lora"], "peft", tmp_path / "peft")


@pytest.mark.slow
def test_artifacts_list_show_diff(tuned, capsys):
    from promptc.cli import main

    _, arts = tuned
    root = str(next(iter(arts.values())).rsplit("/", 1)[0])
    assert main(["artifacts", "list", root]) == 0
    out = capsys.readouterr().out
    for t in arts:
        assert f"{t}@1.0.0" in out
    assert main(["artifacts", "show", arts["tag_lora"]]) == 0
    card = capsys.readouterr().out
    assert "trainable parameters" in card and "base weights hash" in card and "Test gate" in card
    assert main(["artifacts", "diff", arts["tag_lora"], arts["tag_lora2"]]) == 0
    diff = capsys.readouterr().out
    assert "options.lr: 0.005 -> 0.02" in diff and "options.seed" in diff and "~ adapter/adapter_model.safetensors" in diff


# ------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("argv, message", [
    (["serve"], "nothing to serve"),
    (["serve", "--target", "nofile"], "FILE:NAME"),
    (["serve", "--model", "openai:gpt-4o"], "local models"),
    (["serve", "--model", "tiny-causal", "--api-key-env", "PROMPTC_TEST_UNSET_KEY"], "not set"),
    (["serve", "--model", "tiny-causal", "--max-body", "10"], "--max-body"),
])
def test_serve_usage_errors(argv, message, capsys, monkeypatch):
    from promptc.cli import main

    monkeypatch.delenv("PROMPTC_TEST_UNSET_KEY", raising=False)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_serve_artifact_needs_its_program(tmp_path, capsys):
    from promptc.cli import main
    from promptc.targets.text.artifact import write_text_artifact

    prog = toy_program()
    write_text_artifact(prog, prog.targets["tag_text"], tmp_path / "a")
    assert main(["serve", "--model", "tiny-causal", "--artifact", str(tmp_path / "a")]) == 2
    assert "--program" in capsys.readouterr().err


@pytest.mark.slow
def test_promptc_serve_command_binds_localhost_and_serves(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    (tmp_path / "toy.prompt").write_text(TOY)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SERVE_KEY": "k1"}
    p = subprocess.Popen([sys.executable, "-m", "promptc", "serve", "--model", "tiny-causal", "--target",
                          f"{tmp_path / 'toy.prompt'}:tag_text", "--port", str(port), "--api-key-env", "SERVE_KEY"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = p.stdout.readline()
        assert f"http://127.0.0.1:{port}/v1" in line and "tag_text@1.0.0" in line, line
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k1", max_retries=0)
        r = c.chat.completions.create(model="tag_text@1.0.0", messages=[{"role": "user", "content": "refund"}])
        assert r.choices[0].message.content in ("billing", "bug")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0).models.list()
    finally:
        p.terminate()
        p.wait(timeout=30)
        p.stdout.close()  # (pytest turns the ResourceWarning of an unclosed pipe into an error)


def test_text_artifacts_carry_a_model_card_and_diff_by_option(tmp_path, capsys):
    from promptc.cli import main
    from promptc.errors import UsageError
    from promptc.serving.export import export

    prog_file = tmp_path / "toy.prompt"
    prog_file.write_text(TOY)
    prog_file2 = tmp_path / "toy2.prompt"
    prog_file2.write_text(TOY.replace('target text tag_text for tag { format = "chat" }',
                                      'target text tag_text for tag { format = "chat", shots = 2 }'))
    assert main(["compile", str(prog_file), "--target", "tag_text", "-o", str(tmp_path / "out" / "a")]) == 0
    assert main(["compile", str(prog_file2), "--target", "tag_text", "-o", str(tmp_path / "out" / "b")]) == 0
    card = (tmp_path / "out" / "a" / "README.md").read_text()
    assert "toy 1.0.0" in card and "`tag`" in card and "compiled text artifact" in card
    manifest = json.loads((tmp_path / "out" / "a" / "manifest.json").read_text())
    assert "README.md" in manifest["files"]  # the card is covered by the hashes
    capsys.readouterr()
    assert main(["artifacts", "list", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.count("tag_text@1.0.0") == 2 and "compiled" in out
    assert main(["artifacts", "diff", str(tmp_path / "out" / "a"), str(tmp_path / "out" / "b")]) == 0
    diff = capsys.readouterr().out
    assert "target.options.shots: 0 -> 2" in diff and "~ messages.json" in diff
    assert main(["artifacts", "show", str(tmp_path / "out" / "a"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["kind"] == "text"
    with pytest.raises(UsageError, match="already portable"):
        export(tmp_path / "out" / "a", "peft", tmp_path / "x")
    assert main(["artifacts", "list", str(tmp_path / "nope")]) == 2
