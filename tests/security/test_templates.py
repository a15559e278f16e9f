"""Class 1 (issue 11): compiled prompts carry no code to whoever renders them.

A corpus of template payloads (the jinja2 sandbox escapes: str.format, format_map, indirect format,
|attr, globals of cycler/lipsum/joiner/namespace, subclass walks, include/import/extends, and
unbounded repetition) is placed in the prompt, the system text, a constraint description and a
constraint string literal. For each, either `check` refuses it with a located diagnostic, or the
compiled artifact (prompt.jinja and messages.json) is rendered with a plain, non-sandboxed
jinja2.Environment() and nothing runs: a canary file is never created and no Python internals leak.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest

from promptc.compiler import compile_text
from promptc.targets.text.artifact import write_text_artifact

CANARY = "CANARY_FILE"  # replaced by a real path in the test's tmp folder

PAYLOADS = [
    # code execution through globals that jinja2 puts in every template
    "{{ cycler.__init__.__globals__.os.popen('touch CANARY_FILE').read() }}",
    "{{ joiner.__init__.__globals__.os.system('touch CANARY_FILE') }}",
    "{{ namespace.__init__.__globals__.os.system('touch CANARY_FILE') }}",
    "{{ lipsum.__globals__['os'].popen('touch CANARY_FILE').read() }}",
    "{{ lipsum['__globals__']['os'].system('touch CANARY_FILE') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch CANARY_FILE') }}",
    # the classic subclass walk
    "{% for c in [].__class__.__base__.__subclasses__() %}{% if c.__name__ == 'catch_warnings' %}"
    "{{ c()._module.__builtins__['__import__']('os').system('touch CANARY_FILE') }}{% endif %}{% endfor %}",
    "{{ x.__class__.__mro__[1].__subclasses__() }}",
    "{{ x.__class__.mro()[1] }}",
    "{{ [x.__class__][0] }}",
    # CVE-2016-10745: str.format reads attributes; CVE-2019-10906: format_map; indirect format
    "{{ '{0.__class__.__init__.__globals__}'.format(cycler) }}",
    "{{ '{0.__init__.__globals__[os]}'.format_map({'0': cycler}) }}",
    "{% set f = '{0.__class__.__mro__}'.format %}{{ f(x) }}",
    "{{ ('{0.__class__}'|attr('format'))(x) }}",
    "{{ x.format('{0.__class__}') }}",
    # |attr and friends, also with escaped or computed names
    "{{ x|attr('__class__')|attr('__mro__') }}",
    "{{ x|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ x['_' ~ '_class__'] }}",
    "{{ x['__cla' + 'ss__'] }}",
    "{{ x|map(attribute='__class__')|list }}",
    "{{ [x]|map('attr', '__class__')|list }}",
    "{{ [x]|sort(attribute='__class__.__mro__') }}",
    "{{ [x]|groupby('__class__') }}",
    "{{ [x]|selectattr('__class__')|list }}",
    # other templates and files
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os }}",
    "{% extends '/etc/passwd' %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    # unbounded time or memory when rendered
    "{{ 'a' * 999999999 }}",
    "{% for i in range(999999999) %}{% endfor %}",
    "{{ lipsum(999999) }}",
    "{{ x|center(999999999) }}",
    "{{ '%0999999999d'|format(1) }}",
    "{% set a = x ~ x %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{% set e = d ~ d %}"
    "{% set f = e ~ e %}{% set g = f ~ f %}{% set h = g ~ g %}{% set i = h ~ h %}{% set j = i ~ i %}"
    "{% set k = j ~ j %}{% set l = k ~ k %}{% set m = l ~ l %}{% set n = m ~ m %}{% set o = n ~ n %}"
    "{% set p = o ~ o %}{% set q = p ~ p %}{{ q }}",
]
PLACES = ["prompt", "system", "description", "literal"]
LEAKS = ("<class ", "<function", "<built-in", "<module", "<bound method", "environ", "__globals__")


def _program(place: str, payload: str) -> str:
    as_string = payload.replace("\\", "\\\\").replace('"', '\\"')
    prompt, system, desc, lit = '"Echo {{ x }}"', None, "never empty", "zzz"
    if place == "prompt":
        prompt = '"""\n  ' + payload + " {{ x }}\n  \"\"\""
    elif place == "system":
        system = '"""\n  ' + payload + '\n  """'
    elif place == "description":
        desc = as_string
    else:
        lit = as_string
    return (f"task t(x: str) -> str {{\n  prompt {prompt}\n" + (f"  system {system}\n" if system else "")
            + f'  constraint c "{desc}": len(output) > 0\n'
            + f'  constraint d: output != "{lit}"\n'
            + "}\n"
            + 'target text chat for t { format = "chat", shots = 0 }\n')


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p[:40])
def test_template_payload_is_refused_or_inert(payload: str, place: str, tmp_path: Path):
    canary = tmp_path / "canary"
    payload = payload.replace(CANARY, str(canary))
    r = compile_text(_program(place, payload), str(tmp_path / "p.prompt"))
    if not r.ok:
        errors = [d for d in r.diagnostics if d.is_error]
        assert errors and all(d.span is not None for d in errors), r.diagnostics
        assert {d.code for d in errors} & {"E105", "E201", "E204", "E205", "E210", "E218", "E219"}, errors
        assert place in ("prompt", "system"), f"text the author did not write as a template was refused: {errors}"
        return
    assert place in ("description", "literal"), f"check accepted a template payload: {payload}"
    out = write_text_artifact(r.program, r.program.targets["chat"], tmp_path / "art")
    env = jinja2.Environment()  # plain and unsandboxed, as the README tells users to render
    inputs = {"x": "hello"}
    rendered = [env.from_string((out / "prompt.jinja").read_text(encoding="utf-8")).render(**inputs)]
    for m in json.loads((out / "messages.json").read_text(encoding="utf-8")):
        rendered.append(env.from_string(m["content"]).render(**inputs))
    assert not canary.exists(), "rendering the artifact ran the payload"
    text = "\n".join(rendered)
    quoted = json.dumps(payload, ensure_ascii=False)[1:-1]  # a string literal is quoted in the rule's phrase
    assert payload in text or quoted in text, "the author's text must appear literally"
    rest = text.replace(payload, "").replace(quoted, "")
    assert not any(leak in rest for leak in LEAKS), rest[:500]


