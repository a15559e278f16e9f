"""`promptc serve` under load, in one run against one server (a separate process):

- requests/s and p50/p99 latency at concurrency 1, 8 and 32, for a MiniLM classifier artifact (typed
  endpoint) and for tiny-causal (chat completions, 16 new tokens);
- dynamic batching: requests/s at concurrency 32 over concurrency 1 on the classifier (target >= 4x);
- the server's added latency: p50 at concurrency 1 over the same subject called in-process (target <= 1.2x),
  measured interleaved (one in-process call, then one served call, repeated), so that a change in the
  machine's load during the run moves both sides alike;
- the mean batch size each engine ran at each concurrency (from the server's /metrics).

    .venv/bin/python bench/serve.py [--requests N]
    .venv/bin/python bench/serve.py --part streams [--clients 100] [--streamed 0,0.2] [--stream-tokens 32]

`--part streams` measures streamed and plain requests sharing the engine's batches: tiny-causal chat at
`--clients` concurrent clients, with a share of the requests streamed (every k-th one), for each share in
`--streamed`: requests/s, p50/p99 latency to the last byte, time to first token (the first content
chunk of a streamed reply), the mean batch, and the CPU milliseconds a request of the server and of the
bench's own client (they share the machine with the model). The aim (issue 29): 20% streamed costs at most 10% of the throughput of 0%.

The classifier artifact is trained first (MiniLM, LoRA, one epoch: quality is not the point here).
Both the server and the in-process baseline run torch on one thread (OMP_NUM_THREADS=1): on a shared
2-core machine, OpenMP's spinning thread team made single calls 3-10x slower and far noisier than the
thing being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = '''program benchserve "1.0.0"
enum Queue { billing, bug, account, other }
task route(text: str [max_len=400]) -> Queue {
  prompt "Route: {{ text }}"
  example "a" { input { text: "I was charged twice for March" } output billing }
  example "b" { input { text: "the export button crashes the app" } output bug }
  example "c" { input { text: "I cannot sign in to my account" } output account }
  example "d" { input { text: "do you have an office in Berlin" } output other }
  example "e" { input { text: "please refund my last invoice" } output billing }
  example "f" { input { text: "the page shows an error 500" } output bug }
  example "g" { input { text: "reset my password please" } output account }
  example "h" { input { text: "what are your opening hours" } output other }
}
target tune route_cls for route { method = "lora", base = "minilm", epochs = 1, val_split = 0.0 }
'''
TEXTS = ["my card was charged twice this month and I want the money back",
         "the app crashes whenever I open the settings page on my phone",
         "I cannot log in since the password reset email never arrives",
         "do you ship to Canada and how long does delivery take"]


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def load(url: str, make_body, n: int, conc: int) -> tuple[float, list[float]]:
    import httpx

    lat: list[float] = []
    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=conc + 4)) as h:
        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter()
                r = await h.post(url, json=make_body(i))
                lat.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text[:300]

        for i in range(min(conc, 4)):  # warm connections and caches
            await one(i)
        lat.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0), lat


async def mixed_load(url: str, n: int, conc: int, share: float, tokens: int) -> dict[str, float]:
    """n chat requests at `conc` clients, a `share` of them streamed: requests/s, latency to the last byte
    (p50, p99; all requests), time to first token (p50, p99; streamed requests only)."""
    import json

    import httpx

    every = round(1 / share) if share > 0 else 0
    lat: list[float] = []
    ttft: list[float] = []
    sem = asyncio.Semaphore(conc)
    limits = httpx.Limits(max_connections=conc + 4, max_keepalive_connections=conc + 4)
    async with httpx.AsyncClient(timeout=300, limits=limits) as h:
        async def one(i: int, record: bool = True) -> None:
            body = {"model": "tiny-causal", "max_tokens": tokens,
                    "messages": [{"role": "user", "content": TEXTS[i % 4]}]}
            async with sem:
                t0 = time.perf_counter()
                if every and i % every == 0:
                    first = None
                    async with h.stream("POST", url, json={**body, "stream": True}) as r:
                        assert r.status_code == 200
                        async for line in r.aiter_lines():
                            if first is None and line.startswith("data: {"):
                                d = json.loads(line[6:])
                                if d["choices"] and d["choices"][0]["delta"].get("content"):
                                    first = time.perf_counter() - t0
                    if record and first is not None:
                        ttft.append(first)
                else:
                    r = await h.post(url, json=body)
                    assert r.status_code == 200, r.text[:300]
                if record:
                    lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(one(i, False) for i in range(min(conc, 16))))  # warm connections
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(n)))
        rps = n / (time.perf_counter() - t0)
        client_cpu = (time.process_time() - c0) / n
    out = {"rps": rps, "p50": statistics.median(lat), "p99": pct(lat, 99), "client_cpu": client_cpu}
    if ttft:
        out["ttft50"], out["ttft99"] = statistics.median(ttft), pct(ttft, 99)
    return out


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def streams_part(args: argparse.Namespace) -> None:
    py = sys.executable
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([py, "-m", "promptc", "serve", "--model", "tiny-causal", "--port", str(port),
                               "--max-batch", str(args.max_batch)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    shares = [float(x) for x in args.streamed.split(",")]
    results: dict[float, list[dict[str, float]]] = {sh: [] for sh in shares}
    try:
        line = server.stdout.readline()
        if "serving" not in line:
            raise SystemExit(f"server did not start: {line}{server.stdout.read()}")
        base = f"http://127.0.0.1:{port}/v1"
        print(f"\ntiny-causal chat, {args.stream_tokens} new tokens, {args.clients} clients, {args.requests} "
              f"requests a run, {args.rounds} rounds (shares interleaved)")
        print(f"{'streamed':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ttft p50':>9} {'ttft p99':>9} {'batch':>6} {'srv cpu':>8} {'cli cpu':>8}")
        for _ in range(args.rounds):
            for sh in shares:
                before, cpu0 = batch_sizes(base), cpu_seconds(server.pid)
                r = asyncio.run(mixed_load(f"{base}/chat/completions", args.requests, args.clients, sh,
                                           args.stream_tokens))
                r["batch"] = batch_mean(before, batch_sizes(base))
                r["cpu"] = (cpu_seconds(server.pid) - cpu0) / args.requests
                results[sh].append(r)
                ttft = f"{r['ttft50'] * 1000:9.1f} {r['ttft99'] * 1000:9.1f}" if "ttft50" in r else f"{'-':>9} {'-':>9}"
                print(f"{sh:8.0%} {r['rps']:8.1f} {r['p50'] * 1000:8.1f} {r['p99'] * 1000:8.1f} {ttft} "
                      f"{r['batch']:6.1f} {r['cpu'] * 1000:8.1f} {r['client_cpu'] * 1000:8.1f}")
    finally:
        server.terminate()
        server.wait(timeout=60)
    if 0.0 in results and len(shares) > 1:
        base_rps = statistics.median(r["rps"] for r in results[0.0])
        for sh in shares:
            if sh:
                rps = statistics.median(r["rps"] for r in results[sh])
                print(f"{sh:.0%} streamed: median requests/s {rps:.1f} against {base_rps:.1f} at 0% -> "
                      f"{rps / base_rps:.2f}x (aim >= 0.90x)")


def interleaved(subjects, in_process, n: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Latencies of the same request in-process and served (one keep-alive connection), alternating."""
    import httpx

    inproc: dict[str, list[float]] = {}
    served: dict[str, list[float]] = {}
    with httpx.Client(timeout=300) as h:
        for name, (url, body) in subjects.items():
            for i in range(4):  # warm both sides
                in_process[name](i)
                h.post(url, json=body(i))
            a, b = inproc.setdefault(name, []), served.setdefault(name, [])
            for i in range(n):
                t = time.perf_counter()
                in_process[name](i)
                a.append(time.perf_counter() - t)
                t = time.perf_counter()
                r = h.post(url, json=body(i))
                b.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text[:300]
    return inproc, served


