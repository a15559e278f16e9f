"""Tuned artifacts from Python (promptc.load_artifact, Task.run/test with artifact=) with the CLI's
refusals, and dependency fingerprints: a prose edit keeps a classifier, and a causal LM depends on its
prompt."""

from __future__ import annotations

import pytest

import promptc
from promptc.errors import ArtifactError, PromptcError
from promptc.workflows.tune import tune
from tests.models.test_tune import METHODS, RECORD, program_with

SENTI = '''
enum Mood { happy, sad }
task mood(text: str) -> Mood {
  prompt "How does this sound? {{ text }}"
  example { input { text: "what a lovely day" } output happy }
  example { input { text: "I love this" } output happy }
  example { input { text: "this is great" } output happy }
  example { input { text: "I feel awful" } output sad }
  example { input { text: "what a terrible loss" } output sad }
  example { input { text: "this is so sad" } output sad }
}
test mood { case "joy" { input { text: "lovely, I love it" } expect output in [happy, sad] } }
target tune m for mood { base = "minilm", max_steps = 2, batch_size = 6 }
'''


def test_load_artifact_runs_and_tests_like_the_cli(tmp_path):
    prog = program_with(METHODS["lora"])
    tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    art = promptc.load_artifact(tmp_path / "a", prog)
    assert art.task.name == "pick" and art.manifest["kind"] == "tune"
    one = art.run({"word": "apple"})
    many = prog.task("pick").run([{"word": "apple"}, {"word": "sky"}], artifact=tmp_path / "a", cache=False)
    assert one.ok and one.output == many[0].output and len(many) == 2
    report = prog.task("pick").test(artifact=art, cache=False)
    assert report.summary_line() == art.test(cache=False).summary_line()
    # a path to the program works too
    path = tmp_path / "p.prompt"
    path.write_text(RECORD + '\ntarget tune t for pick { method = "lora", r = 4, alpha = 8, base = "tiny-causal", '
                    'max_steps = 4, batch_size = 3, val_split = 0.0, patience = 0, max_new_tokens = 48 }\n')
    assert promptc.load_artifact(tmp_path / "a", path).run({"word": "apple"}).output == one.output


def test_load_artifact_refuses_tampering_and_the_wrong_base(tmp_path):
    from promptc.models.tiny import save_tiny

    base_dir = tmp_path / "base"
    save_tiny(str(base_dir), seed=0)
    prog = program_with(METHODS["lora"], base=str(base_dir))
    tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    promptc.load_artifact(tmp_path / "a", prog)
    save_tiny(str(base_dir), seed=1)
    with pytest.raises(ArtifactError, match="different base model"):
        promptc.load_artifact(tmp_path / "a", prog)
    with pytest.raises(ArtifactError, match="different base model"):
        prog.task("pick").run({"word": "x"}, artifact=tmp_path / "a")
    save_tiny(str(base_dir), seed=0)
    weights = tmp_path / "a" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtifactError, match="does not match the hash"):
        promptc.load_artifact(tmp_path / "a", prog)


def test_a_prose_edit_keeps_a_classifier_but_not_its_examples(tmp_path):
    prog = promptc.loads(SENTI)
    res = tune(prog.ir, "m", out=tmp_path / "a", gate=False)
    assert res.manifest["family"] == "classifier" and res.manifest["method"] == "lora"  # auto picks lora
    assert res.manifest["depends"]["covers"] == ["base", "examples", "input_schema", "output_schema"]
    before = promptc.load_artifact(tmp_path / "a", prog).run({"text": "I love it"}).output
    reworded = promptc.loads(SENTI.replace("How does this sound?", "Classify the mood of this text:")
                             .replace('"joy"', '"delight"'))
    assert reworded.ir.tasks["mood"].hash != prog.ir.tasks["mood"].hash
    assert promptc.load_artifact(tmp_path / "a", reworded).run({"text": "I love it"}).output == before
    new_data = promptc.loads(SENTI.replace('"this is great"', '"this is grand"'))
    with pytest.raises(ArtifactError, match="what it depends on changed"):
        promptc.load_artifact(tmp_path / "a", new_data)
    new_labels = promptc.loads(SENTI.replace("enum Mood { happy, sad }", "enum Mood { happy, sad, meh }"))
    with pytest.raises(ArtifactError):
        promptc.load_artifact(tmp_path / "a", new_labels)


def test_a_causal_artifact_depends_on_its_prompt(tmp_path):
    prog = program_with(METHODS["lora"])
    res = tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    assert "prompt" in res.manifest["depends"]["covers"]
    tests_only = promptc.loads(_program_text().replace('"unseen"', '"never seen"'))
    promptc.load_artifact(tmp_path / "a", tests_only)  # a renamed test changes nothing it reads
    reprompted = _program_text().replace('prompt "Pick for {{ word }}"', 'prompt "Choose for {{ word }}"')
    with pytest.raises(PromptcError, match="prompt"):
        promptc.load_artifact(tmp_path / "a", promptc.loads(reprompted))


def _program_text() -> str:
    return RECORD + '\ntarget tune t for pick { method = "lora", r = 4, alpha = 8, base = "tiny-causal", ' \
                    'max_steps = 4, batch_size = 3, val_split = 0.0, patience = 0, max_new_tokens = 48  }\n'



def test_a_signed_tuned_artifact_loads_and_a_hand_edited_verdict_is_caught(tmp_path, capsys):
    """Issue 23 item 2 on a real tuned artifact: signing adds two files that loading accepts; a hand edit of
    the gate verdict leaves every file hash intact but breaks the signature, so `artifacts list` never shows
    it as passed, and `verify` exits 1."""
    pytest.importorskip("model_signing", reason="the [sign] extra is not installed")
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from promptc.cli import main
    from promptc.signing import MODIFIED, SIGNED, integrity, sign

    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    prog = program_with(METHODS["lora"])
    tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    assert sign(tmp_path / "a", priv).state == SIGNED
    assert promptc.load_artifact(tmp_path / "a", prog).run({"word": "apple"}).ok  # the signature files are fine
    status = json.loads((tmp_path / "a" / "manifest.json").read_text())["status"]
    assert integrity(tmp_path / "a", pub).state == SIGNED
    path = tmp_path / "a" / "manifest.json"
    path.write_text(path.read_text().replace(f'"status": "{status}"', '"status": "passed"'))
    assert integrity(tmp_path / "a", pub).state == MODIFIED
    capsys.readouterr()
    assert main(["artifacts", "list", str(tmp_path / "a"), "--key", str(pub)]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "MODIFIED" in row and "passed" not in row
    assert main(["artifacts", "verify", str(tmp_path / "a"), "--key", str(pub)]) == 1
