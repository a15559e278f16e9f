"""promptc: a compiler for declarative prompt programs (text prompts and PEFT-tuned artifacts)."""

from __future__ import annotations

__version__ = "0.1.0"

from promptc.api import Program, Task, load, loads  # noqa: E402
from promptc.diagnostics import PromptcError  # noqa: E402

__all__ = ["Program", "Task", "load", "loads", "PromptcError", "__version__"]
