"""What one `promptc serve` process serves: subjects, each a model in /v1/models named `name@version`.

- the `--model` itself (chat completions straight to it, as any OpenAI-compatible server does);
- text targets and compiled text artifacts, run on that model (one copy of it);
- tuned artifacts of every kind. Artifacts trained on the same base with the same method share one copy
  of it: each further artifact's adapter is added to the first one's peft model under its own name, and
  its own copy is dropped. LoRA adapters of one base run mixed in one batch with peft's
  `adapter_names`; other methods run grouped per adapter.

Tokenising for the length check uses a copy of the tokenizer, never the engine's: a short prompt is
counted on the event loop (cheaper than the hop to a worker thread and back), a long one on a worker
thread.
"""

from __future__ import annotations

import copy
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from promptc import ir
from promptc.errors import UsageError
from promptc.models.base import Decoding, Request
from promptc.serving.engine import Engine

MIXED_BATCH_METHODS = ("lora",)  # peft runs these with per-row `adapter_names` in one forward pass


class TokenCounter:
    """Counts prompt tokens with private copies of a tokenizer (fast tokenizers are not safe to share
    across threads while another thread pads and truncates with them), several, so that one long prompt
    does not hold up the others. A prompt whose UTF-8 length divided by the longest token's is already
    over the context is refused without tokenising it at all."""

    def __init__(self, tokenizer: Any, context: int, copies: int = 4):
        self.tokenizer = copy.deepcopy(tokenizer)  # for chat templates (rendering only)
        self.context = context
        self.pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(copies):
            self.pool.put(copy.deepcopy(tokenizer))
        try:
            vocab = tokenizer.get_vocab()
            self.max_token_bytes = max(len(t.encode("utf-8")) for t in vocab) if vocab else 0
        except Exception:  # noqa: BLE001 - no bound: every prompt is tokenised
            self.max_token_bytes = 0

    def at_least(self, text: str) -> int:
        """A lower bound on the tokens of `text`, without tokenising it."""
        return len(text.encode("utf-8")) // self.max_token_bytes if self.max_token_bytes else 0

    def count(self, text: str, special: bool = True) -> int:
        tok = self.pool.get()
        try:
            return len(tok(text, add_special_tokens=special)["input_ids"])
        finally:
            self.pool.put(tok)

    def try_count(self, text: str, special: bool = True) -> int | None:
        """`count`, or None when every copy is in use (the caller must not wait: it is the event loop)."""
        try:
            tok = self.pool.get_nowait()
        except queue.Empty:
            return None
        try:
            return len(tok(text, add_special_tokens=special)["input_ids"])
        finally:
            self.pool.put(tok)


@dataclass
class Served:
    """One served subject."""

    id: str
    kind: str  # "model" | "target" | "artifact"
    engine: Engine
    task: ir.Task | None = None
    build: Callable[[list[dict[str, Any]]], list[Request]] | None = None
    decoding: Decoding = field(default_factory=Decoding)
    adapter: str | None = None
    family: str = "causal"  # "causal" | "classifier"
    counter: TokenCounter | None = None
    info: dict[str, Any] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def backend(self) -> Any:
        return self.engine.backend

    def templated(self) -> bool:
        """Raw chat on the model: through its chat template when it has one."""
        tmpl = getattr(self.backend, "templated", None)
        return bool(tmpl()) if callable(tmpl) else False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, **self.info}
        if self.task is not None:
            from promptc.schema import json_schema

            out["task"] = self.task.name
            out["input_schema"] = json_schema(self.task.input_type)
            out["output_schema"] = json_schema(self.task.output)
        return out


@dataclass
class Registry:
    subjects: dict[str, Served] = field(default_factory=dict)
    engines: list[Engine] = field(default_factory=list)

    def add(self, s: Served) -> None:
        if s.id in self.subjects:
            raise UsageError(f"two subjects are both named '{s.id}'",
                             hint="serve each target or artifact once (names are TARGET@VERSION)")
        self.subjects[s.id] = s
        if all(e is not s.engine for e in self.engines):
            self.engines.append(s.engine)


def _counter(backend: Any) -> TokenCounter | None:
    tok = getattr(backend, "tokenizer", None)
    if tok is None:
        return None
    ctx = backend.context_size() if hasattr(backend, "context_size") else 1 << 30
    return TokenCounter(tok, ctx)


def _peft_of(backend: Any) -> Any:
    """The peft model inside a tuned artifact's backend (causal: the model; classifier: its encoder)."""
    m = backend.model if not hasattr(backend, "_model") else backend._model
    return getattr(m, "encoder", m)


class _AdapterRouter:
    """Stands in for a peft model inside an HFBackend: passes per-row `adapter_names` to generate()."""

    def __init__(self, peft_model: Any):
        self.peft = peft_model
        self.names: list[str] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.peft, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        if self.names is not None:
            kwargs["adapter_names"] = self.names
        return self.peft.generate(*args, **kwargs)


@dataclass
class _Group:
    """Tuned artifacts that share one base model copy."""

    engine: Engine
    peft: Any
    names: list[str] = field(default_factory=list)
    router: _AdapterRouter | None = None


