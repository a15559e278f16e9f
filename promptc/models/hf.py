"""`hf:` backend: local transformers causal LMs with batched, left-padded generation and
schema-constrained decoding through llguidance.

Why llguidance: it builds a token-level mask from a JSON Schema or regex in microseconds per step on
the CPU, accepts any fast tokenizer (including byte-level ones built offline), and is maintained as the
engine behind guidance and several inference servers. bench/decode.py measures its overhead.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc import ir
from promptc.errors import ModelError
from promptc.models.base import Decoding, Generation, Request
from promptc.models.grammar import (
    GRAMMAR_VERSION,
    Caps,
    Tracker,
    lark_from_shape,
    max_growth,
    raw_choice,
    raw_pattern,
    shape,
)
from promptc.schema import engine_pattern, engine_unsupported, json_schema

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


@dataclass(frozen=True)
class Constraint:
    """What the decoder enforces for one request: an llguidance grammar, and the shape the budget-aware
    guide tracks (None for free text, whose cut-off is reported rather than forced closed)."""

    grammar: str
    shape: Any = None

    def tracker(self) -> Tracker | None:
        return Tracker(self.shape) if self.shape is not None else None


@functools.lru_cache(maxsize=256)
def constraint_for(t: ir.Type, caps: Caps | None = None) -> Constraint | None:
    """The constraint for an output type, or None when any text is acceptable.

    `str` and enum outputs are raw text (a regex grammar); everything else is bounded JSON from
    grammar.lark_grammar (compact, no free whitespace, so a weak model cannot stall in whitespace)."""
    from llguidance import LLMatcher

    caps = caps or Caps()
    base = ir.strip_optional(t)
    optional = isinstance(t, ir.OptionalT)
    if isinstance(base, ir.StrT):
        if base.pattern is not None and not engine_unsupported(base.pattern):
            rx = engine_pattern(base.pattern)  # Python's \s and \w, spelled for the engine
            # a patterned value is structured: track it, so it is closed before the budget runs out
            # (free text is not forced to end early: its cut-off is reported instead)
            grammar = LLMatcher.grammar_from_regex(f"(?:null|{rx})" if optional else rx)
            if base.min_len is not None or base.max_len is not None:
                lo, hi = base.min_len or 0, base.max_len if base.max_len is not None else ""
                null = '"null" | ' if optional else ""
                grammar = LLMatcher.grammar_from_lark(
                    f"start: TEXT\nTEXT: {null}(/{_slash(rx)}/ & /(?s:.{{{lo},{hi}}})/)\n")
            return Constraint(grammar, raw_pattern(base.pattern, base.min_len or 0, base.max_len, optional))
        elif base.min_len is not None or base.max_len is not None:
            lo = base.min_len or 0
            rx = f"(?s:.{{{lo},{base.max_len if base.max_len is not None else ''}}})"
        else:
            return None
        return Constraint(LLMatcher.grammar_from_regex(f"(?:null|{rx})" if optional else rx))
    if isinstance(base, ir.EnumT):
        rx = "|".join(re.escape(m) for m in base.members)
        members = (*base.members, "null") if optional else base.members
        return Constraint(LLMatcher.grammar_from_regex(f"(?:null|{rx})" if optional else f"(?:{rx})"),
                          raw_choice(members))
    root = shape(t, caps)
    return Constraint(LLMatcher.grammar_from_lark(lark_from_shape(root)), root)


def _slash(rx: str) -> str:
    return rx.replace("/", "\\/")


def grammar_for(t: ir.Type, caps: Caps | None = None) -> str | None:
    """The llguidance grammar for an output type, or None when any text is acceptable."""
    c = constraint_for(t, caps)
    return c.grammar if c is not None else None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model")


def model_identity(path: Path) -> str:
    """A hash of a local model directory: its config and tokenizer files' contents, and its weight
    files' names and sizes (hashing gigabytes of weights on every run would cost more than it saves)."""
    h = hashlib.sha256()
    for name in ("config.json", *TOKENIZER_FILES):
        f = path / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES:
            h.update(f"{p.relative_to(path)}:{p.stat().st_size}\n".encode())
    return h.hexdigest()


