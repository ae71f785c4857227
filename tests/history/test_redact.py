"""redact(): every secret shape is masked, ordinary text is left alone."""

from __future__ import annotations

import pytest

from ampx.redact import clear_registered_secrets, redact, register_secret

GH = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


@pytest.fixture(autouse=True)
def _forget_registered():
    yield
    clear_registered_secrets()


@pytest.mark.parametrize("text,expected", [
    (f"token ghp_{GH} used", "token *** used"),
    (f"gho_{GH} ghu_{GH} ghs_{GH} ghr_{GH}", "*** *** *** ***"),
    # the stateless installation-token format (ghs_APPID_JWT)
    ("remote: token ghs_123456_eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2ln-bmF0_dXJl rejected",
     "remote: token *** rejected"),
    ("url https://x:ghs_42_eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjQyfQ.sig@github.com/o/r",
     "url https://x:***@github.com/o/r"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTU",
     "***"),
    ("https://x-access-token:v1.abcdef0123456789@github.com/o/r.git",
     "https://x-access-token:***@github.com/o/r.git"),
    ("git clone https://bob:hunter22@example.com/r.git", "git clone https://bob:***@example.com/r.git"),
    ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer ***"),
    ("authorization: token 0123456789abcdef", "authorization: token ***"),
    ('{"Authorization": "Basic dXNlcjpwYXNz"}', '{"Authorization": "Basic ***"}'),
    ("curl -H 'bearer sk_live_0123456789'", "curl -H 'bearer ***'"),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY_ID=***"),
    ("key AKIAIOSFODNN7EXAMPLE here", "key *** here"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "aws_secret_access_key = ***"),
    ("token=abc123 next", "token=*** next"),
    ("password: hunter2", "password: ***"),
    ("AMP_API_KEY=sgamp_user_123 other", "AMP_API_KEY=*** other"),
    ("api-key='zzz999'", "api-key='***'"),
    ('{"client_secret": "s3cr3t"}', '{"client_secret": "***"}'),
    ("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJl", "***"),
])
def test_patterns(text, expected):
    assert redact(text) == expected


def test_pem_private_key_blocks():
    pem = ("before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n"
           "-----END RSA PRIVATE KEY-----\nafter")
    out = redact(pem)
    assert "MIIE" not in out and out.startswith("before\n") and out.endswith("\nafter")
    cut = redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg")  # excerpt trimmed mid-key
    assert "MIIE" not in cut


@pytest.mark.parametrize("text", [
    "assert add(1, 2) == 3", "tokens_in: 1234", "max_tokens = 5", "if token == expected:",
    "Password reset flow", "E   AssertionError: assert 4 == 3", "", "ghp_short",
])
def test_ordinary_text_is_untouched(text):
    assert redact(text) == text


def test_registered_secrets_and_idempotence():
    register_secret("plain-secret-value")
    register_secret("abc")  # too short to register safely
    register_secret(None)
    assert redact("x plain-secret-value y abc") == "x *** y abc"
    once = redact(f"token=ghp_{GH} and plain-secret-value")
    assert redact(once) == once
    assert redact(None) is None


def test_registered_secrets_are_bounded_keeping_the_newest():
    from ampx import redact as r

    register_secret("the-agents-api-key", pinned=True)
    values = [f"token-value-{i:05d}" for i in range(r._MAX_REGISTERED + 10)]
    for v in values:
        register_secret(v)
    assert redact(values[-1]) == "***" and redact(values[10]) == "***"
    assert redact(values[0]) == values[0], "the oldest registrations make room"
    assert redact("the-agents-api-key") == "***", "a pinned credential is never dropped"
