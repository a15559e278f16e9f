"""Output parsing: every model output, from any backend, becomes a value of the task's output type or
a precise error naming the field. A parse failure is a result, never an exception. Values are checked
by `schema.validate`, the same rule that inputs and examples meet."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from promptc import ir
from promptc.schema import conform, validate

# Parse outcomes (`Parsed.kind`), counted separately in reports: a wrong answer is not a cut-off.
OK = "ok"  # a value of the output type
INVALID = "invalid"  # a complete output that is not a value of the type (no JSON, wrong shape, a bound)
CUTOFF = "cutoff"  # the generation budget ran out before the value was complete
FAILED = "error"  # the model call itself failed; there is no output


@dataclass(frozen=True, slots=True)
class Parsed:
    """A model output read against its type: the value, or why there is none (`kind`, `error`)."""

    ok: bool
    value: Any = None
    error: str | None = None
    raw: str = ""
    kind: str = ""  # OK | INVALID | CUTOFF | FAILED; defaults from `ok`

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", OK if self.ok else INVALID)

    @property
    def cutoff(self) -> bool:
        return self.kind == CUTOFF


def cutoff_message(budget: int | None) -> str:
    """The error of an output cut off at the budget: what happened, and how to raise the budget."""
    at = f"the budget of {budget} new tokens" if budget is not None else "the generation budget"
    return (f"output: cut off at {at} before the value was complete; raise the budget with the target "
            f"option max_new_tokens or --max-new-tokens")


def failed_call(message: str) -> Parsed:
    """The outcome of a model call that failed (after retries): no output to parse."""
    return Parsed(False, error=f"model call failed: {message}", kind=FAILED)


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The JSON value in `text`: the whole text, a ```json fence, or the first balanced {...} / [...]
    (prose before or after is ignored). Raises ValueError when there is none."""
    s = text.strip()
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        pass
    for m in _FENCE.finditer(text):
        try:
            return json.loads(m.group(1).strip())
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(text, i)
                return value
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON value found in the output")


def parse_output(t: ir.Type, text: str, *, finish_reason: str | None = None, budget: int | None = None) -> Parsed:
    """Parse raw model text into the output type. `str` and enum outputs are read as raw text
    (an enum is matched case-insensitively after stripping quotes and punctuation); everything else
    is JSON, extracted from fences and prose, then validated.

    `finish_reason="length"` means the budget (`budget` new tokens) ran out: a `str` output is then
    cut off, and any other output that does not parse and validate is a CUTOFF rather than INVALID,
    since the model never got to finish it. A complete value followed by rambling still counts."""
    parsed = _parse(t, text)
    if finish_reason != "length":
        return parsed
    if parsed.ok and not isinstance(ir.strip_optional(t), ir.StrT):
        return parsed
    return Parsed(False, error=cutoff_message(budget), raw=text, kind=CUTOFF)


def _parse(t: ir.Type, text: str) -> Parsed:
    base = ir.strip_optional(t)
    raw = text
    stripped = text.strip()
    if isinstance(t, ir.OptionalT) and stripped.lower() in ("null", "none", ""):
        return Parsed(True, None, raw=raw)
    if isinstance(base, ir.StrT):
        value: Any = stripped
    elif isinstance(base, ir.EnumT):
        value = _enum_member(base, stripped)
        if value is None:
            return Parsed(False, error=f"output: {stripped[:60]!r} is not one of {', '.join(base.members)}",
                          raw=raw)
    else:
        try:
            value = extract_json(text)
        except ValueError as e:
            return Parsed(False, error=f"output: {e}", raw=raw)
    # the one validator of the type (schema.validate), as for inputs and examples
    problems = validate(t, value)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Parsed(False, error=f"{problems[0].where('output')}: {problems[0].message}{more}", raw=raw)
    return Parsed(True, conform(t, value), raw=raw)


def _enum_member(t: ir.EnumT, text: str) -> str | None:
    cand = text
    try:
        j = json.loads(text)
        if isinstance(j, str):
            cand = j
    except json.JSONDecodeError:
        pass
    cand = cand.strip().strip("`'\".,;:!").strip()
    lowered = {m.lower(): m for m in t.members}
    if cand.lower() in lowered:
        return lowered[cand.lower()]
    first = re.match(r"[A-Za-z_][A-Za-z0-9_]*", cand)
    if first and first.group(0).lower() in lowered:
        return lowered[first.group(0).lower()]
    return None
