"""The Python API: `promptc.load(path)` -> Program, whose tasks render, check, run and test.

    >>> import promptc
    >>> prog = promptc.load("programs/triage.prompt")
    >>> text = prog.task("triage").render({"ticket": {"subject": "Hi", "body": "..."}}, format="plain")

A thin face over the core: every method hands IR objects to the layer that does the work.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from promptc import ir
from promptc.compiler import FrontEndResult, compile_file, compile_text
from promptc.errors import DiagnosticError, UsageError


class Task:
    """One task of a loaded program."""

    def __init__(self, program: Program, task: ir.Task):
        self.program = program
        self.ir = task
        self._prompts: dict[Any, Any] = {}

    @property
    def name(self) -> str:
        return self.ir.name

    def text_target(self, target: str | None = None, **overrides: Any):
        """The compiled TextPrompt for a `target text` of this task (or a default one)."""
        from promptc.targets.text.prompt import text_prompt

        key = (target, tuple(sorted(overrides.items())))
        tp = self._prompts.get(key)
        if tp is None:
            tp = self._prompts[key] = text_prompt(self.program.ir, self.name, target, **overrides)
        return tp

    def render(self, inputs: dict[str, Any], target: str | None = None, format: str | None = None,
               tokenizer: str | None = None) -> str | list[dict[str, str]]:
        """Render the prompt for `inputs`: a string for plain and hf_chat, a message list for chat."""
        return self.text_target(target).render(inputs, format, tokenizer=tokenizer)

    def run(self, inputs: dict[str, Any] | list[dict[str, Any]], target: str | None = None,
            model: Any = None, *, artifact: str | Path | Artifact | None = None, cache: bool = True,
            **decoding: Any):
        """Run the task on a model (a spec such as "hf:DIR" or a backend object), or on an artifact (a
        directory or a loaded `Artifact`; a text artifact also needs `model`). Returns a
        `promptc.execution.Result` (or a list of them for a list of inputs): `.ok`, `.output`, `.error`."""
        from promptc.execution import open_cache, text_subject

        if artifact is not None:
            return self.load_artifact(artifact, model, **decoding).run(inputs, cache=cache)
        if model is None:
            raise UsageError("Task.run needs a model",
                             hint="a spec such as \"hf:./my-model\" or \"openai:gpt-4o-mini\", or a backend object")
        many = isinstance(inputs, list)
        batch: list[dict[str, Any]] = inputs if isinstance(inputs, list) else [inputs]
        subject = text_subject(self.program.ir, self.ir, target, model, **decoding)
        results = subject.run(batch, open_cache(cache))
        return results if many else results[0]

    def load_artifact(self, artifact: str | Path | Artifact, model: Any = None, **decoding: Any) -> Artifact:
        """Load an artifact of this task with every check `promptc run --artifact` makes: it refuses a
        different base model, a task whose dependencies changed, tampered files and pickled weights."""
        from promptc.execution import artifact_subject

        if isinstance(artifact, Artifact):
            return artifact
        return Artifact(self, Path(artifact), artifact_subject(artifact, self.program.ir, self.ir, model, **decoding))

    def inputs(self, *, max_text_len: int | None = None, max_list_len: int | None = None, **given: Any):
        """A hypothesis strategy for valid inputs of this task, over the whole declared domain: strings and
        lists up to their max_len, numbers to their bounds, every enum member, null for optionals, each
        bound drawn on purpose (docs/testing.md). Keyword arguments override whole inputs with strategies:
        `task.inputs(ticket=st.just({...}))`; `max_text_len`/`max_list_len` cap drawn sizes."""
        from promptc.schema import Limits, strategy

        return strategy(self.ir.input_type, {(k,): v for k, v in given.items()}, Limits(max_text_len, max_list_len))

    def boundary_inputs(self, *, max_text_len: int | None = None, max_list_len: int | None = None):
        """Strategies that together pin every declared bound, enum member and null of the inputs; drawing
        each once (as `promptc test` does before its other draws) tries every boundary."""
        from promptc.schema import Limits, domain

        return domain(self.ir.input_type, None, Limits(max_text_len, max_list_len)).sweep

    def test(self, target: str | None = None, model: Any = None, *, artifact: str | Path | Artifact | None = None,
             cache: bool = True, **options: Any):
        """Run this task's declared tests (like `promptc test`); returns a testing.suite.Report."""
        from promptc.execution import artifact_subject, open_cache, text_subject
        from promptc.testing.suite import run_suite

        if model is None and artifact is None:
            raise UsageError("Task.test needs a model for a text target (model=\"hf:...\"), or an artifact")
        suite_opts: dict[str, Any] = {k: options.pop(k) for k in ("repeat", "min_pass", "max_examples", "pattern",
                                                                  "judge_model", "teacher", "limits") if k in options}
        suite_opts["seed"] = options.get("seed", 0)  # the decoding seed also seeds the perturbations
        prog = self.program.ir
        if isinstance(artifact, Artifact):
            subject = artifact.subject
        else:
            subject = artifact_subject(artifact, prog, self.ir, model, **options) if artifact is not None \
                else text_subject(prog, self.ir, target, model, **options)
        return run_suite(prog, self.ir, subject, cache=open_cache(cache), **suite_opts)

    def check(self, inputs: dict[str, Any], output: Any) -> list[str]:
        """The task constraints (and output-schema rules) that `output` violates for `inputs`, each
        with an explanation such as "constraint 'short' failed: len(output.reply) = 512". Empty when
        the output is fine."""
        from promptc.expr import constraint_failures
        from promptc.schema import validate

        problems = [f"schema: {v.where('output')}: {v.message}" for v in validate(self.ir.output, output)]
        if problems:
            return problems
        return [f.message() for f in constraint_failures(self.ir.constraints, {**inputs, "output": output})]


