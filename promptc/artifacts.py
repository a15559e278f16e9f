"""Artifacts: directories written atomically, their manifests, hashing and verified loading."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from promptc.errors import ArtifactError

MANIFEST = "manifest.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str | Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


@contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary directory next to `dest`; on success it replaces `dest` in one rename.

    An existing `dest` is replaced only if it is empty or is a promptc artifact (it has a manifest),
    so a mistyped `-o` never deletes someone's files. On failure nothing at `dest` changes.
    """
    dest = Path(dest)
    if dest.exists():
        if not dest.is_dir():
            raise ArtifactError(f"{dest} exists and is not a directory")
        if any(dest.iterdir()) and not (dest / MANIFEST).is_file():
            raise ArtifactError(f"{dest} exists and is not a promptc artifact; refusing to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; an artifact is ordinary output
        for p in tmp.rglob("*"):
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def read_manifest(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    path = d / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{d} is not a promptc artifact: no {MANIFEST}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from e


def verify_files(directory: str | Path, manifest: dict[str, Any]) -> None:
    """Refuse an artifact whose files do not match the hashes its manifest recorded."""
    d = Path(directory)
    for name, digest in manifest.get("files", {}).items():
        p = d / name
        if not p.is_file():
            raise ArtifactError(f"artifact {d} is missing {name}")
        if sha256_file(p) != digest:
            raise ArtifactError(f"artifact {d}: {name} does not match the hash in its manifest "
                                   "(the file was modified or corrupted); refusing to load it")
