"""The trainable networks of the encoder-classifier family, as torch modules (so accelerate can place
them on a device and wrap them for data-parallel training). Imported only by the training and loading
paths: this module imports torch at the top."""

from __future__ import annotations

import torch


class MeanPoolClassifier(torch.nn.Module):
    """An encoder (with its peft adapter) whose token states are mean-pooled over the real tokens and
    classified by a linear head: the pooling all-MiniLM-L6-v2 was trained with."""

    def __init__(self, encoder, hidden: int, num_labels: int, virtual: int, spans: int = 0):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(hidden, num_labels)
        self.virtual = virtual  # leading positions that are soft-prompt tokens, not input tokens
        # span heads (fields copied from the input): a start and an end logit per token for each
        self.span = torch.nn.Linear(hidden, 2 * spans) if spans else None

    def forward(self, input_ids, attention_mask):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        states = out.last_hidden_state[:, -input_ids.shape[1]:, :]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        # the head stays float32 when the base runs in half precision
        logits = self.head(pooled.to(self.head.weight.dtype))
        if self.span is None:
            return logits
        return logits, self.span(states.to(self.span.weight.dtype))


class SeqClsClassifier(torch.nn.Module):
    """AutoModelForSequenceClassification with a SEQ_CLS peft adapter (CLS pooling)."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).logits


def heads_loss(logits, targets, heads, violations=None, weight: float = 0.0, constrained: list[str] | None = None,
               span_logits=None, span_targets=None, span_mask=None):
    """Summed loss over the batch of an encoder with several heads (promptc/heads.py), and how many
    outputs were exactly right (every head's argmax, every multi-label member on the right side of 0).

    single heads: cross-entropy; multi heads: binary cross-entropy per member. With `violations` (per item,
    1.0 for each combination of the `constrained` heads' values that breaks a constraint, row-major in head
    order) and `weight` > 0, the probability mass the heads put on breaking combinations is added: the
    constraint-enforcing loss."""
    import torch.nn.functional as F

    total = logits.new_zeros(())
    correct = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
    probs = {}
    for h in heads.heads:
        z, t = logits[:, h.start:h.end], targets[:, h.start:h.end]
        if h.kind == "single":
            idx = t.argmax(-1)
            total = total + F.cross_entropy(z, idx, reduction="sum")
            correct &= z.argmax(-1) == idx
            probs[h.field] = z.softmax(-1)
        else:
            total = total + F.binary_cross_entropy_with_logits(z, t, reduction="sum")
            correct &= ((z > 0).to(t.dtype) == t).all(-1)
    if span_logits is not None:  # [B, T, 2S]; targets [B, S, 2] token positions (-100: not in the window)
        neg = torch.finfo(span_logits.dtype).min
        for j in range(span_targets.shape[1]):
            for k in (0, 1):
                z = span_logits[:, :, 2 * j + k].masked_fill(~span_mask[:, j, :], neg)
                t = span_targets[:, j, k]
                if bool((t != -100).any()):
                    total = total + F.cross_entropy(z, t, ignore_index=-100, reduction="sum")
                correct &= (z.argmax(-1) == t) | (t == -100)
    if violations is not None and weight > 0 and constrained:
        joint = None
        for f in constrained:
            p = probs[f]
            joint = p if joint is None else (joint.unsqueeze(-1) * p.unsqueeze(1)).reshape(p.shape[0], -1)
        total = total + weight * (joint * violations).sum()
    return total, int(correct.sum()), int(logits.shape[0])


def token_span(offsets: list[list[int]], chars: tuple[int, int]) -> tuple[int, int]:
    """The first and last token covering the characters [a, b), or (-100, -100) when they are not all inside
    the window (truncated away)."""
    a, b = chars
    start = next((t for t, (x, y) in enumerate(offsets) if y > x and x <= a < y), -100)
    end = next((t for t, (x, y) in reversed(list(enumerate(offsets))) if y > x and x < b <= y), -100)
    return (start, end) if start != -100 and end != -100 and end >= start else (-100, -100)


def span_tensors(items, heads, offsets: list[list[list[int]]]):
    """Training targets of the span heads: [B, S, 2] token positions (0, the [CLS] position, for null;
    -100 where the value lies outside the window) and [B, S, T] the positions each head may choose (its
    source field's tokens, and 0 when the field is optional)."""
    n, s, width = len(items), len(heads.spans), len(offsets[0]) if offsets else 0
    targets = torch.full((n, s, 2), -100, dtype=torch.long)
    mask = torch.zeros((n, s, width), dtype=torch.bool)
    for i, it in enumerate(items):
        offs = offsets[i]
        for j, h in enumerate(heads.spans):
            rng = it.span_fields[j] if it.span_fields else None
            if rng:
                for t, (x, y) in enumerate(offs):
                    if y > x and x >= rng[0] and y <= rng[1]:
                        mask[i, j, t] = True
            if h.nullable or not bool(mask[i, j].any()):
                mask[i, j, 0] = True
            v = it.spans[j] if it.spans else None
            if v is None:
                targets[i, j] = torch.tensor([0, 0]) if h.nullable else torch.tensor([-100, -100])
            else:
                targets[i, j] = torch.tensor(token_span(offs, v))
    return targets, mask
