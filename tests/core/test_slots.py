"""The engine with concurrency limits: held-back starts, places in line, waking the next task."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest

from ampx.core.models import (
    OWNER_LABEL,
    AmpTask,
    AmpTaskSpec,
    AttemptOutcome,
    Phase,
    Policy,
    WorkerReport,
)
from ampx.core.observe import AttemptState
from ampx.core.queueing import Limits
from ampx.engine import Engine
from ampx.slots import SlotBook, repo_of


class Store:
    def __init__(self):
        self.tasks: dict[str, AmpTask] = {}

    def add(self, name, owner, repo="acme/app"):
        self.tasks[name] = AmpTask(
            metadata={"name": name, "namespace": "team", "labels": {OWNER_LABEL: owner}},
            spec=AmpTaskSpec(repo=repo, prompt="p", branch=f"amp/{name}",
                             policy=Policy(flaky_retry=False)))

    def load(self, name):
        t = self.tasks.get(name)
        return t.model_copy(deep=True) if t else None

    def save_status(self, task, status):
        stored = self.tasks[task.name]
        stored.status = status.model_copy(update={"reports": stored.status.reports})
        return stored.model_copy(deep=True)


@dataclass
class Launcher:
    """Jobs by (task, attempt); `active` is what holds a slot."""

    states: dict = field(default_factory=dict)
    started: list = field(default_factory=list)

    def start(self, task, number):
        self.states[(task.name, number)] = "running"
        self.started.append((task.name, number))

    def stop(self, task, number):
        self.states[(task.name, number)] = "missing"

    def state(self, task, number):
        return AttemptState(self.states.get((task.name, number), "missing"))

    def active(self):
        return [k for k, s in self.states.items() if s == "running"]


class Clock:
    def __init__(self):
        self.t = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.timezone.utc)

    def __call__(self):
        self.t += dt.timedelta(seconds=1)
        return self.t


def setup(limits: Limits):
    store, launcher, woken = Store(), Launcher(), []
    book = SlotBook(limits, on_wake=woken.extend)
    engine = Engine(store=store, launcher=launcher, capacity=book, clock=Clock())
    return store, launcher, book, engine, woken


def finish_job(book, launcher, store, name, number, outcome=AttemptOutcome.NO_CHANGE):
    """The worker reports and its Job ends: the operator's watch tells the book."""
    store.tasks[name].status.reports[str(number)] = WorkerReport(outcome=outcome, reason="boom")
    launcher.states[(name, number)] = "succeeded"
    book.job_seen("team", name, number, active=False)


def test_limit_one_holds_back_starts_shows_places_and_wakes_the_next_owner_first():
    store, launcher, book, engine, woken = setup(Limits(per_namespace=1))
    for name, owner in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
        store.add(name, owner)
        engine.reconcile(name)
    assert launcher.started == [("a1", 1)]
    a2, b1 = store.tasks["a2"].status, store.tasks["b1"].status
    assert b1.phase == Phase.QUEUED and b1.queue_position == 1  # bob has nothing running
    assert a2.queue_position == 1 and "1st in line" in a2.summary  # written before bob came
    assert book.waking() == ["team/a2"], "a2's place moved to 2nd: it is reconciled"
    engine.reconcile("a2")
    assert store.tasks["a2"].status.queue_position == 2
    assert store.tasks["a2"].status.summary == "attempt 1 waiting for a free slot (2nd in line)"

    woken.clear()
    finish_job(book, launcher, store, "a1", 1)
    assert woken[0] == "team/b1", "the freed slot wakes the next task at once"
    for key in woken:
        engine.reconcile(key.split("/")[1])
    assert launcher.started == [("a1", 1), ("b1", 1)]
    assert store.tasks["b1"].status.queue_position is None
    assert store.tasks["a2"].status.queue_position == 1
    assert len(launcher.active()) == 1


def test_two_claims_in_a_row_never_both_get_the_last_slot():
    store, launcher, book, engine, _ = setup(Limits(per_namespace=1))
    store.add("a1", "alice")
    store.add("b1", "bob")
    engine.reconcile("a1")  # a1 claims and launches; the watch has not shown its Job yet
    assert launcher.started == [("a1", 1)]
    assert book.claim(store.load("b1"), 1) == 1, "a1's Job is not seen yet: its slot is reserved"
    assert book.holding("team") == 1


def test_a_retry_queues_behind_waiting_tasks_of_other_owners():
    store, launcher, book, engine, woken = setup(Limits(per_namespace=1))
    store.add("a1", "alice")
    store.add("b1", "bob")
    engine.reconcile("a1")
    engine.reconcile("b1")
    # a1's attempt fails: its retry (attempt 2) is due, but bob has waited longer
    store.tasks["a1"].status.reports["1"] = WorkerReport(outcome=AttemptOutcome.AGENT_FAILED,
                                                         reason="agent exited 1")
    launcher.states[("a1", 1)] = "failed"
    book.job_seen("team", "a1", 1, active=False)
    engine.reconcile("a1")
    assert ("a1", 2) not in launcher.started
    st = store.tasks["a1"].status
    assert st.attempts == 2 and st.phase == Phase.QUEUED and st.queue_position == 1
    engine.reconcile("b1")
    assert launcher.started[-1] == ("b1", 1)


