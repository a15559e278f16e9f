"""Outputs the `openai:` backend repaired into JSON (json-repair, `repaired: true`) are counted in the test
reports (text, JSON, JUnit), and keep the flag when read back from the generation cache. Against a fake
OpenAI server on 127.0.0.1 (no torch)."""

from __future__ import annotations

import json

import promptc
from promptc.execution import run_requests, text_subject
from promptc.models import Decoding
from promptc.models.cache import Cache
from promptc.testing.report import repaired_outputs, to_json, to_junit, to_text
from promptc.testing.suite import run_suite
from tests.core.test_http_backend import RECORD, backend, req

PROGRAM = '''program fixes "1.0.0"
enum Tag { billing, bug }
type Form { tag: Tag  reply: str [max_len=40] }
task form(text: str) -> Form {
  prompt "Answer as JSON: {{ text }}"
}
test form {
  case "a" { input { text: "the app crashes" } expect output.tag == bug }
  case "b" { input { text: "it broke again" } expect output.tag == bug }
}
'''
NEAR_JSON = "Sure! {'tag': 'bug', 'reply': 'on it',}"


def suite_report(fake):
    prog = promptc.loads(PROGRAM)
    task = prog.task("form").ir
    subject = text_subject(prog.ir, task, None, backend(fake))
    return run_suite(prog.ir, task, subject)


def test_reports_count_repaired_outputs_apart(fake):
    fake.reply = NEAR_JSON
    report = suite_report(fake)
    assert report.passed == 2 and report.failed == 0  # both cases pass, after repair
    samples = [s for r in report.results for s in r.samples]
    assert len(samples) == 2 and all(s.repaired for s in samples)
    assert repaired_outputs(report) == 2
    assert to_text(report).splitlines()[-1].endswith("(2 outputs repaired into JSON)")
    assert json.loads(to_json(report))["summary"]["repaired"] == 2
    assert '<property name="repaired" value="2" />' in to_junit(report)


def test_compare_json_counts_repaired_per_subject(fake):
    from promptc.testing.compare import compare

    fake.reply = NEAR_JSON
    repaired = suite_report(fake)
    fake.reply = '{"tag": "bug", "reply": "x"}'
    clean = suite_report(fake)
    data = json.loads(compare([repaired, clean], "json", labels=["near-json", "json"]))
    assert [s["summary"]["repaired"] for s in data["subjects"]] == [2, 0]


def test_valid_json_counts_no_repairs(fake):
    fake.reply = '{"tag": "bug", "reply": "x"}'
    report = suite_report(fake)
    assert repaired_outputs(report) == 0 and json.loads(to_json(report))["summary"]["repaired"] == 0
    assert "repaired" not in to_text(report)


def test_suite_records_the_repaired_flag_on_each_sample(fake):
    fake.reply = NEAR_JSON
    report = suite_report(fake)
    assert repaired_outputs(report) == 2


def test_a_cached_reply_keeps_repaired(fake, tmp_path):
    fake.reply = NEAR_JSON
    cache = Cache(tmp_path / "cache.db")
    b = backend(fake)
    (first,) = run_requests(b, [req("x", RECORD)], [{}], Decoding(max_new_tokens=20), cache)
    (again,) = run_requests(b, [req("x", RECORD)], [{}], Decoding(max_new_tokens=20), cache)
    assert first.generation.repaired is True and again.generation.cached
    assert again.ok and again.generation.repaired is True

