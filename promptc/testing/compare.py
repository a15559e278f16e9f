"""`promptc compare`: one suite, several subjects (text targets on several models, artifacts), side by
side, and a decision: per-test pass rates, case-level pass rates with Wilson intervals, robustness,
dataset metrics, cost (tokens, latency, money at the user's price table, training and the break-even
point of an artifact), and for each pair of subjects a paired test on the cases both ran (exact
McNemar on per-case pass/fail, a bootstrap interval on the difference). Text, JSON and HTML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from promptc.errors import UsageError
from promptc.models.loading import parse_model_spec
from promptc.testing import stats
from promptc.testing.report import closed_outputs, repaired_outputs
from promptc.testing.suite import Report
from promptc.testing.table import summary_rows

COMPARE_VERSION = 1  # the JSON comparison's format version


@dataclass
class Subject:
    """One column of the comparison: a label, its report, and for an artifact what training cost."""

    label: str
    report: Report
    training: dict[str, Any] = field(default_factory=dict)  # seconds, device, trainable_parameters


# ------------------------------------------------------------------ money
def load_price_table(path: str | None) -> dict[str, dict[str, float]]:
    """The one place compare reads prices: the openai backend's price table format,
    `{"model": {"input": USD, "output": USD}}` per million tokens, from `--prices FILE` or $PROMPTC_PRICES.
    Local models can be priced too, by their spec (`tiny-causal`, `hf:./base`), as the cost of serving them."""
    from promptc.models.openai import load_prices

    return load_prices(path)


def price_for(prices: dict[str, dict[str, float]], model: str | None) -> dict[str, float] | None:
    """The price entry of a subject's model: by its full spec, or by the model name the spec parses to
    (`openai:gpt-x@http://host/v1` -> `gpt-x`; `openai:team@1.0.0` -> `team@1.0.0`, since `@` followed by a
    version belongs to the name). The spec is read by `parse_model_spec`, the one parser of model specs."""
    if not model:
        return None
    if model in prices:
        return prices[model]
    try:
        spec = parse_model_spec(model)
    except UsageError:  # not a spec (e.g. a label): priced only by its exact name, above
        return None
    return prices.get(spec.name)


def usd_per_request(usage: dict[str, Any], price: dict[str, float] | None) -> float | None:
    if price is None:
        return None
    return (usage["prompt_tokens_per_request"] * price.get("input", 0.0) +
            usage["completion_tokens_per_request"] * price.get("output", 0.0)) / 1e6


def break_even(training_usd: float | None, text_usd: float | None, artifact_usd: float | None) -> dict[str, Any]:
    """Requests after which an artifact (training paid once, cheaper requests) costs less than a text prompt."""
    if training_usd is None:
        return {"requests": None, "note": "training cost unknown: give --training-cost USD (or --training-price "
                                          "USD/hour for an artifact that records its training time)"}
    if text_usd is None or artifact_usd is None:
        return {"requests": None, "note": "no price for one of the models (give --prices FILE.json)"}
    saving = text_usd - artifact_usd
    if saving <= 0:
        return {"requests": None, "note": "never: the artifact costs as much or more per request"}
    n = int(-(-training_usd // saving)) if training_usd > 0 else 0
    return {"requests": n, "note": f"saves ${saving:.6f} per request; training cost ${training_usd:.4f}"}


def artifact_training(directory: str) -> dict[str, Any]:
    """What training a tuned artifact took, from its manifest: trainable parameters, device and (when the
    manifest records it) wall-clock seconds. Artifacts are byte-identical for a seed, so a manifest may
    leave the time out; compare then shows it as unknown."""
    from promptc.artifacts import read_manifest

    m = read_manifest(directory)
    res = m.get("resources") or {}
    training = m.get("training") or {}
    seconds = training.get("seconds", res.get("train_seconds"))
    return {"seconds": seconds, "device": res.get("device"), "trainable_parameters": m.get("trainable_parameters"),
            "steps": training.get("steps")}


# ------------------------------------------------------------------ the comparison as data
def comparison(subjects: list[Subject], prices: dict[str, dict[str, float]] | None = None,
               training_price: float | None = None, seed: int = 0,
               training_cost: float | None = None) -> dict[str, Any]:
    """Everything the text, JSON and HTML forms show, as one JSON-able dict. An artifact's training cost is
    its recorded training time at `training_price` USD per hour, else `training_cost` USD when given."""
    prices = prices or {}
    rows = []
    for s in subjects:
        r = s.report
        usage = r.usage()
        outcomes = r.case_outcomes()
        usd = usd_per_request(usage, price_for(prices, r.subject.get("model")))
        train = dict(s.training)
        if train:
            secs = train.get("seconds")
            train["usd"] = secs / 3600 * training_price if secs is not None and training_price is not None \
                else training_cost
        rob = r.robustness()
        rows.append({
            "label": s.label, "kind": r.subject.get("kind"), "name": r.subject.get("name"),
            "model": r.subject.get("model"),
            "summary": {"passed": r.passed, "failed": r.failed, "skipped": r.skipped, "total": len(r.results),
                        "cutoffs": r.cutoffs, "repaired": repaired_outputs(r), "closed": closed_outputs(r)},
            "cases": stats.wilson(sum(outcomes.values()), len(outcomes)).to_json(),
            "robustness": rob.to_json() if rob else None,
            "flaky": r.flaky_tests(),
            "tests": {t.name: {"kind": t.kind, "status": t.status, "pass_rate": round(t.pass_rate, 4),
                               "ci95": [round(t.interval.low, 4), round(t.interval.high, 4)]}
                      for t in r.results},
            "metrics": {t.name: t.metrics for t in r.results if t.metrics},
            "cost": {**{k: usage[k] for k in ("requests", "prompt_tokens_per_request", "completion_tokens_per_request",
                                               "latency_per_request_s")},
                     "usd_per_request": usd, "usd_per_1k_requests": None if usd is None else usd * 1000},
            "trainable_parameters": usage.get("trainable_parameters", 0),
            "training": train or None,
        })
    texts = [row for row in rows if not row["training"]]
    for row in rows:
        if row["training"] and texts:
            ref = texts[0]
            row["break_even"] = {"against": ref["label"],
                                 **break_even(row["training"].get("usd"), ref["cost"]["usd_per_request"],
                                              row["cost"]["usd_per_request"])}
        else:
            row["break_even"] = None
    pairs = []
    per_case = [s.report.case_outcomes() for s in subjects]
    for i in range(len(subjects)):
        for j in range(i + 1, len(subjects)):
            shared = sorted(set(per_case[i]) & set(per_case[j]))
            p = stats.paired(subjects[i].label, [per_case[i][k] for k in shared],
                             subjects[j].label, [per_case[j][k] for k in shared], seed=seed)
            pairs.append(p.to_json())
    first = subjects[0].report if subjects else None
    return {"promptc_compare": COMPARE_VERSION, "program": first.program if first else None,
            "task": first.task if first else None, "subjects": rows, "pairs": pairs}


# ------------------------------------------------------------------ text
def to_text(data: dict[str, Any]) -> str:
    subs = data["subjects"]
    tests: list[str] = []
    for s in subs:
        for name in s["tests"]:
            if name not in tests:
                tests.append(name)

    def cell(s: dict[str, Any], name: str) -> str:
        t = s["tests"].get(name)
        if t is None or t["status"] == "skipped":
            return "-"
        return f"{t['pass_rate']:.0%}" + ("" if t["status"] == "passed" else " FAIL")

    rows = [["test", *(s["label"] for s in subs)]]
    rows += [[name, *(cell(s, name) for s in subs)] for name in tests]
    n_tests = len(rows) - 1
    rows += [[label, *cells] for label, cells in summary_rows(subs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if k == 0 or k == n_tests:
            lines.append("  ".join("-" * w for w in widths))
    flaky = [f"{s['label']}: {', '.join(s['flaky'])}" for s in subs if s["flaky"]]
    if flaky:
        lines.append("flaky tests (repeated samples disagreed): " + "; ".join(flaky))
    notes = [f"{s['label']}: {s['break_even']['note']}" for s in subs if s["break_even"]]
    lines.extend(f"break-even {n}" for n in notes)
    if data["pairs"]:
        lines.append("")
        lines.append("paired comparison on the same cases (exact McNemar; 95% bootstrap interval of the difference):")
        for p in data["pairs"]:
            lines.append(f"  {p['a']} vs {p['b']}: n={p['n']}, only {p['a']} passed {p['only_a']}, only {p['b']} "
                         f"passed {p['only_b']}; difference {p['diff']:+.1%} [{p['diff_ci95'][0]:+.1%}, "
                         f"{p['diff_ci95'][1]:+.1%}]; p = {p['mcnemar_p']:.3g}")
            lines.append(f"    -> {p['verdict']}")
    return "\n".join(lines)


def compare(reports: list[Report], fmt: str = "text", *, labels: list[str] | None = None,
            training: list[dict[str, Any]] | None = None, prices: dict[str, dict[str, float]] | None = None,
            training_price: float | None = None, seed: int = 0, training_cost: float | None = None) -> str:
    """The comparison of `reports` (one per subject, same task) as text, json or html."""
    labels = labels or [r.subject["name"] for r in reports]
    training = training or [{} for _ in reports]
    data = comparison([Subject(lab, r, t) for lab, r, t in zip(labels, reports, training)], prices, training_price,
                      seed, training_cost)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "html":
        from promptc.testing.html import to_html

        return to_html(data)
    return to_text(data)
