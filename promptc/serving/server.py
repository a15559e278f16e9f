"""`promptc serve`: run the app (serving/app.py) under uvicorn, in the foreground or on a thread.

Binding: 127.0.0.1 unless the caller names a host. uvicorn listens on its own socket (port 0 picks a free
one): a socket handed to uvicorn through `sockets=` cost ~45 ms a request here (bench/http_client.py).

The edge (docs/serving.md, "Hostile clients and shutdown"):

- **Capacity is counted in requests, not sockets.** uvicorn's `limit_concurrency` counts every open
  connection, so 1,100 sockets that never sent a byte shut every real client out with a plain-text 503.
  Here the Guard (guard.py) admits at most `max_pending` requests (more get an OpenAI-shaped 429 with
  Retry-After), and sockets are limited only by the process's file limit (RLIMIT_NOFILE, whose soft limit
  is raised to the hard one at start), far above it.
- **No socket without a deadline.** uvicorn (h11) arms no timer on a new connection, and cancels its
  keep-alive timer on the first byte of the next request, so a socket that sends nothing, or trickles a
  request line, is held for ever. `HeadDeadline` is uvicorn's own H11Protocol with one timer more: a
  connection that has not sent a complete request head within `header_timeout` seconds (from its accept,
  or from the first byte after a keep-alive wait) is closed. A subclass of the protocol rather than a
  guard in front (a proxy, or a socket-level pre-read before uvicorn sees the connection): it adds one
  `call_later` per connection and a state check per read, no copy of the bytes and no extra hop. Measured
  on the 2-core development machine: GET /health on one kept-alive connection, p50 over 600 requests, 3
  runs each, 0.54-0.75 ms with it against 0.55-0.75 ms with uvicorn's plain h11 (noise); 2,000 idle and
  2,000 trickling sockets held open grew the server from 476 to 495 MB, and a real client was served
  meanwhile (tests/models/test_serve_edge.py, slow).
  h11 is named explicitly (uvicorn would pick httptools if it were installed, which this class does not
  wrap).
- **Graceful drain.** On SIGTERM/SIGINT the server stops taking work (new requests get an OpenAI-shaped
  503 with Retry-After, /health says "draining"), lets work in flight finish for up to `graceful_timeout`
  seconds, then answers what is left with a 503 (a stream gets an error event and [DONE]) before uvicorn
  closes the connections: no request is cancelled mid-flight, so there is no traceback, and the process
  exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import signal
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from promptc.serving.app import ServeOptions, create_app
from promptc.serving.subjects import Registry, build_registry

log = logging.getLogger("uvicorn.error")  # uvicorn's own handler and format ("WARNING:  ...")
FD_RESERVE = 256  # descriptors kept for the process itself: model files, threads' pipes, logs


@dataclass
class Edge:
    """What the connections of one server share: the limits, and the counts for the log line."""

    header_timeout: float
    max_sockets: int
    slow_heads: int = 0  # connections closed for a slow head, since the last log line
    refused: int = 0  # connections refused at max_sockets, since the last log line
    slow_heads_total: int = 0


def file_limit(raise_soft: bool = True) -> tuple[int, int, int]:
    """(soft, hard, soft before) of RLIMIT_NOFILE, the soft limit raised to the hard one when asked."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if raise_soft and soft != resource.RLIM_INFINITY:
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        if want > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
            except (ValueError, OSError):
                pass
    return soft, hard, before


def socket_limit(opts: ServeOptions) -> tuple[int, str]:
    """The most connections to hold open, and the line that reports it."""
    soft, hard, before = file_limit()
    cap = soft if soft != resource.RLIM_INFINITY else 1 << 20
    limit = max(16, cap - FD_RESERVE)
    if opts.max_sockets is not None:
        limit = min(limit, opts.max_sockets)
    raised = f", raised from {before}" if soft != before else ""
    hard_s = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    return limit, (f"file limit {soft} (hard {hard_s}{raised}): up to {limit} connections, "
                   f"{opts.max_pending} requests at once; a request head must arrive within "
                   f"{opts.header_timeout:g} s")


