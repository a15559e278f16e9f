"""Test stage: the statistics behind reports and `promptc compare`. Wilson intervals for rates,
classification metrics (accuracy, per-label precision/recall/F1, a confusion matrix), per-field exact
match for record outputs, and the paired tests between two subjects run on the same cases (exact
McNemar on per-case pass/fail, a bootstrap interval on the difference in pass rate).

Everything here is pure arithmetic on counts and lists; numpy is imported only for the bootstrap.
Each function is checked against a hand-computed value or scipy on the same numbers in
tests/core/test_stats.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Z95 = 1.959963984540054  # the standard normal quantile for a two-sided 95% interval
INVALID = "(invalid)"  # the predicted label of an output that did not parse


@dataclass(frozen=True)
class Rate:
    """k successes out of n, with a Wilson score interval."""

    k: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "n": self.n, "rate": round(self.value, 4),
                "ci95": [round(self.low, 4), round(self.high, 4)]}

    def __str__(self) -> str:
        if not self.n:
            return "-"
        return f"{self.value:.1%} [{self.low:.1%}, {self.high:.1%}]"


def wilson(k: int, n: int, z: float = Z95) -> Rate:
    """The Wilson score interval for k of n (for n = 0: the whole of [0, 1]). Unlike the normal
    approximation it stays inside [0, 1] and is honest at 0/n and n/n, which small suites hit often."""
    if n <= 0:
        return Rate(0, 0, 0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k={k} is not between 0 and n={n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Rate(k, n, max(0.0, centre - half), min(1.0, centre + half))


# ------------------------------------------------------------------ classification
@dataclass
class LabelMetrics:
    label: str
    precision: Rate  # of the outputs labelled L, the share that were L
    recall: Rate  # of the cases that were L, the share labelled L
    f1: float
    support: int

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "precision": self.precision.to_json(), "recall": self.recall.to_json(),
                "f1": round(self.f1, 4), "support": self.support}


@dataclass
class Classification:
    """Metrics for an enum output over labelled cases. `labels` orders the confusion matrix: the
    enum's members first (declaration order), then anything else seen (e.g. `(invalid)`)."""

    labels: list[str]
    matrix: list[list[int]]  # matrix[i][j]: expected labels[i], predicted labels[j]
    accuracy: Rate
    per_label: list[LabelMetrics]
    macro_f1: float

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy.to_json(), "macro_f1": round(self.macro_f1, 4),
                "per_label": [m.to_json() for m in self.per_label],
                "confusion": {"labels": self.labels, "matrix": self.matrix}}


def classification(expected: Sequence[Any], predicted: Sequence[Any],
                   labels: Sequence[str] = ()) -> Classification:
    """Accuracy, per-label precision/recall/F1 and the confusion matrix. A prediction of None (an
    output that did not parse) counts as the label `(invalid)`: wrong for every case. Precision of a
    label never predicted is 0/0 (reported as 0, as scikit-learn's zero_division=0 does)."""
    if len(expected) != len(predicted):
        raise ValueError("classification: expected and predicted differ in length")
    exp = [str(e) for e in expected]
    pred = [INVALID if p is None else str(p) for p in predicted]
    order = list(dict.fromkeys([*labels, *exp, *pred]))
    if INVALID in order:  # keep the invalid column last
        order.remove(INVALID)
        order.append(INVALID)
    index = {lab: i for i, lab in enumerate(order)}
    m = [[0] * len(order) for _ in order]
    for e, p in zip(exp, pred):
        m[index[e]][index[p]] += 1
    correct = sum(m[i][i] for i in range(len(order)))
    per = []
    for i, lab in enumerate(order):
        if lab == INVALID:
            continue
        tp = m[i][i]
        predicted_as = sum(m[r][i] for r in range(len(order)))
        support = sum(m[i])
        prec, rec = wilson(tp, predicted_as), wilson(tp, support)
        p_v, r_v = prec.value, rec.value
        per.append(LabelMetrics(lab, prec, rec, 2 * p_v * r_v / (p_v + r_v) if p_v + r_v else 0.0, support))
    with_support = [x for x in per if x.support]
    macro = sum(x.f1 for x in with_support) / len(with_support) if with_support else 0.0
    return Classification(order, m, wilson(correct, len(exp)), per, macro)


@dataclass
class FieldMatch:
    """Per-field exact-match rates of record outputs against the expected records."""

    fields: dict[str, Rate] = field(default_factory=dict)
    all_fields: Rate = field(default_factory=lambda: wilson(0, 0))

    def to_json(self) -> dict[str, Any]:
        return {"fields": {k: v.to_json() for k, v in self.fields.items()}, "all": self.all_fields.to_json()}


