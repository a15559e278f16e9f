"""promptc's encoder defaults against SetFit's defaults on the same base (the embedded MiniLM-L6) and the
same data, side by side in one run: held-out accuracy, the gate's pass rate over seeds, training seconds.

Cases: tests/cases/sentiment (48 reviews, 3 labels, 6 gate cases, 30 held-out reviews in new wording) and
programs/route.prompt (its examples, 5 gate cases, tests/cases/route_heldout.jsonl). Rows:
- `promptc seeds=1`: a tune target with only `base = "minilm"` (the defaults);
- `promptc seeds=N`: the same with `seeds = N` (N seeds scored by 3-fold cross-validation on the training
  data, the best trained on all of it);
- `promptc ensemble N`: measured only: the N seeds trained on all data, their probabilities averaged
  (not a product feature unless it wins);
- `setfit`: SetFit 1.2 defaults (contrastive pairs on the body, then a logistic-regression head), trained
  on the same examples (test inputs excluded, as promptc excludes them), judged by promptc's own gate: the
  same suite runs against a backend that answers SetFit's label.

SetFit is an optional dependency of this bench only (`pip install ".[bench]"`); without it its rows are skipped.
Usage: python bench/encoder.py [--seeds 5] [--cases sentiment,route] [--n 3] [--skip-setfit] [--skip-select]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import promptc
from promptc.execution import Subject, make_decoding
from promptc.models.base import Generation
from promptc.targets.text.prompt import compile_text_target
from promptc.targets.tune.artifact import request_builder
from promptc.testing.suite import run_suite
from promptc.workflows.tune import tune

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "sentiment": (ROOT / "tests/cases/sentiment/sentiment.prompt", "sentiment", ROOT / "tests/cases/sentiment/heldout.jsonl"),
    "route": (ROOT / "programs/route.prompt", "route", ROOT / "tests/cases/route_heldout.jsonl"),
}


def program_copy(case: str, tmp: Path, extra: str) -> Path:
    """The case's program in `tmp` (with its data files) plus a `bench` tune target."""
    src, task, _ = CASES[case]
    dest = tmp / case
    shutil.copytree(src.parent, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.prompt", "out*"))
    text = src.read_text(encoding="utf-8")
    (dest / src.name).write_text(text + f'\ntarget tune bench for {task} {{ base = "minilm"{extra} }}\n', encoding="utf-8")
    return dest / src.name


class LabelBackend:
    """Answers precomputed labels per request prompt: how SetFit's and the ensemble's predictions meet
    promptc's gate (the test is about the gate's verdict, not a model)."""

    def __init__(self, name: str, predict):
        self.spec, self._name, self.predict = name, name, predict

    def identity(self) -> str:
        return self._name

    def request_key(self, request, decoding):
        return request.prompt

    def generate(self, requests, decoding, sample: int = 0):
        return [Generation(label, 0, 1, 0.0, finish_reason="stop") for label in self.predict([r.prompt for r in requests])]


def gate(prog, task_name: str, name: str, predict) -> bool:
    task = prog.ir.tasks[task_name]
    prompt = compile_text_target(prog.ir, task_name, {"delimit": False})
    subject = Subject("artifact", name, "minilm", LabelBackend(name, predict),
                      request_builder(task, "classifier", prompt), make_decoding(8))
    report = run_suite(prog.ir, task, subject, cache=None)
    return report.passed == len(report.results) - report.skipped


def heldout(case: str) -> list[dict]:
    return [json.loads(line) for line in CASES[case][2].read_text(encoding="utf-8").splitlines() if line.strip()]


def promptc_row(case: str, tmp: Path, seed: int, n: int) -> dict:
    path = program_copy(case, tmp, f", seeds = {n}" if n > 1 else "")
    prog = promptc.load(path)
    t0 = time.perf_counter()
    res = tune(prog.ir, "bench", out=tmp / f"{case}-{n}-{seed}", seed=seed, info=None, warn=None)
    secs = time.perf_counter() - t0
    held = heldout(case)
    outs = promptc.load_artifact(res.directory, prog).run([h["input"] for h in held], cache=False)
    acc = sum(o.output == h["output"] for o, h in zip(outs, held)) / len(held)
    return {"gate": res.manifest.status == "passed", "acc": acc, "seconds": secs}


def ensemble_row(case: str, tmp: Path, seed: int, n: int) -> dict:
    """n seeds trained on all data, probabilities averaged: measured here, not a product feature."""
    import torch

    path = program_copy(case, tmp, "")
    prog = promptc.load(path)
    t0 = time.perf_counter()
    backends = []
    for s in range(seed, seed + n):
        res = tune(prog.ir, "bench", out=tmp / f"{case}-ens-{s}", seed=s, gate=False, info=None, warn=None)
        backends.append(promptc.load_artifact(res.directory, prog).subject.backend)
    secs = time.perf_counter() - t0
    labels = backends[0].labels

    def predict(texts: list[str]) -> list[str]:
        probs = sum(torch.tensor(b.logits(texts)[0]).softmax(-1) for b in backends)
        return [labels[i] for i in probs.argmax(-1).tolist()]

    task_name = CASES[case][1]
    held = heldout(case)
    from promptc.targets.tune.data import classifier_text

    preds = predict([classifier_text(h["input"]) for h in held])
    acc = sum(p == h["output"] for p, h in zip(preds, held)) / len(held)
    return {"gate": gate(prog, task_name, f"ensemble-{seed}", predict), "acc": acc, "seconds": secs}


def setfit_row(case: str, seed: int) -> dict:
    from setfit import SetFitModel, Trainer, TrainingArguments

    from promptc.embed import minilm_path
    from promptc.targets.tune.data import classifier_text

    src, task_name, _ = CASES[case]
    prog = promptc.load(src)
    task = prog.ir.tasks[task_name]
    kept = prog.ir.without_test_inputs(task_name, list(task.examples), lambda ex: ex.input)
    from datasets import Dataset

    train = Dataset.from_dict({"text": [classifier_text(ex.input) for ex in kept], "label": [ex.output for ex in kept]})
    t0 = time.perf_counter()
    model = SetFitModel.from_pretrained(minilm_path())
    trainer = Trainer(model=model, args=TrainingArguments(seed=seed, report_to="none"), train_dataset=train)
    trainer.train()
    secs = time.perf_counter() - t0

    def predict(texts: list[str]) -> list[str]:
        return [str(p) for p in model.predict(texts)]

    held = heldout(case)
    preds = predict([classifier_text(h["input"]) for h in held])
    acc = sum(p == h["output"] for p, h in zip(preds, held)) / len(held)
    return {"gate": gate(prog, task_name, f"setfit-{seed}", predict), "acc": acc, "seconds": secs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cases", default="sentiment,route")
    ap.add_argument("--n", type=int, default=3, help="seeds of the seeds=N and ensemble rows")
    ap.add_argument("--skip-setfit", action="store_true")
    ap.add_argument("--skip-select", action="store_true")
    ap.add_argument("--skip-ensemble", action="store_true")
    a = ap.parse_args()
    rows: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for case in a.cases.split(","):
            plan = [("promptc seeds=1", lambda s, case=case: promptc_row(case, tmp, s, 1))]
            if not a.skip_select:
                plan.append((f"promptc seeds={a.n}", lambda s, case=case: promptc_row(case, tmp, s, a.n)))
            if not a.skip_ensemble:
                plan.append((f"promptc ensemble {a.n}", lambda s, case=case: ensemble_row(case, tmp, s, a.n)))
            if not a.skip_setfit:
                try:
                    import setfit  # noqa: F401
                    plan.append(("setfit defaults", lambda s, case=case: setfit_row(case, s)))
                except ImportError:
                    print("setfit is not installed: its rows are skipped (pip install setfit)")
            for label, fn in plan:
                for seed in range(a.seeds):
                    r = fn(seed)
                    rows.setdefault((case, label), []).append(r)
                    print(f"{case:10} {label:20} seed {seed}: gate {'passed' if r['gate'] else 'FAILED'}, "
                          f"held-out {r['acc']:.3f}, {r['seconds']:.0f} s", flush=True)
    print()
    print(f"{'case':10} {'recipe':20} {'held-out mean':>13} {'min':>6} {'gate passed':>11} {'train s':>8}")
    for (case, label), rs in rows.items():
        print(f"{case:10} {label:20} {statistics.mean(r['acc'] for r in rs):13.3f} {min(r['acc'] for r in rs):6.3f} "
              f"{sum(r['gate'] for r in rs):>6}/{len(rs):<4} {statistics.mean(r['seconds'] for r in rs):8.1f}")


if __name__ == "__main__":
    main()
