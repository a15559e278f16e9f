"""Test stage: run a task's declared tests against a subject (a text target on a model, or an artifact)
and judge every output with the same oracles: expectations, task constraints and the output schema.

Cases and property inputs are generated in one batch. Property inputs are drawn first (derandomised,
fixed budget); a property is re-run under hypothesis with shrinking only when one of them fails, and
every model call, first pass or shrink, goes through the generation cache.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from promptc import ir
from promptc.execution import Result, Subject
from promptc.expr import check_expr

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

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def errored(self) -> bool:
        return any(c.kind == "error" for c in self.checks)

    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "raw": self.raw, "passed": self.passed,
                "checks": [c.to_json() for c in self.checks]}


@dataclass
class TestResult:
    name: str
    kind: str  # "case" | "property"
    status: str  # "passed" | "failed" | "skipped"
    origin: str = ""
    samples: list[Sample] = field(default_factory=list)
    pass_rate: float = 1.0
    inputs_tried: int = 0
    inputs_failed: int = 0
    shrunk: Sample | None = None
    reason: str = ""

    __test__ = False

    def to_json(self) -> dict[str, Any]:
        failing = [s for s in self.samples if not s.passed]
        return {
            "name": self.name, "kind": self.kind, "status": self.status, "origin": self.origin,
            "pass_rate": round(self.pass_rate, 4), "samples": len(self.samples),
            "inputs_tried": self.inputs_tried, "inputs_failed": self.inputs_failed, "reason": self.reason,
            "failures": [s.to_json() for s in failing[:5]],
            "outputs": [{"input": s.input, "output": s.output, "raw": s.raw, "passed": s.passed,
                         "failed": [c.name if c.kind in ("constraint", "schema", "error") else c.source
                                    for c in s.failed_checks()]} for s in self.samples],
            "shrunk": self.shrunk.to_json() if self.shrunk else None,
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

    def summary_line(self) -> str:
        s = f"{self.passed} passed, {self.failed} failed"
        return s + (f", {self.skipped} skipped" if self.skipped else "")

    def usage(self) -> dict[str, Any]:
        n = max(1, self.requests)
        return {"requests": self.requests, "cached": self.cached,
                "prompt_tokens_per_request": round(self.prompt_tokens / n, 1),
                "completion_tokens_per_request": round(self.completion_tokens / n, 1),
                "latency_per_request_s": round(self.model_seconds / n, 4),
                "trainable_parameters": self.subject.get("trainable_parameters", 0)}

    def to_json(self) -> dict[str, Any]:
        from promptc._version import __version__

        return {"promptc": __version__, "schema_version": 1, "program": self.program, "task": self.task,
                "subject": self.subject,
                "summary": {"passed": self.passed, "failed": self.failed, "skipped": self.skipped,
                            "total": len(self.results), "ok": self.ok, "seconds": round(self.seconds, 3)},
                "usage": self.usage(), "tests": [r.to_json() for r in self.results]}


# ------------------------------------------------------------------ judging one output
def judge(task: ir.Task, inputs: dict[str, Any], result: Result,
          exprs: tuple[tuple[Any, str], ...], expr_kind: str) -> Sample:
    g = result.generation
    checks: list[Check] = []
    value = result.parsed.value if result.parsed.ok else None
    if g.error:
        checks.append(Check("error", "model call", "", False, [g.error]))
    elif not result.parsed.ok:
        checks.append(Check("schema", "output schema", str(task.output), False, [result.parsed.error or ""]))
    else:
        checks.append(Check("schema", "output schema", str(task.output), True))
        env = {**inputs, "output": value}
        for node, src in exprs:
            checks.append(_eval_check(expr_kind, src, src, node, env))
        for c in task.constraints:
            checks.append(_eval_check("constraint", c.name, c.source, c.expr, env, c.description))
    return Sample(inputs, value, result.parsed.raw, checks, g.prompt_tokens, g.completion_tokens, g.seconds,
                  g.cached)


def _eval_check(kind: str, name: str, src: str, node, env, description: str | None = None) -> Check:
    o = check_expr(node, env)
    details = list(o.details)
    if description and not o.ok:
        details.insert(0, description)
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

    @staticmethod
    def key(inputs: dict[str, Any], sample: int) -> tuple[str, int]:
        return json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=str), sample

    def run(self, batch: list[tuple[dict[str, Any], int]]) -> list[Result]:
        from promptc.execution import run_requests

        todo: dict[int, list[tuple[str, int]]] = {}
        for inputs, sample in batch:
            k = self.key(inputs, sample)
            if k not in self.memo:
                todo.setdefault(sample, [])
                if k not in todo[sample]:
                    todo[sample].append(k)
        for sample, keys in todo.items():
            ins = [json.loads(k[0]) for k in keys]
            if self.progress:
                self.progress(f"generating {len(ins)} output{'s' if len(ins) != 1 else ''} (sample {sample + 1})")
            results = run_requests(self.subject.backend, self.subject.requests(ins), ins, self.subject.decoding,
                                   self.cache, sample)
            self.requests += len(results)
            for k, r in zip(keys, results):
                self.memo[k] = r
        return [self.memo[self.key(i, s)] for i, s in batch]


def _draw(strategy, n: int, body: Callable[[Any], None], shrink: bool) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=phases,
              suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False)
    @given(strategy)
    def prop(x):
        body(x)

    prop()


class PropertyFailed(AssertionError):
    pass


def run_suite(program: ir.Program, task: ir.Task, subject: Subject, *, repeat: int = 1, min_pass: float = 1.0,
              max_examples: int | None = None, pattern: str | None = None, cache: Any = None,
              progress: Callable[[str], None] | None = None) -> Report:
    """Run the program's tests for `task` against `subject`; return a Report."""
    from promptc.schema import generator_strategy, strategy

    t0 = time.perf_counter()
    suite = program.tests_for(task.name)
    ev = Evaluator(subject, cache, progress)
    selected = lambda name: pattern is None or _matches(pattern, name)  # noqa: E731
    cases = [c for c in suite.cases if selected(c.name)]
    props = [p for p in suite.properties if selected(p.name)]
    skipped = [c.name for c in suite.cases if not selected(c.name)] + \
              [p.name for p in suite.properties if not selected(p.name)]

    # 1. draw property inputs (no model calls), deterministically
    drawn: dict[str, list[dict[str, Any]]] = {}
    strategies = {}
    for p in props:
        overrides = {}
        for g in p.givens:
            path = tuple("[]" if isinstance(part, int) else part for part in g.path)
            overrides[path] = generator_strategy(g.generator, g.args, dict(g.kwargs))
        strategies[p.name] = strategy(task.input_type, overrides)
        n = max_examples or p.max_examples or DEFAULT_MAX_EXAMPLES
        xs: list[dict[str, Any]] = []
        _draw(strategies[p.name], n, xs.append, shrink=False)
        drawn[p.name] = _dedupe(xs)

    # 2. one batch for every case and property input, for every sample
    batch = [(c.input, s) for c in cases for s in range(repeat)]
    batch += [(x, s) for p in props for x in drawn[p.name] for s in range(repeat)]
    ev.run(batch)

    results: list[TestResult] = []
    for c in cases:
        samples = [judge(task, c.input, r, c.expects, "expect")
                   for r in ev.run([(c.input, s) for s in range(repeat)])]
        rate = sum(s.passed for s in samples) / len(samples)
        results.append(TestResult(c.name, "case", "passed" if rate >= min_pass else "failed", c.origin, samples,
                                  rate, 1, 0 if rate >= min_pass else 1))

    for p in props:
        def verdict(x: dict[str, Any], p=p) -> tuple[bool, list[Sample]]:
            samples = [judge(task, x, r, p.checks, "check") for r in ev.run([(x, s) for s in range(repeat)])]
            return sum(s.passed for s in samples) / len(samples) >= min_pass, samples

        all_samples: list[Sample] = []
        failing_inputs = 0
        for x in drawn[p.name]:
            ok, samples = verdict(x)
            all_samples.extend(samples)
            failing_inputs += not ok
        tried = len(drawn[p.name])
        res = TestResult(p.name, "property", "passed" if failing_inputs == 0 else "failed", p.origin, all_samples,
                         (tried - failing_inputs) / max(1, tried), tried, failing_inputs)
        if failing_inputs:
            res.shrunk = _shrink(strategies[p.name], max_examples or p.max_examples or DEFAULT_MAX_EXAMPLES,
                                 verdict, progress)
        results.append(res)

    for name in skipped:
        results.append(TestResult(name, "case" if any(c.name == name for c in suite.cases) else "property",
                                  "skipped", reason="deselected by -k"))

    report = Report(program.name, task.name, subject.describe(), results, time.perf_counter() - t0)
    for r in ev.memo.values():
        g = r.generation
        report.requests += 1
        report.cached += g.cached
        report.prompt_tokens += g.prompt_tokens
        report.completion_tokens += g.completion_tokens
        report.model_seconds += g.seconds
    return report


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
