"""Decode speed, measured in one run on the same models and prompts:

1. constrained against unconstrained greedy decoding, as a tokens/s ratio at batch 1 and batch 16
   (target: <= 1.1x), for promptc's bounded grammar with budget-aware closing (`bounded`) and for the
   llguidance JSON-Schema grammar it replaced (`json-schema`, the baseline; target: bounded costs no
   more than 5% over it);
2. the mask time per token in microseconds, for both grammars, against llguidance's published ~50 us;
3. the time to compile the grammar of every output type of the programs in programs/;
4. batched (batch 16) against sequential generation, as a throughput ratio (target: >= 3x).

Two models: a randomly initialised GPT-2-small shape (12 layers, 768 wide) with a 32k-token byte-level
BPE tokenizer trained offline (a realistic vocabulary: the mask cost grows with it), and the toy
`tiny-causal` (2 layers, 64 wide, 259 tokens), reported separately because its forward pass is cheaper
than any mask. The load average is printed, with a warning when other work shares the CPU (the
ratios then mean little). Usage: python bench/decode.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

from promptc import ir
from promptc.models import Decoding
from promptc.models.grammar import Caps
from promptc.models.hf import HFBackend, constraint_for
from promptc.schema import inline_refs, json_schema

ROOT = Path(__file__).resolve().parent.parent

OUTPUT = ir.RecordT("Triage", (("tag", ir.EnumT("Tag", ("billing", "bug", "account", "other"))),
                               ("reply", ir.StrT(max_len=400)), ("priority", ir.IntT(1, 5))))


def bpe_tokenizer(vocab: int = 32000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(60000)]

    def corpus():
        for _ in range(4000):
            yield " ".join(rng.choice(words) for _ in range(200)) + ' {"tag": "bug", "reply": "x", "priority": 3}'

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus(), trainers.BpeTrainer(
        vocab_size=vocab, min_frequency=1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|bos|>", "<|eos|>", "<|pad|>"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>")


def gpt2_small(tok):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(cfg).eval()


def prompts(n: int) -> list[str]:
    rng = random.Random(1)
    words = "refund invoice crash login password export report seat plan charge error page team".split()
    return [f"Ticket {i}: " + " ".join(rng.choice(words) for _ in range(60)) + "\nAnswer:" for i in range(n)]


def json_schema_grammar(t: ir.Type) -> str:
    """The baseline: llguidance's own JSON-Schema grammar of the type (digits unbounded), no closing."""
    from llguidance import LLMatcher

    schema = inline_refs(json_schema(t))
    schema["x-guidance"] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
    return LLMatcher.grammar_from_json_schema(schema)


MODES = ("unconstrained", "json-schema", "bounded")


def grammars_for(mode: str, t: ir.Type, n: int) -> list:
    if mode == "unconstrained":
        return [None] * n
    if mode == "json-schema":
        return [json_schema_grammar(t)] * n
    return [constraint_for(t, Caps())] * n


def measure(backend: HFBackend, texts: list[str], mode: str, batch_size: int, max_new: int) -> tuple[float, int]:
    backend.batch_size = batch_size
    dec = Decoding(max_new_tokens=max_new, constrained=mode != "unconstrained")
    grammars = grammars_for(mode, OUTPUT, len(texts))
    t0 = time.perf_counter()
    gens = backend.generate_text(texts, grammars, dec)
    secs = time.perf_counter() - t0
    return secs, sum(g.completion_tokens for g in gens)


