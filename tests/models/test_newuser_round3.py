"""Defects a new user hit in round 3, on the paths that need real models (tiny-causal on the CPU)."""

from __future__ import annotations

import json

import pytest

import promptc
from promptc.errors import ArtifactError
from promptc.workflows.tune import tune
from tests.models.test_tune import METHODS, RECORD, program_with


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A tiny-causal LoRA artifact of RECORD's `pick` task (4 steps)."""
    out = tmp_path_factory.mktemp("art") / "a"
    prog = program_with(METHODS["lora"])
    tune(prog.ir, "t", out=out, gate=False)
    return out, prog


def test_a_stale_artifact_names_only_what_changed(tuned):
    out, prog = tuned
    text = RECORD + '\ntarget tune t for pick { method = "lora", r = 4, alpha = 8, base = "tiny-causal", ' \
                    'max_steps = 4, batch_size = 3, val_split = 0.0, patience = 0, max_new_tokens = 48 }\n'
    promptc.load_artifact(out, promptc.loads(text))  # unchanged: loads
    with pytest.raises(ArtifactError, match=r"\(what it depends on changed: its examples\)$"):
        promptc.load_artifact(out, promptc.loads(text.replace('"grass"', '"moss"')))
    with pytest.raises(ArtifactError, match=r"\(what it depends on changed: its prompt\)$"):
        promptc.load_artifact(out, promptc.loads(text.replace('"Pick for {{ word }}"', '"Choose for {{ word }}"')))
    with pytest.raises(ArtifactError, match=r"\(what it depends on changed: its input schema\)$"):
        promptc.load_artifact(out, promptc.loads(text.replace("word: str) -> Pick", "word: str [max_len=40]) -> Pick")))


# ---------------------------------------------------------------- run/test --device and --dtype
PLACED = RECORD + '\ntarget text plain for pick { max_new_tokens = 24 }\n'


def _subject(argv: list[str], path):
    from promptc.cli.commands import load_program, make_subject, resolve_task
    from promptc.cli.main import build_parser

    args = build_parser().parse_args(argv)
    prog = load_program(str(path))
    task = resolve_task(prog, args.task, args.target, args.artifact)
    return make_subject(args, prog, task)


def _weights(backend):
    import torch

    net = getattr(backend, "model", None) or backend.net
    p = next(net.parameters()) if isinstance(net, torch.nn.Module) else None
    return p.device.type, p.dtype


def test_run_and_test_place_tiny_causal_with_device_and_dtype(tmp_path, capsys):
    import torch

    from promptc.cli import main
    from promptc.models.tiny import cached_tiny

    path = tmp_path / "p.prompt"
    path.write_text(PLACED, encoding="utf-8")
    subject = _subject(["run", str(path), "--target", "plain", "--model", "tiny-causal", "--device", "cpu",
                        "--dtype", "bfloat16", "--input", "{}"], path)
    assert _weights(subject.backend) == ("cpu", torch.bfloat16)
    assert next(cached_tiny()[0].parameters()).dtype == torch.float32  # the shared built-in is left as it was
    assert "dtype=bfloat16" in subject.backend.identity()  # its outputs are cached apart from float32's
    assert main(["run", str(path), "--target", "plain", "--model", "tiny-causal", "--device", "cpu", "--dtype",
                 "bfloat16", "--input", '{"word": "apple"}', "--no-cache", "--max-new-tokens", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["color"] in ("red", "green", "blue")  # schema-valid in bfloat16
    assert main(["test", str(path), "--target", "plain", "--model", "tiny-causal", "--device", "cpu", "--dtype",
                 "bfloat16", "--no-cache", "--max-new-tokens", "64"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out  # `count <= 9` holds for the constrained output


def test_a_tuned_artifact_runs_in_the_dtype_asked_for(tuned, tmp_path):
    import torch

    out, _ = tuned
    path = tmp_path / "p.prompt"
    path.write_text(RECORD + '\ntarget tune t for pick { method = "lora", r = 4, alpha = 8, base = "tiny-causal", '
                    'max_steps = 4, batch_size = 3, val_split = 0.0, patience = 0, max_new_tokens = 48 }\n')
    default = _subject(["run", str(path), "--artifact", str(out), "--input", "{}"], path)
    assert _weights(default.backend) == ("cpu", torch.float32)  # the training dtype
    half = _subject(["run", str(path), "--artifact", str(out), "--device", "cpu", "--dtype", "bfloat16",
                     "--input", "{}"], path)
    assert _weights(half.backend) == ("cpu", torch.bfloat16)
    assert half.backend.identity() != default.backend.identity()  # cached apart
    r = half.run([{"word": "apple"}])
    assert r[0].generation.error is None


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_a_clear_error(tuned, tmp_path, capsys):
    from promptc.cli import main

    out, _ = tuned
    path = tmp_path / "p.prompt"
    path.write_text(PLACED, encoding="utf-8")
    assert main(["run", str(path), "--target", "plain", "--model", "tiny-causal", "--device", "cuda",
                 "--input", '{"word": "x"}', "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert "device 'cuda' was asked for, but torch sees no CUDA device" in err and "--device" in err


def test_an_hf_model_spec_typo_or_uncached_id_fails_at_once(monkeypatch, tmp_path):
    """`--model hf:NAME` resolves like a tune `base`: a typo of tiny-causal says so at once, and an uncached
    hub id while the hub is offline fails naming it, instead of transformers' ~30 s of retries."""
    from promptc.errors import ModelError
    from promptc.models.hf import _load

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="unknown model 'tiny-casual'") as e:
        _load("hf:tiny-casual")
    assert e.value.hint.startswith("did you mean 'tiny-causal'?")
    with pytest.raises(ModelError, match=r"model 'acme/tiny-lm' is not in the local hub cache and the hub is "
                                         r"offline") as e:
        _load("hf:acme/tiny-lm")
    assert "--model hf:./models/NAME" in e.value.hint
    with pytest.raises(ModelError, match="model 'gpt2' is not in the local hub cache"):  # a legacy id: looked up
        _load("hf:gpt2")
