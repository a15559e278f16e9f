"""Output heads of the encoder family: which outputs an encoder can serve, and how its logits become a
schema-valid output that keeps the task's constraints.

An encoder (MiniLM, BERT, ...) reads the input once and predicts each finite part of the output with a
head of its own, all on one shared body:

- `single`: one value of a finite set: an enum, a bool, an optional of those (null is a learned value),
  an `int` with `ge` and `le` and at most MAX_INT_VALUES values, or a **reply** (a `str` whose training
  values come from a closed set: at most MAX_REPLIES distinct values, each seen at least MIN_REPLY_SEEN
  times: the "suggested reply templates" of the seed);
- `multi`: a `list[Enum]` with `max_len`, as multi-label classification (one sigmoid per member).

All heads share one linear layer over the pooled body (their logits are slices of it), so an enum output
is exactly the classifier promptc always had: one `single` head on the output itself.

Decoding keeps constraints: the candidate outputs are enumerated best-first by joint probability (the
heads are independent given the input, so a joint is a product), and the first that validates against
the schema and satisfies every `constraint` wins. A declared constraint therefore never fails on output
the model could have got right. It still fails when no candidate within MAX_CANDIDATES satisfies it, or
when it depends only on the input (no choice of output helps); the reply then is the most probable one.

This module imports no torch: planning runs before a model is loaded, decoding takes plain lists.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptc import ir

ENCODER_TYPES = {"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "xlm-roberta", "mpnet",
                 "albert", "camembert", "modernbert"}
MAX_INT_VALUES = 20
MAX_REPLIES = 30
MIN_REPLY_SEEN = 2
MAX_CANDIDATES = 4096  # outputs tried best-first before giving up on the constraints
MAX_JOINT = 4096  # size of the joint over constrained heads for the constraint loss


class Unservable(Exception):
    """An output part no encoder head can serve; `field` names it, `why` says why and what to do."""

    def __init__(self, field_name: str, why: str, hint: str = ""):
        super().__init__(f"{field_name}: {why}")
        self.field, self.why, self.hint = field_name, why, hint


@dataclass(frozen=True)
class Head:
    """One head: the output field it predicts ("" for the output itself), its kind, its values (JSON
    values, in a fixed order), where its logits start in the shared layer, and why it was chosen."""

    field: str
    kind: str  # "single" | "multi" | "span"
    values: tuple[Any, ...]  # a span head has none: its value is copied from the input
    start: int
    why: str
    min_items: int = 0
    max_items: int = 0
    source: str = ""  # span: the input field (a dotted path) whose text the value is copied from
    nullable: bool = False  # span: null is a learned outcome (an optional field)
    number: str = ""  # span: "int" or "float" when the copied text is parsed to a number

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def end(self) -> int:
        return self.start + self.size

    def label(self, i: int) -> str:
        v = self.values[i]
        name = v if isinstance(v, str) else json.dumps(v)
        return name if not self.field else f"{self.field}={name}"

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"field": self.field, "kind": self.kind, "values": list(self.values), "why": self.why}
        if self.kind == "multi":
            d.update(min_items=self.min_items, max_items=self.max_items)
        if self.kind == "span":
            d.update(source=self.source, nullable=self.nullable, number=self.number)
        return d


@dataclass(frozen=True)
class Heads:
    """Every head of an output, and the output type they assemble into."""

    heads: tuple[Head, ...]
    output: ir.Type = field(compare=False)

    @property
    def size(self) -> int:
        return sum(h.size for h in self.heads)

    @property
    def spans(self) -> list[Head]:
        """The span heads, in order: each predicts a start and an end token of its source field."""
        return [h for h in self.heads if h.kind == "span"]

    @property
    def is_root(self) -> bool:
        """A single head on the output itself: the plain classifier."""
        return len(self.heads) == 1 and self.heads[0].field == ""

    @property
    def labels(self) -> list[str]:
        """One name per logit (labels.json): the enum members for a plain classifier."""
        return [h.label(i) for h in self.heads for i in range(h.size)]

    def describe(self) -> str:
        """One line: what each field is predicted as."""
        return "; ".join(f"{h.field or 'output'}: {h.why}" for h in self.heads)

    def as_list(self) -> list[dict[str, Any]]:
        return [h.as_dict() for h in self.heads]

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]], output: ir.Type) -> Heads:
        heads, start = [], 0
        for r in rows:
            h = Head(r["field"], r["kind"], tuple(r["values"]), start, r.get("why", ""), r.get("min_items", 0),
                     r.get("max_items", 0), r.get("source", ""), r.get("nullable", False), r.get("number", ""))
            heads.append(h)
            start += h.size
        return cls(tuple(heads), output)

    # ------------------------------------------------------------ targets
    def encode(self, output: Any) -> list[float]:
        """The training target of one output: one-hot per single head, multi-hot per multi head."""
        out = [0.0] * self.size
        for h in self.heads:
            v = output if not h.field else (output or {}).get(h.field)
            if h.kind == "span":
                continue
            if h.kind == "single":
                out[h.start + _index(h.values, v)] = 1.0
            else:
                for item in v or []:
                    out[h.start + _index(h.values, item)] = 1.0
        return out

    def key(self, output: Any) -> str:
        """A stable text of an output, for stratifying folds and counting labels."""
        return json.dumps(output, sort_keys=True, ensure_ascii=False)

    # ------------------------------------------------------------ decoding
    def factors(self, logits: list[float], spans: dict[str, list[tuple[float, Any]]] | None = None
                ) -> list[list[tuple[float, int]]]:
        """Per factor, (log-probability, option) sorted best first: a single head is one factor over
        its values (log-softmax); a multi head is one yes/no factor per member (log-sigmoid); a span
        head is one factor over its candidate spans (`spans[field]`: (log-probability, text or None),
        best first; the option is the candidate's index)."""
        out = []
        for h in self.heads:
            row = logits[h.start:h.end]
            if h.kind == "span":
                cands = (spans or {}).get(h.field) or [(0.0, None)]
                out.append([(lp, i) for i, (lp, _) in enumerate(cands)])
            elif h.kind == "single":
                m = max(row)
                z = m + math.log(sum(math.exp(x - m) for x in row))
                out.append(sorted(((x - z, i) for i, x in enumerate(row)), key=lambda p: (-p[0], p[1])))
            else:
                for x in row:
                    yes, no = _log_sigmoid(x), _log_sigmoid(-x)
                    out.append(sorted([(yes, 1), (no, 0)], key=lambda p: (-p[0], -p[1])))
        return out

    def assemble(self, choice: list[int], spans: dict[str, list[tuple[float, Any]]] | None = None) -> Any:
        """The output for one option per factor."""
        values: dict[str, Any] = {}
        k = 0
        for h in self.heads:
            if h.kind == "span":
                cands = (spans or {}).get(h.field) or [(0.0, None)]
                values[h.field] = cands[choice[k]][1]
                k += 1
            elif h.kind == "single":
                values[h.field] = h.values[choice[k]]
                k += 1
            else:
                values[h.field] = [h.values[i] for i in range(h.size) if choice[k + i]]
                k += h.size
        if self.is_root:
            return values[""]
        rec = ir.strip_optional(self.output)
        names = rec.field_names if isinstance(rec, ir.RecordT) else tuple(values)
        return {n: values[n] for n in names if n in values}

    def decode(self, logits: list[float], inputs: dict[str, Any] | None,
               constraints: tuple[ir.Constraint, ...] = (),
               spans: dict[str, list[tuple[float, Any]]] | None = None) -> tuple[Any, int]:
        """The most probable output that is schema-valid and keeps every constraint (with `inputs`),
        and how many candidates were tried; the most probable one when none within MAX_CANDIDATES is.
        `spans` holds each span head's candidates (span_candidates)."""
        from promptc.expr import constraint_failures
        from promptc.schema import validate

        factors = self.factors(logits, spans)
        first = None
        for n, choice in enumerate(best_first(factors), start=1):
            out = self.assemble(choice, spans)
            if first is None:
                first = out
            if validate(self.output, out):
                continue
            if constraints and inputs is not None and constraint_failures(constraints, {**inputs, "output": out}):
                continue
            return out, n
        return first, MAX_CANDIDATES

    def predict_text(self, logits: list[float], inputs: dict[str, Any] | None,
                     constraints: tuple[ir.Constraint, ...] = (),
                     spans: dict[str, list[tuple[float, Any]]] | None = None) -> str:
        """What the backend answers: the enum member for a plain classifier, else the record's JSON."""
        out, _ = self.decode(logits, inputs, constraints, spans)
        return out if self.is_root and isinstance(out, str) else json.dumps(out, ensure_ascii=False)


def best_first(factors: list[list[tuple[float, int]]]):
    """Option choices (one option index per factor) in order of decreasing summed log-probability: the
    k-best enumeration over a product of sorted lists (a heap over index vectors)."""
    start = (0,) * len(factors)
    heap = [(-sum(f[0][0] for f in factors), start)]
    seen = {start}
    count = 0
    while heap and count < MAX_CANDIDATES:
        neg, idx = heapq.heappop(heap)
        count += 1
        yield [factors[k][i][1] for k, i in enumerate(idx)]
        for k, i in enumerate(idx):
            if i + 1 < len(factors[k]):
                nxt = idx[:k] + (i + 1,) + idx[k + 1:]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (neg + factors[k][i][0] - factors[k][i + 1][0], nxt))


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _index(values: tuple[Any, ...], v: Any) -> int:
    for i, x in enumerate(values):
        if x == v and type(x) is type(v):
            return i
    raise KeyError(v)