class Artifact:
    """A loaded artifact (compiled text or tuned) of one task: `promptc.load_artifact(DIR, program)`."""

    def __init__(self, task: Task, directory: Path, subject: Any):
        self.task = task
        self.directory = directory
        self.subject = subject  # promptc.execution.Subject

    @property
    def manifest(self) -> dict[str, Any]:
        from promptc.artifacts import read_manifest

        return read_manifest(self.directory)

    def run(self, inputs: dict[str, Any] | list[dict[str, Any]], *, cache: bool = True):
        """Run the artifact on one input (a Result) or a list of them (a list of Results)."""
        from promptc.execution import open_cache

        many = isinstance(inputs, list)
        results = self.subject.run(inputs if many else [inputs], open_cache(cache))
        return results if many else results[0]

    def test(self, *, cache: bool = True, **options: Any):
        """Run the task's declared tests on this artifact; returns a testing.suite.Report."""
        return self.task.test(artifact=self, cache=cache, **options)

    def __repr__(self) -> str:
        return f"<promptc.Artifact {self.directory} of task {self.task.name!r}: {self.subject.model}>"


class Program:
    """A checked, lowered program. Build one with `promptc.load` or `promptc.loads`."""

    def __init__(self, result: FrontEndResult):
        if result.program is None:
            raise DiagnosticError(result.diagnostics)
        self.ir: ir.Program = result.program
        self.diagnostics = result.diagnostics
        self.tasks: dict[str, Task] = {n: Task(self, t) for n, t in self.ir.tasks.items()}

    @property
    def path(self) -> str:
        return self.ir.path

    def task(self, name: str | None = None) -> Task:
        return self.tasks[self.ir.task(name).name]

    def target(self, name: str) -> ir.Target:
        return self.ir.target(name)

    def compile(self, target: str, out: str | Path | None = None, *, explicit_shots=None,
                overrides: dict[str, Any] | None = None, extra_manifest: dict[str, Any] | None = None) -> Path:
        """Write a text target's artifact directory atomically; return its path."""
        from promptc.targets.text.artifact import write_text_artifact
        from promptc.targets.text.prompt import compile_text_target

        t = self.ir.target(target, kind="text")
        dest = Path(out) if out is not None else Path("out") / target
        if overrides:
            t = replace(t, options={**t.options, **overrides})
        prompt = compile_text_target(self.ir, t.task, t.options, explicit_shots) \
            if explicit_shots is not None or overrides else None
        return write_text_artifact(self.ir, t, dest, prompt=prompt, extra=extra_manifest)


def load_artifact(directory: str | Path, program: Program | str | Path, task: str | None = None,
                  model: Any = None, **decoding: Any) -> Artifact:
    """Load an artifact directory for `program` (a Program or a .prompt path), with the CLI's checks:
    a different base model, a task whose dependencies changed, tampered or pickled files are refused.
    The task is the one the artifact's manifest names unless `task` is given; a text artifact needs
    `model` to run on."""
    from promptc.artifacts import read_manifest

    prog = program if isinstance(program, Program) else load(program)
    name = task or (read_manifest(directory).get("task") or {}).get("name")
    return prog.task(name).load_artifact(directory, model, **decoding)


def load(path: str | Path) -> Program:
    """Load and check a .prompt file; raise DiagnosticError (a PromptcError) if it has errors."""
    return Program(compile_file(path))


def loads(text: str, path: str = "<string>") -> Program:
    """Load a program from a string (examples files resolve relative to the current directory)."""
    return Program(compile_text(text, path))