def build_registry(*, model: str | None = None, targets: Sequence[tuple[ir.Program, str]] = (),
                   text_artifacts: Sequence[tuple[str, ir.Program]] = (), tuned: Sequence[tuple[str, ir.Program]] = (),
                   window: float = 0.0, max_batch: int = 32,
                   on_batch: Callable[[str, int], None] | None = None) -> Registry:
    """Load everything to serve. `targets` are (program, text target name); artifacts are (dir, program)."""
    from promptc.artifacts import read_manifest
    from promptc.execution import artifact_subject, backend_for, text_subject

    reg = Registry()
    base_engine = None
    if model is not None:
        backend, spec = backend_for(model, max_batch)
        _ = cast(Any, backend).model  # load before serving, so the first request does not pay for it
        base_engine = Engine(_engine_name(spec), backend, window=window, max_batch=max_batch, on_batch=on_batch)
        reg.add(Served(spec, "model", base_engine, counter=_counter(backend),
                       info={"model": spec}))
    elif targets or text_artifacts:
        raise UsageError("text targets and compiled text artifacts run on a model: give --model SPEC")

    for program, name in targets:
        target = program.target(name, kind="text")
        task = program.tasks[target.task]
        assert base_engine is not None
        subj = text_subject(program, task, name, base_engine.backend, batch_size=max_batch)
        reg.add(Served(f"{name}@{program.version}", "target", base_engine, task, subj.build, subj.decoding,
                       counter=reg.subjects[base_engine.backend.spec].counter,
                       info={"program": program.name, "version": program.version, "target": name,
                             "model": subj.model}))

    for directory, program in text_artifacts:
        m = read_manifest(directory)
        task = program.task(m.get("task", {}).get("name"))
        assert base_engine is not None
        subj = artifact_subject(directory, program, task, base_engine.backend, batch_size=max_batch)
        reg.add(Served(_artifact_id(directory, m, reg), "artifact", base_engine, task, subj.build, subj.decoding,
                       counter=reg.subjects[base_engine.backend.spec].counter,
                       info=_artifact_info(directory, m)))

    groups: dict[tuple, _Group] = {}
    for directory, program in tuned:
        m = read_manifest(directory)
        task = program.task(m.get("task", {}).get("name"))
        subj = artifact_subject(directory, program, task, batch_size=max_batch)  # every check, every kind
        base = m.get("base") or {}
        key = (base.get("weights_hash"), base.get("config_hash"), m.get("family"), m.get("method"))
        family = m.get("family", "causal")
        group = groups.get(key)
        adapter = None
        if group is None:
            sid = _artifact_id(directory, m, reg)
            engine = Engine(_engine_name(sid), subj.backend, window=window, max_batch=max_batch, on_batch=on_batch)
            group = groups[key] = _Group(engine, _peft_of(subj.backend), ["default"])
            _enable_adapter_selection(group, family, m.get("method"))
            adapter = "default"
        else:
            adapter = f"a{len(group.names)}"
            _share_base(group, subj.backend, adapter, family)
            group.names.append(adapter)
            sid = _artifact_id(directory, m, reg)
        backend = subj.backend if family == "classifier" else group.engine.backend
        if family == "classifier" and backend is not group.engine.backend:
            # a classifier keeps its own head: its own engine over the shared encoder, on the group's thread
            engine = Engine(_engine_name(sid), backend, window=window, max_batch=max_batch, on_batch=on_batch)
            engine.pool = group.engine.pool
            engine.select_adapter = group.engine.select_adapter
        else:
            engine = group.engine
        reg.add(Served(sid, "artifact", engine, task, subj.build, subj.decoding, adapter=adapter, family=family,
                       counter=_counter(backend) if family != "classifier" else None,
                       info=_artifact_info(directory, m)))
    return reg


def _enable_adapter_selection(group: _Group, family: str, method: str | None) -> None:
    peft = group.peft

    def select(adapter: str | list[str] | None) -> None:
        if isinstance(adapter, list):
            assert group.router is not None
            group.router.names = adapter
            return
        if group.router is not None:
            group.router.names = None
        if adapter is not None and getattr(peft, "active_adapter", None) != adapter:
            peft.set_adapter(adapter)

    group.engine.select_adapter = select
    if family != "classifier" and method in MIXED_BATCH_METHODS and hasattr(group.engine.backend, "_model"):
        group.router = _AdapterRouter(peft)
        group.engine.backend._model = group.router
        group.engine.mixed_adapters = True


def _share_base(group: _Group, backend: Any, adapter: str, family: str) -> None:
    """Move a loaded artifact's adapter into the group's peft model, and point its backend at it."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    own = _peft_of(backend)
    group.peft.add_adapter(adapter, own.peft_config["default"])
    set_peft_model_state_dict(group.peft, get_peft_model_state_dict(own, adapter_name="default"), adapter_name=adapter)
    group.peft.eval()
    if family == "classifier":
        backend.model.encoder = group.peft  # its own head, the shared encoder; its own base copy is freed
    import gc

    gc.collect()


def _engine_name(sid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in sid)[:60]


def _artifact_id(directory: str, m: dict[str, Any], reg: Registry) -> str:
    target = m.get("target")
    name = target.get("name") if isinstance(target, dict) else target
    version = (m.get("program") or {}).get("version", "0")
    sid = f"{name or Path(directory).name}@{version}"
    if sid in reg.subjects:
        sid = f"{Path(directory).name}@{version}"
    return sid


def _artifact_info(directory: str, m: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"artifact": str(directory), "artifact_kind": m.get("kind"),
                            "program": (m.get("program") or {}).get("name"),
                            "version": (m.get("program") or {}).get("version")}
    for k in ("method", "family", "status"):
        if m.get(k) is not None:
            info[k] = m[k]
    if isinstance(m.get("base"), dict):
        info["base"] = m["base"].get("id")
    return info
