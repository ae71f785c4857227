"""The runtimes' view of the concurrency limits: which attempts hold a slot, which wait.

`SlotBook` is the engine's `Capacity`: before launching an attempt the engine claims a slot
and either gets it (the attempt starts) or learns its place in line (the task shows `queued`).
The runtime tells the book what holds a slot: the local supervisor replaces the whole picture
on every pass (`set_world`), the operator reports Jobs as its watch sees them (`job_seen`), and
the engine every task it looks at (`seen`: owner, repository, still waiting?). A slot the engine took but the runtime has not seen yet is a reservation, so two
claims in a row never both get the last slot. When slots free or places move, `on_wake` gets
the tasks to reconcile now, so the next attempt starts without any per-task polling.
The decision itself is the pure `ampx.core.queueing.plan`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Callable, Iterable, Optional

from .core.models import OWNER_LABEL, AmpTask
from .core.queueing import Due, Held, Limits, Plan, plan, shown_place

# a reservation the runtime never confirms (a lost watch event) stops counting after this long
RESERVATION_TTL_S = 120.0


def task_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def attempt_key(namespace: str, name: str, number: int) -> str:
    return f"{namespace}/{name}#{number}"


def repo_of(spec_repo: str) -> str:
    """One name per repository (`owner/name`, lowercase), whatever form the spec wrote it in:
    `o/r`, `https://HOST/o/r(.git)`, `git@HOST:o/r.git`, `ssh://git@HOST:PORT/o/r` (one host
    per installation, which admission checks)."""
    text = spec_repo.strip().rstrip("/")
    text = text[:-4] if text.endswith(".git") else text
    parts = [p for p in text.replace(":", "/").split("/") if p]
    return "/".join(parts[-2:]).lower()


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class SlotBook:
    def __init__(self, limits: Limits, on_wake: Optional[Callable[[list[str]], None]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 seed: Optional[Callable[[str], list[tuple[str, int, bool]]]] = None) -> None:
        self.limits = limits
        self.on_wake = on_wake
        # seed(namespace) -> [(task, attempt, holds a slot)]: the attempts already running
        # when the runtime started, read once per namespace before its first claim
        self.seed = seed
        self._seeded: set[str] = set()
        self.clock = clock
        self._lock = threading.Lock()
        self._info: dict[str, tuple[str, str, str]] = {}  # task key -> (namespace, repo, owner)
        self._held: dict[str, str] = {}  # attempt key -> task key (seen by the runtime)
        self._reserved: dict[str, tuple[str, float]] = {}  # attempt key -> (task key, when)
        self._due: dict[str, Due] = {}  # task key -> its due attempt
        self._due_number: dict[str, int] = {}  # task key -> that attempt's number
        self._shown: dict[str, int] = {}  # task key -> the place last handed out
        self._turns: dict[tuple[str, str], int] = {}  # (namespace, owner) -> latest start
        self._turn = 0
        self._plan: Optional[Plan] = None

    # ------------------------------------------------------------------ what the runtime sees
    def set_limits(self, limits: Limits) -> None:
        with self._lock:
            if limits != self.limits:
                self.limits, self._plan = limits, None
        self._wake()

    def set_world(self, tasks: Iterable[tuple[AmpTask, str]]) -> None:
        """The whole picture (the local supervisor, every pass): each active task whose current
        attempt is "running" (holds a slot) or "due" (not started); reservations are dropped,
        as the picture includes every attempt launched so far."""
        with self._lock:
            held: dict[str, str] = {}
            due: dict[str, Due] = {}
            for task, state in tasks:
                tkey = self._learn(task)
                if state == "running":
                    held[attempt_key(task.namespace, task.name, task.status.attempts)] = tkey
                elif state == "due":
                    due[tkey] = self._due_of(task)
            if held != self._held or due != self._due or self._reserved:
                self._held, self._due, self._reserved, self._plan = held, due, {}, None
            self._shown = {k: v for k, v in self._shown.items() if k in due}

    def job_seen(self, namespace: str, task: str, number: int, active: bool) -> None:
        """The operator's watch saw attempt `number`'s Job: still holding its slot, or done."""
        akey, tkey = attempt_key(namespace, task, number), task_key(namespace, task)
        with self._lock:
            reserved = self._reserved.pop(akey, None) is not None
            before = akey in self._held
            if active:
                self._held[akey] = tkey
                if self._due_number.get(tkey, number + 1) <= number:
                    self._due.pop(tkey, None)  # its due attempt runs: it no longer waits
            else:
                self._held.pop(akey, None)
            freed = not active and (before or reserved)
            if before != active or reserved:
                self._plan = None
        if freed:
            self._wake()

    def seen(self, task: AmpTask, waiting: bool) -> None:
        """The engine looked at a task: its owner and repository (for its Jobs' slots), and
        whether it still waits (not: started elsewhere, aborted, finished)."""
        with self._lock:
            self._learn(task)
        if not waiting:
            self.forget(task.namespace, task.name)

    def forget(self, namespace: str, name: str, deleted: bool = False) -> None:
        """The task has no due attempt any more; `deleted`: nor anything else."""
        tkey = task_key(namespace, name)
        with self._lock:
            changed = self._due.pop(tkey, None) is not None
            self._due_number.pop(tkey, None)
            self._shown.pop(tkey, None)
            if deleted:
                self._info.pop(tkey, None)
                for table in (self._held, self._reserved):
                    for akey in [a for a, t in table.items()
                                 if (t if isinstance(t, str) else t[0]) == tkey]:
                        del table[akey]
                        changed = True
            if changed:
                self._plan = None
        if changed:
            self._wake()

    # ------------------------------------------------------------------ the engine's Capacity
    def claim(self, task: AmpTask, number: int) -> Optional[int]:
        """None: attempt `number` may start now and its slot is taken; else its place in line."""
        self._seed(task.namespace)
        with self._lock:
            tkey = self._learn(task)
            due = self._due_of(task)
            self._due_number[tkey] = number
            if self._due.get(tkey) != due:
                self._due[tkey], self._plan = due, None
            current = self._current()
            if tkey in current.start:
                del self._due[tkey]
                self._due_number.pop(tkey, None)
                self._shown.pop(tkey, None)
                self._turn += 1
                self._turns[(due.namespace, due.owner)] = self._turn
                self._reserved[attempt_key(task.namespace, task.name, number)] = (tkey, self.clock())
                self._plan = None
                return None
            place = shown_place(current.place.get(tkey, len(current.place) + 1))
            self._shown[tkey] = place
            return place

    def release(self, task: AmpTask, number: int) -> None:
        """The launch failed: the slot taken by `claim` is free again."""
        with self._lock:
            self._reserved.pop(attempt_key(task.namespace, task.name, number), None)
            self._plan = None
        self._wake()

    # ------------------------------------------------------------------ reading
    def holding(self, namespace: Optional[str] = None) -> int:
        """Attempts holding a slot (seen or reserved), in one namespace or all."""
        with self._lock:
            self._expire()
            keys = set(self._held) | set(self._reserved)
            return sum(1 for k in keys if namespace is None or k.startswith(namespace + "/"))

    def waking(self) -> list[str]:
        """Task keys to reconcile now: those that may start and those whose place moved."""
        with self._lock:
            current = self._current()
            moved = [k for k, p in current.place.items()
                     if k in self._shown and self._shown[k] != shown_place(p)]
            return list(current.start) + moved

    # ------------------------------------------------------------------ inside
    def _seed(self, namespace: str) -> None:
        if self.seed is None or namespace in self._seeded:
            return
        found = self.seed(namespace)  # outside the lock: an API call
        with self._lock:
            if namespace in self._seeded:
                return
            for name, number, active in found:
                akey = attempt_key(namespace, name, number)
                if active and akey not in self._held:
                    self._held[akey] = task_key(namespace, name)
            self._seeded.add(namespace)
            self._plan = None

    def _wake(self) -> None:
        if self.on_wake is None:
            return
        keys = self.waking()
        if keys:
            self.on_wake(keys)

    def _learn(self, task: AmpTask) -> str:
        tkey = task_key(task.namespace, task.name)
        owner = (task.metadata.get("labels") or {}).get(OWNER_LABEL, "unknown")
        info = (task.namespace, repo_of(task.spec.repo), owner)
        if self._info.get(tkey) != info:
            self._info[tkey], self._plan = info, None
        return tkey

    def _due_of(self, task: AmpTask) -> Due:
        ns, repo, owner = self._info[task_key(task.namespace, task.name)]
        rec = task.status.current()
        since = (rec.queued_at if rec is not None else None) or task.status.updated_at \
            or task.metadata.get("creationTimestamp") or _now_iso()
        return Due(task_key(task.namespace, task.name), ns, repo, owner, since)

    def _expire(self) -> None:
        now = self.clock()
        stale = [a for a, (_, t) in self._reserved.items() if now - t > RESERVATION_TTL_S]
        for akey in stale:
            del self._reserved[akey]
        if stale:
            self._plan = None

    def _current(self) -> Plan:
        self._expire()
        if self._plan is None:
            holders = {a: t for a, (t, _) in self._reserved.items()}
            holders.update(self._held)
            held = []
            for tkey in holders.values():
                ns, repo, owner = self._info.get(tkey, (tkey.split("/", 1)[0], "?", "?"))
                held.append(Held(ns, repo, owner))
            self._plan = plan(self.limits, held, list(self._due.values()), self._turns)
        return self._plan
