"""`openai:<model>[@<base_url>]`: any server speaking the OpenAI Chat Completions API (vLLM,
llama.cpp server, Ollama, promptc serve, ...). Timeouts, retries with backoff on 429 and 5xx, and a
concurrency limit. The API key comes from the environment and never reaches a log or the cache."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from promptc import ir
from promptc.models.base import Decoding, Generation, Request
from promptc.models.loading import parse_model_spec
from promptc.schema import inline_refs, json_schema

DEFAULT_BASE = "https://api.openai.com/v1"


def response_format(t: ir.Type) -> dict[str, Any] | None:
    """`response_format` for structured outputs; record outputs only (the API wants an object root)."""
    if not isinstance(ir.strip_optional(t), ir.RecordT):  # strict json_schema needs an object at the root
        return None
    schema = inline_refs(json_schema(t))
    return {"type": "json_schema", "json_schema": {"name": "output", "strict": True, "schema": schema}}


class OpenAIBackend:
    def __init__(self, spec: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 retries: int = 4, backoff: float = 0.5, max_backoff: float = 30.0, concurrency: int = 4):
        parsed = parse_model_spec(spec)
        self.spec = spec
        self.model = parsed.name
        self.base_url = (parsed.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE).rstrip("/")
        self._key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = max(1, concurrency)
        self.attempts = 0  # HTTP calls made, for reports and tests

    def identity(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def request_key(self, request: Request, decoding: Decoding) -> Any:
        rf = response_format(request.output) if decoding.structured else None
        return {"messages": request.messages, "response_format": rf}

    def generate(self, requests: list[Request], decoding: Decoding, sample: int = 0) -> list[Generation]:
        if len(requests) == 1 or self.concurrency == 1:
            return [self._one(r, decoding, sample) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(lambda r: self._one(r, decoding, sample), requests))

    def _one(self, request: Request, decoding: Decoding, sample: int) -> Generation:
        body: dict[str, Any] = {"model": self.model, "messages": request.messages,
                                "max_tokens": decoding.max_new_tokens, "temperature": decoding.temperature}
        if decoding.temperature > 0:
            body["top_p"] = decoding.top_p
            body["seed"] = decoding.seed + sample
        else:
            body["seed"] = decoding.seed
        if decoding.structured:
            rf = response_format(request.output)
            if rf is not None:
                body["response_format"] = rf
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self._key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.base_url}/chat/completions"
        last = "no attempt"
        t0 = time.perf_counter()
        for attempt in range(self.retries + 1):
            self.attempts += 1
            wait = min(self.max_backoff, self.backoff * (2 ** attempt))
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                choice = payload["choices"][0]["message"]
                usage = payload.get("usage") or {}
                return Generation(choice.get("content") or "", int(usage.get("prompt_tokens") or 0),
                                  int(usage.get("completion_tokens") or 0), time.perf_counter() - t0)
            except urllib.error.HTTPError as e:
                status = e.code
                detail = e.read()[:300].decode("utf-8", "replace")
                last = f"HTTP {status} from {url}: {detail}"
                if status != 429 and not 500 <= status < 600:
                    return Generation("", error=last)
                retry_after = e.headers.get("Retry-After") if e.headers else None
                if retry_after:
                    try:
                        wait = min(self.max_backoff, float(retry_after))
                    except ValueError:
                        pass
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                last = f"{type(reason).__name__} calling {url}: {reason}"
            except (KeyError, IndexError, ValueError) as e:
                return Generation("", error=f"malformed response from {url}: {e}")
            if attempt < self.retries:
                time.sleep(wait)
        return Generation("", error=f"gave up after {self.retries + 1} attempts: {last}")
