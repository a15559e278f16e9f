"""Artifacts (core): signing and verifying an artifact directory, and the integrity of its gate verdict.

An artifact's manifest lists a SHA-256 for every file, so an edited adapter or prompt is caught. The
manifest itself is not covered by anything inside the directory: editing its `status` and `tests` by hand
turns a failed gate into a passed one, and whoever edits the manifest can rewrite the hashes too. A
signature closes that gap. `promptc artifacts sign DIR --key KEY` signs the whole directory (the manifest
and every file) with an elliptic-curve private key through OpenSSF's `model-signing` (the `[sign]`
extra; offline, no Sigstore account), and writes two files beside the manifest:

- `signature.sig`: model-signing's Sigstore bundle (a DSSE envelope over an in-toto statement that
  lists a SHA-256 per file);
- `signature.pub`: the signer's public key (PEM), so an artifact can be checked without being told the
  key. That proves the directory is unchanged since *someone* signed it; only a key the user trusts
  (`--key PUB` or PROMPTC_TRUSTED_KEY) proves *who* signed it. docs/security.md has the threat model.

`integrity(DIR)` is what `artifacts list|show|verify` and `serve` report: `signed`, `unsigned`, or
`MODIFIED` (hashes or signature do not match), and a gate verdict is shown as passed only when signed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc.artifacts import MANIFEST, SIGNATURE, SIGNATURE_FILES, SIGNER_KEY, read_manifest, sha256_file
from promptc.errors import ArtifactError, UsageError

ENV_TRUSTED_KEY = "PROMPTC_TRUSTED_KEY"
SIGNED, UNSIGNED, MODIFIED, UNVERIFIED = "signed", "unsigned", "MODIFIED", "unverified"


@dataclass(frozen=True)
class Integrity:
    """What can be trusted about one artifact directory.

    `state`: `signed` (the signature verifies and every hash matches), `unsigned` (the hashes match, but
    nothing protects the manifest, so its gate verdict is a claim), `MODIFIED` (a hash or the signature
    does not match), or `unverified` (signed, but model-signing is not installed to check it).
    `key`: the signer's key fingerprint (sha256 of its PEM public key, as model-signing's key hint).
    `trusted_key`: the signature was checked against a key the user gave, not only the artifact's own."""

    state: str
    reason: str
    key: str | None = None
    trusted_key: bool = False

    @property
    def trusted(self) -> bool:
        return self.state == SIGNED

    def words(self) -> str:
        """One line for people: the state and why."""
        if self.state == SIGNED:
            who = "checked against the trusted key" if self.trusted_key else \
                "checked against the key it carries (pass --key PUB to check who signed it)"
            return f"signed by key {short(self.key)}, {who}"
        return f"{self.state}: {self.reason}"

    def json(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "key": self.key, "trusted_key": self.trusted_key}


def short(fingerprint: str | None) -> str:
    return f"sha256:{fingerprint[:16]}" if fingerprint else "?"


def gate(manifest: dict[str, Any], integ: Integrity) -> str:
    """The gate verdict as it may be shown: the manifest's own word only for a signed artifact; marked
    unverified for an unsigned one; never shown for a modified one."""
    status = manifest.get("status") or ("compiled" if manifest.get("kind") == "text" else None)
    if integ.state == MODIFIED:
        return "unknown (MODIFIED)"
    if status is None:
        return "-"
    return status if integ.state == SIGNED else f"{status} ({integ.state})"


# ------------------------------------------------------------------ checking
def hash_problem(directory: Path, manifest: dict[str, Any]) -> str | None:
    """Why the files do not match the manifest's hash list (None when they do): a listed file changed
    or missing, or a file the list does not name (besides the manifest and the signature files)."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "the manifest lists no file hashes"
    for name, digest in files.items():
        p = directory / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            return f"the manifest names a file outside the artifact ({name})"
        if p.is_symlink() or not p.is_file():
            return f"{name} is missing"
        if sha256_file(p) != digest:
            return f"{name} does not match its hash in the manifest"
    own = {MANIFEST, *SIGNATURE_FILES}
    extra = sorted(rel for p in directory.rglob("*") if (p.is_file() or p.is_symlink())
                   and (rel := p.relative_to(directory).as_posix()) not in files and rel not in own)
    if extra:
        return f"{extra[0]} is not in the manifest's hash list" + (f" (and {len(extra) - 1} more)" if len(extra) > 1
                                                                  else "")
    return None


def trusted_key_path(key: str | Path | None) -> Path | None:
    """The public key to check signatures against: `--key`, else $PROMPTC_TRUSTED_KEY, else None."""
    chosen = key if key is not None else os.environ.get(ENV_TRUSTED_KEY) or None
    if chosen is None:
        return None
    p = Path(chosen)
    if not p.is_file():
        where = "--key" if key is not None else f"${ENV_TRUSTED_KEY}"
        raise UsageError(f"{where}: public key file not found: {chosen}")
    return p


def _public_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError, OSError) as e:
        raise ArtifactError(f"{path} is not a PEM public key ({_first_line(e)})",
                            hint="give the signer's public key (a PEM file starting with -----BEGIN PUBLIC KEY-----)") \
            from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ArtifactError(f"{path} is not an elliptic-curve public key", hint="promptc signs with P-256/384/521 keys")
    return key


def fingerprint(public_key: Any) -> str:
    """model-signing's key hint: sha256 of the PEM SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]


