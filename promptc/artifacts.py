"""Artifacts: directories written atomically, their manifests, hashing and verified loading."""

from __future__ import annotations

import functools
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

from promptc.errors import ArtifactError, UsageError

MANIFEST = "manifest.json"
# `promptc artifacts sign` (promptc.signing) writes these beside the manifest; they are not in its hash list
SIGNATURE, SIGNER_KEY = "signature.sig", "signature.pub"
SIGNATURE_FILES = (SIGNATURE, SIGNER_KEY)


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


PARTIAL_MARKER = ".promptc-partial"
KINDS = ("text", "tune")


def _manifest_or_none(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and isinstance(m.get("promptc"), str) and m.get("kind") in KINDS else None


def check_destination(dest: str | Path) -> None:
    """Refuse, before any work starts, an output folder that promptc may not replace.

    Only a folder that is provably a promptc artifact is replaced: its manifest says so (a promptc version
    and a known kind), and it holds no file that the manifest does not list (a file the user added
    there would otherwise be deleted silently). A missing or empty folder is fine."""
    d = Path(dest)
    if not d.exists() and not d.is_symlink():
        return
    if d.is_symlink() or not d.is_dir():
        raise ArtifactError(f"{d} exists and is not a directory; refusing to replace it",
                            hint="choose another output folder with -o")
    entries = list(d.iterdir())
    if not entries:
        return
    m = _manifest_or_none(d)
    if m is None:
        raise ArtifactError(f"{d} exists and is not a promptc artifact; refusing to replace it",
                            hint="choose another output folder with -o, or empty this one first")
    listed = set(m.get("files") or {}) | {MANIFEST, *SIGNATURE_FILES}
    extra = sorted(str(p.relative_to(d)) for p in d.rglob("*")
                   if (p.is_file() or p.is_symlink()) and str(p.relative_to(d)) not in listed)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise ArtifactError(f"{d} is a promptc artifact, but holds files its manifest does not list ({shown}); "
                            "refusing to delete them", hint="move those files elsewhere, or choose another -o")


def claim_partial(partial: str | Path, owner: str, resume: bool) -> Path:
    """Prepare `partial` (a training run's scratch folder): keep it for --resume, else start it afresh.
    A folder there that promptc did not create (it lacks the marker) is refused, never deleted."""
    d = Path(partial)
    if d.exists():
        if not (d / PARTIAL_MARKER).is_file():
            raise ArtifactError(f"{d} exists and was not made by promptc; refusing to delete it",
                                hint="move it away, or choose another -o")
        if not resume:
            shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / PARTIAL_MARKER).write_text(json.dumps({"owner": owner}) + "\n", encoding="utf-8")
    return d


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Put the finished folder `tmp` at `dest` by renames (an old `dest` is moved aside, then removed), so
    a reader sees the old folder or the new one, never a half-written one."""
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(dest, old)
        os.rename(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, dest)


@contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary directory next to `dest`; on success it replaces `dest` in one rename.

    An existing `dest` is replaced only if `check_destination` allows it (checked before and again just
    before the swap), so a mistyped `-o` never deletes someone's files. On failure nothing at `dest`
    changes.
    """
    dest = Path(dest)
    check_destination(dest)
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
        check_destination(dest)
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read and validate an artifact's manifest (promptc.artifacts.Manifest); refuse one that is not."""
    d = Path(directory)
    path = d / MANIFEST
    if not d.is_dir():
        # a path given on the command line that does not exist is a usage error, as for --inputs
        raise UsageError(f"artifact directory not found: {d}")
    if not path.is_file():
        raise ArtifactError(f"{d} is not a promptc artifact: no {MANIFEST}")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from None
    validate_manifest(m, path)
    return m


def validate_manifest(m: Any, path: str | Path = MANIFEST) -> None:
    """Check a manifest against its schema: the fields every artifact has, and those of its kind.
    A manifest without its list of file hashes is refused, so tamper detection cannot be switched off."""
    from pydantic import ValidationError

    manifest_model, tune_model = manifest_models()
    model = tune_model if isinstance(m, dict) and m.get("kind") == "tune" else manifest_model
    try:
        model.model_validate(m)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(root)"
        raise ArtifactError(f"{path}: invalid manifest: {where}: {first['msg']} ({len(e.errors())} problem"
                            f"{'s' if len(e.errors()) != 1 else ''})",
                            hint="the artifact was damaged or edited by hand; rebuild it") from None


def verify_files(directory: str | Path, manifest: dict[str, Any]) -> None:
    """Refuse an artifact whose files do not match the hashes its manifest recorded, or that has files
    the manifest does not list (pickles dropped beside an adapter, say)."""
    d = Path(directory)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"artifact {d}: the manifest lists no file hashes; refusing to load it")
    for name, digest in files.items():
        p = (d / name)
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise ArtifactError(f"artifact {d}: the manifest names a file outside the artifact ({name})")
        if not p.is_file():
            raise ArtifactError(f"artifact {d} is missing {name}")
        if sha256_file(p) != digest:
            raise ArtifactError(f"artifact {d}: {name} does not match the hash in its manifest "
                                "(the file was modified or corrupted); refusing to load it")


# ------------------------------------------------------------------ the manifest schema
# pydantic at the boundary: a manifest is JSON that anyone can edit, so it is validated
# before any field is read. Extra fields are allowed: kinds and later versions add their own.
@functools.cache
def manifest_models() -> tuple[Any, Any]:
    """(Manifest, TuneManifest): pydantic models of every artifact's fields and a tuned one's."""
    from pydantic import BaseModel, ConfigDict, Field

    class _Open(BaseModel):
        model_config = ConfigDict(extra="allow")

    class ProgramRef(_Open):
        name: str
        version: str
        hash: str

    class TaskRef(_Open):
        name: str
        hash: str

    class ManifestModel(_Open):
        promptc: str
        kind: str = Field(pattern="^(text|tune)$")
        program: ProgramRef
        task: TaskRef
        files: dict[str, str] = Field(min_length=1)

    class BaseRef(_Open):
        id: str
        weights_hash: str
        config_hash: str

    class TuneManifestModel(ManifestModel):
        family: str = Field(pattern="^(causal|classifier)$")
        method: str
        options: dict[str, Any]
        base: BaseRef
        adapter_hash: str
        labels: list[str] | None = None

    return ManifestModel, TuneManifestModel