def field_match(expected: Sequence[dict[str, Any]], predicted: Sequence[Any],
                names: Sequence[str] = ()) -> FieldMatch:
    """For each field named in an expected record, the share of outputs whose field is equal (JSON
    equality: 1 == 1.0, key order ignored). An output that did not parse misses every field. `all`
    is the share of outputs that match every expected field."""
    hits: dict[str, list[int]] = {n: [0, 0] for n in names}
    whole = 0
    for e, p in zip(expected, predicted):
        ok_all = True
        for k, v in e.items():
            h = hits.setdefault(k, [0, 0])
            h[1] += 1
            same = isinstance(p, dict) and k in p and same_value(p[k], v)
            h[0] += same
            ok_all &= same
        whole += ok_all
    return FieldMatch({k: wilson(a, b) for k, (a, b) in hits.items() if b}, wilson(whole, len(expected)))


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: numbers compare by value, records ignore key order, bools are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------ paired comparison
def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b cases only A passed, c cases only B passed. Under the null
    each discordant case is a fair coin, so p = min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)])."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    term, total = 1, 1  # C(n, 0), then C(n, i) by the ratio (n - i) / (i + 1), in exact integers
    for i in range(k):
        term = term * (n - i) // (i + 1)
        total += term
    return min(1.0, 2 * total / (1 << n))  # int / int is correctly rounded in Python, however large


def min_discordant(alpha: float = 0.05) -> int:
    """The fewest discordant cases with which the exact McNemar test can reach p < alpha at all
    (even when every one goes the same way, p = 2 / 2**n)."""
    n = 1
    while 2 / (1 << n) >= alpha:
        n += 1
    return n


def bootstrap_diff(a: Sequence[bool], b: Sequence[bool], *, resamples: int = 4000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """The difference in pass rate (A - B) on paired cases and its percentile bootstrap interval.
    Resampling cases with replacement only changes how many fall in each of the four (A, B) outcome
    cells, so one multinomial draw per resample is the exact case bootstrap, at any n."""
    import numpy as np  # numpy: the multinomial draw makes 10,000-case bootstraps take milliseconds

    if len(a) != len(b):
        raise ValueError("bootstrap_diff: the two subjects were run on different numbers of cases")
    n = len(a)
    if n == 0:
        return 0.0, 0.0, 0.0
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [only_a / n, only_b / n, 1 - (only_a + only_b) / n], size=resamples)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return (only_a - only_b) / n, float(low), float(high)


@dataclass
class Paired:
    """Two subjects on the same cases: counts, the exact McNemar p-value, the bootstrap interval and
    a plain verdict."""

    a: str
    b: str
    n: int
    both: int
    only_a: int
    only_b: int
    neither: int
    p_value: float
    diff: float
    low: float
    high: float
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "n": self.n, "both_pass": self.both, "only_a": self.only_a,
                "only_b": self.only_b, "neither": self.neither, "mcnemar_p": float(f"{self.p_value:.6g}"),
                "diff": round(self.diff, 4), "diff_ci95": [round(self.low, 4), round(self.high, 4)],
                "verdict": self.verdict}


def paired(name_a: str, a: Sequence[bool], name_b: str, b: Sequence[bool], *, alpha: float = 0.05,
           seed: int = 0) -> Paired:
    """Compare two subjects' per-case pass/fail on the same cases, in the same order."""
    n = len(a)
    both = sum(1 for x, y in zip(a, b) if x and y)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    p = mcnemar_exact(only_a, only_b)
    diff, low, high = bootstrap_diff(a, b, seed=seed)
    need = min_discordant(alpha)
    if n == 0:
        verdict = "no shared cases: nothing to compare"
    elif only_a + only_b < need:
        verdict = (f"too few cases to tell: {only_a + only_b} of {n} cases differ, and the exact test needs at "
                   f"least {need} that differ before any split could be significant at p < {alpha}")
    elif p < alpha:
        better = name_a if only_a > only_b else name_b
        verdict = f"{better} is better (p = {p:.3g}, {abs(diff):.1%} more cases pass)"
    else:
        verdict = f"no significant difference (p = {p:.3g})"
    return Paired(name_a, name_b, n, both, only_a, only_b, n - both - only_a - only_b, p, diff, low, high, verdict)


def flaky(outcomes: Sequence[bool]) -> bool:
    """A test is flaky when its repeated samples of the same input disagree."""
    return any(outcomes) and not all(outcomes)


def case_key(test: str, inputs: Any) -> str:
    """The identity of one judged input across runs (baselines, paired comparison)."""
    return test + "\x00" + json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=str)
