"""`promptc serve`: run the app (serving/app.py) under uvicorn, in the foreground or on a thread.

Binding: 127.0.0.1 unless the caller names a host. uvicorn listens on its own socket (port 0 picks a free
one): a socket handed to uvicorn through `sockets=` cost ~45 ms a request here (bench/http_client.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from promptc.serving.app import ServeOptions, create_app
from promptc.serving.subjects import Registry, build_registry


def uvicorn_config(app: Any, host: str, port: int, opts: ServeOptions) -> Any:
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
        backlog=2048,  # 100 clients connecting at once must queue, not be reset
        timeout_keep_alive=5, h11_max_incomplete_event_size=64 * 1024,  # headers, not bodies
        limit_concurrency=opts.max_pending + 64, timeout_graceful_shutdown=3)


class ServerThread:
    """A server on a background thread, for tests, benchmarks and notebooks:

        with ServerThread(registry) as srv:
            OpenAI(base_url=srv.url, api_key="x")
    """

    def __init__(self, reg: Registry, host: str = "127.0.0.1", port: int = 0, opts: ServeOptions | None = None):
        import uvicorn

        self.registry = reg
        self.opts = opts or ServeOptions()
        self.app = create_app(reg, self.opts)
        self.server = uvicorn.Server(uvicorn_config(self.app, host, port, self.opts))
        # older uvicorn installs handlers through this hook; newer ones (no such attribute) skip signals off the
        # main thread themselves
        self.server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
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
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_model(backend: Any, host: str = "127.0.0.1", port: int = 0, **opts: Any) -> ServerThread:
    """Serve one model (a spec or a loaded backend) on a background thread; started."""
    return ServerThread(build_registry(model=backend), host, port, ServeOptions(**opts)).start()


def run(reg: Registry, host: str, port: int, opts: ServeOptions, announce: Any = None) -> None:
    """Serve in the foreground until Ctrl-C."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(create_app(reg, opts), host, port, opts))
    if announce is not None:
        orig = server.startup

        async def startup(sockets=None):
            await orig(sockets)
            if server.started:
                real = server.servers[0].sockets[0].getsockname()[1]
                announce(f"http://{host}:{real}/v1")

        server.startup = startup  # type: ignore[method-assign]
    server.run()
