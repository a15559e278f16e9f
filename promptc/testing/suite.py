"""Test stage: run a task's declared tests against a subject (a text target on a model, or an artifact)
and judge every output with the same oracles: expectations, task constraints and the output schema.

Cases and property inputs are generated in one batch. Property inputs are drawn first (derandomised,
fixed budget); a property is re-run under hypothesis with shrinking only when one of them fails, and
every model call, first pass or shrink, goes through the generation cache.

Datasets (`cases "file.jsonl"`) are judged row by row as one test, with classification metrics for enum
outputs and per-field exact match for records. Robustness properties (`perturb`) judge each perturbed
input next to its original; their checks see `original.output`. Every rate carries a Wilson interval.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptc import ir
from promptc.execution import Result, Subject
from promptc.expr import check_expr
from promptc.testing import stats
from promptc.testing.stats import Rate, wilson

REPORT_VERSION = 2  # the JSON report's schema_version (2: datasets, metrics, intervals, robustness, warnings)

DEFAULT_MAX_EXAMPLES = 25


@dataclass
class Check:
    """One oracle applied to one output: an expect/check expression, a task constraint, the schema."""

    kind: str  # "schema" | "expect" | "check" | "constraint" | "error"
    name: str
    source: str
    passed: bool
    details: list[str] = field(default_factory=list)
    applicable: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "source": self.source, "passed": self.passed,
                "applicable": self.applicable, "details": self.details}


@dataclass
class Sample:
    input: dict[str, Any]
    output: Any
    raw: str
    checks: list[Check]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached: bool = False
    repeat: int = 0  # which of the --repeat samples of this input
    expected: Any = None  # a dataset row's labelled output (when `labelled`)
    labelled: bool = False
    original: Sample | None = None  # robustness: the judged sample of the unperturbed input
    repaired: bool = False  # the backend repaired the reply into JSON before it was parsed
    closed: bool = False  # constrained decoding closed the value early: the budget ran low (finish "closed")

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def relation_held(self) -> bool:
        """Robustness: whether the property's own checks (the output relation) held."""
        return all(c.passed for c in self.checks if c.kind == "check")

    @property
    def errored(self) -> bool:
        return any(c.kind == "error" for c in self.checks)

    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict[str, Any]:
        out = {"input": self.input, "output": self.output, "raw": self.raw, "passed": self.passed,
               "checks": [c.to_json() for c in self.checks]}
        if self.labelled:
            out["expected"] = self.expected
        if self.original is not None:
            out["original"] = {"input": self.original.input, "output": self.original.output}
        return out

    def outcome_json(self) -> dict[str, Any]:
        """The short form in `tests[].outputs`: enough to re-judge a run or diff it against a baseline."""
        out = {"input": self.input, "output": self.output, "raw": self.raw, "passed": self.passed,
               "failed": [c.name if c.kind in ("constraint", "schema", "error", "cutoff") else c.source
                          for c in self.failed_checks()]}
        if self.repeat:
            out["repeat"] = self.repeat
        if self.labelled:
            out["expected"] = self.expected
        if self.original is not None:
            out["original"] = {"input": self.original.input, "output": self.original.output}
        return out


