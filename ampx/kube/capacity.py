"""The operator's side of the concurrency limits: its settings, and Jobs as slots.

A Job holds its slot from its creation until it finishes (Complete or Failed) or is deleted:
exactly what `kubectl get jobs` counts as not done. The operator's Job watch reports each Job
to the `SlotBook` (`job_changed`); when a slot frees, the book names the tasks to reconcile
and a `Waker` thread reconciles them at once, so no task polls for a slot.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Optional

from ..core.models import ATTEMPT_LABEL, TASK_LABEL
from ..core.queueing import Limits
from ..settings import env
from ..slots import SlotBook
from .api import KubeApi
from .jobs import job_state

log = logging.getLogger("ampx.capacity")


def _positive(name: str) -> Optional[int]:
    raw = env(name)
    if raw is None or raw.strip().lower() in ("unlimited", "none", "null"):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1 (or unset: unlimited), "
                         f"not {raw!r}")
    return value


def limits_from_env() -> Limits:
    """AMPX_MAX_CONCURRENT_ATTEMPTS and ..._PER_REPO (chart: tasks.maxConcurrentAttempts...)."""
    return Limits(per_namespace=_positive("AMPX_MAX_CONCURRENT_ATTEMPTS"),
                  per_repo=_positive("AMPX_MAX_CONCURRENT_ATTEMPTS_PER_REPO"))


def job_attempt(body: dict) -> Optional[tuple[str, int]]:
    """(task, attempt number) of an attempt Job, from its labels."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    task, number = labels.get(TASK_LABEL), labels.get(ATTEMPT_LABEL)
    if not task or not str(number or "").isdigit():
        return None
    return task, int(number)


def job_changed(book: SlotBook, event_type: Optional[str], body: dict, namespace: str) -> None:
    """One watch event of an attempt Job: it holds its slot until finished or deleted."""
    found = job_attempt(body)
    if found is None:
        return
    active = event_type != "DELETED" and job_state(body).state in ("pending", "running")
    book.job_seen(namespace, found[0], found[1], active)


class Waker:
    """Reconciles the tasks the book names, one at a time, on its own thread (a waiting task
    is never polled: it is reconciled when its turn comes or its place moves)."""

    def __init__(self, reconcile: Callable[[str], Any]) -> None:
        self.reconcile = reconcile
        self._queue: "queue.Queue[str]" = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ampx-slots", daemon=True)
        self._thread.start()

    def __call__(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                if key not in self._pending:
                    self._pending.add(key)
                    self._queue.put(key)

    def _run(self) -> None:
        while True:
            key = self._queue.get()
            with self._lock:
                self._pending.discard(key)
            try:
                self.reconcile(key.split("/", 1)[1])
            except Exception as exc:  # the next event or tick retries
                log.warning("task %s: %s", key, exc)


def running_jobs(api: KubeApi, namespace: str) -> list[tuple[str, int, bool]]:
    """The attempt Jobs of a namespace as the book's seed (what ran before a restart)."""
    out = []
    for job in api.list_jobs(namespace, TASK_LABEL):
        found = job_attempt(job)
        if found is not None:
            out.append((found[0], found[1], job_state(job).state in ("pending", "running")))
    return out


def operator_capacity(api: KubeApi, reconcile: Callable[[str], Any]) -> Optional[SlotBook]:
    """The operator's SlotBook, or None when no limit is set (every attempt starts at once)."""
    limits = limits_from_env()
    if limits.unlimited:
        return None
    log.info("concurrency limits: %s attempts per namespace, %s per repository",
             limits.per_namespace or "unlimited", limits.per_repo or "unlimited")
    return SlotBook(limits, on_wake=Waker(reconcile),
                    seed=lambda namespace: running_jobs(api, namespace))