def _identity(spec: str) -> str:
    name = spec[3:] if spec.startswith("hf:") else spec
    if name == "tiny-causal":
        from promptc.models.tiny import TINY_VERSION

        return f"builtin:tiny-causal:v{TINY_VERSION}"
    path = Path(name).expanduser()
    if path.is_dir():
        return f"dir:{model_identity(path)}"
    return f"hub:{name}"


class _Row:
    """One batch row's budget-aware state: what it has emitted (as text, for the tracker) and, once the
    budget is only just enough, the forced tokens of the shortest completion."""

    def __init__(self, tracker: Tracker | None, margin: int):
        self.tracker = tracker
        self.margin = margin
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.forced: list[int] | None = None
        self.closed = False  # the guide forced this row's shortest completion (finish_reason "closed")
        self.next_check = 0
        self.pending: list[int] = []  # tokens not yet fed to the tracker (fed only when a check is due)

    def catch_up(self, lltok) -> None:
        if self.pending and self.tracker is not None:
            self.tracker.feed(self.decoder.decode(lltok.decode_bytes(self.pending)))
        self.pending = []


class _Guide:
    """A logits processor that applies one llguidance matcher per batch row, and closes each value
    before the budget runs out.

    Masks for all rows are computed in parallel by llguidance's executor; they are applied with a few
    tensor ops rather than llguidance's TorchScript kernel, whose compilation on each new batch shape
    cost more than the whole decode in bench/decode.py.

    Budget: a row's tracker knows the shortest text that completes its value. While the budget left is
    more than that (plus a margin for what one token can open, such as a new list item), decoding is
    free. Once it is not, the guide forces the tokens of the shortest completion and then eos, so the
    value comes out complete and valid. The check is cheap and runs only when the budget could be
    near (`next_check`). A row it cannot close in time ends at the budget and is reported as cut off
    (finish_reason "length"); it is never passed off as a complete value."""

    def __init__(self, matchers: list[Any], lltok, eos_id: int, rows: list[_Row | None] | None = None,
                 max_new_tokens: int | None = None, width: int = 0):
        import llguidance
        import torch

        self.matchers = matchers
        self.lltok = lltok
        self.vocab = lltok.vocab_size
        self.eos = eos_id
        self.words = (self.vocab + 31) // 32
        self.mask = torch.full((len(matchers), self.words), -1, dtype=torch.int32)
        self.started = False
        self.done = [m is None for m in matchers]
        self.executor = llguidance.LLExecutor() if len(matchers) > 1 else None
        self.shifts = torch.arange(32, dtype=torch.int32)
        self.rows = rows or [None] * len(matchers)
        self.max_new = max_new_tokens
        self.width = width
        self.forced_rows = 0  # how many rows were closed by force (for tests and benches)

    def __call__(self, input_ids, scores):
        import torch

        step = input_ids.shape[1] - self.width
        if self.started:
            last = input_ids[:, -1].tolist()
            for i, m in enumerate(self.matchers):
                if m is None or self.done[i]:
                    continue
                if last[i] == self.eos or not m.consume_token(last[i]):
                    self.done[i] = True
                    continue
                row = self.rows[i]
                if row is not None and row.tracker is not None:
                    row.pending.append(last[i])
        self.started = True
        forced = self._budget(step) if self.max_new is not None else {}
        self.mask.fill_(-1)
        live = [(m, i) for i, m in enumerate(self.matchers)
                if m is not None and not self.done[i] and not m.is_stopped() and i not in forced]
        # llguidance writes each row's mask straight into our int32 tensor (as llguidance.torch does,
        # without importing that module's TorchScript kernel)
        row_bytes = self.words * 4
        if self.executor is not None and len(live) > 1:
            self.executor.unsafe_compute_mask_ptr(live, self.mask.data_ptr(), row_bytes, len(self.matchers))
        else:
            for m, i in live:
                m.unsafe_compute_mask_ptr(self.mask[i].data_ptr(), row_bytes)
        allowed = ((self.mask.unsqueeze(-1) >> self.shifts) & 1).reshape(len(self.matchers), -1)
        allowed = allowed[:, : min(self.vocab, scores.shape[1])].bool().to(scores.device)
        head = scores[:, : allowed.shape[1]]
        head.masked_fill_(~allowed, -torch.inf)
        rows = [i for i, m in enumerate(self.matchers) if m is not None]
        if scores.shape[1] > self.vocab and rows:
            scores[rows, self.vocab:] = -torch.inf
        for i, m in enumerate(self.matchers):
            if m is not None and (self.done[i] or m.is_stopped()):
                scores[i, :] = -torch.inf
                scores[i, self.eos] = 0.0
            elif i in forced:
                scores[i, :] = -torch.inf
                scores[i, forced[i]] = 0.0
        return scores

    def _budget(self, step: int) -> dict[int, int]:
        """Rows whose next token is forced, and that token."""
        assert self.max_new is not None  # called only with a budget
        left = self.max_new - step  # tokens still to generate, this one included
        out: dict[int, int] = {}
        for i, row in enumerate(self.rows):
            if row is None or row.tracker is None or self.done[i] or self.matchers[i].is_stopped():
                continue
            if row.forced is None:
                if step < row.next_check:
                    continue  # not near the budget yet
                row.catch_up(self.lltok)
                if row.decoder.getstate()[0]:
                    continue  # inside a multi-byte character: close once it is whole
                text = row.tracker.completion()
                if text is None:
                    continue  # the tracker cannot say; the row may end cut off, and is reported so
                need = len(text) + 1  # an upper bound on tokens (one per byte at most), plus eos
                if left > need + row.margin:
                    # the need grows by at most `margin` per token, so nothing can change before this
                    row.next_check = step + max(1, (left - need - row.margin) // (row.margin + 1))
                    continue
                ids = self.lltok.tokenize_str(text) if text else []
                if left > len(ids) + 1 + row.margin:
                    row.next_check = step + 1
                    continue
                row.forced = [*ids, self.eos]
                row.closed = True
                self.forced_rows += 1
            if row.forced:
                tok = row.forced.pop(0)
                if tok != self.eos and not self.matchers[i].validate_tokens([tok]):
                    row.forced, row.tracker = [], None  # should not happen: leave the row to its mask
                    row.closed = False
                    continue
                out[i] = tok
        return out


class HFBackend:
    """A transformers causal LM: `hf:<local dir or hub id>`, or the built-in `tiny-causal`.

    The model loads on the first cache miss, so a fully cached run never imports torch."""

    streams = True  # generate_text(on_text=...) streams text as tokens are generated
    logit_bias = True  # Decoding.logit_bias is applied

    def __init__(self, spec: str, *, model=None, tokenizer=None, identity: str | None = None,
                 batch_size: int = 16, use_cache: bool = True, use_chat_template: bool = True,
                 device: str = "auto", dtype: str = "auto"):
        self.spec = spec
        self.device, self.dtype = device, dtype  # promptc.models.device: where and in what precision to load
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.use_chat_template = use_chat_template
        self._model, self._tokenizer = model, tokenizer
        self._identity = identity or (spec if model is not None else _identity(spec))
        if dtype != "auto" and model is None:
            self._identity += f";dtype={dtype}"  # half precision can change outputs: cache entries differ
        self._lltok: Any = None  # llguidance.LLTokenizer, built on first constrained decode
        import threading

        self._load_lock = threading.Lock()
        # set by a server that is shutting down: a running generation ends at its next token
        self.stop_event: threading.Event | None = None

    def _load(self) -> None:
        with self._load_lock:
            if self._model is None:
                self._model, self._tokenizer, _ = _load(self.spec, self.device, self.dtype)
            tok = self._tokenizer
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            tok.padding_side = "left"

    @property
    def model(self):
        if self._model is None or self._tokenizer.padding_side != "left":
            self._load()
        return self._model

    @property
    def tokenizer(self):
        if self._tokenizer is None or self._tokenizer.padding_side != "left":
            self._load()
        return self._tokenizer

    # --- identity and requests
    def identity(self) -> str:
        return self._identity

    def templated(self) -> bool:
        return self.use_chat_template and bool(getattr(self.tokenizer, "chat_template", None))

    def prompt_text(self, request: Request) -> str:
        if self.templated():
            return self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        return request.prompt

    def request_key(self, request: Request, decoding: Decoding) -> Any:
        # The identity covers the tokenizer files, so messages + plain prompt determine the final text
        # without loading the tokenizer (a warm run never loads the model).
        grammar = f"v{GRAMMAR_VERSION}:" + json.dumps(json_schema(request.output), sort_keys=True) \
            if decoding.constrained else None
        return {"messages": request.messages, "prompt": request.prompt, "grammar": grammar}

    def _ll(self):
        if self._lltok is None:
            import llguidance.hf

            try:
                self._lltok = llguidance.hf.from_tokenizer(self.tokenizer)
            except (ValueError, TypeError, AttributeError) as e:
                # llguidance reads fast (tokenizers-library) tokenizers with a known decoder; a slow or
                # unusual one fails here with e.g. "can't determine decoder type: None"
                name = type(self.tokenizer).__name__
                raise ModelError(
                    f"constrained decoding cannot use the tokenizer of '{self.spec}' ({name}): {e}",
                    hint="run without constraints (--unconstrained), or use a model with a fast tokenizer "
                         "(tokenizer.json)") from None
        return self._lltok

    def context_size(self) -> int:
        cfg = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            v = getattr(cfg, name, None)
            if isinstance(v, int) and v > 0:
                return v
        return 1 << 30

    # --- generation
    def generate(self, requests: list[Request], decoding: Decoding, sample: int = 0) -> list[Generation]:
        texts = [self.prompt_text(r) for r in requests]
        caps = Caps(decoding.max_str_len, decoding.max_items)
        grammars = [constraint_for(r.output, caps) if decoding.constrained else None for r in requests]
        return self.generate_text(texts, grammars, decoding, sample, templated=self.templated())

    def generate_text(self, texts: list[str], grammars: Sequence[Constraint | str | None], decoding: Decoding,
                      sample: int = 0, templated: bool = False,
                      on_text: Callable[[str], bool] | Sequence[Callable[[str], bool] | None] | None = None
                      ) -> list[Generation]:
        """Generate from final prompt strings, each with an optional constraint (or a bare llguidance
        grammar, which is enforced without budget-aware closing).

        `on_text` streams: one callback per text (None for a text not streamed; a bare callback for a single
        text). A text's callback is called on this thread with each new piece of its text as the tokens are
        generated, in the same batch as the other texts (the pieces join to the Generation's text), and that
        row stops early when it returns False (a stop string was seen, or the client went away)."""
        if callable(on_text):
            if len(texts) != 1:
                raise ValueError("a bare on_text callback streams one text; give one callback per text")
            on_text = [on_text]
        if on_text is not None and len(on_text) != len(texts):
            raise ValueError("on_text needs one callback (or None) per text")
        enc = [self.tokenizer(t, add_special_tokens=not templated)["input_ids"] for t in texts]
        out: list[Generation | None] = [None] * len(texts)
        limit = self.context_size() - decoding.max_new_tokens
        ok = []
        for i, ids in enumerate(enc):
            if len(ids) > limit:
                out[i] = Generation("", len(ids), 0, 0.0, error=(
                    f"the prompt is {len(ids)} tokens; with max_new_tokens={decoding.max_new_tokens} the "
                    f"model's context of {self.context_size()} allows {max(limit, 0)}"))
            else:
                ok.append(i)
        # longest first: batches of similar length waste less padding
        order = sorted(ok, key=lambda i: (-len(enc[i]), i))
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            streams = [on_text[i] for i in idx] if on_text is not None else None
            for i, g in zip(idx, self._batch([enc[i] for i in idx], [grammars[i] for i in idx], decoding, sample,
                                             streams if streams and any(streams) else None)):
                out[i] = g
        return [g for g in out if g is not None]

    def _batch(self, ids: list[list[int]], grammars: list[Constraint | str | None], decoding: Decoding,
               sample: int, on_text: Sequence[Callable[[str], bool] | None] | None = None) -> list[Generation]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        tok = self.tokenizer
        pad = tok.pad_token_id
        eos = tok.eos_token_id
        width = max(len(x) for x in ids)
        dev = self.model.device
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], dtype=torch.long, device=dev)
        attn = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], dtype=torch.long, device=dev)
        processors = LogitsProcessorList()
        self.last_guide = None
        if any(g is not None for g in grammars):
            from llguidance import LLMatcher

            ll = self._ll()
            cons = [Constraint(g) if isinstance(g, str) else g for g in grammars]
            matchers = [LLMatcher(ll, c.grammar) if c is not None else None for c in cons]
            for m in matchers:
                if m is not None and m.is_error():
                    raise ModelError(f"constrained decoding cannot use this schema: {m.get_error()}")
            rows = [_Row(c.tracker(), 2 * max_growth(c.shape) + 4) if c is not None and c.shape is not None
                    else None for c in cons]
            self.last_guide = _Guide(matchers, ll, eos, rows, decoding.max_new_tokens, width)
            processors.append(self.last_guide)
        sampling = decoding.temperature > 0
        cfg = GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=sampling,
                               temperature=decoding.temperature if sampling else None,
                               top_p=decoding.top_p if sampling else None, top_k=None,
                               pad_token_id=pad, eos_token_id=eos, use_cache=self.use_cache,
                               # OpenAI's logit_bias: transformers adds it before the grammar mask (a custom
                               # processor) and before temperature and top-p, so a masked token stays out
                               sequence_bias={(t,): b for t, b in decoding.logit_bias} or None)
        streamer = _Streamer(tok, eos, on_text) if on_text is not None else None
        criteria: list[Any] = [streamer] if streamer is not None else []
        if self.stop_event is not None:
            criteria.append(_StopOn(self.stop_event))
        t0 = time.perf_counter()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(decoding.seed * 1_000_003 + sample)
            out = self.model.generate(input_ids=input_ids, attention_mask=attn, generation_config=cfg,
                                      logits_processor=processors, streamer=streamer,
                                      stopping_criteria=StoppingCriteriaList(criteria) if criteria else None)
        elapsed = time.perf_counter() - t0
        guide_rows = self.last_guide.rows if self.last_guide is not None else [None] * len(ids)
        gens = []
        streamed = streamer.rows if streamer is not None else [None] * len(ids)
        for row, prompt, state, rs in zip(out[:, width:].tolist(), ids, guide_rows, streamed):
            if rs is not None and rs.stop:  # its callback ended it (stop string, client gone): what it made
                gens.append(Generation(tok.decode(rs.ids, skip_special_tokens=True), len(prompt), len(rs.ids),
                                       elapsed / len(ids), finish_reason="stop"))
                continue
            # no eos within the budget: generation stopped because max_new_tokens ran out
            stopped = eos in row
            n = row.index(eos) if stopped else len(row)
            text = tok.decode(row[:n], skip_special_tokens=True)
            gens.append(Generation(text, len(prompt), n + (1 if stopped else 0), elapsed / len(ids),
                                   finish_reason=_finish(stopped, state)))
        return gens


