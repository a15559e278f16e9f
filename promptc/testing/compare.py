"""`promptc compare`: one suite, several subjects, side by side."""

from __future__ import annotations

import json

from promptc.testing.suite import Report


def compare(reports: list[Report], fmt: str = "text") -> str:
    names = [r.subject["name"] for r in reports]
    tests = []
    for r in reports:
        for t in r.results:
            if t.name not in tests:
                tests.append(t.name)

    def rate(r: Report, name: str) -> str:
        t = next((x for x in r.results if x.name == name), None)
        if t is None or t.status == "skipped":
            return "-"
        return f"{t.pass_rate:.0%}" + ("" if t.status == "passed" else " FAIL")

    if fmt == "json":
        return json.dumps({"subjects": [{**r.subject, "summary": {"passed": r.passed, "failed": r.failed},
                                         "usage": r.usage(),
                                         "tests": {t.name: {"status": t.status, "pass_rate": round(t.pass_rate, 4)}
                                                   for t in r.results}} for r in reports]}, indent=2)
    rows = [["test", *names]]
    rows += [[name, *(rate(r, name) for r in reports)] for name in tests]
    rows.append(["tests passed", *(f"{r.passed}/{len(r.results)}" for r in reports)])
    rows.append(["prompt tokens / request", *(f"{r.usage()['prompt_tokens_per_request']:.0f}" for r in reports)])
    rows.append(["latency / request", *(f"{r.usage()['latency_per_request_s'] * 1000:.0f} ms" for r in reports)])
    rows.append(["trainable parameters", *(f"{r.usage()['trainable_parameters']:,}" for r in reports)])
    rows.append(["model", *(r.subject.get("model") or "-" for r in reports)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if k == 0 or k == len(tests):
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
