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
from promptc.heads import ENCODER_TYPES
from promptc.models.loading import hub_source, looks_like_path, quiet_transformers
from promptc.targets.tune.options import TuneOptions

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


BUILTIN_BASES = ("tiny-causal", "minilm")


def resolve_base(name: str) -> Base:
    """Where `base` comes from: a built-in name, a local directory, or a hub id. Fails at once, with a
    hint, for a name that is none of these, and for a hub id that is not cached while the hub cannot
    be reached (transformers would otherwise retry the network for about 30 s before failing)."""
    if name == "tiny-causal":
        return Base(name, "builtin", None)
    if name == "minilm":
        from promptc.embed import minilm_path

        return Base(name, "builtin", minilm_path())
    p = Path(name).expanduser()
    if p.is_dir():
        return Base(name, "dir", str(p.resolve()))
    if looks_like_path(name):
        raise ModelError(f"base model directory not found: {name}",
                         hint="give an existing directory holding config.json and the weights")
    return Base(name, "hub", hub_source(name, "base model", BUILTIN_BASES, 'base = "./models/NAME" (or --base DIR)'))


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


def choose_family(option: str, output: ir.Type, config, outputs: list[Any] | None = None,
                  inputs: list[dict[str, Any]] | None = None) -> tuple[str, Any, str]:
    """(family, heads, why): `classifier` (an encoder with one head per output field, promptc/heads.py)
    when the base is an encoder and every part of the output is finite; otherwise `causal`. `why` is the one
    line `promptc tune` prints: what was chosen, field by field, or the field that forced a causal LM."""
    from promptc.heads import Unservable, plan

    encoder = is_encoder(config)
    kind = f"'{config.model_type}'"
    try:
        heads = plan(output, list(outputs or []), inputs)
        unservable = None
    except Unservable as e:
        heads, unservable = None, e
    if option == "classifier" or (option == "auto" and encoder):
        if not encoder:
            raise ModelError(f"family = \"classifier\" needs an encoder base; {kind} is not one")
        if unservable is not None or heads is None:
            assert unservable is not None
            raise ModelError(f"the base is an encoder ({kind}), which serves only finite outputs (enums, bools, "
                             f"bounded ints, lists of enums, replies from a closed set), and field "
                             f"'{unservable.field}' of {output} is not one: {unservable.why}",
                             hint=(unservable.hint + ", " if unservable.hint else "") + "or use a causal LM base for it")
        if heads.is_root:
            return "classifier", heads, f"an encoder ({kind}) classifying {output}: {heads.heads[0].why}"
        return "classifier", heads, f"an encoder ({kind}), one head per field: {heads.describe()}"
    if option == "causal" and encoder:
        raise ModelError(f"the base is an encoder ({kind}); it cannot generate text. "
                         "Use a causal LM base, or family = \"classifier\" for a finite output")
    why = (f"causal LM ({kind}): field '{unservable.field}' needs generation ({unservable.why})"
           if unservable is not None else f"causal LM ({kind} is not an encoder)")
    return "causal", None, why


def base_weights(model, family: str, pooling: str):
    """The pretrained part of a loaded base: a sequence-classification model's head is freshly
    initialised on every load (the trained one lives in the adapter), so it is not part of the base."""
    if family == "classifier" and pooling == "cls":
        return model.base_model
    return model


def fingerprint(model, config) -> dict[str, str]:
    """Hashes of the base config and of its weights (every tensor's bytes in its loaded dtype, in name
    order; a float32 base hashes as it always has)."""
    import torch

    cfg = config.to_dict()
    for k in ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype", "id2label",
              "label2id", "_attn_implementation_autoset", "_commit_hash", "quantization_config"):
        cfg.pop(k, None)
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        raw = t.detach().contiguous().cpu().reshape(-1).view(torch.uint8)
        h.update(name.encode() + b"\0" + raw.numpy().tobytes())
    return {"config_hash": hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest(),
            "weights_hash": h.hexdigest()}


def _load_kwargs(dtype: str, quantize: str) -> dict[str, Any]:
    """from_pretrained arguments for a base in `dtype`, or quantised for QLoRA."""
    from promptc.models.device import torch_dtype

    kw: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if quantize != "none":
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=quantize == "4bit", load_in_8bit=quantize == "8bit",
            bnb_4bit_compute_dtype=torch_dtype(dtype if dtype != "float32" else "bfloat16"),
            bnb_4bit_quant_type="nf4")
    return kw


def load_causal(base: Base, dtype: str = "float32", quantize: str = "none"):
    """(model, tokenizer) of a causal LM base, in eval mode, in `dtype` (or quantised)."""
    if base.name == "tiny-causal":
        from promptc.models.device import torch_dtype
        from promptc.models.tiny import build_tiny

        model, tok = build_tiny()
        return model.to(torch_dtype(dtype)), tok
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = base.path or base.name
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, **_load_kwargs(dtype, quantize))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model.eval(), tok


