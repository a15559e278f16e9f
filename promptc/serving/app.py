"""The ASGI app of `promptc serve`: OpenAI Chat Completions, typed task endpoints, models, health, metrics.

Why FastAPI (on Starlette, under uvicorn): the typed endpoint of each task gets OpenAPI docs (/docs,
/openapi.json) from the task's own JSON Schemas without a hand-written spec, while the OpenAI surface
parses bodies itself, so every malformed request gets a 4xx in OpenAI's error shape rather than a
framework's. uvicorn is the ASGI server FastAPI is deployed on; asyncio lets thousands of connections
wait while one engine thread per model runs batches.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request as HTTPRequest  # module level: FastAPI resolves handler annotations by name

from promptc import ir
from promptc.models.base import Decoding, Generation
from promptc.serving.engine import Job
from promptc.serving.subjects import Registry, Served


@dataclass
class ServeOptions:
    max_body: int = 2 << 20  # bytes; a bigger body gets 413 before it is read
    max_tokens_limit: int = 4096  # the largest max_tokens a request may ask for
    default_max_tokens: int = 256
    max_n: int = 8
    request_timeout: float = 120.0  # seconds from arrival to answer
    body_timeout: float = 30.0  # seconds to receive the whole body (a client that stalls mid-body gets 408)
    max_pending: int = 1024  # requests waiting or running; more get 429
    api_key: str | None = None  # bearer token required on /v1 and /metrics when set


class APIError(Exception):
    """A 4xx/5xx in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.extra, self.headers = extra or {}, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code},
                **self.extra}


def messages_to_prompt(messages: list[dict[str, str]]) -> str:
    """The plain prompt for a tokenizer without a chat template: contents separated by blank lines,
    assistant turns prefixed `Answer: `, ending with `Answer:`."""
    parts = []
    for m in messages:
        content = m.get("content") or ""
        parts.append(f"Answer: {content}" if m.get("role") == "assistant" else content)
    return "\n\n".join(parts) + "\nAnswer:"


# ------------------------------------------------------------------ request parsing
ROLES = ("system", "developer", "user", "assistant", "tool")
SMALL_INPUT = 16 << 10  # bytes of input JSON validated on the event loop; bigger inputs go to a thread


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_body(raw: bytes) -> Any:
    if not raw:
        raise APIError(400, "the request body is empty; send a JSON object")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise APIError(400, "the request body is not UTF-8") from None
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError is a ValueError, and so are NaN / Infinity
        raise APIError(400, f"the request body is not valid JSON: {e}") from None


def _num(body: dict, name: str, lo: float, hi: float, default: float, *, lo_open: bool = False) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise APIError(400, f"'{name}' must be a number", param=name)
    if v < lo or v > hi or (lo_open and v == lo):
        raise APIError(400, f"'{name}' must be {'>' if lo_open else '>='} {lo:g} and <= {hi:g}; got {v}", param=name)
    return float(v)


def _int(body: dict, name: str, lo: int, hi: int, default: int | None) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise APIError(400, f"'{name}' must be an integer", param=name)
    if v < lo or v > hi:
        raise APIError(400, f"'{name}' must be between {lo} and {hi}; got {v}", param=name)
    return v


def _content_text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, p in enumerate(content):
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise APIError(400, f"messages[{i}].content[{j}]: only text parts are supported",
                               param=f"messages[{i}].content")
            parts.append(p["text"])
        return "".join(parts)
    raise APIError(400, f"messages[{i}].content must be a string or a list of text parts",
                   param=f"messages[{i}].content")


@dataclass
class ChatParams:
    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None  # None: the subject's own budget
    temperature: float
    top_p: float
    seed: int
    n: int
    stop: list[str]
    stream: bool
    include_usage: bool
    response_format: dict[str, Any] | None


