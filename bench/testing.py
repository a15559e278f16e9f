"""Test-suite speed: the full suite of programs/triage.prompt on tiny-causal, cold then warm (cached).

Measured two ways in one run: the `promptc test` command in fresh processes (what a user waits for),
and `run_suite` inside one process (the model already loaded). Target: warm at least 20x faster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["test", str(ROOT / "programs" / "triage.prompt"), "--target", "triage_chat", "--model", "tiny-causal"]


def cli(cache_dir: str) -> float:
    env = {**os.environ, "PROMPTC_CACHE_DIR": cache_dir}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "promptc", *ARGS], env=env, capture_output=True, check=False)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        cold = cli(d)
        warm = min(cli(d) for _ in range(3))
    print(f"promptc test (fresh process): cold {cold:6.2f} s, warm {warm:6.2f} s, ratio {cold / warm:5.1f}x")

    import promptc
    from promptc.execution import text_subject
    from promptc.models.cache import Cache
    from promptc.testing.suite import run_suite

    task = promptc.load(ROOT / "programs" / "triage.prompt").task("triage")
    subject = text_subject(task.program.ir, task.ir, "triage_chat", "tiny-causal")
    _ = subject.backend.model  # load the model first: this measures the suite, not the import of torch
    with tempfile.TemporaryDirectory() as d:
        cache = Cache(Path(d) / "cache.db")
        t0 = time.perf_counter()
        rep = run_suite(task.program.ir, task.ir, subject, cache=cache)
        cold = time.perf_counter() - t0
        warm = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            rep2 = run_suite(task.program.ir, task.ir, subject, cache=cache)
            warm = min(warm, time.perf_counter() - t0)
        assert rep2.cached == rep2.requests == rep.requests
    print(f"run_suite (one process):      cold {cold:6.2f} s, warm {warm:6.2f} s, ratio {cold / warm:5.1f}x "
          f"({rep.requests} requests; {rep.summary_line()})")
    print("target: warm >= 20x faster")


if __name__ == "__main__":
    main()