@dataclass
class TestResult:
    name: str
    kind: str  # "case" | "property" | "dataset"
    status: str  # "passed" | "failed" | "skipped"
    origin: str = ""
    samples: list[Sample] = field(default_factory=list)
    pass_rate: float = 1.0
    inputs_tried: int = 0
    inputs_failed: int = 0
    shrunk: Sample | None = None
    reason: str = ""
    metrics: dict[str, Any] | None = None  # datasets: classification / field_match (to_json form)
    flaky_inputs: int = 0  # inputs whose repeated samples disagree
    robustness: Rate | None = None  # robustness properties: perturbed inputs whose relation held
    domain_cuts: list[str] = field(default_factory=list)  # properties: where a cap kept draws off the domain

    __test__ = False

    @property
    def interval(self) -> Rate:
        """The pass rate with its Wilson interval: over samples for a case, over inputs otherwise."""
        if self.kind == "case":
            return wilson(sum(s.passed for s in self.samples), len(self.samples))
        return wilson(self.inputs_tried - self.inputs_failed, self.inputs_tried)

    @property
    def flaky(self) -> bool:
        return self.flaky_inputs > 0

    def to_json(self) -> dict[str, Any]:
        failing = [s for s in self.samples if not s.passed]
        ci = self.interval
        return {
            "name": self.name, "kind": self.kind, "status": self.status, "origin": self.origin,
            "pass_rate": round(self.pass_rate, 4), "pass_rate_ci95": [round(ci.low, 4), round(ci.high, 4)],
            "samples": len(self.samples),
            "inputs_tried": self.inputs_tried, "inputs_failed": self.inputs_failed, "reason": self.reason,
            "flaky_inputs": self.flaky_inputs,
            "robustness": self.robustness.to_json() if self.robustness else None,
            "metrics": self.metrics,
            "failures": [s.to_json() for s in failing[:5]],
            "outputs": [s.outcome_json() for s in self.samples],
            "shrunk": self.shrunk.to_json() if self.shrunk else None,
            "domain_cuts": self.domain_cuts,
        }


@dataclass
class Report:
    program: str
    task: str
    subject: dict[str, Any]
    results: list[TestResult]
    seconds: float = 0.0
    requests: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)  # repeat, seed, temperature: how the run sampled

    @property
    def passed(self) -> int:
        return sum(r.status == "passed" for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.status == "skipped" for r in self.results)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def cutoffs(self) -> int:
        """Judged outputs cut off at the generation budget (their tests fail, but not for a wrong answer)."""
        return sum(any(c.kind == "cutoff" for c in smp.failed_checks())
                   for r in self.results if r.status != "skipped" for smp in r.samples)

    def summary_line(self) -> str:
        s = f"{self.passed} passed, {self.failed} failed"
        s += f", {self.skipped} skipped" if self.skipped else ""
        return s + (f" ({self.cutoffs} output{'s' if self.cutoffs != 1 else ''} cut off at the budget)"
                    if self.cutoffs else "")

    def flaky_tests(self) -> list[str]:
        return [r.name for r in self.results if r.flaky]

    def robustness(self) -> Rate | None:
        """Over every robustness property: the share of perturbed inputs whose output relation held."""
        rs = [r.robustness for r in self.results if r.robustness is not None and r.status != "skipped"]
        if not rs:
            return None
        return wilson(sum(r.k for r in rs), sum(r.n for r in rs))

    def case_outcomes(self) -> dict[str, bool]:
        """Per judged input (test name + input; repeats folded by the test's rule): passed or not. The unit
        of paired comparison and of baselines."""
        out: dict[str, bool] = {}
        for r in self.results:
            if r.status == "skipped":
                continue
            for s in r.samples:
                k = stats.case_key(r.name, s.input)
                out[k] = out.get(k, True) and s.passed
        return out

    def usage(self) -> dict[str, Any]:
        n = max(1, self.requests)
        return {"requests": self.requests, "cached": self.cached,
                "prompt_tokens_per_request": round(self.prompt_tokens / n, 1),
                "completion_tokens_per_request": round(self.completion_tokens / n, 1),
                "latency_per_request_s": round(self.model_seconds / n, 4),
                "trainable_parameters": self.subject.get("trainable_parameters", 0)}

    def to_json(self) -> dict[str, Any]:
        from promptc._version import __version__

        rob = self.robustness()
        return {"promptc": __version__, "schema_version": REPORT_VERSION, "program": self.program,
                "task": self.task, "subject": self.subject, "run": self.run,
                "summary": {"passed": self.passed, "failed": self.failed, "skipped": self.skipped,
                            "total": len(self.results), "ok": self.ok, "seconds": round(self.seconds, 3),
                            "cutoffs": self.cutoffs,
                            "flaky": self.flaky_tests(), "robustness": rob.to_json() if rob else None},
                "warnings": self.warnings, "usage": self.usage(), "tests": [r.to_json() for r in self.results]}


