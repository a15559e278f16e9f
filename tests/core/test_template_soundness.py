"""Sound templates (E315): a template `check` accepts renders every schema-valid input, through promptc's
render and as a compiled prompt.jinja under a plain `jinja2.Environment()`.

The property draws templates that combine operators, tests and filters over typed inputs, checks each
one, and renders every accepted one with adversarial valid inputs (empty lists, null fields left out,
the largest floats, "inf" and "nan" as strings, 64-bit bounds)."""

from __future__ import annotations

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promptc
from promptc import codes, ir
from promptc.compiler import compile_text
from promptc.errors import InputError
from promptc.schema import INT_MAX, INT_MIN, conform, validate
from promptc.targets.text.prompt import text_prompt

HEAD = """enum Tone { calm, loud }
type Item { name: str, qty: int, price: float? }
"""
PARAMS = ("s: str, t: str [max_len=3], i: int, k: int [ge=0, le=100], f: float, b: bool, e: Tone, oi: int?, "
          "os: str?, ls: list[str], li: list[int], lf: list[float], ne: list[int] [min_len=1], it: Item, "
          "oit: Item?, items: list[Item]")


def program(template: str) -> str:
    body = template.replace('"""', "")
    return f'{HEAD}task t({PARAMS}) -> str {{\n  prompt """\n{body}\n"""\n}}\n'


# ------------------------------------------------------------------ generated templates
VARS = ["s", "t", "i", "k", "f", "b", "e", "oi", "os", "ls", "li", "lf", "ne", "it", "oit", "items",
        "it.name", "it.qty", "it.price", "oit.name", "ls[0]", "ne[0]", "li[-1]", "items[0].qty", "ls[1:3]"]
CONSTS = ["1", "0", "2.5", "-3", '"a"', '""', '"inf"', "true", "none", "[1, 2]", '["x"]', "[]", "1e308",
          "{'k': 1, 'a b': s}", "{'k': i}"]
FILTERS = ["upper", "lower", "length", "count", "first", "last", "join(', ')", "round", "round(1, 'floor')",
           "int", "float", "abs", "sum", "max", "min", "sort", "list", "string", "default('d')", "default(0)",
           "trim", "title", "capitalize", "reverse", "unique", "map('upper')", "map('int')", "select('odd')",
           "reject('none')", "batch(2)", "wordcount", "tojson", "truncate(5)", "truncate(2)", "center(9)",
           "indent(2)", "wordwrap(10)", "replace('a', 'bb')", "filesizeformat", "items", "dictsort",
           "e", "urlencode", "sort(attribute='qty')", "map(attribute='name')", "join(',', attribute='name')",
           "sum(attribute='qty')", "d(none)", "list | length", "pprint", "striptags", "float | int",
           "groupby('name')", "dictsort(by='value')", "xmlattr", "slice(2)", "map('round')",
           "select('divisibleby', 2)", "selectattr('qty', 'odd')", "rejectattr('price', 'none')", "batch(2, 0)",
           "max(attribute='qty')", "unique(attribute='name')", "int(none)", "first | default('')",
           "default(0, true)"]
TESTS = ["odd", "even", "none", "defined", "string", "number", "divisibleby(3)", "in([1, 2])", "lt(3)",
         "eq('a')", "sequence", "iterable", "mapping"]
