"""compare's price lookup: a subject's model spec is read by parse_model_spec, so a base URL after `@` is
not part of the name and a name that holds `@` (name@version) keeps it."""

from __future__ import annotations

import pytest

from promptc.testing.compare import price_for

PRICES = {"gpt-4o": {"input": 2.5, "output": 10.0}, "team@1.0.0": {"input": 1.0, "output": 2.0},
          "tiny-causal": {"input": 0.1, "output": 0.1}, "hf:./base": {"input": 0.2, "output": 0.2},
          "team": {"input": 99.0, "output": 99.0}}


@pytest.mark.parametrize("model, entry", [
    ("openai:gpt-4o", "gpt-4o"),
    ("openai:gpt-4o@http://127.0.0.1:8000/v1", "gpt-4o"),
    ("openai:gpt-4o@https://api.example.com/v1", "gpt-4o"),
    # a served name@version is the model's name: priced as itself, never as the part before the `@`
    ("openai:team@1.0.0", "team@1.0.0"),
    ("openai:team@1.0.0@http://127.0.0.1:8000/v1", "team@1.0.0"),
    ("tiny-causal", "tiny-causal"),
    ("hf:./base", "hf:./base"),
])
def test_price_for_reads_the_spec(model, entry):
    assert price_for(PRICES, model) == PRICES[entry]


@pytest.mark.parametrize("model", [None, "", "openai:other@http://h/v1", "hf:./elsewhere", "my label@x"])
def test_price_for_unknown_or_unpriced_is_none(model):
    assert price_for(PRICES, model) is None
