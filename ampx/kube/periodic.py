"""The operator's one periodic loop: only what time alone can change (see `ampx.kube.timed`).

A thread wakes every second, reads the watch-fed task bodies (no request) and hands the few
tasks due to a small pool (a slow follow-up, e.g. opening a PR after green CI, delays no other
task; a task already in hand is not handed out twice): CI polls grouped by repository on `CiSchedule`'s cadence, spent time budgets,
GitHub actions whose retry time has come, running attempts whose agent thread id is not known
yet (every 5 s, until it is), and every AMPX_RESYNC_SECONDS (60) a safety pass
over the tasks that still want work (a reconcile with nothing to do sends nothing either).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from ..engine import Engine, parse_iso, utcnow
from ..schedule import CiSchedule
from ..slots import repo_of
from ..settings import env_int
from .timed import budget_spent, ci_groups, thread_unknown, wants_work
from .views import TaskCache

log = logging.getLogger("ampx.operator")

#: while webhook deliveries arrive for a repository (within this many seconds of the last),
#: its polls are only a safety net, every SAFETY_NET_S at most
WEBHOOK_QUIET_S = 600.0
SAFETY_NET_S = 60.0


class Periodic:
    def __init__(self, engine: Engine, tasks: TaskCache, schedule: CiSchedule,
                 tick: float = 1.0, resync: Optional[float] = None,
                 before_ci: Optional[Any] = None, heard: Optional[Any] = None) -> None:
        self.engine, self.tasks, self.schedule, self.tick = engine, tasks, schedule, tick
        # called with each namespace that has tasks waiting on CI, before they are polled
        # (the operator registers the namespace's agent key for masking; cached there)
        self.before_ci = before_ci
        # webhook deliveries (`ampx.webhooks.HeardRepositories`): a repository named there is
        # polled at once, and for a while after only as a safety net
        self.heard = heard
        self._heard_at: dict[str, float] = {}
        self.resync = float(resync if resync is not None else env_int("AMPX_RESYNC_SECONDS", 60))
        self._next_resync = time.monotonic() + self.resync
        self.probe_every = 5.0  # running attempts without a thread id (see `thread_unknown`)
        self._next_probe = 0.0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ampx-periodic-work")
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ampx-periodic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, key: str, fn: Any, *args: Any) -> bool:
        """Run `fn(*args)` in the pool unless work under `key` is still running."""
        with self._busy_lock:
            if key in self._busy:
                return False
            self._busy.add(key)

        def run() -> None:
            try:
                fn(*args)
            finally:
                with self._busy_lock:
                    self._busy.discard(key)

        self._pool.submit(run)
        return True

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until no work is in hand (tests)."""
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.run_once()
            except Exception as exc:  # the loop must outlive any one failure
                log.warning("periodic pass: %s", exc)

    def run_once(self) -> None:
        bodies = self.tasks.snapshot()
        self.poll_ci(bodies)
        now = utcnow()
        due = set(self.engine.retry_due())
        due |= {b["metadata"]["name"] for b in bodies if budget_spent(b, now)}
        if time.monotonic() >= self._next_probe:
            self._next_probe = time.monotonic() + self.probe_every
            due |= {b["metadata"]["name"] for b in bodies if thread_unknown(b)}
        if time.monotonic() >= self._next_resync:
            self._next_resync = time.monotonic() + self.resync
            due |= {b["metadata"]["name"] for b in bodies if wants_work(b)}
        for name in sorted(due):
            self._submit("reconcile:" + name, self._guarded, name, self.engine.reconcile, name)

    def poll_ci(self, bodies: list[Any]) -> None:
        """Per repository, the tasks whose poll is due (`CiSchedule`), polled now."""
        poll_repository = getattr(self.engine, "poll_repository", None)
        groups = ci_groups(bodies)
        if groups and self.before_ci is not None:
            waiting = {n for group in groups.values() for n, _ in group}
            for ns in {b["metadata"].get("namespace") for b in bodies
                       if b["metadata"].get("name") in waiting}:
                self._guarded(ns or "", self.before_ci, ns)
        now = time.monotonic()
        fresh = {r.lower() for r in self.heard.drain()} if self.heard is not None else set()
        self._heard_at.update((r, now) for r in fresh)
        for repo, waiting in groups.items():
            now = time.monotonic()
            full = repo_of(repo).lower()
            if full in fresh:  # a delivery says something changed: every waiting task, now
                due = list(waiting)
            else:
                due = [(name, since) for name, since in waiting if self.schedule.due(name, now)]
            if not due:
                continue
            quiet = now - self._heard_at.get(full, -WEBHOOK_QUIET_S) < WEBHOOK_QUIET_S
            if poll_repository is not None:
                # one request reads the whole repository: every waiting task learns from it, so
                # a repository goes at the pace of its most recently pushed task
                self._submit("ci-repo:" + repo, self._poll_repository, poll_repository, repo,
                             list(waiting), SAFETY_NET_S if quiet else 0.0)
                continue
            for name, since in due:
                self._submit("ci:" + name, self._poll_task, name, since)

    def _poll_task(self, name: str, since: Optional[str]) -> None:
        retry = self._guarded(name, self.engine.poll_ci, name)
        self.schedule.after_poll(name, time.monotonic(), _waited(since), retry)

    def _poll_repository(self, poll: Any, repo: str, due: list, at_least: float = 0.0) -> None:
        retry = self._guarded(repo, poll, repo, [name for name, _ in due])
        for name, since in due:
            self.schedule.after_poll(name, time.monotonic(), _waited(since),
                                     max(retry or 0.0, at_least))

    @staticmethod
    def _guarded(what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # one line, not a traceback; the next pass retries
            log.warning("task %s: %s", what, exc)
            return None


def _waited(since: Optional[str]) -> float:
    return (utcnow() - parse_iso(since)).total_seconds() if since else 0.0