BINOPS = ["+", "-", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or"]
SCALED = ["* 2", "/ 2", "// 3", "/ 0.5", "* 3"]


@st.composite
def expressions(draw, depth: int = 0, names: tuple[str, ...] = ()) -> str:
    leaf = st.sampled_from(VARS + list(names)) | st.sampled_from(CONSTS)
    if depth >= 3:
        return draw(leaf)
    sub = expressions(depth + 1, names)
    kind = draw(st.sampled_from(["leaf", "leaf", "bin", "filter", "filter", "test", "scaled", "cond", "not",
                                 "neg", "format"]))
    if kind == "leaf":
        return draw(leaf)
    if kind == "bin":
        return f"({draw(sub)} {draw(st.sampled_from(BINOPS))} {draw(sub)})"
    if kind == "filter":
        return f"({draw(sub)} | {draw(st.sampled_from(FILTERS))})"
    if kind == "test":
        return f"({draw(sub)} is {draw(st.sampled_from(['', 'not ']))}{draw(st.sampled_from(TESTS))})"
    if kind == "scaled":
        return f"({draw(sub)} {draw(st.sampled_from(SCALED))})"
    if kind == "cond":
        tail = draw(st.sampled_from(["", f" else {draw(sub)}"]))
        return f"({draw(sub)} if {draw(sub)}{tail})"
    if kind == "not":
        return f"(not {draw(sub)})"
    if kind == "neg":
        return f"(-{draw(sub)})"
    spec = draw(st.sampled_from(['"%s"', '"%d"', '"%.1f"', '"%x"', '"%s-%s"']))
    n = spec.count("%")
    return f"({spec} | format({', '.join(draw(sub) for _ in range(n))}))"


@st.composite
def templates(draw) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 2))):
        shape = draw(st.sampled_from(["out", "out", "if", "for", "set", "elif", "pairs", "block", "guard"]))
        if shape == "out":
            parts.append(f"{{{{ {draw(expressions())} }}}}")
        elif shape == "if":
            parts.append(f"{{% if {draw(expressions())} %}}[{{{{ {draw(expressions())} }}}}]{{% endif %}}")
        elif shape == "for":
            inner = draw(expressions(names=("v", "loop.index", "loop.first", "loop.previtem")))
            parts.append(f"{{% for v in {draw(expressions())} %}}{{{{ {inner} }}}};{{% endfor %}}")
        elif shape == "guard":
            xs, k = draw(st.sampled_from(["ls", "li", "items", "s", "ne", "oi"])), draw(st.integers(0, 2))
            op = draw(st.sampled_from([">", ">="]))
            parts.append(f"{{% if {xs} | length {op} {k} %}}{{{{ {xs}[{k}] }}}}{{% endif %}}")
        elif shape == "set":
            parts.append(f"{{% set v = {draw(expressions())} %}}{{{{ {draw(expressions(names=('v',)))} }}}}")
        elif shape == "elif":
            e = [draw(expressions()) for _ in range(4)]
            parts.append(f"{{% if {e[0]} %}}{{{{ {e[1]} }}}}{{% elif {e[2]} %}}{{{{ {e[3]} }}}}{{% else %}}-{{% endif %}}")
        elif shape == "pairs":
            source = draw(st.sampled_from(["it | items", "it | dictsort", "items | groupby('name')",
                                           "ls | batch(2)", "items", "range(3)", "ls | slice(2)"]))
            inner = draw(expressions(names=("a", "w", "loop.cycle('x', 1)", "loop.nextitem", "w.list",
                                            "a.grouper")))
            target = draw(st.sampled_from(["a, w", "a"]))
            parts.append(f"{{% for {target} in {source} %}}{{{{ {inner} }}}}{{% endfor %}}")
        else:
            f = draw(st.sampled_from(["upper", "truncate(9)", "indent(2)", "wordcount", "length", "int"]))
            inner = draw(expressions())
            which = draw(st.sampled_from(["filter", "set"]))
            if which == "filter":
                parts.append(f"{{% filter {f} %}}{{{{ {inner} }}}}{{% endfilter %}}")
            else:
                parts.append(f"{{% set v | {f} %}}{{{{ {inner} }}}}{{% endset %}}{{{{ {draw(expressions(names=('v',)))} }}}}")
    return "\n".join(parts)


# ------------------------------------------------------------------ adversarial valid inputs
_STRS = st.sampled_from(["", "a", "inf", "nan", "-1e999", "42", "3.5", " x ", "9" * 4400, "\u00e9</s>"])
_INTS = st.sampled_from([0, 1, -1, 7, INT_MIN, INT_MAX]) | st.integers(INT_MIN, INT_MAX)
_FLOATS = st.sampled_from([0.0, -0.0, 1.5, 1e308, -1.7976931348623157e308, 5e-324]) | \
    st.floats(allow_nan=False, allow_infinity=False)


