"""`promptc artifacts list|show|diff`: what artifacts there are, what each is, and what changed.

Reads manifests only (nothing is loaded or run). Lineage is the chain an artifact records: program
(name, version, hash) -> task (hash) -> training data (hash, size, provenance) -> base model (id and
hashes) -> method and options -> gate results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from promptc.artifacts import MANIFEST, read_manifest
from promptc.errors import ArtifactError, UsageError


def find(dirs: list[str]) -> list[Path]:
    """Artifact directories: each DIR that is one, else its subdirectories that are (one level deep)."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise UsageError(f"{d} is not a directory")
        if (p / MANIFEST).is_file():
            out.append(p)
            continue
        found = sorted(c for c in p.iterdir() if c.is_dir() and (c / MANIFEST).is_file())
        out.extend(found)
    return out


def summary(d: Path, key: str | None = None) -> dict[str, Any]:
    from promptc.signing import gate, integrity

    m = read_manifest(d)
    integ = integrity(d, key, m)  # the gate is shown as the manifest says only when the artifact is signed
    target = m.get("target")
    prog = m.get("program") or {}
    base = m.get("base") or {}
    tests = m.get("tests") or {}
    return {"path": str(d), "kind": m.get("kind"),
            "name": (target.get("name") if isinstance(target, dict) else target) or d.name,
            "program": prog.get("name"), "version": prog.get("version"), "task": (m.get("task") or {}).get("name"),
            "method": m.get("method") or ("text" if m.get("kind") == "text" else None),
            "base": base.get("id"),
            # a MODIFIED artifact's own word about its gate is not repeated anywhere, JSON included
            "status": None if integ.state == "MODIFIED" else m.get("status") or ("compiled" if m.get("kind") == "text"
                                                                                 else None),
            "gate": gate(m, integ), "integrity": integ.json(),
            "tests": tests.get("summary") if integ.state != "MODIFIED" else None, "trainable_parameters": m.get("trainable_parameters"),
            "adapter_hash": m.get("adapter_hash"), "data_hash": (m.get("data") or {}).get("hash")}


def list_text(dirs: list[str], fmt: str = "text", key: str | None = None) -> str:
    rows = []
    for d in find(dirs):
        try:
            rows.append(summary(d, key))
        except ArtifactError as e:
            rows.append({"path": str(d), "error": str(e)})
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if not rows:
        return "no artifacts found"
    head = ("artifact", "kind", "name@version", "task", "method", "base", "gate", "integrity", "tests")
    table = [head] + [(r["path"], "?", "?", "?", "?", "?", "error", "?", r["error"]) if "error" in r else
                      (r["path"], r["kind"] or "?", f"{r['name']}@{r['version']}", r["task"] or "-",
                       r["method"] or "-", r["base"] or "-", r["gate"], r["integrity"]["state"],
                       r["tests"] or (r["integrity"]["reason"] if r["integrity"]["state"] == "MODIFIED" else "-"))
                      for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    if any(r.get("integrity", {}).get("state") == "unsigned" for r in rows):
        lines.append("(unsigned: the file hashes match, but a hand-edited manifest cannot be detected without a "
                     "signature; promptc artifacts sign DIR --key KEY)")
    return "\n".join(lines)


def show_text(d: str, fmt: str = "text", key: str | None = None) -> str:
    from promptc.signing import gate, integrity
    from promptc.targets.model_card import model_card

    m = read_manifest(d)
    integ = integrity(Path(d), key, m)
    shown = dict(m)
    if "status" in m:
        shown["status"] = gate(m, integ)
    if isinstance(m.get("tests"), dict):  # a modified manifest's test results are not shown as results
        shown["tests"] = {**m["tests"], "gate": gate(m, integ)} if integ.state != "MODIFIED" else \
            {"summary": "not shown: the artifact was modified", "min_pass": m["tests"].get("min_pass"),
             "gate": gate(m, integ)}
    if fmt == "json":  # the manifest as it may be shown: the gate marked as in the text card
        return json.dumps({"summary": summary(Path(d), key), "manifest": shown}, indent=2, ensure_ascii=False)
    return f"integrity: {integ.words()}\n\n" + model_card(shown).rstrip()


def _flatten(x: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(x, dict):
        out: dict[str, Any] = {}
        for k, v in x.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: x}


# fields that differ between any two runs and say nothing about what changed
NOISE = ("training.curve",)


def diff(a: str, b: str) -> dict[str, Any]:
    ma, mb = read_manifest(a), read_manifest(b)
    fa, fb = _flatten({k: v for k, v in ma.items() if k != "files"}), _flatten({k: v for k, v in mb.items()
                                                                               if k != "files"})
    changed = {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
               if fa.get(k) != fb.get(k) and not k.startswith(NOISE)}
    files_a, files_b = ma.get("files") or {}, mb.get("files") or {}
    files = {"added": sorted(set(files_b) - set(files_a)), "removed": sorted(set(files_a) - set(files_b)),
             "changed": sorted(k for k in set(files_a) & set(files_b) if files_a[k] != files_b[k])}
    ta = ((ma.get("tests") or {}).get("results") or {})
    tb = ((mb.get("tests") or {}).get("results") or {})
    tests = {k: ((ta.get(k) or {}).get("status"), (tb.get(k) or {}).get("status")) for k in sorted(set(ta) | set(tb))
             if (ta.get(k) or {}).get("status") != (tb.get(k) or {}).get("status")}
    return {"a": str(a), "b": str(b), "changed": changed, "files": files, "tests": tests}


def diff_text(a: str, b: str, fmt: str = "text") -> str:
    d = diff(a, b)
    if fmt == "json":
        return json.dumps(d, indent=2, ensure_ascii=False, default=str)
    lines = [f"--- {a}", f"+++ {b}"]
    groups = [("lineage", ("program", "task", "base", "data", "target", "kind", "family")),
              ("method and options", ("method", "options", "lr", "seed", "labels")),
              ("gate", ("status", "tests")), ("training", ("training", "trainable_parameters")),
              ("other", ())]
    shown = set()
    for title, prefixes in groups:
        keys = [k for k in d["changed"] if k not in shown and (not prefixes or k.split(".")[0] in prefixes)]
        if not keys:
            continue
        lines.append(f"{title}:")
        for k in keys:
            shown.add(k)
            old, new = d["changed"][k]
            lines.append(f"  {k}: {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}")
    if d["tests"]:
        lines.append("tests whose status changed:")
        lines += [f"  {k}: {o or 'absent'} -> {n or 'absent'}" for k, (o, n) in d["tests"].items()]
    f = d["files"]
    if any(f.values()):
        lines.append("files:")
        lines += [f"  + {x}" for x in f["added"]] + [f"  - {x}" for x in f["removed"]] + \
                 [f"  ~ {x}" for x in f["changed"]]
    if len(lines) == 2:
        lines.append("no differences")
    return "\n".join(lines)
