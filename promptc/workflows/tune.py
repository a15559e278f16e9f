"""`promptc tune`: train a `target tune`, gate it with the program's tests, write the artifact.

The steps, each a function below: `prepare` (options, base, family, data and its validation plan),
`build_tuned` (base in its dtype + a fresh adapter), `check_memory`, `train` (the accelerate loop,
resumable), `gate` (the program's test suite on the trained model, once, on the main process) and
`write` (the manifest and the artifact, atomically, on the main process).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promptc import ir
from promptc.errors import UsageError


@dataclass
class TuneResult:
    directory: Path
    manifest: Any  # targets.tune.artifact.TunedManifest; None on a worker process of a multi-process run
    report: Any  # testing.suite.Report | None
    seconds: float = 0.0
    peak_rss: int = 0
    warnings: list[str] = field(default_factory=list)
    main: bool = True
    # on the CPU: the process's memory when training starts (runtime, libraries and the loaded base) plus the
    # estimate's optimiser state and activations: what the peak RSS is compared with (not recorded in the
    # manifest: it varies between runs, and the same seed gives a byte-identical artifact)
    process_estimate: int = 0

    @property
    def passed(self) -> bool:
        return self.manifest is None or self.manifest.gate_passed


@dataclass
class TuneJob:
    """Everything resolved before a model is loaded: options, base, family, data, where to write."""

    program: ir.Program
    task: ir.Task
    target: str
    options: Any  # TuneOptions
    base: Any  # targets.tune.model.Base
    config: Any
    family: str
    prompt: Any  # the causal prompt (a TextPrompt without delimiters)
    data: Any  # targets.tune.data.Dataset, already split for validation
    validation: Any  # targets.tune.selection.Validation
    dest: Path
    partial: Path
    device: str
    dtype: str
    extra_examples: list[str]
    heads: Any = None  # promptc.heads.Heads (the classifier family)
    why: str = ""  # what method = "auto" / family = "auto" chose, field by field


def _stderr_warning(msg: str) -> None:
    print(f"promptc: warning: {msg}", file=sys.stderr)


def _stderr_info(msg: str) -> None:
    print(f"promptc: {msg}", file=sys.stderr)


def tune(program: ir.Program, target_name: str, *, out: str | Path | None = None, base: str | None = None,
         seed: int | None = None, resume: bool = False, gate: bool = True, until_pass: bool = False,
         allow_secrets: bool = False, extra_examples: list[str] | None = None,
         json_log: Callable[[dict[str, Any]], None] | None = None,
         progress: Callable[..., None] | None = None, overrides: dict[str, Any] | None = None,
         warn: Callable[[str], None] | None = _stderr_warning, fault: Callable[[str], None] | None = None,
         search_record: dict[str, Any] | None = None,
         info: Callable[[str], None] | None = _stderr_info) -> TuneResult:
    """Train `target tune NAME`; return the artifact. Raises Interrupted (with a checkpoint) on Ctrl-C.

    Under several processes (torchrun, `accelerate launch`, `promptc tune --processes N`) every process
    trains its share of each batch; the main process alone runs the gate and writes the artifact."""
    from promptc.models.device import peak_rss
    from promptc.targets.tune.model import build_tuned
    from promptc.targets.tune.train import make_accelerator

    t_start = time.perf_counter()
    job = prepare(program, target_name, out=out, base=base, seed=seed, overrides=overrides,
                  extra_examples=extra_examples or [], allow_secrets=allow_secrets)
    acc = make_accelerator(job.device, job.dtype)
    notes = [job.validation.warning] if job.validation.warning else []
    if acc.is_main_process:
        if job.partial.exists() and not resume:
            shutil.rmtree(job.partial)
        if info:
            for line in plan_lines(job):
                info(line)
        for note in notes:
            if warn:
                warn(note)
    acc.wait_for_everyone()
    seeds_record = None
    if job.options.seeds > 1:
        seeds_record = select_seed(job, acc, info if acc.is_main_process else None)
        job = replace(job, options=job.options.with_(seed=seeds_record["chosen"]))
    tuned = build_tuned(job.base, job.config, job.family, job.heads, job.options, job.task, job.dtype)
    estimate = check_memory(job, tuned, acc.num_processes)
    process_estimate = _process_estimate(job, estimate)
    run = train(job, tuned, acc, until_pass=until_pass, json_log=json_log, progress=progress, fault=fault)
    seconds = time.perf_counter() - t_start
    acc.wait_for_everyone()  # every rank leaves training together; rank 0 alone gates and writes
    if not acc.is_main_process:
        return TuneResult(job.dest, None, None, seconds, peak_rss(), notes, main=False)
    report, status = run_gate(job, tuned, acc, gate)
    manifest = write(job, tuned, run, report, status, estimate, acc.num_processes, search_record, seeds_record)
    shutil.rmtree(job.partial, ignore_errors=True)
    # wall time is reported, not recorded: the same seed gives a byte-identical artifact directory
    return TuneResult(job.dest, manifest, report, seconds, peak_rss(), notes, process_estimate=process_estimate)


def plan_lines(job: TuneJob) -> list[str]:
    """What `promptc tune` says before training: what was chosen and why (field by field), and how the run
    is validated (or why it is not)."""
    v = job.validation
    auto = job.options.given.get("method", "auto") == "auto"
    lines = [f"{job.options.method}{' (method auto)' if auto else ''} on {job.base.name}, {job.why}"]
    if not v.size:
        lines.append(f"no validation split: {v.reason}")
    else:
        lines.append(f"validation: {v.size} of {v.size + len(job.data.train)} examples ({v.reason})")
    return lines


def summary_lines(result: TuneResult) -> list[str]:
    """What `promptc tune` prints when it is done: training, validation, resources, tests, where."""
    m = result.manifest
    t, r = m.training, m.resources
    best = t["best"]
    lines = [f"trained {m.method} on {m.base['id']} ({m.family}): {m.trainable_parameters:,} trainable "
             f"parameters, {t['steps']} steps, {result.seconds:.0f} s; {t['stopped']}"]
    val = m.data.get("validation") or {}
    if val.get("size"):
        lines.append(f"best step {t['best_step']}: {best['split']} accuracy {best['val_accuracy']:.3f}, "
                     f"loss {best['val_loss']:.4f}")
    else:
        final = t["final"]
        lines.append(f"no validation split ({val.get('reason', 'none')}); final train accuracy "
                     f"{final['val_accuracy'] or 0:.3f}, loss {final['val_loss'] or 0:.4f}")
    peak = r.get("peak_memory") or result.peak_rss
    model_est = (r.get("memory_estimate") or {}).get("total", 0)
    if r.get("peak_memory") or not result.process_estimate:
        memory = f"memory estimate {model_est / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB"
    else:  # like with like: the process's RSS against the process's estimate
        memory = (f"memory estimate {result.process_estimate / 2**20:.0f} MiB for the process ({model_est / 2**20:.0f} "
                  f"MiB of it the model's), peak {peak / 2**20:.0f} MiB (process RSS)")
    lines.append(f"on {r.get('device')} in {r.get('dtype')}, {r.get('processes', 1)} process"
                 f"{'es' if r.get('processes', 1) != 1 else ''}; {memory}")
    if m.search:
        b = m.search["best"]
        lines.append(f"search: best of {len(m.search['trials'])} trials is trial {b['trial']} "
                     f"({m.search['objective']} {b['value']:.3f})")
    if m.seeds:
        sd = m.seeds
        lines.append(f"seeds: chose seed {sd['chosen']} of {len(sd['candidates'])} by {sd['folds']}-fold "
                     f"cross-validation on the training data (spread {sd['spread']:.3f})")
    lines.append(f"tests: {m.tests['summary']} -> {m.status}")
    lines.append(f"wrote {result.directory}/")
    return lines


def prepare(program: ir.Program, target_name: str, *, out: str | Path | None, base: str | None, seed: int | None,
            overrides: dict[str, Any] | None, extra_examples: list[str], allow_secrets: bool) -> TuneJob:
    """Resolve the target's options, the base and family, the device and dtype, and the data."""
    from promptc.models.device import check_quantize, pick_device, pick_dtype
    from promptc.targets.text.prompt import compile_text_target
    from promptc.targets.tune import selection
    from promptc.targets.tune.data import build_dataset, load_extra
    from promptc.targets.tune.model import choose_family, load_config, resolve_base
    from promptc.targets.tune.options import TuneOptions

    target = program.target(target_name, kind="tune")
    task = program.tasks[target.task]
    given = {k: v for k, v in target.options.items() if k in TuneOptions.__dataclass_fields__}
    given.update(overrides or {})
    if base is not None:
        given["base"] = base
    if seed is not None:
        given["seed"] = seed
    o = TuneOptions.build(given)
    device = pick_device(o.device)
    dtype = pick_dtype(o.dtype, device)
    check_quantize(o.quantize, o.method, device)
    b = resolve_base(o.base)
    config = load_config(b)
    extra = [ex for path in extra_examples for ex in load_extra(path, task)]
    kept = program.without_test_inputs(task.name, list(task.examples) + extra, lambda ex: ex.input)
    family, heads, why = choose_family(o.family, task.output, config, [ex.output for ex in kept],
                                       [ex.input for ex in kept])
    o = o.resolved(family)
    prompt = compile_text_target(program, task.name, {"delimit": False})
    data = build_dataset(program, task, family, prompt, extra=extra, val_split=0.0, seed=o.seed,
                         allow_secrets=allow_secrets, heads=heads)
    data, validation = selection.plan(data, o)
    dest = Path(out) if out is not None else Path("out") / target_name
    return TuneJob(program, task, target_name, o, b, config, family, prompt, data, validation, dest,
                   dest.parent / f"{dest.name}.partial", device, dtype, list(extra_examples), heads, why)


