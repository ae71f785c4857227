"""Excerpt and signature from realistic GitHub Actions job logs (table-driven, no I/O)."""

from __future__ import annotations

import re

import pytest

from ampx.github.excerpt import (
    EXCERPT_LIMIT,
    JobLog,
    build_excerpt,
    clean_log,
    failing_step,
    select_lines,
    signature,
)
from ampx.github.joblog import digest_text

TS = "2026-11-25T10:00:{:02d}.{:07d}Z "


def gh_log(lines: list[str]) -> str:
    """Lines → GitHub's raw job log: BOM, one timestamp per line."""
    return "\ufeff" + "".join(TS.format(i % 60, 1234567 + i) + line + "\n" for i, line in enumerate(lines))


SETUP = [
    "Current runner version: '2.321.0'",
    "##[group]Operating System",
    "Ubuntu",
    "24.04.1",
    "LTS",
    "##[endgroup]",
    "##[group]Runner Image",
    "Image: ubuntu-24.04",
    "##[endgroup]",
    "##[group]Run actions/checkout@v4",
    "with:",
    "  repository: acme/widgets",
    "##[endgroup]",
    "Syncing repository: acme/widgets",
    "Checked out 1f2e3d4c5b6a",
]
POST = ["Post job cleanup.", "Cleaning up orphan processes"]


def run_header(cmd: str) -> list[str]:
    return [f"##[group]Run {cmd}", f"\x1b[36;1m{cmd}\x1b[0m", "shell: /usr/bin/bash -e {0}",
            "env:", "  pythonLocation: /opt/hostedtoolcache/Python/3.12.7/x64", "##[endgroup]"]


PYTEST_OUT = [
    "\x1b[1m============================= test session starts ==============================\x1b[0m",
    "platform linux -- Python 3.12.7, pytest-8.3.3, pluggy-1.5.0",
    "rootdir: /home/runner/work/widgets/widgets",
    "collected 12 items",
    "",
    "tests/test_cart.py \x1b[32m.\x1b[0m\x1b[32m.\x1b[0m\x1b[31mF\x1b[0m\x1b[32m.\x1b[0m           [ 33%]",
    "tests/test_price.py \x1b[32m........\x1b[0m                                            [100%]",
    "",
    "=================================== FAILURES ===================================",
    "\x1b[31m\x1b[1m_______________________________ test_total_with_tax _______________________________\x1b[0m",
    "",
    "    def test_total_with_tax():",
    "        cart = Cart([Item('pen', 2.50), Item('book', 12.00)])",
    ">       assert cart.total(tax=0.2) == 17.40",
    "E       assert 17.399999999999995 == 17.4",
    "E        +  where 17.399999999999995 = <bound method Cart.total of <widgets.cart.Cart object at 0x7f3a2c1d9e50>>(tax=0.2)",
    "",
    "tests/test_cart.py:23: AssertionError",
    "=========================== short test summary info ============================",
    "FAILED tests/test_cart.py::test_total_with_tax - assert 17.399999999999995 == 17.4",
    "\x1b[31m========================= \x1b[31m\x1b[1m1 failed\x1b[0m, \x1b[32m11 passed\x1b[0m\x1b[31m in 0.31s\x1b[0m\x1b[31m =========================\x1b[0m",
    "##[error]Process completed with exit code 1.",
]

NPM_OUT = [
    "> widgets@1.0.0 test",
    "> jest --ci",
    "",
    "FAIL src/cart.test.js",
    "  ● cart › computes the total",
    "",
    "    expect(received).toBe(expected) // Object.is equality",
    "",
    "    Expected: 17.4",
    "    Received: 17.399999999999995",
    "",
    "      10 |   const cart = new Cart([pen, book]);",
    "    > 11 |   expect(cart.total(0.2)).toBe(17.4);",
    "         |                           ^",
    "      12 | });",
    "",
    "      at Object.toBe (src/cart.test.js:11:27)",
    "",
    "PASS src/price.test.js",
    "Test Suites: 1 failed, 1 passed, 2 total",
    "Tests:       1 failed, 8 passed, 9 total",
    "Time:        1.234 s",
    "npm error Lifecycle script `test` failed with error:",
    "npm error code 1",
    "##[error]Process completed with exit code 1.",
]

