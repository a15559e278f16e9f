"""The Python API: `promptc.load(path)` -> Program, whose tasks render, check and (with a backend) run.

    >>> import promptc
    >>> prog = promptc.load("programs/triage.prompt")
    >>> text = prog.task("triage").render({"ticket": {"subject": "Hi", "body": "..."}}, format="plain")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptc import ir
from promptc.compiler import FrontEndResult, compile_file, compile_text
from promptc.diagnostics import PromptcError


class Task:
    """One task of a loaded program."""

    def __init__(self, program: Program, task: ir.Task):
        self.program = program
        self.ir = task
        self._prompts: dict[tuple, Any] = {}

    @property
    def name(self) -> str:
        return self.ir.name

    def text_target(self, target: str | None = None, **overrides: Any):
        """The compiled TextPrompt for a `target text` of this task (or a default one)."""
        from promptc.targets import with_defaults
        from promptc.targets.text import compile_text_target

        key = (target, tuple(sorted(overrides.items()))) if overrides else target
        tp = self._prompts.get(key)
        if tp is None:
            if target is None:
                opts = with_defaults("text", {})
            else:
                t = self.program.target(target)
                if t.kind != "text":
                    raise PromptcError([], f"target '{target}' is a {t.kind} target, not a text target")
                if t.task != self.name:
                    raise PromptcError([], f"target '{target}' is for task '{t.task}', not '{self.name}'")
                opts = dict(t.options)
            opts.update(overrides)
            tp = self._prompts[key] = compile_text_target(self.program.ir, self.name, opts)
        return tp

    def render(self, inputs: dict[str, Any], target: str | None = None, format: str | None = None,
               tokenizer: str | None = None) -> str | list[dict[str, str]]:
        """Render the prompt for `inputs`: a string for plain and hf_chat, a message list for chat."""
        return self.text_target(target).render(inputs, format, tokenizer=tokenizer)

    def run(self, inputs: dict[str, Any] | list[dict[str, Any]], target: str | None = None,
            model: Any = None, *, cache: bool = True, **decoding: Any):
        """Run the task on a model (a spec such as "hf:DIR" or a backend object). Returns a
        `promptc.runner.Result` (or a list of them for a list of inputs): `.ok`, `.output`, `.error`."""
        from promptc.backends import Decoding, load_backend
        from promptc.runner import open_cache, run_requests, text_requests

        if model is None:
            raise PromptcError([], "Task.run needs a model: a spec such as \"hf:./my-model\" or "
                                   "\"openai:gpt-4o-mini\", or a backend object")
        many = isinstance(inputs, list)
        batch = inputs if many else [inputs]
        prompt = self.text_target(target)
        backend = load_backend(model) if isinstance(model, str) else model
        dec = Decoding(**{"max_new_tokens": prompt.options.get("max_new_tokens", 256), **decoding})
        results = run_requests(backend, text_requests(prompt, batch), batch, dec, open_cache(cache))
        return results if many else results[0]

    def inputs(self, **given: Any):
        """A hypothesis strategy for valid inputs of this task; field constraints shape it. Keyword
        arguments override whole inputs with strategies: `task.inputs(ticket=st.just({...}))`."""
        from promptc.schema import strategy

        return strategy(self.ir.input_type, {(k,): v for k, v in given.items()})

    def test(self, target: str | None = None, model: Any = None, *, artifact: str | None = None,
             cache: bool = True, **options: Any):
        """Run this task's declared tests (like `promptc test`); returns a testing.runner.Report."""
        from promptc.runner import open_cache
        from promptc.runtime import artifact_subject, text_subject
        from promptc.testing.runner import run_suite

        if model is None and artifact is None:
            raise PromptcError([], "Task.test needs a model for a text target (model=\"hf:...\"), or an artifact")
        suite_opts = {k: options.pop(k) for k in ("repeat", "min_pass", "max_examples", "pattern") if k in options}
        subject = artifact_subject(artifact, self.program, self.name, model if isinstance(model, str) else None,
                                   **options) if artifact else text_subject(self, target, model, **options)
        return run_suite(self, subject, cache=open_cache(cache), **suite_opts)

    def check(self, inputs: dict[str, Any], output: Any) -> list[str]:
        """The task constraints (and output-schema rules) that `output` violates for `inputs`, each
        with an explanation such as "constraint 'short' failed: len(output.reply) = 512". Empty when
        the output is fine."""
        from promptc.expr import evaluate, explain
        from promptc.schema import validate

        problems = [f"schema: {v.where('output')}: {v.message}" for v in validate(self.ir.output, output)]
        if problems:
            return problems
        env = {**inputs, "output": output}
        for c in self.ir.constraints:
            if not evaluate(c.expr, env):
                why = "; ".join(explain(c.expr, env))
                desc = f" ({c.description})" if c.description else ""
                problems.append(f"constraint '{c.name}'{desc} failed: {c.source}" + (f" -- {why}" if why else ""))
        return problems


class Program:
    """A checked, lowered program. Build one with `promptc.load` or `promptc.loads`."""

    def __init__(self, result: FrontEndResult):
        if result.program is None:
            raise PromptcError(result.diagnostics)
        self.ir: ir.Program = result.program
        self.diagnostics = result.diagnostics
        self.tasks: dict[str, Task] = {n: Task(self, t) for n, t in self.ir.tasks.items()}

    @property
    def path(self) -> str:
        return self.ir.path

    def task(self, name: str | None = None) -> Task:
        if name is None:
            if len(self.tasks) == 1:
                return next(iter(self.tasks.values()))
            raise PromptcError([], f"the program has {len(self.tasks)} tasks; name one of: {', '.join(self.tasks)}")
        if name not in self.tasks:
            from promptc.diagnostics import closest

            near = closest(name, self.tasks)
            raise PromptcError([], f"no task '{name}'" + (f"; did you mean '{near}'?" if near else
                                                           f" (tasks: {', '.join(self.tasks)})"))
        return self.tasks[name]

    def target(self, name: str) -> ir.Target:
        if name not in self.ir.targets:
            from promptc.diagnostics import closest

            near = closest(name, self.ir.targets)
            raise PromptcError([], f"no target '{name}'" + (f"; did you mean '{near}'?" if near else
                                                             f" (targets: {', '.join(self.ir.targets) or 'none'})"))
        return self.ir.targets[name]

    def compile(self, target: str, out: str | Path | None = None, *, explicit_shots=None,
                overrides: dict[str, Any] | None = None, extra_manifest: dict[str, Any] | None = None) -> Path:
        """Write a text target's artifact directory atomically; return its path."""
        from dataclasses import replace

        from promptc.targets.text import compile_text_target
        from promptc.targets.text_artifact import write_text_artifact

        t = self.target(target)
        if t.kind != "text":
            raise PromptcError([], f"target '{target}' is a tune target: build it with `promptc tune`")
        dest = Path(out) if out is not None else Path("out") / target
        if overrides:
            t = replace(t, options={**t.options, **{k: v for k, v in overrides.items()}})
        prompt = compile_text_target(self.ir, t.task, t.options, explicit_shots) \
            if explicit_shots is not None or overrides else None
        return write_text_artifact(self, t, dest, prompt=prompt, extra=extra_manifest)


def load(path: str | Path) -> Program:
    """Load and check a .prompt file; raise PromptcError (with diagnostics) if it has errors."""
    return Program(compile_file(path))


def loads(text: str, path: str = "<string>") -> Program:
    """Load a program from a string (examples files resolve relative to the current directory)."""
    return Program(compile_text(text, path))
