"""`POST /v1/chat/completions`: straight to a served model, or to a task subject (its input as the last
user message, its typed output as the reply); answered whole or as server-sent events."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
import weakref
from dataclasses import replace
from typing import Any

from fastapi import Request as HTTPRequest  # module level: FastAPI resolves handler annotations by name

from promptc.models.base import Decoding, Generation
from promptc.serving.context import Ctx, task_decoding
from promptc.serving.engine import Job
from promptc.serving.protocol import (
    APIError,
    ChatParams,
    apply_stop,
    messages_to_prompt,
    openai_finish,
    parse_chat,
    parse_json_body,
    schema_grammar,
    task_input,
    typed_content,
)
from promptc.serving.subjects import Served

Choice = tuple[str, str, Generation]  # (content, finish_reason, the generation)


def add_chat_route(app: Any, ctx: Ctx) -> None:
    async def chat(request: HTTPRequest):
        t0 = time.perf_counter()
        p = parse_chat(parse_json_body(await ctx.read_body(request)), ctx.opts)
        s = ctx.subject(p.model)
        if p.logit_bias:
            check_logit_bias(s, p.logit_bias)
        if s.kind == "model" and p.stream and p.n == 1 and getattr(s.backend, "streams", False):
            return await stream_model(ctx, s, p, t0)  # token by token
        if s.kind == "model":
            results = await chat_model(ctx, request, s, p, t0)
        else:
            results = await chat_task(ctx, request, s, p, t0)
        return respond(ctx, p, s, results)

    app.add_api_route("/v1/chat/completions", chat, methods=["POST"], summary="OpenAI Chat Completions")


def check_logit_bias(s: Served, bias: tuple[tuple[int, float], ...]) -> None:
    """`logit_bias` applies to a generating model (a local model, a target or artifact on it, a tuned causal
    artifact); an artifact whose outputs are classes has no tokens to bias."""
    if s.family == "classifier" or not getattr(s.backend, "logit_bias", False):
        raise APIError(400, f"'{s.id}' does not generate tokens (its outputs are classes): logit_bias cannot apply",
                       param="logit_bias", code="unsupported")
    vocab = getattr(getattr(s.backend.model, "config", None), "vocab_size", None)
    bad = [t for t, _ in bias if vocab is not None and t >= vocab]
    if bad:
        raise APIError(400, f"'logit_bias': token id {bad[0]} is outside the vocabulary of {vocab} tokens",
                       param="logit_bias")


async def model_prompt(ctx: Ctx, s: Served, p: ChatParams) -> tuple[str, bool]:
    """The final prompt text for raw chat on the model (its chat template when it has one), and whether
    it is templated."""
    templated = s.templated()
    if templated:
        prompt = await asyncio.to_thread(
            lambda: s.counter.tokenizer.apply_chat_template(p.messages, tokenize=False,  # type: ignore[union-attr]
                                                            add_generation_prompt=True))
    else:
        prompt = messages_to_prompt(p.messages)
    return prompt, templated


async def model_job(ctx: Ctx, s: Served, p: ChatParams) -> tuple[str, Any, bool, int]:
    """(prompt, grammar, templated, max_tokens) of a chat request on the model, checked against the
    context and the response format before any generation starts."""
    prompt, templated = await model_prompt(ctx, s, p)
    max_tokens = p.max_tokens or ctx.opts.default_max_tokens
    await ctx.check_length(s, prompt, max_tokens, not templated)
    grammar = None
    if p.response_format is not None:
        grammar = await asyncio.to_thread(schema_grammar, p.response_format)
    return prompt, grammar, templated, max_tokens


async def chat_model(ctx: Ctx, request: HTTPRequest, s: Served, p: ChatParams, t0: float) -> list[Choice]:
    prompt, grammar, templated, max_tokens = await model_job(ctx, s, p)
    futures = []
    samples = p.n if p.temperature > 0 else 1
    for i in range(samples):
        dec = Decoding(max_new_tokens=max_tokens, temperature=p.temperature, top_p=p.top_p, seed=p.seed + i,
                       constrained=grammar is not None, logit_bias=p.logit_bias)
        futures.append(s.engine.submit(Job("text", (prompt, grammar, templated), dec)))
    gens = await ctx.wait_for(request, futures, t0)
    gens = gens * p.n if samples == 1 else gens
    out = []
    for g in gens:
        if g.error:
            raise APIError(500, f"the model call failed: {g.error}", type="server_error")
        out.append(apply_stop(g.text, openai_finish(g.finish_reason), p.stop) + (g,))
    return out


async def chat_task(ctx: Ctx, request: HTTPRequest, s: Served, p: ChatParams, t0: float) -> list[Choice]:
    assert s.task is not None  # a subject that is not the model runs a task
    last = next((m for m in reversed(p.messages) if m["role"] == "user"), None)
    if last is None:
        raise APIError(400, f"'{s.id}' runs a task: send its input as the last user message", param="messages")
    inputs = task_input(s.task, last["content"])
    dec = replace(task_decoding(s, p.max_tokens, p.temperature, p.top_p, p.seed), logit_bias=p.logit_bias)
    res = await ctx.run_task(request, s, inputs, dec, p.n, t0, "messages", len(last["content"]))
    json_mode = p.response_format is not None
    out = []
    for g, parsed in res:
        if parsed.ok:
            content = typed_content(s.task.output, parsed.value, json_mode)
            finish = openai_finish(g.finish_reason)
        else:
            content = g.text
            finish = "length" if parsed.cutoff or g.finish_reason == "length" else "stop"
        text, finish = apply_stop(content, finish, p.stop)
        out.append((text, finish, g))
    return out


def respond(ctx: Ctx, p: ChatParams, s: Served, results: list[Choice]) -> Any:
    from fastapi.responses import JSONResponse, StreamingResponse

    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    pt = results[0][2].prompt_tokens if results else 0
    usage = ctx.metrics.usage(pt, sum(g.completion_tokens for _, _, g in results))
    if not p.stream:
        return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": s.id,
                             "choices": [{"index": i, "finish_reason": f, "logprobs": None,
                                          "message": {"role": "assistant", "content": text, "refusal": None}}
                                         for i, (text, f, _) in enumerate(results)],
                             "usage": usage, "system_fingerprint": None})
    chunk = Chunker(cid, created, s.id, p.include_usage)

    async def events():
        # generation runs batched, so the text is complete before the first event; it is still sent
        # as the chunks a streaming client expects (role, content pieces, finish, usage, [DONE])
        for i, (text, finish, _) in enumerate(results):
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            for k in range(0, len(text), 16):
                yield chunk([{"index": i, "delta": {"content": text[k:k + 16]}, "finish_reason": None}])
            yield chunk([{"index": i, "delta": {}, "finish_reason": finish}])
        if p.include_usage:
            yield chunk([], usage=usage)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class Chunker:
    """Server-sent `chat.completion.chunk` events of one reply."""

    def __init__(self, cid: str, created: int, model: str, include_usage: bool):
        self.head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        self.include_usage = include_usage
        self._around: tuple[str, str] | None = None

    def __call__(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
        obj: dict[str, Any] = {**self.head, "choices": choices}
        if self.include_usage:
            obj["usage"] = usage
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    def content(self, text: str) -> str:
        """The event of one piece of choice 0's content: the same JSON as __call__ makes, from a template
        (a streamed reply sends one a token)."""
        if self._around is None:
            mark = "\x00promptc\x00"
            whole = self([{"index": 0, "delta": {"content": mark}, "finish_reason": None}])
            before, after = whole.split(json.dumps(mark, ensure_ascii=False))
            self._around = (before, after)
        return self._around[0] + json.dumps(text, ensure_ascii=False) + self._around[1]


# ------------------------------------------------------------------ streaming token by token
class Outbox:
    """Pieces from an engine thread to the event loop, collected by the loop every `every` seconds while a
    stream is open, rather than a wake-up per piece or per decoding step: a wake-up from another thread is
    a write to the loop's self-pipe, and on the engine thread that syscall gives the GIL away to the busy
    event loop, so every decoding step with a streamed row paid a GIL hand-off (py-spy on bench/serve.py
    --part streams --stream-tokens 128: 21% of the engine thread's samples inside call_soon_threadsafe; none
    with wake-ups at most every `every`, and the model's forward pass went from 38% to 59% of the samples).
    A piece waits at most `every` (5 ms);
    a piece that comes after a quiet spell wakes the loop at once. Pieces keep their order, and each is
    its own event; a stream's end is queued after a flush, so its last pieces come first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, every: float = 0.005):
        self.loop, self.every = loop, every
        self.items: list[tuple[Pieces, str]] = []
        self.lock = threading.Lock()
        self.open = 0  # streams open: the collector runs while there are any
        self.collector: asyncio.Task | None = None
        self.woken = 0.0  # when the loop last took the pieces (time.monotonic)
        self.armed = False  # a flush is scheduled

    def put(self, pieces: Pieces, text: str) -> None:
        """On the engine thread: a piece after a quiet spell wakes the loop at once (a slow model, or one
        stream, streams token by token); within `every` of the last flush it waits for the collector."""
        with self.lock:
            self.items.append((pieces, text))
            if self.armed or time.monotonic() - self.woken < self.every:
                return
            self.armed = True
        self.loop.call_soon_threadsafe(self.flush)

    def flush(self) -> None:
        """On the loop."""
        with self.lock:
            items, self.items, self.armed = self.items, [], False
            self.woken = time.monotonic()
        for pieces, text in items:
            pieces.queue.put_nowait(text)

    def opened(self) -> None:
        self.open += 1
        if self.collector is None or self.collector.done():
            self.collector = self.loop.create_task(self._collect())

    def closed(self) -> None:
        self.open -= 1

    async def _collect(self) -> None:
        while self.open > 0:
            await asyncio.sleep(self.every)
            self.flush()


_outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Outbox] = weakref.WeakKeyDictionary()


