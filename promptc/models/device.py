"""Devices, precision and memory for local models: which device and dtype `auto` means on this machine,
how much memory a training run needs before it starts, and how much it used.

Shared by the tune target (training) and the `hf:` backend (inference). torch is imported inside the
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from promptc.errors import ModelError, UsageError

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZE = ("none", "4bit", "8bit")
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "4bit": 0.5, "8bit": 1}


def pick_device(option: str = "auto") -> str:
    """`auto`: cuda when a CUDA device is visible, then Apple's mps, then cpu. An explicit device that
    is not available is an error (training silently on the CPU would take hours instead of minutes)."""
    import torch

    if option not in DEVICES and not option.startswith("cuda:"):
        raise UsageError(f"unknown device '{option}'", hint=f"devices: {', '.join(DEVICES)} (or cuda:N)")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if option == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if option.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device '{option}' was asked for, but torch sees no CUDA device",
                         hint="use the device \"auto\" or \"cpu\" (device option, --device), or install a "
                              "CUDA build of torch")
    if option == "mps" and not has_mps:
        raise ModelError("device 'mps' was asked for, but this torch has no Apple MPS backend",
                         hint="use the device \"auto\" or \"cpu\" (device option, --device)")
    return option


def pick_dtype(option: str, device: str) -> str:
    """`auto`: bfloat16 on a GPU that supports it, float32 otherwise (CPU half precision is slower)."""
    import torch

    if option not in DTYPES:
        raise UsageError(f"unknown dtype '{option}'", hint=f"dtypes: {', '.join(DTYPES)}")
    if option != "auto":
        if option == "bfloat16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            raise ModelError("this GPU does not support bfloat16", hint="use dtype = \"float16\" or \"float32\"")
        return option
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def place(model: Any, device: str = "auto", dtype: str = "auto") -> Any:
    """`model` on `device` in `dtype` (`--device`/`--dtype` of run and test). A model that is already
    there is returned as is; otherwise a moved copy, since a built-in model may be shared (cached)."""
    import copy

    if device == "auto" and dtype == "auto":
        return model
    dev = pick_device(device)
    want = torch_dtype(pick_dtype(dtype, dev))
    if model.device.type == dev.split(":")[0] and model.dtype == want:
        return model
    return copy.deepcopy(model).to(device=dev, dtype=want).eval()


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def mixed_precision(dtype: str) -> str:
    """accelerate's mixed_precision for a base dtype: trainable parameters stay float32 under autocast."""
    return {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}[dtype]


def check_quantize(option: str, method: str, device: str) -> None:
    """QLoRA loads the base in 4 or 8 bits through bitsandbytes, which needs CUDA."""
    if option == "none":
        return
    if option not in QUANTIZE:
        raise UsageError(f"unknown quantize '{option}'", hint=f"quantize: {', '.join(QUANTIZE)}")
    if method != "lora":
        raise UsageError(f"quantize = \"{option}\" needs method = \"lora\" (QLoRA); it is '{method}'")
    if not device.startswith("cuda"):
        raise ModelError(f"quantize = \"{option}\" needs a CUDA device (bitsandbytes); this run is on {device}",
                         hint="drop quantize, or train on a machine with an NVIDIA GPU")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError(f"quantize = \"{option}\" needs the bitsandbytes package",
                         hint="pip install bitsandbytes")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training run needs, by part, and what the device has free."""

    weights: int
    optimizer: int  # trainable parameters: fp32 weights, grads and AdamW's two moments
    activations: int
    available: int | None

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.activations

    def as_dict(self) -> dict[str, int | None]:
        return {"weights": self.weights, "optimizer": self.optimizer, "activations": self.activations,
                "total": self.total}

    def describe(self) -> str:
        gib = 1 << 30
        free = f" of {self.available / gib:.1f} GiB free" if self.available is not None else ""
        return (f"{self.total / gib:.2f} GiB{free} (weights {self.weights / gib:.2f}, optimiser "
                f"{self.optimizer / gib:.2f}, activations {self.activations / gib:.2f})")


def estimate_memory(config: Any, total_params: int, trainable_params: int, *, batch: int, length: int, dtype: str,
                    quantize: str = "none", checkpointing: bool = False, device: str = "cpu") -> MemoryEstimate:
    """A planning estimate (Korthikanti et al. 2022, activations of a transformer layer without
    recomputation: s*b*h*(34 + 5*a*s/h) bytes in 16-bit, twice that in fp32); with gradient
    checkpointing, only each layer's input is kept (2*s*b*h bytes in 16-bit) plus one layer's worth."""
    width = _BYTES["float32" if dtype == "float32" else "bfloat16"]
    weights = int(total_params * _BYTES[quantize if quantize != "none" else dtype])
    optimizer = trainable_params * 16
    hidden = int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0) or 768)
    layers = int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 0) or 12)
    heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 0) or 12)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    s, b = length, batch
    per_layer = s * b * hidden * (34 + 5 * heads * s / max(1, hidden)) * width / 2
    acts = (2 * s * b * hidden * width / 2) * layers + per_layer if checkpointing else per_layer * layers
    acts += s * b * vocab * 4 * 2  # logits and their gradient in fp32
    return MemoryEstimate(int(weights), int(optimizer), int(acts), available_memory(device))


def available_memory(device: str) -> int | None:
    """Free bytes on the device: CUDA's free memory, or the host's available RAM for cpu (None if unknown)."""
    if device.startswith("cuda"):
        import torch

        idx = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return int(torch.cuda.mem_get_info(idx)[0])
    if device == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def check_fits(est: MemoryEstimate, device: str, *, headroom: float = 0.9) -> None:
    """A clear error before training when the estimate exceeds what the device has free."""
    if est.available is None or est.total <= est.available * headroom:
        return
    raise ModelError(f"training would need about {est.describe()} on {device}; it does not fit",
                     hint="lower batch_size (with grad_accum to keep the global batch) or max_length, set "
                          "gradient_checkpointing = true, dtype = \"bfloat16\", or quantize = \"4bit\" on a GPU")


def peak_memory(device: str) -> int | None:
    """The peak bytes this process allocated on a CUDA device (None on other devices: the host's peak
    RSS is reported by the CLI but not recorded, since it varies from run to run)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    return None


def current_rss() -> int | None:
    """This process's resident memory now, in bytes (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def peak_rss() -> int:
    """This process's peak resident memory in bytes. On Linux, VmHWM of /proc/self/status: getrusage's
    ru_maxrss also counts the parent's memory at the fork before exec (a `promptc tune` started from a 2 GB
    pytest process read 1.9 GB there while its own peak was 0.6 GB). Elsewhere getrusage (macOS: bytes)."""
    import resource
    import sys

    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
