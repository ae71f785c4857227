"""The operator's slot glue without a server: Jobs hold slots until finished or deleted, a
freed slot wakes the next task's reconcile at once (no per-task polling), and a restarted
operator counts the Jobs already running before it lets anything start."""

from __future__ import annotations

import threading

from ampx.core.models import (
    ATTEMPT_LABEL,
    OWNER_LABEL,
    TASK_LABEL,
    AmpTask,
    AmpTaskSpec,
    AttemptRecord,
)
from ampx.core.queueing import Limits
from ampx.kube.capacity import Waker, job_attempt, job_changed
from ampx.slots import SlotBook


def job(task, n, done=None, active=True):
    status = {"active": 1, "startTime": "2026-12-02T10:00:00Z"} if active else {}
    if done:
        status = {"conditions": [{"type": done, "status": "True"}]}
    return {"metadata": {"name": f"{task}-a{n}", "labels": {TASK_LABEL: task, ATTEMPT_LABEL: str(n)}},
            "status": status}


def task(name, owner, queued_at):
    t = AmpTask(metadata={"name": name, "namespace": "team", "labels": {OWNER_LABEL: owner}},
                spec=AmpTaskSpec(repo="acme/app", prompt="p", branch=f"amp/{name}"))
    t.status.attempts = 1
    t.status.history = [AttemptRecord(number=1, prompt="p", queued_at=queued_at)]
    return t


def test_a_finished_job_wakes_the_next_task_without_polling():
    woke, event = [], threading.Event()

    def reconcile(name):
        woke.append(name)
        event.set()

    book = SlotBook(Limits(per_namespace=1), on_wake=Waker(reconcile))
    assert book.claim(task("a1", "alice", "2026-12-02T10:00:00Z"), 1) is None
    job_changed(book, "ADDED", job("a1", 1), "team")
    assert book.claim(task("b1", "bob", "2026-12-02T10:00:01Z"), 1) == 1
    job_changed(book, "MODIFIED", job("a1", 1, active=True), "team")
    assert not event.wait(0.3), "nothing frees while a1's Job runs"
    job_changed(book, "MODIFIED", job("a1", 1, done="Complete"), "team")
    assert event.wait(2) and woke == ["b1"]
    assert book.claim(task("b1", "bob", "2026-12-02T10:00:01Z"), 1) is None


def test_deleted_and_failed_jobs_free_their_slots():
    book = SlotBook(Limits(per_namespace=2))
    for name in ("a1", "b1"):
        job_changed(book, None, job(name, 1), "team")
    assert book.holding("team") == 2
    job_changed(book, "DELETED", job("a1", 1), "team")
    job_changed(book, "MODIFIED", job("b1", 1, done="Failed"), "team")
    assert book.holding("team") == 0


def test_a_restarted_operator_counts_the_running_jobs_before_the_first_start():
    seeded = []

    def seed(namespace):
        seeded.append(namespace)
        return [("old", 3, True), ("done", 1, False)]

    book = SlotBook(Limits(per_namespace=1), seed=seed)
    assert book.claim(task("new", "alice", "2026-12-02T10:00:00Z"), 1) == 1
    assert book.claim(task("new", "alice", "2026-12-02T10:00:00Z"), 1) == 1
    assert seeded == ["team"], "read once per namespace"
    job_changed(book, "MODIFIED", job("old", 3, done="Complete"), "team")
    assert book.claim(task("new", "alice", "2026-12-02T10:00:00Z"), 1) is None


def test_job_labels():
    assert job_attempt(job("t", 2)) == ("t", 2)
    assert job_attempt({"metadata": {"labels": {TASK_LABEL: "t", ATTEMPT_LABEL: "x"}}}) is None
    assert job_attempt({"metadata": {}}) is None


def test_an_old_attempts_job_does_not_take_the_due_attempt_out_of_line():
    woke = []
    book = SlotBook(Limits(per_namespace=1), on_wake=woke.extend)
    job_changed(book, None, job("x", 1), "team")
    retry = task("a", "alice", "2026-12-02T10:00:00Z")
    retry.status.attempts = 2
    assert book.claim(retry, 2) == 1
    job_changed(book, "MODIFIED", job("a", 1), "team")  # attempt 1's Job, still terminating
    job_changed(book, "MODIFIED", job("a", 1, done="Complete"), "team")
    job_changed(book, "MODIFIED", job("x", 1, done="Complete"), "team")
    assert "team/a" in woke, "the retry is still in line and is woken when the slot frees"


def test_after_a_restart_a_running_jobs_repository_counts_once_its_task_is_seen():
    book = SlotBook(Limits(per_repo=1), seed=lambda ns: [("old", 1, True)])
    old = task("old", "bob", "2026-12-02T09:00:00Z")
    new = task("new", "alice", "2026-12-02T10:00:00Z")
    book.seen(old, waiting=False)  # the operator reconciled it (its Job runs)
    assert book.claim(new, 1) == 1, "old's Job holds acme/app's only slot"
    other = AmpTask(metadata={"name": "lib", "namespace": "team", "labels": {OWNER_LABEL: "c"}},
                    spec=AmpTaskSpec(repo="acme/lib", prompt="p", branch="amp/lib"))
    other.status.attempts = 1
    other.status.history = [AttemptRecord(number=1, prompt="p")]
    assert book.claim(other, 1) is None
