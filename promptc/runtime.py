"""Loading artifacts for `run` and `test`: compiled text artifacts now, tuned artifacts once built."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc.artifacts import read_manifest, verify_files
from promptc.diagnostics import PromptcError


@dataclass
class TextArtifact:
    """A compiled text artifact: its messages.json templates rendered with the inputs."""

    directory: Path
    manifest: dict[str, Any]
    task: Any  # api.Task

    @property
    def max_new_tokens(self) -> int:
        return int(self.manifest["target"]["options"].get("max_new_tokens", 256))

    def requests(self, inputs: list[dict[str, Any]]):
        import json

        from promptc.backends.base import Request
        from promptc.templating import environment

        if "shots" in self.manifest.get("variables", []):
            raise PromptcError([], "this artifact selects shots per input (select = \"similar\"); run it "
                                   "with --target instead")
        msgs = json.loads((self.directory / "messages.json").read_text(encoding="utf-8"))
        plain = environment().from_string((self.directory / "prompt.jinja").read_text(encoding="utf-8"))
        tmpls = [(m["role"], environment().from_string(m["content"])) for m in msgs]
        tp = self.task.text_target()
        out = []
        for i in inputs:
            tp.check_inputs(i)
            out.append(Request([{"role": r, "content": t.render(i)} for r, t in tmpls], plain.render(i),
                               self.task.ir.output))
        return out

    def backend(self, args: argparse.Namespace):
        if not getattr(args, "model", None):
            raise PromptcError([], "a text artifact needs --model")
        from promptc.commands import make_backend

        return make_backend(args.model, args)


def load_artifact(directory: str | Path, program, task_name: str):
    """Load an artifact for a program's task, refusing one built from a different task."""
    d = Path(directory)
    m = read_manifest(d)
    verify_files(d, m)
    task = program.task(task_name)
    if m.get("task", {}).get("name") != task.name:
        raise PromptcError([], f"artifact {d} was built for task '{m.get('task', {}).get('name')}', not "
                               f"'{task.name}'")
    if m.get("task", {}).get("hash") != task.ir.hash:
        raise PromptcError([], f"artifact {d} was built from a different version of task '{task.name}' "
                               "(the task hash differs); rebuild it")
    if m.get("kind") == "text":
        return TextArtifact(d, m, task)
    if m.get("kind") == "tune":
        from promptc.tune.artifact import load_tuned

        return load_tuned(d, m, program, task)
    raise PromptcError([], f"artifact {d} has unknown kind {m.get('kind')!r}")
