"""json-repair against the existing extractor (promptc.outputs.extract_json) on near-JSON replies of
the kind servers without structured outputs send. Prints how many each recovers to the intended value,
and the time per reply, in one run.

    .venv/bin/python bench/repair.py
"""

from __future__ import annotations

import json
import time

from promptc.outputs import extract_json

WANT = {"tag": "bug", "reply": "on it", "n": 2, "ok": True}
CASES = [
    '{"tag": "bug", "reply": "on it", "n": 2, "ok": true}',
    '```json\n{"tag": "bug", "reply": "on it", "n": 2, "ok": true}\n```',
    'Sure! {"tag": "bug", "reply": "on it", "n": 2, "ok": true} Hope that helps.',
    '{"tag": "bug", "reply": "on it", "n": 2, "ok": true,}',
    "{'tag': 'bug', 'reply': 'on it', 'n': 2, 'ok': true}",
    '{tag: "bug", reply: "on it", n: 2, ok: true}',
    '{"tag": "bug", "reply": "on it", "n": 2, "ok": True}',
    '{"tag": "bug", // the queue\n "reply": "on it", "n": 2, "ok": true}',
    '{"tag": "bug" "reply": "on it", "n": 2, "ok": true}',
    '{"tag": "bug", "reply": "on it", "n": 2, "ok": true',
    "Here you go:\n```\n{'tag': 'bug', 'reply': 'on it', 'n': 2, 'ok': true,}\n```",
    '{"tag": \'bug\', "reply": "on it", "n": 2, "ok": true}',
    '{"tag": "bug",\n\n "reply": "on it",\n "n": 2,\n "ok": true,\n}',
    '{“tag”: “bug”, “reply”: “on it”, “n”: 2, “ok”: true}',
    '{"tag": "bug", "reply": "on it", "n": 2, "ok": true}}',
    'json\n{"tag":"bug","reply":"on it","n":2,"ok":true,}',
]


def existing(text: str):
    return extract_json(text)


def with_repair(text: str):
    import json_repair

    try:
        return extract_json(text)
    except ValueError:
        return json_repair.loads(text)


def score(fn) -> tuple[int, float]:
    good = 0
    t0 = time.perf_counter()
    for _ in range(20):
        good = 0
        for c in CASES:
            try:
                good += fn(c) == WANT
            except ValueError:
                pass
    return good, (time.perf_counter() - t0) / (20 * len(CASES)) * 1e6


def main() -> None:
    a, ta = score(existing)
    b, tb = score(with_repair)
    print(f"{len(CASES)} near-JSON replies; intended value recovered:")
    print(f"  existing extractor       {a:2d}/{len(CASES)}  {ta:7.1f} us/reply")
    print(f"  extractor + json-repair  {b:2d}/{len(CASES)}  {tb:7.1f} us/reply")
    print(json.dumps({"existing": a, "json_repair": b, "cases": len(CASES)}))


if __name__ == "__main__":
    main()
