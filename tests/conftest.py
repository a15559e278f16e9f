from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "programs"

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture
def programs_dir() -> Path:
    return PROGRAMS
