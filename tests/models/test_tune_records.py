"""Record outputs tuned on the real embedded MiniLM: one shared body, one head per field (enum, bool,
bounded int, optional, multi-label list, a reply from a closed set), schema-valid by construction, with
the task's constraints kept at prediction time. The artifact goes through everything around tuning: the
gate, run, test, reload, resume, serve (typed endpoint and chat completions), export and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import promptc
from promptc.cli import main
from promptc.errors import ModelError
from promptc.workflows.tune import tune

pytestmark = pytest.mark.model

REPLIES = {"billing": "Billing will fix the charge.", "bug": "We logged the bug.", "account": "See your settings."}
TEXTS = {
    "billing": ["charged twice for march", "invoice total is wrong", "refund my yearly fee", "card billed again",
                "payment declined at checkout", "vat number missing on invoice"],
    "bug": ["the app crashes on export", "dashboard is blank", "search returns nothing", "upload stops at 99",
            "chart doubles the totals", "sync is stuck"],
    "account": ["cannot log in", "change my email", "locked out of my account", "invite a teammate",
                "delete my profile", "lost my 2fa phone"],
}


def _rows() -> list[dict]:
    rows = []
    for tag, texts in TEXTS.items():
        for i, t in enumerate(texts):
            urgent = i % 3 == 0
            text = t + (" right now, we are blocked" if urgent else "")
            rows.append({"input": {"text": text},
                         "output": {"tag": tag, "urgency": "high" if urgent else "normal", "needs_human": urgent,
                                    "stars": 1 + i % 3, "labels": [tag] + (["urgent"] if urgent else []),
                                    "reply": REPLIES[tag]}})
    return rows


PROGRAM = """program records "1.0.0"
enum Tag { billing, bug, account }
enum Label { billing, bug, account, urgent }
enum Urgency { normal, high }
type Triage {
  tag: Tag
  urgency: Urgency
  needs_human: bool
  stars: int [ge=1, le=3]
  labels: list[Label] [max_len=2]
  reply: str [max_len=100]
}
task triage(text: str [max_len=300]) -> Triage {
  prompt "Triage: {{ text }}"
  examples "data.jsonl"
  constraint escalate "urgent tickets go to a person": output.needs_human when output.urgency == high
  constraint refunds: output.tag == billing when text matches /refund/
}
test triage {
  case "crash" {
    input { text: "the app crashes when I print" }
    expect output.tag == bug
  }
}
target tune heads for triage { base = "minilm", epochs = EPOCHS, lr = 0.004, constraint_weight = 1.0 }
"""


def write_program(tmp: Path, epochs: int = 8, extra: str = "") -> Path:
    (tmp / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    p = tmp / "records.prompt"
    p.write_text(PROGRAM.replace("EPOCHS", str(epochs)) + extra, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("records")
    path = write_program(tmp)
    lines: list[str] = []
    res = tune(promptc.load(path).ir, "heads", out=tmp / "art", info=lines.append)
    return path, res, lines


def test_auto_says_what_it_chose_field_by_field(trained):
    _, res, lines = trained
    first = lines[0]
    assert first.startswith("lora (method auto) on minilm, an encoder ('bert'), one head per field:")
    for part in ("tag: enum Tag (3 labels)", "needs_human: bool", "stars: int 1..3",
                 "labels: multi-label over Label (4 labels, at most 2)", "reply: reply from 3 templates"):
        assert part in first
    assert lines[1].startswith("no validation split:")  # said before training, with the reason
    m = res.manifest
    assert m.family == "classifier" and [h["field"] for h in m.heads] == [
        "tag", "urgency", "needs_human", "stars", "labels", "reply"]
    assert len(m.labels) == 3 + 2 + 2 + 3 + 4 + 3


def test_record_artifact_learns_passes_its_gate_and_reloads_identically(trained):
    path, res, _ = trained
    assert res.manifest.status == "passed", res.manifest.tests
    task = promptc.load(path).task("triage")
    rows = _rows()
    outs = task.run([r["input"] for r in rows], artifact=res.directory, cache=False)
    assert all(o.ok for o in outs), [o.error for o in outs if not o.ok]
    exact = sum(o.output == r["output"] for o, r in zip(outs, rows)) / len(rows)
    assert exact >= 0.9, exact  # training data: the heads fit it
    again = task.run([r["input"] for r in rows], artifact=res.directory, cache=False)
    assert [o.output for o in again] == [o.output for o in outs]


def test_constraints_hold_on_new_inputs(trained):
    path, res, _ = trained
    task = promptc.load(path).task("triage")
    new = ["please refund the app crash fee", "refund, login broken right now, we are blocked", "hello there",
           "the export crashes right now, we are blocked", "refund"]
    for o, text in zip(task.run([{"text": t} for t in new], artifact=res.directory, cache=False), new):
        assert o.ok
        out = o.output
        assert task.check({"text": text}, out) == [], (text, out)
        assert out["reply"] in REPLIES.values() and len(out["labels"]) <= 2


def test_cli_test_and_run_on_the_record_artifact(trained, capsys):
    path, res, _ = trained
    assert main(["test", str(path), "--artifact", str(res.directory)]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    assert main(["run", str(path), "--artifact", str(res.directory), "--input", '{"text": "refund my card"}']) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["tag"] == "billing" and set(out) == {"tag", "urgency", "needs_human", "stars", "labels", "reply"}


def test_served_record_on_typed_endpoint_and_chat(trained):
    import httpx

    from promptc.serving.server import ServerThread
    from promptc.serving.subjects import build_registry

    path, res, _ = trained
    prog = promptc.load(path).ir
    reg = build_registry(tuned=[(str(res.directory), prog)], max_batch=8)
    name = next(iter(reg.subjects))
    with ServerThread(reg) as srv:
        r = httpx.post(f"{srv.url}/tasks/{name}", json={"text": "refund my card"}, timeout=60)
        assert r.status_code == 200, r.text
        typed = r.json()["output"]
        assert typed["tag"] == "billing"
        chat = httpx.post(f"{srv.url}/chat/completions", timeout=60, json={
            "model": name, "messages": [{"role": "user", "content": json.dumps({"text": "refund my card"})}]})
        assert chat.status_code == 200, chat.text
        assert json.loads(chat.json()["choices"][0]["message"]["content"]) == typed


def test_export_and_card_name_the_heads(trained, tmp_path):
    from promptc.serving.export import export

    _, res, _ = trained
    card = (res.directory / "README.md").read_text()
    assert "needs_human" in card and "reply from 3 templates" in card
    out = export(str(res.directory), "peft", tmp_path / "peft")
    assert {"head.safetensors", "labels.json"} <= set(out.files)
    labels = json.loads((out.directory / "labels.json").read_text())
    assert "needs_human=true" in labels and "tag=billing" in labels
    heads = json.loads((out.directory / "heads.json").read_text())
    assert [h["field"] for h in heads] == ["tag", "urgency", "needs_human", "stars", "labels", "reply"]
    assert sum(len(h["values"]) for h in heads) == len(labels)
    from promptc.errors import UsageError

    with pytest.raises(UsageError, match="causal models only"):
        export(str(res.directory), "vllm", tmp_path / "vllm")


def test_same_seed_same_record_artifact_and_resume(tmp_path):
    from promptc.errors import Interrupted

    path = write_program(tmp_path, epochs=2)
    prog = promptc.load(path).ir
    a = tune(prog, "heads", out=tmp_path / "a", gate=False, info=None)

    def interrupt(state, row):
        if row is None and state.step == 3:
            raise Interrupted("test interrupt")

    with pytest.raises(Interrupted):
        tune(prog, "heads", out=tmp_path / "b", gate=False, info=None, progress=interrupt)
    b = tune(prog, "heads", out=tmp_path / "b", gate=False, info=None, resume=True)
    for f in ("adapter/adapter_model.safetensors", "head.safetensors", "labels.json"):
        assert (a.directory / f).read_bytes() == (b.directory / f).read_bytes(), f


@pytest.mark.parametrize("field, rows_fn, words", [
    ("reply: str [max_len=100]", lambda rows: [dict(r, output=dict(r["output"], reply=f"r{i}"))
                                               for i, r in enumerate(rows)],
     ["field 'reply'", "18 distinct values in 18 examples", "reuse a small set of reply templates"]),
    ("stars: int [ge=1, le=300]", None, ["field 'stars'", "300 values", "at most 20"]),
    ("labels: list[Label]", None, ["field 'labels'", "needs `max_len`"]),
])
def test_unservable_fields_are_refused_with_the_field_and_what_to_do(tmp_path, field, rows_fn, words):
    path = write_program(tmp_path)
    text = path.read_text()
    for old in ("reply: str [max_len=100]", "stars: int [ge=1, le=3]", "labels: list[Label] [max_len=2]"):
        if old.split(":")[0] == field.split(":")[0]:
            text = text.replace(old, field)
    path.write_text(text)
    if rows_fn:
        (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_fn(_rows())))
    # refused by `promptc check`, located at the target's base, before any model loads (E316)
    from promptc.compiler import compile_file

    diags = [d for d in compile_file(path).diagnostics if d.code == "E316"]
    assert len(diags) == 1 and diags[0].span.line == path.read_text().splitlines().index(
        next(x for x in path.read_text().splitlines() if x.startswith("target tune heads"))) + 1
    msg = diags[0].message + " " + (diags[0].hint or "")
    for w in words:
        assert w in msg, msg
    # tune refuses too, for a base check cannot see into (a hub id): the same rule, once the config loads
    from promptc.targets.tune.model import choose_family, load_config, resolve_base

    path.write_text(path.read_text().replace('base = "minilm"', 'base = "tiny-causal"'))
    output = promptc.load(path).ir.tasks["triage"].output
    outputs = [json.loads(x)["output"] for x in (tmp_path / "data.jsonl").read_text().splitlines()]
    with pytest.raises(ModelError) as e:
        choose_family("auto", output, load_config(resolve_base("minilm")), outputs)
    assert words[1] in e.value.message + " " + (e.value.hint or "")


def test_free_text_makes_auto_choose_the_causal_family_naming_the_field(tmp_path):
    path = write_program(tmp_path, extra='target tune causal for triage { base = "tiny-causal", max_steps = 1 }\n')
    # free text cannot tune on minilm (check refuses that target, E316): this program keeps the causal one
    path.write_text("\n".join(x for x in path.read_text().splitlines() if not x.startswith("target tune heads")))
    (tmp_path / "data.jsonl").write_text("".join(
        json.dumps(dict(r, output=dict(r["output"], reply=f"reply number {i}"))) + "\n" for i, r in enumerate(_rows())))
    lines: list[str] = []
    res = tune(promptc.load(path).ir, "causal", out=tmp_path / "c", gate=False, info=lines.append)
    assert res.manifest.family == "causal"
    assert "field 'reply' needs generation" in lines[0] and "free text" in lines[0]


def test_seeds_are_chosen_by_cross_validation_on_training_data_only(tmp_path):
    """seeds = 2: each seed scored by 3-fold CV on the training data (the same folds for both), the best
    trains the artifact, which is byte-identical to a plain run with that seed; manifest, card and log say
    so. The test cases take no part (the gate runs once, on the chosen artifact)."""
    path = write_program(tmp_path, epochs=1)
    prog = promptc.load(path).ir
    lines: list[str] = []
    res = tune(prog, "heads", out=tmp_path / "sel", gate=False, info=lines.append, overrides={"seeds": 2})
    sd = res.manifest.seeds
    assert [c["seed"] for c in sd["candidates"]] == [0, 1] and sd["folds"] == 3
    best = min(sd["candidates"], key=lambda c: (-c["cv"], c["loss"], c["seed"]))
    assert sd["chosen"] == best["seed"] and res.manifest.seed == best["seed"]
    assert sd["spread"] == pytest.approx(max(c["cv"] for c in sd["candidates"]) - min(c["cv"] for c in sd["candidates"]),
                                         abs=1e-4)
    assert sum(line.startswith("seed ") for line in lines) == 2 and any(f"chose seed {best['seed']}" in x for x in lines)
    assert "Seed selection" in (res.directory / "README.md").read_text()
    plain = tune(prog, "heads", out=tmp_path / "plain", gate=False, info=None, seed=best["seed"])
    for f in ("adapter/adapter_model.safetensors", "head.safetensors"):
        assert (plain.directory / f).read_bytes() == (res.directory / f).read_bytes()


def test_memory_estimate_is_within_1_5x_of_the_measured_peak(tmp_path):
    """On the CPU the printed estimate is the process's (its RSS when training starts plus the optimiser
    state and activations to come), compared with the process's peak RSS; run as a new process so the
    peak is this run's alone."""
    import os
    import re
    import subprocess
    import sys

    path = write_program(tmp_path, epochs=2)
    r = subprocess.run([sys.executable, "-m", "promptc", "tune", str(path), "--target", "heads", "-o",
                        str(tmp_path / "m"), "--no-gate"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PROMPTC_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    m = re.search(r"memory estimate (\d+) MiB for the process \((\d+) MiB of it the model's\), peak (\d+) MiB", r.stdout)
    assert m, r.stdout
    est, peak = int(m.group(1)), int(m.group(3))
    assert peak / 1.5 <= est <= peak * 1.5, (est, peak)


@pytest.mark.slow
def test_init_starter_checks_formats_and_tunes_on_minilm_passing_its_gate(tmp_path):
    from promptc.scaffold import init

    init(tmp_path, "starter")
    path = tmp_path / "starter.prompt"
    assert main(["check", str(path)]) == 0 and main(["fmt", "--check", str(path)]) == 0
    res = tune(promptc.load(path).ir, "classify_heads", out=tmp_path / "out", info=None)
    assert res.manifest.family == "classifier" and res.manifest.base["id"] == "minilm"
    assert res.manifest.status == "passed", res.manifest.tests


def test_record_artifact_depends_on_constraints_but_not_on_prose(trained, tmp_path):
    """Rewording the prompt keeps the record artifact; changing a constraint (its loss read them) asks for a
    rebuild that names the constraints."""
    import shutil

    from promptc.errors import ArtifactError

    path, res, _ = trained
    d = tmp_path / "p"
    shutil.copytree(path.parent, d, ignore=shutil.ignore_patterns("art*"))
    p = d / path.name
    text = p.read_text()
    p.write_text(text.replace('prompt "Triage: {{ text }}"', 'prompt "Please triage: {{ text }}"'))
    assert promptc.load(p).task("triage").run({"text": "refund"}, artifact=res.directory, cache=False).ok
    p.write_text(text.replace("when text matches /refund/", "when text matches /refund|money back/"))
    with pytest.raises(ArtifactError, match="constraints"):
        promptc.load(p).task("triage").load_artifact(res.directory)


def test_compare_shows_the_record_artifact_beside_another(trained, capsys, tmp_path):
    import shutil

    path, res, _ = trained
    other = tmp_path / "copy"
    shutil.copytree(res.directory, other)
    assert main(["compare", str(path), str(res.directory), str(other)]) == 0
    out = capsys.readouterr().out
    assert "tests passed" in out and "1/1" in out and "minilm + lora" in out


def test_serve_runs_an_unsigned_artifacts_gate_again_instead_of_reading_it(trained, tmp_path, capsys):
    """A hand-edited verdict in an unsigned manifest leaves no trace, so serve re-runs the gate."""
    import shutil

    from promptc.cli.serve_commands import regate

    path, res, _ = trained
    art = tmp_path / "edited"
    shutil.copytree(res.directory, art)
    m = json.loads((art / "manifest.json").read_text())
    m["status"], m["tests"]["gate"] = "failed", "failed"  # forged downwards: the re-run ignores it
    (art / "manifest.json").write_text(json.dumps(m))
    prog = promptc.load(path).ir
    assert regate(str(art), prog, m) == "passed"
    assert "gate ran again instead of being read: 1 passed, 0 failed -> passed" in capsys.readouterr().err
