"""Typed task endpoints: `POST /v1/tasks/{subject}`, one route per task subject, each documented in the
OpenAPI spec with its task's input and output JSON Schemas."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request as HTTPRequest  # module level: FastAPI resolves handler annotations by name

from promptc.serving.context import Ctx, task_decoding
from promptc.serving.protocol import APIError, parse_json_body
from promptc.serving.subjects import Served


def add_task_routes(app: Any, ctx: Ctx) -> None:
    for s in ctx.reg.subjects.values():
        if s.task is not None:
            add_task_route(app, ctx, s)

    async def unknown_task(name: str):
        s = ctx.subject(name, param="subject")
        raise APIError(404, f"'{s.id}' is a model, not a task; use /v1/chat/completions", param="subject")

    app.add_api_route("/v1/tasks/{name:path}", unknown_task, methods=["POST"], include_in_schema=False)


def add_task_route(app: Any, ctx: Ctx, s: Served) -> None:
    assert s.task is not None
    task = s.task

    async def run(request: HTTPRequest, max_tokens: int | None = None):
        from fastapi.responses import JSONResponse

        t0 = time.perf_counter()
        raw = await ctx.read_body(request)
        inputs = parse_json_body(raw)
        if max_tokens is not None and not 1 <= max_tokens <= ctx.opts.max_tokens_limit:
            raise APIError(422, f"max_tokens must be between 1 and {ctx.opts.max_tokens_limit}", param="max_tokens")
        dec = task_decoding(s, max_tokens)
        ((g, parsed),) = await ctx.run_task(request, s, inputs, dec, 1, t0, "body", len(raw))
        usage = ctx.metrics.usage(g.prompt_tokens, g.completion_tokens)
        if not parsed.ok:
            raise APIError(502, f"the model's output is not a valid {task.name} output: {parsed.error}",
                           type="model_output_error", code=parsed.kind,
                           extra={"raw": parsed.raw, "finish_reason": g.finish_reason, "usage": usage})
        return JSONResponse({"model": s.id, "output": parsed.value, "finish_reason": g.finish_reason or "stop",
                             "usage": usage})  # a JSONResponse skips FastAPI's re-encoding of the dict

    in_schema, out_schema = _schemas(s)
    app.add_api_route(
        f"/v1/tasks/{s.id}", run, methods=["POST"], name=f"task {s.id}",
        summary=f"{task.name} on {s.id}", tags=["tasks"],
        description=f"Run task `{task.name}` ({s.kind}) on one input; returns the validated typed output. "
                    "A body that does not fit the input schema is a 422 naming the field.",
        openapi_extra={"requestBody": {"required": True,
                                       "content": {"application/json": {"schema": in_schema}}}},
        responses={200: {"description": "the typed output",
                         "content": {"application/json": {"schema": out_schema}}},
                   422: {"description": "the input does not fit the task's input schema"},
                   502: {"description": "the model's output did not validate (e.g. cut off)"}})


def _schemas(s: Served) -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI request and response schemas of a task subject's route."""
    from promptc.schema import inline_refs, json_schema

    assert s.task is not None
    in_schema = inline_refs(json_schema(s.task.input_type))
    out_schema = {"type": "object", "properties": {
        "model": {"type": "string"}, "output": inline_refs(json_schema(s.task.output)),
        "finish_reason": {"type": "string", "enum": ["stop", "length", "closed"]},
        "usage": {"type": "object"}}, "required": ["model", "output"]}
    return in_schema, out_schema
