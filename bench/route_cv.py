"""Which encoder classifier to build on MiniLM-L6: 4-fold cross-validation on programs/data/route.jsonl
(160 tickets) for prompt tuning and LoRA, each with mean pooling (promptc's default) and with
AutoModelForSequenceClassification's CLS pooler (`pooling = "cls"`). 60 steps of batch 16 per fold.
Usage: python bench/route_cv.py [methods] [poolings], e.g. `python bench/route_cv.py lora mean`."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import torch
from peft import get_peft_model

import promptc
from promptc.targets.tune.data import classifier_text
from promptc.targets.tune.model import DEFAULT_LR, SOFT_METHODS, load_encoder, peft_config, resolve_base
from promptc.targets.tune.nets import MeanPoolClassifier, SeqClsClassifier
from promptc.targets.tune.options import TuneOptions

ROOT = Path(__file__).resolve().parent.parent


def fold(texts, y, method: str, pooling: str, k: int, f: int, steps: int = 60, bs: int = 16):
    torch.manual_seed(0)
    enc, tok = load_encoder(resolve_base("minilm"), 4, pooling)
    opts = TuneOptions.build({"method": method, "pooling": pooling, "virtual_tokens": 8})
    pm = get_peft_model(enc, peft_config(opts, "classifier", enc.config.model_type))
    clf = MeanPoolClassifier(pm, enc.config.hidden_size, 4, 8 if method in SOFT_METHODS else 0) \
        if pooling == "mean" else SeqClsClassifier(pm)
    idx = list(range(len(texts)))
    random.Random(1).shuffle(idx)
    test = [i for n, i in enumerate(idx) if n % k == f]
    train = [i for i in idx if i not in test]
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=DEFAULT_LR[method])
    rng = random.Random(0)
    clf.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        b = rng.sample(train, bs)
        e = tok([texts[i] for i in b], padding=True, truncation=True, max_length=128, return_tensors="pt")
        loss = torch.nn.functional.cross_entropy(clf(e["input_ids"], e["attention_mask"]), torch.tensor([y[i] for i in b]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval()
    with torch.no_grad():
        e = tok([texts[i] for i in test], padding=True, truncation=True, max_length=128, return_tensors="pt")
        pred = clf(e["input_ids"], e["attention_mask"]).argmax(-1).tolist()
    return sum(p == y[i] for p, i in zip(pred, test)) / len(test), time.perf_counter() - t0


def main() -> None:
    methods = sys.argv[1].split(",") if len(sys.argv) > 1 else ["prompt_tuning", "lora"]
    poolings = sys.argv[2].split(",") if len(sys.argv) > 2 else ["mean", "cls"]
    task = promptc.load(ROOT / "programs" / "route.prompt").task("route")
    members = list(task.ir.output.members)
    texts = [classifier_text(ex.input) for ex in task.ir.examples]
    y = [members.index(ex.output) for ex in task.ir.examples]
    for method in methods:
        for pooling in poolings:
            runs = [fold(texts, y, method, pooling, 4, f) for f in range(4)]
            accs = [a for a, _ in runs]
            print(f"{method:14s} {pooling:4s} held-out accuracy per fold {[round(a, 3) for a in accs]} "
                  f"mean {sum(accs) / 4:.3f}; {runs[0][1]:.0f} s per fold", flush=True)


if __name__ == "__main__":
    main()
