"""Issue 23 item 2: a gate verdict that can be trusted. Real EC keys, real model-signing signatures, and
the tampering that file hashes alone cannot catch (docs/security.md, "Artifacts")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("model_signing", reason="the [sign] extra is not installed")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from promptc.artifacts import file_hashes, write_json  # noqa: E402
from promptc.cli import main  # noqa: E402
from promptc.errors import ArtifactError  # noqa: E402
from promptc.signing import MODIFIED, SIGNED, UNSIGNED, integrity, sign, verify  # noqa: E402
from tests.conftest import PROGRAMS  # noqa: E402


def _keypair(tmp: Path, name: str, curve: ec.EllipticCurve | None = None, password: bytes | None = None):
    key = ec.generate_private_key(curve or ec.SECP256R1())
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    priv, pub = tmp / f"{name}.pem", tmp / f"{name}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


@pytest.fixture
def keys(tmp_path):
    return _keypair(tmp_path, "alice")


def _tuned(d: Path, status: str = "failed") -> Path:
    """A tuned artifact's directory as `promptc tune` lays it out (adapter, card, manifest with hashes),
    with a gate that failed: the verdict a hand edit would like to change."""
    (d / "adapter").mkdir(parents=True)
    (d / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (d / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    (d / "README.md").write_text("# card\n", encoding="utf-8")
    m = {"promptc": "0", "kind": "tune", "status": status, "program": {"name": "p", "version": "1", "hash": "h"},
         "task": {"name": "t", "hash": "h"}, "target": "t_lora", "family": "classifier", "method": "lora",
         "options": {}, "base": {"id": "minilm", "weights_hash": "w", "config_hash": "c"}, "adapter_hash": "a",
         "tests": {"summary": "1 passed, 2 failed", "passed": 1, "failed": 2, "min_pass": 1.0, "gate": status,
                   "results": {"accuracy": {"kind": "case", "status": "failed", "pass_rate": 0.3}}},
         "files": file_hashes(d)}
    write_json(d / "manifest.json", m)
    return d


def _edit_manifest(d: Path, **changes) -> None:
    path = d / "manifest.json"
    m = json.loads(path.read_text(encoding="utf-8"))
    m.update(changes)
    if "status" in changes:
        m["tests"] = {**m["tests"], "gate": changes["status"], "summary": "3 passed", "passed": 3, "failed": 0}
    path.write_text(json.dumps(m, indent=2), encoding="utf-8")


def _list(capsys, d: Path, *extra: str) -> tuple[int, str]:
    code = main(["artifacts", "list", str(d), *extra])
    return code, capsys.readouterr().out


def test_sign_then_verify_with_the_key_and_list_says_signed(tmp_path, keys, capsys):
    priv, pub = keys
    d = _tuned(tmp_path / "art")
    assert main(["artifacts", "sign", str(d), "--key", str(priv)]) == 0
    assert (d / "signature.sig").is_file() and (d / "signature.pub").is_file()
    assert main(["artifacts", "verify", str(d), "--key", str(pub)]) == 0
    out = capsys.readouterr().out
    assert "checked against the trusted key" in out and "gate: failed" in out
    code, out = _list(capsys, d)
    row = out.splitlines()[1].split()
    assert code == 0 and "failed" in row and SIGNED in row


def test_hand_edited_verdict_of_a_signed_artifact_is_modified_never_passed(tmp_path, keys, capsys):
    priv, pub = keys
    d = _tuned(tmp_path / "art")
    sign(d, priv)
    _edit_manifest(d, status="passed")
    r = integrity(d)
    assert r.state == MODIFIED and "manifest.json changed since the artifact was signed" in r.reason
    code, out = _list(capsys, d)
    assert code == 0 and MODIFIED in out and "passed" not in out.splitlines()[1]
    assert main(["artifacts", "show", str(d)]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("integrity: MODIFIED") and "passed" not in shown
    for action in ("show", "list"):  # JSON repeats no claim of a modified manifest either
        assert main(["artifacts", action, str(d), "--format", "json"]) == 0
        assert '"passed"' not in capsys.readouterr().out
    assert main(["artifacts", "verify", str(d), "--key", str(pub)]) == 1
    err = capsys.readouterr().err
    assert "MODIFIED" in err and "manifest.json" in err and "Traceback" not in err


def test_unsigned_artifact_with_a_hand_edited_verdict_is_shown_unverified(tmp_path, capsys):
    """Hashes cannot catch this (the manifest is not hashed): the honest answer is 'unsigned', and the
    gate reads as a claim, not as a trusted 'passed'."""
    d = _tuned(tmp_path / "art")
    _edit_manifest(d, status="passed")
    assert integrity(d).state == UNSIGNED
    code, out = _list(capsys, d)
    row = out.splitlines()[1]
    assert "passed (unsigned)" in row and UNSIGNED in row and "cannot be detected without a signature" in out
    assert main(["artifacts", "verify", str(d)]) == 1
    assert "not signed" in capsys.readouterr().err


def test_edited_file_is_modified_signed_or_not(tmp_path, keys):
    priv, _ = keys
    for signed in (False, True):
        d = _tuned(tmp_path / f"art{signed}", status="passed")
        if signed:
            sign(d, priv)
        (d / "adapter" / "adapter_model.safetensors").write_bytes(b"\1" * 64)
        r = integrity(d)
        assert r.state == MODIFIED and "adapter/adapter_model.safetensors" in r.reason
        assert "passed" not in __import__("promptc.signing", fromlist=["gate"]).gate(
            json.loads((d / "manifest.json").read_text()), r)


def test_rewritten_hashes_are_caught_by_the_signature(tmp_path, keys):
    """A careful forger edits a file and rewrites its hash in the manifest: hashes agree, the signature
    does not."""
    priv, pub = keys
    d = _tuned(tmp_path / "art", status="passed")
    sign(d, priv)
    (d / "README.md").write_text("# a different card\n", encoding="utf-8")
    m = json.loads((d / "manifest.json").read_text())
    m["files"] = {k: v for k, v in file_hashes(d).items() if k not in ("signature.sig", "signature.pub")}
    write_json(d / "manifest.json", m)
    r = integrity(d, pub)
    assert r.state == MODIFIED and "README.md" in r.reason and "manifest.json" in r.reason


def test_added_file_is_modified(tmp_path, keys):
    priv, _ = keys
    d = _tuned(tmp_path / "art", status="passed")
    sign(d, priv)
    (d / "adapter" / "extra.pkl").write_bytes(b"cos\nsystem\n")
    r = integrity(d)
    assert r.state == MODIFIED and "extra.pkl" in r.reason


def test_resigned_by_another_key_fails_against_the_trusted_key(tmp_path, keys):
    """Without a trusted key, a re-signature by a forger verifies (with another fingerprint); with one, it
    is refused."""
    priv, pub = keys
    mallory, _ = _keypair(tmp_path, "mallory")
    d = _tuned(tmp_path / "art")
    first = sign(d, priv)
    _edit_manifest(d, status="passed")
    with pytest.raises(ArtifactError, match="MODIFIED"):
        sign(d, mallory)  # signing refuses to vouch for an edit made after the last signature
    (d / "signature.sig").unlink()
    (d / "signature.pub").unlink()
    forged = sign(d, mallory)
    assert forged.state == SIGNED and forged.key != first.key and not forged.trusted_key
    r = integrity(d, pub)
    assert r.state == MODIFIED and "not signed by the trusted key" in r.reason
    with pytest.raises(ArtifactError, match="MODIFIED"):
        verify(d, pub)


def test_swapped_public_key_or_removed_signature_is_modified(tmp_path, keys):
    priv, _ = keys
    _, other_pub = _keypair(tmp_path, "other")
    d = _tuned(tmp_path / "art")
    sign(d, priv)
    (d / "signature.pub").write_bytes(other_pub.read_bytes())
    assert integrity(d).state == MODIFIED
    (d / "signature.sig").unlink()
    assert integrity(d).state == MODIFIED  # a signer key without its signature: the signature was removed
    (d / "signature.pub").unlink()
    assert integrity(d).state == UNSIGNED


def test_corrupt_signature_is_modified_not_a_crash(tmp_path, keys):
    priv, _ = keys
    d = _tuned(tmp_path / "art")
    sign(d, priv)
    sig = d / "signature.sig"
    bundle = json.loads(sig.read_text())
    for bad in ("not json", json.dumps({"x": 1}), json.dumps({**bundle, "dsseEnvelope": {
            **bundle["dsseEnvelope"], "signatures": [{"sig": "AAAA", "keyid": ""}]}})):
        sig.write_text(bad, encoding="utf-8")
        r = integrity(d)
        assert r.state == MODIFIED, (bad, r)


def test_encrypted_key_with_password_env_and_p384(tmp_path, capsys, monkeypatch):
    priv, pub = _keypair(tmp_path, "enc", ec.SECP384R1(), password=b"s3cret")
    d = _tuned(tmp_path / "art")
    assert main(["artifacts", "sign", str(d), "--key", str(priv)]) == 1
    assert "password" in capsys.readouterr().err
    monkeypatch.setenv("KEYPASS", "s3cret")
    assert main(["artifacts", "sign", str(d), "--key", str(priv), "--password-env", "KEYPASS"]) == 0
    monkeypatch.setenv("PROMPTC_TRUSTED_KEY", str(pub))
    assert main(["artifacts", "verify", str(d)]) == 0
    assert "trusted key" in capsys.readouterr().out


def test_key_mistakes_are_clear_errors(tmp_path, keys, capsys):
    priv, pub = keys
    d = _tuned(tmp_path / "art")
    rsa_like = tmp_path / "junk.pem"
    rsa_like.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    cases = [(["artifacts", "sign", str(d)], 2, "--key"),
             (["artifacts", "sign", str(d), "--key", str(tmp_path / "missing.pem")], 2, "not found"),
             (["artifacts", "sign", str(d), "--key", str(rsa_like)], 1, "not a usable PEM private key"),
             (["artifacts", "sign", str(d), "--key", str(pub)], 1, "not a usable PEM private key"),
             (["artifacts", "verify", str(d), "--key", str(priv)], 1, "not a PEM public key")]
    for argv, code, words in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (argv, err)


def test_a_signed_artifact_can_still_be_replaced_by_a_rebuild(tmp_path, keys):
    """The signature files are promptc's own: `-o` onto a signed artifact replaces it."""
    from promptc.artifacts import check_destination

    priv, _ = keys
    d = _tuned(tmp_path / "art")
    sign(d, priv)
    check_destination(d)


