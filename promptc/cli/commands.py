"""CLI commands beyond `check`, registered here so cli.py stays small. Each imports its stage lazily."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from promptc.cli import serve_commands
from promptc.cli.inputs import parse_json_arg
from promptc.cli.output import EXIT_DIAGNOSTICS, EXIT_OK, emit_diagnostics
from promptc.errors import DiagnosticError, InputError, Interrupted, UsageError


def load_program(path: str, fmt: str = "text"):
    """Load a program for a command; its errors raise DiagnosticError (exit 1); warnings are printed."""
    from promptc.api import Program
    from promptc.compiler import compile_file

    result = compile_file(path)
    if result.program is None:
        from promptc.cli.usage import near_miss_hints

        raise DiagnosticError(near_miss_hints(result.diagnostics, path))
    warnings = [d for d in result.diagnostics if not d.is_error]
    if warnings and fmt != "json":
        emit_diagnostics(warnings, "text")
    return Program(result)


def _text_target(prog, name: str, args: argparse.Namespace | None = None):
    """The text target `name`; a tune target is a usage error that names the command that ran and what
    to run instead (its artifact for run, test and compare; `promptc tune` to build one)."""
    t = prog.target(name)
    if t.kind == "text":
        return t
    command = getattr(args, "command", None) or "compile"
    file = getattr(args, "file", None) or "FILE"
    build = f"promptc tune {file} --target {name}"
    art = Path("out") / name
    built = f" ({art} exists)" if art.is_dir() else f" (build it first: {build})"
    texts = [n for n, x in prog.ir.targets.items() if x.kind == "text"]
    if command in ("run", "test"):
        raise UsageError(f"target '{name}' is a tune target, and `promptc {command} --target` takes a text target; "
                         "a tune target runs as the artifact `promptc tune` wrote",
                         hint=f"promptc {command} {file} --artifact {art}{built}")
    if command == "compare":
        raise UsageError(f"'{name}' is a tune target, and `promptc compare` runs a tune target as its "
                         "artifact directory", hint=f"give the directory as the SUBJECT: {art}{built}")
    raise UsageError(f"target '{name}' is a tune target, and `promptc {command}` takes a text target",
                     hint=f"train it with `{build}`" + (f"; text targets: {', '.join(texts)}" if texts else ""))


def cmd_compile(args: argparse.Namespace) -> int:
    prog = load_program(args.file)
    _text_target(prog, args.target, args)
    out = prog.compile(args.target, args.output)
    print(f"wrote {out}/ (prompt.jinja, messages.json, output.schema.json, input.schema.json, README.md, "
          "manifest.json)")
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:

    prog = load_program(args.file)
    t = _text_target(prog, args.target, args)
    inputs = parse_json_arg(args.input, "--input")
    task = prog.task(t.task)
    if not isinstance(inputs, dict):
        shape = ", ".join(f'"{name}": ...' for name, _ in task.ir.input_type.fields)
        raise UsageError("--input must be a JSON object with one entry per task input",
                         hint=f"for task {task.name}: --input '{{{shape}}}'")
    try:
        out = task.render(inputs, target=args.target, format=args.format, tokenizer=args.tokenizer)
    except InputError as e:
        print(f"promptc: error: {e}", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    if isinstance(out, list):
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return EXIT_OK


def read_inputs(args: argparse.Namespace, task=None) -> list[dict[str, Any]]:
    """--input or --inputs as a list of input objects; with `task`, each is validated (file:line)."""
    from promptc.cli.inputs import check_inputs
    from promptc.cli.inputs import read_inputs as read

    items = read(getattr(args, "input", None), getattr(args, "inputs", None))
    if task is not None:
        check_inputs(task.ir, items)
    return [i.value for i in items]


def _subject_args(p: argparse.ArgumentParser, task_help: str, target_help: str) -> None:
    """FILE, --task, and what to run: --target (on --model) or --artifact."""
    p.add_argument("file", metavar="FILE")
    p.add_argument("--task", metavar="NAME", help=task_help)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--target", metavar="NAME", help=target_help)
    src.add_argument("--artifact", metavar="DIR", help="a compiled text or tuned artifact directory")
    p.add_argument("--model", metavar="SPEC", help="hf:<dir or hub id>, openai:<model>[@<base_url>] or tiny-causal")


def _cap(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a length (0 or more), got '{text}'")
    return n


def _run(text: str) -> int:
    n = _cap(text)
    if not 1 <= n <= 4096:  # hypothesis draws at most 8,192 choices per input
        raise argparse.ArgumentTypeError(f"expected a run of 1 to 4096, got '{text}'")
    return n


def _limits(args: argparse.Namespace):
    from promptc.schema import Limits

    return Limits(getattr(args, "max_text_len", None), getattr(args, "max_list_len", None),
                  getattr(args, "text_run", None), getattr(args, "list_run", None))


def _suite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="samples per input (use with --temperature)")
    p.add_argument("--min-pass", type=float, default=1.0, metavar="RATE",
                   help="a test passes when this share of its samples pass (default 1.0)")
    p.add_argument("--max-examples", type=int, metavar="N",
                   help="inputs per property (default: the property's max_examples, else 25)")
    p.add_argument("--max-text-len", type=_cap, metavar="N",
                   help="draw property strings up to N characters (default: the declared max_len; "
                        "200 where none is declared); the report names every cut")
    p.add_argument("--max-list-len", type=_cap, metavar="N",
                   help="draw property lists up to N items (default: the declared max_len; 5 where none is declared)")
    p.add_argument("--text-run", type=_run, metavar="N",
                   help="past N characters a drawn string repeats a run of up to N (default 256; speed)")
    p.add_argument("--list-run", type=_run, metavar="N",
                   help="past N items a drawn list repeats a run of up to N (default 16; speed)")
    p.add_argument("-k", metavar="PATTERN", help="run only tests whose name contains PATTERN (or matches a glob)")
    p.add_argument("--judge-model", metavar="SPEC", help="the model that answers judge(\"rubric\") checks")
    p.add_argument("--teacher", metavar="SPEC", help="the model that paraphrases for `perturb ... = paraphrase()`")


def decoding_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="generation budget (default: the target's)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (the default)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--unconstrained", action="store_true", help="hf: turn schema-constrained decoding off")
    g.add_argument("--structured", action="store_true",
                   help="openai: send the output type as a strict json_schema response_format (every type)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the generation cache")
    g.add_argument("--batch-size", type=int, default=16, metavar="N", help="hf: generation batch size")
    serve_commands.http_args(p)


def placement_args(p: argparse.ArgumentParser) -> None:
    """--device and --dtype: where a local model (hf:, tiny-causal) or a tuned artifact runs."""
    from promptc.models.device import DEVICES, DTYPES

    g = p.add_argument_group("local models (hf:, tiny-causal) and tuned artifacts")
    g.add_argument("--device", choices=DEVICES, help="where the model runs (default auto: cuda, then mps, then cpu)")
    g.add_argument("--dtype", choices=DTYPES,
                   help="precision (default auto: bfloat16 on GPUs that support it, else float32; a tuned "
                        "artifact: the dtype it was trained in)")


def _placement(args: argparse.Namespace) -> dict[str, str]:
    """The --device/--dtype given (an empty dict when neither was)."""
    return {k: v for k in ("device", "dtype") if (v := getattr(args, k, None)) is not None}


def make_backend(spec: str, args: argparse.Namespace, placed: bool = False):
    """A backend for a model spec with the command's options: batch size (and, when `placed`, the
    --device/--dtype) for local models, the HTTP options for openai: ones."""
    from promptc.models import load_backend

    local = spec.startswith("hf:") or spec == "tiny-causal"
    opts = {"batch_size": args.batch_size, **(_placement(args) if placed else {})} if local \
        else serve_commands.http_options(args)
    return load_backend(spec, **opts)


def decoding_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
            "seed": args.seed, "constrained": not args.unconstrained, "structured": args.structured}


def resolve_task(prog, task: str | None, target: str | None = None, artifact: str | None = None):
    """The task a command works on: --task if given, else the task of the target or artifact named,
    else the program's only task."""
    if task:
        return prog.task(task)
    if target and not Path(target).is_dir():
        return prog.task(prog.target(target).task)
    if artifact or (target and Path(target).is_dir()):
        directory = artifact or target
        assert directory is not None  # one of them is set, by the test above
        return prog.task(_artifact_task(directory))
    return prog.task(None)


