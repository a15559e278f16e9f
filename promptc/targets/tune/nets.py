"""The trainable networks of the encoder-classifier family, as torch modules (so accelerate can place
them on a device and wrap them for data-parallel training). Imported only by the training and loading
paths: this module imports torch at the top."""

from __future__ import annotations

import torch


class MeanPoolClassifier(torch.nn.Module):
    """An encoder (with its peft adapter) whose token states are mean-pooled over the real tokens and
    classified by a linear head: the pooling all-MiniLM-L6-v2 was trained with."""

    def __init__(self, encoder, hidden: int, num_labels: int, virtual: int):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(hidden, num_labels)
        self.virtual = virtual  # leading positions that are soft-prompt tokens, not input tokens

    def forward(self, input_ids, attention_mask):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        states = out.last_hidden_state[:, -input_ids.shape[1]:, :]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        # the head stays float32 when the base runs in half precision
        return self.head(pooled.to(self.head.weight.dtype))


class SeqClsClassifier(torch.nn.Module):
    """AutoModelForSequenceClassification with a SEQ_CLS peft adapter (CLS pooling)."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).logits


def heads_loss(logits, targets, heads, violations=None, weight: float = 0.0, constrained: list[str] | None = None):
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
    if violations is not None and weight > 0 and constrained:
        joint = None
        for f in constrained:
            p = probs[f]
            joint = p if joint is None else (joint.unsqueeze(-1) * p.unsqueeze(1)).reshape(p.shape[0], -1)
        total = total + weight * (joint * violations).sum()
    return total, int(correct.sum()), int(logits.shape[0])