# ------------------------------------------------------------------ judging one output
def judge(task: ir.Task, inputs: dict[str, Any], result: Result,
          exprs: tuple[tuple[Any, str], ...], expr_kind: str, *, extra_env: dict[str, Any] | None = None,
          expected: Any = None, labelled: bool = False, runtime: Any = None, repeat: int = 0) -> Sample:
    """Judge one output with every oracle: the schema, `exprs` (expect/check), the task constraints and,
    for a dataset row, equality with the expected output. `runtime` (a judging.Runtime) serves
    `judge()` and `similar()` calls inside expressions."""
    g = result.generation
    checks: list[Check] = []
    value = result.parsed.value if result.parsed.ok else None
    if g.error:
        checks.append(Check("error", "model call", "", False, [g.error]))
    elif result.parsed.cutoff:  # the budget ran out: not a wrong answer, and counted apart (Report.cutoffs)
        checks.append(Check("cutoff", "output cut off", str(task.output), False, [result.parsed.error or ""]))
    elif not result.parsed.ok:
        checks.append(Check("schema", "output schema", str(task.output), False, [result.parsed.error or ""]))
    else:
        checks.append(Check("schema", "output schema", str(task.output), True))
        env = {**inputs, "output": value, **(extra_env or {})}
        if labelled:
            checks.append(expected_check(value, expected))
        with _runtime(runtime, env):
            for node, src in exprs:
                checks.append(_eval_check(expr_kind, src, src, node, env, runtime=runtime))
            for c in task.constraints:
                checks.append(_eval_check("constraint", c.name, c.source, c.expr, env, c.description))
    return Sample(inputs, value, result.parsed.raw, checks, g.prompt_tokens, g.completion_tokens, g.seconds,
                  g.cached, repeat, expected, labelled, repaired=g.repaired, closed=g.finish_reason == "closed")


def expected_check(value: Any, expected: Any) -> Check:
    """A dataset row: the output equals the expected one. For a record, every field the row gives must be
    equal (fields the row leaves out, such as free text, are not compared)."""
    if isinstance(expected, dict) and isinstance(value, dict):
        wrong = [k for k in expected if k not in value or not stats.same_value(value[k], expected[k])]
        details = [f"output.{k} = {json.dumps(value.get(k), ensure_ascii=False)}, expected "
                   f"{json.dumps(expected[k], ensure_ascii=False)}" for k in wrong]
        return Check("expect", "output == expected", "output == expected", not wrong, details)
    ok = stats.same_value(value, expected)
    details = [] if ok else [f"output = {json.dumps(value, ensure_ascii=False)}, expected "
                             f"{json.dumps(expected, ensure_ascii=False)}"]
    return Check("expect", "output == expected", "output == expected", ok, details)


@contextmanager
def _runtime(runtime: Any, env: dict[str, Any]) -> Iterator[None]:
    if runtime is None:
        yield
        return
    with runtime.bound(env):
        yield


def _eval_check(kind: str, name: str, src: str, node, env, description: str | None = None,
                runtime: Any = None) -> Check:
    mark = len(runtime.log) if runtime is not None else 0
    o = check_expr(node, env)
    details = list(o.details)
    if description and not o.ok:
        details.insert(0, description)
    if runtime is not None:  # judge() verdicts and reasons, similar() scores: shown whether or not it passed
        details.extend(runtime.log[mark:])
    return Check(kind, name, src, o.ok, details, o.applicable)


