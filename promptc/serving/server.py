"""`promptc serve`: an OpenAI-compatible Chat Completions server for a local model.

It lets any OpenAI client (and promptc's own `openai:` backend) use a local transformers model,
including response_format json_schema, which becomes schema-constrained decoding.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from promptc.models.base import Decoding
from promptc.models.hf import HFBackend


def messages_to_prompt(messages: list[dict[str, str]]) -> str:
    """The plain prompt for a tokenizer without a chat template: contents separated by blank lines,
    assistant turns prefixed `Answer: `, ending with `Answer:`."""
    parts = []
    for m in messages:
        content = m.get("content") or ""
        parts.append(f"Answer: {content}" if m.get("role") == "assistant" else content)
    return "\n\n".join(parts) + "\nAnswer:"


class ChatHandler(BaseHTTPRequestHandler):
    server_version = "promptc-serve"
    backend: HFBackend
    lock: threading.Lock
    model_name: str = "local"

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        return

    def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [{"id": self.model_name, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": "not found"}})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length).decode("utf-8"))
            self._send(200, self.complete(body))
        except (ValueError, KeyError, TypeError) as e:
            self._send(400, {"error": {"message": f"bad request: {e}"}})

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        grammar = None
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            from llguidance import LLMatcher

            schema = dict(rf["json_schema"]["schema"])
            schema["x-guidance"] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
            grammar = LLMatcher.grammar_from_json_schema(schema)
        b = self.backend
        dec = Decoding(max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 256),
                       temperature=float(body.get("temperature") or 0.0), top_p=float(body.get("top_p") or 1.0),
                       seed=int(body.get("seed") or 0), constrained=grammar is not None)
        with self.lock:  # one generation at a time: the model is not thread-safe
            templated = bool(getattr(b.tokenizer, "chat_template", None))
            prompt = b.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) \
                if templated else messages_to_prompt(messages)
            (g,) = b.generate_text([prompt], [grammar], dec, templated=templated)
        if g.error:
            raise ValueError(g.error)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model_name),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": g.text}}],
            "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                      "total_tokens": g.prompt_tokens + g.completion_tokens},
        }


def make_server(backend: HFBackend, host: str = "127.0.0.1", port: int = 0,
                handler: type[ChatHandler] = ChatHandler) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0 picks a free one); call serve_forever() to run it."""
    _ = backend.model  # load before serving: handler threads must not race to import transformers
    cls = type("BoundChatHandler", (handler,), {"backend": backend, "lock": threading.Lock(),
                                                "model_name": backend.spec})
    server = ThreadingHTTPServer((host, port), cls)
    server.daemon_threads = True
    return server
