"""Model specs and loading hygiene shared by every local backend and the tune target."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from promptc.errors import ModelError, UsageError

SPEC_FORMS = "hf:<dir or hub id>, openai:<model>[@<base_url>] or tiny-causal"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A parsed `--model` value: which backend, and the name (directory, hub id or API model) it takes."""

    backend: str  # "hf" | "openai"
    name: str
    base_url: str | None = None

    @property
    def local(self) -> bool:
        """Runs in this process (batched, with a batch size), as hf: and tiny-causal do."""
        return self.backend == "hf"


def parse_model_spec(spec: str) -> ModelSpec:
    """The one parser of model specs: `hf:<dir or hub id>`, `openai:<model>[@<base_url>]`, `tiny-causal`."""
    if spec == "tiny-causal":
        return ModelSpec("hf", "tiny-causal")
    if spec.startswith("hf:") and spec[3:]:
        return ModelSpec("hf", spec[3:])
    if spec.startswith("openai:"):
        # the base URL follows the last "@" that starts a URL, so model names may hold "@" (name@version)
        rest = spec[len("openai:"):]
        at = max(rest.rfind("@http://"), rest.rfind("@https://"))
        model, base = (rest[:at], rest[at + 1:]) if at >= 0 else (rest, "")
        tail = model.rpartition("@")[2] if "@" in model else ""
        if tail and not tail[:1].isdigit():
            # not a version (name@1.0.0) and not an http(s) URL: a mistyped base URL must never fall back
            # to the default endpoint, which would send the API key there
            raise UsageError(f"model spec '{spec}': '{tail}' is not an http(s) base URL",
                             hint="use openai:<model>@http://host:port/v1 (or set OPENAI_BASE_URL)")
        if not model:
            raise UsageError(f"model spec '{spec}' names no model: use openai:<model>[@<base_url>]")
        return ModelSpec("openai", model, base or None)
    raise UsageError(f"unknown model spec '{spec}': use {SPEC_FORMS}")


def looks_like_path(name: str) -> bool:
    """A spec meant as a directory (`./m`, `/m`, `~/m`, `a/b/c`), not a hub id (`org/name`)."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name


def quiet_transformers() -> None:
    """Load bars and 'newly initialised weights' reports are noise in a CLI that reports for itself."""
    import warnings

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\b.*")
    # peft drops position ids for soft prompts on purpose; the warning is noise
    warnings.filterwarnings("ignore", message="Position ids are not supported for parameter efficient tuning")




# ------------------------------------------------------------------ hub ids, resolved without waiting
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def hub_source(name: str, what: str, builtins: tuple[str, ...], local_example: str) -> str | None:
    """Where hub model `name` (not a directory) loads from: its cached snapshot folder, or None to let
    transformers download it. Fails at once, with a hint, for a typo of a built-in name (`did you
    mean`), a name that cannot be a hub id, and an uncached id while the hub cannot be reached:
    transformers would otherwise retry the network for about 30 s before failing.
    `what` names the thing in messages ("base model", "model"); `local_example` shows how to give a
    local directory instead."""
    from promptc.diagnostics import did_you_mean

    local = f"or point it at a local model directory: {local_example}"
    cached = _hub_snapshot(name) if _HUB_ID.fullmatch(name) else None
    if cached is not None:  # loaded from the cache's folder: no network round trip to check for updates
        return cached
    near = did_you_mean(name, builtins) if "/" not in name else None
    if near:  # a typo of a built-in name, not a hub id to look up
        raise ModelError(f"unknown {what} '{name}'",
                         hint=f"{near} built-in: {', '.join(builtins)}; otherwise give a local model directory or "
                              "a hub id (owner/name, e.g. openai-community/gpt2)")
    if not _HUB_ID.fullmatch(name):
        raise ModelError(f"'{name}' is not a hub id (owner/name: letters, digits, '.', '_' and '-') "
                         "nor an existing directory", hint="check the spelling, " + local)
    why = _hub_unreachable()
    if why is not None:
        raise ModelError(f"{what} '{name}' is not in the local hub cache and {why}",
                         hint=f"download it where there is a network (hf download {name}), " + local)
    return None


def _hub_cache_dir() -> str | None:
    """The hub cache as the environment names it now (huggingface_hub reads it once, at import)."""
    import os

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _hub_snapshot(name: str) -> str | None:
    """The cached snapshot folder of hub model `name` when it holds a config and weights, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        config = try_to_load_from_cache(name, "config.json", cache_dir=_hub_cache_dir())
    except (ValueError, OSError):  # huggingface_hub refuses ids it considers invalid
        return None
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    weights = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
    return str(folder) if any(any(folder.glob(w)) for w in weights) else None


def _hub_unreachable() -> str | None:
    """Why the hub cannot be used right now (offline mode, or its host does not answer), else None. One
    short connection attempt, never transformers' retries; behind a proxy the download is left to try."""
    import os

    truthy = {"1", "true", "yes", "on"}
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in truthy:
            return f"the hub is offline ({var}={os.environ[var]})"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    why = connect_problem(endpoint, 3.0)
    return f"the hub ({endpoint}) cannot be reached ({why})" if why else None


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def connect_problem(url: str, timeout: float) -> str | None:
    """Why one TCP connection to `url`'s host and port fails (refused, unknown host, no answer within
    `timeout`), else None. Behind a proxy it is None: the proxy decides what can be reached. One short
    attempt, where a client library would retry each request for tens of seconds."""
    import os
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if not u.hostname or any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout):
            return None
    except OSError as e:
        return f"no answer within {timeout:g} s" if isinstance(e, TimeoutError) else (e.strerror or str(e))
