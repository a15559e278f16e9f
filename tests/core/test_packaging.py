"""The wheel holds every module of the source tree and the grammar (it once lacked promptc.tune)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_wheel_contains_every_module_and_the_grammar(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("promptc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    source = {str(p.relative_to(ROOT)) for p in (ROOT / "promptc").rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(source - names)
    assert missing == [], f"modules missing from the wheel: {missing}"
    assert "promptc/grammar/promptc.lark" in names
    assert "promptc/targets/tune/train.py" in names
