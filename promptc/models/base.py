"""The backend protocol: a batch of rendered requests in, outputs plus usage out.

Every model call in promptc goes through `generate`, which consults the generation cache first.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from promptc import ir


@dataclass(frozen=True)
class Decoding:
    """Decoding parameters. Greedy (temperature 0) unless a temperature is given."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    constrained: bool = True  # hf: schema-constrained decoding
    structured: bool = False  # openai: send response_format with the output JSON Schema
    # Caps for what an output type leaves unbounded under constrained decoding (target options of the
    # same names): characters of a `str` without max_len, items of a list without max_len.
    max_str_len: int = 2000
    max_items: int = 100
    # OpenAI's logit_bias as sorted (token id, bias) pairs: added to the logits before the grammar mask
    # (hf), sent as is (openai:)
    logit_bias: tuple[tuple[int, float], ...] = ()

    def key(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.logit_bias:  # absent from the key unless set: existing cache entries stay valid
            del d["logit_bias"]
        return d


@dataclass(frozen=True)
class Request:
    """One rendered prompt: chat messages, the same prompt as plain text, and the output type."""

    messages: list[dict[str, str]] = field(hash=False)
    prompt: str
    output: ir.Type
    # the task inputs the prompt was rendered from, where known: an encoder artifact keeps the task's
    # constraints at prediction time, and they read the inputs
    inputs: dict[str, Any] | None = field(default=None, hash=False, compare=False)


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached: bool = False
    error: str | None = None  # a failed call (after retries); the text is then empty
    # Why generation ended: "stop" (the model or the grammar ended the output), "length" (the
    # max_new_tokens budget ran out first, so the output may be cut off), "closed" (the budget ran low and
    # constrained decoding forced the shortest completion: the value is complete and valid, but the model
    # did not end it; OpenAI's API has no such value, so promptc serve reports it as "length"), or None
    # (unknown: a failed call, or a cache row written before finish reasons were recorded).
    finish_reason: str | None = None
    # The reply was not valid JSON and was repaired into it (the openai: backend's json-repair); the text
    # is the repaired one. Kept in the cache, counted apart in reports.
    repaired: bool = False


class Backend(Protocol):
    spec: str

    def identity(self) -> str:
        """What the cache keys on: the model and where it lives, never a credential."""

    def request_key(self, request: Request, decoding: Decoding) -> Any:
        """The part of a request that determines its output (e.g. the final prompt string)."""

    def generate(self, requests: list[Request], decoding: Decoding, sample: int = 0) -> list[Generation]:
        ...


def generate(backend: Backend, requests: list[Request], decoding: Decoding, cache=None,
             sample: int = 0) -> list[Generation]:
    """Generate for every request, in order, reading and filling the cache. Failed calls are not cached."""
    from promptc.models.cache import cache_key

    if not requests:
        return []
    ident = backend.identity()
    dkey = decoding.key()
    keys = [cache_key(ident, backend.request_key(r, decoding), dkey, sample) for r in requests]
    hits = cache.get_many(keys) if cache is not None else {}
    out: list[Generation | None] = [None] * len(requests)
    todo = []
    for i, k in enumerate(keys):
        if k in hits:
            text, pt, ct, sec, finish, repaired = hits[k]
            out[i] = Generation(text, pt, ct, sec, cached=True, finish_reason=finish, repaired=repaired)
        else:
            todo.append(i)
    if todo:
        t0 = time.perf_counter()
        fresh = backend.generate([requests[i] for i in todo], decoding, sample)
        elapsed = time.perf_counter() - t0
        new_items = []
        for i, g in zip(todo, fresh):
            if not g.seconds:
                g.seconds = elapsed / len(todo)
            out[i] = g
            if g.error is None:
                # the text cached is the repaired one, so the flag travels with the row
                new_items.append((keys[i], g.text, g.prompt_tokens, g.completion_tokens, g.seconds,
                                  g.finish_reason, g.repaired))
        if cache is not None:
            cache.put_many(new_items)
    return [g for g in out if g is not None]
