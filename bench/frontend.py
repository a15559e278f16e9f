"""Front-end speed: parse + check of a generated ~2,000-line program.

Prints the time of each stage and the ratio against the bare Lark parse (the baseline measured in
the same run). Target: parse + check under 0.5 s on a 2-core CI machine.
"""

from __future__ import annotations

import statistics
import time

from promptc.check import check
from promptc.diagnostics import Diagnostics
from promptc.parser import _lark, parse_source
from promptc.source import SourceFile

UNIT = '''
enum Tag{i} {{ billing, bug, account, other }}

type Ticket{i} {{
  subject: str [max_len=120]
  body: str [min_len=1, max_len=2000]
  priority: int [ge=1, le=5]
}}

type Triage{i} {{
  tag: Tag{i}
  reply: str [max_len=400]
  labels: list[str [max_len=20]] [max_len=5]
}}

task triage{i}(ticket: Ticket{i}) -> Triage{i} {{
  system """
  You are the support triage assistant number {i}. Be concise and polite.
  """
  prompt """
  Classify the ticket and draft a first reply.
  Subject: {{{{ ticket.subject }}}}
  Body: {{{{ ticket.body }}}}
  {{% if ticket.priority > 3 %}}This is urgent.{{% endif %}}
  """
  example "double charge" {{
    input  {{ ticket: {{ subject: "Charged twice", body: "My card was charged twice for March.", priority: 2 }} }}
    output {{ tag: billing, reply: "Sorry about the double charge. We have refunded it.", labels: ["refund"] }}
  }}
  example "crash" {{
    input  {{ ticket: {{ subject: "Crash", body: "The app crashes on start.", priority: 4 }} }}
    output {{ tag: bug, reply: "Thanks, we are on it.", labels: [] }}
  }}
  constraint no_secrets "never include API keys": not (output.reply matches /sk-[A-Za-z0-9]{{16,}}/)
  constraint refunds "refund requests are billing": output.tag == billing when ticket.body matches /refund|charged/i
  constraint short: len(output.reply) <= 400 and len(output.labels) <= 5
}}

test triage{i} {{
  case "login failure" {{
    input {{ ticket: {{ subject: "Can't log in", body: "The password reset link never arrives.", priority: 3 }} }}
    expect output.tag == account
  }}
  property "short replies" {{
    given ticket.subject = text(max_len=60)
    given ticket.priority = ints(1, 5)
    check len(output.reply) <= 400
  }}
}}

target text triage{i}_chat for triage{i} {{ format = "chat", shots = 2 }}
target tune triage{i}_soft for triage{i} {{ method = "prompt_tuning", virtual_tokens = 16, base = "tiny-causal" }}
'''


def program(lines: int) -> str:
    parts, n, i = [], 0, 0
    while n < lines:
        chunk = UNIT.format(i=i)
        parts.append(chunk)
        n += chunk.count("\n")
        i += 1
    return "".join(parts)


def best(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    text = program(2000)
    src = SourceFile("bench.prompt", text)
    lark = _lark()
    lark.parse(text)  # warm: grammar construction is a one-time cost, reported separately
    t0 = time.perf_counter()
    _lark.cache_clear()
    _lark()
    build = time.perf_counter() - t0

    def front():
        d = Diagnostics()
        tree, syn = parse_source(src)
        assert tree is not None and not syn
        check(tree, src, d)
        assert not d.has_errors, d.sorted()[:3]

    raw_min, raw_med = best(lambda: lark.parse(text))
    ast_min, ast_med = best(lambda: parse_source(src))
    all_min, all_med = best(front)
    print(f"program: {text.count(chr(10))} lines, {len(text)} chars")
    print(f"grammar construction (once per process): {build * 1000:.1f} ms")
    print(f"baseline lark.parse:       best {raw_min * 1000:7.1f} ms   median {raw_med * 1000:7.1f} ms")
    print(f"parse to AST:              best {ast_min * 1000:7.1f} ms   median {ast_med * 1000:7.1f} ms")
    print(f"parse + check:             best {all_min * 1000:7.1f} ms   median {all_med * 1000:7.1f} ms")
    print(f"ratio parse+check / baseline parse: {all_med / raw_med:.2f}x")
    print(f"target: parse + check < 500 ms -> {'OK' if all_med < 0.5 else 'OVER'}")


if __name__ == "__main__":
    main()
