"""What the decision core asks a runtime to do. Every action is idempotent to carry out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from .models import MergeMethod


@dataclass(frozen=True)
class StartAttempt:
    """Launch attempt `number` (a Job `<task>-a<N>` or a local process); its prompt is in status."""

    number: int


@dataclass(frozen=True)
class StopAttempt:
    """Stop attempt `number` and its processes (delete the Job, background propagation)."""

    number: int


@dataclass(frozen=True)
class WatchCi:
    """Start waiting on the GitHub Actions runs of `sha`."""

    sha: str


@dataclass(frozen=True)
class RerunFailedJobs:
    """Re-run a red run's failed jobs once, before spending an agent attempt (flaky guard)."""

    run_id: int


@dataclass(frozen=True)
class OpenPullRequest:
    """Open the PR for the task branch (a draft when `draft`), or adopt the one already open."""

    draft: bool = False


@dataclass(frozen=True)
class MarkPullRequestReady:
    """Mark the task's draft PR ready for review (its body updated with every attempt)."""

    number: int


@dataclass(frozen=True)
class CommentPullRequest:
    """Comment on the task's draft PR with a summary of the attempts up to `attempt`."""

    number: int
    attempt: int


@dataclass(frozen=True)
class MergePullRequest:
    number: int
    method: MergeMethod
    delete_branch: bool
    sha: Optional[str] = None


Action = Union[StartAttempt, StopAttempt, WatchCi, RerunFailedJobs, OpenPullRequest,
               MarkPullRequestReady, CommentPullRequest, MergePullRequest]
