"""Secrets scanner (core): credentials that must never be learned by a tuned model.

Every text that reaches training (example inputs and outputs, the rendered training prompts and
answers, the system and prompt text and `init_text` used to initialise a soft prompt) is scanned.
docs/security.md says what is and is not caught.

How it scans:
1. normalise: NFKC (full-width letters become ASCII) and drop invisible characters (zero-width
   spaces and joiners, soft hyphens, BOMs, bidi controls), so `sk-ab\u200bcd...` is one token;
2. match promptc's own patterns (PATTERNS: API keys, tokens, key blocks, passwords and passphrases in
   prose, credentials in URLs and `user@host:password`);
3. run detect-secrets' detectors (Yelp's maintained plugin set: AWS, Azure, GitHub, GitLab, Slack,
   Stripe, Twilio, JWT, npm, PyPI, private keys, basic auth, keyword assignments, ...), imported
   lazily because importing it costs 0.4 s and `promptc check` never needs it;
4. an entropy check: a long token that mixes letters and digits with the Shannon entropy of random
   base64 (or random hex near a word such as "key" or "token").
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

REDACTED = "[REDACTED]"

# Invisible characters that split a secret without changing how it reads.
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]")

_TOKEN_CHARS = r"[^\s\"'`,;<>()\[\]{}]"
# Words that follow "password is" in ordinary prose and are not passwords.
_NOT_A_PASSWORD = {"wrong", "incorrect", "invalid", "expired", "correct", "right", "required", "missing",
                   "empty", "blank", "not", "too", "reset", "changed", "weak", "strong", "case-sensitive",
                   "same", "different", "saved", "stored", "hashed", "encrypted", "protected", "secure",
                   "being", "the", "a", "an", "my", "your", "our", "their", "still", "now", "also"}

# (kind, pattern, group holding the secret). The secret group is what redaction replaces.
PATTERNS: list[tuple[str, re.Pattern, int]] = [
    ("OpenAI-style API key", re.compile(r"\bsk-(?:proj-|live-|test-|ant-)?[A-Za-z0-9_-]{16,}"), 0),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[0-9A-Z]{16}\b"), 0),
    ("AWS secret access key", re.compile(
        r"(?i)\baws.{0,30}?(?:secret|key).{0,20}?[\s:=\"']+([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"), 1),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), 0),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}"), 0),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), 0),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"), 0),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), 0),
    ("Stripe key", re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b"), 0),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"), 0),
    ("private key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|$)"), 0),
    ("JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), 0),
    ("password assignment", re.compile(
        r"(?i)\b(?:password|passwd|pwd|passcode|secret|api[_-]?key|token)\s*[:=]\s*[\"']?(" + _TOKEN_CHARS + r"{6,})"), 1),
    ("passphrase", re.compile(
        r"(?i)\bpass[\s-]?phrase\b[^\n:=]{0,20}?(?:\bis\b|\bwas\b|:|=)\s*[\"']?([^\"'\n.]{8,}?)[\"']?(?=[.\n]|$)"), 1),
    ("password in prose", re.compile(
        r"(?i)\b(?:password|passwd|passcode|pin code|login code)s?\b"
        r"(?:\s+(?:is|was|=|:|reads|of|to|be|set\s+to|changed\s+to|for\s+\S+\s+is))+\s*[\"'“‘]?(" + _TOKEN_CHARS + r"{4,})"),
     1),
    ("password in prose", re.compile(
        r"(?i)\b(?:with|using|use|try|enter|type|the)\s+(?:the\s+|my\s+|our\s+)?(?:password|passcode|pass)\s+"
        r"[\"'“‘]?(" + _TOKEN_CHARS + r"{4,})"), 1),
    ("credentials in a URL", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:([^\s/@]{3,})@"), 1),
    ("user@host:password", re.compile(
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+:(?![/~\d]+(?:\s|$))([^\s/~][^\s]{3,})"), 1),
]


@dataclass(frozen=True, slots=True)
class Secret:
    kind: str
    value: str  # the matched secret, in normalised text


def normalise(text: str) -> str:
    """NFKC, without invisible characters: what a tokenizer (and a reader) effectively sees."""
    if text.isascii():
        return text
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def _plausible(kind: str, value: str) -> bool:
    """Prose patterns need a value that looks like a password, not an ordinary word."""
    if kind not in ("password in prose", "user@host:password"):
        return True
    v = value.rstrip(".,!?:;")
    if v.lower() in _NOT_A_PASSWORD or len(v) < 4:
        return False
    has_digit = any(c.isdigit() for c in v)
    has_symbol = any(not c.isalnum() for c in v)
    mixed = any(c.isupper() for c in v[1:]) and any(c.islower() for c in v)
    return has_digit or has_symbol or mixed


def _entropy(s: str) -> float:
    counts: dict[str, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    n = len(s)
    return -sum(k / n * math.log2(k / n) for k in counts.values())


_B64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{24,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_TOKEN = re.compile(r"(?i)\b(?:key|token|secret|password|passwd|api|auth|credential)s?\b\W{1,5}([0-9a-f]{32,})\b")


def _entropy_hits(text: str) -> list[Secret]:
    out = []
    for m in _B64_TOKEN.finditer(text):
        tok = m.group(0)
        if not (any(c.isdigit() for c in tok) and any(c.isupper() for c in tok) and any(c.islower() for c in tok)):
            continue
        if "://" in text[max(0, m.start() - 12):m.start()]:
            continue  # a URL path
        if _entropy(tok) >= 4.3:
            out.append(Secret("high-entropy string", tok))
    for m in _HEX_TOKEN.finditer(text):
        if _entropy(m.group(1)) >= 3.0:
            out.append(Secret("high-entropy hex string", m.group(1)))
    return out


@functools.lru_cache(maxsize=1)
def _detectors() -> tuple:
    """detect-secrets' regex detectors, or () when the package is not installed."""
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    except ImportError:
        return ()
    skip = {"Public IP (ipv4)", "Base64 High Entropy String", "Hex High Entropy String"}
    # typed Dict[str, Type[Plugin]] with a TypeVar bound to nothing, so mypy cannot instantiate its classes
    mapping: dict[str, Any] = get_mapping_from_secret_type_to_class()
    return tuple(cls() for kind, cls in sorted(mapping.items()) if kind not in skip)


