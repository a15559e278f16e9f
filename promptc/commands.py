"""CLI commands beyond `check`, registered here so cli.py stays small. Each imports its stage lazily."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommands that later stages provide."""
    return None
