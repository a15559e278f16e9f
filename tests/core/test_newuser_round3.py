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
