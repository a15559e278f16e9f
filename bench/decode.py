"""Decode speed, measured in one run on the same models and prompts:

1. constrained (llguidance, JSON Schema) against unconstrained greedy decoding, as a tokens/s ratio
   (target: overhead <= 1.25x);
2. batched (batch 16) against sequential generation, as a throughput ratio (target: >= 3x).

Two models: a randomly initialised GPT-2-small shape (12 layers, 768 wide) with a 32k-token byte-level
BPE tokenizer trained offline (a realistic vocabulary: the mask cost grows with it), and the toy
`tiny-causal` (2 layers, 64 wide, 259 tokens), reported separately because its forward pass is cheaper
than any mask. Usage: python bench/decode.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import time

from promptc import ir
from promptc.models import Decoding
from promptc.models.hf import HFBackend, grammar_for

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


def measure(backend: HFBackend, texts: list[str], constrained: bool, batch_size: int, max_new: int) -> tuple[float, int]:
    backend.batch_size = batch_size
    grammars = [grammar_for(OUTPUT) if constrained else None for _ in texts]
    dec = Decoding(max_new_tokens=max_new, constrained=constrained)
    t0 = time.perf_counter()
    gens = backend.generate_text(texts, grammars, dec)
    secs = time.perf_counter() - t0
    return secs, sum(g.completion_tokens for g in gens)


def report(name: str, backend: HFBackend, n: int, max_new: int) -> None:
    texts = prompts(n)
    measure(backend, texts[:2], True, 2, 4)  # warm up both paths
    measure(backend, texts[:2], False, 2, 4)
    print(f"\n== {name}: {n} prompts, max_new_tokens={max_new}")
    rows, decode_rows = {}, {}
    prefill = {bs: measure(backend, texts, False, bs, 1)[0] for bs in (1, n)}
    for constrained in (False, True):
        for bs in (1, n):
            secs, toks = measure(backend, texts, constrained, bs, max_new)
            rows[(constrained, bs)] = toks / secs
            decode_rows[(constrained, bs)] = (toks - len(texts)) / max(1e-9, secs - prefill[bs])
            print(f"  {'constrained  ' if constrained else 'unconstrained'} batch {bs:2d}: "
                  f"{toks:5d} tokens in {secs:6.2f} s = {toks / secs:8.1f} tokens/s end to end, "
                  f"{decode_rows[(constrained, bs)]:8.1f} tokens/s after the prompt "
                  f"(prefill {prefill[bs]:.2f} s)")
    for bs in (1, n):
        print(f"  constrained overhead at batch {bs:2d}: {rows[(False, bs)] / rows[(True, bs)]:.2f}x end to end, "
              f"{decode_rows[(False, bs)] / decode_rows[(True, bs)]:.2f}x after the prompt (target <= 1.25)")
    for c in (False, True):
        print(f"  batched/sequential throughput ({'constrained' if c else 'unconstrained'}): "
              f"{rows[(c, n)] / rows[(c, 1)]:.2f}x end to end, "
              f"{decode_rows[(c, n)] / decode_rows[(c, 1)]:.2f}x after the prompt (target >= 3)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer tokens (smoke run)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch threads: {torch.get_num_threads()}")
    max_new = 16 if args.quick else 48
    report("tiny-causal (toy)", HFBackend("tiny-causal"), 16, max_new)
    t0 = time.perf_counter()
    tok = bpe_tokenizer()
    model = gpt2_small(tok)
    print(f"\n(built a 32k BPE tokenizer and a GPT-2-small-shaped model in {time.perf_counter() - t0:.1f} s; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters)")
    report("GPT-2-small shape, 32k vocabulary", HFBackend("bench", model=model, tokenizer=tok), 16, max_new)


if __name__ == "__main__":
    main()
