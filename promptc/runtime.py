"""Loading artifacts for `run` and `test`: compiled text artifacts now, tuned artifacts once built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc.artifacts import read_manifest, verify_files
from promptc.diagnostics import PromptcError


@dataclass
class TextArtifact:
    """A compiled text artifact: its messages.json templates rendered with the inputs."""

    directory: Path
    manifest: dict[str, Any]
    task: Any  # api.Task

    @property
    def max_new_tokens(self) -> int:
        return int(self.manifest["target"]["options"].get("max_new_tokens", 256))

    def requests(self, inputs: list[dict[str, Any]]):
        import json

        from promptc.backends.base import Request
        from promptc.templating import environment

        if "shots" in self.manifest.get("variables", []):
            raise PromptcError([], "this artifact selects shots per input (select = \"similar\"); run it "
                                   "with --target instead")
        msgs = json.loads((self.directory / "messages.json").read_text(encoding="utf-8"))
        plain = environment().from_string((self.directory / "prompt.jinja").read_text(encoding="utf-8"))
        tmpls = [(m["role"], environment().from_string(m["content"])) for m in msgs]
        tp = self.task.text_target()
        out = []
        for i in inputs:
            tp.check_inputs(i)
            out.append(Request([{"role": r, "content": t.render(i)} for r, t in tmpls], plain.render(i),
                               self.task.ir.output))
        return out



def load_artifact(directory: str | Path, program, task_name: str):
    """Load an artifact for a program's task, refusing one built from a different task."""
    d = Path(directory)
    m = read_manifest(d)
    verify_files(d, m)
    task = program.task(task_name)
    if m.get("task", {}).get("name") != task.name:
        raise PromptcError([], f"artifact {d} was built for task '{m.get('task', {}).get('name')}', not "
                               f"'{task.name}'")
    if m.get("task", {}).get("hash") != task.ir.hash:
        raise PromptcError([], f"artifact {d} was built from a different version of task '{task.name}' "
                               "(the task hash differs); rebuild it")
    if m.get("kind") == "text":
        return TextArtifact(d, m, task)
    if m.get("kind") == "tune":
        from promptc.tune.artifact import load_tuned

        return load_tuned(d, m, program, task)
    raise PromptcError([], f"artifact {d} has unknown kind {m.get('kind')!r}")


@dataclass
class Subject:
    """What a test suite runs against: a backend, a way to build its requests, and decoding."""

    kind: str  # "target" | "artifact"
    name: str
    model: str
    backend: Any
    build: Any  # Callable[[list[dict]], list[Request]]
    decoding: Any  # Decoding
    trainable_parameters: int = 0
    extra: dict[str, Any] | None = None

    def requests(self, inputs: list[dict[str, Any]]):
        return self.build(inputs)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "model": self.model,
                "trainable_parameters": self.trainable_parameters, **(self.extra or {})}


def make_decoding(default_max: int, **overrides: Any):
    from promptc.backends import Decoding

    fields = {k: v for k, v in overrides.items() if v is not None}
    fields.setdefault("max_new_tokens", default_max)
    return Decoding(**fields)


def text_subject(task, target: str | None, model: Any, *, batch_size: int = 16, **decoding: Any) -> Subject:
    """A text target of `task` (an api.Task) on a model spec (or a backend object)."""
    from promptc.backends import load_backend
    from promptc.runner import text_requests

    prompt = task.text_target(target)
    if isinstance(model, str):
        opts = {"batch_size": batch_size} if model.startswith("hf:") or model == "tiny-causal" else {}
        backend, spec = load_backend(model, **opts), model
    else:
        backend, spec = model, getattr(model, "spec", type(model).__name__)
    return Subject("target", target or "(default text target)", spec, backend,
                   lambda inputs: text_requests(prompt, inputs),
                   make_decoding(prompt.options.get("max_new_tokens", 256), **decoding))


def artifact_subject(directory: str | Path, program, task_name: str, model: str | None = None, *,
                     batch_size: int = 16, **decoding: Any) -> Subject:
    """A compiled text artifact (needs a model) or a tuned artifact (brings its own)."""
    art = load_artifact(directory, program, task_name)
    if isinstance(art, TextArtifact):
        if not model:
            raise PromptcError([], "a text artifact needs a model: --model SPEC")
        from promptc.backends import load_backend

        opts = {"batch_size": batch_size} if model.startswith("hf:") or model == "tiny-causal" else {}
        return Subject("artifact", str(directory), model, load_backend(model, **opts), art.requests,
                       make_decoding(art.max_new_tokens, **decoding))
    return art.subject(batch_size=batch_size, **decoding)
