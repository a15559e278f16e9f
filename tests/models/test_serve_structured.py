"""`promptc serve` through the official `openai` client on 127.0.0.1, on tiny-causal:
- a value closed early by the budget-aware guide says so ("closed" on the typed endpoint, "length",
  OpenAI's closest value, over chat completions) and is still valid;
- json_schema replies (hand-picked and hypothesis-drawn schemas) are valid whenever max_tokens can hold
  the shortest valid value, checked with the reference validator (jsonschema);
- `stream: true` sends each token as it is generated, and the pieces join to the unstreamed reply."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from promptc.compiler import compile_text
from promptc.schema import validate
from promptc.serving.server import ServerThread
from promptc.serving.subjects import build_registry

openai = pytest.importorskip("openai")

PROGRAM = '''program structured "1.0.0"
enum Tag { billing, bug }
type Reply { tag: Tag  note: str [max_len=20] }
task reply(text: str) -> Reply {
  prompt "Reply to: {{ text }}"
}
target text reply_text for reply { format = "plain", max_new_tokens = 60 }
'''


@pytest.fixture(scope="module")
def program():
    res = compile_text(PROGRAM, "structured.prompt")
    assert res.program is not None, res.diagnostics
    return res.program


@pytest.fixture(scope="module")
def server(program):
    reg = build_registry(model="tiny-causal", targets=[(program, "reply_text")], max_batch=8)
    with ServerThread(reg) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


# ------------------------------------------------------------------ finish reasons of a closed value
def test_a_value_closed_early_says_closed_and_length_over_chat(server, client, program):
    out_type = program.tasks["reply"].output
    # the shortest Reply is 30 characters; at 34 tokens the guide must close the value itself
    r = httpx.post(f"{server.url}/tasks/reply_text@1.0.0?max_tokens=34", json={"text": "hello"}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["finish_reason"] == "closed" and validate(out_type, body["output"]) == []
    c = client.chat.completions.create(model="reply_text@1.0.0", max_tokens=34,
                                       messages=[{"role": "user", "content": '{"text": "hello"}'}])
    assert c.choices[0].finish_reason == "length"  # OpenAI's closest value: the model did not end it
    assert validate(out_type, json.loads(c.choices[0].message.content)) == []
    roomy = httpx.post(f"{server.url}/tasks/reply_text@1.0.0", json={"text": "hello"}, timeout=120).json()
    assert roomy["finish_reason"] in ("stop", "closed") and validate(out_type, roomy["output"]) == []


# ------------------------------------------------------------------ json_schema: bounded, closed in budget
def json_reply(client, schema, max_tokens, seed=0, temperature=1.5):
    r = client.chat.completions.create(
        model="tiny-causal", messages=[{"role": "user", "content": "Give me the JSON."}], max_tokens=max_tokens,
        temperature=temperature, seed=seed,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "strict": True, "schema": schema}})
    return r.choices[0]


def shortest_len(schema) -> int:
    from promptc.models.grammar import Caps, shape_from_json_schema

    node = shape_from_json_schema(schema, Caps())
    assert node is not None, schema
    return len(node.shortest)


HAND_PICKED = [
    # the reported case: an unbounded int ran `{"a": 99999999999999` to the budget
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False},
    {"type": "object", "properties": {"total": {"type": "number"}, "tax": {"type": "number", "minimum": 0}},
     "required": ["total", "tax"]},
    {"type": "object", "properties": {
        "vendor": {"type": "string"},
        "lines": {"type": "array", "items": {"type": "object", "properties": {
            "qty": {"type": "integer", "minimum": 1}, "price": {"type": "number"}}, "required": ["qty", "price"]}},
        "meta": {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer"}},
                                                  "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}},
     "required": ["vendor", "lines", "meta"]},
    {"type": "array", "items": {"type": "number"}, "minItems": 2},
    # pydantic's shape, as client.chat.completions.parse sends it: $defs and $ref
    {"$defs": {"Tag": {"enum": ["billing", "bug"], "type": "string"}},
     "properties": {"tag": {"$ref": "#/$defs/Tag"}, "score": {"type": "number"}}, "required": ["tag", "score"],
     "type": "object"},
]


@pytest.mark.parametrize("schema", HAND_PICKED)
def test_json_schema_replies_are_valid_whenever_the_budget_holds_a_value(client, schema):
    import jsonschema

    need = shortest_len(schema)
    for seed, extra in [(0, 1), (1, 2), (2, 5), (3, 12), (4, 40)]:
        choice = json_reply(client, schema, need + extra, seed=seed)
        jsonschema.validate(json.loads(choice.message.content), schema)  # raises when invalid
        assert choice.finish_reason in ("stop", "length")
    # too small for any value: cut off, and said so
    choice = json_reply(client, schema, need - 1)
    assert choice.finish_reason == "length"
    with pytest.raises(ValueError):
        json.loads(choice.message.content)


def schemas():
    """Hypothesis strategy: JSON Schemas in the subset serve bounds (nested objects, arrays, enums,
    nullable values, bounded and unbounded numbers, strings with maxLength)."""
    from hypothesis import strategies as st

    ints = st.builds(lambda lo, hi: {"type": "integer", **({"minimum": lo} if lo is not None else {}),
                                     **({"maximum": lo + hi} if lo is not None and hi is not None else {})},
                     st.none() | st.integers(-1000, 1000), st.none() | st.integers(0, 10**6))
    floats = st.builds(lambda lo: {"type": "number", **({"minimum": lo} if lo is not None else {})},
                       st.none() | st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 2)))
    strs = st.builds(lambda n: {"type": "string", **({"maxLength": n} if n is not None else {})},
                     st.none() | st.integers(0, 12))
    enums = st.lists(st.sampled_from(["a", "bb", "ccc", "dd"]), min_size=1, max_size=3, unique=True).map(
        lambda xs: {"type": "string", "enum": xs})
    leaves = ints | floats | strs | enums | st.just({"type": "boolean"})

    def extend(children):
        names = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3, unique=True)
        objects = st.builds(lambda ks, vs: {"type": "object", "properties": dict(zip(ks, vs)), "required": ks},
                            names, st.lists(children, min_size=3, max_size=3))
        arrays = st.builds(lambda item, hi: {"type": "array", "items": item, **({"maxItems": hi} if hi else {})},
                           children, st.none() | st.integers(1, 4))
        nullable = children.map(lambda c: {"anyOf": [c, {"type": "null"}]})
        return objects | arrays | nullable

    return st.recursive(leaves, extend, max_leaves=6)


def test_hypothesis_drawn_json_schemas_stay_valid_within_the_budget(client):
    import jsonschema
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(schemas(), st.integers(1, 30), st.integers(0, 3))
    def check(schema, extra, seed):
        choice = json_reply(client, schema, shortest_len(schema) + extra, seed=seed)
        jsonschema.validate(json.loads(choice.message.content), schema)

    check()


# ------------------------------------------------------------------ streaming token by token
def stream(client, **kw):
    return client.chat.completions.create(model="tiny-causal", stream=True, stream_options={"include_usage": True},
                                          **kw)


def test_stream_sends_each_token_as_it_is_generated(client, server):
    kw = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 300}
    whole = client.chat.completions.create(model="tiny-causal", **kw)
    pieces = []
    chunks = []
    for c in stream(client, **kw):  # (that pieces arrive while the model still generates: the test below,
        chunks.append(c)            # whose 3,000-token reply leaves a margin a 300-token one does not)
        if c.choices and c.choices[0].delta.content:
            pieces.append(c.choices[0].delta.content)
    assert "".join(pieces) == whole.choices[0].message.content  # the same greedy reply, whole
    tokens = whole.usage.completion_tokens
    # one piece per token, but for multi-byte characters a byte-level model spells out over several tokens
    assert tokens == 300 and len(pieces) >= tokens // 2, (len(pieces), tokens)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == tokens


def test_stream_with_json_schema_and_stop_matches_the_whole_reply(client):
    schema = HAND_PICKED[2]
    kw = {"messages": [{"role": "user", "content": "JSON please"}], "max_tokens": 120,
          "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}}
    whole = client.chat.completions.create(model="tiny-causal", **kw)
    chunks = list(stream(client, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and json.loads(text)["meta"] is not None
    assert len(chunks) > 30  # token by token, not the finished reply cut in a few pieces
    # a stop string ends the stream where the whole reply is cut, and says stop
    stop = whole.choices[0].message.content[20:23]
    whole = client.chat.completions.create(model="tiny-causal", stop=[stop], **kw)
    chunks = list(stream(client, stop=[stop], **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and stop not in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def completion_tokens_served(server) -> float:
    text = httpx.get(f"{server.url[:-3]}/metrics", timeout=30).text
    return float(next((line.rsplit(" ", 1)[1] for line in text.splitlines()
                       if line.startswith('promptc_tokens_total{kind="completion"}')), 0))


def test_a_stream_the_client_leaves_stops_generating(server):
    engine = server.registry.engines[0]
    body = {"model": "tiny-causal", "messages": [{"role": "user", "content": "go on and on"}], "max_tokens": 3000,
            "stream": True}
    before = completion_tokens_served(server)
    with httpx.Client(timeout=120) as h, h.stream("POST", f"{server.url}/chat/completions", json=body) as r:
        for line in r.iter_lines():  # up to the first piece of text (past the role chunk and separators)
            data = json.loads(line[6:]) if line.startswith("data: {") else {}
            assert "error" not in data, data
            if data.get("choices") and data["choices"][0]["delta"].get("content"):
                break
        assert engine.running == 1  # the model is generating the rest
    # the client went away after one piece: the engine comes free, and the generation it ran (its tokens
    # are counted in /metrics all the same) stopped long before its 3,000 tokens
    for _ in range(1200):
        if engine.running == 0 and completion_tokens_served(server) > before:
            break
        threading.Event().wait(0.05)
    spent = completion_tokens_served(server) - before
    assert engine.running == 0 and 0 < spent < 2000, spent  # of 3,000: it stopped early (margin for a slow box)


def test_a_response_format_is_compiled_once_and_a_huge_one_is_not_kept():
    from promptc.serving.protocol import CACHED_SCHEMA_CHARS, schema_grammar

    rf = {"type": "json_schema", "json_schema": {"name": "t", "schema": HAND_PICKED[2]}}
    same = {"json_schema": {"schema": json.loads(json.dumps(HAND_PICKED[2])), "name": "t"}, "type": "json_schema"}
    assert schema_grammar(rf) is schema_grammar(same)  # one grammar for one schema, however it is written
    big = {"type": "json_schema", "json_schema": {"name": "t", "description": "x" * CACHED_SCHEMA_CHARS,
                                                  "schema": HAND_PICKED[0]}}
    assert schema_grammar(big) is not schema_grammar(big)
