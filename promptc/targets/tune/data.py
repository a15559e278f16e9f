"""Training data for the tune target: examples (inline, files, extra files) to model inputs, a
deterministic validation split, and the secrets scan."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptc import codes, ir
from promptc.diagnostics import Diagnostics
from promptc.errors import DiagnosticError, InputError
from promptc.source import SourceFile

# Credentials that must never be learned. Each pattern matches the secret itself (redaction replaces it).
SECRET_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("OpenAI-style API key", re.compile(r"\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{16,}")),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("Stripe key", re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b")),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)")),
    ("JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("password assignment", re.compile(r"(?i)\b(?:password|passwd|pwd)\s*[:=]\s*\S{6,}")),
]
REDACTED = "[REDACTED]"


@dataclass
class Item:
    """One training example as the model sees it."""

    input: dict[str, Any]
    output: Any
    origin: str
    text: str  # the model input
    target: str  # causal: the answer text; classifier: the label
    label: int = -1
    provenance: dict[str, Any] | None = None


@dataclass
class Dataset:
    train: list[Item]
    val: list[Item]
    labels: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # "origin: kind" of every redacted secret
    excluded_tests: int = 0

    def digest(self) -> str:
        h = hashlib.sha256()
        for split, items in (("train", self.train), ("val", self.val)):
            for it in items:
                h.update(json.dumps([split, it.input, it.output], sort_keys=True, ensure_ascii=False).encode())
        return h.hexdigest()

    def provenance_summary(self) -> dict[str, Any]:
        """How much of the data was distilled, and from which teachers and prompts."""
        out: dict[str, Any] = {"declared": 0, "distilled": 0, "corrected_failures": 0, "teachers": {}}
        for it in (*self.train, *self.val):
            p = it.provenance or {}
            if p.get("source") == "promptc distill":
                out["distilled"] += 1
                key = f"{p.get('teacher')} (prompt {str(p.get('prompt_hash', ''))[:12]})"
                out["teachers"][key] = out["teachers"].get(key, 0) + 1
            elif p.get("source") == "promptc test":
                out["corrected_failures"] += 1
            else:
                out["declared"] += 1
        return out


def flat_values(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in flat_values(v)]
    if isinstance(value, list):
        return [s for v in value for s in flat_values(v)]
    return [] if value is None else [str(value)]


def classifier_text(inputs: dict[str, Any]) -> str:
    """A classifier reads the input values only (in schema order, one per line): the instructions
    are the same for every example and only dilute a mean-pooled representation."""
    return "\n".join(flat_values(inputs))


def causal_prompt(prompt, inputs: dict[str, Any]) -> str:
    """A causal artifact reads the task prompt rendered with its inputs, then `Answer: `."""
    return prompt._template("user", prompt.user_source).render(inputs) + "\nAnswer: "


def scan_secrets(value: Any) -> list[tuple[str, str]]:
    found = []
    for s in flat_values(value) if not isinstance(value, str) else [value]:
        for kind, rx in SECRET_PATTERNS:
            for m in rx.finditer(s):
                found.append((kind, m.group(0)))
    return found


def redact(value: Any) -> Any:
    if isinstance(value, str):
        for _, rx in SECRET_PATTERNS:
            value = rx.sub(REDACTED, value)
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _span_for(origin: str):
    """A span for a `file:line[:col]` origin, so secrets are reported at their source line."""
    parts = origin.rsplit(":", 2)
    try:
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            path, line, col = parts[0], int(parts[1]), int(parts[2])
        else:
            path, line, col = origin.rsplit(":", 1)[0], int(origin.rsplit(":", 1)[1]), 1
        src = SourceFile.read(path)
        text = src.line_text(line)
        return src.span_at(line, col, max(1, len(text) - col + 1))
    except (ValueError, OSError):
        return None


def load_extra(path: str, task: ir.Task) -> list[ir.Example]:
    """`--extra-examples FILE`: more examples, read and validated exactly like an examples file."""
    from promptc.check import read_examples

    p = Path(path)
    try:
        src = SourceFile.read(p)
    except OSError as e:
        raise InputError(f"cannot read --extra-examples {path}: {e.strerror}") from None
    d = Diagnostics()
    out = read_examples(src, str(p), task.input_type, task.output, d)
    if d.has_errors:
        raise DiagnosticError(d)
    return [ce.example for ce in out]


def build_dataset(program: ir.Program, task: ir.Task, family: str, prompt, *, extra: list[ir.Example],
                  val_split: float, seed: int, allow_secrets: bool) -> Dataset:
    """Examples -> train/val items. Test inputs are excluded; constraint violations are errors (the
    checker already rejected them for declared examples; extra examples are checked here)."""
    from promptc.expr import constraint_failures

    d = Diagnostics()
    examples = list(task.examples) + list(extra)
    kept: list[ir.Example] = program.without_test_inputs(task.name, examples, lambda ex: ex.input)
    excluded = len(examples) - len(kept)
    for ex in kept:
        for f in constraint_failures(task.constraints, {**ex.input, "output": ex.output}):
            d.error(codes.EXAMPLE_VIOLATES_CONSTRAINT, f"example violates constraint '{f.constraint.name}'", _span_for(ex.origin),
                    notes=(f"constraint: {f.constraint.source}", *f.details))
    secrets: list[str] = []
    for ex in kept:
        for kind, _ in scan_secrets([ex.input, ex.output]):
            secrets.append(f"{ex.origin}: {kind}")
            if not allow_secrets:
                d.error(codes.SECRET_IN_DATA, f"training example contains a secret ({kind})", _span_for(ex.origin),
                        hint="remove it from the data, or pass --allow-secrets to train with it redacted")
    if d.has_errors:
        raise DiagnosticError(d)
    if not kept:
        raise InputError(f"task '{task.name}' has no training examples (add `example` blocks or "
                               "`examples \"FILE.jsonl\"`)")
    labels = list(ir.strip_optional(task.output).members) if family == "classifier" else []
    items = []
    for ex in kept:
        inp, out = (redact(ex.input), redact(ex.output)) if secrets else (ex.input, ex.output)
        if family == "classifier":
            items.append(Item(inp, out, ex.origin, classifier_text(inp), str(out), labels.index(out), ex.provenance))
        else:
            from promptc.targets.text.prompt import answer_text

            items.append(Item(inp, out, ex.origin, causal_prompt(prompt, inp), answer_text(task.output, out), -1,
                              ex.provenance))
    train, val = split(items, val_split, seed)
    return Dataset(train, val, labels, secrets, excluded)


def split(items: list[Item], share: float, seed: int) -> tuple[list[Item], list[Item]]:
    """The deterministic validation split (promptc.splits.seeded_split over input and output)."""
    from promptc.splits import seeded_split

    return seeded_split(items, share, seed, lambda it: [it.input, it.output])
