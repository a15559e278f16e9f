"""`promptc distill`: run a text target on a teacher model over unlabelled inputs and keep only the
outputs that validate and pass every task constraint, as training data with provenance per line."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc import ir, jsonl


@dataclass
class DistillResult:
    kept: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    excluded_tests: int
    path: Path
    rejected_path: Path


def prompt_hash(prompt) -> str:
    """The identity of the compiled text prompt the teacher answered (the hash of its prompt.jinja)."""
    return hashlib.sha256(prompt.artifact_template().encode("utf-8")).hexdigest()


def generate_inputs(task: ir.Task, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """N distinct inputs drawn from the task's input schema, deterministically for a seed."""
    import random

    from hypothesis import HealthCheck, Phase, given, settings

    from promptc.schema import strategy

    drawn: list[dict[str, Any]] = []
    seen: set[str] = set()

    @settings(max_examples=max(1, n * 3), derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy(task.input_type))
    def collect(x):
        k = json.dumps(x, sort_keys=True)
        if k not in seen:
            seen.add(k)
            drawn.append(x)

    collect()
    if seed:
        random.Random(seed).shuffle(drawn)
    return drawn[:n]


def distill(program: ir.Program, task_name: str, target: str, teacher, *, inputs: list[dict[str, Any]], out: str | Path,
            cache=None, decoding=None) -> DistillResult:
    """Label `inputs` with the teacher; write DATA.jsonl (kept) and DATA.rejected.jsonl (why not)."""
    from promptc.errors import ModelError
    from promptc.execution import every_call_failed, preflight, run_requests, text_requests
    from promptc.models import Decoding
    from promptc.targets.text.prompt import text_prompt
    from promptc.testing.suite import judge

    task = program.task(task_name)
    prompt = text_prompt(program, task.name, target)
    todo = program.without_test_inputs(task.name, inputs, lambda i: i)
    excluded = len(inputs) - len(todo)
    dec = decoding or Decoding(max_new_tokens=prompt.options.get("max_new_tokens", 256))
    preflight(teacher)  # nothing answering is an error before any request, not N rejected lines
    results = run_requests(teacher, text_requests(prompt, todo), todo, dec, cache)
    spec = getattr(teacher, "spec", type(teacher).__name__)
    phash = prompt_hash(prompt)
    kept, rejected = [], []
    for inp, r in zip(todo, results):
        sample = judge(task, inp, r, (), "check")
        if sample.passed:
            kept.append({"input": inp, "output": sample.output, "provenance": {
                "source": "promptc distill", "teacher": spec, "target": target, "prompt_hash": phash,
                "program_hash": program.hash, "task_hash": task.hash,
                "verdicts": {c.name if c.kind == "constraint" else c.kind: c.passed for c in sample.checks}}})
        else:
            rejected.append({"input": inp, "raw": r.parsed.raw, "output": sample.output,
                             "reasons": [f"{c.kind} {c.name}: {'; '.join(c.details)}".strip()
                                         for c in sample.failed_checks()],
                             "teacher": spec, "prompt_hash": phash})
    path = Path(out)
    rej = path.with_name(path.stem + ".rejected.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    for p, rows in ((path, kept), (rej, rejected)):
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text("".join(jsonl.line(row) for row in rows), encoding="utf-8")
        tmp.replace(p)
    failed = every_call_failed(results)
    if failed:  # the files are written (the reasons are in the rejected one), but no teacher labelled anything
        raise ModelError(f"the teacher {spec} answered no request: {failed}",
                         hint=f"check the model name and address in --teacher; the reasons are in {rej}")
    return DistillResult(kept, rejected, excluded, path, rej)
