"""The pytest plugin: `pytest programs/` collects every case and property of each .prompt file.

Choose what the tests run against with `--promptc-model SPEC` and `--promptc-target NAME`, or
`--promptc-artifact DIR`, or the same keys (`model`, `target`, `artifact`, `max_examples`) under
`[tool.promptc]` in pyproject.toml. Each task's suite runs once, batched, on its first item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from promptc import ir


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("promptc", "promptc .prompt test blocks")
    group.addoption("--promptc-model", metavar="SPEC", help="model for text targets (hf:DIR, openai:M@URL, tiny-causal)")
    group.addoption("--promptc-target", metavar="NAME", help="text target to test (default: the task's first)")
    group.addoption("--promptc-artifact", metavar="DIR", help="artifact to test instead of a text target")
    group.addoption("--promptc-max-examples", type=int, metavar="N", help="inputs per property")


def _settings(config: pytest.Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pyproject = Path(str(config.rootpath)) / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            out.update(tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("promptc", {}))
        except tomllib.TOMLDecodeError:
            pass
    for key in ("model", "target", "artifact", "max_examples"):
        value = config.getoption(f"--promptc-{key.replace('_', '-')}")
        if value is not None:
            out[key] = value
    return out


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.suffix == ".prompt":
        return PromptFile.from_parent(parent, path=file_path)
    return None


class PromptFile(pytest.File):
    """A .prompt file: one TaskTests collector per task with tests, so node IDs read
    `file.prompt::task::case NAME`, and re-run as printed (pytest splits node IDs on `::`)."""

    def collect(self):
        from promptc.compiler import compile_file

        result = compile_file(self.path)
        if not result.ok or result.program is None:
            yield CheckItem.from_parent(self, name="promptc check", diagnostics=result.diagnostics)
            return
        self.program: ir.Program = result.program
        self._reports: dict[str, Any] = {}
        for task in self.program.tasks:
            suite = self.program.tests_for(task)
            if suite.cases or suite.properties or suite.datasets:
                yield TaskTests.from_parent(self, name=task)

    def report_for(self, task: str):
        if task not in self._reports:
            self._reports[task] = self._run(task)
        return self._reports[task]

    def _run(self, task_name: str):
        from promptc.execution import artifact_subject, open_cache, text_subject
        from promptc.testing.suite import run_suite

        cfg = _settings(self.config)
        task = self.program.tasks[task_name]
        if cfg.get("artifact"):
            subject = artifact_subject(cfg["artifact"], self.program, task, cfg.get("model"))
        else:
            if not cfg.get("model"):
                pytest.skip("no model: pass --promptc-model SPEC (or set model under [tool.promptc])")
            target = cfg.get("target")
            if target is None:
                target = next((t.name for t in self.program.targets.values()
                               if t.kind == "text" and t.task == task_name), None)
            subject = text_subject(self.program, task, target, cfg["model"])
        return run_suite(self.program, task, subject, max_examples=cfg.get("max_examples"), cache=open_cache(True))


def item_name(kind: str, name: str) -> str:
    """A test's item name: `case NAME`; a `::` inside NAME becomes `:` so the node ID splits cleanly."""
    return f"{kind} {name}".replace("::", ":")


class TaskTests(pytest.Collector):
    """The declared tests of one task: a case, a property or a dataset per item."""

    @property
    def file(self) -> PromptFile:
        return cast(PromptFile, self.parent)

    def collect(self):
        suite = self.file.program.tests_for(self.name)
        for c in suite.cases:
            yield PromptItem.from_parent(self, name=item_name("case", c.name), task=self.name, test=c.name,
                                         origin=c.origin)
        for d in suite.datasets:
            yield PromptItem.from_parent(self, name=item_name("cases", d.name), task=self.name, test=d.name,
                                         origin=d.origin)
        for p in suite.properties:
            yield PromptItem.from_parent(self, name=item_name("property", p.name), task=self.name, test=p.name,
                                         origin=p.origin)


class PromptTestFailure(AssertionError):
    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


class PromptItem(pytest.Item):
    def __init__(self, *, task: str, test: str, origin: str, **kw):
        super().__init__(**kw)
        self.task, self.test, self.origin = task, test, origin

    def runtest(self) -> None:
        from promptc.testing.report import _result_lines

        report = cast(TaskTests, self.parent).file.report_for(self.task)
        result = next(r for r in report.results if r.name == self.test)
        if result.status == "skipped":
            pytest.skip(result.reason)
        if result.status == "failed":
            raise PromptTestFailure(_result_lines(result, False))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, PromptTestFailure):
            return f"{self.origin}: {self.name}\n" + "\n".join(excinfo.value.lines)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        line = int(self.origin.rsplit(":", 2)[-2]) - 1 if self.origin.count(":") >= 2 else 0
        return self.path, line, self.name


class CheckItem(pytest.Item):
    def __init__(self, *, diagnostics, **kw):
        super().__init__(**kw)
        self.diagnostics = diagnostics

    def runtest(self) -> None:
        from promptc.diagnostics import render_all

        raise PromptTestFailure([render_all([d for d in self.diagnostics])])

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, PromptTestFailure):
            return "\n".join(excinfo.value.lines)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, "promptc check"
