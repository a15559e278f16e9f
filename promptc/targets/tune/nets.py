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