class _RowStream:
    """One streamed row: its tokens so far, what was sent, and whether its callback asked to stop.

    Pieces are decoded incrementally as vLLM does: the new tokens with a few tokens of context before them
    (a tokenizer may decode a token differently at the start of a text), and held back while they end in
    an incomplete UTF-8 character. `end` sends whatever the whole decode has beyond what was sent, so the
    pieces join to exactly the text a non-streamed call returns."""

    __slots__ = ("on_text", "ids", "prefix", "read", "sent", "ended", "stop")

    def __init__(self, on_text: Callable[[str], bool]):
        self.on_text = on_text
        self.ids: list[int] = []
        self.prefix = self.read = 0  # token offsets: context start, end of what was sent
        self.sent: list[str] = []
        self.ended = self.stop = False

    def put(self, tok: Any, eos: int, t: int) -> None:
        if self.ended or self.stop:
            return  # after eos (or its own stop) a row gets only padding
        if t == eos:
            self.ended = True
            return
        self.ids.append(t)
        before = tok.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        now = tok.decode(self.ids[self.prefix:], skip_special_tokens=True)
        if len(now) > len(before) and not now.endswith("\ufffd") and now.startswith(before):
            self.prefix, self.read = self.read, len(self.ids)
            self._send(now[len(before):])

    def end(self, tok: Any) -> None:
        whole = tok.decode(self.ids, skip_special_tokens=True)
        sent = "".join(self.sent)
        if not self.stop and whole.startswith(sent) and len(whole) > len(sent):
            self._send(whole[len(sent):])

    def _send(self, piece: str) -> None:
        self.sent.append(piece)
        if self.on_text(piece) is False:
            self.stop = True