def values(t: ir.Type) -> st.SearchStrategy:
    if isinstance(t, ir.OptionalT):
        return st.none() | values(t.inner)
    if isinstance(t, ir.StrT):
        base = _STRS | st.text(max_size=4)
        return base.filter(lambda v: t.max_len is None or len(v) <= t.max_len)
    if isinstance(t, ir.IntT):
        lo = t.ge if t.ge is not None else INT_MIN
        hi = t.le if t.le is not None else INT_MAX
        return (_INTS.filter(lambda v: lo <= v <= hi)) | st.sampled_from([lo, hi])
    if isinstance(t, ir.FloatT):
        return _FLOATS
    if isinstance(t, ir.BoolT):
        return st.booleans()
    if isinstance(t, ir.EnumT):
        return st.sampled_from(t.members)
    if isinstance(t, ir.ListT):
        return st.lists(values(t.item), min_size=t.min_len or 0, max_size=3)
    if isinstance(t, ir.RecordT):
        # optional fields may be left out: promptc reads them as null
        required = {k: values(ft) for k, ft in t.fields if not isinstance(ft, ir.OptionalT)}
        optional = {k: values(ft) for k, ft in t.fields if isinstance(ft, ir.OptionalT)}
        return st.fixed_dictionaries(required, optional=optional)
    raise AssertionError(t)


def render_both(prog: promptc.Program, inputs: dict) -> None:
    """Render through promptc and through plain jinja2 (the compiled prompt.jinja): both succeed, alike."""
    task = prog.task("t")
    ours = task.render(inputs)
    tp = text_prompt(prog.ir, "t")
    plain = jinja2.Environment().from_string(tp.artifact_template()).render(conform(task.ir.input_type, inputs))
    assert ours == plain


def accepted(template: str) -> promptc.Program | None:
    result = compile_text(program(template))
    return promptc.Program(result) if result.ok else None


