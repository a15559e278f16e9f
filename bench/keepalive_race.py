"""The keep-alive race behind a rare `httpx.ReadError` against `promptc serve` (issue 29, item 5).

A server closes a kept-alive connection once it has been idle for its keep-alive timeout; a client's
pool reuses an idle connection until its own expiry (httpx and the openai package: 5 s, uvicorn's
default: 5 s too). When the client sends its next request at about the moment the server's timer
fires, the server closes a socket that already holds (or is about to receive) that request, and the
client reads a reset or an empty reply: `httpx.ReadError` or `httpx.RemoteProtocolError: Server
disconnected without sending a response`. Nothing in the request was wrong, and httpx does not retry it.

On loopback the window is microseconds (httpcore drops a pooled connection whose close it can already
read), so this script puts a proxy with 20 ms of one-way delay in front of the server, as a network
would: the window is then the round trip (a request sent within 40 ms before the close reaches the
client fails; one sent after it sees the close goes on a new connection). It runs with a 1 s server keep-alive (so that a try takes about a
second, not five): one pooled httpx connection, a request, an idle gap drawn around the server's
timeout, the next request on the same connection; then the same gaps against a server whose keep-alive
outlasts the client's idle time, as `promptc serve` now does (20 s against the 4-15 s of common
clients), where the client's pool always drops the connection first and the race cannot happen.

    .venv/bin/python bench/keepalive_race.py [--tries N]
"""

from __future__ import annotations

import argparse
import random
import time


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delivers every chunk, and every close, `delay` seconds late."""

    def __init__(self, upstream_port: int, delay: float):
        import asyncio
        import threading

        self.upstream, self.delay = upstream_port, delay
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._conn, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _conn(self, reader, writer) -> None:
        import asyncio

        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        await asyncio.gather(self._pump(reader, up_w), self._pump(up_r, writer), return_exceptions=True)

    async def _pump(self, reader, writer) -> None:
        import asyncio

        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                await asyncio.sleep(max(0.0, at - asyncio.get_running_loop().time()))
                if data is None:
                    writer.close()
                    return
                writer.write(data)

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((asyncio.get_running_loop().time() + self.delay, data))
        except ConnectionError:
            pass
        queue.put_nowait((asyncio.get_running_loop().time() + self.delay, None))
        await sender

    def close(self) -> None:
        import asyncio

        async def stop() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.server.close()

        self.loop.set_exception_handler(lambda loop, context: None)  # the cancelled pumps say nothing
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def race(keep_alive: int, gaps: list[float]) -> tuple[int, list[str]]:
    import httpx

    from promptc.serving.app import ServeOptions
    from promptc.serving.server import ServerThread
    from promptc.serving.subjects import build_registry

    failures: list[str] = []
    with ServerThread(build_registry(model="tiny-causal"), opts=ServeOptions(keep_alive=keep_alive)) as srv:
        proxy = DelayProxy(srv.port, 0.02)
        url = f"http://127.0.0.1:{proxy.port}/health"
        # the client keeps idle connections 5 s (httpx's default), longer than every gap below
        with httpx.Client(timeout=10, limits=httpx.Limits(keepalive_expiry=5.0)) as h:
            for gap in gaps:
                h.get(url)  # opens or reuses the pooled connection
                time.sleep(gap)
                try:
                    h.get(url)  # the same connection, after the gap
                except httpx.TransportError as e:
                    failures.append(f"{type(e).__name__} after {gap:.3f} s")
        proxy.close()
    return len(gaps), failures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tries", type=int, default=40)
    args = ap.parse_args()
    rng = random.Random(0)
    gaps = [1.0 + rng.uniform(-0.08, 0.0) for _ in range(args.tries)]  # just before the 1 s timeout
    for keep_alive, what in ((1, "server keep-alive 1 s, gaps of 0.92-1.00 s (the race)"),
                             (3, "server keep-alive 3 s, the same gaps (the server outlasts the client's idle)")):
        n, failures = race(keep_alive, gaps)
        kinds = sorted({f.split()[0] for f in failures})
        print(f"{what}: {len(failures)} of {n} reused connections failed {kinds if kinds else ''}")


if __name__ == "__main__":
    main()
