"""Execution: (subject, inputs) -> outputs. A subject is a text target on a model, or an artifact; its
requests go to a backend through the generation cache, and every output is parsed against the task's
output type. The test suite, the workflows, the server, the API and the CLI all run models through here.

Artifacts are loaded by kind: `ARTIFACT_KINDS` maps a manifest's `kind` to the target module that wrote
that format, after the checks every kind shares (a manifest, file hashes, the right task and version).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc import ir
from promptc.artifacts import read_manifest, verify_files
from promptc.errors import ArtifactError, ModelError, UsageError
from promptc.models.base import Backend, Decoding, Generation, Request, generate
from promptc.outputs import Parsed, failed_call, parse_output


@dataclass
class Result:
    """One input's outcome: the parsed output (or why there is none) and the call's usage."""

    input: dict[str, Any]
    parsed: Parsed
    generation: Generation

    @property
    def ok(self) -> bool:
        return self.parsed.ok

    @property
    def output(self) -> Any:
        return self.parsed.value

    @property
    def error(self) -> str | None:
        return self.generation.error or self.parsed.error


def text_requests(prompt: Any, inputs: list[dict[str, Any]]) -> list[Request]:
    """Requests for a compiled TextPrompt: chat messages and the plain prompt, for any backend."""
    return [Request(prompt.render(i, "chat"), prompt.render(i, "plain"), prompt.task.output) for i in inputs]


def run_requests(backend: Backend, requests: list[Request], inputs: list[dict[str, Any]], decoding: Decoding,
                 cache: Any = None, sample: int = 0) -> list[Result]:
    """Generate for every request (through the cache) and parse each output against its type."""
    gens = generate(backend, requests, decoding, cache, sample)
    out = []
    for inp, req, g in zip(inputs, requests, gens):
        parsed = failed_call(g.error) if g.error else \
            parse_output(req.output, g.text, finish_reason=g.finish_reason, budget=decoding.max_new_tokens)
        out.append(Result(inp, parsed, g))
    return out


def preflight(backend: Any) -> None:
    """Fail at once, naming the URL, when nothing answers at an HTTP backend's server (connection
    refused, an unknown host, no answer to connect), instead of retrying every request and reporting
    each as a failed call. One TCP connection with a short timeout; skipped behind a proxy, where the
    proxy decides, and for local backends."""
    from promptc.models.loading import connect_problem

    base = getattr(backend, "base_url", None)
    if not isinstance(base, str):
        return
    why = connect_problem(base, min(5.0, float(getattr(backend, "connect_timeout", 5.0) or 5.0)))
    if why:
        raise ModelError(f"nothing answered at {base} ({why})",
                         hint="start the server, or fix the address: openai:MODEL@http://HOST:PORT/v1 "
                              "(or OPENAI_BASE_URL)")


def every_call_failed(results: list[Result]) -> str | None:
    """When there were calls and not one got an answer: a sentence saying so, with the first error."""
    errors = [r.generation.error for r in results if r.generation.error]
    if not results or len(errors) < len(results):
        return None
    n = len(results)
    return f"{'the one call' if n == 1 else f'all {n} calls'} failed; the first: {errors[0]}"


def open_cache(enabled: bool = True, path: str | None = None) -> Any:
    """The SQLite generation cache (None when disabled)."""
    if not enabled:
        return None
    from promptc.models.cache import Cache

    return Cache(path)


@dataclass
class Subject:
    """What a test suite runs against: a backend, a way to build its requests, and decoding."""

    kind: str  # "target" | "artifact"
    name: str
    model: str
    backend: Any
    build: Callable[[list[dict[str, Any]]], list[Request]]
    decoding: Decoding
    trainable_parameters: int = 0
    extra: dict[str, Any] | None = None

    def requests(self, inputs: list[dict[str, Any]]) -> list[Request]:
        return self.build(inputs)

    def run(self, inputs: list[dict[str, Any]], cache: Any = None, sample: int = 0) -> list[Result]:
        """Run this subject on `inputs`: requests, generation through the cache, parsed outputs."""
        return run_requests(self.backend, self.requests(inputs), inputs, self.decoding, cache, sample)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "model": self.model,
                "trainable_parameters": self.trainable_parameters, **(self.extra or {})}


def make_decoding(default_max: int, **overrides: Any) -> Decoding:
    """Decoding with the subject's own budget unless `max_new_tokens` (or another field) overrides it."""
    fields = {k: v for k, v in overrides.items() if v is not None}
    fields.setdefault("max_new_tokens", default_max)
    return Decoding(**fields)


def backend_for(model: Any, batch_size: int = 16) -> tuple[Backend, str]:
    """A backend and its spec, from a model spec string or a backend object."""
    if isinstance(model, str):
        from promptc.models import load_backend

        return load_backend(model, batch_size=batch_size), model
    return model, getattr(model, "spec", type(model).__name__)


def text_subject(program: ir.Program, task: ir.Task, target: str | None, model: Any, *, batch_size: int = 16,
                 **decoding: Any) -> Subject:
    """A text target of `task` (or a default text target) on a model spec or a backend object."""
    from promptc.targets.text.prompt import text_prompt

    prompt = text_prompt(program, task.name, target)
    backend, spec = backend_for(model, batch_size)
    caps = {k: prompt.options[k] for k in ("max_str_len", "max_items") if prompt.options.get(k) is not None}
    return Subject("target", target or "(default text target)", spec, backend,
                   lambda inputs: text_requests(prompt, inputs),
                   make_decoding(prompt.options.get("max_new_tokens", 256), **{**caps, **decoding}))


