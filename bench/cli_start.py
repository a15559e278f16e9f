"""CLI start-up: wall time of `promptc check|compile|render` on a 20-line program in a fresh process,
against `python -c "import lark"` measured in the same run (the floor: promptc cannot parse without lark).

Target (issue 10): each command within 1.5x the lark baseline. Nothing may import torch, transformers,
peft or hypothesis on these paths (tests/core/test_cli.py checks the imports; this checks the time).

    python bench/cli_start.py [--runs N]

Every process runs from bytecode, as from an installed wheel (pip compiles .pyc files at install time): a
shell with PYTHONDONTWRITEBYTECODE=1 and an editable install would otherwise compile promptc's modules from
source on every start while lark's come precompiled. A second baseline, `import lark, jinja2`, is the floor
for `check`, which must parse the program (lark) and its templates (jinja2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = '''program start "1.0"

enum Tag { billing, bug, account, other }

type Ticket {
  subject: str [max_len=120]
  body: str [min_len=1, max_len=2000]
}

task triage(ticket: Ticket) -> Tag {
  system "You are the support triage assistant."
  prompt """
  Classify the ticket.
  Subject: {{ ticket.subject }}
  Body: {{ ticket.body }}
  """
  constraint refunds "refund requests are billing": output == billing when ticket.body matches /refund/i
}

target text triage_text for triage { format = "chat", shots = 0 }
'''


def timed(cmd: list[str], runs: int, cwd: str, env: dict[str, str]) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
        out.append(time.perf_counter() - t0)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        Path(d, "start.prompt").write_text(PROGRAM)
        py = sys.executable
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(d, "pyc"))  # bytecode for every module, written by the warm-up
        cases = {
            "baseline: python -c 'import lark'": [py, "-c", "import lark"],
            "floor: python -c 'import lark, jinja2'": [py, "-c", "import lark, jinja2"],
            "promptc check": [py, "-m", "promptc", "check", "start.prompt"],
            "promptc compile": [py, "-m", "promptc", "compile", "start.prompt", "--target", "triage_text",
                                "-o", "out"],
            "promptc render": [py, "-m", "promptc", "render", "start.prompt", "--target", "triage_text",
                               "--input", '{"ticket": {"subject": "a", "body": "b"}}'],
        }
        for cmd in cases.values():  # warm the OS file cache, the bytecode and lark's grammar cache
            timed(cmd, 2, d, env)
        results = {name: statistics.median(timed(cmd, args.runs, d, env)) for name, cmd in cases.items()}
    base = results["baseline: python -c 'import lark'"]
    print(f"CLI start-up, median of {args.runs} fresh processes (load average {load:.2f}"
          f"{'; HIGH: numbers are noisy' if load > 1.0 else ''})")
    for name, secs in results.items():
        print(f"  {name:40s} {secs * 1000:7.1f} ms   {secs / base:4.2f}x baseline")
    worst = max(v / base for k, v in results.items() if k.startswith("promptc"))
    floor = results["floor: python -c 'import lark, jinja2'"]
    print(f"worst ratio {worst:.2f}x (target <= 1.5x): {'ok' if worst <= 1.5 else 'OVER TARGET'}; "
          f"against the lark + jinja2 floor: {max(v for k, v in results.items() if k.startswith('promptc')) / floor:.2f}x")


if __name__ == "__main__":
    main()