def check_memory(job: TuneJob, tuned: Any, processes: int) -> Any:
    """Estimate the run's memory before it starts; a clear error when it cannot fit on the device."""
    import math

    from promptc.models.device import check_fits, estimate_memory

    o = job.options
    total = sum(p.numel() for p in tuned.net.parameters())
    trainable = sum(p.numel() for p in tuned.net.parameters() if p.requires_grad)
    micro = math.ceil(o.batch_size / (processes * o.grad_accum))
    est = estimate_memory(job.config, total, trainable, batch=micro, length=_longest(job, tuned), dtype=job.dtype,
                          quantize=o.quantize, checkpointing=o.gradient_checkpointing, device=job.device)
    check_fits(est, job.device)
    return est


def _process_estimate(job: TuneJob, estimate: Any) -> int:
    """On the CPU, what the process will hold at its peak: its resident memory now (the runtime and the loaded
    base, measured) plus the trainable state and activations still to come (estimated). 0 elsewhere: on a GPU
    the estimate and the peak are both the device's allocated memory."""
    from promptc.models.device import current_rss

    rss = current_rss() if job.device == "cpu" else None
    return rss + estimate.optimizer + estimate.activations if rss else 0


def _longest(job: TuneJob, tuned: Any) -> int:
    """Tokens in the longest training sequence (of the first 2,000), capped by max_length."""
    tok = tuned.tokenizer
    items = (job.data.train + job.data.val)[:2000]
    texts = [it.text + ("" if job.family == "classifier" else it.target) for it in items]
    longest = max((len(ids) for ids in tok(texts)["input_ids"]), default=1) + job.options.virtual
    return min(longest + 1, job.options.max_length + job.options.virtual)


