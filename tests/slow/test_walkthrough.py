"""The docs' walkthrough, run end to end (slow: CI runs it in its own step)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_walkthrough_script_runs_end_to_end():
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "walkthrough.sh")], capture_output=True, text=True,
                       env=env, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "distilled training examples recorded in the manifest:" in out
    assert "status passed; prompt_tuning on minilm" in out
    assert out.strip().endswith("walkthrough: ok")
