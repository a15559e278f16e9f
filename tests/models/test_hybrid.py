"""The hybrid workflow: distillation over HTTP, failures back into training data, the shot optimiser,
and an end-to-end distil -> tune -> test -> compare run on tiny-causal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import promptc
from promptc.cli import main
from promptc.models.base import Generation

TRIAGE = '''
enum Tag { billing, bug, account, other }
type Ticket { subject: str [max_len=80], body: str [min_len=1, max_len=400] }
type Triage { tag: Tag, reply: str [max_len=30] }
task triage(ticket: Ticket) -> Triage {
  prompt """
  Subject: {{ ticket.subject }}
  Body: {{ ticket.body }}
  """
  example { input { ticket: { subject: "Refund", body: "Please refund my order" } } output { tag: billing, reply: "Refunded." } }
  examples "distilled.jsonl"
  constraint refunds "refund requests are billing": output.tag == billing when ticket.body matches /refund/i
}
test triage {
  case "known" { input { ticket: { subject: "Login", body: "cannot sign in" } } expect output.reply == "Reset link sent." }
  property "polite" { given ticket.body = one_of("hello there", "hi") check output.reply == "Thanks!" max_examples = 2 }
}
target text triage_text for triage { format = "chat" }
target tune triage_lora for triage { method = "lora", base = "tiny-causal", lr = 0.005, epochs = 300, batch_size = 16, val_split = 0.0, patience = 0, max_new_tokens = 48 }
'''


@pytest.fixture
def teacher_url():
    from promptc.serving.server import serve_model

    srv = serve_model("tiny-causal")
    yield srv.url
    srv.stop()


def write_program(tmp_path: Path) -> Path:
    (tmp_path / "distilled.jsonl").write_text("")
    p = tmp_path / "triage.prompt"
    p.write_text(TRIAGE)
    return p


def test_distill_over_http_keeps_only_outputs_that_pass(tmp_path, teacher_url, monkeypatch):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    prog_file = write_program(tmp_path)
    bodies = [f"I want a refund for order {i}" for i in range(10)] + [f"the export {i} crashes" for i in range(6)]
    inputs = [{"ticket": {"subject": f"ticket {i}", "body": b}} for i, b in enumerate(bodies)]
    inputs.append({"ticket": {"subject": "Login", "body": "cannot sign in"}})  # a test input: never distilled
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(i) + "\n" for i in inputs))
    teacher = f"openai:tiny-causal@{teacher_url}"
    out = tmp_path / "distilled.jsonl"
    assert main(["distill", str(prog_file), "--target", "triage_text", "--teacher", teacher, "--inputs",
                 str(tmp_path / "in.jsonl"), "-o", str(out), "--max-new-tokens", "40", "--structured"]) == 0
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    rejected = [json.loads(x) for x in (tmp_path / "distilled.rejected.jsonl").read_text().splitlines()]
    assert len(kept) + len(rejected) == 16  # the test input was excluded
    assert all(k["input"]["ticket"]["body"] != "cannot sign in" for k in kept)
    task = promptc.load(prog_file).task("triage")
    for k in kept:
        assert task.check(k["input"], k["output"]) == []
        prov = k["provenance"]
        assert prov["source"] == "promptc distill" and prov["teacher"] == teacher
        assert len(prov["prompt_hash"]) == 64 and prov["verdicts"] == {"schema": True, "refunds": True}
    violating = [r for r in rejected if any("refunds" in reason for reason in r["reasons"])]
    assert violating, "the random teacher should have mislabelled some refund tickets"
    for r in violating:
        assert "refund" in r["input"]["ticket"]["body"] and r["output"]["tag"] != "billing"
    # the program now trains on the distilled file, and the manifest says so
    prog = promptc.load(prog_file)
    from promptc.workflows.tune import tune

    res = tune(prog.ir, "triage_lora", out=tmp_path / "art", gate=False, overrides={"max_steps": 2})
    prov = res.manifest["data"]["provenance"]
    assert prov["distilled"] == len(kept) and prov["declared"] == 1
    assert list(prov["teachers"]) == [f"{teacher} (prompt {kept[0]['provenance']['prompt_hash'][:12]})"]


def test_failures_become_training_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    prog_file = write_program(tmp_path)
    fails = tmp_path / "failures.jsonl"
    assert main(["test", str(prog_file), "--target", "triage_text", "--model", "tiny-causal", "--max-new-tokens",
                 "40", "--save-failures", str(fails), "--max-examples", "3"]) == 1
    rows = [json.loads(x) for x in fails.read_text().splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"case known", "property polite"}
    assert by_name["case known"]["input"] == {"ticket": {"subject": "Login", "body": "cannot sign in"}}
    # the derandomised shrink of the failing property input
    assert by_name["property polite"]["input"]["ticket"]["body"] == "hello there"
    for r in rows:
        assert r["provenance"]["source"] == "promptc test" and r["provenance"]["failed"]
        # correct the labels, then train with them as extra data
        r["output"] = {"tag": "account", "reply": "Thanks!"}
        r["provenance"]["corrected"] = True
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["tune", str(prog_file), "--target", "triage_lora", "-o", str(tmp_path / "art"), "--no-gate",
                 "--extra-examples", str(fixed)]) == 0
    m = json.loads((tmp_path / "art" / "manifest.json").read_text())
    # the property's counterexample becomes training data; the failing case is a test input and never is
    assert m["data"]["excluded_test_inputs"] == 1 and m["data"]["provenance"]["corrected_failures"] == 1
    assert "1 training example is a test input" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": {"ticket": {"subject": "x"}}, "output": {"tag": "bug", "reply": "y"}}\n')
    assert main(["tune", str(prog_file), "--target", "triage_lora", "-o", str(tmp_path / "b"),
                 "--extra-examples", str(bad)]) == 1


class ShotSensitive:
    """A fake model that answers right only when the golden example is among the shots (and, if
    `variant` is set, only under that prompt variant). For the optimiser's search, not for quality."""

    spec = "fake:shots"

    def __init__(self, answers: dict[str, str], variant: str | None = None):
        self.answers, self.variant, self.calls = answers, variant, 0

    def identity(self):
        return f"fake:shots:{self.variant}"

    def request_key(self, r, d):
        return r.prompt

    def generate(self, requests, decoding, sample=0):
        out = []
        for r in requests:
            self.calls += 1
            subject = re.findall(r"<ticket.subject>(.*?)</ticket.subject>", r.prompt)[-1]
            good = "GOLDEN" in r.prompt.rsplit("<ticket.subject>", 1)[0]
            if self.variant is not None:
                good = good and self.variant in r.prompt
            out.append(Generation(self.answers[subject] if good else "other", 10, 1, 0.001))
        return out


