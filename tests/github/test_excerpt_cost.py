"""Cost: no line of a CI log can stall the excerpt builder or the redaction.

For any line up to 1 MB, the excerpt of a log holding it takes at most 0.1 s. The time is the
calling thread's CPU time (``time.thread_time``: what the builder itself costs, not how busy
the machine is), and each shape is timed a few times with the best run counting, so a loaded
machine does not make the test flaky;
the code before this change took 28-137 s on a 200 KB ``expected`` line (quadratic patterns)
and 50 s on a 40,000-character dotted line, so the bound still tells them apart.
"""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ci_log_corpus as corpus
from ampx.github.excerpt import JobLog, build_excerpt
from ampx.redact import redact

BOUND = 0.1
MB = 1 << 20


def best_time(fn, tries: int = 3) -> float:
    best = float("inf")
    for _ in range(tries):
        t = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t)
        if best < BOUND / 4:
            break
    return best


def log_with(line: str) -> str:
    out = ["collected 3 items", line, "E   AssertionError: boom", line, corpus.EXIT1]
    return corpus.job_log(corpus.run_step("pytest", out))


def excerpt_time(line: str) -> float:
    log = log_with(line)
    return best_time(lambda: build_excerpt([JobLog("test", log)], ["lint"]))


ADVERSARIAL = {
    "expected": "expected " * (MB // 9),
    "dotted": "a." * 20000,
    "dotted-1mb": "a." * (MB // 2),
    "plain": "x" * MB,
    "jwt-ish": "eyJ-" * (MB // 4),
    "token=": "token=" * (MB // 6),
    "urls": "a://b:" * (MB // 6),
    "pem": "-----BEGIN PRIVATE KEY-----" * (MB // 27),
    "csi": "\x1b[" * (MB // 2),
    "osc": "\x1b]" * (MB // 2),
    "c1": "\x9b" * MB,
    "group": "##[group]Run " * (MB // 13),
    "go": "--- FAIL: " * (MB // 10),
    "panic": "thread '" * (MB // 8),
    "pytest-header": "_" * (MB // 2) + " t " + "_" * (MB // 2),
    "E-spaces": "E" + " " * MB,
    "path-lines": "a.py:1:" * (MB // 7),
    "words": "error failed Expected Received left: right: " * (MB // 44),
    "expected-got": "expected x " * (MB // 22) + "got y",
}


def test_adversarial_lines_are_cheap() -> None:
    slow = {name: round(t, 3) for name, line in ADVERSARIAL.items() if (t := excerpt_time(line)) > BOUND}
    assert not slow, slow


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fragment=st.text(min_size=1, max_size=24), size=st.integers(min_value=1, max_value=MB))
def test_any_line_up_to_a_megabyte(fragment: str, size: int) -> None:
    line = (fragment * (size // len(fragment) + 1))[:size]
    t = excerpt_time(line)
    assert t < BOUND, (fragment, size, t)


def test_redaction_of_crafted_lines_is_cheap() -> None:
    for text in ("a." * 20000, "expected " * (200_000 // 9), "key " * 50_000, "eyJ-" * 50_000,
                 "a://b:" * 30_000, "AKIAIOSFODNN7EXAMPLE " * 10_000):
        t = best_time(lambda: redact(text))
        assert t < BOUND, (text[:20], t)


def test_out_of_time_still_gives_the_steps_end() -> None:
    """With no time to score lines, the excerpt is the failing step's tail, not nothing."""
    case = corpus.case_pytest()
    text = build_excerpt([JobLog("test", case.jobs[0].log)], ["lint"], seconds=0)
    assert "step: Run pytest -q" in text
    assert "FAILED tests/test_money.py::test_convert" in text and corpus.EXIT1 in text
