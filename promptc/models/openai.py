"""`openai:<model>[@<base_url>]`: any server speaking the OpenAI Chat Completions API (vLLM,
llama.cpp server, Ollama, promptc serve, ...).

Why httpx and not the official openai SDK: bench/http_client.py, one run against one local server
(2-core machine): import 84 ms (httpx) against 386 ms (SDK); 1,172 against 585 requests/s at concurrency
1 and 496 against 552 at concurrency 16. Throughput is a wash under load, the SDK costs 0.3 s on every
`promptc run`, and the guarantees below need control that the SDK hides: it follows redirects, its
timeouts are per read (a server trickling a byte every few seconds never times out), and it caps
Retry-After on its own terms.

What this backend guarantees:
- Credentials never leave the base URL's origin: redirects to another origin are refused (never followed
  with the key); a same-origin 307/308 is followed.
- The API key is redacted from every message promptc prints or writes (an error body that echoes the
  request headers included). The cache never sees it.
- Every attempt has an overall deadline (`timeout`, connect to last byte) and every request a total
  deadline across its retries (`deadline`); a stalled or trickling server times out.
- Retries with exponential backoff on 429, 5xx, timeouts and dropped connections, honouring
  `Retry-After` (seconds or an HTTP date; negative, infinite or garbage values fall back to backoff).
- Rate limits (`rpm`, `tpm`), token usage, cost from a price table, and `max_cost`: a request that
  could take the spend over the budget is not sent.
- Structured outputs for every output type (non-object types are wrapped for strict json_schema and
  unwrapped on return), and json-repair for near-JSON from servers without structured outputs.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from promptc import ir
from promptc.errors import UsageError
from promptc.models.base import Decoding, Generation, Request
from promptc.models.loading import parse_model_spec
from promptc.schema import inline_refs, json_schema

DEFAULT_BASE = "https://api.openai.com/v1"
WRAP_KEY = "value"
MAX_RESPONSE_BYTES = 16 << 20  # a reply bigger than this is a broken or hostile server, not an answer
PRICES_ENV = "PROMPTC_PRICES"


# ------------------------------------------------------------------ structured outputs
def structured_schema(t: ir.Type) -> tuple[dict[str, Any], bool]:
    """The strict json_schema for an output type, and whether it was wrapped. Strict structured outputs
    want an object at the root, so every other type (enum, str, int, list, optional) is sent as
    `{"value": <type>}` and unwrapped on return."""
    schema = inline_refs(json_schema(t))
    if isinstance(t, ir.RecordT):
        return schema, False
    return {"type": "object", "properties": {WRAP_KEY: schema}, "required": [WRAP_KEY],
            "additionalProperties": False}, True


def response_format(t: ir.Type) -> dict[str, Any]:
    """`response_format` for structured outputs, for any output type."""
    schema, _ = structured_schema(t)
    return {"type": "json_schema", "json_schema": {"name": "output", "strict": True, "schema": schema}}


def _raw_text_type(t: ir.Type) -> bool:
    return isinstance(ir.strip_optional(t), (ir.StrT, ir.EnumT))


def unwrap(t: ir.Type, text: str) -> str:
    """The model's text for `t` from a wrapped structured reply (`{"value": ...}`). `str` and enum
    outputs come back as their raw text, everything else as JSON. Text that is not a wrapped reply is
    returned unchanged, so the parser reports what is wrong with it."""
    if isinstance(t, ir.RecordT):
        return text
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text
    if not isinstance(obj, dict) or set(obj) != {WRAP_KEY}:
        return text
    value = obj[WRAP_KEY]
    if value is None:
        return "null"
    if _raw_text_type(t) and isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def repair(t: ir.Type, text: str) -> str | None:
    """Near-JSON made JSON with json-repair, for servers without structured outputs; None when the text
    already parses, the type is read as raw text, or nothing usable comes out. The caller still
    validates the result against the schema.

    Why json-repair: bench/repair.py, on 16 near-JSON replies (trailing commas, single quotes, unquoted
    keys, comments, Python literals, fences with prose, curly quotes), recovers 16 of 16 against the
    existing extractor's 4 of 16, at ~0.4 ms a reply; it is maintained and pure Python. It also "repairs"
    a reply cut off at the budget, so a `length` finish is never repaired (it is reported as a cut-off)."""
    from promptc.outputs import extract_json

    if _raw_text_type(t):
        return None
    try:
        extract_json(text)
        return None
    except ValueError:
        pass
    try:
        import json_repair
    except ImportError:  # the [http] extra is not installed: no repair, the parser reports the text
        return None
    try:
        value = json_repair.loads(text)
    except Exception:  # noqa: BLE001 - a repair that fails is simply no repair
        return None
    if value == "" or value is None and "null" not in text:
        return None
    return json.dumps(value, ensure_ascii=False)


# ------------------------------------------------------------------ secrets
_BEARER = re.compile(r"(Bearer\s+)[^\s\"',;]+", re.I)


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret, and anything sent as a bearer token, replaced by `[redacted]`."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return _BEARER.sub(r"\1[redacted]", text)


# ------------------------------------------------------------------ retry timing
def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or an HTTP date) or `retry-after-ms`; None when
    absent or unusable (negative, infinite, NaN or garbage)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            v = float(ms) / 1000.0
            if math.isfinite(v) and v >= 0:
                return v
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        v = float(raw)
        return v if math.isfinite(v) and v >= 0 else None
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, delta)


# ------------------------------------------------------------------ prices, usage, budget
def load_prices(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """The price table: `{"model": {"input": USD per 1M prompt tokens, "output": USD per 1M completion
    tokens}}`, from `path` or the file named by $PROMPTC_PRICES. None of either: an empty table (promptc
    ships no prices; they change)."""
    src = path if path is not None else os.environ.get(PRICES_ENV)
    if not src:
        return {}
    p = Path(src)
    try:
        table = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read the price table {p}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"the price table {p} is not valid JSON: {e}") from None
    ok = isinstance(table, dict) and all(
        isinstance(v, dict) and set(v) <= {"input", "output"} and
        all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in v.values())
        for v in table.values())
    if not ok:
        raise UsageError(f"the price table {p} must map model names to {{\"input\": USD, \"output\": USD}} "
                         "per million tokens")
    return {k: {"input": float(v.get("input", 0)), "output": float(v.get("output", 0))} for k, v in table.items()}


@dataclass
class Spend:
    """Tokens and cost over a backend's life (all requests, all calls); `reserved` covers requests in
    flight, at their worst case, so concurrent requests cannot jointly overrun `max_cost`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    reserved: float = 0.0
    requests: int = 0
    refused: int = 0