def parse_chat(body: Any, opts: ServeOptions) -> ChatParams:
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "'model' is required (a string); GET /v1/models lists what is served", param="model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError(400, "'messages' must be a non-empty list of {role, content}", param="messages")
    messages = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise APIError(400, f"messages[{i}] must be an object with role and content", param="messages")
        role = m.get("role")
        if role not in ROLES:
            raise APIError(400, f"messages[{i}].role must be one of {', '.join(ROLES)}", param=f"messages[{i}].role")
        if "content" not in m or m["content"] is None:
            raise APIError(400, f"messages[{i}].content is required", param=f"messages[{i}].content")
        messages.append({"role": "system" if role == "developer" else role, "content": _content_text(m["content"], i)})
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _int({"max_tokens": mt}, "max_tokens", 1, opts.max_tokens_limit, None)
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise APIError(400, "'stop' must be a string or a list of at most 4 strings", param="stop")
    if any(not s for s in stops):
        raise APIError(400, "'stop' strings must not be empty", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be true or false", param="stream")
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise APIError(400, "logprobs are not supported by promptc serve", param="logprobs", code="unsupported")
    if body.get("tools") or body.get("functions"):
        raise APIError(400, "tools and functions are not supported by promptc serve", param="tools",
                       code="unsupported")
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            raise APIError(400, "'response_format.type' must be text, json_object or json_schema",
                           param="response_format")
        if rf["type"] == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, dict) or not isinstance(js.get("schema"), dict):
                raise APIError(400, "'response_format.json_schema.schema' must be a JSON Schema object",
                               param="response_format")
        if rf["type"] == "text":
            rf = None
    return ChatParams(
        model=model, messages=messages, max_tokens=max_tokens,
        temperature=_num(body, "temperature", 0.0, 2.0, 0.0), top_p=_num(body, "top_p", 0.0, 1.0, 1.0, lo_open=True),
        seed=_int(body, "seed", -(2 ** 63), 2 ** 63 - 1, 0) or 0, n=_int(body, "n", 1, opts.max_n, 1) or 1,
        stop=stops, stream=stream, include_usage=bool((so or {}).get("include_usage")), response_format=rf)