def make_subject(args: argparse.Namespace, prog, task):
    """The subject of `run` and `test`: --target on --model, or --artifact (with --model if text)."""
    from promptc.execution import artifact_subject, text_subject

    placement = _placement(args)
    if isinstance(args.model, str) and args.model.startswith("openai:"):
        if placement:
            raise UsageError(f"--{next(iter(placement))} applies to local models (hf:, tiny-causal) and tuned "
                             f"artifacts; {args.model} runs on its server", hint="drop --device/--dtype")
        args.model = make_backend(args.model, args)  # the --timeout/--retries/--prices/... options
    elif isinstance(args.model, str) and placement:
        args.model = make_backend(args.model, args, placed=True)
    if args.artifact:
        _need_artifact_dir(args.artifact)
        if args.model is not None and _artifact_kind(args.artifact) == "tune":
            raise UsageError(f"{args.artifact} is a tuned artifact: it brings its own model, so --model does not "
                             "apply", hint="drop --model (it is for text targets and compiled text artifacts)")
        return artifact_subject(args.artifact, prog.ir, task.ir, args.model, batch_size=args.batch_size,
                                **placement, **decoding_overrides(args))
    if args.model is None:
        raise UsageError("--model is required with --target (or give --artifact)",
                         hint="--model SPEC: hf:<dir or hub id>, openai:<model>[@<base_url>] or tiny-causal; or "
                              "--artifact DIR for a compiled or tuned artifact")
    if args.target:
        _text_target(prog, args.target, args)
    return text_subject(prog.ir, task.ir, args.target, args.model, batch_size=args.batch_size, **decoding_overrides(args))