def load_encoder(base: Base, num_labels: int, pooling: str, dtype: str = "float32", quantize: str = "none"):
    """(encoder or sequence-classification model, tokenizer) of an encoder base."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    src = base.path or base.name
    tok = AutoTokenizer.from_pretrained(src)
    kw = _load_kwargs(dtype, quantize)
    if pooling == "cls":
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=num_labels, **kw)
    else:
        model = AutoModel.from_pretrained(src, **kw)
    return model.eval(), tok


def peft_config(o: TuneOptions, family: str, model_type: str):
    """The peft config for a method. Options that do not apply were rejected by the checker (E311)."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    task_type = TaskType.CAUSAL_LM if family == "causal" else (
        TaskType.SEQ_CLS if o.pooling == "cls" else TaskType.FEATURE_EXTRACTION)
    n = o.virtual_tokens
    if o.method == "prompt_tuning":
        return PromptTuningConfig(task_type=task_type, num_virtual_tokens=n)
    if o.method == "prefix_tuning":
        return PrefixTuningConfig(task_type=task_type, num_virtual_tokens=n, prefix_projection=o.prefix_projection)
    if o.method == "p_tuning":
        return PromptEncoderConfig(task_type=task_type, num_virtual_tokens=n, encoder_hidden_size=o.encoder_hidden_size,
                                   encoder_reparameterization_type=o.encoder_type)
    if o.method == "lora":
        targets = o.target_modules or DEFAULT_TARGETS.get(model_type, {}).get("lora")
        return LoraConfig(task_type=task_type, r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout,
                          target_modules=targets, fan_in_fan_out=model_type == "gpt2")
    if o.method == "ia3":
        kw: dict[str, Any] = {}
        if o.target_modules:
            kw["target_modules"] = o.target_modules
        if o.feedforward_modules:
            kw["feedforward_modules"] = o.feedforward_modules
        return IA3Config(task_type=task_type, fan_in_fan_out=model_type == "gpt2", **kw)
    raise ModelError(f"unknown tune method '{o.method}'")


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


@dataclass
class TunedModel:
    """A tuned (or being tuned) model and everything needed to run it: what the training loop trains,
    what the gate and `--until-pass` run, and what the artifact writer saves."""

    family: str  # "causal" | "classifier"
    options: TuneOptions
    base: Base
    config: Any
    base_fingerprint: dict[str, str]
    peft_model: Any
    net: Any  # what is called: the peft model (causal) or a classifier module around it
    tokenizer: Any
    labels: list[str]
    dtype: str = "float32"
    heads: Any = None  # promptc.heads.Heads of the classifier family
    constraints: tuple[ir.Constraint, ...] = ()  # kept at prediction time by the classifier family

    def backend(self, identity: str):
        """The backend that runs this model (the same one an artifact loads into)."""
        return make_backend(self.family, self.net, self.tokenizer, self.heads, identity, self.options,
                            self.constraints)


def _trainable_fp32(peft_model) -> None:
    """Trainable parameters stay float32 (autocast computes in the base's half precision)."""
    for p in peft_model.parameters():
        if p.requires_grad and p.dtype != __import__("torch").float32:
            p.data = p.data.float()


def build_tuned(base: Base, config, family: str, heads: Any, o: TuneOptions, task: ir.Task,
                dtype: str = "float32") -> TunedModel:
    """Load the base in `dtype`, fingerprint it, and wrap it in a fresh peft adapter for `o.method`."""
    import torch
    from peft import get_peft_model

    from promptc.targets.tune.nets import MeanPoolClassifier, SeqClsClassifier

    torch.manual_seed(o.seed)
    labels = heads.labels if heads is not None else []
    if family == "classifier":
        base_model, tok = load_encoder(base, len(labels), o.pooling, dtype, o.quantize)
        if o.pooling == "cls":
            base_model.config.id2label = dict(enumerate(labels))
            base_model.config.label2id = {v: k for k, v in enumerate(labels)}
    else:
        base_model, tok = load_causal(base, dtype, o.quantize)
    base_fp = fingerprint(base_weights(base_model, family, o.pooling), config)
    init_ids = None
    if o.method == "prompt_tuning" and o.init in ("text", "prompt"):
        from promptc.secrets import redact_text  # build_dataset refused secrets here unless --allow-secrets

        text = o.init_text if o.init == "text" else "\n".join(v.text for v in (task.system[:1] + task.prompt[:1]))
        init_ids = tok(redact_text(text or ""), add_special_tokens=False)["input_ids"]
    if o.quantize != "none":
        from peft import prepare_model_for_kbit_training

        base_model = prepare_model_for_kbit_training(base_model, use_gradient_checkpointing=o.gradient_checkpointing)
    elif o.gradient_checkpointing:
        base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(base_model, "enable_input_require_grads"):
            base_model.enable_input_require_grads()
    torch.manual_seed(o.seed)
    pm = get_peft_model(base_model, peft_config(o, family, config.model_type))
    if init_ids:
        init_prompt_embeddings(pm, init_ids)
    _trainable_fp32(pm)
    spans = len(heads.spans) if heads is not None else 0
    if spans and o.pooling != "mean":
        raise ModelError('span heads (fields copied from the input) read token states: they need pooling = "mean"')
    if family == "classifier" and o.pooling == "mean":
        net: Any = MeanPoolClassifier(pm, config.hidden_size, len(labels), o.virtual, spans)
    elif family == "classifier":
        net = SeqClsClassifier(pm)
    else:
        net = pm
    return TunedModel(family, o, base, config, base_fp, pm, net, tok, labels, dtype, heads, task.constraints)


def make_backend(family: str, model, tokenizer, heads: Any, identity: str, o: TuneOptions,
                 constraints: tuple[ir.Constraint, ...] = ()):
    if family == "classifier":
        from promptc.models.classifier import ClassifierBackend

        return ClassifierBackend(model, tokenizer, heads, identity, o.max_length, o.virtual, constraints)
    from promptc.models.hf import HFBackend

    # transformers 5.24 + peft 0.21 drop a prefix-tuning prefix under the default KV cache, so prefix
    # artifacts decode without the cache (tests/models/test_tune.py checks generation against argmax).
    return HFBackend(identity, model=model, tokenizer=tokenizer, identity=identity,
                     use_cache=o.method != "prefix_tuning", use_chat_template=False)
