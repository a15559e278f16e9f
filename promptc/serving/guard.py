"""The edge of `promptc serve`: a pure-ASGI guard in front of every route (auth, the body limit on
Content-Length, capacity, request metrics) and the handlers that turn every error into OpenAI's shape."""

from __future__ import annotations

import hmac
import time
from collections.abc import MutableMapping
from typing import Any

from promptc.serving.context import Ctx
from promptc.serving.protocol import APIError

KNOWN = ("/health", "/metrics", "/v1/chat/completions", "/docs", "/openapi.json")


def endpoint_of(path: str) -> str:
    """The metrics label of a path: a bounded set, never the raw path."""
    if path.startswith("/v1/tasks/"):
        return "tasks"
    if path.startswith("/v1/models"):
        return "models"
    return path if path in KNOWN else "other"


class Guard:
    """Pure ASGI (not BaseHTTPMiddleware, which hides client disconnects from the endpoint): auth,
    the body limit on Content-Length (413 before a byte of the body is read), capacity, metrics."""

    def __init__(self, app: Any, ctx: Ctx):
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = self.ctx
        t0 = time.perf_counter()
        path = scope.get("path", "")
        status = {"code": 500}

        async def send_status(msg: MutableMapping[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            self.admit(scope, path)
        except APIError as e:
            await ctx.error_response(e)(scope, receive, send_status)
        else:
            ctx.pending += 1
            try:
                await self.app(scope, receive, send_status)
            finally:
                ctx.pending -= 1
        endpoint = endpoint_of(path)
        ctx.metrics.requests.labels(endpoint, str(status["code"])).inc()
        ctx.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)

    def admit(self, scope: dict, path: str) -> None:
        """Raise the APIError that refuses this request before it reaches a route, if any."""
        opts = self.ctx.opts
        # only the two headers read here are decoded (ASGI header names are lower-case bytes)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
                   if k in (b"authorization", b"content-length")}
        if opts.api_key and path != "/health" and path.startswith(("/v1", "/metrics")):
            auth = headers.get("authorization", "")
            given = auth[7:] if auth[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(given.encode(), opts.api_key.encode()):
                raise APIError(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                               type="authentication_error", code="invalid_api_key")
        cl = headers.get("content-length")
        if scope.get("method") == "POST" and cl is not None and (not cl.isdigit() or int(cl) > opts.max_body):
            raise APIError(413, f"the request body is over the limit of {opts.max_body} bytes",
                           code="body_too_large", headers={"Connection": "close"})
        if self.ctx.draining and path != "/health":
            raise APIError(503, "the server is shutting down; retry on another instance or shortly",
                           type="server_error", code="server_shutting_down",
                           headers={"Retry-After": "1", "Connection": "close"})
        if self.ctx.pending >= opts.max_pending:
            raise APIError(429, "the server is at capacity; retry shortly", type="rate_limit_error",
                           headers={"Retry-After": "1"})


def add_error_handlers(app: Any, ctx: Ctx) -> None:
    """Every error, the framework's included, as a 4xx/5xx in OpenAI's shape."""
    from fastapi.exceptions import RequestValidationError

    async def api_error(request: Any, exc: APIError) -> Any:
        return ctx.error_response(exc)

    async def validation(request: Any, exc: RequestValidationError) -> Any:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query"))
        return ctx.error_response(APIError(422, f"{where}: {first.get('msg', 'invalid')}", param=where or None,
                                           code="invalid_input",
                                           extra={"detail": [{"loc": list(e.get("loc", ())), "msg": e.get("msg"),
                                                              "type": e.get("type")} for e in errs]}))

    async def not_found(request: Any, exc: Any) -> Any:
        return ctx.error_response(APIError(404, f"no route {request.url.path}", type="not_found_error"))

    async def bad_method(request: Any, exc: Any) -> Any:
        return ctx.error_response(APIError(405, f"{request.method} is not allowed on {request.url.path}"))

    async def internal(request: Any, exc: Any) -> Any:
        return ctx.error_response(APIError(500, f"internal error: {type(exc).__name__}", type="server_error"))

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, bad_method)
    app.add_exception_handler(Exception, internal)
