"""Training data for the tune target: examples (inline, files, extra files) to model inputs, a
deterministic validation split, and the secrets scan."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from promptc import codes, ir
from promptc.diagnostics import Diagnostics
from promptc.errors import DiagnosticError, InputError
from promptc.secrets import REDACTED, redact, redact_text, scan_secrets  # noqa: F401 - the scanner's home
from promptc.source import SourceFile


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
    targets: list[float] | None = None  # encoder heads of a record: one-hot / multi-hot per head
    violations: list[float] | None = None  # per combination of the constrained heads: 1.0 if it breaks one
    spans: list[tuple[int, int] | None] | None = None  # per span head: the value's characters in `text`, or null
    span_fields: list[tuple[int, int] | None] | None = None  # per span head: its source field's characters


@dataclass
class Dataset:
    train: list[Item]
    val: list[Item]
    labels: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # "origin: kind" of every redacted secret
    excluded_tests: int = 0
    heads: Any = None  # promptc.heads.Heads of an encoder (classifier) target
    constrained: list[str] = field(default_factory=list)  # fields of the heads the constraint loss reads

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
    are the same for every example and only dilute a mean-pooled representation. (heads.layout also
    says where each input field lies in it, for span heads.)"""
    from promptc.heads import layout

    return layout(inputs)[0]


def causal_prompt(prompt, inputs: dict[str, Any]) -> str:
    """A causal artifact reads the task prompt rendered with its inputs, then `Answer: `."""
    return prompt._template("user", prompt.user_source).render(inputs) + "\nAnswer: "


def _span_for(origin: str):
    """A span for a `file:line[:col]` origin, so secrets are reported at their source line."""
    parts = origin.rsplit(":", 2)
    try:
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            path, line, col = parts[0], int(parts[1]), int(parts[2])
        else:
            path, line, col = origin.rsplit(":", 1)[0], int(origin.rsplit(":", 1)[1]), 1
        if path.endswith(".prompt"):
            src = SourceFile.read(path)
            text = src.line_text(line)
            return src.span_at(line, col, max(1, len(text) - col + 1))
        from promptc.datafiles import line_excerpt

        return line_excerpt(path, line, col)  # streamed: a data file can be large
    except (ValueError, OSError):
        return None


def _program_span(program: ir.Program, needle: str):
    """The span of `needle` in the program's source (the first 12 characters, if the whole is not
    there verbatim, e.g. when an invisible character splits it), or None."""
    try:
        src = SourceFile.read(program.path)
    except (OSError, ValueError):
        return None
    for probe in (needle, needle[:12]):
        i = src.text.find(probe) if probe else -1
        if i >= 0:
            return src.span(i, i + len(probe))
    return None


def training_texts(program: ir.Program, task: ir.Task) -> list[tuple[str, str]]:
    """(what, text) for the texts of the program that reach training besides the examples: the system
    and prompt templates (rendered into every causal training prompt, and used to initialise soft
    prompts) and `init_text` of the task's tune targets."""
    out = [(f"the {kind} text of task '{task.name}'", v.text)
           for kind, variants in (("system", task.system), ("prompt", task.prompt)) for v in variants]
    for t in program.targets.values():
        if t.kind == "tune" and t.task == task.name and isinstance(t.options.get("init_text"), str):
            out.append((f"init_text of target '{t.name}'", t.options["init_text"]))
    return out


def load_extra(path: str, task: ir.Task) -> list[ir.Example]:
    """`--extra-examples FILE`: more examples, read and validated exactly like an examples file."""
    from promptc import datafiles
    from promptc.check import read_examples

    d = Diagnostics()
    try:
        out = list(read_examples(datafiles.open_user_file(path), task.input_type, task.output, d))
    except datafiles.DataFileError as e:
        raise InputError(f"--extra-examples {path}: {e.message}", hint=e.hint) from None
    if d.has_errors:
        raise DiagnosticError(d)
    return [ce.example for ce in out]


def build_dataset(program: ir.Program, task: ir.Task, family: str, prompt, *, extra: list[ir.Example],
                  val_split: float, seed: int, allow_secrets: bool, heads: Any = None) -> Dataset:
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
    for what, text in training_texts(program, task):
        for kind, value in scan_secrets(text):
            secrets.append(f"{what}: {kind}")
            if not allow_secrets:
                d.error(codes.SECRET_IN_DATA, f"{what} contains a secret ({kind}); it would reach training",
                        _program_span(program, value),
                        hint="remove it from the program, or pass --allow-secrets to train with it redacted")
    if d.has_errors:
        raise DiagnosticError(d)
    if not kept:
        raise InputError(f"task '{task.name}' has no training examples (add `example` blocks or "
                               "`examples \"FILE.jsonl\"`)")
    labels = heads.labels if heads is not None and heads.is_root else []
    items = []
    for ex in kept:
        inp, out = (redact(ex.input), redact(ex.output)) if secrets else (ex.input, ex.output)
        if family == "classifier" and heads.is_root:
            items.append(Item(inp, out, ex.origin, classifier_text(inp), str(out), labels.index(out), ex.provenance))
        elif family == "classifier":
            it = Item(inp, out, ex.origin, classifier_text(inp), heads.key(out), -1, ex.provenance,
                      targets=heads.encode(out))
            if heads.spans:
                it.spans, it.span_fields = span_targets(heads, inp, out)
            items.append(it)
        else:
            from promptc.targets.text.prompt import answer_text

            text = causal_prompt(prompt, inp)
            items.append(Item(inp, out, ex.origin, redact_text(text) if secrets else text,
                              answer_text(task.output, out), -1, ex.provenance))
    constrained: list[str] = []
    if family == "classifier" and task.constraints:
        from promptc.heads import violation_table

        for it in items:
            vt = violation_table(heads, task.constraints, it.input, it.output)
            if vt is not None:
                constrained = [h.field for h in vt[0]]
                it.violations = vt[1]
    train, val = split(items, val_split, seed)
    return Dataset(train, val, labels, secrets, excluded, heads, constrained)


def span_targets(heads: Any, inputs: dict[str, Any], output: Any
                 ) -> tuple[list[tuple[int, int] | None], list[tuple[int, int] | None]]:
    """Per span head: where the output's value lies in the encoder's text (the first occurrence in its
    source field), or None for null; and where the source field lies."""
    from promptc.heads import layout

    _, where, strings = layout(inputs)
    spans: list[tuple[int, int] | None] = []
    fields: list[tuple[int, int] | None] = []
    for h in heads.spans:
        rng = where.get(h.source)
        fields.append(rng)
        from promptc.heads import find_value

        v = (output or {}).get(h.field)
        at = find_value(v, strings.get(h.source, ""), h.number) if v is not None and rng else None
        spans.append((rng[0] + at[0], rng[0] + at[1]) if at and rng else None)
    return spans, fields


def split(items: list[Item], share: float, seed: int) -> tuple[list[Item], list[Item]]:
    """The deterministic validation split (promptc.splits.seeded_split over input and output)."""
    from promptc.splits import seeded_split

    return seeded_split(items, share, seed, lambda it: [it.input, it.output])