OPT = '''
enum Queue { billing, bug, account, other }
type Ticket { subject: str, body: str }
task route(ticket: Ticket) -> Queue {
  prompt "{{ ticket.subject }} {{ ticket.body }}"
  prompt variant "B" "VARIANT-B {{ ticket.subject }} {{ ticket.body }}"
%s
}
target text r for route { shots = 2, format = "chat" }
'''


def opt_program(n: int = 12) -> tuple[promptc.Program, dict[str, str]]:
    labels = ["billing", "bug", "account"]
    examples, answers = [], {}
    for i in range(n):
        subject = "GOLDEN" if i == n - 1 else f"s{i}"
        label = labels[i % 3]
        answers[subject] = label
        examples.append(f'  example {{ input {{ ticket: {{ subject: "{subject}", body: "b{i}" }} }} output {label} }}')
    return promptc.loads(OPT % "\n".join(examples)), answers


def test_optimizer_finds_the_best_shots_within_budget(tmp_path):
    from promptc.workflows.optimize import optimize, write_optimized

    prog, answers = opt_program()
    backend = ShotSensitive(answers)
    res = optimize(prog.ir, "r", backend, budget=25, seed=0, dev_share=0.3)
    golden = next(i for i, e in enumerate(res.pool) if e.input["ticket"]["subject"] == "GOLDEN")
    assert golden not in res.baseline.shots and res.baseline_score < 1.0
    assert golden in res.best.shots and res.best_score == 1.0
    assert len(res.log) <= 25
    again = optimize(prog.ir, "r", ShotSensitive(answers), budget=25, seed=0, dev_share=0.3)
    assert again.log == res.log  # deterministic for a seed
    dest = write_optimized(prog.ir, "r", res, tmp_path / "art", budget=25, seed=0, model="fake")
    m = json.loads((dest / "manifest.json").read_text())
    assert m["optimized"]["dev_pass_rate"] == 1.0 and m["optimized"]["search_log"] == res.log
    assert any("GOLDEN" in json.dumps(s) for s in json.loads((dest / "messages.json").read_text()))