# ------------------------------------------------------------------ the app
def create_app(reg: Registry, opts: ServeOptions | None = None) -> Any:
    """The FastAPI app serving `reg`."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

    opts = opts or ServeOptions()
    metrics = CollectorRegistry()
    m_requests = Counter("promptc_requests", "HTTP requests", ["endpoint", "status"], registry=metrics)
    m_latency = Histogram("promptc_request_seconds", "request latency", ["endpoint"], registry=metrics,
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
    m_batch = Histogram("promptc_batch_size", "jobs per model call", ["engine"], registry=metrics,
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128))
    m_tokens = Counter("promptc_tokens", "tokens", ["kind"], registry=metrics)
    m_errors = Counter("promptc_errors", "error responses", ["type"], registry=metrics)
    pending = {"n": 0}

    for e in reg.engines:
        e.on_batch = lambda name, n: m_batch.labels(name).observe(n)

    async def lifespan(app):
        for e in reg.engines:
            e.start()
        yield
        for e in reg.engines:
            await e.stop()

    app = FastAPI(title="promptc serve", version="1", lifespan=lifespan,
                  description="OpenAI-compatible Chat Completions and typed task endpoints for promptc "
                              "targets and artifacts.")

    KNOWN = ("/health", "/metrics", "/v1/chat/completions", "/docs", "/openapi.json")

    def error_response(err: APIError) -> JSONResponse:
        m_errors.labels(err.type).inc()
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return error_response(exc)

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query"))
        return error_response(APIError(422, f"{where}: {first.get('msg', 'invalid')}", param=where or None,
                                       code="invalid_input",
                                       extra={"detail": [{"loc": list(e.get("loc", ())), "msg": e.get("msg"),
                                                          "type": e.get("type")} for e in errs]}))

    @app.exception_handler(404)
    async def _not_found(request, exc):
        return error_response(APIError(404, f"no route {request.url.path}", type="not_found_error"))

    @app.exception_handler(405)
    async def _bad_method(request, exc):
        return error_response(APIError(405, f"{request.method} is not allowed on {request.url.path}"))

    @app.exception_handler(Exception)
    async def _internal(request, exc):
        return error_response(APIError(500, f"internal error: {type(exc).__name__}", type="server_error"))

    class Guard:
        """Pure ASGI (not BaseHTTPMiddleware, which hides client disconnects from the endpoint): auth,
        the body limit on Content-Length (413 before a byte of the body is read), capacity, metrics."""

        def __init__(self, app: Any):
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            assert opts is not None  # create_app set the defaults; a method does not see that narrowing
            t0 = time.perf_counter()
            path = scope.get("path", "")
            endpoint = "tasks" if path.startswith("/v1/tasks/") else ("models" if path.startswith("/v1/models")
                                                                      else path if path in KNOWN else "other")
            status = {"code": 500}

            async def send_status(msg: MutableMapping[str, Any]) -> None:
                if msg["type"] == "http.response.start":
                    status["code"] = msg["status"]
                await send(msg)

            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            try:
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
                if pending["n"] >= opts.max_pending:
                    raise APIError(429, "the server is at capacity; retry shortly", type="rate_limit_error",
                                   headers={"Retry-After": "1"})
            except APIError as e:
                await error_response(e)(scope, receive, send_status)
            else:
                pending["n"] += 1
                try:
                    await self.app(scope, receive, send_status)
                finally:
                    pending["n"] -= 1
            m_requests.labels(endpoint, str(status["code"])).inc()
            m_latency.labels(endpoint).observe(time.perf_counter() - t0)

    app.add_middleware(Guard)

    async def read_body(request: HTTPRequest) -> bytes:
        """The body, refusing it (413) as soon as it passes the limit (chunked bodies have no length), and
        giving up (408) on a client that stops sending mid-body."""
        buf = bytearray()

        async def read() -> None:
            async for chunk in request.stream():
                buf.extend(chunk)
                if len(buf) > opts.max_body:
                    raise APIError(413, f"the request body is over the limit of {opts.max_body} bytes",
                                   code="body_too_large", headers={"Connection": "close"})

        try:
            await asyncio.wait_for(read(), opts.body_timeout)
        except TimeoutError:
            raise APIError(408, f"the request body did not arrive within {opts.body_timeout:g} s",
                           code="body_timeout", headers={"Connection": "close"}) from None
        return bytes(buf)

    def subject(name: str, param: str = "model") -> Served:
        s = reg.subjects.get(name)
        if s is None:
            raise APIError(404, f"the model '{name}' does not exist; served: {', '.join(reg.subjects)}",
                           type="invalid_request_error", param=param, code="model_not_found")
        return s

    def model_obj(s: Served) -> dict[str, Any]:
        return {"id": s.id, "object": "model", "created": s.created, "owned_by": "promptc", "promptc": s.describe()}

    # --- health, metrics, models
    @app.get("/health", include_in_schema=False)
    async def health():
        return {"status": "ok", "models": list(reg.subjects)}

    @app.get("/metrics", include_in_schema=False)
    async def prom():
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", summary="List the served models")
    async def list_models():
        return {"object": "list", "data": [model_obj(s) for s in reg.subjects.values()]}

    @app.get("/v1/models/{model_id:path}", summary="Retrieve a served model")
    async def get_model(model_id: str):
        return model_obj(subject(model_id))

    # --- running
    async def wait_for(request: HTTPRequest, futures: list[asyncio.Future], t0: float) -> list[Generation]:
        """Wait for the engine; a client that goes away or a request over its time cancels its jobs (a job
        not yet started is then never run)."""
        gathered = asyncio.gather(*futures)
        gathered.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning later

        async def disconnected() -> None:  # the body is read: the next message is the disconnect
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watch = asyncio.ensure_future(disconnected())
        try:
            left = opts.request_timeout - (time.perf_counter() - t0)
            waiting: set[asyncio.Future[Any]] = {gathered, watch}
            done, _ = await asyncio.wait(waiting, timeout=max(0.0, left),
                                         return_when=asyncio.FIRST_COMPLETED)
            if gathered in done:
                return gathered.result()
            if watch in done:
                raise APIError(499, "the client closed the connection", type="client_closed")
            raise APIError(504, f"the request took over {opts.request_timeout:g} s", type="timeout_error",
                           code="timeout")
        except BaseException:
            for f in futures:
                f.cancel()
            gathered.cancel()
            raise
        finally:
            watch.cancel()

    async def check_length(s: Served, text: str, max_tokens: int, special: bool) -> int:
        if s.counter is None:
            return 0
        ctx = s.counter.context
        allows = f"with max_tokens={max_tokens} the model's context of {ctx} allows {max(0, ctx - max_tokens)}"
        floor = s.counter.at_least(text)
        if floor + max_tokens > ctx:  # refused without spending time tokenising it
            raise APIError(400, f"the prompt is at least {floor} tokens; {allows}", param="messages",
                           code="context_length_exceeded")
        n = await asyncio.to_thread(s.counter.count, text, special)  # off the loop and off the engine
        if n + max_tokens > ctx:
            raise APIError(400, f"the prompt is {n} tokens; {allows}", param="messages",
                           code="context_length_exceeded")
        return n

    def task_decoding(s: Served, max_tokens: int | None, temperature: float = 0.0, top_p: float = 1.0,
                      seed: int = 0) -> Decoding:
        from dataclasses import replace

        return replace(s.decoding, max_new_tokens=max_tokens or s.decoding.max_new_tokens, temperature=temperature,
                       top_p=top_p, seed=seed)

    async def run_task(request: HTTPRequest, s: Served, inputs: Any, dec: Decoding, n: int, t0: float,
                       param: str, size: int) -> list[tuple[Generation, Any]]:
        from dataclasses import replace

        from promptc.errors import InputError
        from promptc.outputs import parse_output

        assert s.build is not None and s.task is not None
        if not isinstance(inputs, dict):
            raise APIError(422, "the task input must be a JSON object with one entry per task input",
                           param=param, code="invalid_input")
        try:
            # validating and rendering a small input costs less than a hop to a worker thread
            (req,) = s.build([inputs]) if size < SMALL_INPUT else await asyncio.to_thread(s.build, [inputs])
        except InputError as e:
            raise _input_error(e, param) from None
        if s.family != "classifier" and hasattr(s.backend, "prompt_text"):
            # the backend's own final text (its chat template, if it uses one), off the event loop
            text = await asyncio.to_thread(s.backend.prompt_text, req)
            await check_length(s, text, dec.max_new_tokens, not s.templated())
        futures = []
        for i in range(n if dec.temperature > 0 else 1):
            d = dec if i == 0 else replace(dec, seed=dec.seed + i)
            futures.append(s.engine.submit(Job("requests", req, d, s.adapter)))
        gens = await wait_for(request, futures, t0)
        gens = gens * n if len(gens) == 1 and n > 1 else gens
        out = []
        for g in gens:
            if g.error:
                raise APIError(500, f"the model call failed: {g.error}", type="server_error")
            out.append((g, parse_output(s.task.output, g.text, finish_reason=g.finish_reason,
                                        budget=dec.max_new_tokens)))
        return out

    @app.post("/v1/chat/completions", summary="OpenAI Chat Completions")
    async def chat(request: HTTPRequest):
        t0 = time.perf_counter()
        p = parse_chat(parse_json_body(await read_body(request)), opts)
        s = subject(p.model)
        if s.kind == "model":
            results = await chat_model(request, s, p, t0)
        else:
            results = await chat_task(request, s, p, t0)
        return respond(p, s, results)

    async def chat_model(request: HTTPRequest, s: Served, p: ChatParams, t0: float) -> list[tuple[str, str, Generation]]:
        templated = s.templated()
        if templated:
            prompt = await asyncio.to_thread(
                lambda: s.counter.tokenizer.apply_chat_template(p.messages, tokenize=False,  # type: ignore[union-attr]
                                                                add_generation_prompt=True))
        else:
            prompt = messages_to_prompt(p.messages)
        max_tokens = p.max_tokens or opts.default_max_tokens
        await check_length(s, prompt, max_tokens, not templated)
        grammar = None
        if p.response_format is not None:
            grammar = await asyncio.to_thread(_schema_grammar, p.response_format)
        futures = []
        samples = p.n if p.temperature > 0 else 1
        for i in range(samples):
            dec = Decoding(max_new_tokens=max_tokens, temperature=p.temperature, top_p=p.top_p, seed=p.seed + i,
                           constrained=grammar is not None)
            futures.append(s.engine.submit(Job("text", (prompt, grammar, templated), dec)))
        gens = await wait_for(request, futures, t0)
        gens = gens * p.n if samples == 1 else gens
        out = []
        for g in gens:
            if g.error:
                raise APIError(500, f"the model call failed: {g.error}", type="server_error")
            out.append(_apply_stop(g.text, openai_finish(g.finish_reason), p.stop) + (g,))
        return out

    async def chat_task(request: HTTPRequest, s: Served, p: ChatParams, t0: float) -> list[tuple[str, str, Generation]]:
        last = next((m for m in reversed(p.messages) if m["role"] == "user"), None)
        if last is None:
            raise APIError(400, f"'{s.id}' runs a task: send its input as the last user message", param="messages")
        inputs = _task_input(s.task, last["content"])
        dec = task_decoding(s, p.max_tokens, p.temperature, p.top_p, p.seed)
        res = await run_task(request, s, inputs, dec, p.n, t0, "messages", len(last["content"]))
        json_mode = p.response_format is not None
        out = []
        for g, parsed in res:
            if parsed.ok:
                content = _typed_content(s.task.output, parsed.value, json_mode)  # type: ignore[union-attr]
                finish = openai_finish(g.finish_reason)
            else:
                content = g.text
                finish = "length" if parsed.cutoff or g.finish_reason == "length" else "stop"
            text, finish = _apply_stop(content, finish, p.stop)
            out.append((text, finish, g))
        return out

    def respond(p: ChatParams, s: Served, results: list[tuple[str, str, Generation]]):
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        pt = results[0][2].prompt_tokens if results else 0
        ct = sum(g.completion_tokens for _, _, g in results)
        m_tokens.labels("prompt").inc(pt)
        m_tokens.labels("completion").inc(ct)
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        if not p.stream:
            return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": s.id,
                    "choices": [{"index": i, "finish_reason": f, "logprobs": None,
                                 "message": {"role": "assistant", "content": text, "refusal": None}}
                                for i, (text, f, _) in enumerate(results)],
                    "usage": usage, "system_fingerprint": None})

        def chunk(choices: list[dict[str, Any]], with_usage: bool = False) -> str:
            obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                   "model": s.id, "choices": choices}
            if p.include_usage:
                obj["usage"] = usage if with_usage else None
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

        async def events():
            # generation runs batched, so the text is complete before the first event; it is still sent
            # as the chunks a streaming client expects (role, content pieces, finish, usage, [DONE])
            for i, (text, finish, _) in enumerate(results):
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
                for k in range(0, len(text), 16):
                    yield chunk([{"index": i, "delta": {"content": text[k:k + 16]}, "finish_reason": None}])
                yield chunk([{"index": i, "delta": {}, "finish_reason": finish}])
            if p.include_usage:
                yield chunk([], with_usage=True)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # --- typed task endpoints, one per task subject, each with its schemas in the OpenAPI docs
    def add_task_route(s: Served) -> None:
        from promptc.schema import inline_refs, json_schema

        assert s.task is not None
        in_schema = inline_refs(json_schema(s.task.input_type))
        out_schema = {"type": "object", "properties": {
            "model": {"type": "string"}, "output": inline_refs(json_schema(s.task.output)),
            "finish_reason": {"type": "string", "enum": ["stop", "length", "closed"]},
            "usage": {"type": "object"}}, "required": ["model", "output"]}

        async def run(request: HTTPRequest, max_tokens: int | None = None):
            t0 = time.perf_counter()
            raw = await read_body(request)
            inputs = parse_json_body(raw)
            if max_tokens is not None and not 1 <= max_tokens <= opts.max_tokens_limit:
                raise APIError(422, f"max_tokens must be between 1 and {opts.max_tokens_limit}", param="max_tokens")
            ((g, parsed),) = await run_task(request, s, inputs, task_decoding(s, max_tokens), 1, t0, "body", len(raw))
            m_tokens.labels("prompt").inc(g.prompt_tokens)
            m_tokens.labels("completion").inc(g.completion_tokens)
            usage = {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                     "total_tokens": g.prompt_tokens + g.completion_tokens}
            if not parsed.ok:
                assert s.task is not None  # checked when the route was added
                raise APIError(502, f"the model's output is not a valid {s.task.name} output: {parsed.error}",
                               type="model_output_error", code=parsed.kind,
                               extra={"raw": parsed.raw, "finish_reason": g.finish_reason, "usage": usage})
            return JSONResponse({"model": s.id, "output": parsed.value, "finish_reason": g.finish_reason or "stop",
                                 "usage": usage})  # a JSONResponse skips FastAPI's re-encoding of the dict

        app.add_api_route(
            f"/v1/tasks/{s.id}", run, methods=["POST"], name=f"task {s.id}",
            summary=f"{s.task.name} on {s.id}", tags=["tasks"],
            description=f"Run task `{s.task.name}` ({s.kind}) on one input; returns the validated typed output. "
                        "A body that does not fit the input schema is a 422 naming the field.",
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": in_schema}}}},
            responses={200: {"description": "the typed output",
                             "content": {"application/json": {"schema": out_schema}}},
                       422: {"description": "the input does not fit the task's input schema"},
                       502: {"description": "the model's output did not validate (e.g. cut off)"}})

    for s in reg.subjects.values():
        if s.task is not None:
            add_task_route(s)

    @app.post("/v1/tasks/{name:path}", include_in_schema=False)
    async def unknown_task(name: str):
        s = subject(name, param="subject")
        raise APIError(404, f"'{s.id}' is a model, not a task; use /v1/chat/completions", param="subject")

    return app


def _input_error(e: Exception, param: str) -> APIError:
    violations = getattr(e, "violations", []) or []
    detail = [{"loc": ["body", *v.path], "msg": v.message, "type": v.kind} for v in violations]
    field = violations[0].where("") if violations else None
    return APIError(422, str(e), param=field or param, code="invalid_input", extra={"detail": detail})


def _task_input(task: ir.Task | None, content: str) -> Any:
    assert task is not None
    try:
        value = json.loads(content, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        return value
    strs = [p.name for p in task.params if isinstance(ir.strip_optional(p.type), ir.StrT)]
    if len(task.params) == 1 and strs:
        return {strs[0]: content}
    names = ", ".join(p.name for p in task.params)
    raise APIError(400, f"task '{task.name}' takes a JSON object with its inputs ({names}) as the last user "
                        "message", param="messages", code="invalid_input")


def _typed_content(t: ir.Type, value: Any, json_mode: bool) -> str:
    """A typed output as message content: str/enum as raw text, else JSON; in a JSON response format,
    non-object outputs are wrapped as {"value": ...} (what promptc's openai: backend unwraps)."""
    if json_mode and not isinstance(t, ir.RecordT):
        return json.dumps({"value": value}, ensure_ascii=False)
    if isinstance(value, str) and isinstance(ir.strip_optional(t), (ir.StrT, ir.EnumT)):
        return value
    return json.dumps(value, ensure_ascii=False)


def openai_finish(reason: str | None) -> str:
    """A Generation's finish reason as OpenAI's API can say it: "closed" (the budget ran low and the value
    was closed early by constrained decoding) has no OpenAI value, and the closest legal one is "length"
    (the model did not end the reply itself)."""
    return "length" if reason in ("length", "closed") else "stop"


def _apply_stop(text: str, finish: str, stops: list[str]) -> tuple[str, str]:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], "stop") if cut >= 0 else (text, finish)


