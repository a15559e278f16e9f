"""The ASGI app of `promptc serve`: OpenAI Chat Completions, typed task endpoints, models, health, metrics.

Why FastAPI (on Starlette, under uvicorn): the typed endpoint of each task gets OpenAPI docs (/docs,
/openapi.json) from the task's own JSON Schemas without a hand-written spec, while the OpenAI surface
parses bodies itself, so every malformed request gets a 4xx in OpenAI's error shape rather than a
framework's. uvicorn is the ASGI server FastAPI is deployed on; asyncio lets thousands of connections
wait while one engine thread per model runs batches.

The routes live beside this module: chat.py (Chat Completions), tasks.py (typed endpoints), guard.py (auth,
limits, metrics and errors in OpenAI's shape), protocol.py (request parsing and reply shaping) and
context.py (what the routes share).
"""

from __future__ import annotations

from typing import Any

from promptc.serving.chat import add_chat_route
from promptc.serving.context import Ctx
from promptc.serving.guard import Guard, add_error_handlers
from promptc.serving.protocol import APIError, ServeOptions, messages_to_prompt, parse_chat
from promptc.serving.subjects import Registry, Served
from promptc.serving.tasks import add_task_routes

__all__ = ["APIError", "ServeOptions", "create_app", "messages_to_prompt", "parse_chat"]


def create_app(reg: Registry, opts: ServeOptions | None = None) -> Any:
    """The FastAPI app serving `reg`."""
    from fastapi import FastAPI

    ctx = Ctx(reg, opts or ServeOptions())
    for e in reg.engines:
        e.on_batch = lambda name, n: ctx.metrics.batch.labels(name).observe(n)

    async def lifespan(app):
        for e in reg.engines:
            e.start()
        yield
        for e in reg.engines:
            await e.stop()

    app = FastAPI(title="promptc serve", version="1", lifespan=lifespan,
                  description="OpenAI-compatible Chat Completions and typed task endpoints for promptc "
                              "targets and artifacts.")
    app.state.ctx = ctx  # the server's drain (server.py) reaches the routes' shared state here
    add_error_handlers(app, ctx)
    app.add_middleware(Guard, ctx=ctx)
    add_info_routes(app, ctx)
    add_chat_route(app, ctx)
    add_task_routes(app, ctx)
    return app


def add_info_routes(app: Any, ctx: Ctx) -> None:
    """/health, /metrics, and the OpenAI models list and retrieve."""
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    reg = ctx.reg

    def model_obj(s: Served) -> dict[str, Any]:
        return {"id": s.id, "object": "model", "created": s.created, "owned_by": "promptc", "promptc": s.describe()}

    async def health():
        if ctx.draining:  # a load balancer takes this server out of rotation
            return JSONResponse({"status": "draining", "models": list(reg.subjects)}, status_code=503,
                                headers={"Retry-After": "1", "Connection": "close"})
        return {"status": "ok", "models": list(reg.subjects)}

    async def prom():
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def list_models():
        return {"object": "list", "data": [model_obj(s) for s in reg.subjects.values()]}

    async def get_model(model_id: str):
        return model_obj(ctx.subject(model_id))

    app.add_api_route("/health", health, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", prom, methods=["GET"], include_in_schema=False)
    app.add_api_route("/v1/models", list_models, methods=["GET"], summary="List the served models")
    app.add_api_route("/v1/models/{model_id:path}", get_model, methods=["GET"], summary="Retrieve a served model")