def outbox() -> Outbox:
    """The running loop's outbox."""
    loop = asyncio.get_running_loop()
    box = _outboxes.get(loop)
    if box is None:
        box = _outboxes[loop] = Outbox(loop)
    return box


class Pieces:
    """The streamed reply of one job. Called on the engine thread with each new piece of text: it holds
    back as many characters as a stop string could still need, cuts at the first stop string (and asks
    the engine to stop generating), and hands the rest to the event loop's queue."""

    def __init__(self, box: Outbox, stops: list[str]):
        self.box, self.stops = box, stops
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.hold = max((len(x) for x in stops), default=1) - 1
        self.buf = ""
        self.stopped = False  # a stop string was seen: the reply ends before it
        self.cancelled = False  # the client went away, or the request ran out of time
        self.expired = False  # the server's drain ran out of time: the stream ends with a 503 error event

    def __call__(self, piece: str) -> bool:
        if self.cancelled or self.stopped:
            return False
        self.buf += piece
        text, finish = apply_stop(self.buf, "", self.stops)
        if finish == "stop":
            self.stopped, self.buf = True, ""
            self._send(text)
            return False
        cut = len(self.buf) - self.hold
        if cut > 0:
            self._send(self.buf[:cut])
            self.buf = self.buf[cut:]
        return True

    def _send(self, text: str) -> None:
        if text:
            self.box.put(self, text)

    def expire(self) -> None:
        """On the event loop: end this stream with the drain's 503 (its generation stops at its next token)."""
        self.expired = self.cancelled = True
        self.queue.put_nowait(None)

    def rest(self) -> str:
        """What was held back, once generation has ended without a stop string."""
        return "" if self.stopped else self.buf


