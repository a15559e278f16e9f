"""Tuned artifacts: write them atomically, load them with every check, and run them as test subjects.

An artifact holds the peft adapter (safetensors only), the classifier head and label map where there
is one, and manifest.json. Loading refuses a different base model, a different task, tampered files,
and any pickle-format weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from promptc.artifacts import sha256_file
from promptc.backends.base import Decoding, Generation, Request
from promptc.diagnostics import PromptcError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class ClassifierBackend:
    """A tuned encoder classifier behind the backend protocol: the 'generation' is the label."""

    def __init__(self, model, tokenizer, labels: list[str], identity: str, max_length: int, virtual: int):
        self.model, self.tokenizer, self.labels = model, tokenizer, labels
        self._identity, self.max_length, self.virtual = identity, max_length, virtual
        self.spec = identity

    def identity(self) -> str:
        return self._identity

    def request_key(self, request: Request, decoding: Decoding) -> Any:
        return request.prompt

    def generate(self, requests: list[Request], decoding: Decoding, sample: int = 0) -> list[Generation]:
        import torch

        out = []
        for i in range(0, len(requests), 32):
            chunk = requests[i:i + 32]
            t0 = time.perf_counter()
            enc = self.tokenizer([r.prompt for r in chunk], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            with torch.no_grad():
                pred = self.model(enc["input_ids"], enc["attention_mask"]).argmax(-1).tolist()
            secs = (time.perf_counter() - t0) / len(chunk)
            lengths = enc["attention_mask"].sum(1).tolist()
            out.extend(Generation(self.labels[p], int(n) + self.virtual, 1, secs) for p, n in zip(pred, lengths))
        return out


class TunedArtifact:
    """A loaded tuned artifact, ready to run or test."""

    def __init__(self, directory: Path, manifest: dict[str, Any], task, backend, build, max_new_tokens: int,
                 trainable: int):
        self.directory, self.manifest, self.task = directory, manifest, task
        self.backend, self.build, self.max_new_tokens, self.trainable = backend, build, max_new_tokens, trainable

    def requests(self, inputs: list[dict[str, Any]]):
        return self.build(inputs)

    def subject(self, batch_size: int = 16, **decoding: Any):
        from promptc.runtime import Subject, make_decoding

        if hasattr(self.backend, "batch_size"):
            self.backend.batch_size = batch_size
        return Subject("artifact", str(self.directory), f"{self.manifest['base']['id']} + {self.manifest['method']}",
                       self.backend, self.build, make_decoding(self.max_new_tokens, **decoding), self.trainable,
                       {"status": self.manifest.get("status")})


def request_builder(task, family: str, prompt) -> Any:
    """How a tuned model's requests are built (the same formatting as its training data)."""
    from promptc.tune.data import causal_prompt, classifier_text

    def build(inputs: list[dict[str, Any]]) -> list[Request]:
        out = []
        for i in inputs:
            prompt.check_inputs(i)
            text = classifier_text(i) if family == "classifier" else causal_prompt(prompt, i)
            out.append(Request([{"role": "user", "content": text}], text, task.ir.output))
        return out

    return build


def make_backend(family: str, model, tokenizer, labels: list[str], identity: str, options: dict[str, Any],
                 method: str):
    if family == "classifier":
        virtual = options.get("virtual_tokens", 0) if method in ("prompt_tuning", "p_tuning") else 0
        return ClassifierBackend(model, tokenizer, labels, identity, options.get("max_length", 256), virtual)
    from promptc.backends.hf import HFBackend

    # transformers 5.24 + peft 0.21 drop a prefix-tuning prefix under the default KV cache, so prefix
    # artifacts decode without the cache (tests/test_tune.py checks generation against argmax).
    return HFBackend(identity, model=model, tokenizer=tokenizer, identity=identity,
                     use_cache=method != "prefix_tuning", use_chat_template=False)


def load_tuned(directory: Path, manifest: dict[str, Any], program, task) -> TunedArtifact:
    """Rebuild a tuned model from its base and adapter, refusing anything that does not match."""
    import torch
    from peft import PeftModel

    from promptc.tune.model import (
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
        raise PromptcError([], f"artifact {d} contains pickle-format files ({', '.join(bad)}); promptc loads "
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
        raise PromptcError([], f"artifact {d} was trained on a different base model than '{base.name}' now "
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
    from promptc.targets.text import compile_text_target

    prompt = compile_text_target(program.ir, task.name, {"delimit": False})
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