def train(job: TuneJob, tuned: Any, acc: Any, *, until_pass: bool, json_log: Any, progress: Any,
          fault: Any = None, checkpoint: bool = True) -> Any:
    """The accelerate training loop; resumes from `<out>.partial/checkpoint` when one is there (search
    trials train without checkpoints: each trial is a different model)."""
    from promptc.targets.tune.model import DEFAULT_LR
    from promptc.targets.tune.train import Run

    suite_check = None
    if until_pass:
        def suite_check() -> bool:
            return run_gate(job, tuned, acc, True)[0].ok

    run = Run(job.family, tuned.net, tuned.tokenizer, job.data, job.options,
              job.options.lr or DEFAULT_LR[job.options.method], accelerator=acc,
              checkpoint_dir=job.partial / "checkpoint" if checkpoint else None, json_log=json_log, progress=progress,
              until_pass=suite_check, fault=fault)
    run.run()
    return run


def run_gate(job: TuneJob, tuned: Any, acc: Any, gate: bool) -> tuple[Any, str]:
    """The program's suite on the in-memory model: the same oracles the text prompt is held to.
    Returns (report, status): passed | failed by `min_pass`, or ungated."""
    from promptc.execution import Subject, make_decoding
    from promptc.targets.tune.artifact import request_builder
    from promptc.testing.suite import run_suite

    tuned.net.eval()
    subject = Subject("artifact", "(training run)", job.options.base, tuned.backend("training-run"),
                      request_builder(job.task, job.family, job.prompt), make_decoding(job.options.max_new_tokens))
    with acc.autocast():
        report = run_suite(job.program, job.task, subject, cache=None)
    share = report.passed / max(1, len(report.results) - report.skipped)
    ok = share >= job.options.min_pass - 1e-12
    return report, ("passed" if ok else "failed") if gate else "ungated"


