"""`make demo`: the hybrid workflow on the embedded models, in under five minutes on two CPU cores.

1. check every program;
2. tune `route_soft` (prompt tuning on the real pretrained MiniLM-L6) on programs/data/route.jsonl;
3. run the route test suite on the artifact;
4. compare it with the hand-written text target `route_text`, run on `tiny-causal`.

tiny-causal has random weights: it shows the text path working end to end, not how well a prompt does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from promptc.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent


def step(title: str, argv: list[str]) -> int:
    sys.stdout.flush()
    print(f"\n== promptc {' '.join(argv)}\n   ({title})", flush=True)
    t0 = time.perf_counter()
    code = cli(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"   exit {code} in {time.perf_counter() - t0:.1f} s", flush=True)
    return code


def main() -> int:
    programs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "programs").glob("*.prompt"))
    route = "programs/route.prompt"
    import os

    os.chdir(ROOT)
    if step("check every program", ["check", *programs]) != 0:
        return 1
    if step("train a soft prompt on the real MiniLM-L6, gated by the tests",
            ["tune", route, "--target", "route_soft", "-o", "out/route_soft"]) != 0:
        return 1
    if step("the same tests, on the artifact", ["test", route, "--artifact", "out/route_soft"]) != 0:
        return 1
    step("side by side: the hand-written prompt (on the random tiny-causal) and the tuned artifact",
         ["compare", route, "route_text", "out/route_soft", "--model", "tiny-causal", "--max-new-tokens", "8"])
    print("\nThe artifact is in out/route_soft (manifest.json says what it is and how it was made).")
    print("Run it: promptc run programs/route.prompt --artifact out/route_soft "
          "--input '{\"ticket\": {\"subject\": \"Charged twice\", \"body\": \"Please refund one.\"}}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
