"""Class 9 (issue 11): secrets never reach training unnoticed.

Every kind the attack planted (and the kinds caught before) is found by promptc.secrets, after
invisible characters are removed; ordinary support-ticket prose is not flagged; and build_dataset
scans every text that reaches training, the system text used to initialise a soft prompt included."""

from __future__ import annotations

import json

import pytest

from promptc.compiler import compile_text
from promptc.errors import DiagnosticError
from promptc.secrets import REDACTED, normalise, redact_text, scan_text
from tests.conftest import PROGRAMS

PLANTED = {
    # the nine that trained without E501 before
    "AWS secret access key": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS secret access key in prose": "Our AWS secret key is 9f8Xk2LmQpR7sT1vW3yZ5aBcDeFgHiJkLmNoPqRs",
    "GitHub fine-grained token": "use github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
    "PGP private key block": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0abcdEFGH\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----",
    "my password is": "hi, my password is hunter2! thanks",
    "with the password": "log in with the password Tr0ub4dor&3 please",
    "user@host:password": "connect to admin@db.example.com:S3cretPass99 for the dump",
    "passphrase": "the passphrase is correct horse battery staple.",
    "zero-width split key": "key sk-abcdefgh\u200bijklmnopqrstuvwx0123",
    # the kinds caught before, still caught
    "OpenAI key": "sk-abcdefghijklmnopqrstuvwx0123",
    "AWS access key id": "AKIAIOSFODNN7EXAMPLE",
    "GitHub classic token": "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2,
    "Slack token": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "Google API key": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "Stripe key": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "RSA private key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    "JSON web token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "password assignment": "password: Sup3rS3cret",
    "credentials in a URL": "postgres://admin:hunter22@db.internal/prod",
    "random token": "the build token is Zq8vN3kLp0XwR7tY2mB5cF9hJ4sD6gA1",
    "full-width key": "ｓｋ－ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘ０１２３",
}
SECRET_PART = {"zero-width split key": "sk-abcdefghijklmnopqrstuvwx0123", "full-width key": "sk-abcdefghijklmnopqrstuvwx0123"}


@pytest.mark.parametrize("name", list(PLANTED))
def test_planted_secret_is_found_and_redacted(name: str):
    text = PLANTED[name]
    found = scan_text(text)
    assert found, f"missed: {name}"
    red = redact_text(text)
    assert REDACTED in red
    for s in found:
        assert s.value not in red
    if name in SECRET_PART:
        assert SECRET_PART[name] not in red and SECRET_PART[name][:12] not in red


def test_invisible_characters_are_removed_before_scanning():
    assert normalise("a\u200bb\u200cc\u200dd\u2060e\ufefff\u00adg") == "abcdefg"


@pytest.mark.parametrize("text", [
    "The password reset link never arrives in my inbox, so I'm locked out.",
    "The password form says my current password is wrong, but I just used it to sign in.",
    "Can I use a passkey instead of a password to sign in?",
    "Please email me at alice@example.com:thanks",
    "Use scp user@host.example.com:/var/log/app.log to copy it",
    "My order number is 123456 and the total was $45.00",
    "see https://example.com/docs/getting-started/installation-guide-version2",
    "ThisIsAVeryLongCamelCaseIdentifierWithoutDigits",
])
def test_ordinary_prose_is_not_a_secret(text: str):
    assert scan_text(text) == []


def test_the_repo_data_has_no_false_positives():
    from promptc.secrets import scan_secrets

    for path in sorted((PROGRAMS / "data").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            assert scan_secrets(json.loads(line)) == [], line


def _program(system: str = "Be brief.", example_note: str = "fine", init: str = "") -> object:
    text = ('task t(x: str) -> str {\n  system "' + system + '"\n  prompt "Say {{ x }}"\n'
            '  example { input { x: "' + example_note + '" } output "ok" }\n}\n'
            'target tune soft for t { method = "prompt_tuning", init = "prompt"' + init + " }\n")
    r = compile_text(text, "prog.prompt")
    assert r.ok, r.diagnostics
    return r.program


def _build(program, allow: bool):
    from promptc.targets.text.prompt import compile_text_target
    from promptc.targets.tune.data import build_dataset

    prompt = compile_text_target(program, "t", {"delimit": False})
    return build_dataset(program, program.tasks["t"], "causal", prompt, extra=[], val_split=0.0, seed=0,
                         allow_secrets=allow)


def test_a_password_in_the_system_text_used_for_soft_prompt_init_is_e501():
    prog = _program(system="Admin login: my password is Tr0ub4dor&3")
    with pytest.raises(DiagnosticError) as e:
        _build(prog, allow=False)
    (d,) = e.value.diagnostics
    assert d.code == "E501" and "system text" in d.message
    data = _build(prog, allow=True)
    assert data.secrets and all("Tr0ub4dor" not in it.text for it in data.train + data.val)
    from promptc.secrets import redact_text as rt

    assert "Tr0ub4dor" not in rt(prog.tasks["t"].system[0].text)  # what model.build_tuned tokenises


def test_a_secret_in_init_text_is_e501():
    prog = _program(init=', init_text = "token github_pat_11ABCDEFG0123456789_abcdefghijklmnop"')
    with pytest.raises(DiagnosticError) as e:
        _build(prog, allow=False)
    assert "init_text" in e.value.diagnostics[0].message


def test_a_zero_width_split_key_in_an_example_is_e501():
    prog = _program(example_note="key sk-abcdefgh\\u200bijklmnopqrstuvwx0123")
    with pytest.raises(DiagnosticError) as e:
        _build(prog, allow=False)
    assert e.value.diagnostics[0].code == "E501"
    data = _build(prog, allow=True)
    assert all("ijklmnop" not in it.text for it in data.train + data.val)


def test_clean_data_trains_without_findings():
    data = _build(_program(), allow=False)
    assert data.secrets == [] and len(data.train) == 1


def test_check_does_not_import_detect_secrets():
    import subprocess
    import sys

    code = ("import sys; from promptc.cli import main; main(['check', sys.argv[1]]); "
            "print('detect_secrets' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, str(PROGRAMS / "triage.prompt")], capture_output=True,
                         text=True, timeout=120)
    assert res.stdout.strip().endswith("False"), res.stdout + res.stderr
