"""Tuned artifacts, written and read in this one module: the manifest (a typed builder and reader), the
dependency fingerprint, the atomic writer, and loading with every check.

An artifact holds the peft adapter (safetensors only), the classifier head and label map where there
is one, and manifest.json. Loading refuses a different base model, a task whose dependencies changed,
tampered files, and any pickle-format weights.

What an artifact depends on (its dependency fingerprint, checked at load):
- every family: the task's input and output schema, the examples it trained on (the declared ones that
  are not test inputs), and the base model (whose weights are checked separately, by hash);
- a causal LM also reads the task prompt rendered with its inputs, so its prompt template counts too;
- an encoder's record heads trained with the constraint loss (`constraint_weight` > 0) read the task's
  constraints, so they count too.
A classifier never reads the prompt, so editing the prompt's prose (or the system text, an enum
classifier's constraints or the tests) does not invalidate it. An encoder keeps the constraints of the
program it is loaded with at prediction time.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promptc import ir
from promptc.artifacts import atomic_dir, file_hashes, sha256_file, write_json
from promptc.errors import ArtifactError
from promptc.models.base import Request
from promptc.targets.tune.options import TuneOptions

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
FINGERPRINT_VERSION = 1


# ---------------------------------------------------------------- the dependency fingerprint
def dependencies(program: ir.Program, task: ir.Task, family: str, base_id: str,
                 constrained: bool = False) -> dict[str, Any]:
    """What a tuned artifact of `task` depends on (see the module docstring), as plain JSON values."""
    from promptc.schema import json_schema

    examples = program.without_test_inputs(task.name, list(task.examples), lambda ex: ex.input)
    deps: dict[str, Any] = {
        "input_schema": json_schema(task.input_type),
        "output_schema": json_schema(task.output),
        "examples": [[ex.input, ex.output] for ex in examples],
        "base": base_id,
    }
    if constrained and family == "classifier" and isinstance(task.output, ir.RecordT) and task.constraints:
        # a record's heads trained with the constraint loss, which reads the constraints
        deps["constraints"] = [c.source for c in task.constraints]
    if family == "causal":
        from promptc.targets.text.prompt import compile_text_target

        deps["prompt"] = compile_text_target(program, task.name, {"delimit": False}).user_source
    return deps


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def dependency_fingerprint(program: ir.Program, task: ir.Task, family: str, base_id: str,
                           constrained: bool = False) -> dict[str, Any]:
    """{"version", "covers", "hash", "parts"}: recorded in the manifest, recomputed and compared at load.
    `parts` holds one hash per dependency, so a refusal can name the ones that changed."""
    deps = dependencies(program, task, family, base_id, constrained)
    return {"version": FINGERPRINT_VERSION, "covers": sorted(deps), "hash": _digest(deps),
            "parts": {k: _digest(v) for k, v in sorted(deps.items())}}


def _constrained(manifest: dict[str, Any]) -> bool:
    """Whether the artifact trained with the constraint loss (so its constraints are a dependency)."""
    return float((manifest.get("options") or {}).get("constraint_weight") or 0) > 0


def changed_dependencies(manifest: dict[str, Any], program: ir.Program, task: ir.Task) -> list[str] | None:
    """The dependencies whose hashes differ from the ones recorded, or None when the manifest cannot
    tell (written before per-dependency hashes were recorded, or by another fingerprint version)."""
    dep = manifest.get("depends")
    if not isinstance(dep, dict) or dep.get("version") != FINGERPRINT_VERSION or not isinstance(dep.get("parts"), dict):
        return None
    base_id = (manifest.get("base") or {}).get("id", "")
    now = dependency_fingerprint(program, task, manifest.get("family", ""), base_id, _constrained(manifest))["parts"]
    recorded = dep["parts"]
    return sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))


def dependencies_unchanged(manifest: dict[str, Any], program: ir.Program, task: ir.Task) -> bool:
    """True when the task still has what this artifact was trained on (so a prose edit keeps it)."""
    dep = manifest.get("depends")
    if not isinstance(dep, dict) or dep.get("version") != FINGERPRINT_VERSION:
        return False
    base_id = (manifest.get("base") or {}).get("id", "")
    return dependency_fingerprint(program, task, manifest.get("family", ""), base_id,
                                  _constrained(manifest))["hash"] == dep.get("hash")


# ---------------------------------------------------------------- the manifest
REQUIRED = ("kind", "status", "program", "task", "target", "family", "method", "options", "base", "data",
            "training", "tests", "adapter_hash", "files")


@dataclass
class TunedManifest:
    """manifest.json of a tuned artifact. Build it with `TunedManifest.build`, read one with
    `TunedManifest.read`; `m["key"]` reads the JSON as written."""

    status: str
    program: dict[str, Any]
    task: dict[str, Any]
    target: str
    family: str
    method: str
    options: dict[str, Any]
    lr: float
    seed: int
    base: dict[str, Any]
    labels: list[str] | None
    data: dict[str, Any]
    trainable_parameters: int
    training: dict[str, Any]
    tests: dict[str, Any]
    resources: dict[str, Any]
    depends: dict[str, Any]
    versions: dict[str, str]
    promptc: str = ""
    kind: str = "tune"
    adapter_hash: str = ""
    files: dict[str, str] = field(default_factory=dict)
    search: dict[str, Any] | None = None  # `promptc tune --search`: every trial and the best
    seeds: dict[str, Any] | None = None  # `seeds = N`: every seed's cross-validated score and the chosen one
    heads: list[dict[str, Any]] | None = None  # an encoder's heads of a record output (promptc/heads.py)

    # --- reading
    @classmethod
    def read(cls, m: dict[str, Any], where: Path | str = "") -> TunedManifest:
        missing = [k for k in REQUIRED if k not in m]
        if missing:
            raise ArtifactError(f"artifact {where} has an incomplete manifest (no {', '.join(missing)})",
                                hint="rebuild it with promptc tune")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in m.items() if k in known}
        values.setdefault("lr", m.get("lr") or 0.0)
        values.setdefault("seed", m["options"].get("seed", 0))
        values.setdefault("labels", None)
        values.setdefault("trainable_parameters", 0)
        values.setdefault("resources", {})
        values.setdefault("depends", {})
        values.setdefault("versions", {})
        return cls(**values)

    def __getitem__(self, key: str) -> Any:
        return self.json()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.json().get(key, default)

    def json(self) -> dict[str, Any]:
        order = ("promptc", "kind", "status", "program", "task", "target", "family", "method", "options", "lr",
                 "seed", "base", "labels", "data", "trainable_parameters", "training", "tests", "resources",
                 "depends", "versions", "adapter_hash", "files")
        d = asdict(self)
        out = {k: d[k] for k in order}
        if self.search is not None:
            out["search"] = self.search
        if self.seeds is not None:
            out["seeds"] = self.seeds
        if self.heads is not None:
            out["heads"] = self.heads
        return out

    def output_heads(self, output: ir.Type) -> Any:
        """The classifier family's heads: recorded for a record output, one head on an enum output."""
        from promptc.heads import Head, Heads

        if self.heads:
            return Heads.from_list(self.heads, output)
        return Heads((Head("", "single", tuple(self.labels or ()), 0, "enum"),), output)

    @property
    def excluded_test_inputs(self) -> int:
        return int(self.data.get("excluded_test_inputs", 0))

    @property
    def gate_passed(self) -> bool:
        return self.status in ("passed", "ungated")

    @property
    def tune_options(self) -> TuneOptions:
        return TuneOptions.build({k: v for k, v in self.options.items() if k in TuneOptions.__dataclass_fields__})

    # --- building
    @classmethod
    def build(cls, *, program: ir.Program, task: ir.Task, target: str, tuned: Any, data: Any, state: Any,
              report: Any, status: str, lr: float, trainable: int, resources: dict[str, Any],
              extra_examples: list[str], validation: dict[str, Any] | None = None,
              search: dict[str, Any] | None = None, seeds: dict[str, Any] | None = None) -> TunedManifest:
        from promptc._version import __version__

        o: TuneOptions = tuned.options
        curve = state.curve
        best = next((r for r in curve if r["step"] == state.best_step), curve[-1] if curve else {})
        last = curve[-1] if curve else {}
        return cls(
            promptc=__version__,
            status=status,
            program={"name": program.name, "version": program.version, "hash": program.hash},
            task={"name": task.name, "hash": task.hash},
            target=target,
            family=tuned.family,
            method=o.method,
            options=o.for_manifest(),
            lr=lr,
            seed=o.seed,
            base={"id": tuned.base.name, "source": tuned.base.source, "model_type": tuned.config.model_type,
                  **tuned.base_fingerprint},
            labels=list(tuned.labels) or None,
            data={"hash": data.digest(), "train": len(data.train), "val": len(data.val),
                  "excluded_test_inputs": data.excluded_tests, "redacted_secrets": len(data.secrets),
                  "extra_files": list(extra_examples), "provenance": data.provenance_summary(),
                  "validation": validation},
            trainable_parameters=trainable,
            training={"steps": state.step, "epochs": round(state.step / max(1, len(data.train) / o.batch_size), 3),
                      "stopped": state.stopped, "best_step": state.best_step,
                      "best": {k: best.get(k) for k in ("val_loss", "val_accuracy", "split")},
                      "final": {k: last.get(k) for k in ("loss", "val_loss", "val_accuracy")},
                      "curve": [{k: r[k] for k in ("step", "loss", "val_loss", "val_accuracy")} for r in curve]},
            tests=_tests_section(report, o, status),
            resources=resources,
            depends=dependency_fingerprint(program, task, tuned.family, tuned.base.name,
                                           tuned.options.constraint_weight > 0),
            versions=_versions(),
            search=search,
            seeds=seeds,
            heads=data.heads.as_list() if data.heads is not None and not data.heads.is_root else None,
        )