def cmd_run(args: argparse.Namespace) -> int:
    from promptc import jsonl
    from promptc.execution import open_cache, preflight, run_requests

    prog = load_program(args.file)
    task = resolve_task(prog, args.task, args.target, args.artifact)
    inputs = read_inputs(args, task)
    subject = make_subject(args, prog, task)
    preflight(subject.backend)  # a server that is not there: one error naming it, not one per input
    try:
        requests = subject.requests(inputs)
    except InputError as e:
        print(f"promptc: error: {e}", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    results = run_requests(subject.backend, requests, inputs, subject.decoding, open_cache(not args.no_cache))
    failed = cut = 0
    for n, r in enumerate(results, 1):
        if args.details:
            g = r.generation
            print(jsonl.dumps({"output": r.output, "ok": r.ok, "outcome": r.parsed.kind,
                              "finish_reason": g.finish_reason, "error": r.error, "raw": r.parsed.raw,
                              "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                              "seconds": round(g.seconds, 4), "cached": g.cached,
                              "repaired": g.repaired}))
        else:
            print(jsonl.dumps(r.output))  # one JSON line per input: U+2028 and friends escaped
        if not r.ok:
            failed += 1
            cut += r.parsed.cutoff
            print(f"promptc: input {n}: {r.error}", file=sys.stderr)
    if failed:  # cut-offs (the budget) apart from invalid outputs and failed calls
        print(f"promptc: {failed} of {len(results)} outputs failed: {cut} cut off at the budget, "
              f"{failed - cut} invalid", file=sys.stderr)
    serve_commands.print_spend([subject.backend])
    return EXIT_DIAGNOSTICS if failed else EXIT_OK


def _progress(quiet: bool):
    """A progress callback: a rich status line on a TTY, plain lines otherwise (stderr either way)."""
    if quiet:
        return None, lambda: None
    if sys.stderr.isatty():
        from rich.console import Console

        status = Console(stderr=True).status("running tests")
        status.start()
        return (lambda msg: status.update(msg)), status.stop
    return (lambda msg: print(f"promptc: {msg}", file=sys.stderr, flush=True)), (lambda: None)


def run_tests(args: argparse.Namespace, prog, task, subject):
    from promptc.execution import open_cache
    from promptc.testing.suite import run_suite

    if not 0 <= args.min_pass <= 1:
        raise UsageError("--min-pass is a rate between 0 and 1")
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    judge = make_backend(args.judge_model, args) if args.judge_model else None
    teacher = make_backend(args.teacher, args) if args.teacher else None
    update, stop = _progress(args.format != "text" or getattr(args, "quiet", False))
    try:
        return run_suite(prog.ir, task.ir, subject, repeat=args.repeat, min_pass=args.min_pass, max_examples=args.max_examples,
                         pattern=args.k, cache=open_cache(not args.no_cache), progress=update, seed=args.seed,
                         judge_model=judge, teacher=teacher, limits=_limits(args))
    finally:
        stop()


def cmd_test(args: argparse.Namespace) -> int:
    from promptc.diagnostics import use_color
    from promptc.testing import report as fmt

    prog = load_program(args.file, args.format)
    tasks = [prog.task(args.task)] if args.task else [prog.task(t) for t in prog.tasks
                                                      if prog.ir.tests_for(t).cases or prog.ir.tests_for(t).properties
                                                      or prog.ir.tests_for(t).datasets]
    if args.artifact and not args.task:
        tasks = [prog.task(_artifact_task(args.artifact))]
    if args.target and not args.task:
        tasks = [prog.task(prog.target(args.target).task)]
    if not tasks:
        raise UsageError(f"{args.file} declares no tests")
    if args.baseline:  # a missing or foreign baseline is refused before any model call, not after the suite
        from promptc.testing.baseline import load_baseline

        load_baseline(args.baseline)
    reports = []
    for task in tasks:
        subject = make_subject(args, prog, task)
        reports.append(run_tests(args, prog, task, subject))
    if args.save_failures:
        from promptc.testing.failures import save_failures

        n = save_failures(reports, args.save_failures, subject.describe())
        print(f"promptc: wrote {n} failing example{'s' if n != 1 else ''} to {args.save_failures}", file=sys.stderr)
    for rep in reports:
        if args.format == "json":
            text = fmt.to_json(rep)
        elif args.format == "junit":
            text = fmt.to_junit(rep)
        else:
            text = fmt.to_text(rep, color=use_color(sys.stdout))
        if args.output:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        else:
            print(text)
    serve_commands.print_spend([subject.backend])
    return _baselines(args, reports, EXIT_OK if all(r.ok for r in reports) else EXIT_DIAGNOSTICS)


def _baselines(args: argparse.Namespace, reports: list, code: int) -> int:
    """--save-baseline writes per-case outcomes; --baseline diffs against them, and then the exit code says
    whether anything regressed (1: a case that passed in the baseline fails now), not whether all pass."""
    from promptc.testing import baseline

    if args.baseline:
        base = baseline.load_baseline(args.baseline)
        drifts = [baseline.diff(r, base) for r in reports]
        print(baseline.to_text(drifts, args.baseline), file=sys.stderr if args.format != "text" else sys.stdout)
        code = EXIT_DIAGNOSTICS if any(d.regression for d in drifts) else EXIT_OK
    if args.save_baseline:
        n = baseline.save_baseline(reports, args.save_baseline)
        print(f"promptc: wrote a baseline of {n} case{'s' if n != 1 else ''} to {args.save_baseline}", file=sys.stderr)
    return code


def _need_artifact_dir(directory: str) -> None:
    """A missing --artifact directory: a usage error with the near-miss beside it, or how to build one."""
    if not Path(directory).is_dir():
        from promptc.nearby import near_hint

        raise UsageError(f"artifact directory not found: {directory}", hint=near_hint(directory, want_dir=True) or
                         "build one with `promptc tune FILE --target NAME` or `promptc compile FILE --target NAME`")


def _artifact_task(directory: str) -> str:
    from promptc.artifacts import read_manifest

    _need_artifact_dir(directory)
    return read_manifest(directory)["task"]["name"]


def cmd_compare(args: argparse.Namespace) -> int:
    from promptc.testing.compare import artifact_training, compare, load_price_table

    prog = load_program(args.file)
    task = resolve_task(prog, args.task, args.subjects[0] if args.subjects else None)
    models = args.model or [None]
    if len(set(models)) != len(models):
        raise UsageError("the same --model is given twice")
    for flag, value in (("--training-price", args.training_price), ("--training-cost", args.training_cost)):
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be 0 or more")
    prices = load_price_table(getattr(args, "prices", None))  # --prices: the openai: backend options
    subjects, labels, training = [], [], []
    for spec in args.subjects:
        tuned = Path(spec).is_dir() and _artifact_kind(spec) == "tune"
        for model in ([None] if tuned else models):  # text targets and text artifacts run on every --model
            sub_args = argparse.Namespace(**vars(args))
            sub_args.model = model
            if Path(spec).is_dir():
                sub_args.artifact, sub_args.target = spec, None
            else:
                sub_args.artifact, sub_args.target = None, spec
            subjects.append(make_subject(sub_args, prog, task))
            labels.append(f"{spec}@{model}" if len(models) > 1 and model else spec)
            training.append(artifact_training(spec) if tuned else {})
    reports = [run_tests(args, prog, task, s) for s in subjects]
    out = compare(reports, args.format, labels=labels, training=training, prices=prices,
                  training_price=args.training_price, seed=args.seed, training_cost=args.training_cost)
    if args.output:
        Path(args.output).write_text(out + "\n", encoding="utf-8")
        print(f"promptc: wrote {args.output}", file=sys.stderr)
    else:
        print(out)
    serve_commands.print_spend([s.backend for s in subjects])
    return EXIT_OK if all(r.ok for r in reports) else EXIT_DIAGNOSTICS


def _artifact_kind(directory: str) -> str | None:
    from promptc.artifacts import read_manifest

    _need_artifact_dir(directory)
    return read_manifest(directory).get("kind")


def cmd_tune(args: argparse.Namespace) -> int:

    prog = load_program(args.file)
    target = prog.target(args.target)
    if target.kind != "tune":
        tunes = [n for n, x in prog.ir.targets.items() if x.kind == "tune"]
        raise UsageError(f"target '{args.target}' is a text target, and `promptc tune` trains a `target tune`",
                         hint=f"a text target needs no training: `promptc compile {args.file} --target {args.target}` "
                              "writes its artifact" + (f"; tune targets: {', '.join(tunes)}" if tunes else ""))
    from promptc.targets.tune.launch import end_process_group, in_worker, is_main, spawn

    if args.processes > 1 and not in_worker():
        # --processes N: the same command as N data-parallel ranks (rank 0's exit status is ours)
        return spawn(_tune_argv(args), args.processes)
    quiet = args.json_log or not is_main()
    json_log = (lambda row: print(json.dumps({k: v for k, v in row.items() if k != "metric"}), flush=True)) \
        if args.json_log else None
    progress, stop = _train_progress(quiet)
    from promptc.workflows.tune import search, summary_lines, tune

    overrides = {k: v for k, v in (("device", args.device), ("dtype", args.dtype), ("seeds", args.seeds))
                 if v is not None}
    common = dict(out=args.output, base=args.base, seed=args.seed, resume=args.resume, gate=not args.no_gate,
                  until_pass=args.until_pass, allow_secrets=args.allow_secrets, extra_examples=args.extra_examples,
                  json_log=json_log, progress=progress, overrides=overrides)
    try:
        if args.search:
            def trial_line(row: dict) -> None:
                print(json.dumps(row) if args.json_log else "search " + _trial_text(row), flush=True,
                      file=sys.stdout if args.json_log else sys.stderr)

            result = search(prog.ir, args.target, args.search, objective=args.search_objective, folds=args.folds,
                            report=trial_line, **common)
        else:
            result = tune(prog.ir, args.target, **common)
    except Interrupted as e:
        stop()
        if is_main():
            print(f"promptc: {e}; a checkpoint was saved: rerun with --resume to continue", file=sys.stderr)
        return 130
    finally:
        stop()
        end_process_group()
    if not result.main:
        return EXIT_OK
    out = sys.stderr if args.json_log else sys.stdout
    m = result.manifest
    n_ex = m.excluded_test_inputs
    if n_ex:
        print(f"promptc: warning: {n_ex} training example{' is a test input' if n_ex == 1 else 's are test inputs'} "
              "and was not trained on (tests are never training data)", file=sys.stderr)
    for line in summary_lines(result):
        print(line, file=out)
    if m.status == "failed":
        print("promptc: the artifact failed its test gate (it is marked failed); --no-gate skips the gate",
              file=sys.stderr)
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def _tune_argv(args: argparse.Namespace) -> list[str]:
    """This `promptc tune` command line without --processes: what each rank of a --processes run runs."""
    argv = ["tune", args.file, "--target", args.target]
    for flag, value in (("--base", args.base), ("-o", args.output), ("--seed", args.seed), ("--device", args.device),
                        ("--dtype", args.dtype), ("--seeds", args.seeds)):
        if value is not None:
            argv += [flag, str(value)]
    for flag, on in (("--resume", args.resume), ("--no-gate", args.no_gate), ("--until-pass", args.until_pass),
                     ("--json-log", args.json_log), ("--allow-secrets", args.allow_secrets)):
        if on:
            argv.append(flag)
    for path in args.extra_examples or []:
        argv += ["--extra-examples", path]
    if args.search:
        argv += ["--search", str(args.search), "--search-objective", args.search_objective, "--folds", str(args.folds)]
    return argv


def _trial_text(row: dict) -> str:
    opts = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["options"].items())
    extra = f" folds {row['folds']}" if "folds" in row else f" ({row.get('tests')})"
    return f"trial {row['trial']}/{row['of']}: {opts} -> {row['objective']} {row['value']:.3f}{extra}, " \
           f"{row['seconds']:.0f} s"


