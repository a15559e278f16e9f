"""The one seeded split of examples: rank each by a seeded hash of its content and hold out the first
`share`. Content-hashed rather than shuffled, so adding an example moves no other example across the
split. The tune target's validation split and the optimiser's dev split both use it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def seeded_split(items: Sequence[T], share: float, seed: int,
                 content: Callable[[T], Any]) -> tuple[list[T], list[T]]:
    """(kept, held out): at least one held out when `share` > 0 and there are two or more items."""
    if share <= 0 or len(items) < 2:
        return list(items), []

    def rank(i: int) -> str:
        return hashlib.sha256(f"{seed}\0{json.dumps(content(items[i]), sort_keys=True)}".encode()).hexdigest()

    n_out = max(1, round(len(items) * share))
    held = set(sorted(range(len(items)), key=rank)[:n_out])
    return [x for i, x in enumerate(items) if i not in held], [items[i] for i in sorted(held)]
