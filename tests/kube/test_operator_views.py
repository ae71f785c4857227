"""The operator's watch-fed views, its time-driven selections and the Lease rules, without kopf."""

from __future__ import annotations

import datetime as dt
import time

from ampx.kube.api import KubeApi
from ampx.kube.leader import LeaderElector, LeaseTerms, lease_verdict
from ampx.kube.timed import budget_spent, ci_groups, wants_work
from ampx.kube.views import JobView, TaskCache, rv_newer


def body(name, rv, **status):
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
            "spec": {"repo": status.pop("repo", "acme/api"), "limits": status.pop("limits", {})},
            "status": status}


def test_task_cache_keeps_the_newest_version():
    cache = TaskCache()
    cache.put(body("t1", "12", phase="running"))
    cache.put(body("t1", "9", phase="queued"))  # a watch event older than our own write
    assert cache.get("t1")["status"]["phase"] == "running"
    cache.put(body("t1", "13", phase="needs_review"))
    assert cache.get("t1")["status"]["phase"] == "needs_review"
    assert cache.namespace_of("t1") == "default"
    cache.drop("t1")
    assert cache.get("t1") is None and len(cache) == 0
    assert rv_newer("100", "99") and not rv_newer("99", "100") and rv_newer("x", "5")


def test_job_view_reads_the_index_once_attached_and_never_gets():
    gets = []
    view = JobView(lambda ns, name: gets.append(name) or {"metadata": {"name": name}})
    assert view.read("default", "t1", "t1-a1") == {"metadata": {"name": "t1-a1"}}
    assert gets == ["t1-a1"]  # before the index is handed over: a GET
    index = {"t1": [{"metadata": {"name": "t1-a1", "namespace": "default"}, "status": {"active": 1}}]}
    view.attach(index)
    assert view.read("default", "t1", "t1-a1")["status"] == {"active": 1}
    assert view.read("default", "t1", "t1-a2") is None  # absent from a listed index: missing
    assert view.read("default", "t2", "t2-a1") is None
    assert gets == ["t1-a1"]


def test_only_time_driven_work_is_selected():
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    bodies = [
        body("a", "1", phase="running", stage="ci", ci={"sha": "x", "since": "2026-01-01T11:59:00Z"}, repo="o/r1"),
        body("b", "1", phase="running", stage="ci", ci={"sha": "y"}, repo="o/r1"),
        body("c", "1", phase="running", stage="ci", ci={"sha": "z"}, repo="o/r2"),
        body("d", "1", phase="running", stage="agent", runStartedAt="2026-01-01T10:00:00Z",
             limits={"taskTimeoutMinutes": 60}),
        body("e", "1", phase="success", stage="done", runStartedAt="2026-01-01T10:00:00Z",
             limits={"taskTimeoutMinutes": 60}),
        body("f", "1", phase="needs_review", stage="ci", ci={"sha": "w"}),
    ]
    assert ci_groups(bodies) == {"o/r1": [("a", "2026-01-01T11:59:00Z"), ("b", None)],
                                 "o/r2": [("c", None)]}
    assert [b["metadata"]["name"] for b in bodies if budget_spent(b, now)] == ["d"]
    assert [b["metadata"]["name"] for b in bodies if wants_work(b)] == ["a", "b", "c", "d"]
    assert wants_work(body("g", "1"))  # never admitted yet
    assert wants_work(body("h", "1", phase="success", prState="merging"))


def test_lease_verdicts():
    assert lease_verdict({}, "me", 0, 8) == "free"
    assert lease_verdict({"holderIdentity": "me"}, "me", 0, 8) == "ours"
    assert lease_verdict({"holderIdentity": "other", "leaseDurationSeconds": 8}, "me", 7.9, 8) == "held"
    assert lease_verdict({"holderIdentity": "other", "leaseDurationSeconds": 8}, "me", 8, 8) == "free"


def test_two_candidates_one_leader_and_takeover_after_expiry(kube_api_client):
    terms = LeaseTerms(duration=1.0, renew_every=0.2, renew_deadline=0.6, retry=0.1)
    a = LeaderElector(KubeApi(kube_api_client), "default", "a", terms)
    b = LeaderElector(KubeApi(kube_api_client), "default", "b", terms)
    assert a.try_acquire()
    assert not b.try_acquire()
    assert a.renew()  # the holder renews on the version it holds
    assert not b.try_acquire()  # a change seen: the clock restarts
    time.sleep(0.5)
    assert not b.try_acquire()  # unchanged for less than the duration: still held
    time.sleep(0.6)
    assert b.try_acquire()  # unchanged for the whole duration: expired, taken over
    assert not a.renew()  # the old holder learns it lost (its PUT conflicts, the holder is b)
    lease = KubeApi(kube_api_client).get_lease("default", "ampx-operator")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    b.release()  # a clean shutdown hands over at once
    assert a.try_acquire()


class RecordingEngine:
    """The two engine entry points the periodic loop calls, recorded."""

    def __init__(self):
        self.polled, self.reconciled, self.held = [], [], {"t-retry"}

    def poll_ci(self, name):
        self.polled.append(name)

    def reconcile(self, name):
        self.reconciled.append(name)

    def retry_due(self):
        due, self.held = self.held, set()
        return due