# ---------------------------------------------------------------- planning
def plan(output: ir.Type, outputs: list[Any], inputs: list[dict[str, Any]] | None = None) -> Heads:
    """The heads that serve `output`, given the training outputs (for reply sets and seen labels) and,
    for span heads, the training inputs (a `str` field whose values are copied from one input field).
    Raises Unservable naming the first field no head can serve."""
    t = ir.strip_optional(output)
    if isinstance(t, ir.RecordT) and not isinstance(output, ir.OptionalT):
        heads: list[Head] = []
        start = 0
        for name, ft in t.fields:
            h = _head(name, ft, [o.get(name) if isinstance(o, dict) else None for o in outputs], start, inputs)
            heads.append(h)
            start += h.size
        return Heads(tuple(heads), output)
    h = _head("", output, outputs, 0)
    if h.kind != "single":
        raise Unservable("output", "a list output is served by a causal LM", "wrap it in a record field")
    return Heads((h,), output)


def _head(name: str, t: ir.Type, seen: list[Any], start: int, inputs: list[dict[str, Any]] | None = None) -> Head:
    what = name or "output"
    optional = isinstance(t, ir.OptionalT)
    inner = ir.strip_optional(t)
    null = (None,) if optional else ()
    if isinstance(inner, ir.EnumT):
        return Head(name, "single", (*inner.members, *null), start,
                    f"enum {inner.name} ({len(inner.members)} labels{', or null' if optional else ''})")
    if isinstance(inner, ir.BoolT):
        return Head(name, "single", (False, True, *null), start, "bool" + (" or null" if optional else ""))
    if isinstance(inner, (ir.IntT, ir.FloatT)) and name and inputs is not None:
        # a number written in the input is copied as a span and parsed (it generalises to values never seen);
        # a bounded int that is not always written there (a rating the model infers) is a class head below
        kind = "int" if isinstance(inner, ir.IntT) else "float"
        finite = kind == "int" and inner.ge is not None and inner.le is not None and \
            math.floor(inner.le) - math.ceil(inner.ge) + 1 <= MAX_INT_VALUES
        try:
            span = _span_head(name, what, seen, inputs, optional, start, kind)
        except Unservable:
            if not finite:
                raise
            span = None
        if span is not None:
            return span
    if isinstance(inner, ir.IntT):
        if inner.ge is None or inner.le is None:
            raise Unservable(what, "an int without both `ge` and `le` has no finite set of values",
                             f"bound it, e.g. `{what}: int [ge=1, le=5]` (at most {MAX_INT_VALUES} values)")
        lo, hi = math.ceil(inner.ge), math.floor(inner.le)
        if hi - lo + 1 > MAX_INT_VALUES:
            raise Unservable(what, f"an int in [{lo}, {hi}] has {hi - lo + 1} values; a class head takes at "
                             f"most {MAX_INT_VALUES}", "narrow its ge/le")
        return Head(name, "single", (*range(lo, hi + 1), *null), start,
                    f"int {lo}..{hi}" + (" or null" if optional else ""))
    if isinstance(inner, ir.ListT) and isinstance(ir.strip_optional(inner.item), ir.EnumT) and not optional:
        item = ir.strip_optional(inner.item)
        assert isinstance(item, ir.EnumT)
        if inner.max_len is None:
            raise Unservable(what, f"a multi-label list[{item.name}] needs `max_len`",
                             f"declare it, e.g. `{what}: list[{item.name}] [max_len={len(item.members)}]`")
        return Head(name, "multi", tuple(item.members), start, f"multi-label over {item.name} "
                    f"({len(item.members)} labels, at most {inner.max_len})", inner.min_len or 0, inner.max_len)
    if isinstance(inner, ir.StrT):
        # copied from the input first (a span generalises to values never seen), then a closed reply set
        partial: Unservable | None = None
        if name and inputs is not None:
            try:
                span = _span_head(name, what, seen, inputs, optional, start)
                if span is not None:
                    return span
            except Unservable as e:
                partial = e
        try:
            return _reply_head(name, what, seen, null, start)
        except Unservable:
            if partial is not None:
                raise partial from None
            raise
    raise Unservable(what, f"{t} is not a finite value (enum, bool, bounded int, list of enum, or a reply "
                     "from a closed set)")


