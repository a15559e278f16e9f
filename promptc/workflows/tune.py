"""`promptc tune`: train a `target tune`, gate it with the program's tests, write the artifact."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc import ir
from promptc._version import __version__
from promptc.artifacts import atomic_dir, file_hashes, write_json


@dataclass
class TuneResult:
    directory: Path
    manifest: dict[str, Any]
    report: Any  # testing.runner.Report | None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.manifest["status"] in ("passed", "ungated")


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"promptc": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": sys.version.split()[0]}


def tune(program: ir.Program, target_name: str, *, out: str | Path | None = None, base: str | None = None,
         seed: int | None = None, resume: bool = False, gate: bool = True, until_pass: bool = False,
         allow_secrets: bool = False, extra_examples: list[str] | None = None,
         json_log: Callable[[dict[str, Any]], None] | None = None,
         progress: Callable[..., None] | None = None, overrides: dict[str, Any] | None = None) -> TuneResult:
    """Train `target tune NAME`; return the artifact. Raises Interrupted (with a checkpoint) on Ctrl-C."""
    import torch
    from peft import get_peft_model

    from promptc.targets.text.prompt import compile_text_target
    from promptc.targets.tune.artifact import adapter_hash
    from promptc.targets.tune.data import build_dataset, load_extra
    from promptc.targets.tune.model import (
        DEFAULT_LR,
        MeanPoolClassifier,
        SeqClsClassifier,
        base_weights,
        choose_family,
        fingerprint,
        init_prompt_embeddings,
        load_causal,
        load_config,
        load_encoder,
        peft_config,
        resolve_base,
    )
    from promptc.targets.tune.train import Run

    target = program.target(target_name, kind="tune")
    task = program.tasks[target.task]
    opts = dict(target.options)
    opts.update(overrides or {})
    if base is not None:
        opts["base"] = base
    if seed is not None:
        opts["seed"] = seed
    method = opts["method"]
    dest = Path(out) if out is not None else Path("out") / target_name
    partial = dest.parent / f"{dest.name}.partial"
    if partial.exists() and not resume:
        shutil.rmtree(partial)

    t_start = time.perf_counter()
    b = resolve_base(opts["base"])
    config = load_config(b)
    family = choose_family(opts.get("family", "auto"), task.output, config)
    prompt = compile_text_target(program, task.name, {"delimit": False})
    extra = [ex for path in (extra_examples or []) for ex in load_extra(path, task)]
    data = build_dataset(program, task, family, prompt, extra=extra, val_split=opts.get("val_split", 0.1),
                         seed=opts.get("seed", 0), allow_secrets=allow_secrets)

    torch.manual_seed(opts.get("seed", 0))
    if family == "classifier":
        base_model, tok = load_encoder(b, len(data.labels), opts.get("pooling", "mean"))
        if opts.get("pooling", "mean") == "cls":
            base_model.config.id2label = dict(enumerate(data.labels))
            base_model.config.label2id = {v: k for k, v in enumerate(data.labels)}
    else:
        base_model, tok = load_causal(b)
    base_fp = fingerprint(base_weights(base_model, family, opts), config)
    init_ids = None
    if method == "prompt_tuning" and opts.get("init") in ("text", "prompt"):
        text = opts.get("init_text") if opts.get("init") == "text" else \
            "\n".join(v.text for v in (task.system[:1] + task.prompt[:1]))
        init_ids = tok(text, add_special_tokens=False)["input_ids"]
    torch.manual_seed(opts.get("seed", 0))
    pm = get_peft_model(base_model, peft_config(method, family, opts, config.model_type, init_ids))
    if init_ids:
        init_prompt_embeddings(pm, init_ids)
    virtual = opts.get("virtual_tokens", 0) if method in ("prompt_tuning", "p_tuning") else 0
    if family == "classifier" and opts.get("pooling", "mean") == "mean":
        model: Any = MeanPoolClassifier(pm, config.hidden_size, len(data.labels), virtual)
    elif family == "classifier":
        model = SeqClsClassifier(pm)
    else:
        model = pm
    lr = opts.get("lr") or DEFAULT_LR[method]

    suite_check = None
    if until_pass:
        def suite_check() -> bool:
            rep = _gate_report(program, task, family, model, tok, data.labels, opts, method, prompt)
            return rep.ok

    run = Run(family, method, model, tok, data, opts, lr, checkpoint_dir=partial / "checkpoint",
              json_log=json_log, progress=progress, until_pass=suite_check)
    state = run.run()
    train_seconds = time.perf_counter() - t_start

    report = _gate_report(program, task, family, model, tok, data.labels, opts, method, prompt)
    tests_total = len(report.results)
    pass_share = report.passed / max(1, tests_total - report.skipped)
    gate_ok = pass_share >= opts.get("min_pass", 1.0) - 1e-12
    status = ("passed" if gate_ok else "failed") if gate else "ungated"

    with atomic_dir(dest) as tmp:
        pm.save_pretrained(str(tmp / "adapter"), safe_serialization=True)
        for leftover in (tmp / "adapter").glob("README.md"):
            leftover.unlink()
        if isinstance(model, MeanPoolClassifier):
            from safetensors.torch import save_file

            save_file({k: v.detach().contiguous() for k, v in model.head.state_dict().items()},
                      str(tmp / "head.safetensors"))
        if data.labels:
            (tmp / "labels.json").write_text(json.dumps(data.labels), encoding="utf-8")
        best = next((r for r in state.curve if r["step"] == state.best_step), state.curve[-1] if state.curve else {})
        manifest = {
            "promptc": __version__,
            "kind": "tune",
            "status": status,
            "program": {"name": program.name, "version": program.version, "hash": program.hash},
            "task": {"name": task.name, "hash": task.hash},
            "target": target_name,
            "family": family,
            "method": method,
            "options": {k: v for k, v in opts.items()},
            "lr": lr,
            "seed": opts.get("seed", 0),
            "base": {"id": b.name, "source": b.source, "model_type": config.model_type, **base_fp},
            "labels": data.labels or None,
            "data": {"hash": data.digest(), "train": len(data.train), "val": len(data.val),
                     "excluded_test_inputs": data.excluded_tests, "redacted_secrets": len(data.secrets),
                     "extra_files": list(extra_examples or []), "provenance": data.provenance_summary()},
            "trainable_parameters": run.trainable_count(),
            "training": {"steps": state.step, "epochs": round(state.step / max(1, len(data.train) / opts.get(
                "batch_size", 8)), 3), "stopped": state.stopped, "best_step": state.best_step,
                         "best": {k: best.get(k) for k in ("val_loss", "val_accuracy", "split")},
                         "final": {k: (state.curve[-1] if state.curve else {}).get(k) for k in
                                   ("loss", "val_loss", "val_accuracy")},
                         "curve": [{k: r[k] for k in ("step", "loss", "val_loss", "val_accuracy")}
                                   for r in state.curve]},
            "tests": {"summary": report.summary_line(), "passed": report.passed, "failed": report.failed,
                      "skipped": report.skipped, "min_pass": opts.get("min_pass", 1.0), "gate": status,
                      "results": {r.name: {"kind": r.kind, "status": r.status, "pass_rate": round(r.pass_rate, 4)}
                                  for r in report.results}},
            "versions": _versions(),
        }
        manifest["adapter_hash"] = adapter_hash(tmp)
        manifest["files"] = file_hashes(tmp)
        write_json(tmp / "manifest.json", manifest)
    shutil.rmtree(partial, ignore_errors=True)
    # wall time is reported, not recorded: the same seed gives a byte-identical artifact directory
    return TuneResult(dest, manifest, report, train_seconds)


def _gate_report(program, task, family, model, tok, labels, opts, method, prompt):
    """Run the program's suite on the in-memory model: the same oracles the text prompt is held to."""
    from promptc.execution import Subject, make_decoding
    from promptc.targets.tune.artifact import make_backend, request_builder
    from promptc.testing.suite import run_suite

    model.eval()
    backend = make_backend(family, model, tok, labels, "training-run", opts, method)
    subject = Subject("artifact", "(training run)", opts["base"], backend, request_builder(task, family, prompt),
                      make_decoding(opts.get("max_new_tokens", 128)))
    return run_suite(program, task, subject, cache=None)
