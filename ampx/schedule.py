"""When to poll CI next: fast right after a push, slower later, never before a Retry-After.

`PollSchedule` is the cadence (the GitHub layer's cost figures and both runtimes use it);
`CiSchedule` keeps each task's next due time on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .settings import env_int

DEFAULT_FAST_SECONDS = 5
DEFAULT_MAX_SECONDS = 60
FAST_PHASE_SECONDS = 120.0
MIDDLE_PHASE_SECONDS = 600.0
MIDDLE_SECONDS = 15


@dataclass(frozen=True)
class PollSchedule:
    """Fast right after a push, then slower: ``fast`` s for the first 2 min, 15 s up to
    10 min, then ``maximum`` s. ``fast`` = AMPX_CI_POLL_SECONDS (5), ``maximum`` =
    AMPX_CI_POLL_MAX_SECONDS (60); the middle step is clamped between the two."""

    fast: float = DEFAULT_FAST_SECONDS
    maximum: float = DEFAULT_MAX_SECONDS
    fast_until: float = FAST_PHASE_SECONDS
    middle_until: float = MIDDLE_PHASE_SECONDS
    middle: float = MIDDLE_SECONDS

    @classmethod
    def from_env(cls) -> "PollSchedule":
        fast = env_int("AMPX_CI_POLL_SECONDS", DEFAULT_FAST_SECONDS)
        maximum = env_int("AMPX_CI_POLL_MAX_SECONDS", DEFAULT_MAX_SECONDS)
        if fast <= 0 or maximum <= 0:
            raise ValueError("AMPX_CI_POLL_SECONDS and AMPX_CI_POLL_MAX_SECONDS must be positive")
        return cls(fast=fast, maximum=max(fast, maximum))

    def interval(self, seconds_since_push: float) -> float:
        fast = min(self.fast, self.maximum)
        if seconds_since_push < self.fast_until:
            return fast
        if seconds_since_push < self.middle_until:
            return min(max(self.middle, fast), self.maximum)
        return self.maximum


def poll_interval(seconds_since_push: float, schedule: Optional[PollSchedule] = None) -> float:
    """Seconds until the next CI poll, ``seconds_since_push`` after the push."""
    return (schedule or PollSchedule.from_env()).interval(seconds_since_push)


@dataclass
class CiSchedule:
    """Per task: when its next CI poll (or reconcile) is due."""

    intervals: PollSchedule = field(default_factory=PollSchedule.from_env)
    next_at: dict[str, float] = field(default_factory=dict)

    @property
    def fast(self) -> float:
        return min(self.intervals.fast, self.intervals.maximum)

    def interval(self, waited: float) -> float:
        return self.intervals.interval(waited)

    def due(self, key: str, now: float) -> bool:
        return now >= self.next_at.get(key, 0.0)

    def after_poll(self, key: str, now: float, waited: float, retry_after: Optional[float]) -> None:
        """Next poll after the cadence's interval, never sooner than ``retry_after`` (GitHub's
        retry time, or the request budget's spacing from `Engine.poll_repository`)."""
        self.next_at[key] = now + max(self.interval(waited), retry_after or 0.0)