GO_OUT = [
    "go: downloading github.com/stretchr/testify v1.9.0",
    "=== RUN   TestTotal",
    "    cart_test.go:18: total = 17.399999, want 17.4",
    "--- FAIL: TestTotal (0.00s)",
    "=== RUN   TestPrice",
    "--- PASS: TestPrice (0.00s)",
    "FAIL",
    "FAIL\tgithub.com/acme/widgets/cart\t0.012s",
    "ok  \tgithub.com/acme/widgets/price\t0.009s",
    "FAIL",
    "##[error]Process completed with exit code 1.",
]

CASES = {
    "pytest": (["python -m pip install -e .", "Successfully installed widgets-1.0"], "pytest -q", PYTEST_OUT,
               ["E       assert 17.399999999999995 == 17.4", "tests/test_cart.py:23: AssertionError",
                "FAILED tests/test_cart.py::test_total_with_tax"]),
    "npm": (["npm ci", "added 312 packages in 4s"], "npm test", NPM_OUT,
            ["FAIL src/cart.test.js", "Received: 17.399999999999995", "Tests:       1 failed"]),
    "go": (["go vet ./...", ""], "go test ./...", GO_OUT,
           ["cart_test.go:18: total = 17.399999, want 17.4", "--- FAIL: TestTotal"]),
}


def job_log(setup_step: list[str], cmd: str, out: list[str]) -> str:
    lines = SETUP + run_header(setup_step[0]) + setup_step[1:] + run_header(cmd) + out + POST
    return gh_log(lines)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_failing_step_excerpt(kind: str) -> None:
    setup_step, cmd, out, expected = CASES[kind]
    text = build_excerpt([JobLog("test", job_log(setup_step, cmd, out))], ["lint", "build"])
    assert text.startswith("== job test (failed) ==\nstep: Run " + cmd)
    for needle in expected:
        assert needle in text, (needle, text)
    assert "##[error]Process completed with exit code 1." in text
    assert text.rstrip().endswith("Passed: lint, build")
    # the failing step only: not the setup, not the earlier step, not the header's env
    assert "Syncing repository" not in text and "pythonLocation" not in text
    assert setup_step[-1] not in text if setup_step[-1] else True
    assert "Cleaning up orphan processes" not in text
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", text)
    assert "\x1b" not in text and "\ufeff" not in text
    assert len(text) <= EXCERPT_LIMIT


def test_long_log_keeps_errors_and_tail_within_limit() -> None:
    noise = [f"tests/test_mod{i}.py::test_case_{i} PASSED  [{i % 100:3d}%]" for i in range(3000)]
    out = noise[:1500] + PYTEST_OUT[8:18] + noise[1500:] + PYTEST_OUT[18:]
    text = build_excerpt([JobLog("test", job_log(["true"], "pytest -v", out))], ["lint"])
    assert len(text) <= EXCERPT_LIMIT
    assert "E       assert 17.399999999999995 == 17.4" in text
    assert "tests/test_cart.py:23: AssertionError" in text
    assert "FAILED tests/test_cart.py::test_total_with_tax" in text  # tail
    assert "1 failed, 11 passed" in text
    assert "[...]" in text
    assert "Passed: lint" in text


def test_several_failed_jobs_share_the_budget() -> None:
    big = [f"noise line {i} " + "x" * 60 for i in range(400)]
    jobs = [
        JobLog("unit", job_log(["true"], "pytest", big + PYTEST_OUT)),
        JobLog("web", job_log(["true"], "npm test", big + NPM_OUT)),
        JobLog("go", job_log(["true"], "go test ./...", big + GO_OUT)),
    ]
    text = build_excerpt(jobs, ["lint", "build", "docs"])
    assert len(text) <= EXCERPT_LIMIT
    for name in ("unit", "web", "go"):
        assert f"== job {name} (failed) ==" in text
    assert "E       assert 17.399999999999995 == 17.4" in text
    assert "Received: 17.399999999999995" in text
    assert "--- FAIL: TestTotal" in text
    assert text.endswith("Passed: lint, build, docs")


def test_missing_log_and_setup_failure() -> None:
    setup_fail = gh_log(SETUP[:3] + ["##[error]Unable to resolve action `actions/chekout@v4`, repository not found"])
    text = build_excerpt([JobLog("build", None, "Run make"), JobLog("lint", setup_fail)])
    assert "== job build (failed) ==\nstep: Run make\n(log not available)" in text
    assert "Unable to resolve action" in text