def test_constraint_description_is_literal_text():
    """`constraint c "{{ 7*7 }}"` shows the rule as written, not as 49."""
    import promptc

    prog = promptc.loads('task t(x: str) -> str {\n  prompt "{{ x }}"\n'
                         '  constraint c "{{ 7*7 }} and {% raw %}": len(output) > 0\n}\n')
    out = prog.task("t").render({"x": "hi"}, format="plain")
    assert "{{ 7*7 }} and {% raw %}" in out and "49" not in out


def test_stray_block_tag_in_a_description_compiles_to_a_parseable_prompt(tmp_path: Path):
    r = compile_text('task t(x: str) -> str {\n  prompt "{{ x }}"\n'
                     '  constraint c "use {% if and {# and endraw %} freely": output != "{%"\n}\n'
                     "target text p for t { }\n")
    assert r.ok, r.diagnostics
    out = write_text_artifact(r.program, r.program.targets["p"], tmp_path / "a")
    text = jinja2.Environment().from_string((out / "prompt.jinja").read_text()).render(x="v")
    assert "use {% if and {# and endraw %} freely" in text


def test_regex_and_pattern_text_is_literal():
    import promptc

    prog = promptc.loads('type O { a: str [pattern=/[{]{2} 7\\*7 [}]{2}|{%/] }\n'
                         'task t(x: str) -> O {\n  prompt "{{ x }}"\n'
                         '  constraint c: not (output.a matches /{{ 7*7 }}/)\n}\n')
    out = prog.task("t").render({"x": "hi"}, format="plain")
    assert "/{{ 7*7 }}/" in out or "{{ 7*7 }}" in out
    assert "49" not in out


@pytest.mark.parametrize("template", [
    "{% for p in ps %}{{ loop.index }}. {{ p.name | title }}{% if not loop.last %}, {% endif %}{% endfor %}",
    "{{ ps | map(attribute='name') | join(', ') }}",
    "{% set n = ps | length %}{{ n }} items{% for i in range(3) %}.{% endfor %}",
    "{{ ps[0].name if ps else 'none' }} {{ (ps | first).name if ps else '' }}",
    "{% filter upper %}{{ ps | length }}{% endfilter %} {{ '%.1f' | format(2.5) }} {% raw %}{{ raw }}{% endraw %}",
])
def test_the_accepted_subset_still_covers_ordinary_templates(template):
    r = compile_text("type P { name: str }\ntask t(ps: list[P]) -> str {\n  prompt \"\"\"\n  " + template
                     + '\n  """\n}\n')
    codes = [d.code for d in r.diagnostics if d.is_error]
    if "(ps | first).name" in template:
        assert codes == ["E210"]  # a path on a filter result: use {% set %} first
        return
    assert r.ok, r.diagnostics


def test_compiled_repo_programs_parse_with_plain_jinja2(tmp_path: Path):
    """Every text target of the repo's programs compiles to artifacts jinja2 parses without a sandbox."""
    import promptc
    from tests.conftest import PROGRAMS

    for path in sorted(PROGRAMS.glob("*.prompt")):
        prog = promptc.load(path)
        for name, t in prog.ir.targets.items():
            if t.kind != "text":
                continue
            out = prog.compile(name, tmp_path / name)
            jinja2.Environment().parse((out / "prompt.jinja").read_text(encoding="utf-8"))