def _train_progress(quiet: bool):
    """A rich progress bar with loss and validation accuracy on a TTY; a line per evaluation otherwise."""
    if quiet:
        return None, lambda: None
    if sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("training"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True)
        bar.start()
        ids: dict[str, Any] = {}

        def update(state, row, total=None):
            if "task" not in ids:
                ids["task"] = bar.add_task("train", total=None, info="")
            info = f"loss {row['loss']:.4f}  val acc {row['val_accuracy']:.3f}" if row else None
            kw = {"completed": state.step}
            if info:
                kw["info"] = info
            bar.update(ids["task"], **kw)
        return update, bar.stop

    def plain(state, row):
        if row:
            print(f"promptc: step {row['step']}: loss {row['loss']:.4f}, {row['split']} loss {row['val_loss']:.4f}, "
                  f"{row['split']} accuracy {row['val_accuracy']:.3f}", file=sys.stderr, flush=True)
    return plain, lambda: None


def cmd_distill(args: argparse.Namespace) -> int:
    from promptc.execution import open_cache
    from promptc.workflows.distill import distill, generate_inputs

    prog = load_program(args.file)
    task = resolve_task(prog, args.task, args.target)
    _text_target(prog, args.target, args)
    if args.generate is not None:
        if args.generate < 1:
            raise UsageError("--generate takes a positive number of inputs")
        inputs = generate_inputs(task.ir, args.generate, args.seed)
    else:
        inputs = read_inputs(argparse.Namespace(input=None, inputs=args.inputs), task)
    teacher = make_backend(args.teacher, args)
    dec = decoding_overrides(args)
    from promptc.execution import make_decoding

    prompt = task.text_target(args.target)
    try:
        res = distill(prog.ir, task.name, args.target, teacher, inputs=inputs, out=args.output,
                      cache=open_cache(not args.no_cache),
                      decoding=make_decoding(prompt.options.get("max_new_tokens", 256), **dec))
    except InputError as e:
        print(f"promptc: error: {e}", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    print(f"kept {len(res.kept)} of {len(res.kept) + len(res.rejected)} teacher outputs -> {res.path}"
          + (f"; {res.excluded_tests} test input{'s' if res.excluded_tests != 1 else ''} excluded"
             if res.excluded_tests else ""))
    print(f"rejected {len(res.rejected)} (with reasons) -> {res.rejected_path}")
    return EXIT_OK


def cmd_optimize(args: argparse.Namespace) -> int:
    from promptc.execution import make_decoding, open_cache
    from promptc.workflows.optimize import optimize, write_optimized

    prog = load_program(args.file)
    t = _text_target(prog, args.target, args)
    if args.budget < 1:
        raise UsageError("--budget must be at least 1")
    from promptc.artifacts import check_destination

    out = args.output or str(Path("out") / args.target)
    check_destination(out)  # refuse before the search, not after it
    backend = make_backend(args.model, args)
    update, stop = _progress(False)
    try:
        res = optimize(prog.ir, args.target, backend, budget=args.budget, seed=args.seed, dev_share=args.dev_share,
                       cache=open_cache(not args.no_cache), progress=update,
                       decoding=make_decoding(t.options.get("max_new_tokens", 256), **decoding_overrides(args)))
    except ValueError as e:
        raise UsageError(str(e)) from None
    finally:
        stop()
    dest = write_optimized(prog.ir, args.target, res, out, budget=args.budget, seed=args.seed, model=args.model)
    w = res.best.describe(res.pool)
    print(f"dev pass rate {res.baseline_score:.2f} (as declared) -> {res.best_score:.2f} after "
          f"{len(res.log)} evaluations")
    print(f"winner: shots {', '.join(w['shots']) or '(none)'}; system variant {w['system_variant'] or 'default'}; "
          f"prompt variant {w['prompt_variant'] or 'default'}")
    print(f"wrote {dest}/ (the search log is in manifest.json)")
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    from promptc.models.cache import Cache, default_path

    path = Path(args.dir) / "cache.db" if args.dir else default_path()
    if not path.is_file():  # neither action creates a cache (or its folder) just to report on it
        print(f"no cache at {path}" + ("; nothing to clear" if args.action == "clear" else ""))
        return EXIT_OK
    if args.action == "clear":
        cache, n, aside = Cache.reset(path)
        if aside is not None:
            print(f"the cache could not be read; moved it to {aside} and started a new one at {cache.path}")
        else:
            print(f"removed {n} cached generation{'s' if n != 1 else ''} from {cache.path}")
    else:
        cache = Cache(path)
        print(f"{cache.path}: {cache.count()} cached generations")
    return EXIT_OK


def _register_text(sub: argparse._SubParsersAction) -> None:
    """Compile and render: text targets without a model."""
    c = sub.add_parser("compile", help="compile a text target to a portable prompt artifact",
                       description="Write a text target's artifact directory atomically: prompt.jinja "
                                   "(renders with plain jinja2), messages.json, output.schema.json, "
                                   "input.schema.json and manifest.json.")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--target", required=True, metavar="NAME", help="a `target text` of the program")
    c.add_argument("-o", "--output", metavar="DIR", help="artifact directory (default: out/TARGET)")
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("render", help="print the prompt of a text target for one input",
                       description="Render a text target for one input, validated against the input schema.")
    r.add_argument("file", metavar="FILE")
    r.add_argument("--target", required=True, metavar="NAME")
    r.add_argument("--input", required=True, metavar="JSON|@FILE", help="the task inputs as a JSON object")
    r.add_argument("--format", choices=("plain", "chat", "hf_chat"),
                   help="override the target's format")
    r.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory for --format hf_chat")
    r.set_defaults(func=cmd_render)


def _register_runs(sub: argparse._SubParsersAction) -> None:
    """Run, test and compare: subjects on models."""
    run = sub.add_parser("run", help="run a task on a model; print one JSON output per input",
                         description="Run a task's text target (or an artifact) on a model. Prints one JSON "
                                     "output per input line, in input order; an output that fails to parse "
                                     "prints null and an error on stderr (exit 1).")
    _subject_args(run, "the task (default: the program's only task)", "a text target (default: plain options)")
    ins = run.add_mutually_exclusive_group(required=True)
    ins.add_argument("--input", metavar="JSON|@FILE", help="one input object")
    ins.add_argument("--inputs", metavar="FILE.jsonl", help="one input object per line ('-' for stdin)")
    run.add_argument("--details", action="store_true", help="print {output, ok, outcome, finish_reason, error, raw, usage} per line "
                     "(outcome: ok, invalid, cutoff or error)")
    decoding_args(run)
    placement_args(run)
    run.set_defaults(func=cmd_run)

    te = sub.add_parser("test", help="run the program's tests on a target or an artifact",
                        description="Run the declared cases and properties, judging every output with the "
                                    "expectations, the task constraints and the output schema. Exit 0 when "
                                    "all pass, 1 when any fails, 2 on a usage error.")
    _subject_args(te, "the task (default: every task with tests)", "a text target (with --model)")
    _suite_args(te)
    te.add_argument("--format", choices=("text", "json", "junit"), default="text")
    te.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    te.add_argument("--save-failures", metavar="FILE.jsonl",
                    help="write failing cases and shrunk counterexamples in the examples format")
    te.add_argument("--save-baseline", metavar="FILE.json", help="record per-case outcomes and outputs to FILE")
    te.add_argument("--baseline", metavar="FILE.json",
                    help="report newly failing, newly passing and changed cases against FILE; exit 1 on a regression")
    decoding_args(te)
    placement_args(te)
    te.set_defaults(func=cmd_test)

    cp = sub.add_parser("compare", help="run one suite on several targets or artifacts, side by side",
                        description="Each SUBJECT is a text target name (run on each --model) or an artifact "
                                    "directory. Prints the pass rate per test and per case with 95% intervals, "
                                    "robustness, dataset accuracy, tokens, latency and cost per request, training "
                                    "cost and break-even, and a paired significance test for each pair of subjects.")
    cp.add_argument("file", metavar="FILE")
    cp.add_argument("subjects", nargs="+", metavar="SUBJECT")
    cp.add_argument("--task", metavar="NAME")
    cp.add_argument("--model", metavar="SPEC", action="append",
                    help="a model for text targets; repeat it to run every text target on each model")
    _suite_args(cp)
    cp.add_argument("--format", choices=("text", "json", "html"), default="text",
                    help="html: one self-contained file with the table, confusion matrices and a cost plot")
    cp.add_argument("-o", "--output", metavar="FILE", help="write the comparison to FILE")
    cp.add_argument("--training-price", type=float, metavar="USD_PER_HOUR",
                    help="what an hour of training costs, for an artifact's training cost and break-even point")
    cp.add_argument("--training-cost", type=float, metavar="USD",
                    help="what training each artifact cost, when its manifest records no training time")
    decoding_args(cp)
    placement_args(cp)
    cp.set_defaults(func=cmd_compare)


def _register_tune(sub: argparse._SubParsersAction) -> None:
    """Tune: train a tune target."""
    tu = sub.add_parser("tune", help="train a tune target; gate it with the tests; write the artifact",
                        description="Train a `target tune` with peft, run the program's test suite on the result "
                                    "and write a versioned artifact atomically. Exit 1 when the gate fails.")
    tu.add_argument("file", metavar="FILE")
    tu.add_argument("--target", required=True, metavar="NAME")
    tu.add_argument("--base", metavar="SPEC", help="override the base model (minilm, tiny-causal, a dir or hub id)")
    tu.add_argument("-o", "--output", metavar="DIR", help="artifact directory (default: out/TARGET)")
    tu.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    tu.add_argument("--seed", type=int, metavar="N", help="override the target's seed")
    tu.add_argument("--seeds", type=int, metavar="N", help="train N seeds and keep the one with the best k-fold "
                    "cross-validated score on the training data (overrides the target's `seeds`)")
    tu.add_argument("--no-gate", action="store_true", help="record the test results but do not fail on them")
    tu.add_argument("--until-pass", action="store_true", help="stop as soon as the test suite passes")
    tu.add_argument("--json-log", action="store_true", help="print one JSON line per evaluation to stdout")
    tu.add_argument("--allow-secrets", action="store_true",
                    help="train even when the data holds secrets (they are redacted first)")
    tu.add_argument("--extra-examples", action="append", metavar="FILE.jsonl",
                    help="more training examples (e.g. corrected failures from --save-failures)")
    tu.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"),
                    help="where to train (overrides the target's device option; auto: cuda, then mps, then cpu)")
    tu.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"),
                    help="precision the base loads in (auto: bfloat16 on GPUs that support it, else float32)")
    tu.add_argument("--processes", type=int, default=1, metavar="N",
                    help="train data-parallel in N processes on this machine (one per GPU; gloo on the CPU)")
    tu.add_argument("--search", type=int, default=0, metavar="N",
                    help="run N hyperparameter trials (optuna) first and train the best (needs the tune extra)")
    tu.add_argument("--search-objective", choices=("cv", "gate"), default="cv",
                    help="what --search maximises: k-fold cross-validated accuracy, or the gate's pass share")
    tu.add_argument("--folds", type=int, default=3, metavar="K", help="folds for --search-objective cv")
    tu.set_defaults(func=cmd_tune)