def test_signed_text_artifact_round_trip_and_json(tmp_path, keys, capsys):
    priv, pub = keys
    d = tmp_path / "chat"
    assert main(["compile", str(PROGRAMS / "triage.prompt"), "--target", "triage_chat", "-o", str(d)]) == 0
    sign(d, priv)
    capsys.readouterr()
    assert main(["artifacts", "list", str(d), "--format", "json", "--key", str(pub)]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["integrity"]["state"] == SIGNED and row["integrity"]["trusted_key"] and row["gate"] == "compiled"
    (d / "prompt.jinja").write_text("{{ 7*7 }}", encoding="utf-8")
    assert main(["artifacts", "list", str(d), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["integrity"]["state"] == MODIFIED and row["gate"] == "unknown (MODIFIED)"


def test_serve_refuses_a_modified_artifact_and_warns_on_an_unsigned_one(tmp_path, keys, capsys, monkeypatch):
    import promptc.serving.server as server
    import promptc.serving.subjects as subjects

    priv, pub = keys
    d = tmp_path / "chat"
    assert main(["compile", str(PROGRAMS / "triage.prompt"), "--target", "triage_chat", "-o", str(d)]) == 0
    served: list = []
    monkeypatch.setattr(subjects, "build_registry", lambda **kw: served.append(kw) or type("R", (), {"subjects": {}})())
    monkeypatch.setattr(server, "run", lambda *a, **kw: True)
    argv = ["serve", "--model", "tiny-causal", "--program", str(PROGRAMS / "triage.prompt"), "--artifact", str(d)]
    capsys.readouterr()
    assert main(argv) == 0 and served
    assert "unsigned" in capsys.readouterr().err
    assert main([*argv, "--verify-key", str(pub)]) == 1  # a trusted key was named: unsigned is refused
    assert "unsigned" in capsys.readouterr().err
    sign(d, priv)
    assert main([*argv, "--verify-key", str(pub)]) == 0
    assert "checked against the trusted key" in capsys.readouterr().err
    (d / "messages.json").write_text("[]", encoding="utf-8")
    served.clear()
    assert main(argv) == 1 and not served
    assert "MODIFIED" in capsys.readouterr().err