def _schema_grammar(rf: dict[str, Any]) -> Any:
    """The constraint for a response_format (json_object: any object).

    A json_schema within the subset grammar.shape_from_json_schema models (types, properties, arrays,
    enums, X-or-null, $ref, length and number bounds) gets the same bounded grammar and budget-aware
    tracker as `promptc run` gives task outputs: its value is closed before max_tokens runs out whenever
    the budget can hold the shortest valid value. Any other schema, and json_object, is enforced with
    llguidance's own JSON-Schema grammar, which does not bound numbers (a cut-off is then reported)."""
    from llguidance import LLMatcher

    from promptc.models.grammar import Caps, lark_from_shape, shape_from_json_schema
    from promptc.models.hf import Constraint

    schema = dict(rf["json_schema"]["schema"]) if rf["type"] == "json_schema" else {"type": "object"}
    root = shape_from_json_schema(schema, Caps())
    schema["x-guidance"] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
    try:
        grammar = LLMatcher.grammar_from_lark(lark_from_shape(root)) if root is not None else \
            LLMatcher.grammar_from_json_schema(schema)
        err = LLMatcher.validate_grammar(grammar)
    except Exception as e:  # noqa: BLE001 - any schema the engine cannot take is the client's 400
        err = str(e)
    if err:  # checked here: a bad schema inside a batch would fail the other requests in it
        raise APIError(400, f"response_format schema is not usable: {err}", param="response_format")
    return Constraint(grammar, root) if root is not None else grammar