def _tests_section(report: Any, o: TuneOptions, status: str) -> dict[str, Any]:
    return {"summary": report.summary_line(), "passed": report.passed, "failed": report.failed,
            "skipped": report.skipped, "min_pass": o.min_pass, "gate": status,
            "results": {r.name: {"kind": r.kind, "status": r.status, "pass_rate": round(r.pass_rate, 4)}
                        for r in report.results}}


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import torch
    import transformers

    from promptc._version import __version__

    return {"promptc": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "accelerate": accelerate.__version__, "python": sys.version.split()[0]}


# ---------------------------------------------------------------- writing
def write_tuned(dest: Path, tuned: Any, manifest: TunedManifest) -> TunedManifest:
    """Write the artifact directory atomically: adapter, head, labels, then the manifest with hashes."""
    with atomic_dir(dest) as tmp:
        tuned.peft_model.save_pretrained(str(tmp / "adapter"), safe_serialization=True)
        for leftover in (tmp / "adapter").glob("README.md"):
            leftover.unlink()
        head = getattr(tuned.net, "head", None)
        if head is not None:
            from safetensors.torch import save_file

            save_file({k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()},
                      str(tmp / "head.safetensors"))
        span = getattr(tuned.net, "span", None)
        if span is not None:  # span heads: start and end logits per token
            from safetensors.torch import save_file

            save_file({k: v.detach().float().cpu().contiguous() for k, v in span.state_dict().items()},
                      str(tmp / "span.safetensors"))
        if tuned.labels:
            (tmp / "labels.json").write_text(json.dumps(tuned.labels), encoding="utf-8")
        manifest.adapter_hash = adapter_hash(tmp)
        from promptc.targets.model_card import write_model_card

        write_model_card(tmp, manifest.json())  # README.md, the model card: after the adapter hash, before file hashes
        manifest.files = file_hashes(tmp)
        write_json(tmp / "manifest.json", manifest.json())
    return manifest