def test_optimizer_searches_declared_variants():
    from promptc.workflows.optimize import optimize

    prog, answers = opt_program()
    res = optimize(prog.ir, "r", ShotSensitive(answers, variant="VARIANT-B"), budget=40, seed=3, dev_share=0.3)
    assert res.best.prompt_variant == "B" and res.best_score == 1.0


def test_optimizer_never_uses_test_inputs(tmp_path):
    from promptc.workflows.optimize import optimize

    prog, answers = opt_program()
    text = OPT % "\n".join(f'  example {{ input {{ ticket: {{ subject: "{s}", body: "b" }} }} output {a} }}'
                           for s, a in answers.items())
    text += '\ntest route { case "t" { input { ticket: { subject: "GOLDEN", body: "b" } } expect output == bug } }'
    prog = promptc.loads(text)
    res = optimize(prog.ir, "r", ShotSensitive(answers), budget=10, seed=0)
    used = [e.input["ticket"]["subject"] for e in (*res.pool, *res.dev)]
    assert "GOLDEN" not in used


def test_end_to_end_distill_tune_test_compare(tmp_path, monkeypatch, capsys):
    """tiny-causal as teacher and base: the tuned artifact learns to reproduce its teacher on the
    distilled inputs (it memorises; it does not generalise, and nothing here claims it does)."""
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / "cache"))
    prog_file = write_program(tmp_path)
    data = tmp_path / "distilled.jsonl"
    inputs = [{"ticket": {"subject": f"s{i}", "body": f"the app {w} today"}}
              for i, w in enumerate(["crashes", "hangs", "freezes", "fails", "stalls", "breaks"])]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(i) + "\n" for i in inputs))
    assert main(["distill", str(prog_file), "--target", "triage_text", "--teacher", "tiny-causal", "--inputs",
                 str(tmp_path / "in.jsonl"), "-o", str(data), "--max-new-tokens", "40"]) == 0
    kept = [json.loads(x) for x in data.read_text().splitlines()]
    assert len(kept) == 6  # no refund bodies: the teacher's constrained outputs all pass
    assert main(["tune", str(prog_file), "--target", "triage_lora", "-o", str(tmp_path / "art"), "--no-gate"]) == 0
    capsys.readouterr()
    assert main(["run", str(prog_file), "--artifact", str(tmp_path / "art"), "--inputs", str(tmp_path / "in.jsonl")]) == 0
    outs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert outs == [k["output"] for k in kept]
    code = main(["compare", str(prog_file), "triage_text", str(tmp_path / "art"), "--model", "tiny-causal",
                 "--max-new-tokens", "40"])
    table = capsys.readouterr().out
    # exit 1: the text target on tiny-causal (a random model) fails the `known` case
    assert code == 1 and "trainable parameters" in table and "known" in table
