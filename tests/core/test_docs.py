"""docs/language.md stays exact: every diagnostic code, option, function and generator is documented."""

from __future__ import annotations

from promptc.check import GENERATORS, PROPERTY_SETTINGS
from promptc.diagnostics import CODES
from promptc.expr import FUNCTIONS
from promptc.options import TEXT_OPTIONS, TUNE_OPTIONS
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")


def test_every_code_is_documented():
    for code in CODES:
        assert f"| {code} |" in DOC, code


def test_every_option_is_documented():
    for name in [*TEXT_OPTIONS, *TUNE_OPTIONS]:
        assert f"| `{name}` |" in DOC, name


def test_every_function_generator_and_setting_is_documented():
    for name in FUNCTIONS:
        assert f"`{name}(" in DOC, name
    for name in GENERATORS:
        assert f"`{name}(" in DOC, name
    for name in PROPERTY_SETTINGS:
        assert f"`{name} = " in DOC, name


def test_reference_program_in_docs_is_the_checked_one():
    ref = (ROOT / "docs" / "reference.prompt").read_text(encoding="utf-8")
    assert ref in DOC