def adapter_hash(directory: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            h.update(str(p.relative_to(directory)).encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- running
@dataclass
class TunedArtifact:
    """A loaded tuned artifact: the backend that runs it and how its requests are built."""

    directory: Path
    manifest: TunedManifest
    task: ir.Task
    backend: Any
    build: Callable[[list[dict[str, Any]]], list[Request]]
    max_new_tokens: int
    trainable: int

    def requests(self, inputs: list[dict[str, Any]]) -> list[Request]:
        return self.build(inputs)

    @property
    def model_name(self) -> str:
        return f"{self.manifest.base['id']} + {self.manifest.method}"


def request_builder(task: ir.Task, family: str, prompt) -> Callable[[list[dict[str, Any]]], list[Request]]:
    """How a tuned model's requests are built (the same formatting as its training data)."""
    from promptc.targets.tune.data import causal_prompt, classifier_text

    def build(inputs: list[dict[str, Any]]) -> list[Request]:
        out = []
        for i in inputs:
            prompt.check_inputs(i)
            text = classifier_text(i) if family == "classifier" else causal_prompt(prompt, i)
            out.append(Request([{"role": "user", "content": text}], text, task.output, inputs=i))
        return out

    return build


# ---------------------------------------------------------------- loading
def load_tuned(directory: Path, manifest: dict[str, Any], program: ir.Program, task: ir.Task,
               device: str = "auto", dtype: str = "auto") -> TunedArtifact:
    """Rebuild a tuned model from its base and adapter, refusing anything that does not match. The base
    loads in the dtype it was trained in (its weights hash is taken in that dtype); it runs on `device`,
    in `dtype` when one is given (`auto`: the training dtype)."""
    import torch
    from peft import PeftModel

    from promptc.models.device import pick_device, pick_dtype, torch_dtype
    from promptc.targets.tune.model import (
        base_weights,
        fingerprint,
        load_causal,
        load_config,
        load_encoder,
        make_backend,
        resolve_base,
    )
    from promptc.targets.tune.nets import MeanPoolClassifier, SeqClsClassifier

    d = Path(directory)
    bad = [p.name for p in d.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    if bad:
        raise ArtifactError(f"artifact {d} contains pickle-format files ({', '.join(bad)}); promptc loads "
                            "safetensors only and refuses it")
    m = TunedManifest.read(manifest, d)
    if m.status == "failed":
        print(f"promptc: warning: artifact {d} failed its test gate when it was built", file=sys.stderr)
    o = m.tune_options
    run_dtype, dtype = dtype, m.resources.get("dtype", "float32")
    base = resolve_base(m.base["id"])
    config = load_config(base)
    labels = m.labels or []
    heads = m.output_heads(task.output) if m.family == "classifier" else None
    if m.family == "classifier":
        model, tok = load_encoder(base, len(labels), o.pooling, dtype)
    else:
        model, tok = load_causal(base, dtype)
    fp = fingerprint(base_weights(model, m.family, o.pooling), config)
    if fp["weights_hash"] != m.base.get("weights_hash") or fp["config_hash"] != m.base.get("config_hash"):
        raise ArtifactError(f"artifact {d} was trained on a different base model than '{base.name}' now "
                            f"resolves to (weights {fp['weights_hash'][:12]} != "
                            f"{str(m.base.get('weights_hash'))[:12]}); refusing to load it")
    peft_model = PeftModel.from_pretrained(model, str(d / "adapter"), is_trainable=False)
    if m.family == "classifier" and o.pooling == "mean":
        from safetensors.torch import load_file

        n_spans = len(heads.spans) if heads is not None else 0
        wrapped = MeanPoolClassifier(peft_model, config.hidden_size, len(labels), o.virtual, n_spans)
        head = load_file(str(d / "head.safetensors"))
        with torch.no_grad():
            wrapped.head.weight.copy_(head["weight"])
            wrapped.head.bias.copy_(head["bias"])
            if wrapped.span is not None:
                span = load_file(str(d / "span.safetensors"))
                wrapped.span.weight.copy_(span["weight"])
                wrapped.span.bias.copy_(span["bias"])
        runnable: Any = wrapped
    elif m.family == "classifier":
        runnable = SeqClsClassifier(peft_model)
    else:
        runnable = peft_model
    # inference runs wholly in the training dtype (the adapter was kept float32 only to train it), or in
    # the dtype asked for; another dtype can change outputs, so its cache entries are its own
    dev = pick_device(device)
    run_dtype = dtype if run_dtype == "auto" else pick_dtype(run_dtype, dev)
    runnable = runnable.to(device=dev, dtype=torch_dtype(run_dtype)).eval()
    from promptc.targets.text.prompt import compile_text_target

    prompt = compile_text_target(program, task.name, {"delimit": False})
    identity = f"artifact:{m.adapter_hash}" + (f";dtype={run_dtype}" if run_dtype != dtype else "")
    backend = make_backend(m.family, runnable, tok, heads, identity, o, task.constraints)
    return TunedArtifact(d, m, task, backend, request_builder(task, m.family, prompt), o.max_new_tokens,
                         m.trainable_parameters)
