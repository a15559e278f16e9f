"""Defects a new user hit in round 3 (installed wheel, fresh programs), one regression test each: no torch."""

from __future__ import annotations

import jinja2.parser

from promptc.compiler import compile_text

TWO_TEMPLATES = '''
task t(a: str, b: str, unused: str) -> str {
  system "You answer about {{ a }}."
  prompt "Question: {{ b }}"
}
'''


def test_each_template_is_parsed_by_jinja_once_per_check(monkeypatch):
    parses = []
    real = jinja2.parser.Parser.parse

    def counting(self):
        parses.append(self.name)
        return real(self)

    monkeypatch.setattr(jinja2.parser.Parser, "parse", counting)
    r = compile_text(TWO_TEMPLATES)
    assert len(parses) == 2  # one system, one prompt: the unused-input check reuses the checker's parse
    # and the names it finds are the same: only `unused` is reported
    assert [(d.code, d.message) for d in r.diagnostics] == [("W201", "input 'unused' is never used in the prompt")]


E105_CASES = '''
task a(x: str, y: str) -> str {
  system "About {{ x }} and {{ y }"
  prompt """
  Read {{ x }} carefully.
  Then {{ x }} and {{ y z }}.
  """
}
task b(x: str) -> str {
  prompt """
  Start.
  {% for c in x %}
    {% if c %}{{ c }}{% endif %}
  Done.
  """
}
task c(x: str) -> str {
  prompt "Hi {% frob %} {{ x !}}"
}
task d(x: str) -> str {
  prompt "Hi {{ x }} {# never closed"
}
'''


def test_a_template_syntax_error_points_at_the_token_not_the_whole_template():
    r = compile_text(E105_CASES, "e.prompt")
    got = [(d.span.line, d.span.col, d.span.end - d.span.start, d.span.source.text[d.span.start:d.span.end])
           for d in r.diagnostics if d.code == "E105"]
    assert got == [
        (3, 34, 1, "}"),  # a one-line system text: the lone brace
        (6, 25, 1, "z"),  # the third line of a triple-quoted prompt, the token after `y`
        (12, 3, 6, "{% for"),  # the text ends too soon: the block that was never closed
        (18, 17, 4, "frob"),  # an unknown tag
        (21, 22, 2, "{#"),  # a comment that never closes
    ]
