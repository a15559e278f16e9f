"""Defects a new user hit in round 3, on the paths that need real models (tiny-causal on the CPU)."""

from __future__ import annotations

import pytest

import promptc
from promptc.errors import ArtifactError
from promptc.workflows.tune import tune
from tests.models.test_tune import METHODS, RECORD, program_with


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A tiny-causal LoRA artifact of RECORD's `pick` task (4 steps)."""
    out = tmp_path_factory.mktemp("art") / "a"
    prog = program_with(METHODS["lora"])
    tune(prog.ir, "t", out=out, gate=False)
    return out, prog


def test_a_stale_artifact_names_only_what_changed(tuned):
    out, prog = tuned
    text = RECORD + '\ntarget tune t for pick { method = "lora", r = 4, alpha = 8, base = "tiny-causal", ' \
                    'max_steps = 4, batch_size = 3, val_split = 0.0, patience = 0, max_new_tokens = 48 }\n'
    promptc.load_artifact(out, promptc.loads(text))  # unchanged: loads
    with pytest.raises(ArtifactError, match=r"\(what it depends on changed: its examples\)$"):
        promptc.load_artifact(out, promptc.loads(text.replace('"grass"', '"moss"')))
    with pytest.raises(ArtifactError, match=r"\(what it depends on changed: its prompt\)$"):
        promptc.load_artifact(out, promptc.loads(text.replace('"Pick for {{ word }}"', '"Choose for {{ word }}"')))
    with pytest.raises(ArtifactError, match=r"\(what it depends on changed: its input schema\)$"):
        promptc.load_artifact(out, promptc.loads(text.replace("word: str) -> Pick", "word: str [max_len=40]) -> Pick")))