# ------------------------------------------------------------------ the runner
class Evaluator:
    """Runs inputs through the subject with a memo, so hypothesis replays never call the model twice."""

    def __init__(self, subject, cache, progress: Callable[[str], None] | None = None):
        self.subject = subject
        self.cache = cache
        self.memo: dict[tuple[str, int], Result] = {}
        self.progress = progress
        self.requests = 0
        self._texts: dict[int, tuple[dict[str, Any], str]] = {}  # id -> (the inputs, kept alive; their key)

    def key(self, inputs: dict[str, Any], sample: int) -> tuple[str, int]:
        """Equal inputs share a key however they are written; each inputs object is serialised once (a
        10,000-row dataset is looked up twice per row)."""
        seen = self._texts.get(id(inputs))
        if seen is None or seen[0] is not inputs:
            seen = self._texts[id(inputs)] = (inputs, json.dumps(inputs, sort_keys=True, ensure_ascii=False,
                                                                 default=str))
        return seen[1], sample

    def run(self, batch: list[tuple[dict[str, Any], int]]) -> list[Result]:
        from promptc.execution import run_requests

        todo: dict[int, dict[str, dict[str, Any]]] = {}
        keys = []
        for inputs, sample in batch:
            k = self.key(inputs, sample)
            keys.append(k)
            if k not in self.memo:
                todo.setdefault(sample, {}).setdefault(k[0], inputs)
        for sample, pending in todo.items():
            ins = list(pending.values())
            if self.progress:
                self.progress(f"generating {len(ins)} output{'s' if len(ins) != 1 else ''} (sample {sample + 1})")
            results = run_requests(self.subject.backend, self.subject.requests(ins), ins, self.subject.decoding,
                                   self.cache, sample)
            self.requests += len(results)
            for text_key, r in zip(pending, results):
                self.memo[(text_key, sample)] = r
        return [self.memo[k] for k in keys]


@contextmanager
def hypothesis_home() -> Iterator[None]:
    """Hypothesis keeps its files (a cache of constants) under .promptc/hypothesis, next to the generation
    cache, instead of a `.hypothesis/` folder in the user's directory; restored afterwards, so a pytest
    session's own hypothesis tests keep theirs. HYPOTHESIS_STORAGE_DIRECTORY still wins."""
    from hypothesis import configuration

    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    before = configuration.storage_directory(intent_to_write=False).home_directory
    configuration.set_hypothesis_home_dir(Path(os.environ.get("PROMPTC_CACHE_DIR", ".promptc")) / "hypothesis")
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(before)


def _draw(strategy, n: int, body: Callable[[Any], None], shrink: bool) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=phases,
              suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False)
    @given(strategy)
    def prop(x):
        body(x)

    with hypothesis_home():
        prop()


class PropertyFailed(AssertionError):
    pass


def _fold(samples: list[Sample], repeat: int, min_pass: float, ok: Callable[[Sample], bool] = lambda s: s.passed
          ) -> tuple[int, int, int]:
    """Inputs in `samples` (consecutive groups of `repeat`): (tried, failed by the min_pass rule, flaky)."""
    tried = failed = flaky = 0
    for i in range(0, len(samples), repeat):
        group = [ok(s) for s in samples[i:i + repeat]]
        tried += 1
        failed += sum(group) / len(group) < min_pass
        flaky += stats.flaky(group)
    return tried, failed, flaky


@dataclass
class _Selection:
    """The tests `-k` selects, and those it deselects as (kind, name)."""

    cases: list[Any]
    props: list[Any]
    datasets: list[Any]
    skipped: list[tuple[str, str]]


def _select(suite: Any, pattern: str | None) -> _Selection:
    selected = lambda name: pattern is None or _matches(pattern, name)  # noqa: E731
    skipped = [("case", c.name) for c in suite.cases if not selected(c.name)] + \
              [("property", p.name) for p in suite.properties if not selected(p.name)] + \
              [("dataset", d.name) for d in suite.datasets if not selected(d.name)]
    return _Selection([c for c in suite.cases if selected(c.name)], [p for p in suite.properties if selected(p.name)],
                      [d for d in suite.datasets if selected(d.name)], skipped)


