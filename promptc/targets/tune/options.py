"""A tune target's options as one typed object, built once from the option registry (promptc.options):
code reads `opts.batch_size`, never `options.get("batch_size", 8)`, so each default has one home."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from promptc.options import TUNE_OPTIONS


@dataclass(frozen=True)
class TuneOptions:
    """Every `target tune` option (see promptc.options.TUNE_OPTIONS for the help text of each)."""

    method: str
    base: str
    family: str
    epochs: int
    max_steps: int
    lr: float | None
    batch_size: int
    weight_decay: float
    seed: int
    seeds: int
    val_split: float | None
    patience: int
    eval_every: int
    max_length: int
    max_new_tokens: int
    min_pass: float
    pooling: str
    virtual_tokens: int
    init: str
    init_text: str | None
    prefix_projection: bool
    encoder_hidden_size: int
    encoder_type: str
    r: int
    alpha: int
    dropout: float
    target_modules: list[str] | None
    feedforward_modules: list[str] | None
    device: str
    dtype: str
    grad_accum: int
    gradient_checkpointing: bool
    quantize: str
    constraint_weight: float
    given: dict[str, Any] = field(default_factory=dict, compare=False)  # what the program (or overrides) set

    @classmethod
    def build(cls, given: dict[str, Any]) -> TuneOptions:
        """Options from the program's values (plus overrides); everything else from the registry."""
        names = {f.name for f in fields(cls)} - {"given"}
        unknown = set(given) - names
        if unknown:
            raise KeyError(f"unknown tune options: {', '.join(sorted(unknown))}")
        values = {n: given.get(n, TUNE_OPTIONS[n].default) for n in names}
        return cls(**values, given=dict(given))

    def resolved(self, family: str) -> TuneOptions:
        """`method = "auto"` made concrete for the family: lora for an encoder classifier (measured more
        robust on small data than prompt tuning, docs/tuning.md), prompt_tuning for a causal LM. An
        option the program set that the picked method does not take is an error, not silently dropped."""
        if self.method != "auto":
            return self
        method = "lora" if family == "classifier" else "prompt_tuning"
        for key in self.given:
            spec = TUNE_OPTIONS[key]
            if spec.methods is not None and method not in spec.methods:
                from promptc.errors import UsageError

                raise UsageError(f"option '{key}' does not apply to method '{method}', which method = \"auto\" "
                                 f"picks for a {family} target", hint=f"set method to one of: "
                                 f"{', '.join(spec.methods)}")
        return replace(self, method=method)

    def with_(self, **changes: Any) -> TuneOptions:
        return replace(self, **changes, given={**self.given, **changes})

    @property
    def soft(self) -> bool:
        return self.method in ("prompt_tuning", "prefix_tuning", "p_tuning")

    @property
    def virtual(self) -> int:
        """Leading positions that are soft-prompt tokens (prompt tuning and p-tuning prepend them)."""
        return self.virtual_tokens if self.method in ("prompt_tuning", "p_tuning") else 0

    def for_manifest(self) -> dict[str, Any]:
        """The options that apply to this method, as the manifest records them (with_defaults's shape)."""
        out = {}
        for name, spec in TUNE_OPTIONS.items():
            if spec.methods is not None and self.method not in spec.methods:
                continue
            out[name] = getattr(self, name)
        return out
