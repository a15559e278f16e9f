"""Tune target: real peft training on real models (MiniLM-L6 and tiny-causal), kept small."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import promptc
from promptc.cli import main
from promptc.errors import PromptcError
from promptc.targets.tune.train import Interrupted
from promptc.workflows.tune import tune
from tests.conftest import PROGRAMS, ROOT

RECORD = '''
enum Color { red, green, blue }
type Pick { color: Color, count: int [ge=0, le=9], note: str [max_len=12] }
task pick(word: str) -> Pick {
  prompt "Pick for {{ word }}"
  example { input { word: "apple" } output { color: red, count: 1, note: "fruit" } }
  example { input { word: "grass" } output { color: green, count: 2, note: "lawn" } }
  example { input { word: "sky" } output { color: blue, count: 3, note: "up" } }
  example { input { word: "cherry" } output { color: red, count: 4, note: "pit" } }
  example { input { word: "leaf" } output { color: green, count: 5, note: "tree" } }
  example { input { word: "sea" } output { color: blue, count: 6, note: "wet" } }
}
test pick {
  case "unseen" { input { word: "ruby" } expect output.count <= 9 }
}
target tune pick_lora for pick { method = "lora", base = "tiny-causal", r = 16, alpha = 32, lr = 0.005, epochs = 500, batch_size = 6, val_split = 0.0, patience = 0, max_new_tokens = 64 }
'''

METHODS = {
    "prompt_tuning": 'method = "prompt_tuning", virtual_tokens = 4, init = "prompt"',
    "prefix_tuning": 'method = "prefix_tuning", virtual_tokens = 4',
    "p_tuning": 'method = "p_tuning", virtual_tokens = 4, encoder_hidden_size = 16',
    "lora": 'method = "lora", r = 4, alpha = 8',
    "ia3": 'method = "ia3"',
}


def program_with(target_options: str, name: str = "t", base: str = "tiny-causal", extra: str = "") -> promptc.Program:
    text = RECORD + f'\ntarget tune {name} for pick {{ {target_options}, base = "{base}", max_steps = 4, ' \
                    f'batch_size = 3, val_split = 0.0, patience = 0, max_new_tokens = 48 {extra} }}\n'
    return promptc.loads(text)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ causal LM on tiny-causal
def test_tiny_lora_memorises_and_stays_schema_valid(tmp_path):
    prog = promptc.loads(RECORD)
    res = tune(prog.ir, "pick_lora", out=tmp_path / "a", gate=False)
    m = res.manifest
    assert m["family"] == "causal" and m["status"] == "ungated" and m["data"]["train"] == 6
    art = tmp_path / "a"
    task = prog.task("pick")
    from promptc.execution import artifact_subject, run_requests

    subj = artifact_subject(art, prog.ir, prog.ir.tasks["pick"])
    train = [ex.input for ex in task.ir.examples]
    results = run_requests(subj.backend, subj.requests(train), train, subj.decoding)
    assert [r.output for r in results] == [ex.output for ex in task.ir.examples]  # memorised
    unseen = [{"word": w} for w in ("ruby", "moss", "ocean", "zebra", "")]
    for r in run_requests(subj.backend, subj.requests(unseen), unseen, subj.decoding):
        assert r.ok, (r.parsed.raw, r.error)  # never invalid, even where it cannot know the answer


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_round_trips_with_identical_logits(method, tmp_path):
    import torch

    prog = program_with(METHODS[method])
    res = tune(prog.ir, "t", out=tmp_path / method, gate=False)
    assert res.manifest["method"] == method and res.manifest["trainable_parameters"] > 0
    from promptc.execution import load_artifact

    art = load_artifact(tmp_path / method, prog.ir, prog.ir.tasks["pick"])
    reqs = art.requests([{"word": "apple"}, {"word": "something longer"}])
    tok = art.backend.tokenizer
    enc = tok([r.prompt for r in reqs], return_tensors="pt", padding=True)
    with torch.no_grad():
        loaded = art.backend.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    art2 = load_artifact(tmp_path / method, prog.ir, prog.ir.tasks["pick"])
    with torch.no_grad():
        again = art2.backend.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert torch.equal(loaded, again)
    # the trained in-memory model and the reloaded one agree too
    from promptc.workflows import tune as run_mod

    captured = {}
    orig = run_mod.run_gate

    def grab(job, tuned, acc, gate):
        with torch.no_grad():
            captured["logits"] = tuned.net(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        return orig(job, tuned, acc, gate)

    run_mod.run_gate = grab
    try:
        tune(prog.ir, "t", out=tmp_path / (method + "2"), gate=False)
    finally:
        run_mod.run_gate = orig
    assert torch.equal(captured["logits"], loaded)


STRONG_LR = {"prompt_tuning": 0.5, "prefix_tuning": 0.5, "p_tuning": 0.1, "lora": 0.02, "ia3": 0.5}


@pytest.mark.parametrize("method", list(METHODS))
def test_generation_agrees_with_greedy_argmax(method, tmp_path):
    """transformers 5.24 + peft 0.21 silently drop a prefix under the KV cache; promptc must not."""
    import torch

    from promptc.models.tiny import build_tiny

    prog = program_with(METHODS[method] + f", lr = {STRONG_LR[method]}")
    tune(prog.ir, "t", out=tmp_path / "a", gate=False, overrides={"max_steps": 30})
    from promptc.execution import load_artifact
    from promptc.models.base import Decoding

    art = load_artifact(tmp_path / "a", prog.ir, prog.ir.tasks["pick"])
    (req,) = art.requests([{"word": "apple"}])
    (gen,) = art.backend.generate([req], Decoding(max_new_tokens=12, constrained=False))
    tok, model = art.backend.tokenizer, art.backend.model
    ids = tok(req.prompt, return_tensors="pt")["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(12):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
            nxt = int(logits.argmax())
            if nxt == tok.eos_token_id:
                break
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    assert gen.text == tok.decode(out, skip_special_tokens=True)
    if method not in ("prefix_tuning", "lora"):
        return  # soft prompts and IA3 cannot steer tiny-causal's random weights (README, Models): no power check
    # power: the adapter changes what the base alone would say, so a dropped adapter would be caught
    base, _ = build_tiny()
    ids = tok(req.prompt, return_tensors="pt")["input_ids"]
    plain = base.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    assert gen.text != tok.decode(plain[0, ids.shape[1]:], skip_special_tokens=True)


def test_options_map_to_peft_configs(tmp_path):
    from peft import PeftConfig

    prog = program_with('method = "lora", r = 4, alpha = 12, dropout = 0.0, target_modules = ["c_attn"]')
    tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    cfg = PeftConfig.from_pretrained(str(tmp_path / "a" / "adapter"))
    assert (cfg.r, cfg.lora_alpha, set(cfg.target_modules)) == (4, 12, {"c_attn"})
    prog = program_with('method = "p_tuning", virtual_tokens = 3, encoder_hidden_size = 24, encoder_type = "LSTM"')
    tune(prog.ir, "t", out=tmp_path / "b", gate=False)
    cfg = PeftConfig.from_pretrained(str(tmp_path / "b" / "adapter"))
    assert (cfg.num_virtual_tokens, cfg.encoder_hidden_size, getattr(cfg.encoder_reparameterization_type, "value",
                                                                     cfg.encoder_reparameterization_type)) == \
        (3, 24, "LSTM")
    with pytest.raises(PromptcError) as ei:
        promptc.loads(RECORD + '\ntarget tune x for pick { method = "lora", init = "prompt" }')
    assert ei.value.diagnostics[0].code == "E311"


# ------------------------------------------------------------------ determinism and resume
def test_same_seed_gives_a_bit_identical_adapter(tmp_path):
    prog = program_with(METHODS["lora"])
    a = tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    b = tune(prog.ir, "t", out=tmp_path / "b", gate=False)
    c = tune(prog.ir, "t", out=tmp_path / "c", gate=False, seed=7)
    f = "adapter/adapter_model.safetensors"
    assert sha(a.directory / f) == sha(b.directory / f) != sha(c.directory / f)
    assert a.manifest["adapter_hash"] == b.manifest["adapter_hash"]
    # the whole artifact, manifest included, is byte-identical
    files = sorted(p.relative_to(a.directory) for p in a.directory.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b.directory) for p in b.directory.rglob("*") if p.is_file())
    assert all(sha(a.directory / p) == sha(b.directory / p) for p in files)


def test_interrupt_then_resume_equals_uninterrupted(tmp_path):
    prog = program_with('method = "lora", r = 4, alpha = 8, eval_every = 2', extra=", dropout = 0.1")
    full = tune(prog.ir, "t", out=tmp_path / "full", gate=False, overrides={"max_steps": 8})

    def interrupt(state, row):
        if state.step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="interrupted at step 5"):
        tune(prog.ir, "t", out=tmp_path / "r", gate=False, overrides={"max_steps": 8}, progress=interrupt)
    assert (tmp_path / "r.partial" / "checkpoint" / "trainer.json").is_file()
    assert not (tmp_path / "r").exists()  # nothing half-written
    resumed = tune(prog.ir, "t", out=tmp_path / "r", gate=False, resume=True, overrides={"max_steps": 8})
    f = "adapter/adapter_model.safetensors"
    assert sha(resumed.directory / f) == sha(full.directory / f)
    assert resumed.manifest["training"]["curve"] == full.manifest["training"]["curve"]
    assert not (tmp_path / "r.partial").exists()


def test_killed_process_resumes_bit_identical(tmp_path):
    """A SIGKILL leaves the last periodic checkpoint; --resume finishes identically."""
    prog_file = tmp_path / "p.prompt"
    prog_file.write_text(RECORD.replace("epochs = 500", "epochs = 500, eval_every = 5, max_steps = 40"))
    env = {**os.environ, "PROMPTC_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "promptc", "tune", str(prog_file), "--target", "pick_lora", "--no-gate",
           "--json-log"]
    ref = subprocess.run(cmd + ["-o", str(tmp_path / "ref")], env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    proc = subprocess.Popen(cmd + ["-o", str(tmp_path / "k")], env=env, stdout=subprocess.PIPE, text=True)
    lines = 0
    while lines < 3:
        line = proc.stdout.readline()
        assert line, "training ended before it could be killed"
        lines += json.loads(line)["step"] > 0
    proc.kill()
    proc.wait()
    proc.stdout.close()  # else its pipe is left to the garbage collector: a ResourceWarning, an error here
    assert (tmp_path / "k.partial" / "checkpoint").is_dir() and not (tmp_path / "k").exists()
    res = subprocess.run(cmd + ["-o", str(tmp_path / "k"), "--resume"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    f = "adapter/adapter_model.safetensors"
    assert sha(tmp_path / "k" / f) == sha(tmp_path / "ref" / f)


# ------------------------------------------------------------------ refusals
def test_loading_refuses_the_wrong_base(tmp_path):
    from promptc.execution import load_artifact
    from promptc.models.tiny import save_tiny

    base_dir = tmp_path / "base"
    save_tiny(str(base_dir), seed=0)
    prog = program_with(METHODS["lora"], base=str(base_dir))
    tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    load_artifact(tmp_path / "a", prog.ir, prog.ir.tasks["pick"])  # fine as trained
    save_tiny(str(base_dir), seed=1)  # someone replaced the base weights
    with pytest.raises(PromptcError, match="different base model"):
        load_artifact(tmp_path / "a", prog.ir, prog.ir.tasks["pick"])


def test_loading_refuses_tampered_or_pickled_files(tmp_path):
    from promptc.execution import load_artifact

    prog = program_with(METHODS["lora"])
    tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    weights = tmp_path / "a" / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PromptcError, match="does not match the hash"):
        load_artifact(tmp_path / "a", prog.ir, prog.ir.tasks["pick"])
    tune(prog.ir, "t", out=tmp_path / "b", gate=False)
    (tmp_path / "b" / "adapter" / "adapter_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(PromptcError, match="pickle"):
        load_artifact(tmp_path / "b", prog.ir, prog.ir.tasks["pick"])
    other = promptc.loads(RECORD.replace('"Pick for {{ word }}"', '"Choose for {{ word }}"'))
    with pytest.raises(PromptcError, match="different version of task"):
        load_artifact(tmp_path / "b", other.ir, other.ir.tasks["pick"])


# ------------------------------------------------------------------ secrets
SECRET = "sk-abcdefghijklmnopqrstuvwx0123"


def test_secrets_in_training_data_stop_training(tmp_path):
    data = tmp_path / "ex.jsonl"
    data.write_text(json.dumps({"input": {"word": "key"}, "output": {"color": "red", "count": 1,
                                                                       "note": "x"}}) + "\n" +
                    json.dumps({"input": {"word": f"use {SECRET}"}, "output": {"color": "blue", "count": 2,
                                                                                "note": "y"}}) + "\n")
    prog_file = tmp_path / "p.prompt"
    prog_file.write_text(RECORD.replace('  example { input { word: "apple" }',
                                        '  examples "ex.jsonl"\n  example { input { word: "apple" }'))
    prog = promptc.load(prog_file)
    with pytest.raises(PromptcError) as ei:
        tune(prog.ir, "pick_lora", out=tmp_path / "a", gate=False, overrides={"max_steps": 2})
    (d,) = ei.value.diagnostics
    assert d.code == "E501" and d.span.path.endswith("ex.jsonl") and d.span.line == 2
    res = tune(prog.ir, "pick_lora", out=tmp_path / "a", gate=False, allow_secrets=True,
               overrides={"max_steps": 2})
    assert res.manifest["data"]["redacted_secrets"] == 1
    assert not (tmp_path / "a.partial").exists()


def test_a_tuned_artifact_cannot_learn_a_redacted_secret(tmp_path):
    text = RECORD.replace('type Pick { color: Color, count: int [ge=0, le=9], note: str [max_len=12] }',
                        'type Pick { color: Color, count: int [ge=0, le=9], note: str [max_len=40] }')
    text = text.replace('note: "fruit"', f'note: "{SECRET}"')
    prog = promptc.loads(text)
    res = tune(prog.ir, "pick_lora", out=tmp_path / "a", gate=False, allow_secrets=True)
    from promptc.execution import artifact_subject, run_requests

    subj = artifact_subject(tmp_path / "a", prog.ir, prog.ir.tasks["pick"])
    (r,) = run_requests(subj.backend, subj.requests([{"word": "apple"}]), [{"word": "apple"}], subj.decoding)
    assert r.ok and SECRET not in r.parsed.raw
    assert r.output["note"] == "[REDACTED]"  # it learned the placeholder, not the key
    assert res.manifest["data"]["redacted_secrets"] == 1


# ------------------------------------------------------------------ the gate and the CLI
def test_gate_fails_and_no_gate_records(tmp_path, capsys):
    prog_file = tmp_path / "p.prompt"
    prog_file.write_text(RECORD.replace("expect output.count <= 9", "expect output.note == \"never\"")
                         .replace("epochs = 500", "epochs = 500, max_steps = 3"))
    code = main(["tune", str(prog_file), "--target", "pick_lora", "-o", str(tmp_path / "a")])
    assert code == 1
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["status"] == "failed" and m["tests"]["failed"] == 1
    assert main(["tune", str(prog_file), "--target", "pick_lora", "-o", str(tmp_path / "b"), "--no-gate"]) == 0
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["status"] == "ungated" and m["tests"]["failed"] == 1
    for key in ("program", "task", "base", "data", "method", "options", "seed", "versions", "training", "tests"):
        assert key in m
    assert set(m["versions"]) >= {"torch", "transformers", "peft", "promptc"}
    assert m["base"]["weights_hash"] and m["base"]["config_hash"] and m["data"]["hash"]


def test_json_log_prints_one_line_per_evaluation(tmp_path, capsys):
    prog_file = tmp_path / "p.prompt"
    prog_file.write_text(RECORD.replace("epochs = 500", "epochs = 500, max_steps = 6, eval_every = 2"))
    assert main(["tune", str(prog_file), "--target", "pick_lora", "-o", str(tmp_path / "a"), "--json-log",
                 "--no-gate"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert set(rows[0]) >= {"step", "epoch", "loss", "val_loss", "val_accuracy", "best_step"}


# ------------------------------------------------------------------ the encoder classifier on MiniLM
@pytest.mark.parametrize("method,steps", [("prompt_tuning", 40), ("lora", 30)])
def test_minilm_classifier_learns_routing(method, steps, tmp_path):
    prog = promptc.load(PROGRAMS / "route.prompt")
    opts = {"method": method, "max_steps": steps}
    if method == "lora":
        opts.update({"lr": 2e-3})
    res = tune(prog.ir, "route_soft", out=tmp_path / method, gate=True, overrides=opts)
    m = res.manifest
    assert m["family"] == "classifier" and m["labels"] == ["billing", "bug", "account", "other"]
    held = [json.loads(line) for line in (ROOT / "tests" / "cases" / "route_heldout.jsonl").read_text().splitlines()]
    from promptc.execution import artifact_subject, run_requests

    subj = artifact_subject(tmp_path / method, prog.ir, prog.ir.tasks["route"])
    inputs = [h["input"] for h in held]
    results = run_requests(subj.backend, subj.requests(inputs), inputs, subj.decoding)
    acc = sum(r.output == h["output"] for r, h in zip(results, held)) / len(held)
    assert acc >= 0.85, acc
    assert m["status"] == "passed"


@pytest.mark.parametrize("method,extra", [("prefix_tuning", {"virtual_tokens": 4}), ("p_tuning", {"virtual_tokens": 4}),
                                          ("ia3", {}), ("prompt_tuning", {"pooling": "cls", "init": "random"})])
def test_every_classifier_method_reloads_with_the_same_verdicts(method, extra, tmp_path):
    """The suite run on the reloaded artifact gives the verdicts recorded by the gate at training time."""
    prog = promptc.load(PROGRAMS / "route.prompt")
    overrides = {"method": method, "max_steps": 3, **extra}
    if method != "prompt_tuning":
        overrides["init"] = "random"  # route_soft's init = "prompt" applies to prompt tuning only
    res = tune(prog.ir, "route_soft", out=tmp_path / "a", gate=False, overrides=overrides)
    from promptc.execution import artifact_subject
    from promptc.testing.suite import run_suite

    report = run_suite(prog.ir, prog.ir.tasks["route"], artifact_subject(tmp_path / "a", prog.ir, prog.ir.tasks["route"]))
    assert {r.name: r.status for r in report.results} == \
        {name: r["status"] for name, r in res.manifest["tests"]["results"].items()}
    assert report.usage()["trainable_parameters"] == res.manifest["trainable_parameters"] > 0