def _reply_head(name: str, what: str, seen: list[Any], null: tuple[Any, ...], start: int) -> Head:
    counts = Counter(v for v in seen if isinstance(v, str))
    rare = sum(1 for n in counts.values() if n < MIN_REPLY_SEEN)
    if not counts or len(counts) > MAX_REPLIES or rare:
        got = f"{len(counts)} distinct value{'s' if len(counts) != 1 else ''} in {len(seen)} examples"
        if rare:
            got += f", {rare} seen only once"
        raise Unservable(what, f"free text ({got}); an encoder serves a str field only as a reply from a "
                         f"closed set of at most {MAX_REPLIES} values, each seen at least {MIN_REPLY_SEEN} times",
                         "reuse a small set of reply templates in the examples")
    order: dict[str, int] = {}
    for v in seen:
        if isinstance(v, str) and v not in order:
            order[v] = len(order)
    values = tuple(sorted(counts, key=lambda v: order[v]))
    has_null = bool(null) and any(v is None for v in seen)
    return Head(name, "single", (*values, *((None,) if has_null else ())), start,
                f"reply from {len(values)} templates (each seen at least {min(counts.values())} times)")


MIN_SPAN_SHARE = 0.5  # below this share of values found in one input field, the field is free text


NUMBER = re.compile(r"(?<![\w.,-])[-+]?(?:\d{1,3}(?:[,' ]\d{3})+|\d+)(?:\.\d+)?(?![\w]|[.,]\d)")


