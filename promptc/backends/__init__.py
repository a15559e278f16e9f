"""Model backends: `hf:` (local transformers), `openai:` (Chat Completions over HTTP) and the built-in
`tiny-causal`. `load_backend(spec)` is the one way to get one."""

from __future__ import annotations

from typing import Any

from promptc.backends.base import Backend, Decoding, Generation, Request, generate

__all__ = ["Backend", "Decoding", "Generation", "Request", "generate", "load_backend"]


def load_backend(spec: str, **options: Any) -> Backend:
    """Resolve a model spec: `hf:<dir or hub id>`, `openai:<model>[@<base_url>]`, or `tiny-causal`."""
    from promptc.diagnostics import PromptcError

    if spec.startswith("openai:"):
        from promptc.backends.openai import OpenAIBackend

        return OpenAIBackend(spec, **options)
    if spec.startswith("hf:") or spec == "tiny-causal":
        from promptc.backends.hf import HFBackend

        return HFBackend(spec, **options)
    raise PromptcError([], f"unknown model spec '{spec}': use hf:<dir or hub id>, openai:<model>[@<base_url>] "
                           "or tiny-causal")
