"""Who may start an attempt now, and every other due attempt's place in line.

The concurrency limits (`maxConcurrentAttempts` per namespace, optionally
`maxConcurrentAttemptsPerRepo`) cap the attempts holding a slot: a Job not yet finished, or a
local worker process still running. An attempt that is due but finds no free slot waits; its
task shows `queued` and its place. Pure: the runtimes pass what holds a slot and what is due.

Fairness, per namespace: the next free slot goes to the owner with the fewest attempts holding
(or already promised) a slot; between owners with as many, to the one whose last turn (an
attempt of theirs starting) is longest ago, an owner who never had one first; then to the one
whose first waiting attempt has waited longest. An owner's own attempts go in the order they
became due. So owners take turns: one owner's 500 tasks never starve another's one, even with
a limit of 1.
Retries and `continue` attempts are due attempts like any other: they queue the same way.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Mapping, Optional


@dataclass(frozen=True)
class Limits:
    """None: no limit (the default: every due attempt starts at once)."""

    per_namespace: Optional[int] = None
    per_repo: Optional[int] = None

    def __post_init__(self) -> None:
        for name, value in (("maxConcurrentAttempts", self.per_namespace),
                            ("maxConcurrentAttemptsPerRepo", self.per_repo)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")

    @property
    def unlimited(self) -> bool:
        return self.per_namespace is None and self.per_repo is None


@dataclass(frozen=True)
class Due:
    """An attempt that is due but not started. `since`: when it became due (ISO time, UTC)."""

    key: str
    namespace: str
    repo: str
    owner: str
    since: str


@dataclass(frozen=True)
class Held:
    """An attempt holding a slot."""

    namespace: str
    repo: str
    owner: str


@dataclass(frozen=True)
class Plan:
    start: tuple[str, ...] = ()  # keys that may start now, in this order
    place: Mapping[str, int] = field(default_factory=dict)  # key -> 1-based place in line


def plan(limits: Limits, held: list[Held], due: list[Due],
         turns: Optional[Mapping[tuple[str, str], int]] = None) -> Plan:
    """Which due attempts start now, and the place in line of every one that waits.

    turns: (namespace, owner) -> when that owner's latest attempt started, as an increasing
    count (missing: never, or not since the runtime started)."""
    if limits.unlimited:
        return Plan(start=tuple(d.key for d in sorted(due, key=_age)))
    namespaces: dict[str, list[Due]] = defaultdict(list)
    for d in due:
        namespaces[d.namespace].append(d)
    start: list[str] = []
    place: dict[str, int] = {}
    for ns in sorted(namespaces):
        mine = [h for h in held if h.namespace == ns]
        last = {o: n for (space, o), n in (turns or {}).items() if space == ns}
        _plan_namespace(limits, mine, namespaces[ns], last, start, place)
    return Plan(start=tuple(start), place=place)


def _age(d: Due) -> tuple[str, str]:
    return (d.since, d.key)


def _plan_namespace(limits: Limits, held: list[Held], due: list[Due], last: dict[str, int],
                    start: list[str], place: dict[str, int]) -> None:
    running = len(held)
    per_repo = Counter(h.repo for h in held)
    load = Counter(h.owner for h in held)
    queues: dict[str, deque[Due]] = defaultdict(deque)
    for d in sorted(due, key=_age):
        queues[d.owner].append(d)
    turn = max(last.values(), default=0)

    def rank(owner: str) -> tuple:
        return (load[owner], last.get(owner, -1), *_age(queues[owner][0]), owner)

    heap = [rank(o) for o in queues]
    heapq.heapify(heap)
    waiting = 0
    while heap:
        owner = heapq.heappop(heap)[-1]
        d = queues[owner].popleft()
        ns_free = limits.per_namespace is None or running < limits.per_namespace
        repo_free = limits.per_repo is None or per_repo[d.repo] < limits.per_repo
        if ns_free and repo_free:
            start.append(d.key)
            running += 1
            per_repo[d.repo] += 1
        else:
            waiting += 1
            place[d.key] = waiting
        load[owner] += 1  # promised a slot, now or when its turn comes
        turn += 1
        last[owner] = turn
        if queues[owner]:
            heapq.heappush(heap, rank(owner))


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 101st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


EXACT_PLACES = 10


def shown_place(place: int) -> int:
    """The place a status records: exact among the first ten; beyond, rounded up to one
    significant digit (11..20 -> 20, 101..200 -> 200). Each start moves everybody up one; this
    way it rewrites a few statuses of a long line, not every one."""
    if place <= EXACT_PLACES:
        return place
    step = 10 ** (len(str(place)) - 1)
    return -(-place // step) * step


def waiting_summary(number: int, place: int) -> str:
    """The summary of a task whose attempt waits for a slot (what `ampx ls` shows); `place`
    as `shown_place` gives it."""
    if place <= EXACT_PLACES:
        return f"attempt {number} waiting for a free slot ({ordinal(place)} in line)"
    return f"attempt {number} waiting for a free slot (within the first {place} in line)"
