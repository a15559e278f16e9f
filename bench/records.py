"""Record heads on the real embedded MiniLM: a triage case of our own (bench/triage_case.py: tag, urgency,
needs_human, a suggested reply from 8 templates; 90 training tickets, 45 held out in new wording).

For each setting, seeds 0..N-1: per-field and exact-record held-out accuracy, constraint violations of
the raw heads (each head's argmax, before decoding keeps the constraints) and of the decoded outputs,
the gate, and training seconds. Settings:
- `filter only`: constraint_weight = 0 (the constraints only filter predictions);
- `constraint loss`: constraint_weight = 1 (the default): the probability mass on breaking combinations
  is added to the loss;
- the text target (`triage_chat`, 2 shots) on `tiny-causal`, the one causal model a user has offline (random
  weights: it only proves the path; its figures are a floor, not a rival).

Usage: python bench/records.py [--seeds N] [--skip-text]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import triage_case  # noqa: E402

import promptc  # noqa: E402
from promptc.expr import constraint_failures  # noqa: E402
from promptc.workflows.tune import tune  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("tag", "urgency", "needs_human", "reply")


def program(tmp: Path) -> Path:
    """programs/triage.prompt with its data replaced by the bench's 90 training tickets."""
    (tmp / "data").mkdir(exist_ok=True)
    rows = triage_case.rows("train", 90, 0)
    (tmp / "data" / "triage.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = tmp / "triage.prompt"
    path.write_text((ROOT / "programs" / "triage.prompt").read_text(encoding="utf-8"), encoding="utf-8")
    return path


def score(task, outputs: list, rows: list[dict]) -> dict:
    out: dict = {f: 0 for f in FIELDS}
    out["record"] = 0
    out["violations"] = 0
    for got, row in zip(outputs, rows):
        want = row["output"]
        for f in FIELDS:
            out[f] += got.get(f) == want[f]
        out["record"] += got == want
        out["violations"] += bool(constraint_failures(task.constraints, {**row["input"], "output": got}))
    return {k: v / len(rows) if k != "violations" else v for k, v in out.items()}


def tuned_row(path: Path, seed: int, weight: float, held: list[dict], tmp: Path) -> dict:
    prog = promptc.load(path)
    t0 = time.perf_counter()
    res = tune(prog.ir, "triage_heads", out=tmp / f"art-{weight}-{seed}", seed=seed, info=None, warn=None,
               overrides={"constraint_weight": weight})
    secs = time.perf_counter() - t0
    art = prog.task("triage").load_artifact(res.directory)
    backend = art.subject.backend
    task = prog.ir.tasks["triage"]
    rows = backend.logits([r.prompt for r in art.subject.requests([r["input"] for r in held])])[0]
    heads = backend.heads
    raw = [heads.assemble([f[0][1] for f in heads.factors(lg)]) for lg in rows]
    decoded = [heads.decode(lg, r["input"], task.constraints)[0] for lg, r in zip(rows, held)]
    return {"seconds": secs, "gate": res.manifest.status, "raw": score(task, raw, held),
            "decoded": score(task, decoded, held)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--skip-text", action="store_true")
    a = ap.parse_args()
    held = triage_case.rows("heldout", 45, 0)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = program(tmp)
        task = promptc.load(path).ir.tasks["triage"]
        results: dict[str, list[dict]] = {}
        for label, weight in (("filter only", 0.0), ("constraint loss", 1.0)):
            for seed in range(a.seeds):
                r = tuned_row(path, seed, weight, held, tmp)
                results.setdefault(label, []).append(r)
                print(f"{label:16} seed {seed}: record {r['decoded']['record']:.3f} "
                      + " ".join(f"{f} {r['decoded'][f]:.3f}" for f in FIELDS)
                      + f" | raw violations {r['raw']['violations']}/45, decoded {r['decoded']['violations']}/45"
                      + f" | gate {r['gate']} | {r['seconds']:.0f} s", flush=True)
        print()
        print(f"{'setting':16} {'record':>7} " + " ".join(f"{f:>11}" for f in FIELDS)
              + f" {'raw viol.':>9} {'viol.':>5} {'gates':>5} {'train s':>7}")
        for label, rs in results.items():
            def mean(key, sub="decoded", rs=rs):
                return statistics.mean(r[sub][key] for r in rs)
            print(f"{label:16} {mean('record'):7.3f} " + " ".join(f"{mean(f):11.3f}" for f in FIELDS)
                  + f" {mean('violations', 'raw'):9.1f} {mean('violations'):5.1f}"
                  + f" {sum(r['gate'] == 'passed' for r in rs)}/{len(rs)}"
                  + f" {statistics.mean(r['seconds'] for r in rs):7.1f}")
        if not a.skip_text:
            prog = promptc.load(path)
            t0 = time.perf_counter()
            outs = prog.task("triage").run([r["input"] for r in held], target="triage_chat",
                                           model="tiny-causal", max_new_tokens=120, cache=False)
            secs = time.perf_counter() - t0
            parsed = [o.output if o.ok and isinstance(o.output, dict) else {} for o in outs]
            s = score(task, parsed, held)
            print(f"{'text/tiny-causal':16} {s['record']:7.3f} " + " ".join(f"{s[f]:11.3f}" for f in FIELDS)
                  + f" {'-':>9} {s['violations']:5d} {'-':>5} {'-':>7}  ({secs:.0f} s to run 45; random weights)")


if __name__ == "__main__":
    main()