async def stream_model(ctx: Ctx, s: Served, p: ChatParams, t0: float) -> Any:
    """Chat on the model with `stream: true`: each piece is sent as it is generated, in the engine's batch
    with the other requests. Mistakes in the request are still 4xx answers: they are found before the
    stream starts."""
    from fastapi.responses import StreamingResponse

    prompt, grammar, templated, max_tokens = await model_job(ctx, s, p)
    dec = Decoding(max_new_tokens=max_tokens, temperature=p.temperature, top_p=p.top_p, seed=p.seed,
                   constrained=grammar is not None, logit_bias=p.logit_bias)
    pieces = Pieces(outbox(), p.stop)
    job = Job("text", (prompt, grammar, templated), dec, stream=pieces)
    future = s.engine.submit(job)
    pieces.box.opened()

    def ended(f: asyncio.Future) -> None:  # generated, failed or cancelled: the last pieces, then the end
        pieces.box.flush()
        pieces.box.closed()
        pieces.queue.put_nowait(None)

    future.add_done_callback(ended)
    future.add_done_callback(lambda f: _count_tokens(ctx, f))  # counted even when the client left mid-stream
    return StreamingResponse(stream_events(ctx, p, s, pieces, job, t0), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def stream_events(ctx: Ctx, p: ChatParams, s: Served, pieces: Pieces, job: Job, t0: float) -> Any:
    assert job.future is not None  # submitted
    future = job.future
    chunk = Chunker(f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), s.id, p.include_usage)
    ctx.streams.add(pieces)
    try:
        if ctx.drain_expired is not None and ctx.drain_expired.done():
            pieces.expire()
        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        while (piece := await _next_piece(ctx, pieces, t0)) is not None:
            yield chunk.content(piece)
        if pieces.expired:
            raise ctx.drain_error()
        g = future.result()
        if g.error:
            raise APIError(500, f"the model call failed: {g.error}", type="server_error")
        if pieces.rest():
            yield chunk([{"index": 0, "delta": {"content": pieces.rest()}, "finish_reason": None}])
        finish = "stop" if pieces.stopped else openai_finish(g.finish_reason)
        yield chunk([{"index": 0, "delta": {}, "finish_reason": finish}])
        if p.include_usage:
            total = g.prompt_tokens + g.completion_tokens
            yield chunk([], usage={"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                                   "total_tokens": total})
    except APIError as e:  # the status line is sent: the error goes in the stream, as OpenAI's servers do
        ctx.metrics.errors.labels(e.type).inc()
        yield f"data: {json.dumps(e.body(), ensure_ascii=False)}\n\n"
    except Exception as e:  # noqa: BLE001 - a failed model call ends the stream with an error event
        yield f"data: {json.dumps(APIError(500, f'the model call failed: {e}', type='server_error').body())}\n\n"
    finally:  # done, failed, or the client went away (the generator is closed): stop generating
        ctx.streams.discard(pieces)
        pieces.cancelled = True  # a running generation stops at its next token (and its tokens are counted)
        if not job.started:
            future.cancel()  # a job not yet started is never run
    yield "data: [DONE]\n\n"


def _count_tokens(ctx: Ctx, future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is None:
        g = future.result()
        ctx.metrics.usage(g.prompt_tokens, g.completion_tokens)


async def _next_piece(ctx: Ctx, pieces: Pieces, t0: float) -> str | None:
    """The next piece, or None at the end."""
    q = pieces.queue
    if not q.empty():
        return q.get_nowait()
    left = ctx.opts.request_timeout - (time.perf_counter() - t0)
    try:
        async with asyncio.timeout(max(0.0, left)):  # no task per piece, as wait_for makes
            return await q.get()
    except TimeoutError:
        raise APIError(504, f"the request took over {ctx.opts.request_timeout:g} s", type="timeout_error",
                       code="timeout") from None
