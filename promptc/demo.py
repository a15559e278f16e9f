"""`make demo`: check every program in programs/ and show what the front end produces."""

from __future__ import annotations

import sys
from pathlib import Path

from promptc.cli import main as cli


def main() -> int:
    root = Path(__file__).resolve().parent.parent / "programs"
    files = sorted(str(p) for p in root.glob("*.prompt"))
    print("== promptc check programs/*.prompt")
    code = cli(["check", *files])
    if code != 0:
        return code
    broken = Path(__file__).resolve().parent.parent / "tests" / "cases" / "errors" / "template_typo.prompt"
    if broken.exists():
        sys.stdout.flush()
        print(f"\n== promptc check {broken.name}  (a deliberate mistake)")
        sys.stdout.flush()
        cli(["check", str(broken)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
