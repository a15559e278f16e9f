"""Apply a tokenizer's chat template the way transformers does, without importing transformers.

The environment mirrors transformers' `_compile_jinja_template`: ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks and loopcontrols; `tojson` without HTML escaping; `raise_exception`,
`strftime_now`; and the `{% generation %}` tag. Special tokens from the tokenizer's config are passed
as template variables, and `add_generation_prompt` is on.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from promptc.errors import UsageError

SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class _Generation(Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_passthrough"), [], [], body).set_lineno(lineno)

    def _passthrough(self, caller):
        return caller()


def _raise(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@functools.lru_cache(maxsize=8)
def _compile(source: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def _token_text(v: Any) -> str | None:
    if isinstance(v, dict):
        return v.get("content")
    return v


@functools.lru_cache(maxsize=8)
def load_chat_template(directory: str) -> tuple[str, dict[str, str]]:
    """The chat template and special tokens of a tokenizer directory (as saved by save_pretrained)."""
    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"tokenizer directory not found: {directory}")
    config: dict[str, Any] = {}
    if (d / "tokenizer_config.json").is_file():
        config = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = None
    if (d / "chat_template.jinja").is_file():
        template = (d / "chat_template.jinja").read_text(encoding="utf-8")
    elif (d / "chat_template.json").is_file():
        template = json.loads((d / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
    else:
        template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default") or next(iter(named.values()), None)
    if not template:
        raise UsageError(f"the tokenizer in {directory} has no chat template; use --format plain or chat")
    special: dict[str, str] = {}
    if (d / "special_tokens_map.json").is_file():
        for k, v in json.loads((d / "special_tokens_map.json").read_text(encoding="utf-8")).items():
            if k in SPECIAL and (tok := _token_text(v)) is not None:
                special[k] = tok
    for k in SPECIAL:
        if k in config and (tok := _token_text(config[k])) is not None:
            special[k] = tok
    return template, special


def apply_chat_template(directory: str, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    template, special = load_chat_template(str(directory))
    try:
        return _compile(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **special)
    except jinja2.TemplateError as e:
        raise UsageError(f"the chat template in {directory} failed: {e}") from e
