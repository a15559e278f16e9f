"""Targets: the registry of target kinds and their options (typed, with help text, as peft does)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One `key = value` a target accepts. `methods` limits a tune option to some methods."""

    name: str
    kind: str  # "str" | "int" | "float" | "bool" | "list[str]"
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    methods: tuple[str, ...] | None = None


TUNE_METHODS = ("prompt_tuning", "prefix_tuning", "p_tuning", "lora", "ia3")
_SOFT = ("prompt_tuning", "prefix_tuning", "p_tuning")

TEXT_OPTIONS: dict[str, OptionSpec] = {o.name: o for o in (
    OptionSpec("format", "str", "plain", "how the prompt is delivered: plain text, OpenAI chat messages, "
               "or a tokenizer's chat template", ("plain", "chat", "hf_chat")),
    OptionSpec("shots", "int", 0, "how many examples to show as few-shot demonstrations", min=0),
    OptionSpec("select", "str", "first", "how shots are chosen: `first` in declaration order, `balanced` "
               "round-robin over output labels, `random` a seeded sample, `similar` nearest to the input by "
               "MiniLM embeddings", ("first", "balanced", "random", "similar")),
    OptionSpec("seed", "int", 0, "seed for `select = \"random\"`", min=0),
    OptionSpec("delimit", "bool", True, "wrap every interpolated input value in <name>...</name> tags and tell "
               "the model that tagged text is data, not instructions"),
    OptionSpec("system_variant", "str", None, "which `system variant` to use (default: the first)"),
    OptionSpec("prompt_variant", "str", None, "which `prompt variant` to use (default: the first)"),
    OptionSpec("tokenizer", "str", None, "tokenizer directory whose chat template `hf_chat` applies"),
    OptionSpec("max_new_tokens", "int", 256, "generation budget when this target is run on a model", min=1),
    OptionSpec("max_str_len", "int", 2000, "constrained decoding: the most characters of a `str` value that "
               "declares no max_len (a field's own max_len replaces it, higher or lower)", min=1),
    OptionSpec("max_items", "int", 100, "constrained decoding: the most items of a list that declares no max_len "
               "(a field's own max_len replaces it, higher or lower)", min=1),
)}

TUNE_OPTIONS: dict[str, OptionSpec] = {o.name: o for o in (
    OptionSpec("method", "str", "auto", "the PEFT method; auto picks lora for an encoder classifier (enum "
               "outputs on an encoder base: more robust on small data, docs/tuning.md) and prompt_tuning for a "
               "causal LM", ("auto", *TUNE_METHODS)),
    OptionSpec("base", "str", "tiny-causal", "base model: a built-in name (minilm, tiny-causal), "
               "a hub id, or a local directory"),
    OptionSpec("family", "str", "auto", "causal LM or encoder classifier (one head per output field); auto "
               "picks the encoder family on an encoder base and the causal LM otherwise",
               ("auto", "causal", "classifier")),
    OptionSpec("epochs", "int", 20, "passes over the training data", min=1),
    OptionSpec("max_steps", "int", 0, "stop after this many optimiser steps (0: no limit)", min=0),
    OptionSpec("lr", "float", None, "learning rate (default depends on the method)", min=0),
    OptionSpec("batch_size", "int", 8, "examples per optimiser step", min=1),
    OptionSpec("weight_decay", "float", 0.0, "AdamW weight decay", min=0),
    OptionSpec("seed", "int", 0, "seed for initialisation, shuffling and the validation split", min=0),
    OptionSpec("seeds", "int", 1, "train this many seeds (seed, seed+1, ...) and keep the one with the best k-fold "
               "cross-validated score on the training data (never the tests)", min=1),
    OptionSpec("val_split", "float", None, "held-out share of the training data for validation (default: 0.1 "
               "when that holds out at least 5 examples per label, else none: small data trains on all of it "
               "with a fixed schedule)", min=0, max=0.9),
    OptionSpec("patience", "int", 5, "evaluations without improvement before early stopping (0: never)", min=0),
    OptionSpec("eval_every", "int", 0, "evaluate every N steps (0: once per epoch, at least 10 steps apart)",
               min=0),
    OptionSpec("max_length", "int", 256, "maximum tokens of input plus output", min=8),
    OptionSpec("max_new_tokens", "int", 128, "generation budget of a causal artifact", min=1),
    OptionSpec("min_pass", "float", 1.0, "share of tests the gate requires to pass", min=0, max=1),
    OptionSpec("pooling", "str", "mean", "how the encoder classifier pools tokens", ("mean", "cls")),
    OptionSpec("virtual_tokens", "int", 8, "number of virtual tokens", min=1, methods=_SOFT),
    OptionSpec("init", "str", "random", "soft prompt initialisation: random, from `init_text`, or from "
               "the task's rendered instructions", ("random", "text", "prompt"), methods=("prompt_tuning",)),
    OptionSpec("init_text", "str", None, "text for `init = \"text\"`", methods=("prompt_tuning",)),
    OptionSpec("prefix_projection", "bool", False, "reparameterise the prefix through an MLP",
               methods=("prefix_tuning",)),
    OptionSpec("encoder_hidden_size", "int", 128, "hidden size of the prompt encoder", min=1,
               methods=("p_tuning",)),
    OptionSpec("encoder_type", "str", "MLP", "prompt encoder", ("MLP", "LSTM"), methods=("p_tuning",)),
    OptionSpec("r", "int", 8, "LoRA rank", min=1, methods=("lora",)),
    OptionSpec("alpha", "int", 16, "LoRA scaling alpha", min=1, methods=("lora",)),
    OptionSpec("dropout", "float", 0.0, "LoRA dropout", min=0, max=1, methods=("lora",)),
    OptionSpec("target_modules", "list[str]", None, "modules to adapt (default: per architecture)",
               methods=("lora", "ia3")),
    OptionSpec("feedforward_modules", "list[str]", None, "IA3 feed-forward modules (default: per architecture)",
               methods=("ia3",)),
    OptionSpec("device", "str", "auto", "where to train: auto tries cuda, then mps, then cpu",
               ("auto", "cpu", "cuda", "mps")),
    OptionSpec("dtype", "str", "auto", "precision the base loads in (trainable parameters stay float32 under "
               "autocast): auto is bfloat16 on GPUs that support it, float32 on the CPU",
               ("auto", "float32", "bfloat16", "float16")),
    OptionSpec("grad_accum", "int", 1, "micro-batches per optimiser step: batch_size is the global batch, "
               "split over grad_accum and processes", min=1),
    OptionSpec("gradient_checkpointing", "bool", False, "recompute activations in the backward pass to save "
               "memory on large bases"),
    OptionSpec("constraint_weight", "float", 0.0, "encoder heads of a record: weight of the probability mass "
               "the heads put on combinations that break a constraint, added to the loss (0, the default: the "
               "constraints only filter predictions; measured in docs/tuning.md, the loss did not win)", min=0),
    OptionSpec("quantize", "str", "none", "load the base in 4 or 8 bits for QLoRA (bitsandbytes; needs CUDA)",
               ("none", "4bit", "8bit"), methods=("lora",)),
)}

OPTIONS = {"text": TEXT_OPTIONS, "tune": TUNE_OPTIONS}


def with_defaults(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    """The full option dict of a target: what the program gave, and every default it did not."""
    specs = OPTIONS[kind]
    out = {}
    method = given.get("method", specs["method"].default if "method" in specs else None)
    for name, spec in specs.items():
        if spec.methods is not None and method not in spec.methods:
            continue
        out[name] = given.get(name, spec.default)
    return out
