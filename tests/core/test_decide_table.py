"""Every (state, event) pair of the decision core, legal and illegal, in one table."""

from __future__ import annotations

import pytest

from ampx.core import events as ev
from ampx.core.decide import decide
from ampx.core.models import (
    AmpTaskSpec,
    AmpTaskStatus,
    AttemptOutcome,
    AttemptRecord,
    CiEvent,
    CiWait,
    FollowUp,
    Phase,
    Policy,
    Stage,
)

NOW = "2026-11-25T10:00:00Z"
SHA = "a" * 40


def spec(**kw) -> AmpTaskSpec:
    base = dict(
        repo="acme/api",
        prompt="Migrate Mocha tests to Vitest",
        branch="amp/migrate-mocha-01hyz3",
        max_attempts=3,
        policy=Policy(flaky_retry=False),
    )
    base.update(kw)
    return AmpTaskSpec(**base)


def history(n: int, last: dict | None = None) -> list[AttemptRecord]:
    recs = [
        AttemptRecord(number=i, prompt=f"p{i}", outcome=AttemptOutcome.PUSHED, commit="b" * 40,
                      ci_conclusion="failure", signature=f"sig{i}")
        for i in range(1, n)
    ]
    recs.append(AttemptRecord(number=n, prompt=f"p{n}", **(last or {})))
    return recs


def state(name: str) -> AmpTaskStatus:
    """The representative statuses, one per (phase, stage) a task can be in."""
    pushed = dict(outcome=AttemptOutcome.PUSHED, commit=SHA)
    s = {
        "new": AmpTaskStatus(),
        "queued": AmpTaskStatus(phase=Phase.QUEUED, stage=Stage.AGENT, attempts=1, history=history(1)),
        "running.agent": AmpTaskStatus(phase=Phase.RUNNING, stage=Stage.AGENT, attempts=1,
                                       history=history(1)),
        "running.ci": AmpTaskStatus(phase=Phase.RUNNING, stage=Stage.CI, attempts=1,
                                    history=history(1, pushed), ci=CiWait(sha=SHA)),
        "running.ci.rerun": AmpTaskStatus(
            phase=Phase.RUNNING, stage=Stage.CI, attempts=1, history=history(1, pushed),
            ci=CiWait(sha=SHA, rerun_requested=True, rerun_run_id=11),
            summary="CI red on aaaaaaa; re-running the failed jobs once (flaky guard)"),
        "running.pr": AmpTaskStatus(phase=Phase.RUNNING, stage=Stage.PR, attempts=1,
                                    history=history(1, {**pushed, "ci_conclusion": "success"})),
        "retrying.agent": AmpTaskStatus(phase=Phase.RETRYING, stage=Stage.AGENT, attempts=2,
                                        history=history(2)),
        "retrying.ci": AmpTaskStatus(phase=Phase.RETRYING, stage=Stage.CI, attempts=2,
                                     history=history(2, pushed), ci=CiWait(sha=SHA)),
        "needs_review": AmpTaskStatus(phase=Phase.NEEDS_REVIEW, stage=Stage.IDLE, attempts=3,
                                      history=history(3, pushed), thread_id="T-1"),
        "success": AmpTaskStatus(phase=Phase.SUCCESS, stage=Stage.IDLE, attempts=1,
                                 history=history(1, pushed), pr_number=7, pr_state="open",
                                 pr_url="http://gh/pr/7", thread_id="T-1"),
        "success.merging": AmpTaskStatus(phase=Phase.SUCCESS, stage=Stage.IDLE, attempts=1,
                                         history=history(1, pushed), pr_number=7,
                                         pr_state="merging", thread_id="T-1"),
        "aborted": AmpTaskStatus(phase=Phase.ABORTED, stage=Stage.IDLE, attempts=1,
                                 history=history(1), abort_handled_at="t0"),
        "error": AmpTaskStatus(phase=Phase.ERROR, stage=Stage.IDLE, attempts=1,
                               history=history(1, pushed)),
        # pull-request mode: waiting on a draft PR's runs, before and after the draft is known
        "running.ci.pr": AmpTaskStatus(phase=Phase.RUNNING, stage=Stage.CI, attempts=1,
                                       history=history(1, pushed),
                                       ci=CiWait(sha=SHA, event=CiEvent.PULL_REQUEST)),
        "running.ci.draft": AmpTaskStatus(
            phase=Phase.RUNNING, stage=Stage.CI, attempts=1, history=history(1, pushed),
            ci=CiWait(sha=SHA, event=CiEvent.PULL_REQUEST, pr_number=7),
            pr_number=7, pr_state="draft", pr_url="http://gh/pr/7"),
        "running.pr.readying": AmpTaskStatus(
            phase=Phase.RUNNING, stage=Stage.PR, attempts=1,
            history=history(1, {**pushed, "ci_conclusion": "success"}),
            pr_number=7, pr_state="readying", pr_url="http://gh/pr/7"),
        "needs_review.draft": AmpTaskStatus(phase=Phase.NEEDS_REVIEW, stage=Stage.IDLE,
                                            attempts=3, history=history(3, pushed),
                                            thread_id="T-1", pr_number=7, pr_state="draft",
                                            pr_url="http://gh/pr/7",
                                            summary="CI still red after 3 attempt(s)"),
        # an attempt held back by maxConcurrentAttempts: a first one, and a retry
        "queued.waiting": AmpTaskStatus(phase=Phase.QUEUED, stage=Stage.AGENT, attempts=1,
                                        history=history(1), queue_position=3),
        "retrying.waiting": AmpTaskStatus(phase=Phase.QUEUED, stage=Stage.AGENT, attempts=2,
                                          history=history(2), queue_position=1),
    }
    return s[name]


