"""Render speed: 10,000 prompts through promptc against a hand-written jinja2 template of the same text.

Both render the triage program's chat target (2 shots) as plain text. The baseline is the same text
compiled once with a plain `jinja2.Environment()`; promptc also validates each input against the input
schema and renders in the sandbox. Target: ratio <= 1.3.
"""

from __future__ import annotations

import time
from pathlib import Path

import jinja2

import promptc

N = 10_000
ROOT = Path(__file__).resolve().parent.parent


def inputs(i: int) -> dict:
    return {"ticket": {"subject": f"Ticket {i}: cannot export", "body": f"Export #{i} fails with error {i % 7}."}}


def main() -> None:
    prog = promptc.load(ROOT / "programs" / "triage.prompt")
    task = prog.task("triage")
    tp = task.text_target("triage_chat")
    hand = jinja2.Environment().from_string(tp.plain_source())
    data = [inputs(i) for i in range(N)]
    assert task.render(data[0], target="triage_chat", format="plain") == hand.render(**data[0])

    def run_promptc():
        for d in data:
            task.render(d, target="triage_chat", format="plain")

    def run_hand():
        for d in data:
            hand.render(**d)

    def run_promptc_unchecked():
        for d in data:
            tp.render(d, "plain", validate_inputs=False)

    results = {}
    for name, fn in (("hand-written jinja2", run_hand), ("promptc render", run_promptc),
                     ("promptc render, no input validation", run_promptc_unchecked)):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        results[name] = best
        print(f"{name:38s} {best:6.3f} s  ({N / best:8.0f} renders/s)")
    ratio = results["promptc render"] / results["hand-written jinja2"]
    print(f"ratio promptc / hand-written: {ratio:.2f}x (target <= 1.30) -> {'OK' if ratio <= 1.3 else 'OVER'}")


if __name__ == "__main__":
    main()
