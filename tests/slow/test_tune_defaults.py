"""Defaults that pass on small, ordinary data: the balanced 48-review, 3-label sentiment program in
tests/cases/sentiment with only `base = "minilm"` set passes its own gate for at least 4 of seeds 0-4,
and its accuracy on 30 held-out reviews in new wording stays high (docs/tuning.md has the numbers)."""

from __future__ import annotations

import json

import pytest

import promptc
from promptc.workflows.tune import tune
from tests.conftest import CASES

SENTIMENT = CASES / "sentiment"


@pytest.mark.xfail(strict=True, reason="measured (docs/tuning.md): the defaults pass the gate for seed 0 only; every "
                   "failure is the 'logistics' case read as negative. LoRA on every linear layer passes 4 of 5 "
                   "but drops to 83% on new wording for one seed, so no default meets both yet")
def test_sentiment_defaults_pass_their_gate_for_most_seeds(tmp_path):
    prog = promptc.load(SENTIMENT / "sentiment.prompt")
    held = [json.loads(line) for line in (SENTIMENT / "heldout.jsonl").read_text().splitlines()]
    passed, accuracy = 0, []
    for seed in range(5):
        res = tune(prog.ir, "sentiment_default", out=tmp_path / str(seed), seed=seed)
        assert res.manifest["method"] == "lora" and res.manifest["data"]["val"] == 0  # small data: all trains
        passed += res.manifest["status"] == "passed"
        outs = promptc.load_artifact(tmp_path / str(seed), prog).run([h["input"] for h in held], cache=False)
        accuracy.append(sum(o.output == h["output"] for o, h in zip(outs, held)) / len(held))
    assert passed >= 4, (passed, accuracy)
    assert min(accuracy) >= 0.9, accuracy
