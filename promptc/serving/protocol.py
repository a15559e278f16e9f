"""The OpenAI side of `promptc serve`: server options, errors in OpenAI's shape, parsing a Chat Completions
request, and shaping what goes back (finish reasons, stop strings, typed content, response formats).
Pure functions: nothing here touches a model or the event loop."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

from promptc import ir


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
    header_timeout: float = 10.0  # seconds to receive a complete request head (new and kept-alive connections)
    keep_alive: int = 20  # seconds an idle kept-alive connection stays open (above clients' own 4-15 s)
    graceful_timeout: float = 30.0  # seconds work in flight may take to finish after SIGTERM/SIGINT
    max_sockets: int | None = None  # open connections at most (None: from the process's file limit)
    slow_log_every: float = 60.0  # seconds between log lines counting connections closed for a slow head


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


# Every field of OpenAI's chat request (openai's CompletionCreateParams) is applied, accepted as a hint that
# asks nothing of the reply, or refused with a 400 naming it unless it has the value promptc does anyway.
APPLIED = ("model", "messages", "max_tokens", "max_completion_tokens", "n", "stop", "stream", "stream_options",
           "temperature", "top_p", "seed", "response_format", "logit_bias")
HINTS = {"user": str, "safety_identifier": str, "prompt_cache_key": str, "metadata": dict}  # identifiers, tags
NO_OP: dict[str, tuple[Any, ...]] = {  # refused unless null or one of these (what promptc does anyway)
    "frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0), "logprobs": (False,), "top_logprobs": (0,),
    "store": (False,), "modalities": (["text"],), "service_tier": ("auto", "default"), "tool_choice": ("none",),
    "function_call": ("none",), "tools": ([],), "functions": ([],), "parallel_tool_calls": (),
    "audio": (), "prediction": (), "web_search_options": (), "reasoning_effort": (), "verbosity": (),
    "moderation": (), "prompt_cache_options": (), "prompt_cache_retention": ()}
LOGIT_BIAS_MAX = 1024  # entries; OpenAI's own limit is 300


def check_fields(body: dict[str, Any]) -> None:
    """Refuse (400, naming it) every field promptc would not apply."""
    for name, v in body.items():
        if name in APPLIED or v is None:
            continue
        if name in HINTS:
            if not isinstance(v, HINTS[name]):
                kind = "string" if HINTS[name] is str else "object"
                raise APIError(400, f"'{name}' must be a {kind}", param=name)
        elif name in NO_OP:
            if not any(_same(v, ok) for ok in NO_OP[name]):
                raise APIError(400, f"'{name}' is not supported by promptc serve (it would be ignored, so it is "
                                    "refused)", param=name, code="unsupported")
        else:
            raise APIError(400, f"unrecognized request field '{name}'", param=name, code="unknown_parameter")


def _same(v: Any, ok: Any) -> bool:
    """JSON equality that tells booleans from numbers (`0 == False` in Python)."""
    if isinstance(v, bool) or isinstance(ok, bool):
        return type(v) is type(ok) and v == ok
    return v == ok


def parse_logit_bias(v: Any) -> tuple[tuple[int, float], ...]:
    """OpenAI's `logit_bias` ({"token id": bias from -100 to 100}) as sorted (id, bias) pairs."""
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise APIError(400, "'logit_bias' must be an object mapping token ids to biases", param="logit_bias")
    if len(v) > LOGIT_BIAS_MAX:
        raise APIError(400, f"'logit_bias' has {len(v)} entries; at most {LOGIT_BIAS_MAX}", param="logit_bias")
    out = []
    for k, b in v.items():
        if not (isinstance(k, str) and k.isascii() and k.isdigit() and len(k) <= 9):
            raise APIError(400, f"'logit_bias' key {k!r} is not a token id", param="logit_bias")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or not -100 <= b <= 100:
            raise APIError(400, f"'logit_bias' value for {k} must be a number from -100 to 100", param="logit_bias")
        out.append((int(k), float(b)))
    return tuple(sorted(out))


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
    logit_bias: tuple[tuple[int, float], ...] = ()