def event(name: str, st: AmpTaskStatus) -> ev.Event:
    n = st.attempts or 1
    return {
        "Created": ev.Created(),
        "Started": ev.AttemptStarted(n, job=f"t-a{n}"),
        "Pushed": ev.AttemptPushed(n, sha="c" * 40, thread_id="T-1"),
        "NoChange": ev.AttemptNoChange(n),
        "Failed": ev.AttemptFailed(n, AttemptOutcome.AGENT_FAILED, "agent exited 1"),
        "CiPending": ev.CiPending(SHA, run_id=11, run_url="http://gh/run/11"),
        "CiGreen": ev.CiGreen(SHA, run_id=11, run_url="http://gh/run/11"),
        "CiRed": ev.CiRed(SHA, 11, "http://gh/run/11", "AssertionError: 1 != 2", "sigX"),
        "CiMissing": ev.CiMissing(SHA, 10),
        "PrOpened": ev.PrOpened("http://gh/pr/7", 7),
        "Continue": ev.Continue(),
        "Abort": ev.Abort("t1"),
        "Merge": ev.MergeRequested("t1"),
        "MergeDone": ev.MergeDone(),
        "MergeRefused": ev.MergeRefused("Pull Request is not mergeable"),
        "TimeBudget": ev.TimeBudgetSpent(480),
        "RerunStarted": ev.RerunStarted(11),
        "ForgeFailed": ev.ForgeFailed(
            "ci" if st.stage == Stage.CI else "merge" if st.pr_state == "merging"
            else "ready" if st.pr_state == "readying"
            else "comment" if st.phase == Phase.NEEDS_REVIEW and st.pr_state == "draft"
            else "pr",
            "Resource not accessible by integration (403)"),
        # the worker read the pushed tree: CI runs only on pull requests, or not at all
        "PushedPr": ev.AttemptPushed(n, sha="c" * 40, workflows=(".github/workflows/ci.yml",),
                                     pull_request_workflows=(".github/workflows/ci.yml",)),
        "PushedNone": ev.AttemptPushed(n, sha="c" * 40, workflows=(".github/workflows/ci.yml",)),
        "PrDraft": ev.PrOpened("http://gh/pr/7", 7, draft=True),
        "PrReady": ev.PrReady(7),
        "PrCommented": ev.PrCommented(n),
        "Waiting": ev.WaitingForSlot(n, 2),
        "Granted": ev.SlotGranted(n),
    }[name]