def report(name: str, backend: HFBackend, n: int, max_new: int, reps: int) -> dict:
    texts = prompts(n)
    for mode in MODES:  # warm up every path, at both batch shapes
        for bs in (1, n):
            measure(backend, texts[:bs], mode, bs, 2)
    print(f"\n== {name}: {n} prompts, max_new_tokens={max_new}, best of {reps} interleaved runs")
    rows: dict = {}
    for _ in range(reps):  # interleaved, so a burst of other work on the CPU hits every mode alike
        for bs in (1, n):
            for mode in MODES:
                secs, toks = measure(backend, texts, mode, bs, max_new)
                if toks / secs > rows.get((mode, bs), (0.0,))[0]:
                    rows[(mode, bs)] = (toks / secs, toks, secs)
    for mode in MODES:
        for bs in (1, n):
            rate, toks, secs = rows[(mode, bs)]
            print(f"  {mode:13s} batch {bs:2d}: {toks:5d} tokens in {secs:6.2f} s = {rate:8.1f} tokens/s")
    rows = {k: v[0] for k, v in rows.items()}
    for bs in (1, n):
        base = rows[("unconstrained", bs)]
        js, bd = base / rows[("json-schema", bs)], base / rows[("bounded", bs)]
        print(f"  constrained/unconstrained at batch {bs:2d}: bounded {bd:.3f}x, json-schema {js:.3f}x "
              f"(target <= 1.1); bounded/json-schema {bd / js:.3f} (target <= 1.05)")
    for mode in MODES:
        print(f"  batched/sequential throughput ({mode}): {rows[(mode, n)] / rows[(mode, 1)]:.2f}x (target >= 3)")
    return rows


def mask_time(tok, value_text: str, reps: int = 50) -> dict[str, float]:
    """Microseconds to compute one token's mask, walking the tokens of a valid value (mean over the walk,
    best of `reps` walks), per grammar."""
    import ctypes

    import llguidance.hf
    from llguidance import LLMatcher

    ll = llguidance.hf.from_tokenizer(tok)
    ids = tok(value_text, add_special_tokens=False)["input_ids"]
    words = (ll.vocab_size + 31) // 32
    buf = (ctypes.c_uint32 * words)()
    out = {}
    for mode in ("json-schema", "bounded"):
        g = json_schema_grammar(OUTPUT) if mode == "json-schema" else constraint_for(OUTPUT, Caps()).grammar
        walks = []
        for _ in range(reps):
            m = LLMatcher(ll, g)
            total = 0.0
            for t in ids:
                t0 = time.perf_counter()
                m.unsafe_compute_mask_ptr(ctypes.addressof(buf), words * 4)
                total += time.perf_counter() - t0
                assert m.consume_token(t), (mode, value_text)
            walks.append(total / len(ids) * 1e6)
        out[mode] = min(walks)  # the least disturbed walk: other work on the CPU only adds time
    return out


def guide_overhead(tok, batch: int, steps: int = 48, reps: int = 5) -> dict[str, float]:
    """Microseconds per decoding step spent in the logits processor (mask and budget checks), with no
    model: random scores, argmax of the masked ones. Free of the forward pass and its noise."""
    import llguidance.hf
    import torch
    from llguidance import LLMatcher

    from promptc.models.hf import _Guide, _Row

    ll = llguidance.hf.from_tokenizer(tok)
    out = {}
    for mode in ("json-schema", "bounded"):
        best = float("inf")
        for rep in range(reps):
            gen = torch.Generator().manual_seed(rep)
            if mode == "bounded":
                c = constraint_for(OUTPUT, Caps())
                matchers = [LLMatcher(ll, c.grammar) for _ in range(batch)]
                rows = [_Row(c.tracker(), 4) for _ in range(batch)]
            else:
                g = json_schema_grammar(OUTPUT)
                matchers, rows = [LLMatcher(ll, g) for _ in range(batch)], None
            # a budget well past these steps: the steady state (checks scheduled, nothing forced)
            guide = _Guide(matchers, ll, tok.eos_token_id, rows, 8 * steps if mode == "bounded" else None, width=4)
            ids = torch.full((batch, 4), tok.pad_token_id, dtype=torch.long)
            spent = 0.0
            for _ in range(steps):
                scores = torch.randn(batch, len(tok), generator=gen)
                t0 = time.perf_counter()
                scores = guide(ids, scores)
                spent += time.perf_counter() - t0
                ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], 1)
            best = min(best, spent / steps * 1e6)
        out[mode] = best
    return out