def draw_inputs(dom: Any, n: int) -> tuple[list[Any], list[str]]:
    """`n` inputs from a schema.Domain: its boundary sweep first (one draw each), then general draws, so
    every declared bound, enum member and null is tried within the first len(sweep) inputs. Returns the
    inputs and the cuts: the domain's own, and the budget's when it is smaller than the sweep."""
    xs: list[Any] = []
    for sw in dom.sweep[:n]:
        one: list[Any] = []
        _draw(sw, 2, one.append, shrink=False)  # the first draw is hypothesis' simplest; keep the second
        xs.append(one[-1])
    cuts = list(dom.cuts)
    if len(dom.sweep) > n:
        cuts.append(f"{n} inputs cover {n} of the {len(dom.sweep)} boundary inputs; max_examples "
                    f"{len(dom.sweep)} (or --max-examples) draws every bound")
    elif n > len(xs):
        _draw(dom.strategy, n - len(xs), xs.append, shrink=False)
    return xs, cuts


def _draw_properties(task: ir.Task, suite: Any, props: list[Any], max_examples: int | None, seed: int,
                     paraphrase: Any, limits: Any = None
                     ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]], dict[str, Any],
                                dict[str, list[str]]]:
    """Draw every property's inputs (no model calls), deterministically, and perturb them for robustness
    properties: (drawn, perturbed, strategies, cuts), each by property name."""
    from promptc.schema import domain, generator_domain
    from promptc.testing import perturb

    drawn: dict[str, list[dict[str, Any]]] = {}
    perturbed: dict[str, list[dict[str, Any]]] = {}
    strategies: dict[str, Any] = {}
    cuts: dict[str, list[str]] = {}
    case_inputs = _dedupe([c.input for c in suite.cases] + [r.input for d in suite.datasets for r in d.rows])
    for p in props:
        if p.from_cases:
            drawn[p.name] = case_inputs
        else:
            overrides = {}
            for g in p.givens:
                path = tuple("[]" if isinstance(part, int) else part for part in g.path)
                overrides[path] = generator_domain(g.generator, g.args, dict(g.kwargs), limits, path)
            dom = domain(task.input_type, overrides, limits)
            strategies[p.name] = dom.strategy
            xs, cuts[p.name] = draw_inputs(dom, max_examples or p.max_examples or DEFAULT_MAX_EXAMPLES)
            drawn[p.name] = _dedupe(xs)
        if p.perturbs:
            perturbed[p.name] = [perturb.apply(x, p.perturbs, task.input_type, seed, p.name, paraphrase)
                                 for x in drawn[p.name]]
    return drawn, perturbed, strategies, cuts


def _greedy_repeat_warning(repeat: int, subject: Subject) -> list[str]:
    if repeat > 1 and subject.decoding.temperature == 0:
        return [f"--repeat {repeat} with greedy decoding (temperature 0): a deterministic model returns the same "
                f"output every time, so the repeats cost {repeat}x and measure nothing; sample with --temperature "
                "above 0 (each repeat gets its own seed)"]
    return []


def _add_usage(report: Report, ev: Evaluator) -> None:
    for r in ev.memo.values():
        gen = r.generation
        report.requests += 1
        report.cached += gen.cached
        report.prompt_tokens += gen.prompt_tokens
        report.completion_tokens += gen.completion_tokens
        report.model_seconds += gen.seconds