EVENTS = ["Created", "Started", "Pushed", "NoChange", "Failed", "CiPending", "CiGreen", "CiRed",
          "CiMissing", "PrOpened", "Continue", "Abort", "Merge", "MergeDone", "MergeRefused",
          "ForgeFailed", "TimeBudget", "RerunStarted",
          "PushedPr", "PushedNone", "PrDraft", "PrReady", "PrCommented", "Waiting", "Granted"]

# (the pull-request columns, PushedPr to PrCommented, are appended to each row after the
# original eighteen, and the pull-request rows follow the original thirteen)
# Expected result: "-" = refused (status unchanged but for request marks), otherwise
# "<phase>/<stage>" followed by the action names, "+" separated.
R = "-"
TABLE = {
    #                 Created        Started          Pushed                    NoChange        Failed                           CiPending   CiGreen                       CiRed                          CiMissing   PrOpened      Continue                       Abort                          Merge                            MergeDone      MergeRefused
    "new":           ["queued/agent+StartAttempt", R, R, R, R, R, R, R, R, R, R, "aborted/idle", R, R, R, R, R, R,
        R, R, R, R, R, R, R],
    "queued":        [R, "running/agent", "running/ci+WatchCi", "needs_review/idle", "retrying/agent+StartAttempt", R, R, R, R, R, R, "aborted/idle+StopAttempt", R, R, R, R, "needs_review/idle+StopAttempt", R,
        "running/ci+WatchCi+OpenPullRequest", "error/idle", R, R, R, "queued/agent", R],
    "running.agent": [R, "running/agent", "running/ci+WatchCi", "needs_review/idle", "retrying/agent+StartAttempt", R, R, R, R, R, R, "aborted/idle+StopAttempt", R, R, R, R, "needs_review/idle+StopAttempt", R,
        "running/ci+WatchCi+OpenPullRequest", "error/idle", R, R, R, "queued/agent", R],
    "running.ci":    [R, R, R, R, R, "running/ci", "running/pr+OpenPullRequest", "retrying/agent+StartAttempt", "error/idle", R, R, "aborted/idle", R, R, R, "error/idle", "needs_review/idle", R,
        R, R, R, R, R, R, R],
    "running.ci.rerun": [R, R, R, R, R, "running/ci", "running/pr+OpenPullRequest", R, "error/idle", R, R, "aborted/idle", R, R, R, "error/idle", "needs_review/idle", "running/ci",
        R, R, R, R, R, R, R],
    "running.pr":    [R, R, R, R, R, R, R, R, R, "success/idle", R, "aborted/idle", R, R, R, "error/idle", R, R,
        R, R, "running/pr+MarkPullRequestReady", R, R, R, R],
    "retrying.agent": [R, "retrying/agent", "retrying/ci+WatchCi", "needs_review/idle", "retrying/agent+StartAttempt", R, R, R, R, R, R, "aborted/idle+StopAttempt", R, R, R, R, "needs_review/idle+StopAttempt", R,
        "retrying/ci+WatchCi+OpenPullRequest", "error/idle", R, R, R, "queued/agent", R],
    "retrying.ci":   [R, R, R, R, R, "retrying/ci", "retrying/pr+OpenPullRequest", "retrying/agent+StartAttempt", "error/idle", R, R, "aborted/idle", R, R, R, "error/idle", "needs_review/idle", R,
        R, R, R, R, R, R, R],
    "needs_review":  [R, R, R, R, R, R, R, R, R, R, "queued/agent+StartAttempt", R, R, R, R, R, R, R,
        R, R, R, R, R, R, R],
    "success":       [R, R, R, R, R, R, R, R, R, R, "queued/agent+StartAttempt", R, "success/idle+MergePullRequest", R, R, R, R, R,
        R, R, R, R, R, R, R],
    "success.merging": [R, R, R, R, R, R, R, R, R, R, "queued/agent+StartAttempt", R, R, "success/idle", "success/idle", "success/idle", R, R,
        R, R, R, R, R, R, R],
    "aborted":       [R, R, R, R, R, R, R, R, R, R, "queued/agent+StartAttempt", R, R, R, R, R, R, R,
        R, R, R, R, R, R, R],
    "error":         [R, R, R, R, R, R, R, R, R, R, "queued/agent+StartAttempt", R, R, R, R, R, R, R,
        R, R, R, R, R, R, R],
    "running.ci.pr": [R, R, R, R, R, "running/ci", "running/pr+OpenPullRequest", "retrying/agent+StartAttempt", "error/idle", "running/ci", R, "aborted/idle", R, R, R, "error/idle", "needs_review/idle", R,
        R, R, "running/ci", R, R, R, R],
    "running.ci.draft": [R, R, R, R, R, "running/ci", "running/pr+OpenPullRequest", "retrying/agent+StartAttempt", "error/idle", R, R, "aborted/idle", R, R, R, "error/idle", "needs_review/idle+CommentPullRequest", R,
        R, R, R, R, R, R, R],
    "running.pr.readying": [R, R, R, R, R, R, R, R, R, R, R, "aborted/idle", R, R, R, "error/idle", R, R,
        R, R, R, "success/idle", R, R, R],
    "needs_review.draft": [R, R, R, R, R, R, R, R, R, R, "queued/agent+StartAttempt", R, R, R, R, "needs_review/idle", R, R,
        R, R, R, R, "needs_review/idle", R, R],
    "queued.waiting": [R, "running/agent", "running/ci+WatchCi", "needs_review/idle", "retrying/agent+StartAttempt", R, R, R, R, R, R, "aborted/idle+StopAttempt", R, R, R, R, "needs_review/idle+StopAttempt", R,
        "running/ci+WatchCi+OpenPullRequest", "error/idle", R, R, R, "queued/agent", "queued/agent"],
    "retrying.waiting": [R, "running/agent", "running/ci+WatchCi", "needs_review/idle", "retrying/agent+StartAttempt", R, R, R, R, R, R, "aborted/idle+StopAttempt", R, R, R, R, "needs_review/idle+StopAttempt", R,
        "running/ci+WatchCi+OpenPullRequest", "error/idle", R, R, R, "queued/agent", "retrying/agent"],
}