@settings(max_examples=400, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(templates(), st.data())
def test_accepted_templates_render_every_valid_input(template, data):
    prog = accepted(template)
    if prog is None:
        return
    input_type = prog.task("t").ir.input_type
    for _ in range(8):
        inputs = data.draw(values(input_type))
        assert validate(input_type, inputs) == []
        render_both(prog, inputs)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(templates(), st.data())
def test_accepted_templates_render_every_valid_input_big(template, data):
    prog = accepted(template)
    if prog is None:
        return
    input_type = prog.task("t").ir.input_type
    for _ in range(20):
        render_both(prog, data.draw(values(input_type)))


def test_the_generator_reaches_both_verdicts():
    """The property means something only if many generated templates are accepted and many refused."""
    verdicts = {"ok": 0, "E315": 0, "other": 0}

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(templates())
    def collect(template):
        result = compile_text(program(template))
        kind = "ok" if result.ok else "E315" if any(d.code == codes.TEMPLATE_TYPE for d in result.diagnostics) \
            else "other"
        verdicts[kind] += 1

    collect()
    assert verdicts["ok"] >= 20 and verdicts["E315"] >= 20, verdicts


# ------------------------------------------------------------------ the reported examples
def diag(params: str, template: str):
    src = f'task t({params}) -> str {{\n  prompt """\n  {template}\n  """\n}}\n'
    result = compile_text(src, "t.prompt")
    return [d for d in result.diagnostics if d.is_error]


@pytest.mark.parametrize("params,template,needle", [
    ("x: str", "{{ x - 1 }}", "-"),
    ("x: str", "{{ x | round }}", "round"),
    ("n: int", '{{ n | join(",") }}', "join"),
    ("x: str", '{{ x | int + "a" }}', "+"),
])
def test_the_four_reported_crashes_are_refused_at_their_place(params, template, needle):
    errors = diag(params, template)
    assert [d.code for d in errors] == [codes.TEMPLATE_TYPE]
    d = errors[0]
    assert (d.span.line, d.span.col) == (3, 3 + template.index(needle))
    assert d.span.end_col - d.span.col == len(needle)
    assert d.hint


@pytest.mark.parametrize("params,template", [
    ("x: int", "{{ x - 1 }}"),
    ("x: float", "{{ x | round }}"),
    ("n: list[int]", '{{ n | join(",") }}'),
    ("x: str", '{{ x | int ~ "a" }}'),
    ("x: int?", "{% if x is not none %}{{ x + 1 }}{% endif %}"),
    ("xs: list[str]", "{% if xs %}{{ xs[0] | upper }}{% endif %}"),
    ("xs: list[str] [min_len=1]", "{{ xs[0] }} {{ xs | first }}"),
    ("xs: list[int]", "{% for v in xs %}{{ v * 2 + loop.index }}{% endfor %}"),
])
def test_the_fixed_forms_check(params, template):
    assert diag(params, template) == []


@pytest.mark.parametrize("params,template,inputs", [
    ("x: str", "{{ x - 1 }}", {"x": "abc"}),
    ("x: str", "{{ x | round }}", {"x": "abc"}),
    ("n: int", '{{ n | join(",") }}', {"n": 3}),
    ("x: str", '{{ x | int + "a" }}', {"x": "12"}),
])
def test_the_reported_crashes_did_crash(params, template, inputs):
    """The refused templates do raise under plain jinja2: the checker is not refusing safe ones."""
    with pytest.raises(TypeError):
        jinja2.Environment().from_string(template).render(inputs)


# ------------------------------------------------------------------ a render that still fails
def test_a_failing_render_is_a_located_user_error():
    """A template the checker never saw (a compiled artifact edited by hand) fails as a user error that
    names the template line, the expression and the input value, not as an internal error."""
    prog = promptc.loads('task t(x: str) -> str {\n  prompt "Value: {{ x }}"\n}\n')
    tp = text_prompt(prog.ir, "t")
    tp.user_source = "Value:\n{{ x - 1 }}"
    tp._compiled.clear()
    with pytest.raises(InputError) as e:
        tp.render({"x": "abc"})
    msg = str(e.value)
    assert "{{ x - 1 }}" in msg and 'x = "abc"' in msg and "TypeError" in msg
    line = tp.plain_source().splitlines().index("{{ x - 1 }}") + 1
    assert f"line {line} of the template" in msg
    assert e.value.exit_code == 1 and "E315" in (e.value.hint or "")


def test_a_failing_artifact_render_is_a_located_user_error(tmp_path):
    from promptc.cli import main

    src = tmp_path / "p.prompt"
    src.write_text('task t(x: str) -> str {\n  prompt "Value: {{ x }}"\n}\ntarget text tt for t {}\n')
    assert main(["compile", str(src), "--target", "tt", "-o", str(tmp_path / "a")]) == 0
    jinja_file = tmp_path / "a" / "prompt.jinja"
    jinja_file.write_text(jinja_file.read_text().replace("{{ (x)", "{{ (x - 1)"))
    import json

    from promptc.targets.text.artifact import TextArtifact

    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    prog = promptc.load(src)
    art = TextArtifact(tmp_path / "a", manifest, prog.task("t").ir)
    with pytest.raises(InputError) as e:
        art.requests([{"x": "abc"}])
    assert "x - 1" in str(e.value) and 'x = "abc"' in str(e.value)


@pytest.mark.parametrize("template,code", [
    ("{% set v = 1e308 / 0.5 %}{{ x }}", codes.TEMPLATE_TYPE),  # folded to inf: NameError 'inf' at render
    ('{{ ("inf" | float) + x }}', codes.TEMPLATE_TYPE),
    ("{% for loop in [1] %}{{ x }}{% endfor %}", codes.TEMPLATE_SYNTAX),  # jinja2 refuses it when compiling
    ("{% filter length %}{{ x }}{% endfilter %}", codes.TEMPLATE_TYPE),  # the block's result is joined as text
])
def test_what_jinja2_does_when_compiling_is_checked(template, code):
    with pytest.raises(Exception):  # noqa: B017 - any error: each fails in plain jinja2
        jinja2.Environment().from_string(template).render(x=1)
    assert [d.code for d in diag("x: int", template)] == [code]