def test_a_failed_launch_gives_the_slot_back():
    store, launcher, book, engine, _ = setup(Limits(per_namespace=1))
    store.add("a1", "alice")

    def broken(task, number):
        raise RuntimeError("API server down")

    launcher.start = broken
    with pytest.raises(RuntimeError):  # the runtime logs it and tries again later
        engine.reconcile("a1")
    assert book.holding() == 0


def test_aborting_a_waiting_task_takes_it_out_of_line():
    store, launcher, book, engine, _ = setup(Limits(per_namespace=1))
    for name in ("a1", "b1", "c1"):
        store.add(name, name)
        engine.reconcile(name)
    assert store.tasks["c1"].status.queue_position == 2
    store.tasks["b1"].spec.abort_requested_at = "2026-12-02T10:00:00Z"
    engine.reconcile("b1")
    assert store.tasks["b1"].status.phase == Phase.ABORTED
    assert book.waking() == ["team/c1"]
    engine.reconcile("c1")
    assert store.tasks["c1"].status.queue_position == 1


def test_per_repo_cap_counts_repositories_by_name_whatever_their_form():
    store, launcher, book, engine, _ = setup(Limits(per_repo=1))
    store.add("a1", "alice", repo="acme/app")
    store.add("b1", "bob", repo="https://github.com/ACME/app")
    store.add("c1", "carol", repo="acme/lib")
    for name in ("a1", "b1", "c1"):
        engine.reconcile(name)
    assert [n for n, _ in launcher.started] == ["a1", "c1"]
    assert store.tasks["b1"].status.queue_position == 1
    assert repo_of("git@github.com:acme/App.git") == "acme/app"


def test_the_local_world_view_replaces_the_picture_each_pass():
    store, launcher, book, engine, _ = setup(Limits(per_namespace=1))
    store.add("a1", "alice")
    store.add("b1", "bob")
    engine.reconcile("a1")
    engine.reconcile("b1")
    # the supervisor's next pass: a1's process has ended, b1 still waits
    launcher.states[("a1", 1)] = "succeeded"
    book.set_world([(store.load("b1"), "due")])
    assert book.holding() == 0
    engine.reconcile("b1")
    assert launcher.started[-1] == ("b1", 1)


def test_without_a_capacity_every_attempt_starts():
    store, launcher = Store(), Launcher()
    engine = Engine(store=store, launcher=launcher, clock=Clock())
    for name in ("a1", "a2", "a3"):
        store.add(name, "alice")
        engine.reconcile(name)
    assert len(launcher.started) == 3


def test_a_start_in_a_long_line_wakes_few_tasks():
    """40 waiting: when a slot frees, the next one starts and only the tasks whose shown place
    changes (the first ten, and those crossing 20 or 30) are reconciled to rewrite it."""
    store, launcher, book, engine, woken = setup(Limits(per_namespace=1))
    names = [f"t{i:02d}" for i in range(41)]
    for name in names:
        store.add(name, "alice")
        engine.reconcile(name)
    assert store.tasks["t15"].status.queue_position == 20
    assert "within the first 20 in line" in store.tasks["t15"].status.summary
    woken.clear()
    book.job_seen("team", "t00", 1, active=False)
    assert woken[0] == "team/t01"
    assert 10 <= len(woken) <= 13, woken


def test_repo_names_for_the_per_repo_cap():
    for form in ("acme/app", "ACME/App", "https://ghe.example.com/acme/app.git",
                 "git@ghe.example.com:acme/app.git", "ssh://git@ghe.example.com:2222/acme/app",
                 "https://github.com/acme/app/"):
        assert repo_of(form) == "acme/app", form
    assert repo_of("acme/app2") != repo_of("acme/app")


def test_a_continue_queues_the_same_way():
    from ampx.core.models import FollowUp

    store, launcher, book, engine, _ = setup(Limits(per_namespace=1))
    store.add("a1", "alice")
    store.add("b1", "bob")
    engine.reconcile("a1")
    finish_job(book, launcher, store, "a1", 1)  # no change: a1 ends in needs_review
    engine.reconcile("a1")
    assert store.tasks["a1"].status.phase == Phase.NEEDS_REVIEW
    engine.reconcile("b1")  # b1 takes the free slot
    store.tasks["a1"].spec.follow_ups.append(FollowUp(message="try again"))
    engine.reconcile("a1")
    st = store.tasks["a1"].status
    assert st.attempts == 2 and st.phase == Phase.QUEUED and st.queue_position == 1
    assert ("a1", 2) not in launcher.started
    finish_job(book, launcher, store, "b1", 1)
    engine.reconcile("a1")
    assert launcher.started[-1] == ("a1", 2)
    assert store.tasks["a1"].status.queue_position is None
