"""The training run: a small, deterministic, resumable loop over a peft model, run under 🤗 accelerate.

Why our own loop rather than transformers' Trainer: every piece of state (trainable weights, optimiser,
scheduler, data position, early-stopping bookkeeping) is saved without pickle, so `--resume` ends
bit-identical to an uninterrupted run, and the same seed on the CPU gives a bit-identical adapter.
Why accelerate around it: it places the model on the device, applies autocast for half precision, and
wraps the model for data-parallel training (DDP, FSDP, DeepSpeed) when launched with several processes
(`promptc tune --processes N`, torchrun or `accelerate launch`), with no change to the loop.

Data parallelism keeps the *global* batch: `batch_size` examples per optimiser step, split over the
processes and then over `grad_accum` micro-batches. Each micro-batch's loss is its summed loss over the
whole global batch's count (examples for a classifier, answer tokens for a causal LM), so N processes
with the same global batch compute the same gradient as one process, up to float summation order.
Dropout randomness is derived from (seed, step, rank), so no RNG state needs saving to resume.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptc.errors import ArtifactError, Interrupted, UsageError
from promptc.targets.tune import state as st
from promptc.targets.tune.data import Dataset, Item
from promptc.targets.tune.options import TuneOptions

CHECKPOINT_VERSION = 2


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


def make_accelerator(device: str, dtype: str):
    """One Accelerator per process: device placement, autocast for `dtype`, and the process group when
    launched with several processes (torchrun's environment variables)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from promptc.models.device import mixed_precision

    want = mixed_precision(dtype)
    state = AcceleratorState._shared_state
    if state and (state.get("_mixed_precision") != want or (device == "cpu") != (str(state.get("device")) == "cpu")):
        # accelerate keeps one state per process; a later run in the same process (the API, tests,
        # --search) may ask for another precision or device, so start that state afresh
        AcceleratorState._reset_state(reset_partial_state=state.get("num_processes", 1) == 1)
    from accelerate.utils import DistributedDataParallelKwargs

    # some adapted modules get no gradient from some losses (a LoRA on an encoder's pooler, which the
    # mean-pooled classifier never reads); DDP must not wait for them
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=device == "cpu", mixed_precision=want, kwargs_handlers=[ddp])


