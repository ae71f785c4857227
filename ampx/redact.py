"""Mask anything shaped like a secret before it reaches a log, an excerpt or the history.

Agents, CI logs and git errors can echo credentials; every text that leaves a worker goes
through :func:`redact`. Known secret values (the installation token, the agent's API key) are
registered with :func:`register_secret` so they are masked even when they have no known shape,
and also in the forms CI likes to print them in: base64 (at any byte offset) and URL-encoded.

Every pattern here runs in linear time: quantifiers are bounded and never nested over the
same characters, so a crafted line (a 40,000-character dotted word, ``eyJ`` repeated) costs
no more than an ordinary one.
"""

from __future__ import annotations

import base64
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"

# Registered values shorter than this would mask ordinary words; they are ignored.
_MIN_SECRET_LEN = 6
# A base64 fragment of a registered value shorter than this is too likely to occur by chance.
_MIN_DERIVED_LEN = 8
# A long-lived operator registers a fresh installation token every hour per repository: keep
# the newest this many (older tokens have long expired, and their shape is masked anyway).
_MAX_REGISTERED = 512
# An unterminated private key block masks at most this many following key-looking lines.
PEM_MAX_LINES = 120

_lock = threading.Lock()
_registered: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first
_pinned: set[str] = set()  # the process's own credentials (keys from its environment): kept
_registered_re: re.Pattern[str] | None = None
_forms: dict[str, set[str]] = {}  # registered value -> its base64 and URL-encoded forms
_dirty = False

_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]{0,40})PRIVATE KEY-----")
_PEM_BODY_LINE = re.compile(r"[A-Za-z0-9+/=\s]{0,200}|[A-Za-z-]{1,40}: .{0,200}")
# The secret-naming words of the key=value rule (the key is bounded: no quadratic scan).
_SECRET_KEY = (
    r"token|passwd|password|pwd|secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"credentials?"
)

