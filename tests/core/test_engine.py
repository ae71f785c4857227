"""The engine over in-memory implementations of its three interfaces."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace

from ampx.core.models import AmpTask, AmpTaskSpec, AmpTaskStatus, Phase, Policy, Stage, WorkerReport
from ampx.core.observe import AttemptState
from ampx.engine import Engine, iso
from ampx.github.pulls import OpenedPull


class MemStore:
    def __init__(self):
        self.tasks: dict[str, AmpTask] = {}
        self.writes = 0

    def load(self, name):
        t = self.tasks.get(name)
        return t.model_copy(deep=True) if t else None

    def save_status(self, task, status):
        # like the operator: reports belong to the worker and are kept as stored
        stored = self.tasks[task.name]
        status = status.model_copy(update={"reports": stored.status.reports})
        stored.status = status
        self.writes += 1
        return stored.model_copy(deep=True)

    def report(self, name, n, **kw):
        self.tasks[name].status.reports[str(n)] = WorkerReport(**kw)


@dataclass
class MemLauncher:
    started: list = field(default_factory=list)
    stopped: list = field(default_factory=list)
    states: dict = field(default_factory=dict)

    def start(self, task, number):
        self.started.append(number)
        self.states[number] = "pending"
        return f"{task.name}-a{number}"

    def stop(self, task, number):
        self.stopped.append(number)
        self.states[number] = "missing"

    def state(self, task, number):
        return AttemptState(self.states.get(number, "missing"))


@dataclass
class MemForge:
    """GitHub in memory: CI answers in order, pull requests by number (with draft and head)."""

    answers: list = field(default_factory=list)
    prs: list = field(default_factory=list)  # (url, head, title, body, draft) as opened
    heads: dict = field(default_factory=dict)  # branch -> sha GitHub has for it
    events: list = field(default_factory=list)  # the event each CI poll asked for
    ready: list = field(default_factory=list)
    comments: list = field(default_factory=list)
    merged: list = field(default_factory=list)

    def poll_ci(self, repo, sha, branch=None, event="push"):
        self.events.append(event)
        state, excerpt = self.answers.pop(0)
        return SimpleNamespace(state=state, run_id=1, run_url="http://gh/run/1", excerpt=excerpt,
                               signature=excerpt, rerunnable=True)

    def rerun_failed_jobs(self, repo, run_id):
        pass

    def open_or_adopt(self, repo, head, base, title, body, draft=False):
        if self.prs:
            return OpenedPull(self.prs[0][0], 1, True, self.prs[0][4] and 1 not in self.ready,
                              self.heads.get(head))
        self.prs.append(("http://gh/pr/1", head, title, body, draft))
        return OpenedPull("http://gh/pr/1", 1, False, draft, self.heads.get(head))

    def pull_for_branch(self, repo, head):
        if not self.prs or self.prs[0][1] != head or self.merged:
            return None
        return OpenedPull(self.prs[0][0], 1, True, self.prs[0][4] and 1 not in self.ready,
                          self.heads.get(head))

    def mark_ready(self, repo, number, body=None):
        self.ready.append(number)
        return True

    def comment_pr(self, repo, number, body):
        self.comments.append((number, body))

    def merge_pr(self, repo, number, method, sha, delete_branch, branch):
        self.merged.append((number, sha))
        return SimpleNamespace(merged=True, sha="m" * 40, reason="")


def setup(**spec_kw):
    store, launcher, forge = MemStore(), MemLauncher(), MemForge()
    spec = AmpTaskSpec(repo="acme/api", prompt="Fix it", branch="amp/fix-it-01abcd",
                       policy=Policy(flaky_retry=False), **spec_kw)
    store.tasks["t1"] = AmpTask(metadata={"name": "t1"}, spec=spec, status=AmpTaskStatus())
    clock = [dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.timezone.utc)]
    eng = Engine(store=store, launcher=launcher, forge=forge, clock=lambda: clock[0])
    return eng, store, launcher, forge, clock


def test_red_then_green_to_pr_and_reconcile_is_idempotent():
    eng, store, launcher, forge, clock = setup()
    eng.reconcile("t1")
    assert launcher.started == [1] and store.tasks["t1"].status.phase == Phase.QUEUED
    store.report("t1", 1, started_at="x")
    eng.reconcile("t1")
    assert store.tasks["t1"].status.phase == Phase.RUNNING
    store.report("t1", 1, outcome="pushed", commit="a" * 40, thread_id="T-1")
    eng.reconcile("t1")
    writes = store.writes
    eng.reconcile("t1")
    eng.reconcile("t1")
    assert store.writes == writes, "reconciling an unchanged task writes nothing"
    forge.answers = [("pending", ""), ("red", "AssertionError: 3 != 4")]
    eng.poll_ci("t1")
    eng.poll_ci("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.RETRYING and launcher.started == [1, 2]
    assert "AssertionError: 3 != 4" in st.history[-1].prompt
    store.report("t1", 2, outcome="pushed", commit="b" * 40)
    eng.reconcile("t1")
    forge.answers = [("green", "")]
    eng.poll_ci("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.SUCCESS and st.pr_url == "http://gh/pr/1"
    body = forge.prs[0][3]
    assert "| 1 | `aaaaaaaaaaaa` | [failure](http://gh/run/1) |" in body
    assert "| 2 | `bbbbbbbbbbbb` | [success](http://gh/run/1) |" in body
    assert "> Fix it" in body and "Opened by ampx for task `t1`." in body


def test_a_permanent_github_refusal_ends_in_error_with_the_reason():
    from ampx.github.errors import GitHubPermissionError

    eng, store, launcher, forge, clock = setup()

    def refuse(*a, **kw):
        raise GitHubPermissionError("GitHub refused: Resource not accessible by integration", status=403)

    forge.open_or_adopt = refuse
    eng.reconcile("t1")
    store.report("t1", 1, outcome="pushed", commit="a" * 40)
    eng.reconcile("t1")
    forge.answers = [("green", "")]
    eng.poll_ci("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.ERROR
    assert st.summary == "could not open the pull request: GitHub refused: Resource not accessible by integration"


def test_restart_starts_a_lost_attempt_once():
    eng, store, launcher, forge, clock = setup()
    eng.reconcile("t1")
    launcher.states.clear()  # the attempt was recorded but its Job never got created
    eng.reconcile("t1")
    eng.reconcile("t1")
    assert launcher.started == [1, 1]


def test_job_failed_without_report_retries():
    eng, store, launcher, forge, clock = setup()
    eng.reconcile("t1")
    launcher.states[1] = "failed"
    eng.reconcile("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.RETRYING and st.history[0].reason == "the attempt's Job failed"


def test_no_ci_run_within_grace_is_an_error():
    eng, store, launcher, forge, clock = setup()
    eng.reconcile("t1")
    store.report("t1", 1, outcome="pushed", commit="a" * 40)
    eng.reconcile("t1")
    forge.answers = [("none", ""), ("none", "")]
    eng.poll_ci("t1")
    assert store.tasks["t1"].status.stage == Stage.CI
    clock[0] += dt.timedelta(minutes=11)
    eng.poll_ci("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.ERROR and "in 10 min" in st.summary


def test_abort_stops_the_running_attempt():
    eng, store, launcher, forge, clock = setup()
    eng.reconcile("t1")
    store.tasks["t1"].spec.abort_requested_at = iso(clock[0])
    eng.reconcile("t1")
    assert launcher.stopped == [1] and store.tasks["t1"].status.phase == Phase.ABORTED
    eng.reconcile("t1")
    assert launcher.stopped == [1]


def test_task_time_budget_stops_a_long_attempt_and_a_long_ci_wait():
    from ampx.core.models import FollowUp, Limits

    eng, store, launcher, forge, clock = setup(limits=Limits(task_timeout_minutes=30))
    eng.reconcile("t1")
    clock[0] += dt.timedelta(minutes=29)
    eng.reconcile("t1")
    assert store.tasks["t1"].status.phase == Phase.QUEUED and launcher.stopped == []
    clock[0] += dt.timedelta(minutes=1)
    eng.reconcile("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.NEEDS_REVIEW and launcher.stopped == [1]
    assert st.summary == "the task's time budget of 30 min is spent (after 1 attempt(s))"
    assert st.history[0].outcome.value == "timeout"

    # continue restarts the clock; a CI wait that outlasts the budget ends the run too
    store.tasks["t1"].spec.follow_ups.append(FollowUp(message="try again"))
    eng.reconcile("t1")
    assert store.tasks["t1"].status.phase == Phase.QUEUED and launcher.started == [1, 2]
    store.report("t1", 2, outcome="pushed", commit="c" * 40)
    eng.reconcile("t1")
    forge.answers = [("pending", "")]
    eng.poll_ci("t1")
    assert store.tasks["t1"].status.stage == Stage.CI
    clock[0] += dt.timedelta(minutes=31)
    eng.poll_ci("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.NEEDS_REVIEW and "30 min" in st.summary
    assert forge.answers == [], "no poll is spent once the budget is gone"


def test_no_task_budget_means_no_deadline():
    eng, store, launcher, forge, clock = setup()
    eng.reconcile("t1")
    clock[0] += dt.timedelta(days=3)
    eng.reconcile("t1")
    assert store.tasks["t1"].status.phase == Phase.QUEUED


def test_a_rerun_hit_by_a_transient_error_is_repeated_and_costs_no_attempt():
    from ampx.github.errors import RetryLater

    eng, store, launcher, forge, clock = setup()
    store.tasks["t1"].spec.policy.flaky_retry = True
    calls = []

    def rerun(repo, run_id):
        calls.append(run_id)
        if len(calls) == 1:
            raise RetryLater(5, "GitHub answered 502")

    forge.rerun_failed_jobs = rerun
    eng.reconcile("t1")
    store.report("t1", 1, outcome="pushed", commit="a" * 40)
    eng.reconcile("t1")
    # red -> re-run requested, GitHub answers 502 (retry in 5 s): not repeated before that
    forge.answers = [("red", "boom")]
    eng.poll_ci("t1")
    st = store.tasks["t1"].status
    assert calls == [1] and st.ci.rerun_requested and not st.ci.rerun_sent
    forge.answers = [("red", "boom")]
    clock[0] += dt.timedelta(seconds=2)
    eng.poll_ci("t1")  # still red (the re-run never started): not counted, not re-sent yet
    assert calls == [1] and store.tasks["t1"].status.attempts == 1
    forge.answers = [("red", "boom")]
    clock[0] += dt.timedelta(seconds=3)
    eng.poll_ci("t1")  # GitHub's retry time has come: sent again, and accepted
    st = store.tasks["t1"].status
    assert calls == [1, 1] and st.ci.rerun_sent and st.attempts == 1
    forge.answers = [("green", "")]
    eng.poll_ci("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.SUCCESS and st.history[0].flaky is True
    assert launcher.started == [1], "the flaky job cost no agent attempt"


def test_a_pull_request_github_defers_is_retried_when_github_says_not_every_tick():
    from ampx.github.errors import RetryLater

    eng, store, launcher, forge, clock = setup()
    calls = []
    real_open = forge.open_or_adopt

    def open_pr(*a, **kw):
        calls.append(clock[0])
        if len(calls) == 1:
            raise RetryLater(30, "secondary rate limit")
        return real_open(*a, **kw)

    forge.open_or_adopt = open_pr
    eng.reconcile("t1")
    store.report("t1", 1, outcome="pushed", commit="a" * 40)
    eng.reconcile("t1")
    forge.answers = [("green", "")]
    eng.poll_ci("t1")
    assert len(calls) == 1 and store.tasks["t1"].status.stage == Stage.PR
    for _ in range(5):  # the runtime's ticks during the 30 s
        clock[0] += dt.timedelta(seconds=5)
        eng.reconcile("t1")
    assert len(calls) == 1, "GitHub asked for 30 s"
    clock[0] += dt.timedelta(seconds=5)
    eng.reconcile("t1")
    st = store.tasks["t1"].status
    assert len(calls) == 2 and st.phase == Phase.SUCCESS and st.pr_url == "http://gh/pr/1"


# ----------------------------------------------------------------- pull-request mode (issue 11)

PR_ONLY = dict(workflows=[".github/workflows/ci.yml"], push_workflows=[],
               pull_request_workflows=[".github/workflows/ci.yml"])


def test_pull_request_only_ci_opens_a_draft_waits_on_its_runs_and_marks_it_ready():
    eng, store, launcher, forge, clock = setup()
    eng.reconcile("t1")
    store.report("t1", 1, outcome="pushed", commit="a" * 40, **PR_ONLY)
    eng.reconcile("t1")
    st = store.tasks["t1"].status
    assert forge.prs and forge.prs[0][4] is True, "a draft PR is opened right after the push"
    assert st.pr_state == "draft" and st.ci.pr_number == 1 and st.ci.event.value == "pull_request"
    forge.answers = [("red", "AssertionError: 3 != 4")]
    eng.poll_ci("t1")
    assert forge.events == ["pull_request"], "the PR's runs are polled, not push runs"
    store.report("t1", 2, outcome="pushed", commit="b" * 40, **PR_ONLY)
    eng.reconcile("t1")
    assert len(forge.prs) == 1 and store.tasks["t1"].status.ci.pr_number == 1, "the draft is reused"
    forge.answers = [("green", "")]
    eng.poll_ci("t1")
    st = store.tasks["t1"].status
    assert forge.ready == [1]
    assert st.phase == Phase.SUCCESS and st.pr_state == "open"
    assert "ready for review" in st.summary


def test_no_workflow_running_either_way_is_an_error_at_once_naming_the_workflows():
    eng, store, launcher, forge, clock = setup()
    eng.reconcile("t1")
    store.report("t1", 1, outcome="pushed", commit="a" * 40,
                 workflows=[".github/workflows/ci.yml", ".github/workflows/nightly.yml"],
                 push_workflows=[], pull_request_workflows=[])
    eng.reconcile("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.ERROR and forge.events == [] and not forge.prs
    assert "ci.yml, nightly.yml" in st.summary and "pull_request" in st.summary


def test_never_green_on_a_draft_leaves_one_comment_and_the_draft():
    eng, store, launcher, forge, clock = setup(max_attempts=1)
    eng.reconcile("t1")
    store.report("t1", 1, outcome="pushed", commit="a" * 40, thread_id="T-9", **PR_ONLY)
    eng.reconcile("t1")
    forge.answers = [("red", "AssertionError: 3 != 4")]
    eng.poll_ci("t1")
    st = store.tasks["t1"].status
    assert st.phase == Phase.NEEDS_REVIEW and st.pr_state == "draft" and not forge.ready
    assert len(forge.comments) == 1 and st.pr_commented == 1
    number, body = forge.comments[0]
    assert number == 1 and "| 1 | `aaaaaaaaaaaa` | [failure](http://gh/run/1) |" in body
    assert "CI still red" in body
    eng.reconcile("t1")
    eng.reconcile("t1")
    assert len(forge.comments) == 1, "the comment is made once"


def _green_task_with_pr(eng, store, forge):
    eng.reconcile("t1")
    store.report("t1", 1, outcome="pushed", commit="a" * 40)
    eng.reconcile("t1")
    forge.answers = [("green", "")]
    eng.poll_ci("t1")
    assert store.tasks["t1"].status.phase == Phase.SUCCESS


def test_merge_goes_to_githubs_pr_for_the_branch_at_the_green_commit():
    eng, store, launcher, forge, clock = setup()
    forge.heads["amp/fix-it-01abcd"] = "a" * 40
    _green_task_with_pr(eng, store, forge)
    store.tasks["t1"].spec.merge_requested_at = "t1"
    eng.reconcile("t1")
    assert forge.merged == [(1, "a" * 40)]
    assert store.tasks["t1"].status.pr_state == "merged"


def test_merge_refuses_a_status_naming_another_pr():
    eng, store, launcher, forge, clock = setup()
    forge.heads["amp/fix-it-01abcd"] = "a" * 40
    _green_task_with_pr(eng, store, forge)
    store.tasks["t1"].status.pr_number = 2  # forged: someone else's pull request
    store.tasks["t1"].spec.merge_requested_at = "t1"
    eng.reconcile("t1")
    st = store.tasks["t1"].status
    assert forge.merged == [] and st.pr_state == "open"
    assert "names PR #2" in st.summary and "is #1" in st.summary


def test_merge_refuses_a_branch_whose_head_moved_past_the_green_commit():
    eng, store, launcher, forge, clock = setup()
    forge.heads["amp/fix-it-01abcd"] = "a" * 40
    _green_task_with_pr(eng, store, forge)
    forge.heads["amp/fix-it-01abcd"] = "f" * 40  # pushed after CI was green
    store.tasks["t1"].spec.merge_requested_at = "t1"
    eng.reconcile("t1")
    st = store.tasks["t1"].status
    assert forge.merged == [] and "not the task's last green commit aaaaaaaaaaaa" in st.summary