def write(job: TuneJob, tuned: Any, run: Any, report: Any, status: str, estimate: Any, processes: int,
          search_record: dict[str, Any] | None = None, seeds_record: dict[str, Any] | None = None) -> Any:
    """Build the manifest and write the artifact directory atomically."""
    from promptc.models.device import peak_memory
    from promptc.targets.tune.artifact import TunedManifest, write_tuned

    o = job.options
    resources = {"device": job.device, "dtype": job.dtype, "processes": processes, "grad_accum": o.grad_accum,
                 "gradient_checkpointing": o.gradient_checkpointing, "quantize": o.quantize,
                 "memory_estimate": estimate.as_dict(), "peak_memory": peak_memory(job.device)}
    manifest = TunedManifest.build(program=job.program, task=job.task, target=job.target, tuned=tuned, data=job.data,
                                   state=run.state, report=report, status=status, lr=run.lr,
                                   trainable=run.trainable_count(), resources=resources,
                                   extra_examples=job.extra_examples, validation=job.validation.as_dict(),
                                   search=search_record, seeds=seeds_record)
    return write_tuned(job.dest, tuned, manifest)


# ---------------------------------------------------------------- hyperparameter search
SEARCH_OBJECTIVES = ("cv", "gate")


def search_space(trial: Any, method: str) -> dict[str, Any]:
    """What `--search` varies: the learning rate (log scale around the method's default), the epochs,
    and the method's own capacity option."""
    from promptc.targets.tune.model import DEFAULT_LR

    lr = DEFAULT_LR[method]
    over: dict[str, Any] = {"lr": trial.suggest_float("lr", lr / 5, lr * 5, log=True),
                            "epochs": trial.suggest_int("epochs", 10, 40, step=5)}
    if method in ("prompt_tuning", "prefix_tuning", "p_tuning"):
        over["virtual_tokens"] = trial.suggest_categorical("virtual_tokens", [4, 8, 16, 32])
    if method == "lora":
        r = trial.suggest_categorical("r", [4, 8, 16])
        over.update(r=r, alpha=2 * r)
    if method == "prefix_tuning":
        over["prefix_projection"] = trial.suggest_categorical("prefix_projection", [False, True])
    return over


def cross_validate(job: TuneJob, over: dict[str, Any], folds: int, acc: Any, split_seed: int | None = None,
                   losses: list[float] | None = None) -> list[float]:
    """Held-out accuracy of each of `folds` stratified folds, each trained on the others with `over`
    (all data, no early stopping: what a default run does). The folds are drawn with `split_seed` (default:
    the run's seed), so runs that differ only in their seed are scored on the same folds; each fold's
    held-out loss is appended to `losses` when given."""
    from promptc.targets.tune import selection
    from promptc.targets.tune.model import DEFAULT_LR, build_tuned
    from promptc.targets.tune.train import Run

    o = job.options.with_(**over, val_split=0.0)
    items = job.data.train + job.data.val
    scores = []
    for train_items, held in selection.folds(items, folds, o.seed if split_seed is None else split_seed):
        data = replace(job.data, train=train_items, val=[])
        tuned = build_tuned(job.base, job.config, job.family, job.heads, o, job.task, job.dtype)
        run = Run(job.family, tuned.net, tuned.tokenizer, data, o, o.lr or DEFAULT_LR[o.method], accelerator=acc)
        run.run()
        loss, accuracy = run.measure(held)
        scores.append(accuracy)
        if losses is not None:
            losses.append(loss)
    return scores


SEED_FOLDS = 3


