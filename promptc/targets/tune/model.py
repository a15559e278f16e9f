"""Base models and PEFT wiring for the tune target: resolve `base`, pick the model family, build the
peft model for a method, and fingerprint the base so an artifact can refuse the wrong one."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc import ir
from promptc.errors import ModelError
from promptc.models.loading import looks_like_path, quiet_transformers

ENCODER_TYPES = {"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "xlm-roberta", "mpnet",
                 "albert", "camembert", "modernbert"}
SOFT_METHODS = ("prompt_tuning", "prefix_tuning", "p_tuning")
DEFAULT_LR = {"prompt_tuning": 3e-2, "prefix_tuning": 1e-2, "p_tuning": 1e-2, "lora": 2e-3, "ia3": 1e-2}
# Adapter targets per architecture where ours differ from peft's (which adapts only GPT-2's c_attn):
# every linear layer, which lets an adapter on a small or weak base actually fit its data.
DEFAULT_TARGETS = {"gpt2": {"lora": ["c_attn", "c_proj", "c_fc"]}}
# Other architectures use peft's mapping; one it does not know needs target_modules in the program.


@dataclass
class Base:
    """A resolved base model: what the program named, and where it is loaded from."""

    name: str
    source: str  # "builtin" | "dir" | "hub"
    path: str | None


def resolve_base(name: str) -> Base:
    if name == "tiny-causal":
        return Base(name, "builtin", None)
    if name == "minilm":
        from promptc.embed import minilm_path

        return Base(name, "builtin", minilm_path())
    p = Path(name).expanduser()
    if p.is_dir():
        return Base(name, "dir", str(p.resolve()))
    if looks_like_path(name):
        raise ModelError(f"base model directory not found: {name}")
    return Base(name, "hub", None)


def load_config(base: Base):
    from transformers import AutoConfig

    quiet_transformers()
    if base.name == "tiny-causal":
        from promptc.models.tiny import tiny_config

        return tiny_config()
    try:
        return AutoConfig.from_pretrained(base.path or base.name)
    except OSError as e:
        raise ModelError(f"cannot load base model '{base.name}': {str(e).splitlines()[0]}") from None


def is_encoder(config) -> bool:
    return config.model_type in ENCODER_TYPES and not getattr(config, "is_decoder", False)


def choose_family(option: str, output: ir.Type, config) -> str:
    """`classifier` for enum outputs on encoder bases (or when asked); otherwise `causal`."""
    enum_out = isinstance(output, ir.EnumT)
    encoder = is_encoder(config)
    if option == "classifier":
        if not enum_out:
            raise ModelError(f"family = \"classifier\" needs an enum output, not {output}")
        if not encoder:
            raise ModelError(f"family = \"classifier\" needs an encoder base; '{config.model_type}' is not one")
        return "classifier"
    if option == "causal":
        if encoder:
            raise ModelError(f"the base is an encoder ('{config.model_type}'); it cannot generate text. "
                                   "Use a causal LM base, or an enum output with family = \"classifier\"")
        return "causal"
    if encoder:
        if not enum_out:
            raise ModelError(f"the base is an encoder ('{config.model_type}'), which can only classify, and "
                                   f"the output is {output}; use a causal LM base (e.g. tiny-causal) for it")
        return "classifier"
    return "causal"


def base_weights(model, family: str, options: dict[str, Any]):
    """The pretrained part of a loaded base: a sequence-classification model's head is freshly
    initialised on every load (the trained one lives in the adapter), so it is not part of the base."""
    if family == "classifier" and options.get("pooling", "mean") == "cls":
        return model.base_model
    return model


def fingerprint(model, config) -> dict[str, str]:
    """Hashes of the base config and of its weights (every tensor, in name order)."""
    cfg = config.to_dict()
    for k in ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype", "id2label",
              "label2id", "_attn_implementation_autoset", "_commit_hash"):
        cfg.pop(k, None)
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode() + b"\0" + t.detach().contiguous().cpu().numpy().tobytes())
    return {"config_hash": hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest(),
            "weights_hash": h.hexdigest()}


def load_causal(base: Base):
    """(model, tokenizer) of a causal LM base, in eval mode."""
    if base.name == "tiny-causal":
        from promptc.models.tiny import build_tiny

        return build_tiny()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = base.path or base.name
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model.eval(), tok


def load_encoder(base: Base, num_labels: int, pooling: str):
    """(encoder or sequence-classification model, tokenizer) of an encoder base."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    src = base.path or base.name
    tok = AutoTokenizer.from_pretrained(src)
    if pooling == "cls":
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=num_labels)
    else:
        model = AutoModel.from_pretrained(src)
    return model.eval(), tok


