"""The training run: a small, deterministic, resumable loop over a peft model.

Why our own loop rather than transformers' Trainer: every piece of state (trainable weights, optimiser,
scheduler, RNG, data position, early-stopping bookkeeping) is saved without pickle, so `--resume` ends
bit-identical to an uninterrupted run, and the same seed on the CPU gives a bit-identical adapter.
"""

from __future__ import annotations

import math
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptc.errors import ArtifactError, Interrupted
from promptc.targets.tune import state as st
from promptc.targets.tune.data import Dataset, Item
from promptc.targets.tune.model import MeanPoolClassifier, SeqClsClassifier


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""


@dataclass
class Run:
    """Everything a training run needs: the trainable model wrapper, tokenizer, data, options."""

    family: str  # "causal" | "classifier"
    method: str
    model: Any  # causal: the peft model; classifier: MeanPoolClassifier | SeqClsClassifier
    tokenizer: Any
    data: Dataset
    options: dict[str, Any]
    lr: float
    checkpoint_dir: Path | None = None
    json_log: Callable[[dict[str, Any]], None] | None = None
    progress: Callable[[TrainState, dict[str, Any] | None], None] | None = None
    until_pass: Callable[[], bool] | None = None
    state: TrainState = field(default_factory=TrainState)
    best_weights: dict[str, Any] | None = None

    # ---------------------------------------------------------------- parameters
    def trainable(self) -> list[tuple[str, Any]]:
        return [(n, p) for n, p in self._named() if p.requires_grad]

    def _named(self):
        m = self.model
        if isinstance(m, MeanPoolClassifier):
            yield from (("encoder." + n, p) for n, p in m.encoder.named_parameters())
            yield from (("head." + n, p) for n, p in m.head.named_parameters())
        elif isinstance(m, SeqClsClassifier):
            yield from m.encoder.named_parameters()
        else:
            yield from m.named_parameters()

    def trainable_count(self) -> int:
        return sum(p.numel() for _, p in self.trainable())

    def snapshot(self) -> dict[str, Any]:
        return {n: p.detach().clone() for n, p in self.trainable()}

    def restore(self, weights: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for n, p in self.trainable():
                p.copy_(weights[n])

    # ---------------------------------------------------------------- batches
    def batch(self, items: list[Item]):
        import torch

        tok = self.tokenizer
        max_len = self.options.get("max_length", 256)
        if self.family == "classifier":
            enc = tok([it.text for it in items], padding=True, truncation=True, max_length=max_len,
                      return_tensors="pt")
            return enc["input_ids"], enc["attention_mask"], torch.tensor([it.label for it in items])
        eos = tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        seqs, labels = [], []
        for it in items:
            p = tok(it.text)["input_ids"]  # as at inference: the tokenizer's own special tokens
            t = tok(it.target, add_special_tokens=False)["input_ids"] + [eos]
            keep = max(1, max_len - len(t))
            p = p[-keep:]  # long prompts lose their beginning, never the answer
            seqs.append(p + t)
            labels.append([-100] * len(p) + t)
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        lab = torch.tensor([lb + [-100] * (width - len(lb)) for lb in labels])
        return ids, attn, lab

    def loss_and_hits(self, ids, attn, lab) -> tuple[Any, int, int]:
        """Mean loss over targets, and (correct, total) predictions: labels for a classifier, answer
        tokens (teacher-forced argmax) for a causal LM."""
        import torch.nn.functional as F

        if self.family == "classifier":
            logits = self.model(ids, attn)
            return F.cross_entropy(logits, lab), int((logits.argmax(-1) == lab).sum()), len(lab)
        out = self.model(input_ids=ids, attention_mask=attn, labels=lab)
        logits = out.logits[:, -ids.shape[1]:, :]  # prompt-learning methods prepend virtual positions
        pred = logits[:, :-1, :].argmax(-1)
        gold = lab[:, 1:]
        mask = gold != -100
        return out.loss, int(((pred == gold) & mask).sum()), int(mask.sum())

    # ---------------------------------------------------------------- the loop
    def total_steps(self) -> int:
        per_epoch = math.ceil(len(self.data.train) / self.options.get("batch_size", 8))
        total = per_epoch * self.options.get("epochs", 20)
        if self.options.get("max_steps"):
            total = min(total, self.options["max_steps"])
        return total

    def run(self) -> TrainState:
        import torch

        opts = self.options
        seed = opts.get("seed", 0)
        bs = opts.get("batch_size", 8)
        params = [p for _, p in self.trainable()]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=opts.get("weight_decay", 0.0))
        total = self.total_steps()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / max(1, total)))
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "trainer.json").is_file():
            self._load_checkpoint(opt, sched)
        per_epoch = math.ceil(len(self.data.train) / bs)
        # once per epoch, but never more often than every 10 steps (tiny data would evaluate every step)
        eval_every = opts.get("eval_every") or per_epoch * max(1, math.ceil(10 / per_epoch))
        patience = opts.get("patience", 5)
        stop_flag = {"sig": None}

        def handler(signum, frame):
            stop_flag["sig"] = signum

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        t0 = time.perf_counter()
        try:
            s = self.state
            while s.step < total and not s.stopped:
                gen = torch.Generator().manual_seed(seed * 1_000_003 + s.epoch)
                order = torch.randperm(len(self.data.train), generator=gen).tolist()
                while s.batch_in_epoch < per_epoch and s.step < total and not s.stopped:
                    b = s.batch_in_epoch
                    items = [self.data.train[i] for i in order[b * bs:(b + 1) * bs]]
                    self.model.train()
                    loss, _, _ = self.loss_and_hits(*self.batch(items))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    s.step += 1
                    s.batch_in_epoch += 1
                    last_loss = float(loss.detach())
                    if self.progress:
                        self.progress(s, None)
                    if s.step % eval_every == 0 or s.step == total:
                        row = self._evaluate(last_loss, time.perf_counter() - t0)
                        if self._improved(row):
                            s.best_metric, s.best_step, s.bad_evals = row["metric"], s.step, 0
                            self.best_weights = self.snapshot()
                        else:
                            s.bad_evals += 1
                        row["best_step"] = s.best_step
                        s.curve.append(row)
                        if self.json_log:
                            self.json_log(row)
                        if self.progress:
                            self.progress(s, row)
                        if patience and s.bad_evals >= patience:
                            s.stopped = f"early stop: no improvement in {patience} evaluations"
                        elif self.until_pass is not None and self.until_pass():
                            s.stopped = "the test suite passes (--until-pass)"
                        self._save_checkpoint(opt, sched)
                    if stop_flag["sig"] is not None:
                        self._save_checkpoint(opt, sched)
                        raise Interrupted(f"interrupted at step {s.step} of {total}")
                if s.batch_in_epoch >= per_epoch:
                    s.epoch += 1
                    s.batch_in_epoch = 0
            if not s.stopped:
                s.stopped = f"completed {s.step} steps"
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
        if self.best_weights is not None:
            self.restore(self.best_weights)
        self.model.eval()
        return self.state

    def _improved(self, row: dict[str, Any]) -> bool:
        best = self.state.best_metric
        return best is None or row["metric"] > best + 1e-12

    def _evaluate(self, train_loss: float, seconds: float) -> dict[str, Any]:
        import torch

        items = self.data.val or self.data.train
        self.model.eval()
        total_loss, hits, count, n = 0.0, 0, 0, 0
        with torch.no_grad():
            for i in range(0, len(items), 32):
                chunk = items[i:i + 32]
                loss, h, c = self.loss_and_hits(*self.batch(chunk))
                total_loss += float(loss) * len(chunk)
                n += len(chunk)
                hits += h
                count += c
        val_loss = total_loss / max(1, n)
        acc = hits / max(1, count)
        # classifier: accuracy first, loss breaks ties; causal LM: the loss on the answer tokens
        metric = acc - 1e-6 * val_loss if self.family == "classifier" else -val_loss
        return {"step": self.state.step, "epoch": self.state.epoch + self.state.batch_in_epoch /
                max(1, math.ceil(len(self.data.train) / self.options.get("batch_size", 8))),
                "loss": round(train_loss, 6), "val_loss": round(val_loss, 6), "val_accuracy": round(acc, 6),
                "split": "val" if self.data.val else "train", "metric": metric, "seconds": round(seconds, 3)}

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, opt, sched) -> None:
        import torch

        if self.checkpoint_dir is None:
            return
        d = self.checkpoint_dir
        tmp = d.parent / (d.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        st.save_tensors(tmp / "weights.safetensors", self.snapshot())
        if self.best_weights is not None:
            st.save_tensors(tmp / "best.safetensors", self.best_weights)
        tensors, meta = st.optimizer_to_flat(opt.state_dict())
        st.save_tensors(tmp / "optimizer.safetensors", tensors or {"_empty": torch.zeros(1)})
        st.save_tensors(tmp / "rng.safetensors", {"torch": torch.get_rng_state()})
        s = self.state
        st.write_json(tmp / "trainer.json", {
            "optimizer": meta, "scheduler": sched.state_dict(), "step": s.step, "epoch": s.epoch,
            "batch_in_epoch": s.batch_in_epoch, "best_metric": s.best_metric, "best_step": s.best_step,
            "bad_evals": s.bad_evals, "curve": s.curve, "stopped": s.stopped,
            "trainable": [n for n, _ in self.trainable()]})
        old = d.parent / (d.name + ".old")
        if d.exists():
            d.rename(old)
        tmp.rename(d)
        shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(self, opt, sched) -> None:
        import torch

        d = self.checkpoint_dir
        meta = st.read_json(d / "trainer.json")
        if meta["trainable"] != [n for n, _ in self.trainable()]:
            raise ArtifactError(f"the checkpoint in {d} was made by a different model or method; "
                                   "remove it or drop --resume")
        self.restore(st.load_tensors(d / "weights.safetensors"))
        if (d / "best.safetensors").is_file():
            self.best_weights = st.load_tensors(d / "best.safetensors")
        tensors = {k: v for k, v in st.load_tensors(d / "optimizer.safetensors").items() if k != "_empty"}
        opt.load_state_dict(st.optimizer_from_flat(tensors, meta["optimizer"]))
        sched.load_state_dict(meta["scheduler"])
        torch.set_rng_state(st.load_tensors(d / "rng.safetensors")["torch"])
        s = self.state
        s.step, s.epoch, s.batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        s.best_metric, s.best_step, s.bad_evals = meta["best_metric"], meta["best_step"], meta["bad_evals"]
        s.curve, s.stopped = meta["curve"], meta["stopped"]

