"""with_retries: a one-shot caller waits out GitHub's transient failures, not its refusals."""

from __future__ import annotations

import pytest

from ampx.github.errors import GitHubNotFound, RetryLater
from ampx.github.retry import with_retries


def test_transient_failures_are_waited_out_as_github_asks() -> None:
    answers = [RetryLater(2, "503"), RetryLater(120, "rate limit"), "token"]
    slept: list[float] = []

    def call():
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    assert with_retries(call, "token", sleep=slept.append) == "token"
    assert slept == [2, 30], "as asked, each wait capped"


def test_a_permanent_refusal_is_raised_at_once() -> None:
    slept: list[float] = []

    def call():
        raise GitHubNotFound("GitHub App 1 is not installed on acme/x", status=404)

    with pytest.raises(GitHubNotFound, match="not installed"):
        with_retries(call, "token", sleep=slept.append)
    assert slept == []


def test_giving_up_after_the_total_wait() -> None:
    slept: list[float] = []

    def call():
        raise RetryLater(30, "503")

    with pytest.raises(RetryLater):
        with_retries(call, "token", total=100, sleep=slept.append)
    assert slept == [30, 30, 30]
