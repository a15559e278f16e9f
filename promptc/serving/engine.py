"""Dynamic batching: one engine per loaded model, one thread per engine.

Requests waiting when the engine is free, plus those that arrive within `window` seconds (default 0),
up to `max_batch`, run as one batch: under load, requests that arrive while a batch runs form the next
one, and an idle server adds no wait (bench/serve.py). A batch
is split into groups that can share a model call (the same decoding, the same kind of input, the same
adapter); LoRA adapters of one base run in one call with peft's `adapter_names` where the engine was
told it may (`mixed_adapters`). A job whose client went away before its batch started is dropped, so a
disconnect frees its slot. Model calls never run concurrently on one model, and the event loop never
waits on one: they run on the engine's own thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from promptc.models.base import Decoding, Generation, Request


@dataclass
class Job:
    """One unit of work: task requests (`requests`) or final prompt text with a grammar (`text`)."""

    kind: str  # "requests" | "text"
    payload: Any  # a Request, or (prompt text, grammar or None, templated)
    decoding: Decoding
    adapter: str | None = None
    future: asyncio.Future | None = None
    queued: float = field(default_factory=time.perf_counter)
    # streaming (text jobs): called on the engine thread with each new piece of text; False stops its row.
    # A streamed job shares its batch with the others (its pieces are sent as its tokens are decoded).
    stream: Callable[[str], bool] | None = None
    started: bool = False  # taken into a model call (cancelling its future then no longer stops it)

    def group(self) -> tuple:
        templated = self.payload[2] if self.kind == "text" else None
        return (self.kind, templated, self.decoding, self.adapter)


class Engine:
    """Batches jobs for one backend (one model in memory, possibly with several adapters)."""

    def __init__(self, name: str, backend: Any, *, window: float = 0.0, max_batch: int = 32,
                 select_adapter: Callable[[str | None], None] | None = None, mixed_adapters: bool = False,
                 on_batch: Callable[[str, int], None] | None = None):
        self.name, self.backend = name, backend
        self.window, self.max_batch = window, max(1, max_batch)
        self.select_adapter = select_adapter
        self.mixed_adapters = mixed_adapters
        self.on_batch = on_batch
        self.queue: asyncio.Queue[Job] | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=f"promptc-engine-{name}")
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.running = 0  # jobs in the model call now running
        self.abort = threading.Event()

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop())
        self.abort.clear()
        if hasattr(self.backend, "stop_event"):
            self.backend.stop_event = self.abort

    async def stop(self) -> None:
        # a model call still running (its requests were answered by the drain) ends at its next token, so
        # the process does not wait for the rest of it
        self.abort.set()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, job: Job) -> asyncio.Future:
        assert self.queue is not None, "engine not started"
        job.future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(job)
        return job.future

    async def _collect(self) -> list[Job]:
        """The next batch: what is queued, and what arrives within `window`."""
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        await self._fill(batch, loop.time() + self.window)
        while len(batch) < self.max_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def _fill(self, batch: list[Job], until: float) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while len(batch) < self.max_batch and (left := until - loop.time()) > 0:
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                return

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [j for j in batch if j.future is not None and not j.future.done()]  # cancelled: gone
            if not live:
                continue
            for j in live:
                j.started = True
            groups: dict[tuple, list[Job]] = {}
            for j in live:
                key = j.group()
                if self.mixed_adapters and j.kind == "requests":
                    key = (*key[:3], "*")
                groups.setdefault(key, []).append(j)
            for jobs in groups.values():
                if self.on_batch:
                    self.on_batch(self.name, len(jobs))
                self.batches += 1
                self.running = len(jobs)
                try:
                    gens = await loop.run_in_executor(self.pool, self._run, jobs)
                except Exception as e:  # noqa: BLE001 - a failed batch fails its jobs, never the engine
                    for j in jobs:
                        if j.future is not None and not j.future.done():
                            j.future.set_exception(e)
                    continue
                finally:
                    self.running = 0
                for j, g in zip(jobs, gens):
                    if j.future is not None and not j.future.done():
                        j.future.set_result(g)

    def _run(self, jobs: list[Job]) -> list[Generation]:
        """On the engine thread: one model call for a group of compatible jobs."""
        first = jobs[0]
        adapters = [j.adapter for j in jobs]
        if self.select_adapter is not None and len(set(adapters)) == 1:
            self.select_adapter(adapters[0])
        if first.kind == "text":
            texts = [j.payload[0] for j in jobs]
            grammars = [j.payload[1] for j in jobs]
            if any(j.stream is not None for j in jobs):
                return self.backend.generate_text(texts, grammars, first.decoding, 0, templated=first.payload[2],
                                                  on_text=[j.stream for j in jobs])
            return self.backend.generate_text(texts, grammars, first.decoding, 0, templated=first.payload[2])
        requests: list[Request] = [j.payload for j in jobs]
        if len(set(adapters)) > 1:
            return self._mixed(requests, adapters, first.decoding)
        return self.backend.generate(requests, first.decoding, 0)

    def _mixed(self, requests: list[Request], adapters: list[str | None], decoding: Decoding) -> list[Generation]:
        """One call for rows on different adapters. HFBackend orders rows longest first; give it rows in
        that order already, so the per-row adapter names line up with the rows it builds."""
        b = self.backend
        special = not b.templated()
        lens = [len(b.tokenizer(b.prompt_text(r), add_special_tokens=special)["input_ids"]) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (-lens[i], i))
        assert self.select_adapter is not None
        self.select_adapter([adapters[i] for i in order])  # type: ignore[arg-type]
        saved = b.batch_size
        b.batch_size = max(saved, len(requests))  # one model call, so one list of names
        try:
            gens = b.generate([requests[i] for i in order], decoding, 0)
        finally:
            b.batch_size = saved
            self.select_adapter(None)
        out: list[Generation | None] = [None] * len(requests)
        for pos, i in enumerate(order):
            out[i] = gens[pos]
        return [g for g in out if g is not None]
