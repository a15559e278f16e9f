"""The test runner: verdicts against tiny-causal (failures, never errors), reporting paths against a
deterministic fake backend (shrinking, repeats, thresholds, every failure kind), report formats, the
pytest plugin and the strategies API."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings

import promptc
from promptc.cli import main
from promptc.models.base import Generation
from promptc.schema import Limits
from promptc.testing.report import to_json, to_junit, to_text
from tests.conftest import PROGRAMS, ROOT


class FakeBackend:
    """Deterministic and model-free: answers with `respond(prompt_text, sample)`. Only for reporting paths."""

    spec = "fake"

    def __init__(self, respond, name="fake"):
        self.respond, self.name, self.calls = respond, name, 0

    def identity(self):
        return f"fake:{self.name}"

    def request_key(self, r, d):
        return r.prompt

    def generate(self, requests, decoding, sample=0):
        self.calls += len(requests)
        out = []
        for r in requests:
            text = self.respond(r.prompt, sample)
            out.append(Generation("", error=text[6:]) if text.startswith("ERROR:") else
                       Generation(text, len(r.prompt), len(text), 0.001))
        return out


ECHO = '''
task echo(text: str [max_len=40]) -> str [max_len=60] {
  prompt "{{ text }}"
  constraint no_digits "never repeat digits": not (output matches /[0-9]/)
}
test echo {
  case "plain" { input { text: "hello" } expect output == "hello" }
  case "shout" { input { text: "hey" } expect output == "HEY" }
  property "any text" {
    given text = text(max_len=20)
    check len(output) <= 60
    max_examples = 60
  }
}
'''


def data_of(prompt: str) -> str:
    """The last delimited input value in a rendered prompt."""
    found = re.findall(r"<([\w.]+)>(.*?)</\1>", prompt, re.S)
    return found[-1][1] if found else ""


def suite(program_text: str, respond, **kw):
    prog = promptc.loads(program_text)
    task = prog.task()
    backend = FakeBackend(respond)
    return task.test(model=backend, cache=False, **kw), backend


def test_shrinking_finds_the_minimal_counterexample():
    report, _ = suite(ECHO, lambda p, s: data_of(p))
    prop = next(r for r in report.results if r.kind == "property")
    assert prop.status == "failed" and prop.inputs_failed > 0
    assert prop.shrunk is not None and prop.shrunk.input == {"text": "0"}
    failed = prop.shrunk.failed_checks()
    assert [c.name for c in failed] == ["no_digits"]
    assert failed[0].details == ["never repeat digits", 'output = "0"']


def test_cases_report_expectation_failures_with_sub_values():
    report, _ = suite(ECHO, lambda p, s: data_of(p))
    by = {r.name: r for r in report.results}
    assert by["plain"].status == "passed"
    assert by["shout"].status == "failed"
    (check,) = by["shout"].samples[0].failed_checks()
    assert check.kind == "expect" and check.source == 'output == "HEY"' and check.details == ['output = "hey"']
    text = to_text(report)
    assert 'FAIL  case "shout"' in text and text.splitlines()[-1] == "1 passed, 2 failed"


def test_every_failure_kind():
    prog = '''
type Out { n: int [le=10], s: str }
task t(x: str) -> Out {
  prompt "{{ x }}"
  constraint small: output.n < 5
}
test t {
  case "schema" { input { x: "schema" } expect output.n == 1 }
  case "constraint" { input { x: "constraint" } expect output.n == 7 }
  case "expect" { input { x: "expect" } expect output.s == "yes" }
  case "error" { input { x: "error" } expect output.n == 1 }
  case "ok" { input { x: "ok" } expect output.n == 1 }
}
'''
    answers = {"schema": '{"n": 50, "s": "a"}', "constraint": '{"n": 7, "s": "a"}', "expect": '{"n": 1, "s": "no"}',
               "error": "ERROR:connection refused", "ok": 'sure: ```json\n{"n": 1, "s": "a"}\n```'}
    report, _ = suite(prog, lambda p, s: answers[data_of(p)])
    kinds = {r.name: [c.kind for c in r.samples[0].failed_checks()] for r in report.results}
    assert kinds == {"schema": ["schema"], "constraint": ["constraint"], "expect": ["expect"], "error": ["error"],
                     "ok": []}
    schema_fail = next(r for r in report.results if r.name == "schema").samples[0]
    assert schema_fail.raw == '{"n": 50, "s": "a"}' and schema_fail.output is None
    assert schema_fail.checks[0].details[0].startswith("output.n: ")  # the validator's wording is its own
    assert report.summary_line() == "1 passed, 4 failed"


def test_repeats_and_pass_rate_thresholds():
    # sample 0 and 2 answer right, sample 1 wrong: a 2/3 pass rate
    respond = lambda p, s: data_of(p) if s != 1 else "wrong"  # noqa: E731
    prog = 'task t(text: str) -> str {\n prompt "{{ text }}"\n}\ntest t { case "c" { input { text: "a" } expect output == "a" } }'
    strict, b1 = suite(prog, respond, repeat=3)
    assert strict.results[0].status == "failed" and abs(strict.results[0].pass_rate - 2 / 3) < 1e-9
    assert b1.calls == 3
    lenient, _ = suite(prog, respond, repeat=3, min_pass=0.6)
    assert lenient.results[0].status == "passed"


def test_pattern_selects_tests_and_skips_the_rest():
    report, _ = suite(ECHO, lambda p, s: data_of(p), pattern="pl*")
    assert [(r.name, r.status) for r in report.results] == [
        ("plain", "passed"), ("shout", "skipped"), ("any text", "skipped")]
    assert report.summary_line() == "1 passed, 0 failed, 2 skipped"


def test_properties_are_reproducible_and_batched():
    a, b1 = suite(ECHO, lambda p, s: data_of(p).replace("0", "").replace("1", ""))
    b, b2 = suite(ECHO, lambda p, s: data_of(p).replace("0", "").replace("1", ""))
    pa = next(r for r in a.results if r.kind == "property")
    pb = next(r for r in b.results if r.kind == "property")
    assert [s.input for s in pa.samples] == [s.input for s in pb.samples]
    assert pa.inputs_tried >= 30
    assert b1.calls == b2.calls


def test_tiny_causal_semantic_failures_are_failures_not_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path))
    task = promptc.load(PROGRAMS / "triage.prompt").task("triage")
    # the declared domain (a body of up to 2,000 characters) is drawn in full since issue 30, and 2,000
    # random characters overflow tiny-causal's 4,096-token context: an honest error, not what this test is
    # about, so the strings are capped at 200 characters (the report names the cut)
    report = task.test(target="triage_chat", model="tiny-causal", max_new_tokens=200, limits=Limits(max_text=200))
    assert report.failed >= 1
    prop = next(r for r in report.results if r.kind == "property")
    assert any("of max_len=2000 (--max-text-len 200)" in cut for cut in prop.domain_cuts)
    for r in report.results:
        for s in r.samples:
            assert not s.errored
    cases = len(task.program.ir.tests_for("triage").cases)  # the program's cases, however many it has
    assert report.requests == cases + next(r for r in report.results if r.kind == "property").inputs_tried


def test_json_report_follows_the_documented_schema():
    report, _ = suite(ECHO, lambda p, s: data_of(p))
    doc = json.loads(to_json(report))
    assert set(doc) == {"promptc", "schema_version", "program", "task", "subject", "run", "summary", "warnings",
                        "usage", "tests"}
    assert doc["schema_version"] == 2
    assert doc["summary"] == {"passed": 1, "failed": 2, "skipped": 0, "total": 3, "ok": False,
                              "seconds": doc["summary"]["seconds"], "flaky": [], "robustness": None,
                              "cutoffs": 0, "repaired": 0, "closed": 0}
    t = doc["tests"][1]
    assert set(t) == {"name", "kind", "status", "origin", "pass_rate", "pass_rate_ci95", "samples", "inputs_tried",
                      "inputs_failed", "reason", "flaky_inputs", "robustness", "metrics", "failures", "outputs",
                      "shrunk", "domain_cuts"}
    assert t["pass_rate_ci95"] == [0.0, 0.7935]  # Wilson interval of 0 of 1
    assert t["outputs"] == [{"input": {"text": "hey"}, "output": "hey", "raw": "hey", "passed": False,
                             "failed": ['output == "HEY"']}]
    assert t["failures"][0]["checks"][1] == {"kind": "expect", "name": 'output == "HEY"', "source": 'output == "HEY"',
                                             "passed": False, "applicable": True, "details": ['output = "hey"']}
    assert doc["tests"][2]["shrunk"]["input"] == {"text": "0"}
    documented = (ROOT / "docs" / "testing.md").read_text()
    for key in ("schema_version", "inputs_tried", "shrunk", "applicable", "prompt_tokens_per_request", "outputs",
                "pass_rate_ci95", "flaky_inputs", "robustness", "metrics", "warnings", "run", "domain_cuts"):
        assert f"`{key}`" in documented, key


def test_junit_output_validates_against_the_schema():
    import xmlschema

    report, _ = suite(ECHO, lambda p, s: data_of(p), pattern="*")
    xml = to_junit(report)
    schema = xmlschema.XMLSchema(str(ROOT / "tests" / "cases" / "junit.xsd"))
    schema.validate(xml)
    assert 'failures="2"' in xml and "shrunk counterexample" in xml


def test_cli_test_exit_codes_and_formats(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path))
    prog = tmp_path / "p.prompt"
    prog.write_text('task t(x: str [max_len=5]) -> str [max_len=8] {\n prompt "{{ x }}"\n}\n'
                    'test t {\n case "a" { input { x: "a" } expect len(output) <= 8 }\n'
                    ' property "p" { check len(output) <= 8 max_examples = 3 }\n}\n')
    assert main(["test", str(prog), "--model", "tiny-causal", "--max-new-tokens", "16"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "2 passed, 0 failed"
    assert main(["test", str(prog), "--model", "tiny-causal", "--format", "json", "--max-new-tokens", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["ok"] is True
    assert main(["test", str(prog), "--model", "tiny-causal", "--repeat", "0"]) == 2
    assert main(["test", str(prog), "--target", "nope", "--model", "tiny-causal"]) == 2  # a wrong target name is a usage error
    assert "no target 'nope'" in capsys.readouterr().err
    assert main(["test", str(PROGRAMS / "route.prompt"), "--target", "route_text", "--model", "tiny-causal",
                 "--max-new-tokens", "8", "--format", "junit", "-o", str(tmp_path / "r.xml")]) == 1
    assert (tmp_path / "r.xml").read_text().startswith("<?xml")


def test_compare_prints_side_by_side(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path))
    art = promptc.load(PROGRAMS / "route.prompt").compile("route_text", tmp_path / "art")
    code = main(["compare", str(PROGRAMS / "route.prompt"), "route_text", str(art), "--model", "tiny-causal",
                 "--max-new-tokens", "8", "--max-examples", "3"])
    out = capsys.readouterr().out
    assert code == 1
    header = out.splitlines()[0].split()
    assert header[-2:] == ["route_text", str(art)]
    assert "prompt tokens / request" in out and "trainable parameters" in out
    tokens = next(line for line in out.splitlines() if line.startswith("prompt tokens"))
    a, b = tokens.split()[-2:]
    assert a == b  # the compiled artifact sends exactly the target's prompt


def test_user_property_suite_with_task_inputs():
    task = promptc.load(PROGRAMS / "triage.prompt").task("triage")
    seen = []

    @settings(max_examples=30)
    @given(task.inputs())
    def prop(inputs):
        seen.append(inputs)
        assert len(inputs["ticket"]["subject"]) <= 120
        assert 1 <= len(inputs["ticket"]["body"]) <= 2000
        reply = {"tag": "billing", "urgency": "low", "needs_human": False, "reply": "ok"}
        problems = task.check(inputs, reply)
        assert problems == []  # a billing tag, low urgency and a short reply break no constraint

    prop()
    assert len(seen) == 30


# pytest-lsp's runtest_call hook (a dev dependency of the language server) fails on every item that is not a
# Python function, ours included ("did not yield"); keep it out of the inner sessions. pytest-asyncio (which
# pytest-lsp pulls in) has no ini in an inner session's folder, so it warned that its fixture loop scope is
# unset, once per inner session; no inner session runs async code, so it is left out too.
NO_LSP = ("-p", "no:pytest-lsp", "-p", "no:asyncio")

PLUGIN_PROGRAM = '''
task echo(text: str) -> str [max_len=30] {
  prompt "{{ text }}"
}
test echo {
  case "short" { input { text: "hi" } expect len(output) <= 30 }
  case "impossible" { input { text: "hi" } expect output == "this will not happen" }
  property "bounded" { check len(output) <= 30 max_examples = 3 }
}
target text echo_plain for echo { format = "plain" }
'''


def test_pytest_plugin_collects_and_reports(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path))
    pytester.makefile(".prompt", echo=PLUGIN_PROGRAM)
    result = pytester.runpytest("--promptc-model", "tiny-causal", "-p", "no:cacheprovider", "-v", *NO_LSP)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*echo.prompt::echo::case short PASSED*",
                                 "*echo.prompt::echo::case impossible FAILED*",
                                 "*expect output == \"this will not happen\"*"])


def test_pytest_plugin_reads_pyproject_and_skips_without_a_model(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path))
    pytester.makefile(".prompt", echo=PLUGIN_PROGRAM)
    result = pytester.runpytest("-p", "no:cacheprovider", *NO_LSP)
    result.assert_outcomes(skipped=3)
    pytester.makepyprojecttoml('[tool.promptc]\nmodel = "tiny-causal"\nmax_examples = 2\n')
    result = pytester.runpytest("-p", "no:cacheprovider", *NO_LSP)
    result.assert_outcomes(passed=2, failed=1)


def test_pytest_plugin_reports_broken_programs_as_diagnostics(pytester):
    pytester.makefile(".prompt", broken='task t(x: str) -> str { prompt "{{ y }}" }')
    result = pytester.runpytest("-p", "no:cacheprovider", *NO_LSP)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*broken.prompt:1:36: error: undeclared variable 'y'*"])


def test_api_never_picks_a_model_silently():
    from promptc.errors import PromptcError

    task = promptc.load(PROGRAMS / "triage.prompt").task("triage")
    with pytest.raises(PromptcError, match="needs a model"):
        task.run({"ticket": {"subject": "a", "body": "b"}})
    with pytest.raises(PromptcError, match="needs a model"):
        task.test(target="triage_chat")


@pytest.mark.slow  # four pytest sessions in subprocesses, each loading tiny-causal (~40 s)
def test_pytest_node_ids_rerun_as_printed_and_last_failed(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    pytester.makefile(".prompt", echo=PLUGIN_PROGRAM.replace('"bounded"', '"bounded :: twice"'))
    first = pytester.runpytest_subprocess("--promptc-model", "tiny-causal", "-v", *NO_LSP)
    first.assert_outcomes(passed=2, failed=1)
    printed = [line.split(" ")[0] for line in first.outlines if line.startswith("echo.prompt::")]
    assert printed == ["echo.prompt::echo::case", "echo.prompt::echo::case", "echo.prompt::echo::property"]
    failed_line = next(line for line in first.outlines if line.startswith("echo.prompt::") and "FAILED" in line)
    node_id = failed_line.rsplit(" FAILED", 1)[0]
    assert node_id == "echo.prompt::echo::case impossible"
    again = pytester.runpytest_subprocess(node_id, "--promptc-model", "tiny-causal", "-v", *NO_LSP)
    again.assert_outcomes(failed=1)
    prop = pytester.runpytest_subprocess("echo.prompt::echo::property bounded : twice", "--promptc-model", "tiny-causal",
                              *NO_LSP)
    prop.assert_outcomes(passed=1)
    last = pytester.runpytest_subprocess("--lf", "--promptc-model", "tiny-causal", "-v", *NO_LSP)
    last.assert_outcomes(failed=1, deselected=2)
    assert not (pytester.path / ".hypothesis").exists()
    assert (tmp_path / "cache" / "hypothesis").is_dir()


def test_similar_uses_minilm_embeddings_in_checks():
    from promptc.testing.judging import similarity

    assert similarity("The invoice was charged twice.", "I was billed two times for one invoice.") > \
        similarity("The invoice was charged twice.", "My cat likes to sleep in the sun.") + 0.2
    assert similarity("same words", "same words") == pytest.approx(1.0, abs=1e-5)
    prog = '''task t(text: str) -> str { prompt "{{ text }}" }
test t {
  case "close" { input { text: "the invoice was charged twice" } expect similar(output, "I was billed two times") > 0.5 }
  case "far" { input { text: "my cat sleeps in the sun" } expect similar(output, "I was billed two times") > 0.5 }
}'''
    report, _ = suite(prog, lambda p, s: data_of(p))
    by = {r.name: r for r in report.results}
    assert by["close"].status == "passed" and by["far"].status == "failed"
    (check,) = [c for c in by["far"].samples[0].checks if c.kind == "expect"]
    assert any(d.startswith('similar("my cat sleeps in the sun", "I was billed two times") = ') for d in check.details)


def test_paraphrase_goes_through_the_teacher_and_the_cache(tmp_path):
    from promptc.execution import text_subject
    from promptc.models.cache import Cache
    from promptc.testing.suite import run_suite

    prog = promptc.loads('''task t(text: str) -> str { prompt "{{ text }}" }
test t {
  case "a" { input { text: "please refund me" } }
  property "paraphrases keep the answer" { from cases perturb text = paraphrase() check output == original.output }
}''')
    task = prog.task("t")
    teacher = FakeBackend(lambda p, s: "could you give me my money back", "teacher")
    cache = Cache(tmp_path / "c.db")
    rep = run_suite(prog.ir, task.ir, text_subject(prog.ir, task.ir, None, FakeBackend(lambda p, s: data_of(p))),
                    cache=cache, teacher=teacher)
    prop = next(r for r in rep.results if r.kind == "property")
    assert prop.samples[0].input == {"text": "could you give me my money back"}
    assert (prop.robustness.k, prop.robustness.n) == (0, 1)
    run_suite(prog.ir, task.ir, text_subject(prog.ir, task.ir, None, FakeBackend(lambda p, s: data_of(p))),
              cache=cache, teacher=teacher)
    assert teacher.calls == 1
    from promptc.errors import UsageError

    with pytest.raises(UsageError, match="needs a teacher model"):
        run_suite(prog.ir, task.ir, text_subject(prog.ir, task.ir, None, FakeBackend(lambda p, s: data_of(p))))


def test_pytest_plugin_collects_datasets_under_the_task(pytester):
    pytester.makefile(".prompt", route='enum Q { a, b }\ntask route(text: str) -> Q { prompt "{{ text }}" }\n'
                                       'test route {\n  case "one" { input { text: "x" } }\n'
                                       '  cases "rows.jsonl"\n  property "p" { check output == a max_examples = 2 }\n}\n')
    pytester.makefile(".jsonl", rows='{"input": {"text": "y"}, "output": "b"}\n')
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", *NO_LSP)
    result.stdout.fnmatch_lines(["route.prompt::route::case one", "route.prompt::route::cases rows.jsonl",
                                 "route.prompt::route::property p"])