@pytest.mark.parametrize(
    "secret_line",
    [
        "echo token ghs_16C7e42F292c6912E7710c838347Ae178B4a",
        "remote: https://x-access-token:ghs_16C7e42F292c6912E7710c838347Ae178B4a@github.com/acme/w",
        "AMP_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123",
        "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJl",
    ],
)
def test_secrets_are_redacted(secret_line: str) -> None:
    out = [secret_line, "E   AssertionError", "##[error]Process completed with exit code 1."]
    text = build_excerpt([JobLog("test", job_log(["true"], "pytest", out))])
    assert "***" in text
    for part in ("ghs_16C7e42F", "sk-ant-api03-abc", "eyJpc3MiOiIxMjMifQ"):
        assert part not in text


def test_known_token_without_shape_is_redacted() -> None:
    plain = "s3cr3t-value-with-no-known-shape"
    out = [f"using {plain}", "##[error]Process completed with exit code 1."]
    text = build_excerpt([JobLog("test", job_log(["true"], "make", out))], secrets=[plain])
    assert plain not in text and "***" in text


def test_clean_log_strips_timestamps_ansi_bom() -> None:
    lines = clean_log(gh_log(["\x1b[31mred\x1b[0m", "\x1b]8;;http://x\x07link\x1b]8;;\x07", "plain"]))
    assert lines == ["red", "link", "plain"]


def test_failing_step_prefers_hint_and_first_error() -> None:
    digest = digest_text(job_log(["flake8"], "pytest", PYTEST_OUT))
    assert failing_step(digest).name == "Run pytest"
    assert failing_step(digest, hint="Run flake8").name == "Run flake8"


def test_select_lines_fits_budget() -> None:
    lines = [f"line {i}" for i in range(1000)] + ["Error: boom"] + [f"tail {i}" for i in range(1000)]
    for budget in (50, 200, 1000, 3000):
        picked = select_lines(lines, budget)
        assert sum(len(l) + 1 for l in picked) <= budget
        if budget >= 200:
            assert "Error: boom" in picked


# ------------------------------------------------------------------ signature

SIG_CASES = [
    # (a, b, same?)
    ("E       assert 17.399999999999995 == 17.4\ntests/test_cart.py:23: AssertionError",
     "E       assert 17.399999999999991 == 17.4\ntests/test_cart.py:25: AssertionError", True),
    ("FAILED /tmp/pytest-of-runner/pytest-3/test_x0/t.py::test_a - ValueError: bad 0x7f3a2c1d9e50",
     "FAILED /tmp/pytest-of-runner/pytest-9/test_x0/t.py::test_a - ValueError: bad 0x7f00000000aa", True),
    ("2026-11-25T10:00:00.1234567Z Error: timeout after 30s at 10:00:03",
     "2026-11-26T11:12:13.7654321Z Error: timeout after 31s at 11:12:16", True),
    ("fatal: commit 1f2e3d4c5b6a not found", "fatal: commit 9a8b7c6d5e4f not found", True),
    ("E       assert 17.399999999999995 == 17.4", "E       NameError: name 'Cart' is not defined", False),
    ("== job unit (failed) ==\nError: boom", "== job web (failed) ==\nError: boom", False),
    # generic exit-code lines alone do not make failures look alike
    ("== job a (failed) ==\nsomething broke here\n##[error]Process completed with exit code 1.",
     "== job a (failed) ==\nsomething else entirely\n##[error]Process completed with exit code 2.", False),
]


@pytest.mark.parametrize("a,b,same", SIG_CASES)
def test_signature_normalisation(a: str, b: str, same: bool) -> None:
    sa, sb = signature(a), signature(b)
    assert sa and sb
    assert (sa == sb) is same, (sa, sb)


def test_signature_of_full_excerpt_is_stable_across_runs() -> None:
    setup_step, cmd, out, _ = CASES["pytest"]
    a = build_excerpt([JobLog("test", job_log(setup_step, cmd, out))], ["lint"])
    shifted = [l.replace("0.31s", "0.47s").replace("0x7f3a2c1d9e50", "0x7fbb00112233") for l in out]
    b = build_excerpt([JobLog("test", job_log(setup_step, cmd, shifted))], ["lint"])
    assert a != b
    assert signature(a) == signature(b)
    assert signature(a.splitlines()) == signature(a)
    assert "AssertionError" in signature(a)
    assert not re.search(r"\d", signature(a).replace("<n>", ""))
