"""What a runtime can observe about a task: the inputs of the decision core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from .models import AttemptOutcome


@dataclass(frozen=True)
class Created:
    """The task object exists and has never been started."""


@dataclass(frozen=True)
class AttemptStarted:
    number: int
    job: Optional[str] = None


@dataclass(frozen=True)
class AttemptPushed:
    """The attempt pushed `sha`. `workflows` names the workflow files of the pushed tree, and
    `push_workflows`/`pull_request_workflows` those that run on push to the task branch and on a
    pull request into the base (None: the worker did not say; push runs are awaited)."""

    number: int
    sha: str
    thread_id: Optional[str] = None
    tokens_in: Optional[int] = None
    tokens_out: Optional[int] = None
    workflows: Optional[tuple[str, ...]] = None
    push_workflows: tuple[str, ...] = ()
    pull_request_workflows: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttemptNoChange:
    number: int
    thread_id: Optional[str] = None
    tokens_in: Optional[int] = None
    tokens_out: Optional[int] = None


@dataclass(frozen=True)
class AttemptFailed:
    """The worker could not finish its attempt (or its Job died without a report)."""

    number: int
    outcome: AttemptOutcome
    reason: str
    files: tuple[str, ...] = ()
    thread_id: Optional[str] = None
    commit: Optional[str] = None
    tokens_in: Optional[int] = None
    tokens_out: Optional[int] = None


@dataclass(frozen=True)
class CiPending:
    sha: str
    run_id: Optional[int] = None
    run_url: Optional[str] = None


@dataclass(frozen=True)
class CiGreen:
    sha: str
    run_id: Optional[int] = None
    run_url: Optional[str] = None


@dataclass(frozen=True)
class CiRed:
    sha: str
    run_id: Optional[int]
    run_url: Optional[str]
    excerpt: str
    signature: str = ""
    rerunnable: bool = True


@dataclass(frozen=True)
class CiMissing:
    """No workflow run appeared for the commit within the grace period."""

    sha: str
    waited_minutes: int


@dataclass(frozen=True)
class PrOpened:
    """The task branch's pull request, opened or adopted (`draft`: GitHub says it is a draft)."""

    url: str
    number: int
    adopted: bool = False
    draft: bool = False


@dataclass(frozen=True)
class PrReady:
    """GitHub marked the draft pull request `number` ready for review."""

    number: int


@dataclass(frozen=True)
class PrCommented:
    """The draft pull request has the comment summarising attempts up to `attempt`."""

    attempt: int


@dataclass(frozen=True)
class Continue:
    """`ampx continue`: new instructions appeared in spec.followUps."""


@dataclass(frozen=True)
class Abort:
    requested_at: str


@dataclass(frozen=True)
class MergeRequested:
    requested_at: str


@dataclass(frozen=True)
class MergeDone:
    sha: Optional[str] = None


@dataclass(frozen=True)
class MergeRefused:
    reason: str


@dataclass(frozen=True)
class ForgeFailed:
    """GitHub refused something for good (not a rate limit or a 5xx): what, and why.

    `what` is "pr" (opening the pull request), "ci" (reading the runs), "rerun", "merge",
    "ready" (marking the draft ready for review) or "comment" (commenting on the draft).
    """

    what: str
    reason: str


@dataclass(frozen=True)
class RerunStarted:
    """GitHub accepted the flaky guard's re-run of the failed jobs of `run_id`."""

    run_id: int


@dataclass(frozen=True)
class TimeBudgetSpent:
    """The task's wall-time budget (limits.taskTimeoutMinutes) ran out."""

    minutes: int


@dataclass(frozen=True)
class WaitingForSlot:
    """Attempt `number` is due but the concurrency limit is reached: it waits, `place` in line."""

    number: int
    place: int


@dataclass(frozen=True)
class SlotGranted:
    """Attempt `number` got a free slot after waiting and is being launched."""

    number: int


Event = Union[
    Created,
    AttemptStarted,
    AttemptPushed,
    AttemptNoChange,
    AttemptFailed,
    CiPending,
    CiGreen,
    CiRed,
    CiMissing,
    PrOpened,
    PrReady,
    PrCommented,
    Continue,
    Abort,
    MergeRequested,
    MergeDone,
    MergeRefused,
    ForgeFailed,
    RerunStarted,
    TimeBudgetSpent,
    WaitingForSlot,
    SlotGranted,
]

ALL_EVENT_TYPES: tuple[type, ...] = Event.__args__  # type: ignore[attr-defined]