def parse_number(text: str, kind: str) -> int | float | None:
    """A number as written in text ("1,500.00", "1 500", "-3"), as an int or a float; None if it is not one."""
    t = text.strip().replace(",", "").replace("'", "").replace(" ", "")
    try:
        v = float(t)
    except ValueError:
        return None
    if not math.isfinite(v):
        return None
    if kind == "int":
        return int(v) if v.is_integer() and "." not in t else None
    return v


def find_value(v: Any, text: str, number: str = "") -> tuple[int, int] | None:
    """Where `v` is written in `text`: the first exact occurrence of a string, or the first number literal
    that parses to `v`; None when it is not there."""
    if not number:
        at = text.find(v) if isinstance(v, str) and v else -1
        return (at, at + len(v)) if at >= 0 else None
    for m in NUMBER.finditer(text):
        got = parse_number(m.group(0), number)
        if got is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and got == v:
            lead = len(m.group(0)) - len(m.group(0).lstrip())
            return m.start() + lead, m.end() - (len(m.group(0)) - len(m.group(0).rstrip()))
    return None


def _span_head(name: str, what: str, seen: list[Any], inputs: list[dict[str, Any]], optional: bool,
               start: int, number: str = "") -> Head | None:
    """A span head when every non-null value is copied from one input field (the field that holds the most
    of them): an exact substring, or for a number a literal that parses to it; an error when most but not
    all are (naming how many and one that is not); None when too few are (free text)."""
    pairs = [(v, layout(i)[2]) for v, i in zip(seen, inputs) if v is not None]
    if not pairs:
        return None
    if any(v == "" for v, _ in pairs):
        raise Unservable(what, "an empty string cannot be copied from the input (an empty span)",
                         "make the field optional and use null for 'absent'")
    counts: dict[str, int] = {}
    for v, values in pairs:
        for path, text in values.items():
            if find_value(v, text, number) is not None:
                counts[path] = counts.get(path, 0) + 1
    if not counts:
        return None
    source = max(counts, key=lambda p: counts[p])  # the first such field wins a tie (schema order)
    found, total = counts[source], len(pairs)
    if found < total:
        if found / total < MIN_SPAN_SHARE:
            return None
        missing = next(v for v, values in pairs if find_value(v, values.get(source, ""), number) is None)
        raise Unservable(what, f"{total - found} of {total} values are not copied from input '{source}' "
                         f"(e.g. {json.dumps(missing, ensure_ascii=False)[:80]}); a span head copies text exactly",
                         f"make the examples copy the text exactly as it appears in '{source}'")
    others = sorted(p for p, n in counts.items() if p != source and n == total)
    also = f"; also found in {', '.join(others)}, '{source}' is used" if others else ""
    what_kind = f"{number} written in" if number else "span copied from"
    return Head(name, "span", (), start, f"{what_kind} {source} ({found} of {total} values found in it{also})"
                + (", or null" if optional else ""), source=source, nullable=optional, number=number)