def run_suite(program: ir.Program, task: ir.Task, subject: Subject, *, repeat: int = 1, min_pass: float = 1.0,
              max_examples: int | None = None, pattern: str | None = None, cache: Any = None,
              progress: Callable[[str], None] | None = None, seed: int = 0, judge_model: Any = None,
              teacher: Any = None, limits: Any = None) -> Report:
    """Run the program's tests for `task` against `subject`; return a Report.

    `seed` seeds the perturbations of robustness properties; `judge_model` (a backend) answers `judge()`
    checks; `teacher` (a backend) paraphrases for `perturb ... = paraphrase()`; `limits` (a schema.Limits)
    caps the strings and lists properties draw."""
    from promptc.execution import every_call_failed, preflight
    from promptc.testing import judging

    for backend in (subject.backend, judge_model, teacher):  # a server that is not there is an error, at once
        if backend is not None:
            preflight(backend)
    t0 = time.perf_counter()
    suite = program.tests_for(task.name)
    ev = Evaluator(subject, cache, progress)
    sel = _select(suite, pattern)
    runtime = judging.runtime_for([*sel.cases, *sel.props], judge_model, cache)
    paraphrase = judging.paraphraser(teacher, cache) if teacher is not None else None

    # 1. draw property inputs (no model calls), deterministically; perturb them for robustness properties
    drawn, perturbed, strategies, cuts = _draw_properties(task, suite, sel.props, max_examples, seed, paraphrase,
                                                          limits)

    # 2. one batch for every case, row and property input (and perturbed input), for every sample
    reps = range(repeat)
    batch = [(c.input, s) for c in sel.cases for s in reps]
    batch += [(r.input, s) for d in sel.datasets for r in d.rows for s in reps]
    batch += [(x, s) for p in sel.props for x in drawn[p.name] for s in reps]
    batch += [(x, s) for p in sel.props for x in perturbed.get(p.name, ()) for s in reps]
    ev.run(batch)
    failed = every_call_failed(list(ev.memo.values()))

    # 3. judge every test on the memoised outputs
    def judge_all() -> list[TestResult]:
        results: list[TestResult] = []
        for c in sel.cases:
            samples = [judge(task, c.input, r, c.expects, "expect", runtime=runtime, repeat=s)
                       for s, r in enumerate(ev.run([(c.input, s) for s in reps]))]
            rate = sum(x.passed for x in samples) / len(samples)
            ok = rate >= min_pass
            results.append(TestResult(c.name, "case", "passed" if ok else "failed", c.origin, samples, rate, 1,
                                      0 if ok else 1, flaky_inputs=int(stats.flaky([x.passed for x in samples]))))
        for d in sel.datasets:
            results.append(_dataset_result(task, d, ev, reps, min_pass if d.min_pass is None else d.min_pass,
                                           runtime))
        for p in sel.props:
            results.append(_property_result(task, p, ev, reps, min_pass, drawn[p.name], perturbed.get(p.name),
                                            runtime, strategies.get(p.name), max_examples, progress))
            results[-1].domain_cuts = cuts.get(p.name, [])
        return results

    if runtime is not None and runtime.uses_judge:
        runtime.collecting = True  # a first pass only gathers judge() requests, so they go out as one batch
        judge_all()
        runtime.flush()
    results = judge_all()
    results += [TestResult(name, kind, "skipped", reason="deselected by -k") for kind, name in sel.skipped]

    report = Report(program.name, task.name, subject.describe(), results, time.perf_counter() - t0,
                    warnings=_greedy_repeat_warning(repeat, subject) + (
                        [f"{subject.model} answered no request ({failed}): check the model name and address; "
                         "these failures say nothing about the prompt"] if failed else []),
                    run={"repeat": repeat, "seed": seed, "min_pass": min_pass,
                         "temperature": subject.decoding.temperature})
    _add_usage(report, ev)
    return report


def _dataset_result(task: ir.Task, d: ir.Dataset, ev: Evaluator, reps: range, min_pass: float,
                    runtime: Any) -> TestResult:
    samples: list[Sample] = []
    for row in d.rows:
        for s, r in enumerate(ev.run([(row.input, s) for s in reps])):
            samples.append(judge(task, row.input, r, row.expects, "expect", expected=row.expected, labelled=True,
                                 runtime=runtime, repeat=s))
    tried, failed, flaky = _fold(samples, len(reps), 1.0)
    rate = (tried - failed) / max(1, tried)
    res = TestResult(d.name, "dataset", "passed" if rate >= min_pass else "failed", d.origin, samples, rate,
                     tried, failed, flaky_inputs=flaky, metrics=dataset_metrics(task.output, samples))
    if res.status == "failed":
        res.reason = f"{rate:.1%} of rows pass; the dataset needs {min_pass:.0%}"
    return res


