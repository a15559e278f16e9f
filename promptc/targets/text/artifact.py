"""The text target's artifact, written and read here: prompt.jinja, messages.json, output and input JSON
Schemas, and manifest.json. A compiled artifact renders with any jinja2 engine; `TextArtifact` renders
it for promptc's own runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc import ir
from promptc._version import __version__
from promptc.artifacts import atomic_dir, file_hashes, write_json
from promptc.errors import UsageError
from promptc.models.base import Request
from promptc.schema import json_schema
from promptc.targets.model_card import write_model_card
from promptc.targets.text.prompt import CompiledTemplate, TextPrompt, check_inputs, text_prompt

KIND = "text"


def write_text_artifact(program: ir.Program, target: ir.Target, dest: Path, prompt: TextPrompt | None = None,
                        extra: dict | None = None) -> Path:
    """Write `target`'s artifact to `dest` atomically (`prompt` overrides the target's own TextPrompt)."""
    task = program.tasks[target.task]
    tp = prompt if prompt is not None else text_prompt(program, target.task, target.name)
    with atomic_dir(dest) as tmp:
        (tmp / "prompt.jinja").write_text(tp.artifact_template(), encoding="utf-8")
        msgs = tp.message_sources() if not tp.dynamic_shots else tp.message_sources([])
        write_json(tmp / "messages.json", msgs)
        write_json(tmp / "output.schema.json", json_schema(task.output))
        write_json(tmp / "input.schema.json", json_schema(task.input_type))
        variables = [p.name for p in task.params] + (["shots"] if tp.dynamic_shots else [])
        manifest = {
            "promptc": __version__,
            "kind": KIND,
            "program": {"name": program.name, "version": program.version, "hash": program.hash},
            "task": {"name": task.name, "hash": task.hash},
            "target": {"name": target.name, "options": tp.options},
            "variables": variables,
            "delimited": tp.tags,
            "shots": [{"origin": s.example.origin.rsplit("/", 1)[-1], "name": s.example.name}
                      for s in tp.shots],
            "shot_selection": tp.options.get("select"),
            "files": {},
            **(extra or {}),
        }
        write_model_card(tmp, manifest)  # README.md, covered by the file hashes
        manifest["files"] = file_hashes(tmp)
        write_json(tmp / "manifest.json", manifest)
    return dest


@dataclass
class TextArtifact:
    """A compiled text artifact, loaded: its messages.json templates rendered with the inputs."""

    directory: Path
    manifest: dict[str, Any]
    task: ir.Task

    @property
    def max_new_tokens(self) -> int:
        return int(self.manifest["target"]["options"].get("max_new_tokens", 256))

    def requests(self, inputs: list[dict[str, Any]]) -> list[Request]:
        from promptc.schema import conform

        if "shots" in self.manifest.get("variables", []):
            raise UsageError("this artifact selects shots per input (select = \"similar\"); run it with "
                             "--target instead")
        msgs = json.loads((self.directory / "messages.json").read_text(encoding="utf-8"))
        plain = CompiledTemplate((self.directory / "prompt.jinja").read_text(encoding="utf-8"))
        tmpls = [(m["role"], CompiledTemplate(m["content"])) for m in msgs]
        out = []
        for i in inputs:
            check_inputs(self.task, i)
            i = conform(self.task.input_type, i)
            out.append(Request([{"role": r, "content": t.render(i)} for r, t in tmpls], plain.render(i),
                               self.task.output))
        return out


def changed_parts(directory: Path, manifest: dict[str, Any], program: ir.Program, task: ir.Task) -> list[str]:
    """What a text artifact of an edited task would show differently now: its `prompt` (prompt.jinja,
    compiled again with the artifact's own options), `input schema`, `output schema`. Empty when none
    differs or it cannot tell (an optimized artifact's fixed shots are not in the program)."""
    from promptc.errors import PromptcError
    from promptc.targets.text.prompt import compile_text_target

    d = Path(directory)
    out = []
    for name, now in (("input schema", json_schema(task.input_type)), ("output schema", json_schema(task.output))):
        path = d / f"{name.split()[0]}.schema.json"
        if path.is_file() and json.loads(path.read_text(encoding="utf-8")) != now:
            out.append(name)
    options = (manifest.get("target") or {}).get("options")
    if "optimized" not in manifest and isinstance(options, dict) and (d / "prompt.jinja").is_file():
        try:
            now_prompt = compile_text_target(program, task.name, options).artifact_template()
        except PromptcError:  # the options no longer apply (a variant was removed): it cannot tell
            return out
        if (d / "prompt.jinja").read_text(encoding="utf-8") != now_prompt:
            out.insert(0, "prompt")
    return out


def load_text_artifact(directory: Path, manifest: dict[str, Any], program: ir.Program,
                       task: ir.Task) -> TextArtifact:
    """A verified text artifact of `task` (execution.load_artifact has checked its files and task)."""
    return TextArtifact(directory, manifest, task)
