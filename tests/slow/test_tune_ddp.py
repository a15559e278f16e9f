"""Data-parallel training: 2 CPU processes over gloo (`promptc tune --processes 2`) against 1 process
with the same global batch. Tolerance: every logged loss within 1e-4 relative (the gradients are the
same sums, added in another order), and the artifacts give identical outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import promptc
from tests.models.test_tune import RECORD

TARGET = ('\ntarget tune d for pick { method = "lora", r = 4, alpha = 8, base = "tiny-causal", max_steps = 12, '
          'batch_size = 6, eval_every = 4, val_split = 0.0, patience = 0, max_new_tokens = 48, lr = 0.01 }\n')


def _tune(tmp_path, name: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROMPTC_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "promptc", "tune", str(tmp_path / "p.prompt"), "--target", "d",
                           "--no-gate", "--device", "cpu", "-o", str(tmp_path / name), *extra], env=env,
                          capture_output=True, text=True, timeout=900)


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    (tmp_path / "p.prompt").write_text(RECORD + TARGET, encoding="utf-8")
    one = _tune(tmp_path, "one")
    assert one.returncode == 0, one.stderr
    two = _tune(tmp_path, "two", "--processes", "2")
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    m1 = json.loads((tmp_path / "one" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert (m1["resources"]["processes"], m2["resources"]["processes"]) == (1, 2)
    c1, c2 = m1["training"]["curve"], m2["training"]["curve"]
    assert [r["step"] for r in c1] == [r["step"] for r in c2] == [4, 8, 12]
    for a, b in zip(c1, c2):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    assert not list(tmp_path.glob("two.partial*"))
    prog = promptc.load(tmp_path / "p.prompt")
    inputs = [ex.input for ex in prog.ir.tasks["pick"].examples] + [{"word": "ruby"}]
    out1 = [r.output for r in promptc.load_artifact(tmp_path / "one", prog).run(inputs, cache=False)]
    out2 = [r.output for r in promptc.load_artifact(tmp_path / "two", prog).run(inputs, cache=False)]
    assert out1 == out2


def test_record_heads_on_minilm_two_processes_match_one(tmp_path):
    """The encoder family with a head per field (a record on MiniLM) under 2 processes: one artifact, the
    same heads and schedule, losses within dropout noise, valid outputs. The constraint loss is on, so its
    tables travel through the sharded batches too."""
    from tests.models.test_tune_records import write_program

    path = write_program(tmp_path, epochs=2)
    text = path.read_text().replace(
        'target tune heads for triage { base = "minilm", epochs = 2, lr = 0.004, constraint_weight = 1.0 }',
        'target tune d for triage { base = "minilm", max_steps = 6, batch_size = 6, eval_every = 3, patience = 0, '
        'lr = 0.004, constraint_weight = 1.0 }')
    (tmp_path / "p.prompt").write_text(text, encoding="utf-8")
    one = _tune(tmp_path, "one")
    assert one.returncode == 0, one.stderr
    two = _tune(tmp_path, "two", "--processes", "2")
    assert two.returncode == 0, two.stderr
    m1 = json.loads((tmp_path / "one" / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert m1["heads"] == m2["heads"] and len(m1["heads"]) == 6
    # MiniLM keeps BERT's dropout (0.1) while training, and each rank draws its own masks for its half of
    # the batch, so the runs agree to within dropout noise, not to float order as the dropout-free
    # tiny-causal run above does
    c1, c2 = m1["training"]["curve"], m2["training"]["curve"]
    assert [r["step"] for r in c1] == [r["step"] for r in c2] == [3, 6]
    for a, b in zip(c1, c2):
        assert b["loss"] == pytest.approx(a["loss"], rel=0.05)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=0.05)
    prog = promptc.load(tmp_path / "p.prompt")
    inputs = [{"text": t} for t in ("refund my card", "the app crashes right now, we are blocked", "hello")]
    for art in ("one", "two"):
        outs = promptc.load_artifact(tmp_path / art, prog).run(inputs, cache=False)
        assert all(o.ok for o in outs) and outs[0].output["tag"] == "billing"  # the refund constraint holds
