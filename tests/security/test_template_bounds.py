"""Found by the 20,000-mutant fuzz: huge constants in templates are located E219 errors, not crashes."""

from __future__ import annotations

import pytest

from promptc.compiler import compile_text


@pytest.mark.parametrize("template,needle", [
    ("{% for i in range(99999999999999999999) %}{{ text }}{% endfor %}", "range(...) of 99,999,999,999,999,999,999"),
    ("{{ '%" + "9" * 5000 + "s' | format(text) }}", "format width 999999999999... is too large"),
])
def test_huge_template_constants_are_diagnostics(template, needle):
    r = compile_text('task t(text: str) -> str {\n  prompt "' + template.replace('"', '\\"') + '"\n}\n', "t.prompt")
    assert r.program is None
    assert any(d.code == "E219" and needle in d.message for d in r.diagnostics), [d.message for d in r.diagnostics]
