"""The one jinja2 environment promptc renders with: sandboxed and strict about undefined names.

Whitespace settings are jinja2's defaults, so a compiled `prompt.jinja` renders the same in a plain
`jinja2.Environment()` (or any jinja-compatible engine) as it does in promptc.
"""

from __future__ import annotations

import functools

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment


@functools.lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    """SandboxedEnvironment + StrictUndefined; no autoescape (prompts are not HTML)."""
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def literal(text: str) -> str:
    """Template source that renders to exactly `text` (escaping jinja syntax inside data)."""
    if "{" not in text:
        return text
    if not any(tok in text for tok in ("{{", "{%", "{#")):
        return text
    if "endraw" not in text and not text.endswith("{"):
        return "{% raw %}" + text + "{% endraw %}"
    out = []
    i = 0
    while i < len(text):
        two = text[i:i + 2]
        if two in ("{{", "{%", "{#"):
            out.append("{{ '" + two + "' }}")
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def delimit_outputs(source: str) -> tuple[str, list[str]]:
    """Wrap every `{{ expr }}` that reads a variable in `<tag>...</tag>`, with the closing tag escaped
    inside the value, so untrusted input cannot leave its block. Returns the new source and the tags.

    The tag is the expression's leading path (`ticket.subject`), or `data` when there is none.
    """
    env = environment()
    out: list[str] = []
    tags: list[str] = []
    group: list[tuple[str, str]] | None = None
    for _, kind, value in env.lex(source):
        if kind == "variable_begin":
            group = [(kind, value)]
            continue
        if group is None:
            out.append(value)
            continue
        group.append((kind, value))
        if kind != "variable_end":
            continue
        begin, end = group[0][1], group[-1][1]
        inner = group[1:-1]
        group = None
        if not any(k == "name" for k, _ in inner):
            out.append(begin + "".join(v for _, v in inner) + end)
            continue
        tag = _leading_path(inner)
        tags.append(tag)
        expr = "".join(v for _, v in inner).strip()
        close = f"</{tag}>"
        safe = close.replace("</", "<\\\\/")  # a jinja string literal: renders as <\/tag>
        pre = "{{- '' }}" if begin.endswith("-") else ""
        post = "{{ '' -}}" if end.startswith("-") else ""
        out.append(f"{pre}<{tag}>{{{{ ({expr}) | string | replace('{close}', '{safe}') }}}}</{tag}>{post}")
    return "".join(out), tags


def _leading_path(tokens: list[tuple[str, str]]) -> str:
    toks = [(k, v) for k, v in tokens if k != "whitespace"]
    if not toks or toks[0][0] != "name":
        return "data"
    parts = [toks[0][1]]
    i = 1
    while i + 1 < len(toks) and toks[i] == ("operator", ".") and toks[i + 1][0] == "name":
        parts.append(toks[i + 1][1])
        i += 2
    return ".".join(parts)
