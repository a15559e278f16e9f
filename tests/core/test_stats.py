"""The statistics behind reports and compare, each against a hand-computed value or scipy."""

from __future__ import annotations

import math
import random

import pytest

from promptc.testing import stats

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (8, 10), (10, 10), (57, 120), (9990, 10000)])
def test_wilson_matches_scipy(k, n):
    r = stats.wilson(k, n)
    ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert r.low == pytest.approx(ci.low, abs=1e-12) and r.high == pytest.approx(ci.high, abs=1e-12)


def test_wilson_by_hand():
    # 8 of 10: centre (0.8 + z^2/20) / (1 + z^2/10), half-width z sqrt(0.016 + z^2/400) / (1 + z^2/10)
    z = 1.959963984540054
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / (1 + z * z / 10)
    r = stats.wilson(8, 10)
    assert (round(r.low, 4), round(r.high, 4)) == (0.4902, 0.9433)
    assert r.low == pytest.approx(centre - half) and r.high == pytest.approx(centre + half)
    assert stats.wilson(0, 0).to_json() == {"k": 0, "n": 0, "rate": 0.0, "ci95": [0.0, 1.0]}
    with pytest.raises(ValueError):
        stats.wilson(11, 10)


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (1, 0), (3, 9), (9, 3), (10, 10), (0, 6), (40, 61), (480, 530)])
def test_mcnemar_matches_scipy_binomtest(b, c):
    expected = 1.0 if b + c == 0 else scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue
    assert stats.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_by_hand():
    # b=1, c=5: 2 * (C(6,0) + C(6,1)) / 2^6 = 2 * 7 / 64
    assert stats.mcnemar_exact(1, 5) == pytest.approx(14 / 64)
    assert stats.min_discordant(0.05) == 6  # 2/2^5 = 0.0625 >= 0.05, 2/2^6 = 0.03125 < 0.05
    assert 0 < stats.mcnemar_exact(4000, 4200) < 1  # large n stays exact and finite


def test_classification_by_hand():
    expected = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", None, "a"]
    c = stats.classification(expected, predicted, labels=["a", "b", "c"])
    assert c.labels == ["a", "b", "c", "(invalid)"]
    assert c.matrix == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert (c.accuracy.k, c.accuracy.n) == (3, 6)
    by = {m.label: m for m in c.per_label}
    # a: tp 2, predicted 3, support 3 -> P 2/3, R 2/3, F1 2/3; b: tp 1, predicted 2, support 2 -> 1/2, 1/2
    assert by["a"].precision.value == pytest.approx(2 / 3) and by["a"].recall.value == pytest.approx(2 / 3)
    assert by["a"].f1 == pytest.approx(2 / 3)
    assert by["b"].f1 == pytest.approx(0.5) and by["b"].support == 2
    assert by["c"].precision.n == 0 and by["c"].f1 == 0.0 and by["c"].support == 1
    assert c.macro_f1 == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def test_classification_matches_a_direct_count_on_random_labels():
    rng = random.Random(3)
    labels = ["x", "y", "z"]
    exp = [rng.choice(labels) for _ in range(500)]
    pred = [e if rng.random() < 0.7 else rng.choice(labels) for e in exp]
    c = stats.classification(exp, pred, labels)
    for m in c.per_label:
        tp = sum(e == p == m.label for e, p in zip(exp, pred))
        assert m.precision.value == pytest.approx(tp / pred.count(m.label))
        assert m.recall.value == pytest.approx(tp / exp.count(m.label))
    assert c.accuracy.value == pytest.approx(sum(e == p for e, p in zip(exp, pred)) / 500)


def test_field_match_by_hand():
    expected = [{"tag": "bug", "n": 1}, {"tag": "billing", "n": 2}, {"tag": "bug"}]
    predicted = [{"tag": "bug", "n": 1.0}, {"tag": "bug", "n": 2}, None]
    fm = stats.field_match(expected, predicted)
    assert (fm.fields["tag"].k, fm.fields["tag"].n) == (1, 3)
    assert (fm.fields["n"].k, fm.fields["n"].n) == (2, 2)
    assert (fm.all_fields.k, fm.all_fields.n) == (1, 3)
    assert stats.same_value({"a": [1, 2]}, {"a": [1.0, 2]}) and not stats.same_value(True, 1)


def test_bootstrap_agrees_with_naive_case_resampling():
    import numpy as np

    rng = random.Random(0)
    a = [rng.random() < 0.8 for _ in range(300)]
    b = [x if rng.random() < 0.85 else not x for x in a]
    diff, low, high = stats.bootstrap_diff(a, b, resamples=4000, seed=1)
    assert diff == pytest.approx((sum(a) - sum(b)) / 300)
    g = np.random.default_rng(2)
    aa, bb = np.array(a, float), np.array(b, float)
    idx = g.integers(0, 300, size=(4000, 300))
    naive = (aa[idx] - bb[idx]).mean(axis=1)
    nlow, nhigh = np.quantile(naive, [0.025, 0.975])
    assert low == pytest.approx(nlow, abs=0.012) and high == pytest.approx(nhigh, abs=0.012)
    assert low < diff < high
    assert stats.bootstrap_diff(a, b, seed=5) == stats.bootstrap_diff(a, b, seed=5)
    assert stats.bootstrap_diff([True] * 9, [True] * 9) == (0.0, 0.0, 0.0)


def test_paired_verdicts_say_when_n_is_too_small():
    small = stats.paired("A", [True, True, False], "B", [True, False, False])
    assert small.verdict.startswith("too few cases to tell: 1 of 3 cases differ")
    clear = stats.paired("A", [True] * 30 + [False] * 10, "B", [False] * 20 + [True] * 10 + [False] * 10)
    assert (clear.only_a, clear.only_b, clear.both) == (20, 0, 10)
    assert clear.verdict.startswith("A is better (p = ")
    assert clear.p_value == pytest.approx(scipy_stats.binomtest(0, 20, 0.5).pvalue)
    even = stats.paired("A", [True, False] * 20, "B", [False, True] * 20)
    assert even.verdict.startswith("no significant difference")
    assert stats.paired("A", [], "B", []).verdict == "no shared cases: nothing to compare"