def parse_chat(body: Any, opts: ServeOptions) -> ChatParams:
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "'model' is required (a string); GET /v1/models lists what is served", param="model")
    messages = _messages(body.get("messages"))
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _int({"max_tokens": mt}, "max_tokens", 1, opts.max_tokens_limit, None)
    stops = _stops(body.get("stop"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be true or false", param="stream")
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options")
    check_fields(body)
    rf = _response_format(body.get("response_format"))
    return ChatParams(
        model=model, messages=messages, max_tokens=max_tokens,
        temperature=_num(body, "temperature", 0.0, 2.0, 0.0), top_p=_num(body, "top_p", 0.0, 1.0, 1.0, lo_open=True),
        seed=_int(body, "seed", -(2 ** 63), 2 ** 63 - 1, 0) or 0, n=_int(body, "n", 1, opts.max_n, 1) or 1,
        stop=stops, stream=stream, include_usage=bool((so or {}).get("include_usage")), response_format=rf,
        logit_bias=parse_logit_bias(body.get("logit_bias")))


def _messages(msgs: Any) -> list[dict[str, str]]:
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
    return messages


def _stops(stop: Any) -> list[str]:
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
    return stops


def _response_format(rf: Any) -> dict[str, Any] | None:
    if rf is None:
        return None
    if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
        raise APIError(400, "'response_format.type' must be text, json_object or json_schema",
                       param="response_format")
    if rf["type"] == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("schema"), dict):
            raise APIError(400, "'response_format.json_schema.schema' must be a JSON Schema object",
                           param="response_format")
    return None if rf["type"] == "text" else rf


# ------------------------------------------------------------------ shaping replies
def input_error(e: Exception, param: str) -> APIError:
    violations = getattr(e, "violations", []) or []
    detail = [{"loc": ["body", *v.path], "msg": v.message, "type": v.kind} for v in violations]
    field = violations[0].where("") if violations else None
    return APIError(422, str(e), param=field or param, code="invalid_input", extra={"detail": detail})


def task_input(task: ir.Task | None, content: str) -> Any:
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


def typed_content(t: ir.Type, value: Any, json_mode: bool) -> str:
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


def apply_stop(text: str, finish: str, stops: list[str]) -> tuple[str, str]:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], "stop") if cut >= 0 else (text, finish)


def schema_grammar(rf: dict[str, Any]) -> Any:
    """The constraint for a response_format (json_object: any object); built once per distinct format
    (about 1.7 ms for a nested schema), since clients send the same schema request after request."""
    key = json.dumps(rf, sort_keys=True, ensure_ascii=False)
    # a big schema is built each time rather than held: 256 bodies of up to --max-body must not stay in memory
    return _schema_grammar(key) if len(key) <= CACHED_SCHEMA_CHARS else _schema_grammar.__wrapped__(key)


CACHED_SCHEMA_CHARS = 64 << 10


@functools.lru_cache(maxsize=256)
def _schema_grammar(key: str) -> Any:
    """`schema_grammar` of a response_format given as canonical JSON (an APIError is not cached).

    A json_schema within the subset grammar.shape_from_json_schema models (types, properties, arrays,
    enums, X-or-null, $ref, length and number bounds) gets the same bounded grammar and budget-aware
    tracker as `promptc run` gives task outputs: its value is closed before max_tokens runs out whenever
    the budget can hold the shortest valid value. Any other schema, and json_object, is enforced with
    llguidance's own JSON-Schema grammar, which does not bound numbers (a cut-off is then reported)."""
    from llguidance import LLMatcher

    from promptc.models.grammar import Caps, lark_from_shape, shape_from_json_schema
    from promptc.models.hf import Constraint

    rf = json.loads(key)
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
