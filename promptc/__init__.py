"""promptc: a compiler for declarative prompt programs (text prompts and PEFT-tuned artifacts).

The public API is re-exported here lazily, so that `python -m promptc check` (which needs only the
front end) does not pay for importing the API's layers at start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptc._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from promptc.api import Artifact, Program, Task, load, load_artifact, loads
    from promptc.errors import PromptcError

__all__ = ["Artifact", "Program", "Task", "load", "load_artifact", "loads", "PromptcError", "__version__"]

_LAZY = {"Artifact": "promptc.api", "load_artifact": "promptc.api", "Program": "promptc.api", "Task": "promptc.api",
         "load": "promptc.api", "loads": "promptc.api", "PromptcError": "promptc.errors"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'promptc' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