def layout(inputs: dict[str, Any]) -> tuple[str, dict[str, tuple[int, int]], dict[str, str]]:
    """The text an encoder reads (every input value, one per line, in schema order), where each scalar
    input field lies in it (dotted path -> character range), and each string field's value."""
    parts: list[str] = []
    where: dict[str, tuple[int, int]] = {}
    strings: dict[str, str] = {}
    pos = 0

    def walk(v: Any, path: str) -> None:
        nonlocal pos
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}" if path else str(k))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]")
        elif v is not None:
            s = str(v)
            if parts:
                pos += 1  # the newline before it
            where[path] = (pos, pos + len(s))
            if isinstance(v, str):
                strings[path] = s
            parts.append(s)
            pos += len(s)

    walk(inputs, "")
    return "\n".join(parts), where, strings


MAX_SPAN_TOKENS = 48  # the longest span a head proposes, in tokens
SPAN_CANDIDATES = 20  # candidate spans per head kept for decoding


def span_candidates(start: list[float], end: list[float], offsets: list[tuple[int, int]], text: str,
                    char_range: tuple[int, int] | None, nullable: bool, number: str = "") -> list[tuple[float, Any]]:
    """A span head's candidates for one input, best first: (log-probability, text copied exactly from the
    source field, or None; for a number head the number the text parses to, skipping text that is not
    one). Positions are the tokens inside the field (position 0, the [CLS] token, is null); start and end
    are log-softmaxed over those positions, a span's score is their sum."""
    allowed = [t for t, (a, b) in enumerate(offsets) if char_range and b > a and a >= char_range[0]
               and b <= char_range[1]]
    pos = allowed + ([0] if nullable or not allowed else [])

    def logsm(row: list[float]) -> dict[int, float]:
        m = max(row[t] for t in pos)
        z = m + math.log(sum(math.exp(row[t] - m) for t in pos))
        return {t: row[t] - z for t in pos}

    ls, le = logsm(start), logsm(end)
    cands: list[tuple[float, Any]] = []
    if 0 in ls:
        cands.append((ls[0] + le[0], None))
    for i, s in enumerate(allowed):
        for e in allowed[i:i + MAX_SPAN_TOKENS]:
            piece = text[offsets[s][0]:offsets[e][1]]
            value = parse_number(piece, number) if number else piece
            if value is not None:
                cands.append((ls[s] + le[e], value))
    cands.sort(key=lambda c: -c[0])
    out: list[tuple[float, Any]] = []
    seen_text: set[Any] = set()
    for lp, v in cands:
        if v not in seen_text:
            seen_text.add(v)
            out.append((lp, v))
        if len(out) == SPAN_CANDIDATES:
            break
    return out


