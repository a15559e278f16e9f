"""Evaluation without models: datasets and their metrics, robustness properties and perturbations,
repeats and flakiness, judge(), baselines, compare (paired tests, cost, break-even) and the HTML report.
A deterministic fake backend stands in for the model; what is under test is promptc's own judging."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import promptc
from promptc.models.base import Generation
from promptc.testing import baseline, perturb, stats
from promptc.testing.compare import Subject, break_even, compare, comparison
from promptc.testing.report import to_json, to_junit, to_text
from tests.conftest import CASES


class Fake:
    """Answers with `respond(prompt_text, sample)`; counts calls."""

    spec = "fake"

    def __init__(self, respond, name="fake"):
        self.respond, self.name, self.calls = respond, name, 0

    def identity(self):
        return f"fake:{self.name}"

    def request_key(self, r, d):
        return r.prompt

    def generate(self, requests, decoding, sample=0):
        self.calls += len(requests)
        return [Generation(self.respond(r.prompt, sample), 10, 2, 0.01) for r in requests]


def data_of(prompt: str) -> str:
    found = re.findall(r"<([\w.]+)>(.*?)</\1>", prompt, re.S)
    return found[-1][1] if found else ""


ROUTE = '''
enum Queue { billing, bug, other }
task route(text: str [max_len=80]) -> Queue {
  prompt "Route: {{ text }}"
}
test route {
  cases "rows.jsonl"
}
'''
ROWS = [("refund my card", "billing"), ("charged twice", "billing"), ("invoice wrong", "billing"),
        ("app crashes", "bug"), ("button broken", "bug"), ("hello there", "other")]


def keyword_router(prompt: str, sample: int = 0) -> str:
    text = data_of(prompt)
    if "card" in text or "charged" in text:
        return "billing"
    if "crash" in text or "invoice" in text:
        return "bug"
    return "not a queue" if "button" in text else "other"


def load(tmp_path, source: str, rows=ROWS, name: str = "rows.jsonl"):
    (tmp_path / name).write_text("".join(json.dumps({"input": {"text": t}, "output": o}) + "\n" for t, o in rows))
    path = tmp_path / "p.prompt"
    path.write_text(source)
    return promptc.load(path)


def test_dataset_metrics_by_hand(tmp_path):
    prog = load(tmp_path, ROUTE)
    report = prog.task("route").test(model=Fake(keyword_router), cache=False)
    (ds,) = report.results
    assert (ds.kind, ds.name, ds.inputs_tried, ds.inputs_failed, ds.status) == ("dataset", "rows.jsonl", 6, 2, "failed")
    c = ds.metrics["classification"]
    # expected billing x3 -> billing, billing, bug; bug x2 -> bug, (invalid); other -> other
    assert c["confusion"] == {"labels": ["billing", "bug", "other", "(invalid)"],
                              "matrix": [[2, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]]}
    assert c["accuracy"]["k"] == 4 and c["accuracy"]["n"] == 6
    by = {x["label"]: x for x in c["per_label"]}
    assert by["billing"]["precision"]["rate"] == 1.0 and by["billing"]["recall"]["rate"] == pytest.approx(0.6667)
    assert by["bug"]["precision"]["rate"] == 0.5 and by["bug"]["recall"]["rate"] == 0.5
    assert by["billing"]["f1"] == pytest.approx(0.8)
    lo, hi = stats.wilson(4, 6).low, stats.wilson(4, 6).high
    assert c["accuracy"]["ci95"] == [round(lo, 4), round(hi, 4)]
    text = to_text(report)
    assert 'FAIL  cases "rows.jsonl"  (4 of 6 rows passed' in text and "confusion (rows expected" in text
    assert "output: accuracy 66.7% [" in text
    failing = [s for s in ds.samples if not s.passed]
    assert failing[0].expected == "billing" and failing[0].output == "bug"
    assert any("expected \"billing\"" in d for c in failing[0].failed_checks() for d in c.details)
    doc = json.loads(to_json(report))
    assert doc["tests"][0]["metrics"]["classification"]["macro_f1"] == pytest.approx((0.8 + 0.5 + 1.0) / 3, abs=1e-4)
    assert doc["tests"][0]["outputs"][0]["expected"] == "billing"
    xml = to_junit(report)
    assert 'name="cases rows.jsonl"' in xml and "macro F1" in xml


def test_junit_with_metrics_validates(tmp_path):
    import xmlschema

    prog = load(tmp_path, ROUTE)
    report = prog.task("route").test(model=Fake(keyword_router), cache=False)
    xmlschema.XMLSchema(str(CASES / "junit.xsd")).validate(to_junit(report))


def test_dataset_min_pass_and_record_field_match(tmp_path):
    src = '''
enum Tag { a, b }
type Out { tag: Tag, n: int }
task t(text: str) -> Out { prompt "{{ text }}" }
test t { cases "rows.jsonl" { min_pass = 0.5 } }
'''
    rows = [({"text": "x"}, {"tag": "a", "n": 1}), ({"text": "y"}, {"tag": "b", "n": 2}),
            ({"text": "z"}, {"tag": "b", "n": 3})]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in rows))
    (tmp_path / "p.prompt").write_text(src)
    answers = {"x": '{"tag": "a", "n": 1}', "y": '{"tag": "b", "n": 5}', "z": '{"n": 3.0, "tag": "b"}'}
    report = promptc.load(tmp_path / "p.prompt").task("t").test(model=Fake(lambda p, s: answers[data_of(p)]),
                                                                 cache=False)
    (ds,) = report.results
    assert ds.status == "passed" and ds.pass_rate == pytest.approx(2 / 3)
    f = ds.metrics["fields"]
    assert (f["fields"]["tag"]["k"], f["fields"]["n"]["k"], f["all"]["k"]) == (3, 2, 2)
    assert ds.metrics["field_classification"]["tag"]["accuracy"]["k"] == 3


def test_dataset_rows_are_test_inputs(tmp_path):
    src = ROUTE.replace('prompt "Route: {{ text }}"',
                        'prompt "Route: {{ text }}"\n  example { input { text: "charged twice" } output billing }\n'
                        '  example { input { text: "new one" } output other }')
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"input": {"text": t}, "output": o}) + "\n"
                                                 for t, o in ROWS))
    (tmp_path / "p.prompt").write_text(src)
    from promptc.compiler import compile_file

    result = compile_file(tmp_path / "p.prompt")
    assert [d.code for d in result.diagnostics] == ["W401"]
    assert "rows.jsonl:2 uses the same input as an example" in result.diagnostics[0].message
    ir = result.program
    assert ir.is_test_input("route", {"text": "app crashes"})
    kept = ir.without_test_inputs("route", ir.tasks["route"].examples, key=lambda e: e.input)
    assert [e.input for e in kept] == [{"text": "new one"}]


ROBUST = '''
task echo(text: str [max_len=200], mood: str) -> str {
  prompt "{{ mood }} {{ text }}"
}
test echo {
  case "a" { input { text: "Hello World", mood: "calm" } }
  case "b" { input { text: "Good Morning", mood: "calm" } }
  property "case does not matter" {
    from cases
    perturb text = case(mode="upper")
    check lower(output) == lower(original.output)
  }
  property "injections are ignored" {
    from cases
    perturb text = injection(index=0)
    check output == original.output
  }
}
'''


def test_robustness_rate_and_original(tmp_path):
    (tmp_path / "p.prompt").write_text(ROBUST)
    task = promptc.load(tmp_path / "p.prompt").task("echo")
    report = task.test(model=Fake(lambda p, s: data_of(p)), cache=False)
    by = {r.name: r for r in report.results}
    held = by["case does not matter"]
    assert held.status == "passed" and (held.robustness.k, held.robustness.n) == (2, 2)
    broken = by["injections are ignored"]
    assert broken.status == "failed" and (broken.robustness.k, broken.robustness.n) == (0, 2)
    s = broken.samples[0]
    assert s.input["text"] == "Hello World " + perturb.INJECTIONS[0]
    assert s.original.input == {"text": "Hello World", "mood": "calm"} and s.original.output == "Hello World"
    total = report.robustness()
    assert (total.k, total.n) == (2, 4)
    text = to_text(report)
    assert "robustness: 50.0% [" in text and "original output: \"Hello World\"" in text
    assert json.loads(to_json(report))["summary"]["robustness"]["k"] == 2


def test_perturbations_are_deterministic_for_a_seed():
    t = promptc.loads('task t(s: str, n: str) -> str { prompt "{{ s }}{{ n }}" }').task("t").ir.input_type
    x = {"s": "The quick brown fox jumps over the lazy dog, again and again.", "n": "ok"}
    from promptc import ir

    for kind, kwargs in [("typos", (("rate", 0.3),)), ("case", ()), ("whitespace", (("rate", 1.0),)),
                         ("punctuation", (("rate", 1.0),)), ("distractor", (("n", 2),)), ("injection", ())]:
        p = (ir.Perturb(("s",), kind, (), kwargs),)
        a = perturb.apply(x, p, t, 7, "prop")
        assert a == perturb.apply(x, p, t, 7, "prop"), kind
        assert a["s"] != x["s"] and a["n"] == "ok", kind
        others = {perturb.apply(x, p, t, seed, "prop")["s"] for seed in range(8)}
        assert len(others) > 1, kind  # the seed matters
    reo = (ir.Perturb((), "reorder", (), ()),)
    orders = {tuple(perturb.apply(x, reo, t, seed, "p")) for seed in range(8)}
    assert orders == {("s", "n"), ("n", "s")}
    assert perturb.apply(x, (ir.Perturb(("s",), "typos", (), (("rate", 0.0),)),), t, 1, "p") == x


def test_perturbations_keep_max_len_and_match_the_language():
    from promptc.check.datasets import PERTURBATIONS

    assert set(PERTURBATIONS) == set(perturb.PERTURBATIONS)
    for name, (params, _) in PERTURBATIONS.items():
        assert set(params) == set(perturb.PERTURBATIONS[name].params), name
    from promptc import ir

    t = promptc.loads('task t(s: str [max_len=20]) -> str { prompt "{{ s }}" }').task("t").ir.input_type
    out = perturb.apply({"s": "short text"}, (ir.Perturb(("s",), "distractor", (), (("n", 3),)),), t, 0, "p")
    assert len(out["s"]) == 20 and out["s"].startswith("short text ")


def test_greedy_repeats_warn_and_sampled_repeats_name_flaky_tests():
    prog = '''task t(text: str) -> str { prompt "{{ text }}" }
test t {
  case "steady" { input { text: "a" } expect output == "a" }
  case "coin" { input { text: "b" } expect output == "b" }
}'''
    flip = lambda p, s: data_of(p) if data_of(p) == "a" or s % 2 == 0 else "x"  # noqa: E731
    task = promptc.loads(prog).task("t")
    greedy = task.test(model=Fake(flip), cache=False, repeat=4)
    assert greedy.warnings and "greedy decoding (temperature 0)" in greedy.warnings[0]
    sampled = task.test(model=Fake(flip), cache=False, repeat=4, temperature=0.7, min_pass=0.5)
    assert sampled.warnings == []
    coin = next(r for r in sampled.results if r.name == "coin")
    assert coin.status == "passed" and coin.pass_rate == 0.5 and coin.flaky
    assert (coin.interval.k, coin.interval.n) == (2, 4)
    assert sampled.flaky_tests() == ["coin"]
    assert "flaky (repeated samples disagreed): coin" in to_text(sampled)
    assert "(pass rate 50.0% [15.0%, 85.0%] over 4 samples)" in to_text(sampled)


def test_judge_verdicts_reasons_and_cache(tmp_path):
    from promptc.models.cache import Cache
    from promptc.testing.suite import run_suite

    prog = promptc.loads('''task t(text: str) -> str { prompt "{{ text }}" }
test t {
  case "polite" { input { text: "thanks" } expect judge("the reply is polite") }
  case "rude" { input { text: "go away" } expect judge("the reply is polite") and len(output) > 0 }
}''')
    task = prog.task("t")

    def judge_says(prompt, sample):
        verdict = "fail" if "go away" in prompt.split("Output:")[-1] else "pass"
        return json.dumps({"verdict": verdict, "reason": f"the output is {'rude' if verdict == 'fail' else 'kind'}"})

    judge = Fake(judge_says, "judge")
    subject_model = Fake(lambda p, s: data_of(p))
    from promptc.execution import text_subject

    cache = Cache(tmp_path / "c.db")
    rep = run_suite(prog.ir, task.ir, text_subject(prog.ir, task.ir, None, subject_model), cache=cache,
                    judge_model=judge)
    by = {r.name: r for r in rep.results}
    assert by["polite"].status == "passed" and by["rude"].status == "failed"
    (check,) = [c for c in by["rude"].samples[0].checks if c.kind == "expect"]
    assert 'judge("the reply is polite"): fail -- the output is rude' in check.details
    assert judge.calls == 2  # one batch for both judge requests
    run_suite(prog.ir, task.ir, text_subject(prog.ir, task.ir, None, subject_model), cache=cache, judge_model=judge)
    assert judge.calls == 2  # the second run reads every verdict from the cache
    from promptc.errors import UsageError

    with pytest.raises(UsageError, match="needs a judge model"):
        run_suite(prog.ir, task.ir, text_subject(prog.ir, task.ir, None, subject_model), cache=None)


def test_baseline_diff_on_a_real_change_of_output(tmp_path):
    prog = load(tmp_path, ROUTE)
    task = prog.task("route")
    before = task.test(model=Fake(keyword_router), cache=False)
    path = tmp_path / "base.json"
    assert baseline.save_baseline([before], path) == 6
    # the "model update": invoices now route to billing (fixed), crashes to other (broken)
    def updated(p, s):
        t = data_of(p)
        return "billing" if "invoice" in t else ("other" if "crash" in t else keyword_router(p, s))

    after = task.test(model=Fake(updated), cache=False)
    drift = baseline.diff(after, baseline.load_baseline(path))
    assert [e["input"] for e in drift.newly_failing] == [{"text": "app crashes"}]
    assert [e["input"] for e in drift.newly_passing] == [{"text": "invoice wrong"}]
    assert drift.newly_failing[0]["before"] == "bug" and drift.newly_failing[0]["after"] == "other"
    assert drift.regression and drift.unchanged == 4
    text = baseline.to_text([drift], "base.json")
    assert "1 newly failing, 1 newly passing, 0 changed outputs, 4 unchanged" in text
    assert text.splitlines()[-1] == "regression: cases that passed in the baseline fail now"
    same = baseline.diff(before, baseline.load_baseline(path))
    assert not same.regression and same.unchanged == 6
    (tmp_path / "bad.json").write_text("{}")
    from promptc.errors import UsageError

    with pytest.raises(UsageError, match="not a promptc baseline"):
        baseline.load_baseline(tmp_path / "bad.json")


def test_compare_paired_test_cost_and_html(tmp_path):
    rows = [(f"charged {i}", "billing") for i in range(30)] + [(f"crash {i}", "bug") for i in range(10)]
    prog = load(tmp_path, ROUTE, rows)
    task = prog.task("route")
    good = task.test(model=Fake(keyword_router, "good"), cache=False)
    bad = task.test(model=Fake(lambda p, s: "bug", "bad"), cache=False)
    prices = {"fake": {"input": 1.0, "output": 2.0}}
    data = comparison([Subject("good", good), Subject("bad", bad)], prices)
    (pair,) = data["pairs"]
    assert (pair["n"], pair["only_a"], pair["only_b"], pair["both_pass"]) == (40, 30, 0, 10)
    assert pair["verdict"].startswith("good is better (p = ")
    assert pair["mcnemar_p"] == pytest.approx(2 / 2 ** 30, rel=1e-6)
    assert data["subjects"][0]["cost"]["usd_per_request"] == pytest.approx((10 * 1.0 + 2 * 2.0) / 1e6)
    text = compare([good, bad], labels=["good", "bad"], prices=prices)
    assert "cases passed (95% CI)" in text and "-> good is better" in text and "$0.0140" in text
    html = compare([good, bad], "html", labels=["good", "bad"], prices=prices)
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert html.count('<circle class="subject"') == 2 and "USD per request" in html
    assert html.count('<table class="confusion">') == 2 and "good is better" in html
    assert '<th>rows.jsonl</th>' not in html and "<td>rows.jsonl</td>" in html
    assert json.loads(compare([good, bad], "json", labels=["good", "bad"]))["promptc_compare"] == 1


def test_compare_says_when_n_is_too_small_and_break_even():
    a = promptc.loads('task t(x: str) -> str { prompt "{{ x }}" }\ntest t { case "c" { input { x: "a" } '
                      'expect output == "a" } }').task("t")
    r1 = a.test(model=Fake(lambda p, s: "a", "one"), cache=False)
    r2 = a.test(model=Fake(lambda p, s: "b", "two"), cache=False)
    out = compare([r1, r2], labels=["one", "two"])
    assert "too few cases to tell: 1 of 1 cases differ" in out
    assert break_even(2.0, 0.003, 0.001) == {"requests": 1000, "note": "saves $0.002000 per request; training cost "
                                                                        "$2.0000"}
    assert break_even(2.0, 0.001, 0.003)["requests"] is None
    assert break_even(None, 0.003, 0.001)["note"].startswith("training cost unknown")


def test_hypothesis_files_live_under_promptc(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROMPTC_CACHE_DIR", raising=False)
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    from hypothesis import configuration

    before = configuration.storage_directory(intent_to_write=False).home_directory
    task = promptc.loads('task t(x: str) -> str { prompt "{{ x }}" }\n'
                         'test t { property "p" { check len(output) >= 0 max_examples = 5 } }').task("t")
    report = task.test(model=Fake(lambda p, s: "ok"), cache=False)
    assert report.results[0].inputs_tried >= 1
    assert not (tmp_path / ".hypothesis").exists()
    assert configuration.storage_directory(intent_to_write=False).home_directory == before  # restored
    # where hypothesis writes while promptc draws (it writes its files once per process, so whether the
    # folder exists now depends on which test ran first; the setting is what promptc owns)
    from promptc.testing.suite import hypothesis_home

    with hypothesis_home():
        during = configuration.storage_directory(intent_to_write=False).home_directory
    assert Path(during).resolve() == (tmp_path / ".promptc" / "hypothesis").resolve()


def test_break_even_of_an_artifact_against_a_text_target():
    from promptc.testing.suite import Report

    def report(name, kind, model, tokens):
        r = Report("p", "t", {"kind": kind, "name": name, "model": model, "trainable_parameters": 4612}, [])
        r.requests, r.prompt_tokens, r.completion_tokens, r.model_seconds = 10, tokens * 10, 20, 1.0
        return r

    text = report("route_text", "target", "big", 1000)
    art = report("out/route_soft", "artifact", "small", 100)
    prices = {"big": {"input": 2.0, "output": 0.0}, "small": {"input": 1.0, "output": 0.0}}
    data = comparison([Subject("route_text", text), Subject("soft", art, {"seconds": 1800, "device": "cpu",
                                                                         "trainable_parameters": 4612})],
                      prices, training_price=0.5)
    soft = data["subjects"][1]
    # text: 1000 tokens x $2/M = $0.002 a request; artifact: 100 x $1/M = $0.0001; training 0.5 h x $0.5 = $0.25
    assert soft["training"]["usd"] == pytest.approx(0.25)
    assert soft["break_even"] == {"against": "route_text", "requests": 132,
                                  "note": "saves $0.001900 per request; training cost $0.2500"}
    unknown = comparison([Subject("t", text), Subject("a", art, {"seconds": None, "device": "cpu"})], prices,
                         training_cost=1.9)
    assert unknown["subjects"][1]["break_even"]["requests"] == 1000
    out = compare([text, art], labels=["t", "a"], training=[{}, {"seconds": 1800, "device": "cpu"}], prices=prices,
                  training_price=0.5)
    assert "break-even (requests)" in out and "132" in out and "30 min" not in out and "1800 s" in out
