"""`tiny-causal`: a small GPT-2-shaped model with a byte-level tokenizer, built offline from a fixed
config and seed. It proves the pipeline (batching, constrained decoding, tuning, save and load); its
random weights know nothing, so it makes no claim about quality."""

from __future__ import annotations

import functools
from typing import Any

TINY_VERSION = 3  # 2: 4,096 positions; 3: embeddings scaled so adapters can sharpen the output
SPECIALS = ("<|bos|>", "<|eos|>", "<|pad|>")


def tiny_tokenizer():
    """A byte-level BPE tokenizer with no merges: one token per byte, plus bos/eos/pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for s in SPECIALS:
        vocab[s] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=SPECIALS[0], eos_token=SPECIALS[1],
                                  pad_token=SPECIALS[2], model_max_length=4096)
    tok.padding_side = "left"
    return tok


def tiny_config() -> Any:
    from transformers import GPT2Config

    tok_size = 256 + len(SPECIALS)
    return GPT2Config(vocab_size=tok_size, n_positions=4096, n_embd=64, n_layer=2, n_head=2, n_inner=128,
                      bos_token_id=256, eos_token_id=257, pad_token_id=258, resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0)


def build_tiny(seed: int = 0):
    """(model, tokenizer): the same weights, bit for bit, every time for the same seed."""
    import torch
    from transformers import GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(tiny_config())
    # GPT-2's init (std 0.02) with tied embeddings bounds every logit near +-1.3 on a 64-wide model, so
    # an adapter on the frozen base could never make one token likely (LoRA stalled at loss 4.3 on
    # six examples). Ten times larger embeddings let it reach ~0.02, as a pretrained base would.
    with torch.no_grad():
        model.transformer.wte.weight.mul_(10.0)
    model.eval()
    return model, tiny_tokenizer()


@functools.lru_cache(maxsize=2)
def cached_tiny(seed: int = 0):
    return build_tiny(seed)


def save_tiny(directory: str, seed: int = 0) -> str:
    """Write the tiny model and tokenizer with save_pretrained (safetensors), for `hf:<dir>`."""
    model, tok = build_tiny(seed)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
