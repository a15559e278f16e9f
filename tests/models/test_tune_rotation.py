"""Checkpoint rotation is crash-safe at every step: a kill there (simulated by an exception that nothing
catches, and once by a real SIGKILL) leaves a state that `--resume` finishes bit-identically."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from promptc.targets.tune import state as st
from promptc.workflows.tune import tune
from tests.models.test_tune import METHODS, program_with

ADAPTER = "adapter/adapter_model.safetensors"


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in promptc catches it, so no clean-up code runs."""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(tag: str):
    def write(tmp: Path) -> None:
        (tmp / "trainer.json").write_text(tag, encoding="utf-8")
        (tmp / "weights.safetensors").write_bytes(tag.encode() * 100)

    return write


@pytest.mark.parametrize("step", st.ROTATION_STEPS)
def test_a_kill_at_any_rotation_step_leaves_a_complete_checkpoint(step, tmp_path):
    d = tmp_path / "checkpoint"
    st.rotate(d, _write("one"))

    def fault(at: str) -> None:
        if at == step:
            raise Killed(at)

    with pytest.raises(Killed):
        st.rotate(d, _write("two"), fault)
    assert st.recover(d) == d
    tag = (d / "trainer.json").read_text(encoding="utf-8")
    # before the new checkpoint is complete and in place the old one stands; after, the new one
    assert tag == ("one" if step == "written" else "two")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no leftover blocks the next one
    st.rotate(d, _write("three"))
    assert (d / "trainer.json").read_text(encoding="utf-8") == "three"


def test_recover_handles_the_old_bug_state(tmp_path):
    """A kill inside clean-up once left `checkpoint.old` behind and every later resume failed with
    `OSError: Directory not empty`."""
    d = tmp_path / "checkpoint"
    st.rotate(d, _write("one"))
    old = tmp_path / "checkpoint.old"
    old.mkdir()
    (old / "weights.safetensors").write_bytes(b"half deleted")
    st.rotate(d, _write("two"))
    assert (d / "trainer.json").read_text(encoding="utf-8") == "two" and not old.exists()


def test_recover_with_nothing_complete_starts_afresh(tmp_path):
    d = tmp_path / "checkpoint"
    (tmp_path / "checkpoint.tmp").mkdir()
    (tmp_path / "checkpoint.tmp" / "weights.safetensors").write_bytes(b"partial")
    assert st.recover(d) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("step", st.ROTATION_STEPS)
def test_training_killed_inside_a_rotation_resumes_bit_identical(step, tmp_path):
    prog = program_with(METHODS["lora"], extra=", eval_every = 2")
    over = {"max_steps": 8}
    full = tune(prog.ir, "t", out=tmp_path / "full", gate=False, overrides=over)
    saves = {"n": 0}

    def fault(at: str) -> None:
        if at == "written":
            saves["n"] += 1
        if at == step and saves["n"] == 2:  # inside the second rotation (step 4), with one before it
            raise Killed(at)

    with pytest.raises(Killed):
        tune(prog.ir, "t", out=tmp_path / "r", gate=False, overrides=over, fault=fault)
    resumed = tune(prog.ir, "t", out=tmp_path / "r", gate=False, resume=True, overrides=over)
    assert sha(resumed.directory / ADAPTER) == sha(full.directory / ADAPTER)
    assert resumed.manifest["training"]["curve"] == full.manifest["training"]["curve"]
    assert not (tmp_path / "r.partial").exists()


def test_sigkill_during_checkpoint_clean_up_resumes(tmp_path):
    """A real SIGKILL in the middle of deleting the previous checkpoint, then `promptc tune --resume`."""
    import promptc
    from tests.models.test_tune import RECORD

    prog_file = tmp_path / "p.prompt"
    text = RECORD + '\ntarget tune t for pick { method = "lora", r = 4, alpha = 8, base = "tiny-causal", max_steps = 8, ' \
                    'batch_size = 3, val_split = 0.0, patience = 0, max_new_tokens = 48, eval_every = 2 }\n'
    prog_file.write_text(text, encoding="utf-8")
    full = tune(promptc.load(prog_file).ir, "t", out=tmp_path / "full", gate=False)
    script = textwrap.dedent(f"""
        import os, signal
        import promptc
        from promptc.workflows.tune import tune
        prog = promptc.load({str(prog_file)!r})
        seen = {{"n": 0}}
        def fault(at):
            seen["n"] += at == "written"
            if at == "trash_partly_removed" and seen["n"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        tune(prog.ir, "t", out={str(tmp_path / "k")!r}, gate=False, fault=fault)
    """)
    env = {**os.environ, "PROMPTC_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr
    assert (tmp_path / "k.partial" / "checkpoint.trash").is_dir()  # the state that used to break resume
    res = subprocess.run([sys.executable, "-m", "promptc", "tune", str(prog_file), "--target", "t", "--no-gate",
                          "-o", str(tmp_path / "k"), "--resume"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert sha(tmp_path / "k" / ADAPTER) == sha(full.directory / ADAPTER)