def head_protocol(edge: Edge) -> type:
    """uvicorn's H11Protocol with a deadline on the request head and a limit on open connections."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    full = _canned(429, {"error": {"message": "the server has too many open connections; retry shortly",
                                   "type": "rate_limit_error", "param": None, "code": "too_many_connections"}})

    class HeadDeadline(H11Protocol):
        head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > edge.max_sockets:
                edge.refused += 1
                transport.write(full)
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)  # cancels uvicorn's keep-alive timer; may parse a whole head
            if self.transport.is_closing():
                return
            if self.conn.their_state is h11.IDLE:
                self._arm()  # a head has started (or not yet): its deadline runs from the first byte
            else:
                self._disarm()  # the head is in: the body's own deadline (--body-timeout) takes over

        def on_response_complete(self) -> None:
            self._disarm()
            super().on_response_complete()  # the keep-alive timer covers the wait for the next request

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self.head_timer is None:
                self.head_timer = self.loop.call_later(edge.header_timeout, self._expired)

        def _disarm(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _expired(self) -> None:
            self.head_timer = None
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                edge.slow_heads += 1
                edge.slow_heads_total += 1
                self.transport.close()

    return HeadDeadline


def _canned(status: int, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (f"HTTP/1.1 {status} Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {len(data)}"
            "\r\nretry-after: 1\r\nconnection: close\r\n\r\n").encode() + data


def uvicorn_config(app: Any, host: str, port: int, opts: ServeOptions, edge: Edge) -> Any:
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
        http=head_protocol(edge),
        backlog=2048,  # 100 clients connecting at once must queue, not be reset
        # above the idle expiry of common clients (httpx and the openai package 5 s, undici 4 s, aiohttp 15 s):
        # a server that closes an idle connection at the moment a client reuses it fails that request
        timeout_keep_alive=int(opts.keep_alive), h11_max_incomplete_event_size=64 * 1024,  # headers, not bodies
        limit_concurrency=None,  # capacity is requests (the Guard's 429), not sockets (HeadDeadline)
        timeout_graceful_shutdown=5)  # after the drain (PromptcServer.shutdown) nothing is left to wait for


def make_server(app: Any, host: str, port: int, opts: ServeOptions) -> Any:
    """A uvicorn.Server for `app` with the drain of docs/serving.md and a log line a minute on slow heads
    (a class built here: uvicorn is imported only when serving)."""
    import uvicorn

    limit, report = socket_limit(opts)
    edge = Edge(opts.header_timeout, limit)
    ctx = app.state.ctx

    class Server(uvicorn.Server):
        def __init__(self) -> None:
            super().__init__(uvicorn_config(app, host, port, opts, edge))
            self.edge, self.ctx, self.report = edge, ctx, report
            self.drained_clean: bool | None = None
            self._ticker: asyncio.Task | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            # uvicorn's own re-raises the signal once the server has stopped, so SIGTERM would end the
            # process by the signal (exit -15) after a clean drain; promptc exits 0 instead
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = (signal.SIGINT, signal.SIGTERM)
            saved = {s: signal.signal(s, self.handle_exit) for s in sigs}
            try:
                yield
            finally:
                for s, h in saved.items():
                    signal.signal(s, h)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                self._ticker = asyncio.get_running_loop().create_task(self._log_slow_heads())

        async def _log_slow_heads(self) -> None:
            while True:
                await asyncio.sleep(opts.slow_log_every)
                self._flush_counts()

        def _flush_counts(self) -> None:
            if edge.slow_heads:
                log.warning("promptc serve: closed %d connections in the last %g s that sent no complete request "
                            "head within %g s (--header-timeout)", edge.slow_heads, opts.slow_log_every,
                            opts.header_timeout)
            if edge.refused:
                log.warning("promptc serve: refused %d connections over the limit of %d open connections",
                            edge.refused, edge.max_sockets)
            edge.slow_heads = edge.refused = 0

        async def shutdown(self, sockets: Any = None) -> None:
            if self._ticker is not None:
                self._ticker.cancel()
            self._flush_counts()
            await self.drain()
            await super().shutdown(sockets)

        async def drain(self) -> None:
            """Stop taking work; let what is in flight finish within graceful_timeout; answer the rest."""
            ctx.start_drain()
            t0 = time.monotonic()
            if ctx.pending:
                log.warning("promptc serve: draining %d requests in flight (up to %g s)", ctx.pending,
                            opts.graceful_timeout)
            while ctx.pending and time.monotonic() - t0 < opts.graceful_timeout and not self.force_exit:
                await asyncio.sleep(0.05)
            self.drained_clean = not ctx.pending
            if ctx.pending:
                log.warning("promptc serve: %d requests did not finish within %g s (--graceful-timeout); they "
                            "get a 503", ctx.pending, opts.graceful_timeout)
                ctx.expire_drain()
                t1 = time.monotonic()
                while ctx.pending and time.monotonic() - t1 < 5 and not self.force_exit:
                    await asyncio.sleep(0.05)
                if ctx.pending:  # answered, but the client does not read: close its connection rather than
                    # leave uvicorn to cancel the request (a cancelled request logs a traceback)
                    log.warning("promptc serve: closing %d connections whose clients do not read their answer",
                                ctx.pending)
                    for conn in list(self.server_state.connections):
                        transport = getattr(conn, "transport", None)
                        if transport is not None and not transport.is_closing():
                            transport.close()
                running = sum(e.running for e in ctx.reg.engines)
                if running:  # Engine.stop (at the lifespan's end) ends them at their next token
                    log.warning("promptc serve: stopping the model calls still running (%d jobs, already answered)",
                                running)

    return Server()


class ServerThread:
    """A server on a background thread, for tests, benchmarks and notebooks:

        with ServerThread(registry) as srv:
            OpenAI(base_url=srv.url, api_key="x")
    """

    def __init__(self, reg: Registry, host: str = "127.0.0.1", port: int = 0, opts: ServeOptions | None = None):
        self.registry = reg
        self.opts = opts or ServeOptions()
        self.app = create_app(reg, self.opts)
        self.server = make_server(self.app, host, port, self.opts)
        # older uvicorn installs handlers through this hook; newer ones (no such attribute) skip signals off the
        # main thread themselves
        self.server.install_signal_handlers = lambda: None
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="promptc-serve")
        self.host = host

    def start(self) -> ServerThread:
        if self.server.started:
            return self
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > 60:
                raise RuntimeError("promptc serve did not start")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """The OpenAI base URL: http://host:port/v1."""
        return f"http://{self.host}:{self.port}/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10 + self.opts.graceful_timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_model(backend: Any, host: str = "127.0.0.1", port: int = 0, **opts: Any) -> ServerThread:
    """Serve one model (a spec or a loaded backend) on a background thread; started."""
    return ServerThread(build_registry(model=backend), host, port, ServeOptions(**opts)).start()


def run(reg: Registry, host: str, port: int, opts: ServeOptions, announce: Any = None) -> bool:
    """Serve in the foreground until SIGTERM or Ctrl-C, then drain; True when the drain was clean."""
    server = make_server(create_app(reg, opts), host, port, opts)
    if announce is not None:
        orig = server.startup

        async def startup(sockets=None):
            await orig(sockets)
            if server.started:
                real = server.servers[0].sockets[0].getsockname()[1]
                announce(f"http://{host}:{real}/v1", server.report)

        server.startup = startup
    server.run()
    return bool(server.drained_clean) if server.drained_clean is not None else True
