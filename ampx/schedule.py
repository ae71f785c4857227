"""When to poll CI next: fast right after a push, slower later, never before a Retry-After."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class CiSchedule:
    fast: float = 5.0
    slow: float = 60.0
    next_at: dict[str, float] = field(default_factory=dict)

    def interval(self, waited: float) -> float:
        """5 s for the first 2 minutes, 15 s up to 10 minutes, then the slow rate."""
        if waited < 120:
            return self.fast
        if waited < 600:
            return min(max(self.fast, 15.0), self.slow)
        return self.slow

    def due(self, key: str, now: float) -> bool:
        return now >= self.next_at.get(key, 0.0)

    def after_poll(self, key: str, now: float, waited: float, retry_after: Optional[float]) -> None:
        self.next_at[key] = now + (retry_after if retry_after else self.interval(waited))