def select_seed(job: TuneJob, acc: Any, info: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`seeds = N`: score seeds seed..seed+N-1 by k-fold cross-validation on the training data (the same
    folds for every seed) and choose the best: accuracy first, then the lower held-out loss, then the
    lower seed. The tests never take part: choosing by them would fit the artifact to its own gate."""
    import statistics

    base, n = job.options.seed, job.options.seeds
    items = job.data.train + job.data.val
    k = min(SEED_FOLDS, len(items))
    if k < 2:
        raise UsageError(f"seeds = {n} needs at least 2 training examples to cross-validate")
    rows: list[dict[str, Any]] = []
    for i, s in enumerate(range(base, base + n), start=1):
        t0 = time.perf_counter()
        losses: list[float] = []
        folds = cross_validate(job, {"seed": s}, k, acc, split_seed=base, losses=losses)
        row = {"seed": s, "cv": round(statistics.mean(folds), 4), "loss": round(statistics.mean(losses), 4),
               "folds": [round(a, 4) for a in folds], "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        if info:
            info(f"seed {s} ({i}/{n}): cv accuracy {row['cv']:.3f} (folds {', '.join(f'{a:.2f}' for a in folds)}),"
                 f" held-out loss {row['loss']:.4f}, {row['seconds']:.0f} s")
    best = min(rows, key=lambda r: (-r["cv"], r["loss"], r["seed"]))
    spread = round(max(r["cv"] for r in rows) - min(r["cv"] for r in rows), 4)
    if info:
        info(f"chose seed {best['seed']}: cv accuracy {best['cv']:.3f} (spread over {n} seeds {spread:.3f}); "
             "training it on all the data")
    return {"folds": k, "metric": "cross-validated accuracy, then held-out loss", "candidates": rows,
            "chosen": best["seed"], "spread": spread}


def search(program: ir.Program, target_name: str, trials: int, *, objective: str = "cv", folds: int = 3,
           report: Callable[[dict[str, Any]], None] | None = None, **tune_args: Any) -> TuneResult:
    """`promptc tune --search N`: N optuna (TPE, seeded) trials over search_space, scored by k-fold
    cross-validated accuracy (`cv`) or by the gate's pass share after training on all data (`gate`);
    then the best trial's options train the artifact, whose manifest records every trial."""
    import optuna

    from promptc.targets.tune.model import build_tuned
    from promptc.targets.tune.train import make_accelerator

    if objective not in SEARCH_OBJECTIVES:
        raise UsageError(f"unknown search objective '{objective}'", hint=f"objectives: {', '.join(SEARCH_OBJECTIVES)}")
    if trials < 1 or folds < 2:
        raise UsageError("--search needs at least 1 trial and --folds at least 2")
    base_over = dict(tune_args.pop("overrides", None) or {})
    job = prepare(program, target_name, out=tune_args.get("out"), base=tune_args.get("base"),
                  seed=tune_args.get("seed"), overrides=base_over, extra_examples=tune_args.get("extra_examples") or [],
                  allow_secrets=tune_args.get("allow_secrets", False))
    acc = make_accelerator(job.device, job.dtype)
    smallest = min((sum(1 for it in job.data.train + job.data.val if it.target == lb) for lb in job.data.labels),
                   default=len(job.data.train))
    if objective == "cv" and smallest < folds:
        raise UsageError(f"{folds}-fold cross-validation needs at least {folds} examples of every label; the "
                         f"smallest label has {smallest}", hint="lower --folds, or use --search-objective gate")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, Any]] = []

    def score(trial: Any) -> float:
        over = search_space(trial, job.options.method)
        t0 = time.perf_counter()
        if objective == "cv":
            folds_acc = cross_validate(job, over, folds, acc)
            value, detail = sum(folds_acc) / len(folds_acc), {"folds": [round(a, 4) for a in folds_acc]}
        else:
            o = job.options.with_(**over)
            sub = TuneJob(**{**job.__dict__, "options": o})
            tuned = build_tuned(job.base, job.config, job.family, job.heads, o, job.task, job.dtype)
            train(sub, tuned, acc, until_pass=False, json_log=None, progress=None, checkpoint=False)
            rep = run_gate(sub, tuned, acc, True)[0]
            value = rep.passed / max(1, len(rep.results) - rep.skipped)
            detail = {"tests": rep.summary_line()}
        row = {"trial": trial.number + 1, "of": trials, "options": over, "objective": objective,
               "value": round(value, 4), **detail, "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        if report:
            report(row)
        return value

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=job.options.seed))
    study.optimize(score, n_trials=trials)
    best = rows[study.best_trial.number]
    record = {"objective": objective, "folds": folds if objective == "cv" else None, "trials": rows,
              "best": {"trial": best["trial"], "options": best["options"], "value": best["value"]}}
    return tune(program, target_name, overrides={**base_over, **best["options"]}, search_record=record,
                **tune_args)