CASES = [(s, e, TABLE[s][i]) for s in TABLE for i, e in enumerate(EVENTS)]


def test_table_is_complete():
    assert all(len(row) == len(EVENTS) for row in TABLE.values())
    assert len(CASES) == 19 * 25
    every = {type(event(e, state("running.ci"))) for e in EVENTS}
    assert every == set(ev.ALL_EVENT_TYPES), "every event type has a column"


@pytest.mark.parametrize("state_name,event_name,expected", CASES,
                         ids=[f"{s}-{e}" for s, e, _ in CASES])
def test_transition(state_name, event_name, expected):
    sp = spec(follow_ups=[FollowUp(message="try X")]) if event_name == "Continue" else spec()
    st = state(state_name)
    before = st.model_dump()
    d = decide(sp, st, event(event_name, st), NOW)
    assert st.model_dump() == before, "decide() must not mutate its input"
    if expected == R:
        assert d.accepted is False
        assert d.reason, "a refused event must say why"
        assert d.actions == ()
        assert d.status.phase == st.phase and d.status.stage == st.stage
        assert d.status.attempts == st.attempts and d.status.history == st.history
        return
    assert d.accepted, d.reason
    where, *acts = expected.split("+")
    phase, stage = where.split("/")
    assert d.status.phase == Phase(phase)
    assert d.status.stage == Stage(stage)
    assert [type(a).__name__ for a in d.actions] == acts
    assert d.status.summary
    assert d.status.updated_at == NOW
