"""Tuned artifacts: write them atomically, load them with every check, and run them as test subjects.

An artifact holds the peft adapter (safetensors only), the classifier head and label map where there
is one, and manifest.json. Loading refuses a different base model, a different task, tampered files,
and any pickle-format weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc import ir
from promptc.artifacts import sha256_file
from promptc.errors import ArtifactError
from promptc.models.base import Request

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class TunedArtifact:
    """A loaded tuned artifact: the backend that runs it and how its requests are built."""

    directory: Path
    manifest: dict[str, Any]
    task: ir.Task
    backend: Any
    build: Callable[[list[dict[str, Any]]], list[Request]]
    max_new_tokens: int
    trainable: int

    def requests(self, inputs: list[dict[str, Any]]) -> list[Request]:
        return self.build(inputs)

    @property
    def model_name(self) -> str:
        return f"{self.manifest['base']['id']} + {self.manifest['method']}"


def request_builder(task: ir.Task, family: str, prompt) -> Callable[[list[dict[str, Any]]], list[Request]]:
    """How a tuned model's requests are built (the same formatting as its training data)."""
    from promptc.targets.tune.data import causal_prompt, classifier_text

    def build(inputs: list[dict[str, Any]]) -> list[Request]:
        out = []
        for i in inputs:
            prompt.check_inputs(i)
            text = classifier_text(i) if family == "classifier" else causal_prompt(prompt, i)
            out.append(Request([{"role": "user", "content": text}], text, task.output))
        return out

    return build


def make_backend(family: str, model, tokenizer, labels: list[str], identity: str, options: dict[str, Any],
                 method: str):
    if family == "classifier":
        from promptc.models.classifier import ClassifierBackend

        virtual = options.get("virtual_tokens", 0) if method in ("prompt_tuning", "p_tuning") else 0
        return ClassifierBackend(model, tokenizer, labels, identity, options.get("max_length", 256), virtual)
    from promptc.models.hf import HFBackend

    # transformers 5.24 + peft 0.21 drop a prefix-tuning prefix under the default KV cache, so prefix
    # artifacts decode without the cache (tests/test_tune.py checks generation against argmax).
    return HFBackend(identity, model=model, tokenizer=tokenizer, identity=identity,
                     use_cache=method != "prefix_tuning", use_chat_template=False)


def load_tuned(directory: Path, manifest: dict[str, Any], program: ir.Program, task: ir.Task) -> TunedArtifact:
    """Rebuild a tuned model from its base and adapter, refusing anything that does not match."""
    import torch
    from peft import PeftModel

    from promptc.targets.tune.model import (
        MeanPoolClassifier,
        SeqClsClassifier,
        base_weights,
        fingerprint,
        load_causal,
        load_config,
        load_encoder,
        resolve_base,
    )

    d = Path(directory)
    bad = [p.name for p in d.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    if bad:
        raise ArtifactError(f"artifact {d} contains pickle-format files ({', '.join(bad)}); promptc loads "
                               "safetensors only and refuses it")
    if manifest.get("status") == "failed":
        import sys

        print(f"promptc: warning: artifact {d} failed its test gate when it was built", file=sys.stderr)
    base = resolve_base(manifest["base"]["id"])
    config = load_config(base)
    family, method, options = manifest["family"], manifest["method"], manifest["options"]
    labels = manifest.get("labels") or []
    if family == "classifier":
        model, tok = load_encoder(base, len(labels), options.get("pooling", "mean"))
    else:
        model, tok = load_causal(base)
    fp = fingerprint(base_weights(model, family, options), config)
    want = manifest["base"]
    if fp["weights_hash"] != want["weights_hash"] or fp["config_hash"] != want["config_hash"]:
        raise ArtifactError(f"artifact {d} was trained on a different base model than '{base.name}' now "
                               f"resolves to (weights {fp['weights_hash'][:12]} != {want['weights_hash'][:12]}); "
                               "refusing to load it")
    peft_model = PeftModel.from_pretrained(model, str(d / "adapter"), is_trainable=False)
    if family == "classifier" and options.get("pooling", "mean") == "mean":
        from safetensors.torch import load_file

        virtual = options.get("virtual_tokens", 0) if method in ("prompt_tuning", "p_tuning") else 0
        wrapped = MeanPoolClassifier(peft_model, config.hidden_size, len(labels), virtual)
        head = load_file(str(d / "head.safetensors"))
        with torch.no_grad():
            wrapped.head.weight.copy_(head["weight"])
            wrapped.head.bias.copy_(head["bias"])
        runnable = wrapped.eval()
    elif family == "classifier":
        runnable = SeqClsClassifier(peft_model).eval()
    else:
        runnable = peft_model.eval()
    from promptc.targets.text.prompt import compile_text_target

    prompt = compile_text_target(program, task.name, {"delimit": False})
    identity = f"artifact:{manifest['adapter_hash']}"
    backend = make_backend(family, runnable, tok, labels, identity, options, method)
    return TunedArtifact(d, manifest, task, backend, request_builder(task, family, prompt),
                         options.get("max_new_tokens", 128), manifest.get("trainable_parameters", 0))


def adapter_hash(directory: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            h.update(str(p.relative_to(directory)).encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()

