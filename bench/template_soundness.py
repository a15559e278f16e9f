"""Template soundness (issue 23 item 1): of the generated templates over typed inputs that `check` accepts,
how many fail to render a schema-valid input, through promptc or as a compiled prompt.jinja under plain
jinja2. `--without-types` checks as promptc did before E315 (names, fields and the safe subset only), to
show what the type rules refuse.

    python bench/template_soundness.py [--templates N] [--inputs K] [--seed S] [--without-types]

The templates and the adversarial inputs are the property test's (tests/core/test_template_soundness.py).
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", type=int, default=1000)
    ap.add_argument("--inputs", type=int, default=8, help="inputs rendered per accepted template")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--without-types", action="store_true")
    args = ap.parse_args()

    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    import promptc.check.templates as checker
    from tests.core.test_template_soundness import accepted, render_both, templates, values

    if args.without_types:
        checker._check_types = lambda *a, **k: None  # type: ignore[assignment]
    stats: collections.Counter = collections.Counter()
    errors: collections.Counter = collections.Counter()
    shown: list[str] = []

    @seed(args.seed)
    @settings(max_examples=args.templates, deadline=None, database=None, phases=["generate"],
              suppress_health_check=list(HealthCheck))
    @given(templates(), st.data())
    def run(template: str, data) -> None:
        stats["templates"] += 1
        prog = accepted(template)
        if prog is None:
            return
        stats["accepted"] += 1
        it = prog.task("t").ir.input_type
        for _ in range(args.inputs):
            try:
                render_both(prog, data.draw(values(it)))
            except Exception as e:  # noqa: BLE001 - counting every failure is the point
                stats["failed"] += 1
                errors[str(e).split("\n")[1].split(":")[0].strip() if "\n" in str(e) else type(e).__name__] += 1
                if len(shown) < 5:
                    shown.append(template.replace("\n", " ")[:140])
                return

    random.seed(args.seed)
    t0 = time.perf_counter()
    run()
    took = time.perf_counter() - t0
    mode = "without type rules" if args.without_types else "with type rules (E315)"
    print(f"{mode}: {stats['templates']} templates, {stats['accepted']} accepted, {stats['failed']} of them "
          f"failed to render a valid input ({took:.0f} s)")
    for k, v in errors.most_common():
        print(f"  {v:5d}  {k}")
    for s in shown:
        print("  e.g.", s)


if __name__ == "__main__":
    main()
