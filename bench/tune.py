"""Training speed, in one run:
1. `promptc tune` (its loop under accelerate) against a minimal hand-written torch + peft loop on the same
   model (MiniLM-L6 prompt tuning, mean-pooled classifier), data and batch size; target ratio >= 1.0;
2. data parallel: `promptc tune --processes 2` (2 CPU processes over gloo) against 1 process with the same
   global batch, in samples/s;
3. `promptc tune --search 10` wall time on the route program (10 optuna trials, 3-fold cross-validation,
   each fold capped at SEARCH_STEPS steps);
and prompt tokens per request for the text target against the tuned artifact.
Usage: python bench/tune.py [--skip-ddp] [--skip-search]"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import torch

import promptc
from promptc.workflows.tune import tune

ROOT = Path(__file__).resolve().parent.parent
STEPS = 40
BS = 16


def promptc_steps_per_s(prog, out: Path) -> float:
    marks: dict[int, float] = {}

    def progress(state, row):
        if row is None:
            marks[state.step] = time.perf_counter()

    tune(prog, "route_soft", out=out, gate=False, progress=progress,
         overrides={"max_steps": STEPS, "batch_size": BS, "eval_every": 10_000, "patience": 0, "val_split": 0.0})
    # steps 2..STEPS: the first step warms up allocations in both loops
    return (STEPS - 1) / (marks[STEPS] - marks[1])


def hand_steps_per_s(texts: list[str], labels: list[int]) -> float:
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    from promptc.embed import minilm_path

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    enc = get_peft_model(AutoModel.from_pretrained(minilm_path()),
                         PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=8))
    head = torch.nn.Linear(384, 4)
    params = [p for p in enc.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=3e-2)
    rng = random.Random(0)
    enc.train()
    t1 = None
    for step in range(1, STEPS + 1):
        idx = rng.sample(range(len(texts)), BS)
        batch = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=256, return_tensors="pt")
        states = enc(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        states = states[:, -batch["input_ids"].shape[1]:, :]
        mask = batch["attention_mask"].unsqueeze(-1).float()
        logits = head((states * mask).sum(1) / mask.sum(1))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([labels[i] for i in idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 1:
            t1 = time.perf_counter()
    return (STEPS - 1) / (time.perf_counter() - t1)


def ddp_samples_per_s(processes: int, tmp: Path) -> tuple[float, float]:
    """(samples/s, seconds) of `promptc tune --processes N` on route (MiniLM prompt tuning), measured by
    the run's own clock at its last evaluation (the loop's time, not start-up)."""
    import json
    import shutil
    import subprocess
    import sys

    shutil.copy(ROOT / "programs" / "data" / "route.jsonl", tmp / "route.jsonl")
    text = (ROOT / "programs" / "route.prompt").read_text().replace('"data/route.jsonl"', '"route.jsonl"')
    text += (f'\ntarget tune ddp for route {{ method = "prompt_tuning", base = "minilm", virtual_tokens = 8, '
             f'lr = 0.03, batch_size = {BS}, max_steps = {STEPS}, eval_every = {STEPS}, val_split = 0.05, '
             'patience = 0, device = "cpu" }\n')
    (tmp / "route.prompt").write_text(text)
    out = subprocess.run([sys.executable, "-m", "promptc", "tune", str(tmp / "route.prompt"), "--target", "ddp",
                          "--no-gate", "--json-log", "-o", str(tmp / f"ddp{processes}"), "--processes",
                          str(processes)], capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    secs = rows[-1]["seconds"]
    return STEPS * BS / secs, secs


def search_seconds(trials: int, tmp: Path) -> tuple[float, dict]:
    from promptc.workflows.tune import search

    prog = promptc.load(ROOT / "programs" / "route.prompt")
    rows: list[dict] = []
    t0 = time.perf_counter()
    res = search(prog.ir, "route_soft", trials, objective="cv", folds=3, report=rows.append, out=tmp / "search",
                 gate=False, warn=None, overrides={"max_steps": SEARCH_STEPS, "val_split": 0.0})
    return time.perf_counter() - t0, res.manifest["search"]["best"]


SEARCH_STEPS = 20


def main() -> None:
    import sys
    import tempfile

    from promptc.targets.tune.data import classifier_text

    prog = promptc.load(ROOT / "programs" / "route.prompt")
    task = prog.task("route")
    members = list(task.ir.output.members)
    texts = [classifier_text(ex.input) for ex in task.ir.examples]
    labels = [members.index(ex.output) for ex in task.ir.examples]
    ours, hand = [], []
    with tempfile.TemporaryDirectory() as d:
        for i in range(3):  # interleaved, so machine noise hits both alike
            hand.append(hand_steps_per_s(texts, labels))
            ours.append(promptc_steps_per_s(prog, Path(d) / f"a{i}"))
    o, h = statistics.median(ours), statistics.median(hand)
    print(f"MiniLM-L6 prompt tuning, batch {BS}, {STEPS} steps, {torch.get_num_threads()} threads")
    print(f"  hand-written torch + peft loop: {h:6.2f} steps/s  (runs: {', '.join(f'{x:.2f}' for x in hand)})")
    print(f"  promptc tune:                   {o:6.2f} steps/s  (runs: {', '.join(f'{x:.2f}' for x in ours)})")
    print(f"  throughput ratio promptc / hand: {o / h:.2f} (target >= 1.0)")

    if "--skip-ddp" not in sys.argv:
        with tempfile.TemporaryDirectory() as d:
            one, s1 = ddp_samples_per_s(1, Path(d))
            two, s2 = ddp_samples_per_s(2, Path(d))
        print(f"data parallel on the CPU (gloo), global batch {BS}, {STEPS} steps, {torch.get_num_threads()} "
              "threads per process:")
        print(f"  1 process:   {one:7.1f} samples/s ({s1:.1f} s)")
        print(f"  2 processes: {two:7.1f} samples/s ({s2:.1f} s)   -> {two / one:.2f}x")
    if "--skip-search" not in sys.argv:
        with tempfile.TemporaryDirectory() as d:
            secs, best = search_seconds(10, Path(d))
        print(f"promptc tune --search 10 on route (3-fold CV, {SEARCH_STEPS} steps per fold, then the final run): "
              f"{secs:.0f} s wall; best trial {best['trial']}: cv accuracy {best['value']:.3f} with "
              f"{best['options']}")

    from transformers import AutoTokenizer

    from promptc.embed import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    tp = task.text_target("route_text")
    sample = [ex.input for ex in task.ir.examples[:20]]
    text_tokens = statistics.mean(len(tok(tp.render(i, "plain"))["input_ids"]) for i in sample)
    art_tokens = statistics.mean(len(tok(classifier_text(i))["input_ids"]) + 8 for i in sample)
    from promptc.models.tiny import tiny_tokenizer

    tt = tiny_tokenizer()
    text_bytes = statistics.mean(len(tt(tp.render(i, "plain"))["input_ids"]) for i in sample)
    print("prompt tokens per request (MiniLM WordPiece tokens; the artifact counts its 8 virtual tokens):")
    print(f"  text target route_text (8 shots): {text_tokens:7.1f}   ({text_bytes:.0f} tiny-causal byte tokens)")
    print(f"  tuned artifact route_soft:        {art_tokens:7.1f}   -> {text_tokens / art_tokens:.0f}x fewer")


if __name__ == "__main__":
    main()
