"""Errors of the GitHub layer.

Two families, so callers can tell "try again later" from "this will never work":

* :class:`RetryLater` — rate limits, 5xx, connection errors. Never a reason to fail a task;
  the caller reschedules after :attr:`RetryLater.seconds`.
* :class:`GitHubError` and its subclasses — permanent problems (bad configuration, bad
  credentials, a repository that does not exist or the App is not installed on, permissions).

No message built here ever contains a token, a JWT or a private key: messages are made from
GitHub's JSON ``message`` field, the HTTP status and the API path, and are passed through
:func:`ampx.redact.redact` as a second line of defence.
"""

from __future__ import annotations

from typing import Optional

from ampx.redact import redact


def _safe(message: str) -> str:
    return redact(message) or ""


class GitHubError(Exception):
    """A permanent GitHub problem: retrying the same request will not help."""

    def __init__(self, message: str, *, status: Optional[int] = None) -> None:
        super().__init__(_safe(message))
        self.status = status

    @property
    def message(self) -> str:
        return str(self)


class GitHubConfigError(GitHubError):
    """ampx is not configured to reach GitHub (no App credentials and no token, bad key...)."""


class GitHubAuthError(GitHubError):
    """GitHub rejected our credentials (401), also after getting a fresh token."""


class GitHubNotFound(GitHubError):
    """404: the repository (or object) does not exist, or our credentials cannot see it."""


class GitHubPermissionError(GitHubError):
    """403 that is not a rate limit, or permissions the installation does not grant."""


class RetryLater(Exception):
    """Transient: call again after ``seconds`` (rate limit, GitHub 5xx, network error)."""

    def __init__(self, seconds: float, reason: str, *, status: Optional[int] = None) -> None:
        self.seconds = max(0.0, float(seconds))
        self.reason = _safe(reason)
        self.status = status
        super().__init__(f"{self.reason}; retry in {self.seconds:.1f}s")