def test_the_periodic_loop_polls_due_ci_once_and_reconciles_only_what_time_changed():
    from ampx.kube.periodic import Periodic
    from ampx.schedule import CiSchedule, PollSchedule

    cache = TaskCache()
    for b in (body("a", "1", phase="running", stage="ci", ci={"sha": "x"}, repo="o/r1"),
              body("b", "1", phase="running", stage="ci", ci={"sha": "y"}, repo="o/r2"),
              body("idle", "1", phase="running", stage="agent"),
              body("late", "1", phase="running", stage="agent", runStartedAt="2020-01-01T00:00:00Z",
                   limits={"taskTimeoutMinutes": 1}),
              body("done", "1", phase="success", stage="done")):
        cache.put(b)
    engine = RecordingEngine()
    loop = Periodic(engine, cache, CiSchedule(PollSchedule(fast=5, maximum=60)), resync=3600)
    loop.run_once()
    loop.drain()
    assert sorted(engine.polled) == ["a", "b"]
    assert sorted(engine.reconciled) == ["late", "t-retry"]  # not "idle", not "done"
    loop.run_once()
    loop.drain()
    assert sorted(engine.polled) == ["a", "b"]  # not due again for 5 s
    loop.resync, loop._next_resync = 0, 0  # the safety pass: every unfinished task
    loop.run_once()
    loop.drain()
    assert sorted(set(engine.reconciled)) == ["a", "b", "idle", "late", "t-retry"]
    loop.stop()


def test_a_webhook_delivery_polls_its_repository_at_once_then_polling_is_a_safety_net():
    from ampx.kube.periodic import SAFETY_NET_S, Periodic
    from ampx.schedule import CiSchedule, PollSchedule
    from ampx.webhooks import Delivery, HeardRepositories

    class RepoEngine(RecordingEngine):
        def __init__(self):
            super().__init__()
            self.repos = []

        def poll_repository(self, repo, names):
            self.repos.append((repo, sorted(names)))

    cache = TaskCache()
    for b in (body("a", "1", phase="running", stage="ci", ci={"sha": "x"},
                   repo="git@github.com:Acme/App.git"),
              body("b", "1", phase="running", stage="ci", ci={"sha": "y"}, repo="acme/other")):
        cache.put(b)
    engine, heard = RepoEngine(), HeardRepositories()
    schedule = CiSchedule(PollSchedule(fast=5, maximum=60))
    loop = Periodic(engine, cache, schedule, resync=3600, heard=heard)
    loop.run_once()
    loop.drain()
    assert len(engine.repos) == 2  # both due the first time
    loop.run_once()
    loop.drain()
    assert len(engine.repos) == 2, "not due again for 5 s"
    heard.add(Delivery("workflow_run", "d-1", "acme/app", "completed", ("x",)))
    loop.run_once()
    loop.drain()
    assert engine.repos[2] == ("git@github.com:Acme/App.git", ["a"]), "polled at once"
    assert schedule.next_at["a"] - time.monotonic() > SAFETY_NET_S - 5, "then only a safety net"
    assert schedule.next_at["b"] - time.monotonic() < 6
    loop.stop()


def test_one_due_task_polls_its_repository_for_every_waiting_task():
    from ampx.kube.periodic import Periodic
    from ampx.schedule import CiSchedule, PollSchedule

    class RepoEngine(RecordingEngine):
        def __init__(self):
            super().__init__()
            self.repos = []

        def poll_repository(self, repo, names):
            self.repos.append((repo, sorted(names)))

    cache = TaskCache()
    for name in ("old", "new"):
        cache.put(body(name, "1", phase="running", stage="ci", ci={"sha": name}, repo="acme/app"))
    engine = RepoEngine()
    schedule = CiSchedule(PollSchedule(fast=5, maximum=60))
    schedule.next_at["old"] = time.monotonic() + 60  # waited long: its next poll is far off
    loop = Periodic(engine, cache, schedule, resync=3600)
    loop.run_once()  # "new" is due
    loop.drain()
    assert engine.repos == [("acme/app", ["new", "old"])], "one request, both tasks read"
    loop.stop()


def test_a_job_just_created_is_not_missing_before_the_watch_shows_it():
    view = JobView(lambda ns, name: None)
    index: dict = {}
    view.attach(index)
    view.created("default", "t1", "t1-a1")
    assert view.read("default", "t1", "t1-a1")["metadata"]["name"] == "t1-a1"  # pending, not missing
    index["t1"] = [{"metadata": {"name": "t1-a1", "namespace": "default"}, "status": {"active": 1}}]
    assert view.read("default", "t1", "t1-a1")["status"] == {"active": 1}
    index["t1"] = []  # deleted later (by anyone): the index alone says so
    assert view.read("default", "t1", "t1-a1") is None


def test_running_attempts_without_a_thread_are_probed_until_it_is_known():
    from ampx.kube.timed import thread_unknown

    running = body("r", "1", phase="running", stage="agent", attempts=1,
                   history=[{"number": 1, "prompt": "p", "startedAt": "2026-01-01T00:00:00Z"}])
    assert thread_unknown(running)
    pending = body("p", "1", phase="queued", stage="agent", attempts=1,
                   history=[{"number": 1, "prompt": "p"}])
    assert not thread_unknown(pending)  # not seen running yet: no pod to read
    known = body("k", "1", phase="running", stage="agent", attempts=1, reports={"1": {"threadId": "T-1"}},
                 history=[{"number": 1, "prompt": "p", "startedAt": "2026-01-01T00:00:00Z"}])
    assert not thread_unknown(known)
