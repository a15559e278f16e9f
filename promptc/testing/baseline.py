"""`promptc test --save-baseline FILE` and `--baseline FILE`: record per-case outcomes and outputs, and
later hold a run against them (after a model update, a prompt change, a new artifact). Newly failing
cases are a regression (exit 1); newly passing cases and changed outputs are reported.

A "case" here is one judged input of one test: an inline case, a dataset row, or a property input (drawn
property inputs are derandomised, so the same program draws the same ones). Repeats are folded: an input
passes when all its samples pass, and its recorded output is that of the first sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptc.errors import UsageError
from promptc.testing import stats
from promptc.testing.suite import Report

BASELINE_VERSION = 1


def outcomes(report: Report) -> dict[str, dict[str, Any]]:
    """Per judged input: test, input, passed (all samples), output and raw text of the first sample."""
    out: dict[str, dict[str, Any]] = {}
    for r in report.results:
        if r.status == "skipped":
            continue
        for s in r.samples:
            k = stats.case_key(r.name, s.input)
            if k in out:
                out[k]["passed"] = out[k]["passed"] and s.passed
                continue
            out[k] = {"test": r.name, "kind": r.kind, "input": s.input, "passed": s.passed, "output": s.output,
                      "raw": s.raw}
    return out


def save_baseline(reports: list[Report], path: str | Path) -> int:
    """Write the baseline file; returns the number of recorded cases."""
    doc: dict[str, Any] = {"promptc_baseline": BASELINE_VERSION,
           "tasks": {r.task: {"program": r.program, "subject": r.subject,
                              "cases": list(outcomes(r).values())} for r in reports}}
    Path(path).write_text(json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return sum(len(t["cases"]) for t in doc["tasks"].values())


def load_baseline(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        from promptc.nearby import near_hint

        raise UsageError(f"cannot read the baseline {p}: {e.strerror}",
                         hint=(near_hint(p) if isinstance(e, FileNotFoundError) else None)
                         or "write one with promptc test --save-baseline FILE") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"the baseline {p} is not valid JSON: {e}") from None
    version = doc.get("promptc_baseline") if isinstance(doc, dict) else None
    if version != BASELINE_VERSION or not isinstance(doc.get("tasks"), dict):
        raise UsageError(f"{p} is not a promptc baseline (version {BASELINE_VERSION})",
                         hint="write one with promptc test --save-baseline FILE")
    return doc


@dataclass
class Drift:
    """A run against its baseline, for one task."""

    task: str
    newly_failing: list[dict[str, Any]] = field(default_factory=list)
    newly_passing: list[dict[str, Any]] = field(default_factory=list)
    changed_outputs: list[dict[str, Any]] = field(default_factory=list)  # same verdict, different output
    new_cases: int = 0
    missing_cases: int = 0
    unchanged: int = 0

    @property
    def regression(self) -> bool:
        return bool(self.newly_failing)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "regression": self.regression, "newly_failing": self.newly_failing,
                "newly_passing": self.newly_passing, "changed_outputs": self.changed_outputs,
                "new_cases": self.new_cases, "missing_cases": self.missing_cases, "unchanged": self.unchanged}


def diff(report: Report, baseline: dict[str, Any]) -> Drift:
    """Compare a run with the baseline's record of the same task."""
    d = Drift(report.task)
    task = baseline["tasks"].get(report.task)
    if task is None:
        raise UsageError(f"the baseline has no record of task '{report.task}'",
                         hint=f"it records: {', '.join(baseline['tasks']) or 'nothing'}")
    before = {stats.case_key(c["test"], c["input"]): c for c in task["cases"]}
    now = outcomes(report)
    for k, c in now.items():
        old = before.get(k)
        if old is None:
            d.new_cases += 1
            continue
        entry = {"test": c["test"], "input": c["input"], "before": old.get("output"), "after": c["output"]}
        if old["passed"] and not c["passed"]:
            d.newly_failing.append(entry)
        elif c["passed"] and not old["passed"]:
            d.newly_passing.append(entry)
        elif not stats.same_value(old.get("output"), c["output"]) or old.get("raw") != c["raw"]:
            d.changed_outputs.append(entry)
        else:
            d.unchanged += 1
    d.missing_cases = sum(1 for k in before if k not in now)
    return d


def _short(v: Any, n: int = 120) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= n else s[: n - 3] + "..."


def to_text(drifts: list[Drift], path: str) -> str:
    lines = []
    for d in drifts:
        lines.append(f"against baseline {path} (task {d.task}): {len(d.newly_failing)} newly failing, "
                     f"{len(d.newly_passing)} newly passing, {len(d.changed_outputs)} changed outputs, "
                     f"{d.unchanged} unchanged" + (f", {d.new_cases} new" if d.new_cases else "") +
                     (f", {d.missing_cases} no longer run" if d.missing_cases else ""))
        for title, items in (("NEWLY FAILING", d.newly_failing), ("newly passing", d.newly_passing),
                             ("changed output", d.changed_outputs)):
            for e in items[:20]:
                lines.append(f"  {title}: {e['test']}  input {_short(e['input'])}")
                lines.append(f"    before: {_short(e['before'])}")
                lines.append(f"    after:  {_short(e['after'])}")
            if len(items) > 20:
                lines.append(f"  ... and {len(items) - 20} more {title.lower()}")
    verdict = "regression: cases that passed in the baseline fail now" if any(d.regression for d in drifts) \
        else "no regression"
    lines.append(verdict)
    return "\n".join(lines)