class _Streamer:
    """transformers' streamer protocol (`put` each step's new token of every row, `end`) turned into text
    pieces for the rows that have a callback, and a stopping criterion that ends a row once its callback
    says so (transformers pads a finished row and ends the call when every row has finished): streamed
    rows share a batch with rows that are not."""

    def __init__(self, tok: Any, eos: int, on_text: Sequence[Callable[[str], bool] | None]):
        self.tok, self.eos = tok, eos
        self.rows = [_RowStream(cb) if cb is not None else None for cb in on_text]
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        for rs, t in zip(self.rows, value.reshape(-1).tolist()):
            if rs is not None:
                rs.put(self.tok, self.eos, t)

    def end(self) -> None:
        for rs in self.rows:
            if rs is not None:
                rs.end(self.tok)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        """The stopping criterion: True for each row whose callback asked to stop."""
        import torch

        return torch.tensor([rs is not None and rs.stop for rs in self.rows], dtype=torch.bool,
                            device=input_ids.device)


class _StopOn:
    """A stopping criterion: every row ends once the event is set."""

    def __init__(self, event: Any):
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _finish(stopped: bool, row: _Row | None) -> str:
    """A row's finish reason: "length" (the budget ran out), "closed" (the guide forced the shortest valid
    completion because the budget ran low: the value is complete, but the model did not end it), or
    "stop" (the model or its grammar ended the output)."""
    if not stopped:
        return "length"
    return "closed" if row is not None and row.closed else "stop"