class _RateLimiter:
    """Requests and tokens per minute over a sliding 60 s window."""

    def __init__(self, rpm: float | None, tpm: float | None):
        self.rpm, self.tpm = rpm, tpm
        self.window = 60.0
        self.calls: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()

    async def acquire(self, lock: asyncio.Lock, tokens: int) -> None:
        if not self.rpm and not self.tpm:
            return
        async with lock:
            while True:
                now = time.monotonic()
                while self.calls and now - self.calls[0] >= self.window:
                    self.calls.popleft()
                while self.tokens and now - self.tokens[0][0] >= self.window:
                    self.tokens.popleft()
                waits = []
                if self.rpm and len(self.calls) >= self.rpm:
                    waits.append(self.window - (now - self.calls[0]))
                used = sum(n for _, n in self.tokens)
                if self.tpm and self.tokens and used + tokens > self.tpm:
                    waits.append(self.window - (now - self.tokens[0][0]))
                if not waits:
                    self.calls.append(now)
                    self.tokens.append((now, tokens))
                    return
                await asyncio.sleep(max(0.01, min(waits)))


class _Failure(Exception):
    """One attempt failed: `retry` says whether another attempt may help; `wait` is the server's ask."""

    def __init__(self, message: str, retry: bool, wait: float | None = None):
        super().__init__(message)
        self.retry, self.wait = retry, wait


CLIENT_CONNECTIONS = 4  # connections per httpx client (see OpenAIBackend._generate_all)


def _origin(url: str) -> tuple[str, str, int | None]:
    u = urlsplit(url)
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return u.scheme, (u.hostname or "").lower(), port