def _load_text(directory: Path, manifest: dict[str, Any], program: ir.Program, task: ir.Task,
               device: str = "auto", dtype: str = "auto") -> Any:
    from promptc.targets.text.artifact import load_text_artifact

    del device, dtype  # a text artifact runs on the model it is given, placed by that model's flags

    return load_text_artifact(directory, manifest, program, task)


def _load_tuned(directory: Path, manifest: dict[str, Any], program: ir.Program, task: ir.Task,
                device: str = "auto", dtype: str = "auto") -> Any:
    from promptc.targets.tune.artifact import load_tuned

    return load_tuned(directory, manifest, program, task, device=device, dtype=dtype)


def _dependencies_unchanged(manifest: dict[str, Any], program: ir.Program, task: ir.Task) -> bool:
    """A kind that records a dependency fingerprint survives edits outside it (a classifier does not
    read the prompt's prose); a kind without one depends on the whole task."""
    if manifest.get("kind") == "tune" and "depends" in manifest:
        from promptc.targets.tune.artifact import dependencies_unchanged

        return dependencies_unchanged(manifest, program, task)
    return False


def _what_changed(manifest: dict[str, Any], program: ir.Program, task: ir.Task, directory: Path | None = None) -> str:
    """The dependencies that changed where the manifest records one hash per dependency; the whole
    list it covers where it records only their joint hash; for a text artifact, which of its files
    would differ now; else just the task hash."""
    def words(names: list[str]) -> str:
        return ", ".join(str(c).replace("_", " ") for c in names)

    if manifest.get("kind") == "tune":
        from promptc.targets.tune.artifact import changed_dependencies

        changed = changed_dependencies(manifest, program, task)
        if changed:
            return f"what it depends on changed: its {words(changed)}"
    covers = (manifest.get("depends") or {}).get("covers")
    if covers:
        return f"what it depends on changed: one of its {words(covers)}"
    if manifest.get("kind") == "text" and directory is not None:
        from promptc.targets.text.artifact import changed_parts

        parts = changed_parts(directory, manifest, program, task)
        if parts:
            return f"the task hash differs: its {', '.join(parts)} changed"
    return "the task hash differs"


def rebuild_hint(manifest: dict[str, Any], program: ir.Program, directory: Path) -> str:
    """The exact command that rebuilds a stale artifact from the program as it is now."""
    target = manifest.get("target")
    name = target.get("name") if isinstance(target, dict) else target
    if not name:
        return "rebuild it"
    file = program.path or "FILE"
    out = "" if directory == Path("out") / name else f" -o {directory}"
    command = "tune" if manifest.get("kind") == "tune" else "compile"
    return f"rebuild it: promptc {command} {file} --target {name}{out}"


ArtifactLoader = Callable[[Path, dict[str, Any], ir.Program, ir.Task, str, str], Any]  # ..., device, dtype
ARTIFACT_KINDS: dict[str, ArtifactLoader] = {"text": _load_text, "tune": _load_tuned}


def load_artifact(directory: str | Path, program: ir.Program, task: ir.Task, *, device: str = "auto",
                  dtype: str = "auto") -> Any:
    """Load an artifact of `task`, refusing tampered files and one built for another task or version.
    A tuned artifact's model runs on `device` in `dtype` (`auto`: the best device, the training dtype)."""
    d = Path(directory)
    m = read_manifest(d)
    verify_files(d, m)
    built_for = m.get("task", {})
    if built_for.get("name") != task.name:
        raise ArtifactError(f"artifact {d} was built for task '{built_for.get('name')}', not '{task.name}'")
    if built_for.get("hash") != task.hash and not _dependencies_unchanged(m, program, task):
        raise ArtifactError(f"artifact {d} was built from a different version of task '{task.name}' "
                            f"({_what_changed(m, program, task, d)})", hint=rebuild_hint(m, program, d))
    loader = ARTIFACT_KINDS.get(m.get("kind"))  # type: ignore[arg-type]
    if loader is None:
        raise ArtifactError(f"artifact {d} has unknown kind {m.get('kind')!r}",
                            hint=f"kinds: {', '.join(ARTIFACT_KINDS)}")
    return loader(d, m, program, task, device, dtype)


def artifact_subject(directory: str | Path, program: ir.Program, task: ir.Task, model: Any = None, *,
                     batch_size: int = 16, device: str = "auto", dtype: str = "auto", **decoding: Any) -> Subject:
    """A compiled text artifact (run on `model`) or a tuned artifact (it brings its own model, placed on
    `device` in `dtype`)."""
    from promptc.targets.text.artifact import TextArtifact

    art = load_artifact(directory, program, task, device=device, dtype=dtype)
    if isinstance(art, TextArtifact):
        if model is None:
            raise UsageError("a text artifact needs a model to run on", hint="give --model SPEC")
        backend, spec = backend_for(model, batch_size)
        return Subject("artifact", str(directory), spec, backend, art.requests,
                       make_decoding(art.max_new_tokens, **decoding))
    if hasattr(art.backend, "batch_size"):
        art.backend.batch_size = batch_size
    return Subject("artifact", str(directory), art.model_name, art.backend, art.requests,
                   make_decoding(art.max_new_tokens, **decoding), art.trainable,
                   {"status": art.manifest.get("status")})
