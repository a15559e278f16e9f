"""promptc: a compiler for declarative prompt programs (text prompts and PEFT-tuned artifacts)."""

from __future__ import annotations

from promptc._version import __version__
from promptc.api import Program, Task, load, loads
from promptc.errors import PromptcError

__all__ = ["Program", "Task", "load", "loads", "PromptcError", "__version__"]