def _run(coro):
    """Run a coroutine to completion from sync code, also when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class _Job:
    request: Request
    body: dict[str, Any]
    estimate_tokens: int
    worst_cost: float
    wrapped: bool = False
    generation: Generation | None = field(default=None)


class OpenAIBackend:
    """Chat Completions over httpx (pooled connections, asyncio). Options, all keyword:

    - `api_key_env`: the environment variable holding the key (default OPENAI_API_KEY);
    - `timeout`: seconds for one attempt, connect to last byte (default 60);
    - `deadline`: seconds for one request across all its attempts (default 180);
    - `retries`, `backoff`, `max_backoff`: retry policy (4 retries, 0.5 s doubling, at most 30 s);
    - `concurrency`: requests in flight at once (default 4);
    - `rpm`, `tpm`: rate limits in requests and tokens per minute (default none);
    - `prices`: a price table or the path of one (default $PROMPTC_PRICES); `max_cost`: USD budget;
    - `repair`: repair near-JSON with json-repair when the reply does not parse (default on).
    """

    def __init__(self, spec: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 deadline: float | None = 180.0, retries: int = 4, backoff: float = 0.5, max_backoff: float = 30.0,
                 concurrency: int = 4, rpm: float | None = None, tpm: float | None = None,
                 prices: dict[str, dict[str, float]] | str | Path | None = None, max_cost: float | None = None,
                 repair: bool = True, connect_timeout: float = 10.0):
        parsed = parse_model_spec(spec)
        self.spec = spec
        self.model = parsed.name
        self.base_url = (parsed.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE).rstrip("/")
        if urlsplit(self.base_url).scheme not in ("http", "https") or not urlsplit(self.base_url).hostname:
            raise UsageError(f"'{self.base_url}' is not an http(s) base URL",
                             hint="use openai:<model>@http://host:port/v1")
        for name, v in (("timeout", timeout), ("retries", retries), ("concurrency", concurrency)):
            if v is None or v < (0 if name == "retries" else 1e-9):
                raise UsageError(f"--{name} must be positive")
        self._key_env = api_key_env
        self.timeout = float(timeout)
        self.deadline = float(deadline) if deadline else None
        self.connect_timeout = min(float(connect_timeout), self.timeout)
        self.retries = int(retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = max(1, int(concurrency))
        self.limiter = _RateLimiter(rpm, tpm)
        self.prices = prices if isinstance(prices, dict) else load_prices(prices)
        self.max_cost = max_cost
        if max_cost is not None and self.price() is None:
            raise UsageError(f"--max-cost needs a price for model '{self.model}'",
                             hint=f"give --prices FILE.json (or set ${PRICES_ENV}) with "
                                  f"{{\"{self.model}\": {{\"input\": USD, \"output\": USD}}}} per million tokens")
        self.repair = repair
        self.spend = Spend()
        self.attempts = 0  # HTTP calls made, for reports and tests

    # --- identity and requests
    def identity(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def request_key(self, request: Request, decoding: Decoding) -> Any:
        rf = response_format(request.output) if decoding.structured else None
        return {"messages": request.messages, "response_format": rf}

    def _secrets(self) -> list[str]:
        key = os.environ.get(self._key_env)
        return [key] if key else []

    def price(self) -> dict[str, float] | None:
        return self.prices.get(self.model)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for a call, or None when the price table has no entry for this model."""
        p = self.price()
        if p is None:
            return None
        return (prompt_tokens * p["input"] + completion_tokens * p["output"]) / 1e6

    # --- generation
    def generate(self, requests: list[Request], decoding: Decoding, sample: int = 0) -> list[Generation]:
        jobs = [self._job(r, decoding, sample) for r in requests]
        _run(self._generate_all(jobs))
        return [j.generation or Generation("", error="no attempt") for j in jobs]

    def _job(self, request: Request, decoding: Decoding, sample: int) -> _Job:
        body: dict[str, Any] = {"model": self.model, "messages": request.messages,
                                "max_tokens": decoding.max_new_tokens, "temperature": decoding.temperature}
        if decoding.temperature > 0:
            body["top_p"] = decoding.top_p
            body["seed"] = decoding.seed + sample
        else:
            body["seed"] = decoding.seed
        if decoding.logit_bias:
            body["logit_bias"] = {str(t): b for t, b in decoding.logit_bias}
        wrapped = False
        if decoding.structured:
            schema, wrapped = structured_schema(request.output)
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "strict": True, "schema": schema}}
        # rate limits count ~3 characters a token (English averages ~4); the cost budget counts 2 UTF-8
        # bytes a token, high for any script (CJK is ~3 bytes and 1-1.5 tokens a character), so a request
        # is refused rather than allowed to overrun --max-cost
        contents = [m.get("content") or "" for m in request.messages]
        est_prompt = sum(len(c) for c in contents) // 3 + 8 * len(contents)
        worst_prompt = sum(len(c.encode("utf-8")) for c in contents) // 2 + 8 * len(contents)
        worst = self.cost(worst_prompt, decoding.max_new_tokens) or 0.0
        return _Job(request, body, est_prompt + decoding.max_new_tokens, worst, wrapped)

    async def _generate_all(self, jobs: list[_Job]) -> None:
        try:
            import httpx
        except ImportError:
            raise UsageError("the openai: backend needs httpx", hint="pip install 'promptc[http]'") from None

        import contextlib

        lock = asyncio.Lock()
        timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout)
        # One httpx client per CLIENT_CONNECTIONS slots, not one pool for all: httpcore's pool rescans
        # every connection (a poll() syscall each) whenever a request starts or ends, so one pool of 32
        # connections spent about 1 ms of CPU per request on that alone and capped a 2-core runner at 84%
        # of what a 100 ms server allows (bench/testing.py). A request takes a free slot and uses that
        # slot's client, so no client ever has more requests than connections.
        per = CLIENT_CONNECTIONS
        slots: asyncio.Queue[int] = asyncio.Queue()
        for i in range(self.concurrency):
            slots.put_nowait(i)
        tls = httpx.create_ssl_context()  # one for all clients: loading the CA bundle costs ~20 ms each
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(httpx.AsyncClient(
                timeout=timeout, follow_redirects=False, verify=tls,
                limits=httpx.Limits(max_connections=per, max_keepalive_connections=per)))
                for _ in range((self.concurrency + per - 1) // per)]

            async def one(job: _Job) -> None:
                slot = await slots.get()
                try:
                    job.generation = await self._one(clients[slot // per], lock, job)
                finally:
                    slots.put_nowait(slot)

            await asyncio.gather(*(one(j) for j in jobs))

    async def _one(self, client: Any, lock: asyncio.Lock, job: _Job) -> Generation:
        secrets = self._secrets()
        if self.max_cost is not None:
            s = self.spend
            if s.cost + s.reserved + job.worst_cost > self.max_cost + 1e-12:
                s.refused += 1
                return Generation("", error=(
                    f"not sent: it could cost up to ${job.worst_cost:.6f} and --max-cost ${self.max_cost:g} "
                    f"would be exceeded (spent ${s.cost:.6f} so far)"))
            s.reserved += job.worst_cost
        try:
            return await self._attempts(client, lock, job, secrets)
        finally:
            if self.max_cost is not None:
                self.spend.reserved -= job.worst_cost

    async def _attempts(self, client: Any, lock: asyncio.Lock, job: _Job, secrets: list[str]) -> Generation:
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if secrets:
            headers["Authorization"] = f"Bearer {secrets[0]}"
        data = json.dumps(job.body).encode("utf-8")
        t0 = time.perf_counter()
        stop_at = None if self.deadline is None else time.monotonic() + self.deadline
        last = "no attempt"
        for attempt in range(self.retries + 1):
            await self.limiter.acquire(lock, job.estimate_tokens)
            self.attempts += 1
            remaining = None if stop_at is None else stop_at - time.monotonic()
            budget = self.timeout if remaining is None else min(self.timeout, remaining)
            if budget <= 0:
                last = f"the request deadline of {self.deadline:g} s ran out"
                break
            try:
                async with asyncio.timeout(budget):  # (wait_for would start a task per request)
                    payload = await self._post(client, url, headers, data)
                return self._generation(job, payload, url, time.perf_counter() - t0)
            except TimeoutError:
                last = (f"timed out after {budget:g} s calling {url} (no complete answer; raise --timeout "
                        "for slow servers)")
                wait: float | None = None
                retry = True
            except _Failure as f:
                last, retry, wait = str(f), f.retry, f.wait
            if not retry:
                return Generation("", error=redact(last, secrets))
            if attempt < self.retries:
                delay = min(self.max_backoff, self.backoff * (2 ** attempt)) if wait is None else \
                    min(self.max_backoff, wait)
                if stop_at is not None and time.monotonic() + delay >= stop_at:
                    last += f"; the request deadline of {self.deadline:g} s leaves no time to retry"
                    break
                await asyncio.sleep(delay)
        return Generation("", error=redact(f"gave up after {attempt + 1} attempts: {last}", secrets))

    async def _post(self, client: Any, url: str, headers: dict[str, str], data: bytes) -> Any:
        """One attempt: POST, follow only same-origin 307/308 redirects, read at most MAX_RESPONSE_BYTES."""
        import httpx

        target = url
        for _hop in range(4):
            try:
                async with client.stream("POST", target, content=data, headers=headers) as resp:
                    if resp.status_code in (301, 302, 303, 307, 308):
                        loc = resp.headers.get("location")
                        if not loc:
                            raise _Failure(f"HTTP {resp.status_code} from {target} without a Location", False)
                        nxt = urljoin(target, loc)
                        if _origin(nxt) != _origin(url):
                            o = urlsplit(nxt)
                            raise _Failure(
                                f"the server at {url} redirected to another origin ({o.scheme}://{o.netloc}); "
                                "promptc never sends credentials across origins and did not follow it "
                                "(set the base URL to the server that answers)", False)
                        if resp.status_code not in (307, 308):
                            raise _Failure(f"HTTP {resp.status_code} redirect from {target} would turn the POST "
                                           "into a GET; set the base URL to the final address", False)
                        target = nxt
                        continue
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > MAX_RESPONSE_BYTES:
                            raise _Failure(f"the response from {target} is over {MAX_RESPONSE_BYTES >> 20} MB; "
                                           "refusing to read it", False)
                    status = resp.status_code
                    if status == 200:
                        try:
                            return json.loads(body.decode("utf-8"))
                        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                            raise _Failure(f"malformed response from {target}: the body is not JSON "
                                           f"(starts {bytes(body[:80])!r})", False) from None
                    detail = body[:4000].decode("utf-8", "replace")
                    msg = f"HTTP {status} from {target}: {detail}"
                    retry = status in (408, 409, 429) or 500 <= status < 600
                    wait = retry_after_seconds(resp.headers) if retry else None
                    raise _Failure(msg, retry, wait)
            except httpx.RemoteProtocolError as e:
                raise _Failure(f"truncated or broken response from {target}: the server closed the connection "
                               f"before the answer was complete ({e})", True) from None
            except (httpx.TimeoutException, httpx.NetworkError) as e:
                raise _Failure(f"{type(e).__name__} calling {target}: {e or 'no detail'}", True) from None
            except httpx.HTTPError as e:
                raise _Failure(f"{type(e).__name__} calling {target}: {e}", False) from None
        raise _Failure(f"too many redirects from {url}", False)

    def _generation(self, job: _Job, payload: Any, url: str, seconds: float) -> Generation:
        def bad(why: str) -> Generation:
            return Generation("", error=redact(f"malformed response from {url}: {why}", self._secrets()))

        if not isinstance(payload, dict):
            return bad(f"expected a JSON object, got {type(payload).__name__}")
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return bad("no choices")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            return bad("choices[0].message is missing")
        content = message.get("content")
        if content is None and message.get("refusal"):
            return Generation("", error=redact(f"the model refused: {str(message['refusal'])[:300]}",
                                               self._secrets()))
        if not isinstance(content, str):
            return bad(f"choices[0].message.content is {type(content).__name__}, not a string")
        raw_usage = payload.get("usage")
        usage = raw_usage if isinstance(raw_usage, dict) else {}

        def count(key: str) -> int:
            v = usage.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

        pt, ct = count("prompt_tokens"), count("completion_tokens")
        finish = choices[0].get("finish_reason")
        finish = finish if isinstance(finish, str) else None
        text = unwrap(job.request.output, content) if job.wrapped else content
        g = Generation(text, pt, ct, seconds, finish_reason=finish)
        if self.repair and finish != "length":  # a cut-off is reported as one, never "repaired" shut
            fixed = repair(job.request.output, text)
            if fixed is not None:
                g.text = fixed
                g.repaired = True
                g.original = text  # type: ignore[attr-defined]
        c = self.cost(pt, ct)
        s = self.spend
        s.prompt_tokens += pt
        s.completion_tokens += ct
        s.requests += 1
        if c is not None:
            s.cost += c
            g.cost = c  # type: ignore[attr-defined]
        return g
