"""Which examples validate a run, and whether they can choose anything.

Measured on a balanced 48-review, 3-label sentiment program (docs/tuning.md): a 10% validation split is
4-5 examples, so its accuracy moves in steps of 20-25 points and reads 0.40-0.50 for any model; early
stopping on it kept step 12-24 while the training loss was already 0.03, and the gate then passed or
failed by seed. So by default (`val_split` unset) a split is held out only when it has at least
MIN_PER_LABEL examples of every label (classifier) or MIN_VAL examples (causal LM); smaller data trains
on all of it for the full schedule and keeps the final weights. An explicit split that is too small
still runs, with a warning that gives the numbers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from promptc.targets.tune.data import Dataset, Item, split
from promptc.targets.tune.options import TuneOptions

MIN_PER_LABEL = 5
MIN_VAL = 10
AUTO_SHARE = 0.1


@dataclass
class Validation:
    """How a run is validated: the held-out items, and what the manifest and the user are told."""

    share: float
    size: int
    per_label: dict[str, int]
    reason: str
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"share": self.share, "size": self.size, "per_label": self.per_label, "reason": self.reason}


def _per_label(items: list[Item], labels: list[str]) -> dict[str, int]:
    c = Counter(it.target for it in items)
    return {lb: c.get(lb, 0) for lb in labels}


def _too_small(val: list[Item], labels: list[str]) -> bool:
    if labels:
        return min(_per_label(val, labels).values(), default=0) < MIN_PER_LABEL
    return len(val) < MIN_VAL


def plan(data: Dataset, o: TuneOptions) -> tuple[Dataset, Validation]:
    """Split `data` (all of it in `data.train`) into train and validation as `o.val_split` says."""
    items = data.train + data.val
    labels = data.labels
    if o.val_split is None:
        train, val = split(items, AUTO_SHARE, o.seed)
        if _too_small(val, labels):
            need = (f"{MIN_PER_LABEL} per label" if labels else f"{MIN_VAL} examples")
            got = _describe(val, labels)
            v = Validation(0.0, 0, {}, f"auto: {AUTO_SHARE:g} of {len(items)} examples would hold out {got}, "
                           f"fewer than {need}; trained on all examples with the full schedule")
            return _with(data, items, []), v
        return _with(data, train, val), Validation(AUTO_SHARE, len(val), _per_label(val, labels),
                                                   f"auto: {AUTO_SHARE:g} holds out {_describe(val, labels)}")
    if o.val_split == 0:
        return _with(data, items, []), Validation(0.0, 0, {}, "val_split = 0: trained on all examples")
    train, val = split(items, o.val_split, o.seed)
    v = Validation(o.val_split, len(val), _per_label(val, labels), f"val_split = {o.val_split:g}")
    if val and _too_small(val, labels):
        step = 100 / len(val)
        v.warning = (f"the validation split holds {_describe(val, labels)}: its accuracy moves in steps of "
                     f"{step:.0f} points, too coarse to choose a checkpoint or stop early (want at least "
                     f"{MIN_PER_LABEL} per label); leave val_split unset to train on all {len(items)} "
                     "examples, or use `promptc tune --search N`, which cross-validates")
    return _with(data, train, val), v


def _describe(val: list[Item], labels: list[str]) -> str:
    if not labels:
        return f"{len(val)} example{'s' if len(val) != 1 else ''}"
    per = _per_label(val, labels)
    return f"{len(val)} examples ({', '.join(f'{n} {lb}' for lb, n in per.items())})"


def _with(data: Dataset, train: list[Item], val: list[Item]) -> Dataset:
    from dataclasses import replace

    return replace(data, train=train, val=val)


def folds(items: list[Item], k: int, seed: int) -> list[tuple[list[Item], list[Item]]]:
    """k (train, held-out) folds, stratified by label for a classifier: each item is held out once."""
    import hashlib
    import json

    def key(it: Item) -> str:
        return hashlib.sha256(f"{seed}\0{json.dumps([it.input, it.output], sort_keys=True)}".encode()).hexdigest()

    by_label: dict[str, list[Item]] = {}
    for it in sorted(items, key=key):
        by_label.setdefault(it.target if it.label >= 0 else "", []).append(it)
    assignment: list[list[Item]] = [[] for _ in range(k)]
    i = 0
    for group in by_label.values():
        for it in group:
            assignment[i % k].append(it)
            i += 1
    return [([x for j, f in enumerate(assignment) if j != n for x in f], held) for n, held in enumerate(assignment)]