@dataclass
class Run:
    """Everything a training run needs: the trainable network, tokenizer, data, options."""

    family: str  # "causal" | "classifier"
    model: Any  # a torch module: the peft model (causal) or a classifier around it
    tokenizer: Any
    data: Dataset
    options: TuneOptions
    lr: float
    accelerator: Any = None
    checkpoint_dir: Path | None = None
    json_log: Callable[[dict[str, Any]], None] | None = None
    progress: Callable[[TrainState, dict[str, Any] | None], None] | None = None
    until_pass: Callable[[], bool] | None = None
    fault: Callable[[str], None] | None = None  # tests: called at each step of a checkpoint rotation
    state: TrainState = field(default_factory=TrainState)
    best_weights: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.accelerator is None:
            self.accelerator = make_accelerator("cpu", "float32")

    @property
    def processes(self) -> int:
        return int(self.accelerator.num_processes)

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index)

    # ---------------------------------------------------------------- parameters
    def trainable(self) -> list[tuple[str, Any]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def trainable_count(self) -> int:
        return sum(p.numel() for _, p in self.trainable())

    def snapshot(self) -> dict[str, Any]:
        return {n: p.detach().clone() for n, p in self.trainable()}

    def restore(self, weights: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for n, p in self.trainable():
                p.copy_(weights[n].to(p.device))

    # ---------------------------------------------------------------- batches
    def batch(self, items: list[Item]) -> tuple[Any, Any, Any]:
        import torch

        tok = self.tokenizer
        max_len = self.options.max_length
        dev = self.accelerator.device
        if self.family == "classifier":
            heads = self.data.heads
            spans = bool(heads is not None and heads.spans)
            enc = tok([it.text for it in items], padding=True, truncation=True, max_length=max_len,
                      return_tensors="pt", return_offsets_mapping=spans)
            if heads is None or heads.is_root:
                lab: Any = torch.tensor([it.label for it in items], device=dev)
            else:  # a record: per-head targets, and the constraint-loss tables where there are some
                width = len(next((it.violations for it in items if it.violations), []))
                viol = (torch.tensor([it.violations or [0.0] * width for it in items], device=dev)
                        if width else None)
                lab = (torch.tensor([it.targets for it in items], device=dev), viol, None, None)
                if spans:
                    from promptc.targets.tune.nets import span_tensors

                    st, mask = span_tensors(items, heads, enc["offset_mapping"].tolist())
                    lab = (lab[0], viol, st.to(dev), mask.to(dev))
            return enc["input_ids"].to(dev), enc["attention_mask"].to(dev), lab
        seqs, labels = [], []
        for it in items:
            p, t = self._causal_ids(it)
            seqs.append(p + t)
            labels.append([-100] * len(p) + t)
        eos = tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=dev)
        attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=dev)
        lab = torch.tensor([lb + [-100] * (width - len(lb)) for lb in labels], device=dev)
        return ids, attn, lab

    def _causal_ids(self, it: Item) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        p = tok(it.text)["input_ids"]  # as at inference: the tokenizer's own special tokens
        t = tok(it.target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        keep = max(1, self.options.max_length - len(t))
        return p[-keep:], t  # long prompts lose their beginning, never the answer

    def count(self, items: list[Item]) -> int:
        """What a batch's loss is averaged over: examples (classifier) or answer tokens (causal LM)."""
        if self.family == "classifier":
            return len(items)
        return sum(len(self._causal_ids(it)[1]) for it in items)

    def loss_and_hits(self, ids, attn, lab, model: Any = None) -> tuple[Any, int, int]:
        """Summed loss over targets, and (correct, total) predictions: labels for a classifier, answer
        tokens (teacher-forced argmax) for a causal LM."""
        import torch.nn.functional as F

        model = model if model is not None else self.model
        if self.family == "classifier" and isinstance(lab, tuple):
            from promptc.targets.tune.nets import heads_loss

            out = model(ids, attn)
            logits, span_logits = (out[0], out[1].float()) if isinstance(out, tuple) else (out, None)
            return heads_loss(logits.float(), lab[0], self.data.heads, lab[1], self.options.constraint_weight,
                              self.data.constrained, span_logits, lab[2], lab[3])
        if self.family == "classifier":
            logits = model(ids, attn).float()
            return (F.cross_entropy(logits, lab, reduction="sum"), int((logits.argmax(-1) == lab).sum()),
                    len(lab))
        out = model(input_ids=ids, attention_mask=attn)
        logits = out.logits[:, -ids.shape[1]:, :].float()  # prompt-learning methods prepend virtual positions
        pred = logits[:, :-1, :]
        gold = lab[:, 1:]
        mask = gold != -100
        loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), gold.reshape(-1), ignore_index=-100,
                               reduction="sum")
        return loss, int(((pred.argmax(-1) == gold) & mask).sum()), int(mask.sum())

    # ---------------------------------------------------------------- the schedule
    def per_epoch(self) -> int:
        return max(1, math.ceil(len(self.data.train) / self.options.batch_size))

    def total_steps(self) -> int:
        total = self.per_epoch() * self.options.epochs
        if self.options.max_steps:
            total = min(total, self.options.max_steps)
        return total

    def eval_every(self) -> int:
        # once per epoch, but never more often than every 10 steps (tiny data would evaluate every step)
        pe = self.per_epoch()
        return self.options.eval_every or pe * max(1, math.ceil(10 / pe))

    # ---------------------------------------------------------------- the loop
    def run(self) -> TrainState:
        """Train to the end (or an early stop); leave the best evaluation's weights in the model."""
        import torch

        o, acc = self.options, self.accelerator
        if o.batch_size < self.processes:
            raise UsageError(f"batch_size = {o.batch_size} is smaller than the {self.processes} processes",
                             hint="batch_size is the global batch: make it at least the number of processes")
        opt = torch.optim.AdamW([p for _, p in self.trainable()], lr=self.lr, weight_decay=o.weight_decay)
        total = self.total_steps()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / max(1, total)))
        self._resume(opt, sched)
        wrapped, opt = acc.prepare(self.model, opt)
        stop_flag: dict[str, int | None] = {"sig": None}

        def handler(signum, frame):
            stop_flag["sig"] = signum

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        t0 = time.perf_counter()
        try:
            self._loop(wrapped, opt, sched, total, stop_flag, t0)
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
        if self.best_weights is not None:
            self.restore(self.best_weights)
        self.model.eval()
        return self.state

    def _loop(self, wrapped, opt, sched, total: int, stop_flag: dict[str, int | None], t0: float) -> None:
        import torch

        s, o = self.state, self.options
        per_epoch = self.per_epoch()
        while s.step < total and not s.stopped:
            gen = torch.Generator().manual_seed(o.seed * 1_000_003 + s.epoch)
            order = torch.randperm(len(self.data.train), generator=gen).tolist()
            while s.batch_in_epoch < per_epoch and s.step < total and not s.stopped:
                b = s.batch_in_epoch
                items = [self.data.train[i] for i in order[b * o.batch_size:(b + 1) * o.batch_size]]
                last_loss = self._step(wrapped, opt, sched, items)
                s.step += 1
                s.batch_in_epoch += 1
                if self.progress and self.accelerator.is_main_process:
                    self.progress(s, None)
                if s.step % self.eval_every() == 0 or s.step == total:
                    self._after_evaluation(self._evaluate(last_loss, time.perf_counter() - t0))
                    self._save_checkpoint(opt, sched)
                if self._any(stop_flag["sig"] is not None):
                    self._save_checkpoint(opt, sched)
                    raise Interrupted(f"interrupted at step {s.step} of {total}")
            if s.batch_in_epoch >= per_epoch:
                s.epoch += 1
                s.batch_in_epoch = 0
        if not s.stopped:
            s.stopped = f"completed {s.step} steps"

    def _step(self, wrapped, opt, sched, items: list[Item]) -> float:
        """One optimiser step on the global batch `items`: this process's share, in grad_accum pieces."""
        import torch

        acc, o = self.accelerator, self.options
        # dropout randomness from (seed, step, rank): resuming needs no saved RNG state
        torch.manual_seed((o.seed * 1_000_003 + self.state.step) * 1_009 + self.rank)
        scale = self.processes / max(1, self.count(items))  # DDP averages over processes; undo it
        shard = items[self.rank::self.processes]
        total = 0.0
        wrapped.train()
        opt.zero_grad(set_to_none=True)
        for k in range(o.grad_accum):
            piece = shard[k::o.grad_accum]
            weight = scale
            if not piece:  # every process runs the same number of backward passes (DDP syncs on each)
                piece, weight = items[:1], 0.0
            loss, _, _ = self.loss_and_hits(*self.batch(piece), model=wrapped)
            loss = loss * weight
            acc.backward(loss)
            total += float(loss.detach())
        opt.step()
        sched.step()
        if self.processes > 1:
            t = torch.tensor([total], device=acc.device)
            total = float(acc.reduce(t, reduction="sum")) / self.processes
        return total

    def _any(self, flag: bool) -> bool:
        """True on every process when it is true on any (a signal may reach them at different steps)."""
        if self.processes == 1:
            return flag
        import torch

        t = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)

    def _after_evaluation(self, row: dict[str, Any]) -> None:
        s, o = self.state, self.options
        if self._improved(row):
            s.best_metric, s.best_step, s.bad_evals = row["metric"], s.step, 0
            self.best_weights = self.snapshot()
        else:
            s.bad_evals += 1
        row["best_step"] = s.best_step
        s.curve.append(row)
        if self.accelerator.is_main_process:
            if self.json_log:
                self.json_log(row)
            if self.progress:
                self.progress(s, row)
        if o.patience and s.bad_evals >= o.patience:
            s.stopped = f"early stop: no improvement in {o.patience} evaluations"
        elif self.until_pass is not None and self._main_decides(self.until_pass):
            s.stopped = "the test suite passes (--until-pass)"

    def _main_decides(self, check: Callable[[], bool]) -> bool:
        """Run `check` on the main process only (the suite runs once) and share its answer."""
        if self.processes == 1:
            return check()
        import torch
        from accelerate.utils import broadcast

        t = torch.tensor([1.0 if self.accelerator.is_main_process and check() else 0.0],
                         device=self.accelerator.device)
        return bool(broadcast(t, from_process=0).item() > 0)

    def _improved(self, row: dict[str, Any]) -> bool:
        if not self.data.val:
            # with no validation split the training data cannot choose a checkpoint: keep the latest
            return True
        best = self.state.best_metric
        return best is None or row["metric"] > best + 1e-12

    def measure(self, items: list[Item]) -> tuple[float, float]:
        """(loss, accuracy) of the current weights on `items`: per example for a classifier, per answer
        token for a causal LM (teacher-forced)."""
        import torch

        self.model.eval()
        total_loss, hits, count, n = 0.0, 0, 0, 0
        with torch.no_grad(), self.accelerator.autocast():
            for i in range(0, len(items), 32):
                chunk = items[i:i + 32]
                loss, h, c = self.loss_and_hits(*self.batch(chunk))
                total_loss += float(loss)
                n += c if self.family == "causal" else len(chunk)
                hits += h
                count += c
        return total_loss / max(1, n), hits / max(1, count)

    def _evaluate(self, train_loss: float, seconds: float) -> dict[str, Any]:
        """Every process evaluates the whole split (it is small), so all reach the same decisions."""
        val_loss, acc = self.measure(self.data.val or self.data.train)
        # classifier: accuracy first, loss breaks ties; causal LM: the loss on the answer tokens
        metric = acc - 1e-6 * val_loss if self.family == "classifier" else -val_loss
        return {"step": self.state.step, "epoch": self.state.epoch + self.state.batch_in_epoch / self.per_epoch(),
                "loss": round(train_loss, 6), "val_loss": round(val_loss, 6), "val_accuracy": round(acc, 6),
                "split": "val" if self.data.val else "train", "metric": metric, "seconds": round(seconds, 3)}

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, opt, sched) -> None:
        """The main process writes the checkpoint (crash-safe rotation); the others wait for it."""
        if self.checkpoint_dir is None:
            return
        if self.accelerator.is_main_process:
            st.rotate(self.checkpoint_dir, lambda tmp: self._write_checkpoint(tmp, opt, sched), self.fault)
        self.accelerator.wait_for_everyone()

    def _write_checkpoint(self, tmp: Path, opt, sched) -> None:
        import torch

        st.save_tensors(tmp / "weights.safetensors", self.snapshot())
        if self.best_weights is not None:
            st.save_tensors(tmp / "best.safetensors", self.best_weights)
        tensors, meta = st.optimizer_to_flat(opt.state_dict())
        st.save_tensors(tmp / "optimizer.safetensors", tensors or {"_empty": torch.zeros(1)})
        s = self.state
        st.write_json(tmp / "trainer.json", {
            "version": CHECKPOINT_VERSION, "processes": self.processes,
            "optimizer": meta, "scheduler": sched.state_dict(), "step": s.step, "epoch": s.epoch,
            "batch_in_epoch": s.batch_in_epoch, "best_metric": s.best_metric, "best_step": s.best_step,
            "bad_evals": s.bad_evals, "curve": s.curve, "stopped": s.stopped,
            "trainable": [n for n, _ in self.trainable()]})

    def _resume(self, opt, sched) -> None:
        """Continue from the newest complete checkpoint, if there is one."""
        d = self.checkpoint_dir
        if d is None:
            return
        if self.accelerator.is_main_process:
            st.recover(d)
        self.accelerator.wait_for_everyone()
        if not (d / st.COMPLETE).is_file():
            return
        meta = st.read_json(d / "trainer.json")
        if meta.get("version") != CHECKPOINT_VERSION:
            raise ArtifactError(f"the checkpoint in {d} was written by another version of promptc",
                                hint="drop --resume to start again")
        if meta["trainable"] != [n for n, _ in self.trainable()]:
            raise ArtifactError(f"the checkpoint in {d} was made by a different model or method; "
                                "remove it or drop --resume")
        if meta["processes"] != self.processes:
            raise UsageError(f"the checkpoint in {d} was made by {meta['processes']} processes; this run has "
                             f"{self.processes}", hint=f"resume with --processes {meta['processes']}")
        weights = st.load_tensors(d / "weights.safetensors")
        if any(tuple(weights[n].shape) != tuple(p.shape) for n, p in self.trainable()):
            raise ArtifactError(f"the checkpoint in {d} was made with other options (its weights have other "
                                "shapes); remove it or drop --resume")
        self.restore(weights)
        if (d / "best.safetensors").is_file():
            self.best_weights = st.load_tensors(d / "best.safetensors")
        tensors = {k: v for k, v in st.load_tensors(d / "optimizer.safetensors").items() if k != "_empty"}
        opt.load_state_dict(st.optimizer_from_flat(tensors, meta["optimizer"]))
        sched.load_state_dict(meta["scheduler"])
        s = self.state
        s.step, s.epoch, s.batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        s.best_metric, s.best_step, s.bad_evals = meta["best_metric"], meta["best_step"], meta["bad_evals"]
        s.curve, s.stopped = meta["curve"], meta["stopped"]
