"""What every route of `promptc serve` shares: the served registry, the options, the metrics, and the
steps of running a request (reading the body within its limits, finding the subject, checking the prompt
against the context, waiting on the engine while watching the client, running a task subject)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

from promptc.models.base import Decoding, Generation
from promptc.serving.engine import Job
from promptc.serving.protocol import SMALL_INPUT, APIError, ServeOptions, input_error
from promptc.serving.subjects import Registry, Served


class Metrics:
    """The Prometheus series of one app (its own registry, so two apps in one process do not clash)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("promptc_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("promptc_request_seconds", "request latency", ["endpoint"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.batch = Histogram("promptc_batch_size", "jobs per model call", ["engine"], registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.tokens = Counter("promptc_tokens", "tokens", ["kind"], registry=self.registry)
        self.errors = Counter("promptc_errors", "error responses", ["type"], registry=self.registry)

    def usage(self, prompt: int, completion: int) -> dict[str, int]:
        """Count a reply's tokens; its `usage` object."""
        self.tokens.labels("prompt").inc(prompt)
        self.tokens.labels("completion").inc(completion)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@dataclass
class Ctx:
    reg: Registry
    opts: ServeOptions
    metrics: Metrics = field(default_factory=Metrics)
    pending: int = 0  # requests inside the app now (the Guard's capacity check)
    draining: bool = False  # SIGTERM/SIGINT: new requests get 503, /health says "draining"
    # set when the drain's time is up: what still waits on the engine gets a 503 (streams an error event)
    drain_expired: asyncio.Future | None = None
    streams: set[Any] = field(default_factory=set)  # the streamed replies now being sent (chat.Pieces)

    def start_drain(self) -> None:
        self.draining = True

    def drain_future(self) -> asyncio.Future:
        if self.drain_expired is None:
            self.drain_expired = asyncio.get_running_loop().create_future()
        return self.drain_expired

    def expire_drain(self) -> None:
        self.draining = True
        if not self.drain_future().done():
            self.drain_future().set_result(None)
        for pieces in list(self.streams):
            pieces.expire()

    @staticmethod
    def drain_error() -> APIError:
        return APIError(503, "the server shut down before this request finished; retry it", type="server_error",
                        code="server_shutting_down", headers={"Retry-After": "1", "Connection": "close"})

    def error_response(self, err: APIError) -> Any:
        from fastapi.responses import JSONResponse

        self.metrics.errors.labels(err.type).inc()
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    def subject(self, name: str, param: str = "model") -> Served:
        s = self.reg.subjects.get(name)
        if s is None:
            raise APIError(404, f"the model '{name}' does not exist; served: {', '.join(self.reg.subjects)}",
                           type="invalid_request_error", param=param, code="model_not_found")
        return s

    async def read_body(self, request: Any) -> bytes:
        """The body, refusing it (413) as soon as it passes the limit (chunked bodies have no length), and
        giving up (408) on a client that stops sending mid-body."""
        buf = bytearray()
        limit = self.opts.max_body

        async def read() -> None:
            async for chunk in request.stream():
                buf.extend(chunk)
                if len(buf) > limit:
                    raise APIError(413, f"the request body is over the limit of {limit} bytes",
                                   code="body_too_large", headers={"Connection": "close"})

        try:
            async with asyncio.timeout(self.opts.body_timeout):  # no task per request, as wait_for makes
                await read()
        except TimeoutError:
            raise APIError(408, f"the request body did not arrive within {self.opts.body_timeout:g} s",
                           code="body_timeout", headers={"Connection": "close"}) from None
        return bytes(buf)

    async def wait_for(self, request: Any, futures: list[asyncio.Future], t0: float) -> list[Generation]:
        """Wait for the engine; a client that goes away or a request over its time cancels its jobs (a job
        not yet started is then never run)."""
        gathered = asyncio.gather(*futures)
        gathered.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning later
        watch = asyncio.ensure_future(disconnected(request))
        try:
            left = self.opts.request_timeout - (time.perf_counter() - t0)
            drain = self.drain_future()
            waiting: set[asyncio.Future[Any]] = {gathered, watch, drain}
            done, _ = await asyncio.wait(waiting, timeout=max(0.0, left), return_when=asyncio.FIRST_COMPLETED)
            if gathered in done:
                return gathered.result()
            if drain in done:
                raise self.drain_error()
            if watch in done:
                raise APIError(499, "the client closed the connection", type="client_closed")
            raise APIError(504, f"the request took over {self.opts.request_timeout:g} s", type="timeout_error",
                           code="timeout")
        except BaseException:
            for f in futures:
                f.cancel()
            gathered.cancel()
            raise
        finally:
            watch.cancel()

    async def check_length(self, s: Served, text: str, max_tokens: int, special: bool) -> int:
        if s.counter is None:
            return 0
        ctx = s.counter.context
        allows = f"with max_tokens={max_tokens} the model's context of {ctx} allows {max(0, ctx - max_tokens)}"
        floor = s.counter.at_least(text)
        if floor + max_tokens > ctx:  # refused without spending time tokenising it
            raise APIError(400, f"the prompt is at least {floor} tokens; {allows}", param="messages",
                           code="context_length_exceeded")
        n = s.counter.try_count(text, special) if len(text) <= SMALL_INPUT else None  # a short prompt: here
        if n is None:  # a long one (or every copy of the tokenizer busy): off the loop and off the engine
            n = await asyncio.to_thread(s.counter.count, text, special)
        if n + max_tokens > ctx:
            raise APIError(400, f"the prompt is {n} tokens; {allows}", param="messages",
                           code="context_length_exceeded")
        return n

    async def run_task(self, request: Any, s: Served, inputs: Any, dec: Decoding, n: int, t0: float,
                       param: str, size: int) -> list[tuple[Generation, Any]]:
        """Run a task subject on one input (n samples): each generation with its parsed output."""
        from promptc.outputs import parse_output

        assert s.task is not None
        req = await self._task_request(s, inputs, param, size)
        if s.family != "classifier" and hasattr(s.backend, "prompt_text"):
            # the backend's own final text (its chat template, if it uses one); a small input's costs less
            # here than a hop to a worker thread and back (bench/serve.py), a big one goes off the loop
            text = s.backend.prompt_text(req) if size < SMALL_INPUT else \
                await asyncio.to_thread(s.backend.prompt_text, req)
            await self.check_length(s, text, dec.max_new_tokens, not s.templated())
        futures = []
        for i in range(n if dec.temperature > 0 else 1):
            d = dec if i == 0 else replace(dec, seed=dec.seed + i)
            futures.append(s.engine.submit(Job("requests", req, d, s.adapter)))
        gens = await self.wait_for(request, futures, t0)
        gens = gens * n if len(gens) == 1 and n > 1 else gens
        out = []
        for g in gens:
            if g.error:
                raise APIError(500, f"the model call failed: {g.error}", type="server_error")
            out.append((g, parse_output(s.task.output, g.text, finish_reason=g.finish_reason,
                                        budget=dec.max_new_tokens)))
        return out

    async def _task_request(self, s: Served, inputs: Any, param: str, size: int) -> Any:
        from promptc.errors import InputError

        assert s.build is not None
        if not isinstance(inputs, dict):
            raise APIError(422, "the task input must be a JSON object with one entry per task input",
                           param=param, code="invalid_input")
        try:
            # validating and rendering a small input costs less than a hop to a worker thread
            (req,) = s.build([inputs]) if size < SMALL_INPUT else await asyncio.to_thread(s.build, [inputs])
        except InputError as e:
            raise input_error(e, param) from None
        return req


async def disconnected(request: Any) -> None:
    """Returns when the client goes away (the body is read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def task_decoding(s: Served, max_tokens: int | None, temperature: float = 0.0, top_p: float = 1.0,
                  seed: int = 0) -> Decoding:
    """A task subject's own decoding, with what the request may change."""
    return replace(s.decoding, max_new_tokens=max_tokens or s.decoding.max_new_tokens, temperature=temperature,
                   top_p=top_p, seed=seed)
