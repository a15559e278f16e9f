"""`promptc export`: a tuned artifact's adapter in the layouts other tools load.

- `peft`: the directory `PeftModel.from_pretrained(base, DIR)` loads (adapter_config.json and
  adapter_model.safetensors), plus the classifier head and labels where there are some.
- `vllm`: a LoRA adapter in the layout `vllm serve BASE --enable-lora --lora-modules NAME=DIR` loads.
  vLLM serves LoRA adapters only: prompt-adapter (soft prompt) serving was removed in 2025 (vLLM PR
  #20588), so other methods are refused with that reason; `promptc serve` serves them.

Both carry the model card (README.md) and `promptc-export.json`: where the adapter came from (program,
task, base and its hashes, the source artifact's adapter hash) and the hash of every exported file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc.artifacts import file_hashes, read_manifest, sha256_file, swap_into_place, verify_files, write_json
from promptc.errors import ArtifactError, UsageError
from promptc.targets.model_card import model_card

MARKER = "promptc-export.json"
BUILTIN_BASES = ("tiny-causal", "minilm")


@dataclass
class Exported:
    directory: Path
    files: list[str]
    command: str | None = None


def _dest_ok(dest: Path) -> None:
    """Replace only an empty folder or an earlier export whose files are all its own."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise ArtifactError(f"{dest} exists and is not a directory")
    entries = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    if not entries:
        return
    marker = dest / MARKER
    try:
        listed = set(json.loads(marker.read_text(encoding="utf-8"))["files"]) | {MARKER}
    except (OSError, ValueError, KeyError, TypeError):
        raise ArtifactError(f"{dest} exists and is not a promptc export; refusing to replace it",
                            hint="choose an empty or new directory with -o") from None
    extra = sorted(entries - listed)
    if extra:
        raise ArtifactError(f"{dest} holds files that the earlier export did not write ({', '.join(extra[:3])}); "
                            "refusing to replace it", hint="move them away or choose another -o")


# The public hub id of the built-in MiniLM: an export names the base the way another machine can load it,
# never this machine's install path.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _base_ref(base: dict[str, Any]) -> str:
    """What `base_model_name_or_path` should say: the hub id or directory as recorded; the built-in MiniLM
    as its public hub id; tiny-causal keeps its name (it exists only inside promptc)."""
    name = base.get("id") or ""
    return MINILM_HUB_ID if name == "minilm" else name


def export(artifact: str | Path, fmt: str, out: str | Path, *, name: str | None = None) -> Exported:
    """Export a verified tuned artifact to `out` in `fmt` ("peft" or "vllm"), atomically."""
    src = Path(artifact)
    m = read_manifest(src)
    verify_files(src, m)
    if m.get("kind") != "tune":
        raise UsageError(f"{src} is a compiled text artifact: it is already portable (prompt.jinja renders with "
                         "any jinja2, messages.json is OpenAI chat messages); export takes tuned artifacts")
    if fmt not in ("peft", "vllm"):
        raise UsageError(f"unknown export format '{fmt}': use peft or vllm")
    method, family = m.get("method"), m.get("family")
    if fmt == "vllm" and (method != "lora" or family != "causal"):
        raise UsageError(
            f"vLLM serves LoRA adapters on causal models only; this artifact is {method} ({family})",
            hint="vLLM removed prompt-adapter serving (PR #20588): serve it with `promptc serve --artifact`, "
                 "or export --format peft")
    adapter = src / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ArtifactError(f"artifact {src} has no adapter/adapter_config.json")
    dest = Path(out)
    _dest_ok(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        base = m.get("base") or {}
        config["base_model_name_or_path"] = _base_ref(base)
        write_json(tmp / "adapter_config.json", config)
        for p in sorted(adapter.iterdir()):
            if p.is_file() and p.name != "adapter_config.json":
                if p.suffix != ".safetensors":
                    continue  # safetensors only: an export never carries a pickle
                shutil.copy2(p, tmp / p.name)
        if fmt == "peft":
            for extra in ("head.safetensors", "labels.json"):
                if (src / extra).is_file():
                    shutil.copy2(src / extra, tmp / extra)
            if m.get("heads"):  # an encoder's record heads: which slice of the head's logits is which field
                write_json(tmp / "heads.json", m["heads"])
        target = m.get("target")
        adapter_name = name or (target.get("name") if isinstance(target, dict) else target) or src.name
        command = None
        card = model_card(m)
        if fmt == "vllm":
            base_id = base.get("id")
            command = (f"vllm serve {base_id if base_id not in BUILTIN_BASES else '<base model dir>'} --enable-lora "
                       f"--lora-modules {adapter_name}={dest.resolve()} --max-lora-rank {max(16, config.get('r', 8))}")
            card += ("\n## vLLM\n\n```\n" + command + "\n```\n\nThen call it with `model=\"" + adapter_name +
                     "\"` on vLLM's OpenAI-compatible endpoint.\n")
            if base_id in BUILTIN_BASES:
                card += (f"\nThe base `{base_id}` is promptc's built-in model: save it first with "
                         "`python -c \"from promptc.models.tiny import save_tiny; save_tiny('BASE_DIR')\"`.\n")
        (tmp / "README.md").write_text(card, encoding="utf-8")
        files = file_hashes(tmp)
        write_json(tmp / MARKER, {
            "format": fmt, "adapter_name": adapter_name,
            "source": {"artifact": str(src), "adapter_hash": m.get("adapter_hash"), "program": m.get("program"),
                       "task": m.get("task"), "method": method, "family": family, "base": base,
                       "status": m.get("status")},
            "files": files})
        for p in tmp.rglob("*"):
            os.chmod(p, 0o644 if p.is_file() else 0o755)
        os.chmod(tmp, 0o755)
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    names = sorted(p.name for p in dest.iterdir())
    for n, digest in files.items():  # what was written is what was hashed
        if sha256_file(dest / n) != digest:
            raise ArtifactError(f"export to {dest} is corrupt: {n}")
    return Exported(dest, names, command)
