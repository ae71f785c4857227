"""Mask anything shaped like a secret before it reaches a log, an excerpt or the history.

Agents, CI logs and git errors can echo credentials; every text that leaves a worker goes
through :func:`redact`. Known secret values (the installation token, the agent's API key) are
registered with :func:`register_secret` so they are masked even when they have no known shape.
"""

from __future__ import annotations

import re
import threading

MASK = "***"

# Registered values shorter than this would mask ordinary words; they are ignored.
_MIN_SECRET_LEN = 6
# A long-lived operator registers a fresh installation token every hour per repository: keep
# the newest this many (older tokens have long expired, and their shape is masked anyway).
_MAX_REGISTERED = 512

_lock = threading.Lock()
_registered: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first
_pinned: set[str] = set()  # the process's own credentials (keys from its environment): kept
_registered_re: re.Pattern[str] | None = None

# (pattern, replacement). Replacements keep the label so a reader still sees what was hidden.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private key blocks, also when an excerpt cut the END line off.
    (
        re.compile(
            r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        r"-----BEGIN \1PRIVATE KEY-----" + MASK + r"-----END \1PRIVATE KEY-----",
    ),
    # JSON Web Tokens: three base64url segments, the header starting with '{"' = eyJ.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    # GitHub tokens, classic (ghs_ + 36 characters) and the stateless installation-token
    # format of 2026 (ghs_<APPID>_<JWT>, with '_', '-' and '.' inside).
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9][A-Za-z0-9_.-]{15,}"), MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), MASK),
    # Slack / OpenAI / Anthropic style keys.
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"), MASK),
    # AWS access key ids.
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"), MASK),
    # Credentials in URLs: https://x-access-token:TOKEN@host, https://user:pass@host.
    (re.compile(r"(x-access-token:)[^@\s/]+@", re.IGNORECASE), r"\1" + MASK + "@"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:@/\s]+:)[^@\s/]+@", re.IGNORECASE), r"\1" + MASK + "@"),
    # Authorization headers and bare bearer values.
    (
        re.compile(
            r"(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|token|basic|bot)\s+)?)"
            r"[^\s\"',;]+",
            re.IGNORECASE,
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1" + MASK),
    # Generic key=value / key: value where the key names a secret (AMP_API_KEY=…, password: …).
    (
        re.compile(
            r"(\b[A-Za-z0-9_.-]*?(?:token|passwd|password|pwd|secret|api[_-]?key|apikey|"
            r"access[_-]?key|private[_-]?key|credentials?)[\"']?\s*[:=](?!=)\s*[\"']?)"
            r"(?![\"'\s*]|\*\*\*)([^\s\"'&,;]+)",
            re.IGNORECASE,
        ),
        r"\1" + MASK,
    ),
]


def register_secret(value: str | None, pinned: bool = False) -> None:
    """Mask this exact value wherever it appears from now on (too short or empty: ignored).

    `pinned` values (long-lived credentials) are never dropped to make room."""
    global _registered_re
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _registered or value in _pinned:
            if pinned and value in _registered:
                del _registered[value]
                _pinned.add(value)
            return
        if pinned:
            _pinned.add(value)
        else:
            _registered[value] = None
            while len(_registered) > _MAX_REGISTERED:
                del _registered[next(iter(_registered))]
        alternatives = sorted({*_registered, *_pinned}, key=len, reverse=True)
        _registered_re = re.compile("|".join(re.escape(v) for v in alternatives))


def clear_registered_secrets() -> None:
    """Forget registered values (a long-lived process starting unrelated work)."""
    global _registered_re
    with _lock:
        _registered.clear()
        _pinned.clear()
        _registered_re = None


def redact(text: str | None) -> str | None:
    """Return ``text`` with registered secrets and secret-shaped substrings replaced by ***."""
    if not text:
        return text
    registered = _registered_re
    if registered is not None:
        text = registered.sub(MASK, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
