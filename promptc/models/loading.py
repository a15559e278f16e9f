"""Model specs and loading hygiene shared by every local backend and the tune target."""

from __future__ import annotations

from dataclasses import dataclass

from promptc.errors import UsageError

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


