"""`promptc test --save-failures`: failing cases and shrunk counterexamples in the examples format.

Each line is `{"input": ..., "output": <the bad output>, "name": ..., "provenance": {...}}`: fix the
output, then feed the file to `promptc tune --extra-examples` (or `examples "..."`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from promptc import jsonl
from promptc.testing.suite import Report


def failure_rows(reports: list[Report], subject: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for rep in reports:
        for r in rep.results:
            if r.status != "failed":
                continue
            samples = [r.shrunk] if r.shrunk is not None else []
            samples += [s for s in r.samples if not s.passed and (r.kind == "case" or r.shrunk is None)]
            seen = set()
            for s in samples:
                key = json.dumps(s.input, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                rows.append({
                    "input": s.input, "output": s.output, "name": f"{r.kind} {r.name}",
                    "provenance": {"source": "promptc test", "task": rep.task, "subject": subject,
                                   "raw": s.raw, "failed": [f"{c.kind} {c.source or c.name}" for c in
                                                            s.failed_checks()], "corrected": False},
                })
    return rows


def save_failures(reports: list[Report], path: str | Path, subject: dict[str, Any]) -> int:
    rows = failure_rows(reports, subject)
    Path(path).write_text("".join(jsonl.line(r) for r in rows), encoding="utf-8")
    return len(rows)
