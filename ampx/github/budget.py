"""One request budget for the whole operator: slow down before GitHub has to say no.

GitHub limits an App installation twice: a primary quota (``x-ratelimit-limit`` requests an
hour, 5,000 by default, announced with ``x-ratelimit-remaining``/``x-ratelimit-reset`` on every
answer) and secondary limits (about 900 REST points a minute; a write costs 5 points, a read
1). A 304 costs nothing against the primary quota.

:class:`RequestBudget` is fed every answer by the REST client and tells it:

- ``hold()``: seconds to wait before sending anything (GitHub said Retry-After, the quota is
  spent until its reset, or this minute's points are used up to our own ceiling);
- ``poll_spacing(repositories)``: the least interval between counted CI polls of one
  repository, so that polling every active repository stays within ``poll_share`` of the
  hourly quota (the rest is left to logs, pull requests and merges).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Mapping, Optional

#: GitHub's default hourly quota of an installation.
DEFAULT_HOURLY = 5000
#: Our own ceiling on points per minute, under GitHub's 900 secondary limit.
DEFAULT_POINTS_PER_MINUTE = 600
#: The part of the hourly quota CI polling may spend (counted requests only).
DEFAULT_POLL_SHARE = 0.5
#: Below this part of the hourly quota left, only what must be done is sent: polls wait for
#: the reset.
RESERVE = 0.1
WRITE_POINTS = 5


class RequestBudget:
    """Thread-safe; ``clock`` is wall-clock epoch seconds (GitHub's reset is one)."""

    def __init__(self, *, points_per_minute: int = DEFAULT_POINTS_PER_MINUTE,
                 poll_share: float = DEFAULT_POLL_SHARE,
                 clock: Callable[[], float] = time.time) -> None:
        self.points_per_minute = points_per_minute
        self.poll_share = poll_share
        self.clock = clock
        self._lock = threading.Lock()
        self._points: deque[tuple[float, int]] = deque()  # (sent at, points)
        self._in_window = 0
        self.limit = DEFAULT_HOURLY
        self.remaining: Optional[int] = None
        self.reset_at: Optional[float] = None
        self._blocked_until = 0.0
        #: times hold() said wait, for diagnostics and the cost benchmark
        self.holds = 0

    def _expire(self, now: float) -> None:
        while self._points and now - self._points[0][0] >= 60.0:
            self._in_window -= self._points.popleft()[1]

    def sent(self, method: str) -> None:
        """Count a request against this minute's points (before its answer is known)."""
        now = self.clock()
        points = 1 if method.upper() in ("GET", "HEAD") else WRITE_POINTS
        with self._lock:
            self._expire(now)
            self._points.append((now, points))
            self._in_window += points

    def answered(self, status: Optional[int], headers: Optional[Mapping[str, str]],
                 retry_after: Optional[float] = None) -> None:
        """Learn from an answer: the quota headers, and a rate-limit refusal's wait."""
        now = self.clock()
        h = {k.lower(): v for k, v in (headers or {}).items()}
        with self._lock:
            try:
                if "x-ratelimit-limit" in h:
                    self.limit = max(1, int(h["x-ratelimit-limit"]))
                if "x-ratelimit-remaining" in h:
                    self.remaining = int(h["x-ratelimit-remaining"])
                if "x-ratelimit-reset" in h:
                    self.reset_at = float(h["x-ratelimit-reset"])
            except ValueError:
                pass  # a malformed header teaches nothing
            if retry_after is not None:
                self._blocked_until = max(self._blocked_until, now + retry_after)

    def hold(self, *, optional: bool = False) -> float:
        """Seconds to wait before the next request (0: go). ``optional`` (a CI poll, which a
        later tick repeats) also waits while the quota is in its last ``RESERVE``."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            wait = max(0.0, self._blocked_until - now)
            if self._in_window >= self.points_per_minute and self._points:
                wait = max(wait, 60.0 - (now - self._points[0][0]))
            if self.remaining is not None and self.reset_at is not None and self.reset_at > now:
                spent = self.remaining <= 0
                low = optional and self.remaining < self.limit * RESERVE
                if spent or low:
                    wait = max(wait, self.reset_at - now + 1.0)
            if wait > 0:
                self.holds += 1
            return wait

    def poll_spacing(self, repositories: int) -> float:
        """Least seconds between counted polls of one repository with ``repositories``
        active: together they spend at most ``poll_share`` of the hourly quota."""
        per_hour = max(1.0, self.limit * self.poll_share)
        return 3600.0 * max(1, repositories) / per_hour

    def snapshot(self) -> dict:
        with self._lock:
            self._expire(self.clock())
            return {"points_last_minute": self._in_window, "limit": self.limit,
                    "remaining": self.remaining, "holds": self.holds}
