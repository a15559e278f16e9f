"""Run stage: render a task's prompts, call a backend through the cache, parse every output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptc.backends.base import Backend, Decoding, Generation, Request, generate
from promptc.outputs import Parsed, parse_output


@dataclass
class Result:
    """One input's outcome: the parsed output (or why there is none) and the call's usage."""

    input: dict[str, Any]
    parsed: Parsed
    generation: Generation

    @property
    def ok(self) -> bool:
        return self.parsed.ok

    @property
    def output(self) -> Any:
        return self.parsed.value

    @property
    def error(self) -> str | None:
        return self.generation.error or self.parsed.error


def text_requests(prompt, inputs: list[dict[str, Any]]) -> list[Request]:
    """Requests for a compiled TextPrompt: chat messages and the plain prompt, for any backend."""
    return [Request(prompt.render(i, "chat"), prompt.render(i, "plain"), prompt.task.output) for i in inputs]


def run_requests(backend: Backend, requests: list[Request], inputs: list[dict[str, Any]], decoding: Decoding,
                 cache=None, sample: int = 0) -> list[Result]:
    gens = generate(backend, requests, decoding, cache, sample)
    out = []
    for inp, req, g in zip(inputs, requests, gens):
        parsed = Parsed(False, error=f"model call failed: {g.error}", raw="") if g.error else \
            parse_output(req.output, g.text)
        out.append(Result(inp, parsed, g))
    return out


def open_cache(enabled: bool = True, path: str | None = None):
    if not enabled:
        return None
    from promptc.backends.cache import Cache

    return Cache(path)