# (pattern, replacement). Replacements keep the label so a reader still sees what was hidden.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # JSON Web Tokens: three base64url segments, the header starting with '{"' = eyJ.
    (re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,4096}\.[A-Za-z0-9_-]{1,8192}\.[A-Za-z0-9_-]{0,4096}"), MASK),
    # GitHub tokens, classic (ghs_ + 36 characters) and the stateless installation-token
    # format of 2026 (ghs_<APPID>_<JWT>, with '_', '-' and '.' inside).
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9][A-Za-z0-9_.-]{15,}"), MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), MASK),
    # Slack / OpenAI / Anthropic style keys.
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"), MASK),
    # npm, PyPI, GitLab, Google API and Stripe keys.
    (re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"), MASK),
    (re.compile(r"\bpypi-[A-Za-z0-9_-]{16,}"), MASK),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), MASK),
    (re.compile(r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{10,}"), MASK),
    # AWS access key ids, and the 40-character secret key printed after one.
    (
        re.compile(
            r"\b((?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16})\b"
            r"(?:.{1,60}?(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=]))?"
        ),
        MASK,
    ),
    (
        re.compile(
            r"(\baws_?secret_?(?:access_?)?key[\"']?\s{0,8}[:=]\s{0,8}[\"']?)[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])",
            re.IGNORECASE,
        ),
        r"\1" + MASK,
    ),
    # Credentials in URLs: https://x-access-token:TOKEN@host, https://user:pass@host.
    (re.compile(r"(x-access-token:)[^@\s/]{1,1024}@", re.IGNORECASE), r"\1" + MASK + "@"),
    (
        re.compile(r"(\b[a-z][a-z0-9+.-]{0,30}://[^:@/\s]{1,256}:)[^@\s/]{1,1024}@", re.IGNORECASE),
        r"\1" + MASK + "@",
    ),
    # Authorization headers and bare bearer values.
    (
        re.compile(
            r"(\bauthorization[\"']?\s{0,8}[:=]\s{0,8}[\"']?(?:(?:bearer|token|basic|bot)\s{1,8})?)"
            r"[^\s\"',;]+",
            re.IGNORECASE,
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(\bbearer\s{1,8})[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1" + MASK),
    # Generic key=value / key: value where the key names a secret (AMP_API_KEY=…, password: …).
    # Not `Class::method` (TestToken::test_refresh) nor `==` comparisons. The key's prefix is
    # bounded so a long run of word characters and dots is not rescanned from every position.
    (
        re.compile(
            r"(?<![A-Za-z0-9_.:-])([A-Za-z0-9_.-]{0,48}?(?:" + _SECRET_KEY + r")[\"']?\s{0,8}"
            r"(?:=(?!=)|(?<!:):(?!:))\s{0,8}[\"']?)"
            r"(?![\"'\s*]|\*\*\*)([^\s\"'&,;]+)",
            re.IGNORECASE,
        ),
        r"\1" + MASK,
    ),
]


# Per pattern above, strings (lower-case) one of which the text must hold for the pattern to
# be tried at all: most texts hold none, and skip the regexes.
_NEEDLES: list[tuple[str, ...]] = [
    ("eyj",), ("gh",), ("github_pat_",), ("xox",), ("sk-",), ("npm_",), ("pypi-",), ("glpat-",),
    ("aiza",), ("k_live_", "k_test_"), ("akia", "asia", "agpa", "aida", "aroa", "anpa", "anva", "aipa"),
    ("secret",), ("x-access-token:",), ("://",), ("authorization",), ("bearer",),
    ("token", "passw", "pwd", "secret", "key", "credential"),
]
assert len(_NEEDLES) == len(_PATTERNS)


def _mask_private_keys(text: str) -> str:
    """Mask PEM private key blocks: up to the END line, or - when the END line is missing (a
    cut log, a truncated echo) - over at most :data:`PEM_MAX_LINES` key-looking lines, so an
    unterminated block cannot erase the rest of the text."""
    out: list[str] = []
    pos = 0
    for m in _PEM_BEGIN.finditer(text):
        if m.start() < pos:
            continue
        label = m.group(1)
        end_marker = f"-----END {label}PRIVATE KEY-----"
        end = text.find(end_marker, m.end())
        out.append(text[pos : m.start()])
        out.append(f"-----BEGIN {label}PRIVATE KEY-----{MASK}")
        if end >= 0 and text.count("\n", m.end(), end) <= PEM_MAX_LINES + 1:
            out.append(end_marker)
            pos = end + len(end_marker)
            continue
        # Unterminated: the rest of the BEGIN line and the key-looking lines after it.
        cut = text.find("\n", m.end())
        if cut < 0:
            pos = len(text)
            break
        n = 0
        while n < PEM_MAX_LINES:
            nxt = text.find("\n", cut + 1)
            line = text[cut + 1 : nxt if nxt >= 0 else len(text)]
            if not line or not _PEM_BODY_LINE.fullmatch(line):
                break
            n += 1
            cut = nxt if nxt >= 0 else len(text)
            if nxt < 0:
                break
        pos = cut
    out.append(text[pos:])
    return "".join(out)


def derived_forms(value: str) -> set[str]:
    """The forms a CI log may print ``value`` in besides itself: its base64 (standard and
    URL-safe alphabets, the characters that do not depend on the bytes around it, for each of
    the three byte offsets it may start at) and its URL encodings."""
    raw = value.encode("utf-8")
    forms: set[str] = set()
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode("ascii")
        start = -(-8 * k // 6)  # first character made only of value's bits
        stop = (8 * (k + len(raw))) // 6  # characters before this one are complete
        part = enc[start:stop]
        for p in (part, part.replace("+", "-").replace("/", "_")):
            if len(p) >= _MIN_DERIVED_LEN:
                forms.add(p)
    for q in (quote(value, safe=""), quote_plus(value, safe="")):
        if q != value:
            forms.add(q)
    forms.discard(value)
    return forms


def _trie_pattern(words: list[str]) -> str:
    """One regex alternation shaped as a trie: matching costs the length of the longest
    value per position, not the number of values."""
    trie: dict[str, dict] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: dict[str, dict]) -> str:
        # Recursion happens only where the trie branches; single-child chains are a loop.
        ends = "" in node
        branches = []
        for ch, child in sorted(node.items()):
            if not ch:
                continue
            chain = [ch]
            while len(child) == 1 and "" not in child:
                (nxt, child), = child.items()
                chain.append(nxt)
            branches.append(re.escape("".join(chain)) + render(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return render(trie)


def register_secret(value: str | None, pinned: bool = False) -> None:
    """Mask this exact value - and its base64 and URL-encoded forms - wherever it appears
    from now on (too short or empty: ignored).

    `pinned` values (long-lived credentials) are never dropped to make room."""
    global _registered_re, _dirty
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
        _forms[value] = derived_forms(value)
        for gone in [v for v in _forms if v not in _registered and v not in _pinned]:
            del _forms[gone]
        _registered_re = None  # built again when next needed (many registrations, one build)
        _dirty = True


def _registered_pattern() -> re.Pattern[str] | None:
    global _registered_re, _dirty
    if not _dirty:
        return _registered_re
    with _lock:
        if _dirty:
            words: set[str] = set()
            for v, forms in _forms.items():
                words.add(v)
                words |= forms
            # The longest match wins at a position: the trie is greedy (optional ends).
            _registered_re = re.compile(_trie_pattern(sorted(words))) if words else None
            _dirty = False
        return _registered_re


def clear_registered_secrets() -> None:
    """Forget registered values (a long-lived process starting unrelated work)."""
    global _registered_re, _dirty
    with _lock:
        _registered.clear()
        _pinned.clear()
        _forms.clear()
        _registered_re = None
        _dirty = False


def redact(text: str | None) -> str | None:
    """Return ``text`` with registered secrets and secret-shaped substrings replaced by ***."""
    if not text:
        return text
    registered = _registered_pattern()
    if registered is not None:
        text = registered.sub(MASK, text)
    if "PRIVATE KEY-----" in text:
        text = _mask_private_keys(text)
    lower = text.lower()
    for (pattern, replacement), needles in zip(_PATTERNS, _NEEDLES):
        if any(n in lower for n in needles):
            text = pattern.sub(replacement, text)
    return text