def dataset_metrics(output: ir.Type, samples: list[Sample]) -> dict[str, Any]:
    """Accuracy with per-label precision/recall/F1 and a confusion matrix for an enum output; per-field
    exact match (and the same classification for each enum field) for a record output; exact-match
    accuracy otherwise."""
    t = ir.strip_optional(output)
    expected = [s.expected for s in samples]
    outputs = [s.output for s in samples]
    if isinstance(t, ir.EnumT):
        return {"classification": stats.classification(expected, outputs, t.members).to_json()}
    if isinstance(t, ir.RecordT) and all(isinstance(e, dict) for e in expected):
        out: dict[str, Any] = {"fields": stats.field_match(expected, outputs, ()).to_json()}
        per_enum = {}
        for name, ft in t.fields:
            ft = ir.strip_optional(ft)
            pairs = [(e[name], o.get(name) if isinstance(o, dict) else None) for e, o in zip(expected, outputs)
                     if name in e]
            if isinstance(ft, ir.EnumT) and pairs:
                per_enum[name] = stats.classification([a for a, _ in pairs], [b for _, b in pairs],
                                                      ft.members).to_json()
        if per_enum:
            out["field_classification"] = per_enum
        return out
    hits = sum(stats.same_value(o, e) for o, e in zip(outputs, expected))
    return {"exact_match": wilson(hits, len(samples)).to_json()}


def _property_result(task: ir.Task, p: ir.Property, ev: Evaluator, reps: range, min_pass: float,
                     drawn: list[dict[str, Any]], perturbed: list[dict[str, Any]] | None, runtime: Any,
                     strat: Any, max_examples: int | None, progress) -> TestResult:
    def verdict(x: dict[str, Any]) -> tuple[bool, list[Sample]]:
        samples = [judge(task, x, r, p.checks, "check", runtime=runtime, repeat=s)
                   for s, r in enumerate(ev.run([(x, s) for s in reps]))]
        return sum(s.passed for s in samples) / len(samples) >= min_pass, samples

    all_samples: list[Sample] = []
    if perturbed is None:
        for x in drawn:
            all_samples.extend(verdict(x)[1])
    else:
        for x, y in zip(drawn, perturbed):
            origs = ev.run([(x, s) for s in reps])
            news = ev.run([(y, s) for s in reps])
            for s, (o, r) in enumerate(zip(origs, news)):
                original = judge(task, x, o, (), "check", repeat=s)
                env = {"original": {**x, "output": original.output}}
                sample = judge(task, y, r, p.checks, "check", extra_env=env, runtime=runtime, repeat=s)
                sample.original = original
                all_samples.append(sample)
    tried, failing, flaky = _fold(all_samples, len(reps), min_pass)
    res = TestResult(p.name, "property", "passed" if failing == 0 else "failed", p.origin, all_samples,
                     (tried - failing) / max(1, tried), tried, failing, flaky_inputs=flaky)
    if perturbed is not None:
        n, broken, _ = _fold(all_samples, len(reps), min_pass, lambda s: s.relation_held())
        res.robustness = wilson(n - broken, n)
    elif failing and strat is not None and not getattr(runtime, "collecting", False):
        res.shrunk = _shrink(strat, max_examples or p.max_examples or DEFAULT_MAX_EXAMPLES, verdict, progress)
    return res


def _shrink(strategy, n: int, verdict, progress) -> Sample | None:
    """Re-run the property under hypothesis with shrinking; return the minimal failing sample."""
    last: list[Sample] = []

    def body(x):
        ok, samples = verdict(x)
        if not ok:
            last[:] = [next((s for s in samples if not s.passed), samples[0])]
            raise PropertyFailed()

    if progress:
        progress("shrinking a failing property input")
    try:
        _draw(strategy, n, body, shrink=True)
    except PropertyFailed:
        pass
    except Exception as e:  # hypothesis reports flaky or errored shrinks; keep the first failure
        if not last:
            raise e
    return last[0] if last else None


def _dedupe(xs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for x in xs:
        k = json.dumps(x, sort_keys=True, default=str)
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


def _matches(pattern: str, name: str) -> bool:
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatch(name, pattern)
    return pattern.lower() in name.lower()