def peft_config(method: str, family: str, options: dict[str, Any], model_type: str, init_ids: list[int] | None):
    """The peft config for a method. Options that do not apply were rejected by the checker (E311)."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    task_type = TaskType.CAUSAL_LM if family == "causal" else (
        TaskType.SEQ_CLS if options.get("pooling") == "cls" else TaskType.FEATURE_EXTRACTION)
    n = options.get("virtual_tokens", 8)
    if method == "prompt_tuning":
        return PromptTuningConfig(task_type=task_type, num_virtual_tokens=n)
    if method == "prefix_tuning":
        return PrefixTuningConfig(task_type=task_type, num_virtual_tokens=n,
                                  prefix_projection=bool(options.get("prefix_projection", False)))
    if method == "p_tuning":
        return PromptEncoderConfig(task_type=task_type, num_virtual_tokens=n,
                                   encoder_hidden_size=options.get("encoder_hidden_size", 128),
                                   encoder_reparameterization_type=options.get("encoder_type", "MLP"))
    if method == "lora":
        targets = options.get("target_modules") or DEFAULT_TARGETS.get(model_type, {}).get("lora")
        return LoraConfig(task_type=task_type, r=options.get("r", 8), lora_alpha=options.get("alpha", 16),
                          lora_dropout=options.get("dropout", 0.0), target_modules=targets,
                          fan_in_fan_out=model_type == "gpt2")
    if method == "ia3":
        kw: dict[str, Any] = {}
        if options.get("target_modules"):
            kw["target_modules"] = options["target_modules"]
        if options.get("feedforward_modules"):
            kw["feedforward_modules"] = options["feedforward_modules"]
        return IA3Config(task_type=task_type, fan_in_fan_out=model_type == "gpt2", **kw)
    raise ModelError(f"unknown tune method '{method}'")


def init_prompt_embeddings(peft_model, token_ids: list[int]) -> None:
    """Initialise a prompt-tuning soft prompt from the embeddings of real tokens (peft's TEXT init,
    done here so bases built in memory, with no tokenizer on disk, can use it too)."""
    import torch

    enc = peft_model.prompt_encoder[peft_model.active_adapter]
    n = enc.embedding.weight.shape[0]
    ids = (token_ids * (n // max(1, len(token_ids)) + 1))[:n] if token_ids else []
    if not ids:
        return
    words = peft_model.get_input_embeddings()
    with torch.no_grad():
        enc.embedding.weight.copy_(words(torch.tensor(ids)).detach().clone())


class MeanPoolClassifier:
    """An encoder (with its peft adapter) whose token states are mean-pooled over the real tokens and
    classified by a linear head: the pooling all-MiniLM-L6-v2 was trained with."""

    def __init__(self, encoder, hidden: int, num_labels: int, virtual: int):
        import torch

        self.encoder = encoder
        self.head = torch.nn.Linear(hidden, num_labels)
        self.virtual = virtual  # leading positions that are soft-prompt tokens, not input tokens

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.head.parameters()

    def train(self, mode: bool = True):
        self.encoder.train(mode)
        self.head.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def __call__(self, input_ids, attention_mask):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        states = out.last_hidden_state[:, -input_ids.shape[1]:, :]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.head(pooled)


class SeqClsClassifier:
    """AutoModelForSequenceClassification with a SEQ_CLS peft adapter (CLS pooling)."""

    def __init__(self, model):
        self.encoder = model

    def parameters(self):
        return self.encoder.parameters()

    def train(self, mode: bool = True):
        self.encoder.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def __call__(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).logits
