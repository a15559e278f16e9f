"""Checkpoint state without pickle: tensors in safetensors, everything else in JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_tensors(path: Path, tensors: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def load_tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def optimizer_to_flat(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """AdamW state_dict -> (tensors, json): per-parameter tensors flattened to `state.<i>.<name>`."""
    import torch

    tensors, scalars = {}, {}
    for idx, st in state["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = v
            else:
                scalars[f"{idx}.{name}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    for key, v in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True), encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- crash-safe checkpoint rotation
# A checkpoint directory `D` is rotated through siblings `D.tmp` (being written), `D.old` (the previous
# checkpoint while the new one moves in) and `D.trash` (being deleted). A checkpoint is complete once its
# marker file exists: the marker is written last, after every other file is flushed to disk. A kill at
# any point leaves at least one complete checkpoint (or none, before the first), and `recover` - which
# runs before every load and every save - picks the newest complete one and clears the rest, so no
# leftover can ever block a later rotation (it once did: `OSError: Directory not empty` on `D.old`).
COMPLETE = "COMPLETE"
ROTATION_STEPS = ("written", "old_moved", "new_moved", "old_trashed", "trash_partly_removed", "done")


def _complete(d: Path) -> bool:
    return (d / COMPLETE).is_file()


def _remove(d: Path, fault: Any = None) -> None:
    """Delete a directory tree file by file (a kill part-way leaves a partial `.trash`, which is fine)."""
    import shutil

    if not d.exists():
        return
    files = [p for p in d.rglob("*") if p.is_file()]
    for i, p in enumerate(files):
        p.unlink()
        if i == 0 and fault is not None:
            fault("trash_partly_removed")
    shutil.rmtree(d, ignore_errors=True)


def recover(d: Path) -> Path | None:
    """Make `d` the newest complete checkpoint, if there is one, and clear every leftover. Idempotent."""
    tmp, old, trash = (d.parent / f"{d.name}.{s}" for s in ("tmp", "old", "trash"))
    if not _complete(d):
        # newest first: a finished `.tmp` was about to replace `d`; `.old` is the one before it
        for cand in (tmp, old):
            if _complete(cand):
                _remove(d)
                cand.rename(d)
                break
    for leftover in (tmp, old, trash):
        _remove(leftover)
    if d.exists() and not _complete(d):
        _remove(d)
    return d if _complete(d) else None


def rotate(d: Path, write: Any, fault: Any = None) -> None:
    """Write a new checkpoint into `d` crash-safely. `write(tmp)` fills the new directory; `fault(step)`,
    for tests, is called after each step of ROTATION_STEPS (a kill there must leave a resumable state)."""
    import os

    def at(step: str) -> None:
        if fault is not None:
            fault(step)

    recover(d)
    tmp, old, trash = (d.parent / f"{d.name}.{s}" for s in ("tmp", "old", "trash"))
    tmp.mkdir(parents=True)
    write(tmp)
    for p in tmp.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    (tmp / COMPLETE).write_text("", encoding="utf-8")
    at("written")
    if d.exists():
        d.rename(old)
    at("old_moved")
    tmp.rename(d)
    at("new_moved")
    if old.exists():
        old.rename(trash)
    at("old_trashed")
    _remove(trash, fault)
    at("done")