def unseen(heads: Heads, outputs: list[Any]) -> list[str]:
    """Labels no training output has: the head can never learn to predict them."""
    hits = [0.0] * heads.size
    for o in outputs:
        for i, x in enumerate(heads.encode(o)):
            hits[i] += x
    return [lb for lb, n in zip(heads.labels, hits) if n == 0]


# ---------------------------------------------------------------- the constraint loss
def constrained_fields(constraints: tuple[ir.Constraint, ...]) -> set[str]:
    """The output fields the constraints read (`output.tag`, ...); "" when one reads the whole output."""
    from promptc import expr

    out: set[str] = set()

    def walk(n: Any) -> None:
        if isinstance(n, expr.Var) and n.root == "output":
            out.add(str(n.parts[0]) if n.parts else "")
        for child in getattr(n, "__slots__", ()):
            v = getattr(n, child, None)
            for c in (v if isinstance(v, tuple) else (v,)):
                if isinstance(c, (expr.Var, expr.Fn, expr.Cmp, expr.Logic, expr.Neg, expr.When, expr.ListE)):
                    walk(c)

    for c in constraints:
        walk(c.expr)
    return out


def violation_table(heads: Heads, constraints: tuple[ir.Constraint, ...], inputs: dict[str, Any],
                    output: Any) -> tuple[list[Head], list[float]] | None:
    """For the constraint loss: the single heads the constraints read and, over their joint (row-major
    in head order), 1.0 where the combination breaks a constraint for these inputs (the other fields as
    in `output`). None when there is nothing to enforce or the joint is over MAX_JOINT."""
    from itertools import product

    from promptc.expr import constraint_failures

    read = constrained_fields(constraints)
    hs = [h for h in heads.heads if h.kind == "single" and (h.field in read or "" in read)]
    if not hs or heads.is_root:
        return None
    if math.prod(h.size for h in hs) > MAX_JOINT:
        return None
    table = []
    for combo in product(*(range(h.size) for h in hs)):
        cand = dict(output)
        for h, i in zip(hs, combo):
            cand[h.field] = h.values[i]
        table.append(1.0 if constraint_failures(constraints, {**inputs, "output": cand}) else 0.0)
    if not any(table):
        return None
    return hs, table


def known_kind(name: str, program_path: str | None = None) -> str | None:
    """"encoder" or "causal" when `base` is known without loading a model (for `promptc check`): the
    built-in minilm and tiny-causal, or a local directory whose config.json names its model type. None for
    hub ids and anything unreadable: `promptc tune` decides for them once the config is loaded."""
    if name == "minilm":
        return "encoder"
    if name == "tiny-causal":
        return "causal"
    for root in ([Path(program_path).parent] if program_path else []) + [Path.cwd()]:
        cfg = (root / name).expanduser() / "config.json"
        try:
            if cfg.is_file():
                c = json.loads(cfg.read_text(encoding="utf-8"))
                enc = c.get("model_type") in ENCODER_TYPES and not c.get("is_decoder", False)
                return "encoder" if enc else "causal"
        except (OSError, ValueError, AttributeError):
            return None
    return None


def known_encoder(name: str, program_path: str | None = None) -> bool:
    """Whether `base` is known to be an encoder without loading it (see known_kind)."""
    return known_kind(name, program_path) == "encoder"
