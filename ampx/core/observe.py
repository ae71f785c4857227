"""Turn what a runtime sees (worker reports, attempt process state) into core events.

Pure functions, so restarts are safe: a runtime can call them any number of times on the same
object and gets the same event, which the decision core then accepts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import events as ev
from .actions import (
    Action,
    CommentPullRequest,
    MarkPullRequestReady,
    MergePullRequest,
    OpenPullRequest,
    RerunFailedJobs,
    StartAttempt,
    StopAttempt,
)
from .decide import last_green_commit
from .models import (
    ACTIVE_PHASES,
    AmpTaskSpec,
    AmpTaskStatus,
    AttemptOutcome,
    CiEvent,
    Phase,
    Stage,
)


@dataclass(frozen=True)
class AttemptState:
    """How the runtime sees an attempt's Job or process."""

    state: str  # "missing" | "pending" | "running" | "succeeded" | "failed"
    reason: str = ""
    job: Optional[str] = None


def report_event(status: AmpTaskStatus) -> Optional[ev.Event]:
    """The event the current attempt's worker report stands for, if any."""
    if status.phase not in ACTIVE_PHASES or status.stage != Stage.AGENT or not status.attempts:
        return None
    n = status.attempts
    report = status.reports.get(str(n))
    if report is None:
        return None
    tokens = dict(tokens_in=report.tokens_in, tokens_out=report.tokens_out)
    if report.outcome == AttemptOutcome.PUSHED and report.commit:
        return ev.AttemptPushed(
            n, report.commit, thread_id=report.thread_id, **tokens,
            workflows=tuple(report.workflows) if report.workflows is not None else None,
            push_workflows=tuple(report.push_workflows or ()),
            pull_request_workflows=tuple(report.pull_request_workflows or ()),
        )
    if report.outcome == AttemptOutcome.NO_CHANGE:
        return ev.AttemptNoChange(n, thread_id=report.thread_id, **tokens)
    if report.outcome is not None:
        return ev.AttemptFailed(
            n,
            report.outcome,
            report.reason or report.outcome.value.replace("_", " "),
            files=tuple(report.files or ()),
            thread_id=report.thread_id,
            commit=report.commit,
            **tokens,
        )
    rec = status.history[-1]
    if report.started_at and not rec.started_at:
        return ev.AttemptStarted(n)
    return None


def process_event(status: AmpTaskStatus, seen: AttemptState) -> Optional[ev.Event]:
    """An attempt whose Job/process ended without a final report failed; say how."""
    if status.phase not in ACTIVE_PHASES or status.stage != Stage.AGENT or not status.attempts:
        return None
    report = status.reports.get(str(status.attempts))
    if report is not None and report.outcome is not None:
        return None
    n = status.attempts
    if seen.state == "failed":
        return ev.AttemptFailed(n, AttemptOutcome.AGENT_FAILED, seen.reason or "the attempt's Job failed")
    if seen.state == "succeeded":
        return ev.AttemptFailed(n, AttemptOutcome.AGENT_FAILED, "the worker exited without a report")
    rec = status.history[-1]
    # started (or its Job/process named) but not yet recorded: also when the worker's own
    # "started" report came first and carried no Job name
    if seen.state == "running" and (not rec.started_at or (seen.job and not rec.job)):
        return ev.AttemptStarted(n, job=seen.job)
    return None


def pr_comment_due(status: AmpTaskStatus) -> bool:
    """A task left for review on a draft pull request whose summary comment is not there yet
    (the runtimes keep looking at such a finished task until it is)."""
    return (status.phase == Phase.NEEDS_REVIEW and status.pr_state == "draft"
            and status.pr_number is not None and status.pr_commented != status.attempts)


def resume_actions(spec: AmpTaskSpec, status: AmpTaskStatus) -> list[Action]:
    """Actions that must be in effect for this status; carrying them out again is harmless.

    This is what makes a restart lose nothing: the status says what should be happening.
    """
    n = status.attempts
    if status.phase in ACTIVE_PHASES:
        if status.stage == Stage.AGENT and n:
            report = status.reports.get(str(n))
            if report is None or report.outcome is None:
                return [StartAttempt(n)]
        if status.stage == Stage.PR:
            if status.pr_state == "readying" and status.pr_number is not None:
                return [MarkPullRequestReady(status.pr_number)]
            return [OpenPullRequest()]
        ci = status.ci
        if status.stage == Stage.CI and ci and ci.event == CiEvent.PULL_REQUEST \
                and ci.pr_number is None:
            return [OpenPullRequest(draft=True)]
        if status.stage == Stage.CI and ci and ci.rerun_requested and not ci.rerun_sent \
                and ci.rerun_run_id is not None:
            return [RerunFailedJobs(ci.rerun_run_id)]
        return []
    if status.phase == Phase.ABORTED and n:
        return [StopAttempt(n)]
    if pr_comment_due(status):
        assert status.pr_number is not None
        return [CommentPullRequest(status.pr_number, n)]
    if status.phase == Phase.SUCCESS and status.pr_state == "merging" and status.pr_number:
        return [
            MergePullRequest(
                status.pr_number,
                spec.policy.merge_method,
                spec.policy.delete_branch_on_merge,
                last_green_commit(status),
            )
        ]
    return []
