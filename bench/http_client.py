"""Which HTTP client the `openai:` backend is built on: httpx (pooled, asyncio) against the official
openai SDK, on the same local server in the same run. Prints requests/s at concurrency 1 and 16 and the
import time of each client.

    .venv/bin/python bench/http_client.py
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

BODY = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "hello"}}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def serve() -> str:
    import uvicorn

    # port 0 and uvicorn's own socket: a socket passed in through `sockets=` cost ~45 ms per request
    # here (21 req/s against 2,000 at concurrency 1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


MESSAGES = [{"role": "user", "content": "hi"}]


async def with_httpx(url: str, n: int, conc: int) -> float:
    import httpx

    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=conc)) as client:
        async def one():
            async with sem:
                r = await client.post(f"{url}/chat/completions", json={"model": "m", "messages": MESSAGES})
                assert r.json()["choices"][0]["message"]["content"]
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


async def with_sdk(url: str, n: int, conc: int) -> float:
    from openai import AsyncOpenAI

    sem = asyncio.Semaphore(conc)
    async with AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        async def one():
            async with sem:
                r = await client.chat.completions.create(model="m", messages=MESSAGES)
                assert r.choices[0].message.content
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


def import_seconds(module: str) -> float:
    code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout) for _ in range(3)]
    return min(runs)


def main() -> None:
    url = serve()
    print(f"import: httpx {import_seconds('httpx') * 1000:.0f} ms, openai {import_seconds('openai') * 1000:.0f} ms")
    for conc in (1, 16):
        n = 300
        asyncio.run(with_httpx(url, 20, conc))  # warm-up
        h = asyncio.run(with_httpx(url, n, conc))
        s = asyncio.run(with_sdk(url, n, conc))
        print(f"concurrency {conc:2d}: httpx {h:7.0f} req/s, openai SDK {s:7.0f} req/s, httpx/SDK {h / s:.2f}x")


if __name__ == "__main__":
    main()
