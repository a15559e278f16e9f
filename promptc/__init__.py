"""promptc: a compiler for declarative prompt programs (text prompts and PEFT-tuned artifacts)."""

from __future__ import annotations

__version__ = "0.1.0"