def compile_times(tok) -> list[tuple[str, float | None, float, float | None]]:
    """(program.task output, bounded ms, json-schema ms, tracker ms): grammar text + llguidance compile +
    first mask, best of 5 (bounded is None for free text, which runs without a grammar); then the budget
    tracker, built once per type on first use."""
    import ctypes

    import llguidance.hf
    from llguidance import LLMatcher

    import promptc

    ll = llguidance.hf.from_tokenizer(tok)
    words = (ll.vocab_size + 31) // 32
    buf = (ctypes.c_uint32 * words)()
    rows = []
    for path in sorted((ROOT / "programs").glob("*.prompt")):
        prog = promptc.load(path)
        for task in prog.ir.tasks.values():
            t = task.output
            times = []
            for mode in ("bounded", "json-schema"):
                best = float("inf")
                for _ in range(5):
                    constraint_for.cache_clear()
                    t0 = time.perf_counter()
                    c = constraint_for(t, Caps()) if mode == "bounded" else None
                    g = (c.grammar if c is not None else None) if mode == "bounded" else json_schema_grammar(t)
                    if g is not None:
                        LLMatcher(ll, g).unsafe_compute_mask_ptr(ctypes.addressof(buf), words * 4)
                    best = min(best, (time.perf_counter() - t0) * 1000)
                times.append(best if g is not None else None)
            constraint_for.cache_clear()
            c = constraint_for(t, Caps())
            t0 = time.perf_counter()
            if c is not None and c.shape is not None:
                c.tracker().completion()  # the budget tracker's matchers and shortest texts, built on first use
            times.append((time.perf_counter() - t0) * 1000 if c is not None and c.shape is not None else None)
            rows.append((f"{path.stem}.{task.name} -> {t}", *times))
    return rows


def load_line() -> str:
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    warn = "  WARNING: the CPU is shared; ratios are unreliable" if load > 0.75 * cores else ""
    return f"load average {load:.2f} on {cores} cores{warn}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer tokens (smoke run)")
    ap.add_argument("--skip-toy", action="store_true", help="only the GPT-2-small shape")
    ap.add_argument("--no-decode", action="store_true", help="only mask and compile times (no model runs)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions; the best rate of each counts")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice); 1 gives "
                    "steadier ratios on a shared CPU, where intra-op threads mostly contend")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"torch threads: {torch.get_num_threads()}; {load_line()}")
    max_new = 16 if args.quick else 48
    if not args.skip_toy and not args.no_decode:
        report("tiny-causal (toy)", HFBackend("tiny-causal"), 16, max_new, args.reps)
    t0 = time.perf_counter()
    tok = bpe_tokenizer()
    model = gpt2_small(tok)
    print(f"\n(built a 32k BPE tokenizer and a GPT-2-small-shaped model in {time.perf_counter() - t0:.1f} s; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters)")
    if not args.no_decode:
        report("GPT-2-small shape, 32k vocabulary", HFBackend("bench", model=model, tokenizer=tok), 16, max_new,
               args.reps)
    value = '{"tag": "account", "reply": "We have reset the password; try the link again.", "priority": 3}'
    us = mask_time(tok, value)
    print(f"\n== mask time per token (32k vocabulary, {len(tok(value)['input_ids'])} tokens of a valid value): "
          f"bounded {us['bounded']:.1f} us, json-schema {us['json-schema']:.1f} us "
          f"(llguidance publishes ~50 us); bounded/json-schema {us['bounded'] / us['json-schema']:.3f}")
    for bs in (1, 16):
        g = guide_overhead(tok, bs)
        print(f"== logits-processor time per decoding step at batch {bs:2d} (no model; mask and budget checks): "
              f"bounded {g['bounded']:.0f} us, json-schema {g['json-schema']:.0f} us; "
              f"bounded/json-schema {g['bounded'] / g['json-schema']:.3f}")
    print("\n== grammar compile time per output type (text + compile + first mask, 32k vocabulary)")
    for name, bounded, js, tracker in compile_times(tok):
        b = f"{bounded:7.2f} ms" if bounded is not None else "free text (no grammar)"
        tr = f"   tracker on first use {tracker:6.2f} ms" if tracker is not None else ""
        print(f"  {name:45s} bounded {b}   json-schema {js:7.2f} ms{tr}")
    print(f"\n{load_line()}")


if __name__ == "__main__":
    main()
