"""Model backends: `hf:` (local transformers), `openai:` (Chat Completions over HTTP) and the built-in
`tiny-causal`. `load_backend(spec)` is the one way to get one. Nothing here imports a target."""

from __future__ import annotations

from typing import Any

from promptc.models.base import Backend, Decoding, Generation, Request, generate
from promptc.models.loading import ModelSpec, parse_model_spec

__all__ = ["Backend", "Decoding", "Generation", "ModelSpec", "Request", "generate", "load_backend",
           "parse_model_spec"]


def load_backend(spec: str, *, batch_size: int | None = None, **options: Any) -> Backend:
    """Resolve a model spec: `hf:<dir or hub id>`, `openai:<model>[@<base_url>]`, or `tiny-causal`.
    `batch_size` applies to local models and is ignored by HTTP ones."""
    parsed = parse_model_spec(spec)
    if parsed.backend == "openai":
        from promptc.models.openai import OpenAIBackend

        return OpenAIBackend(spec, **options)
    from promptc.models.hf import HFBackend

    if batch_size is not None:
        options["batch_size"] = batch_size
    return HFBackend(spec, **options)
