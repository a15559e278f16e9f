"""The one jinja2 environment promptc renders with: sandboxed, strict about undefined names."""

from __future__ import annotations

import functools

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment


@functools.lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    """SandboxedEnvironment + StrictUndefined; no autoescape (prompts are not HTML)."""
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                                trim_blocks=True, lstrip_blocks=True)
