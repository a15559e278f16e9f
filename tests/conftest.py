from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases"
PROGRAMS = ROOT / "programs"

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture
def programs_dir() -> Path:
    return PROGRAMS


# The test tree says which layer a test exercises: tests/core needs no torch (check, compile, render,
# HTTP, reports); tests/models runs real transformers and peft models; tests/slow is CI's separate step.
# A model test skips cleanly, with the reason, when the [tune] extra is not installed.
_HAS_MODELS = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "peft"))


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs the [tune] extra (torch, transformers, peft): pip install 'promptc[tune]'")
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "models" in parts or "slow" in parts:
            item.add_marker(pytest.mark.model)
        if "slow" in parts:
            item.add_marker(pytest.mark.slow)
        if not _HAS_MODELS and item.get_closest_marker("model") is not None:
            item.add_marker(skip)