def _placement(device: str, dtype: str) -> tuple[str, dict[str, Any]]:
    """(device, from_pretrained arguments): the dtype, and on CUDA device_map="auto", which puts a base
    that does not fit on one GPU across the GPUs (and the CPU) instead of failing."""
    from promptc.models.device import pick_device, pick_dtype, torch_dtype

    dev = pick_device(device)
    kw: dict[str, Any] = {"dtype": torch_dtype(pick_dtype(dtype, dev))}
    if dev.startswith("cuda"):
        kw["device_map"] = "auto" if dev == "cuda" else dev
    return dev, kw


def _load(spec: str, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer, identity) for `tiny-causal`, `hf:tiny-causal`, `hf:<dir>` or `hf:<hub id>`."""
    name = spec[3:] if spec.startswith("hf:") else spec
    if name == "tiny-causal":
        from promptc.models.device import place
        from promptc.models.tiny import cached_tiny

        model, tok = cached_tiny()
        return place(model, device, dtype), tok, _identity(spec)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptc.models.loading import hub_source, looks_like_path, quiet_transformers

    quiet_transformers()
    path = Path(name).expanduser()
    if not path.is_dir() and looks_like_path(name):
        raise ModelError(f"model directory not found: {name}")
    # a hub id loads from its cached snapshot when there is one; a typo or an uncached id while the hub
    # is unreachable fails at once instead of after transformers' retries
    source = str(path) if path.is_dir() else hub_source(name, "model", ("tiny-causal",), "--model hf:./models/NAME") \
        or name
    dev, kw = _placement(device, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kw)
        tok = AutoTokenizer.from_pretrained(source)
        ident = _identity(spec)
    except OSError as e:
        raise ModelError(f"cannot load model '{name}': {e}".split("\n")[0]) from None
    if "device_map" not in kw and dev != "cpu":
        model = model.to(dev)  # type: ignore[arg-type]  # @wraps(Module.to) types it as unbound
    model.eval()
    return model, tok, ident
