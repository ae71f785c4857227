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


# ----------------------------------------------------------------------------- issue 11


def test_unterminated_private_key_does_not_erase_the_rest():
    key_lines = "\n".join("MIIEowIBAAKCAQEA" + "x" * 48 for _ in range(20))
    text = f"before\n-----BEGIN RSA PRIVATE KEY-----\n{key_lines}\nE   AssertionError: boom\nrest of the log"
    out = redact(text)
    assert "MIIE" not in out
    assert out.startswith("before\n-----BEGIN RSA PRIVATE KEY-----***")
    assert out.endswith("E   AssertionError: boom\nrest of the log")
    # a key that never ends masks at most PEM_MAX_LINES lines of base64
    from ampx.redact import PEM_MAX_LINES
    long = "-----BEGIN PRIVATE KEY-----\n" + "QUJD\n" * (PEM_MAX_LINES + 5) + "tail"
    masked = redact(long)
    assert masked.count("QUJD") == 5 and masked.endswith("tail")


def test_terminated_private_key_on_one_line_and_twice():
    text = ("a -----BEGIN EC PRIVATE KEY-----MHcCAQEE-----END EC PRIVATE KEY----- b "
            "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\nc")
    out = redact(text)
    assert "MHcC" not in out and "MIIEvQ" not in out
    assert out.startswith("a -----BEGIN EC PRIVATE KEY-----***-----END EC PRIVATE KEY----- b ")
    assert out.endswith("-----END PRIVATE KEY-----\nc")


@pytest.mark.parametrize("text", [
    "tests/test_auth.py::TestToken::test_refresh PASSED",
    "FAILED tests/test_auth.py::TestToken::test_refresh - AssertionError",
    "class TestSecret::test_rotation",
    "if password == expected:",
])
def test_test_ids_and_comparisons_are_untouched(text):
    assert redact(text) == text


@pytest.mark.parametrize("secret", [
    "npm_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "pypi-AgEIcHlwaS5vcmcCJGE0ZjEyMzQ1Njc4",
    "glpat-AbCdEfGhIjKlMnOpQrSt",
    "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "sk_live_51H8abcdefghijklmnop",
    "rk_live_51H8abcdefghijklmnop",
    "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "ghs_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
])
def test_token_shapes(secret):
    out = redact(f"echo {secret} done")
    assert secret[6:] not in out and out == "echo *** done"


def test_bare_aws_secret_keys():
    sk = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert redact(f"AKIAIOSFODNN7EXAMPLE {sk}") == "***"
    assert redact(f"AKIAIOSFODNN7EXAMPLE,{sk} rest") == "*** rest"
    assert sk not in redact(f"aws_secret_access_key: {sk}")
    assert sk not in redact(f'"AWS_SECRET_ACCESS_KEY": "{sk}"')
    # 40 base64 characters with no AWS context are left alone (hashes, paths)
    assert redact(f"sha {sk}") == f"sha {sk}"


def test_registered_secret_is_masked_in_base64_and_url_forms():
    import base64
    from urllib.parse import quote

    key = "sgamp_user_0123456789abcdefABCDEF+/="
    for prefix in ("", "x", "xy", "user:"):  # every byte offset the value can start at
        b64 = base64.b64encode(f"{prefix}{key}\n".encode()).decode()
        url = base64.urlsafe_b64encode(f"{prefix}{key}".encode()).decode()
        assert redact(b64) == b64, "control: unmasked before registering"
        register_secret(key)
        assert all(redact(form) != form for form in (b64, url))
        # what is left is only the characters that also depend on the bytes around the key
        assert len(redact(b64).replace("***", "")) <= 12, (prefix, redact(b64))
        clear_registered_secrets()
    register_secret(key)
    assert redact(f"url ?key={quote(key, safe='')}&x=1") == "url ?key=***&x=1"
