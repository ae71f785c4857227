"""When to poll each repository's CI: one clock per repository, not per task.

Both runtimes' poll loops group the tasks waiting on CI by repository (`group_by_repository`)
and ask `RepoSchedule` which repositories are due; `Engine.poll_repository` then makes one
conditional request for all of a repository's tasks. A repository is polled on the cadence
of its most recently pushed task (fast right after a push, slower later), never sooner than
GitHub's retry time or the request budget's spacing, and only as a safety net (the
schedule's maximum) while webhook deliveries for it keep arriving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from .core.models import AmpTask
from .engine import ci_repository, parse_iso, utcnow
from .schedule import PollSchedule

#: A repository that got a webhook delivery within this many seconds is polled only at the
#: schedule's maximum interval (deliveries can be lost: polling stays as the safety net).
WEBHOOK_QUIET_SECONDS = 600.0


def group_by_repository(tasks: Iterable[AmpTask]) -> dict[str, list[AmpTask]]:
    """Tasks waiting on CI, by repository (``owner/name``, lower case)."""
    groups: dict[str, list[AmpTask]] = {}
    for task in tasks:
        repo = ci_repository(task)
        if repo is not None:
            groups.setdefault(repo, []).append(task)
    return groups


def seconds_since_push(tasks: Iterable[AmpTask]) -> float:
    """How long the most recently pushed of ``tasks`` has waited (its cadence is the fastest)."""
    now = utcnow()
    waits = [(now - parse_iso(t.status.ci.since)).total_seconds()
             for t in tasks if t.status.ci is not None and t.status.ci.since]
    return min(waits) if waits else 0.0


@dataclass
class RepoSchedule:
    """Per repository: when its next CI poll is due (monotonic seconds)."""

    intervals: PollSchedule = field(default_factory=PollSchedule.from_env)
    clock: Callable[[], float] = time.monotonic
    webhook_quiet: float = WEBHOOK_QUIET_SECONDS
    next_at: dict[str, float] = field(default_factory=dict)
    # repository -> clock of its last webhook delivery
    heard_at: dict[str, float] = field(default_factory=dict)
    # repository -> no poll before this clock, even for a delivery (GitHub's retry time, the
    # request budget's spacing)
    floor_at: dict[str, float] = field(default_factory=dict)

    def due(self, repo: str, now: Optional[float] = None) -> bool:
        return (self.clock() if now is None else now) >= self.next_at.get(repo, 0.0)

    def may_poll(self, repo: str, now: Optional[float] = None) -> bool:
        """A delivery's poll: at once, unless GitHub's retry time or the budget says not yet."""
        return (self.clock() if now is None else now) >= self.floor_at.get(repo, 0.0)

    def interval(self, repo: str, waited: float) -> float:
        heard = self.heard_at.get(repo)
        if heard is not None and self.clock() - heard < self.webhook_quiet:
            return self.intervals.maximum
        return self.intervals.interval(waited)

    def after_poll(self, repo: str, waited: float, hint: Optional[float]) -> None:
        """Schedule the next poll: the cadence, never sooner than ``hint`` (GitHub's retry
        time or the budget's spacing, from `Engine.poll_repository`)."""
        now = self.clock()
        self.next_at[repo] = now + max(self.interval(repo, waited), hint or 0.0)
        self.floor_at[repo] = now + (hint or 0.0)

    def heard(self, repo: str) -> None:
        """A webhook delivery for ``repo`` arrived (the caller reconciles its tasks at once)."""
        self.heard_at[repo.lower()] = self.clock()
        now_next = self.clock() + self.intervals.maximum
        self.next_at[repo.lower()] = max(self.next_at.get(repo.lower(), 0.0), now_next)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop repositories no task waits on any more."""
        keep = set(keep)
        for repo in [r for r in self.next_at if r not in keep]:
            self.next_at.pop(repo, None)
            self.floor_at.pop(repo, None)