# Every detect-secrets plugin needs a long token, a URL, or a keyword; other lines are skipped.
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-/+=.]{16}")
_KEYWORDS = ("pass", "secret", "key", "token", "pwd", "auth", "api", "cred", "private", "bearer", "://")


def _worth_a_look(line: str) -> bool:
    low = line.lower()
    return any(k in low for k in _KEYWORDS) or _LONG_TOKEN.search(line) is not None


def _detect_secrets_hits(text: str) -> list[Secret]:
    out: list[Secret] = []
    dets = _detectors()
    if not dets:
        return out
    for line in text.splitlines():
        if len(line) < 8 or not _worth_a_look(line):
            continue
        for det in dets:
            try:
                found = det.analyze_line(filename="training-data.txt", line=line, line_number=0)
            except Exception:  # a plugin bug must not stop training data from being scanned by the rest
                continue
            for ps in found:
                value = ps.secret_value or ""
                if value and len(value) >= 6 and not _ordinary_word(value):
                    out.append(Secret(ps.type, value))
    return out


def _ordinary_word(v: str) -> bool:
    return v.isalpha() and v.islower() and v in _NOT_A_PASSWORD


def scan_text(text: str) -> list[Secret]:
    """Every secret found in one text (after normalise)."""
    t = normalise(text)
    found: list[Secret] = []
    seen: set[str] = set()
    for kind, rx, group in PATTERNS:
        for m in rx.finditer(t):
            value = m.group(group)
            if value and _plausible(kind, value) and value not in seen:
                seen.add(value)
                found.append(Secret(kind, value))
    for s in (*_detect_secrets_hits(t), *_entropy_hits(t)):
        if s.value not in seen and not any(s.value in v or v in s.value for v in seen):
            seen.add(s.value)
            found.append(s)
    return found


def flat_values(value: Any) -> list[str]:
    """Every string (and scalar, as text) inside a JSON value."""
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(reversed(list(v.keys()) + list(v.values())))
        elif isinstance(v, list):
            stack.extend(reversed(v))
        elif v is not None:
            out.append(str(v))
    return out


def scan_secrets(value: Any) -> list[tuple[str, str]]:
    """(kind, secret) for every secret in a text or a JSON value (keys included)."""
    texts = [value] if isinstance(value, str) else flat_values(value)
    return [(s.kind, s.value) for t in texts for s in scan_text(t)]


def redact_text(text: str) -> str:
    """`text`, normalised, with every secret replaced by [REDACTED]."""
    t = normalise(text)
    for s in sorted(scan_text(text), key=lambda s: -len(s.value)):
        t = t.replace(s.value, REDACTED)
    return t


def redact(value: Any) -> Any:
    """A JSON value with every secret in its strings replaced (keys are left as they are)."""
    if isinstance(value, str):
        hits = scan_text(value)
        return redact_text(value) if hits else value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
