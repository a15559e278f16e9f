"""Issue 11, class 10 (the CLI's part): bad `--inputs` files get located errors, never internal
errors, and a corrupt cache.db is a clear error that `promptc cache clear` gets past."""

from __future__ import annotations

import json

import pytest

from promptc.cli import main
from promptc.errors import CacheError
from promptc.models.cache import Cache
from tests.conftest import PROGRAMS

ROUTE = str(PROGRAMS / "route.prompt")


def run_inputs(tmp_path, data: bytes) -> list[str]:
    f = tmp_path / "in.jsonl"
    f.write_bytes(data)
    return ["run", ROUTE, "--target", "route_text", "--model", "tiny-causal", "--inputs", str(f)]


GOOD = json.dumps({"ticket": {"subject": "a", "body": "b"}})


@pytest.mark.parametrize("data,code,needle", [
    ((GOOD + "\n" + json.dumps({"ticket": {"subject": 3, "body": "b"}}) + "\n").encode(), 1, "in.jsonl:2: invalid input"),
    ((GOOD + "\n{\"ticket\": \xff}\n").encode("latin-1"), 2, "in.jsonl:2:12: not UTF-8"),
    ((GOOD + "\n" + "[" * 100_000 + "]" * 100_000 + "\n").encode(), 2, "in.jsonl:2"),
    (b'{"ticket": ', 2, "in.jsonl:1:12: the line ends before '}': the '{' at column 1 is never closed"),
    (b"[1, 2]\n", 2, "in.jsonl:1: expected a JSON object"),
])
def test_bad_inputs_are_located_and_never_internal_errors(data, code, needle, tmp_path, capsys):
    assert main(run_inputs(tmp_path, data)) == code
    err = capsys.readouterr().err
    assert needle in err, err
    assert "internal error" not in err and "Traceback" not in err


def test_a_long_bad_value_is_quoted_as_a_bounded_excerpt(tmp_path, capsys):
    assert main(run_inputs(tmp_path, b"\"" + b"x" * 10_000_000 + b"\"\n")) == 2
    err = capsys.readouterr().err
    assert "expected a JSON object" in err and len(err) < 2_000


def test_a_corrupt_cache_is_a_clear_error_and_clear_gets_past_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROMPTC_CACHE_DIR", str(tmp_path / ".promptc"))
    db = tmp_path / ".promptc" / "cache.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(CacheError, match="cannot be read"):
        Cache()
    assert main(["cache", "info"]) == 1
    err = capsys.readouterr().err
    assert "cannot be read" in err and "promptc cache clear" in err and "internal error" not in err
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "moved it to" in out
    aside = list(db.parent.glob("cache.db.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert Cache().count() == 0
