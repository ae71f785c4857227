"""Engine.poll_repository: every task of a repository waiting on CI, one forge call."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace

from ampx.ci_poller import RepoSchedule, group_by_repository
from ampx.core.models import AmpTask, AmpTaskSpec, AmpTaskStatus, CiEvent, Phase, Policy, Stage, WorkerReport
from ampx.core.observe import AttemptState
from ampx.engine import Engine
from ampx.github.ci import RepoPoll
from ampx.github.errors import GitHubNotFound, RetryLater
from ampx.schedule import PollSchedule


class MemStore:
    def __init__(self):
        self.tasks: dict[str, AmpTask] = {}

    def load(self, name):
        t = self.tasks.get(name)
        return t.model_copy(deep=True) if t else None

    def save_status(self, task, status):
        stored = self.tasks[task.name]
        stored.status = status.model_copy(update={"reports": stored.status.reports})
        return stored.model_copy(deep=True)


@dataclass
class MemLauncher:
    states: dict = field(default_factory=dict)

    def start(self, task, number):
        self.states[(task.name, number)] = "pending"

    def stop(self, task, number):
        self.states[(task.name, number)] = "missing"

    def state(self, task, number):
        return AttemptState(self.states.get((task.name, number), "missing"))


@dataclass
class RepoForge:
    """CI by commit; every repository-wide call recorded."""

    states: dict = field(default_factory=dict)  # (sha, event) -> state
    calls: list = field(default_factory=list)
    fail: Exception | None = None
    spacing: float | None = None

    def poll_repository(self, repo, wanted):
        self.calls.append((repo.full_name, sorted(wanted)))
        if self.fail:
            raise self.fail
        return RepoPoll({w: SimpleNamespace(state=self.states.get(w, "none"), run_id=7,
                                            run_url="http://gh/run/7", excerpt="boom",
                                            signature="boom", rerunnable=False)
                         for w in wanted}, self.spacing)

    def rerun_failed_jobs(self, repo, run_id):
        pass

    def open_or_adopt(self, repo, head, base, title, body, draft=False):
        return SimpleNamespace(url="http://gh/pr/1", number=1, adopted=False, draft=draft)


def waiting_task(store, eng, name, sha, repo="acme/api"):
    spec = AmpTaskSpec(repo=repo, prompt="Fix it", branch=f"amp/{name}-01abcd",
                       policy=Policy(flaky_retry=False))
    store.tasks[name] = AmpTask(metadata={"name": name}, spec=spec, status=AmpTaskStatus())
    eng.reconcile(name)
    store.tasks[name].status.reports["1"] = WorkerReport(started_at="x")
    eng.reconcile(name)
    store.tasks[name].status.reports["1"] = WorkerReport(outcome="pushed", commit=sha)
    eng.reconcile(name)
    assert store.tasks[name].status.stage == Stage.CI


def setup():
    store, forge = MemStore(), RepoForge()
    clock = [dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.timezone.utc)]
    eng = Engine(store=store, launcher=MemLauncher(), forge=forge, clock=lambda: clock[0])
    return eng, store, forge


def test_one_call_for_the_repository_and_each_task_gets_its_own_event() -> None:
    eng, store, forge = setup()
    for name, sha in (("g", "a" * 40), ("r", "b" * 40), ("p", "c" * 40)):
        waiting_task(store, eng, name, sha)
    store.tasks["p"].status.ci.event = CiEvent.PULL_REQUEST
    forge.states = {("a" * 40, "push"): "green", ("b" * 40, "push"): "red",
                    ("c" * 40, "pull_request"): "pending"}
    forge.spacing = 14.0
    hint = eng.poll_repository("acme/api", ["g", "r", "p"])
    assert forge.calls == [("acme/api", sorted([("a" * 40, "push"), ("b" * 40, "push"),
                                                ("c" * 40, "pull_request")]))]
    assert hint == 14.0, "the budget's spacing reaches the caller"
    assert store.tasks["g"].status.phase == Phase.SUCCESS
    assert store.tasks["g"].status.pr_url == "http://gh/pr/1"
    assert store.tasks["r"].status.phase == Phase.RETRYING
    p = store.tasks["p"].status
    assert p.stage == Stage.CI and p.ci_run_url == "http://gh/run/7"


def test_tasks_not_waiting_are_left_alone_and_not_asked_for() -> None:
    eng, store, forge = setup()
    waiting_task(store, eng, "w", "a" * 40)
    store.tasks["idle"] = AmpTask(metadata={"name": "idle"}, spec=AmpTaskSpec(
        repo="acme/api", prompt="x", branch="amp/idle-01abcd"), status=AmpTaskStatus())
    eng.poll_repository("acme/api", ["w", "idle", "gone"])
    assert forge.calls == [("acme/api", [("a" * 40, "push")])]
    assert store.tasks["idle"].status.phase is None
    assert eng.poll_repository("acme/api", ["idle"]) is None and len(forge.calls) == 1


def test_retry_later_keeps_every_task_waiting_and_says_when() -> None:
    eng, store, forge = setup()
    waiting_task(store, eng, "w", "a" * 40)
    before = store.tasks["w"].status
    forge.fail = RetryLater(42, "rate limited")
    assert eng.poll_repository("acme/api", ["w"]) == 42
    assert store.tasks["w"].status == before


def test_a_repository_gone_fails_each_waiting_task_with_the_reason() -> None:
    eng, store, forge = setup()
    waiting_task(store, eng, "a", "a" * 40)
    waiting_task(store, eng, "b", "b" * 40)
    forge.fail = GitHubNotFound("repository acme/api not found", status=404)
    eng.poll_repository("acme/api", ["a", "b"])
    for name in ("a", "b"):
        st = store.tasks[name].status
        assert st.phase == Phase.ERROR and "not found" in (st.summary or "")


def test_grouping_and_the_repository_schedule() -> None:
    eng, store, forge = setup()
    waiting_task(store, eng, "a", "a" * 40, repo="acme/API")
    waiting_task(store, eng, "b", "b" * 40, repo="https://github.com/acme/api")
    waiting_task(store, eng, "c", "c" * 40, repo="acme/web")
    groups = group_by_repository(store.tasks.values())
    assert {k: sorted(t.name for t in v) for k, v in groups.items()} == {
        "acme/api": ["a", "b"], "acme/web": ["c"]}
    now = [100.0]
    sched = RepoSchedule(PollSchedule(fast=5, maximum=60), clock=lambda: now[0])
    sched.after_poll("acme/api", 10, None)
    assert sched.next_at["acme/api"] == 105
    sched.after_poll("acme/api", 10, 14.4)
    assert sched.next_at["acme/api"] == 114.4, "never sooner than the budget's spacing"
    assert not sched.may_poll("acme/api"), "not even for a webhook delivery"
    now[0] += 14.5
    assert sched.may_poll("acme/api")
    now[0] -= 14.5
    sched.heard("acme/api")
    sched.after_poll("acme/api", 10, None)
    assert sched.next_at["acme/api"] == 160, "a repository heard by webhook: safety net only"
    now[0] += 601
    sched.after_poll("acme/api", 10, None)
    assert sched.next_at["acme/api"] == now[0] + 5, "deliveries stopped: back to the cadence"