def _mismatch(directory: Path, sig: Path) -> str:
    """Which files differ from the signed statement (read after the signature itself verified)."""
    import base64
    import json

    try:
        bundle = json.loads(sig.read_text(encoding="utf-8"))
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        signed = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    except (ValueError, KeyError, TypeError):
        return "the files do not match the signature"
    now = {p.relative_to(directory).as_posix() for p in directory.rglob("*")
           if p.is_file() and p.relative_to(directory).as_posix() not in SIGNATURE_FILES}
    changed = sorted(n for n in now & set(signed) if sha256_file(directory / n) != signed[n])
    added, removed = sorted(now - set(signed)), sorted(set(signed) - now)
    parts = ([f"{', '.join(changed)} changed"] if changed else []) + \
            ([f"{', '.join(added)} added"] if added else []) + ([f"{', '.join(removed)} removed"] if removed else [])
    return (("; ".join(parts) + " since the artifact was signed") if parts else
            "the files do not match the signature")


def integrity(directory: str | Path, key: str | Path | None = None,
              manifest: dict[str, Any] | None = None) -> Integrity:
    """Check an artifact's hashes and, when it is signed, its signature (against `key` or
    $PROMPTC_TRUSTED_KEY when given, else the public key it carries). Never raises for a bad artifact:
    that is a MODIFIED result. Raises UsageError or ArtifactError for a bad `key`."""
    d = Path(directory)
    m = manifest if manifest is not None else read_manifest(d)
    trusted = trusted_key_path(key)
    trusted_fp = fingerprint(_public_key(trusted)) if trusted is not None else None
    problem = hash_problem(d, m)
    if problem is not None:
        return Integrity(MODIFIED, problem)
    sig, pub = d / SIGNATURE, d / SIGNER_KEY
    if not sig.exists() and not sig.is_symlink():
        if pub.exists():
            return Integrity(MODIFIED, f"{SIGNER_KEY} is there but {SIGNATURE} is not (the signature was removed)")
        return Integrity(UNSIGNED, "the file hashes match, but nothing protects the manifest itself: a hand edit "
                                   "of its gate verdict cannot be detected until the artifact is signed")
    try:
        from model_signing import verifying
    except ImportError:
        return Integrity(UNVERIFIED, "the artifact is signed, but model-signing is not installed to check it "
                                     "(pip install 'promptc[sign]')")
    if trusted is not None:
        check_with, check_fp = trusted, trusted_fp
    else:
        if pub.is_symlink() or not pub.is_file():
            return Integrity(MODIFIED, f"{SIGNER_KEY} (the signer's public key) is missing")
        try:
            check_fp = fingerprint(_public_key(pub))
        except ArtifactError:
            return Integrity(MODIFIED, f"{SIGNER_KEY} is not a valid public key")
        check_with = pub
    if sig.is_symlink() or not sig.is_file():
        return Integrity(MODIFIED, f"{SIGNATURE} is not a regular file")
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=check_with).verify(d, sig)
    except ValueError as e:
        text = str(e)
        if text.startswith("Key mismatch"):
            if trusted is not None:
                return Integrity(MODIFIED, f"it was not signed by the trusted key {short(check_fp)}")
            return Integrity(MODIFIED, f"{SIGNER_KEY} is not the key that made the signature")
        if text.startswith("Signature mismatch"):
            return Integrity(MODIFIED, _mismatch(d, sig))
        return Integrity(MODIFIED, f"the signature cannot be read ({_first_line(e)})")
    except Exception as e:  # noqa: BLE001 - a hostile signature file can fail inside any parser; fail closed
        from cryptography.exceptions import InvalidSignature

        if isinstance(e, InvalidSignature):
            return Integrity(MODIFIED, "the signature does not verify (the signed statement was altered)")
        return Integrity(MODIFIED, f"the signature cannot be read ({type(e).__name__}: {_first_line(e)})")
    return Integrity(SIGNED, "the signature verifies and every file matches", check_fp, trusted is not None)


