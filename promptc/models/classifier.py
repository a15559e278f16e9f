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

    def logits(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        """Every head's logits (one row per text) and each text's token count."""
        import torch

        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        dev = next(self.model.parameters()).device
        with torch.no_grad():
            rows = self.model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev)).float().cpu().tolist()
        return rows, [int(n) for n in enc["attention_mask"].sum(1).tolist()]

    def generate(self, requests: list[Request], decoding: Decoding, sample: int = 0) -> list[Generation]:
        out: list[Generation] = []
        for i in range(0, len(requests), 32):
            chunk = requests[i:i + 32]
            t0 = time.perf_counter()
            rows, lengths = self.logits([r.prompt for r in chunk])
            texts = [self.heads.predict_text(row, r.inputs, self.constraints) for row, r in zip(rows, chunk)]
            secs = (time.perf_counter() - t0) / len(chunk)
            out.extend(Generation(t, n + self.virtual, 1, secs, finish_reason="stop") for t, n in zip(texts, lengths))
        return out
