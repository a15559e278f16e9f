"""Test stage: the rows and cells that the text and HTML forms of `promptc compare` share."""

from __future__ import annotations

from typing import Any


def rate(r: dict[str, Any] | None) -> str:
    if not r or not r["n"]:
        return "-"
    return f"{r['rate']:.1%} [{r['ci95'][0]:.0%}, {r['ci95'][1]:.0%}]"


def money(x: float | None, digits: int = 6) -> str:
    return "-" if x is None else f"${x:.{digits}f}"


def summary_rows(subs: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The rows under the per-test rates, shared by the text and HTML forms."""
    rows = [("tests passed", [f"{s['summary']['passed']}/{s['summary']['total']}" for s in subs]),
            ("cases passed (95% CI)", [rate(s["cases"]) for s in subs])]
    if any(s["summary"].get("cutoffs") for s in subs):  # outputs the budget cut off, apart from wrong answers
        rows.append(("outputs cut off", [str(s["summary"].get("cutoffs", 0)) for s in subs]))
    if any(s["robustness"] for s in subs):
        rows.append(("robustness (95% CI)", [rate(s["robustness"]) for s in subs]))
    for ds in sorted({d for s in subs for d in s["metrics"]}):
        rows.append((f"accuracy {ds}", [rate(accuracy(s["metrics"].get(ds))) for s in subs]))
    rows += [("prompt tokens / request", [f"{s['cost']['prompt_tokens_per_request']:.0f}" for s in subs]),
             ("completion tokens / request", [f"{s['cost']['completion_tokens_per_request']:.0f}" for s in subs]),
             ("latency / request", [f"{s['cost']['latency_per_request_s'] * 1000:.0f} ms" for s in subs]),
             ("cost / 1k requests", [money(s["cost"]["usd_per_1k_requests"], 4) for s in subs]),
             ("trainable parameters", [f"{s['trainable_parameters']:,}" for s in subs])]
    if any(s["training"] for s in subs):
        rows += [("training time", [secs((s["training"] or {}).get("seconds")) for s in subs]),
                 ("device", [str((s["training"] or {}).get("device") or "-") for s in subs]),
                 ("break-even (requests)", [break_even_cell(s["break_even"]) for s in subs])]
    rows.append(("model", [s["model"] or "-" for s in subs]))
    return rows


def accuracy(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if not m:
        return None
    if "classification" in m:
        return m["classification"]["accuracy"]
    if "fields" in m:
        return m["fields"]["all"]
    return m.get("exact_match")


def secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} s"


def break_even_cell(b: dict[str, Any] | None) -> str:
    if not b:
        return "-"
    return f"{b['requests']:,}" if b["requests"] is not None else "-"