def verify(directory: str | Path, key: str | Path | None = None) -> Integrity:
    """`promptc artifacts verify`: the artifact's Integrity when it is signed and verifies; else
    ArtifactError (exit 1) saying why."""
    d = Path(directory)
    result = integrity(d, key)
    if result.state == SIGNED:
        return result
    if result.state == UNSIGNED:
        raise ArtifactError(f"artifact {d} is not signed, so its manifest (and gate verdict) cannot be verified",
                            hint=f"sign it: promptc artifacts sign {d} --key PRIVATE.pem")
    if result.state == UNVERIFIED:
        raise ArtifactError(f"artifact {d}: {result.reason}")
    raise ArtifactError(f"artifact {d} was MODIFIED: {result.reason}",
                        hint="rebuild it, or get it again from whoever built it")


def sign(directory: str | Path, private_key: str | Path, password: str | None = None) -> Integrity:
    """Sign an artifact directory (manifest and every file) with an EC private key; writes
    signature.sig and signature.pub. Refuses an artifact whose files do not match its manifest, or
    whose existing signature does not verify, so that signing never launders a modification."""
    d = Path(directory)
    m = read_manifest(d)
    kp = Path(private_key)
    if not kp.is_file():
        raise UsageError(f"--key: private key file not found: {private_key}")
    try:
        from model_signing import hashing, signing
    except ImportError:
        raise ArtifactError("signing needs model-signing", hint="pip install 'promptc[sign]'") from None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(kp.read_bytes(), password.encode() if password else None)
    except TypeError as e:
        hint = "set the password's variable with --password-env VAR" if password is None else None
        raise ArtifactError(f"{kp}: {_first_line(e)}", hint=hint) from None
    except (ValueError, OSError) as e:
        raise ArtifactError(f"{kp} is not a usable PEM private key ({_first_line(e)})",
                            hint="generate one: openssl ecparam -name prime256v1 -genkey -noout -out key.pem") \
            from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise ArtifactError(f"{kp} is not a P-256, P-384 or P-521 elliptic-curve private key",
                            hint="generate one: openssl ecparam -name prime256v1 -genkey -noout -out key.pem")
    before = integrity(d, manifest=m)
    if before.state == MODIFIED:
        raise ArtifactError(f"artifact {d} was MODIFIED ({before.reason}); refusing to sign it",
                            hint="signing would vouch for the modification; rebuild the artifact")
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # model-signing hashes the directory first and writes the signature after, so the temporary files
    # are never hashed; the signature files are left out of what is signed (recorded in the signed
    # statement, so a verifier leaves out exactly these)
    tmp_sig, tmp_pub = d / f".{SIGNATURE}.tmp", d / f".{SIGNER_KEY}.tmp"
    try:
        config = hashing.Config().set_ignored_paths(paths=list(SIGNATURE_FILES), ignore_git_paths=False)
        # model-signing hands the password to cryptography, which takes bytes
        signer = signing.Config().use_elliptic_key_signer(private_key=kp, password=password.encode()  # type: ignore[arg-type]
                                                          if password else None)
        signer.set_hashing_config(config).sign(d, tmp_sig)
        tmp_pub.write_bytes(pem)
        os.replace(tmp_pub, d / SIGNER_KEY)
        os.replace(tmp_sig, d / SIGNATURE)
    finally:
        for t in (tmp_sig, tmp_pub):
            t.unlink(missing_ok=True)
    after = integrity(d, manifest=m)
    if after.state != SIGNED:  # pragma: no cover - a file changed while it was being signed
        raise ArtifactError(f"artifact {d} changed while it was being signed ({after.reason})")
    return after


def check_before_serving(directory: str | Path, manifest: dict[str, Any], key: str | Path | None = None) -> Integrity:
    """`promptc serve`: refuse a MODIFIED artifact (or one not signed by `key` when a key is given); say on
    stderr that an unsigned artifact's gate verdict is unverified."""
    import sys

    d = Path(directory)
    result = integrity(d, key, manifest)
    if result.state == MODIFIED:
        raise ArtifactError(f"artifact {d} was MODIFIED: {result.reason}; refusing to serve it",
                            hint="rebuild it, or get it again from whoever built it")
    if result.state != SIGNED and trusted_key_path(key) is not None:
        raise ArtifactError(f"artifact {d} is {result.state}, but a trusted key was given; refusing to serve it",
                            hint=f"sign it: promptc artifacts sign {d} --key PRIVATE.pem")
    if result.state == SIGNED:
        print(f"promptc: artifact {d}: {result.words()}; gate: {gate(manifest, result)}", file=sys.stderr)
    else:
        what = f"its gate verdict ({manifest.get('status')})" if manifest.get("status") else "its manifest"
        print(f"promptc: warning: artifact {d} is {result.state}, so {what} is unverified: {result.reason}",
              file=sys.stderr)
    return result
