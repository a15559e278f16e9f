"""`promptc serve`'s structured outputs and finish reasons, through the official `openai` client on
127.0.0.1: a value closed early by the budget-aware guide says so ("closed" on the typed endpoint, "length",
OpenAI's closest value, over chat completions) and is still valid."""

from __future__ import annotations

import json

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
