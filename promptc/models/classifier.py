"""A tuned encoder behind the backend protocol: the 'generation' is the predicted output, decoded from its
heads (promptc/heads.py): the enum member for a plain classifier, the record's JSON otherwise. The
task's constraints are kept at prediction time: the most probable output that satisfies them wins."""

from __future__ import annotations

import json
import time
from typing import Any

from promptc import ir
from promptc.models.base import Decoding, Generation, Request


class ClassifierBackend:
    """A tuned encoder with one head per output field behind the backend protocol."""

    def __init__(self, model, tokenizer, heads: Any, identity: str, max_length: int, virtual: int,
                 constraints: tuple[ir.Constraint, ...] = ()):
        self.model, self.tokenizer, self.heads = model, tokenizer, heads
        self.labels = heads.labels
        self._identity, self.max_length, self.virtual = identity, max_length, virtual
        self.constraints = constraints
        self.spec = identity

    def identity(self) -> str:
        return self._identity

    def request_key(self, request: Request, decoding: Decoding) -> Any:
        if self.constraints and request.inputs is not None:  # constraints read the inputs themselves
            return [request.prompt, json.dumps(request.inputs, sort_keys=True, ensure_ascii=False, default=str)]
        return request.prompt

    def logits(self, texts: list[str], inputs: list[dict[str, Any] | None] | None = None
               ) -> tuple[list[list[float]], list[int], list[dict[str, list[tuple[float, Any]]]]]:
        """Every head's logits (one row per text), each text's token count, and each span head's candidate
        spans per text (copied exactly from its source field: `inputs` say where that lies in the text)."""
        import torch

        spans = bool(self.heads.spans)
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_offsets_mapping=spans)
        dev = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev))
        logits, span_logits = out if isinstance(out, tuple) else (out, None)
        rows = logits.float().cpu().tolist()
        cands: list[dict[str, list[tuple[float, Any]]]] = [{} for _ in texts]
        if span_logits is not None:
            from promptc.heads import layout, span_candidates

            sl = span_logits.float().cpu().tolist()
            offsets = enc["offset_mapping"].tolist()
            for i, text in enumerate(texts):
                given = inputs[i] if inputs else None
                where = layout(given)[1] if given is not None else {}
                for j, h in enumerate(self.heads.spans):
                    rng = where.get(h.source, (0, len(text)) if not where else None)
                    cands[i][h.field] = span_candidates([t[2 * j] for t in sl[i]], [t[2 * j + 1] for t in sl[i]],
                                                        [tuple(o) for o in offsets[i]], text, rng, h.nullable,
                                                        h.number)
        return rows, [int(n) for n in enc["attention_mask"].sum(1).tolist()], cands

    def generate(self, requests: list[Request], decoding: Decoding, sample: int = 0) -> list[Generation]:
        out: list[Generation] = []
        for i in range(0, len(requests), 32):
            chunk = requests[i:i + 32]
            t0 = time.perf_counter()
            rows, lengths, spans = self.logits([r.prompt for r in chunk], [r.inputs for r in chunk])
            texts = [self.heads.predict_text(row, r.inputs, self.constraints, sp)
                     for row, r, sp in zip(rows, chunk, spans)]
            secs = (time.perf_counter() - t0) / len(chunk)
            out.extend(Generation(t, n + self.virtual, 1, secs, finish_reason="stop") for t, n in zip(texts, lengths))
        return out
