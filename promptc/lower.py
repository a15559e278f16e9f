"""Lower stage: checker results -> ir.Program. Fills defaults, drops spans, computes content hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from promptc import ast, ir
from promptc.check import Checked
from promptc.options import with_defaults


def _sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8") if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def _jsonable(x: Any) -> Any:
    """A canonical JSON form of IR data (dataclasses by field), for hashing."""
    if hasattr(x, "__dataclass_fields__"):
        return {"@": type(x).__name__, **{k: _jsonable(getattr(x, k)) for k in x.__dataclass_fields__
                                          if k not in ("hash", "origin", "provenance")}}
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def canonical_json(x: Any) -> str:
    return json.dumps(_jsonable(x), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def lower(c: Checked) -> ir.Program:
    tasks: dict[str, ir.Task] = {}
    for name, ct in c.tasks.items():
        def variants(kind: str, ct=ct) -> tuple[ir.Variant, ...]:
            items = ct.decl.texts(kind)
            ordered = [i for i in items if i.variant is None] + [i for i in items if i.variant is not None]
            return tuple(ir.Variant(i.variant, i.text.value) for i in ordered)

        task = ir.Task(
            name=name,
            params=ct.params,
            output=ct.output,
            system=variants("system"),
            prompt=variants("prompt"),
            examples=tuple(ce.example for ce in ct.examples),
            constraints=tuple(ct.constraints),
        )
        tasks[name] = _with_hash(task, _sha(canonical_json(task)))
    targets = {n: ir.Target(t.kind, t.name, t.task, with_defaults(t.kind, t.options)) for n, t in c.targets.items()}
    p = c.program
    files = b"".join(data for ct in c.tasks.values() for _, data in ct.example_files)
    return ir.Program(
        name=p.name.name if p.name else _stem(c.source.path),
        version=str(p.version.value) if isinstance(p.version, ast.Literal) else "0.0.0",
        path=c.source.path,
        tasks=tasks,
        tests=tuple(c.tests),
        targets=targets,
        types=dict(c.types),
        hash=_sha(c.source.text, files),
    )


def _with_hash(task: ir.Task, h: str) -> ir.Task:
    from dataclasses import replace

    return replace(task, hash=h)


def _stem(path: str) -> str:
    from pathlib import Path

    return Path(path).stem
