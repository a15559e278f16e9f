"""Core: the near-miss beside a path that does not exist, for 'did you mean' hints on missing files."""

from __future__ import annotations

import difflib
from pathlib import Path

MAX_ENTRIES = 2000  # a huge folder is not listed in full just to suggest a name


def _near_name(name: str, folder: Path, want_dir: bool | None) -> str | None:
    names: list[str] = []
    try:
        for i, entry in enumerate(folder.iterdir()):
            if i >= MAX_ENTRIES:
                break
            if want_dir is None or entry.is_dir() == want_dir:
                names.append(entry.name)
    except OSError:
        return None
    lowered = {n.lower(): n for n in names}
    if name.lower() in lowered and lowered[name.lower()] != name:
        return lowered[name.lower()]
    suffix = Path(name).suffix.lower()
    if suffix:  # same extension: compare the stems, so '.jsonl' alone makes no two names alike
        stems = {n[: -len(suffix)].lower(): n for n in names if n.lower().endswith(suffix) and n != name}
        if stems:
            m = difflib.get_close_matches(name[: -len(suffix)].lower(), list(stems), n=1, cutoff=0.6)
            return stems[m[0]] if m else None
    m = [lowered[x] for x in difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)]
    return m[0] if m and m[0] != name else None


def near_path(path: str | Path, want_dir: bool | None = None) -> str | None:
    """An existing file (or folder, with `want_dir`) whose path is one near-miss away from `path`, written
    the way `path` was (relative stays relative); a missing parent folder is corrected first. None when
    nothing is close."""
    p = Path(path)
    if not p.name or p.name in (".", ".."):
        return None
    parent = p.parent
    if not parent.is_dir():
        if parent == p or not parent.name:
            return None
        fixed = near_path(parent, want_dir=True)
        if fixed is None:
            return None
        parent = Path(fixed)
        if (parent / p.name).exists():
            return str(parent / p.name)
    near = _near_name(p.name, parent, want_dir)
    return str(parent / near) if near is not None else None


def near_hint(path: str | Path, want_dir: bool | None = None) -> str | None:
    near = near_path(path, want_dir)
    return f"did you mean '{near}'?" if near else None