def batch_sizes(base: str) -> dict[str, tuple[float, float]]:
    """engine -> (sum of batch sizes, number of batches) from the server's Prometheus metrics."""
    import httpx

    out: dict[str, list[float]] = {}
    for line in httpx.get(base[:-3] + "/metrics", timeout=30).text.splitlines():
        for kind, i in (("promptc_batch_size_sum{", 0), ("promptc_batch_size_count{", 1)):
            if line.startswith(kind):
                engine = line.split('engine="', 1)[1].split('"', 1)[0]
                out.setdefault(engine, [0.0, 0.0])[i] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def batch_mean(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> float:
    """The mean batch size of the batches run between two readings (all engines)."""
    total = sum(after[k][0] - before.get(k, (0.0, 0.0))[0] for k in after)
    count = sum(after[k][1] - before.get(k, (0.0, 0.0))[1] for k in after)
    return total / count if count else 0.0


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main() -> None:
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # before torch is imported
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=64, help="requests per concurrency level (default 64)")
    ap.add_argument("--part", choices=("all", "streams"), default="all")
    ap.add_argument("--clients", type=int, default=100, help="streams part: concurrent clients (default 100)")
    ap.add_argument("--streamed", default="0,0.2", help="streams part: shares of streamed requests (default 0,0.2)")
    ap.add_argument("--stream-tokens", type=int, default=32, help="streams part: new tokens a request (default 32)")
    ap.add_argument("--rounds", type=int, default=3, help="streams part: runs of each share, interleaved (default 3)")
    ap.add_argument("--max-batch", type=int, default=32, help="streams part: the server's --max-batch (default 32)")
    args = ap.parse_args()
    if args.part == "streams":
        streams_part(args)
        return
    load1 = os.getloadavg()[0]
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        prog = Path(tmp) / "bench.prompt"
        prog.write_text(PROGRAM)
        art = Path(tmp) / "route_cls"
        t0 = time.perf_counter()
        subprocess.run([py, "-m", "promptc", "tune", str(prog), "--target", "route_cls", "-o", str(art), "--no-gate"],
                       check=True, capture_output=True)
        print(f"trained the classifier artifact in {time.perf_counter() - t0:.0f} s")

        # in-process baselines, the same subjects, one request at a time
        from promptc.compiler import compile_file
        from promptc.execution import artifact_subject
        from promptc.models import Decoding, load_backend

        ir_prog = compile_file(prog).program
        task = ir_prog.tasks["route"]
        cls = artifact_subject(str(art), ir_prog, task)
        tiny = load_backend("tiny-causal")
        from promptc.serving.app import messages_to_prompt

        def tiny_prompt(i: int) -> str:
            return messages_to_prompt([{"role": "user", "content": TEXTS[i % 4]}])

        dec = Decoding(max_new_tokens=16, constrained=False)
        for i in range(4):
            cls.run([{"text": TEXTS[i]}])
            tiny.generate_text([tiny_prompt(i)], [None], dec)
        in_process = {"classifier": lambda i: cls.run([{"text": TEXTS[i % 4]}]),
                      "tiny-causal": lambda i: tiny.generate_text([tiny_prompt(i)], [None], dec)}

        # the model's own batching ceiling: items/s at batch 32 over batch 1, called directly
        def items_per_s(bs: int) -> float:
            reqs = cls.requests([{"text": TEXTS[i % 4]} for i in range(bs)])
            t, n = time.perf_counter(), 0
            while time.perf_counter() - t < 3:
                cls.backend.generate(reqs, cls.decoding)
                n += bs
            return n / (time.perf_counter() - t)

        ceiling = items_per_s(32) / items_per_s(1)

        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen([py, "-m", "promptc", "serve", "--model", "tiny-causal", "--program", str(prog),
                                   "--artifact", str(art), "--port", str(port), "--max-batch", "32"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            line = server.stdout.readline()
            if "serving" not in line:
                raise SystemExit(f"server did not start: {line}{server.stdout.read()}")
            base = f"http://127.0.0.1:{port}/v1"
            subjects = {
                "classifier": (f"{base}/tasks/route_cls@1.0.0", lambda i: {"text": TEXTS[i % 4]}),
                "tiny-causal": (f"{base}/chat/completions",
                                lambda i: {"model": "tiny-causal", "max_tokens": 16,
                                           "messages": [{"role": "user", "content": TEXTS[i % 4]}]}),
            }
            rps: dict[tuple[str, int], float] = {}
            p50: dict[tuple[str, int], float] = {}
            print(f"\n{'subject':12} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}")
            for name, (url, body) in subjects.items():
                for conc in (1, 8, 32):
                    n = max(args.requests, conc * 4) if conc > 1 else args.requests // 2
                    before = batch_sizes(base)
                    r, lat = asyncio.run(load(url, body, n, conc))
                    mean_batch = batch_mean(before, batch_sizes(base))
                    rps[name, conc], p50[name, conc] = r, statistics.median(lat)
                    print(f"{name:12} {conc:4d} {r:8.1f} {p50[name, conc] * 1000:8.1f} {pct(lat, 99) * 1000:8.1f} "
                          f"{mean_batch:6.1f}")
            # added latency: in-process and served calls interleaved, one after the other
            inproc, served = interleaved(subjects, in_process, args.requests)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print()
    for name in ("classifier", "tiny-causal"):
        base_p50, served_p50 = statistics.median(inproc[name]), statistics.median(served[name])
        print(f"{name}: in-process p50 {base_p50 * 1000:.1f} ms; served p50 at c=1 {served_p50 * 1000:.1f} ms "
              f"(interleaved) -> added latency {served_p50 / base_p50:.2f}x (target <= 1.2x)")
        print(f"{name}: batching c=32 / c=1 requests/s = {rps[name, 32] / rps[name, 1]:.2f}x"
              + (f" (target >= 4x; the model itself, called in-process, gives {ceiling:.2f}x at batch 32 "
                 "over batch 1 on this machine now)" if name == "classifier" else ""))
    load2 = os.getloadavg()[0]
    print(f"\nload average {load1:.1f} -> {load2:.1f} on {os.cpu_count()} cores"
          + ("  (busy machine: latencies are inflated)" if max(load1, load2) > (os.cpu_count() or 1) else ""))


if __name__ == "__main__":
    main()
