"""A tuned encoder classifier behind the backend protocol: the 'generation' is the predicted label."""

from __future__ import annotations

import time
from typing import Any

from promptc.models.base import Decoding, Generation, Request


class ClassifierBackend:
    """A tuned encoder classifier behind the backend protocol: the 'generation' is the label."""

    def __init__(self, model, tokenizer, labels: list[str], identity: str, max_length: int, virtual: int):
        self.model, self.tokenizer, self.labels = model, tokenizer, labels
        self._identity, self.max_length, self.virtual = identity, max_length, virtual
        self.spec = identity

    def identity(self) -> str:
        return self._identity

    def request_key(self, request: Request, decoding: Decoding) -> Any:
        return request.prompt

    def generate(self, requests: list[Request], decoding: Decoding, sample: int = 0) -> list[Generation]:
        import torch

        out: list[Generation] = []
        for i in range(0, len(requests), 32):
            chunk = requests[i:i + 32]
            t0 = time.perf_counter()
            enc = self.tokenizer([r.prompt for r in chunk], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            dev = next(self.model.parameters()).device
            with torch.no_grad():
                pred = self.model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev)).argmax(-1).tolist()
            secs = (time.perf_counter() - t0) / len(chunk)
            lengths = enc["attention_mask"].sum(1).tolist()
            out.extend(Generation(self.labels[p], int(n) + self.virtual, 1, secs, finish_reason="stop")
                       for p, n in zip(pred, lengths))
        return out
