"""The text target's artifact: prompt.jinja, messages.json, output/input JSON Schemas, manifest.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from promptc import __version__, ir
from promptc.artifacts import atomic_dir, file_hashes, write_json
from promptc.schema import json_schema

if TYPE_CHECKING:  # pragma: no cover
    from promptc.api import Program


def write_text_artifact(program: Program, target: ir.Target, dest: Path, prompt=None,
                        extra: dict | None = None) -> Path:
    task = program.task(target.task)
    tp = prompt if prompt is not None else task.text_target(target.name)
    with atomic_dir(dest) as tmp:
        (tmp / "prompt.jinja").write_text(tp.artifact_template(), encoding="utf-8")
        msgs = tp.message_sources() if not tp.dynamic_shots else tp.message_sources([])
        write_json(tmp / "messages.json", msgs)
        write_json(tmp / "output.schema.json", json_schema(task.ir.output))
        write_json(tmp / "input.schema.json", json_schema(task.ir.input_type))
        variables = [p.name for p in task.ir.params] + (["shots"] if tp.dynamic_shots else [])
        manifest = {
            "promptc": __version__,
            "kind": "text",
            "program": {"name": program.ir.name, "version": program.ir.version, "hash": program.ir.hash},
            "task": {"name": task.name, "hash": task.ir.hash},
            "target": {"name": target.name, "options": tp.options},
            "variables": variables,
            "delimited": tp.tags,
            "shots": [{"origin": s.example.origin.rsplit("/", 1)[-1], "name": s.example.name}
                      for s in tp.shots],
            "shot_selection": tp.options.get("select"),
            "files": file_hashes(tmp),
            **(extra or {}),
        }
        write_json(tmp / "manifest.json", manifest)
    return dest


def load_text_artifact(directory: str | Path) -> dict:
    """Read a text artifact back (verifying its file hashes)."""
    from promptc.artifacts import read_manifest, verify_files

    d = Path(directory)
    m = read_manifest(d)
    verify_files(d, m)
    return {"manifest": m, "template": (d / "prompt.jinja").read_text(encoding="utf-8"),
            "messages": json.loads((d / "messages.json").read_text(encoding="utf-8"))}