def _register_hybrid(sub: argparse._SubParsersAction) -> None:
    """Distill and optimize: the hybrid workflow."""
    di = sub.add_parser("distill", help="label inputs with a teacher model; keep outputs that pass every check",
                        description="Run a text target on a teacher over unlabelled inputs; keep the outputs "
                                    "that validate and pass every task constraint, as examples with provenance. "
                                    "Rejected outputs go to DATA.rejected.jsonl with the reasons.")
    di.add_argument("file", metavar="FILE")
    di.add_argument("--task", metavar="NAME")
    di.add_argument("--target", required=True, metavar="TEXT_TARGET")
    di.add_argument("--teacher", required=True, metavar="SPEC")
    dsrc = di.add_mutually_exclusive_group(required=True)
    dsrc.add_argument("--inputs", metavar="FILE.jsonl", help="unlabelled inputs, one object per line")
    dsrc.add_argument("--generate", type=int, metavar="N", help="draw N inputs from the input schema")
    di.add_argument("-o", "--output", required=True, metavar="DATA.jsonl")
    decoding_args(di)
    di.set_defaults(func=cmd_distill)

    op = sub.add_parser("optimize", help="search shots and declared variants of a text target",
                        description="Search the choice and order of shots and the declared system/prompt "
                                    "variants, maximising the pass rate on a dev split of the examples (never "
                                    "the tests); write the winner as a compiled artifact with the search log.")
    op.add_argument("file", metavar="FILE")
    op.add_argument("--target", required=True, metavar="TEXT_TARGET")
    op.add_argument("--model", required=True, metavar="SPEC")
    op.add_argument("--budget", type=int, default=20, metavar="N", help="configurations to evaluate (default 20)")
    op.add_argument("--dev-share", type=float, default=0.3, metavar="SHARE",
                    help="share of the examples held out as the dev split (default 0.3)")
    op.add_argument("-o", "--output", metavar="DIR", help="artifact directory (default: out/TARGET)")
    decoding_args(op)
    op.set_defaults(func=cmd_optimize)


def _register_tools(sub: argparse._SubParsersAction) -> None:
    """Serve, export and artifacts; the cache; explain."""
    serve_commands.register(sub)  # serve, export, artifacts

    ca = sub.add_parser("cache", help="inspect or clear the generation cache",
                        description="The generation cache lives in .promptc/cache.db (or $PROMPTC_CACHE_DIR).")
    ca.add_argument("action", choices=("info", "clear"))
    ca.add_argument("--dir", metavar="DIR", help="cache directory (default: .promptc or $PROMPTC_CACHE_DIR)")
    ca.set_defaults(func=cmd_cache)

    from promptc.cli import explain

    explain.register(sub)


def register(sub: argparse._SubParsersAction) -> None:
    """Add every command but check (cli/main.py) to the CLI, in the order `--help` lists them."""
    _register_text(sub)
    _register_runs(sub)
    _register_tune(sub)
    _register_hybrid(sub)
    _register_tools(sub)
