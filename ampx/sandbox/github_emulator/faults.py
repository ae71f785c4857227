"""Fault injection for the REST API: server errors, secondary and primary rate limits.

Faults are queued and consumed by the next matching API requests (optionally
only those whose path, without the ``/api/v3`` prefix, matches a regex and/or
whose method matches). A faulted request has no side effect, exactly like a
request GitHub rejected at its edge. Git smart-HTTP traffic is never faulted.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

DOCS = "https://docs.github.com/rest"
SECONDARY_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
PRIMARY_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"


@dataclass
class Fault:
    kind: str  # "error" | "secondary" | "primary" | "delay"
    remaining: int
    status: int
    path: re.Pattern[str] | None
    method: str | None
    retry_after: int | None = None
    reset_in: int = 60
    delay: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass
class FaultResponse:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]
    #: When True the response's rate-limit headers say 0 remaining.
    exhausted: bool = False


class Faults:
    """Queue of injected faults; thread-safe, consumed first-come first-served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        #: Number of requests answered by an injected fault (for assertions).
        self.injected = 0
        # a standing fraction of API requests answered with a 5xx (GitHub having a bad day)
        self._fraction = 0.0
        self._fraction_status = 503
        self._rng = random.Random()
        #: "METHOD path" of every request a fault answered (which paths were exercised).
        self.hit: list[str] = []

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    @staticmethod
    def _compile(path: str | None) -> re.Pattern[str] | None:
        return re.compile(path) if path else None

    def fail_next(self, n: int = 1, status: int = 502, *, path: str | None = None, method: str | None = None) -> Fault:
        """Answer the next ``n`` matching API requests with a 5xx (default 502)."""
        return self._add(Fault("error", n, status, self._compile(path), method))

    def secondary_rate_limit(
        self, n: int = 1, retry_after: int | None = 1, *, status: int = 403, path: str | None = None, method: str | None = None
    ) -> Fault:
        """GitHub's abuse/secondary limit: 403 with ``Retry-After`` and its message."""
        return self._add(Fault("secondary", n, status, self._compile(path), method, retry_after=retry_after))

    def primary_rate_limit(
        self, n: int = 1, *, status: int = 403, reset_in: int = 60, path: str | None = None, method: str | None = None
    ) -> Fault:
        """Pretend the token's hourly quota is spent: ``x-ratelimit-remaining: 0``."""
        return self._add(Fault("primary", n, status, self._compile(path), method, reset_in=reset_in))

    def delay_next(self, n: int = 1, seconds: float = 1.0, *, path: str | None = None, method: str | None = None) -> Fault:
        """Slow down the next ``n`` matching requests (they are then served normally)."""
        return self._add(Fault("delay", n, 200, self._compile(path), method, delay=seconds))

    def fail_fraction(self, fraction: float, status: int = 503, *, seed: int | None = None) -> None:
        """From now on answer about ``fraction`` of API requests with ``status`` (0: stop).
        Queued faults are served first."""
        with self._lock:
            self._fraction, self._fraction_status = fraction, status
            if seed is not None:
                self._rng = random.Random(seed)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._fraction = 0.0

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def take(self, method: str, path: str, rate_key: str | None) -> FaultResponse | None:
        """Consume the first matching fault; returns the response to send, if any."""
        with self._lock:
            fault = next((f for f in self._faults if f.remaining > 0 and f.matches(method, path)), None)
            if fault is None and self._fraction > 0 and self._rng.random() < self._fraction:
                fault = Fault("error", 1, self._fraction_status, None, None)
                self.injected += 1
                self.hit.append(f"{method} {path}")
                return FaultResponse(fault.status, {"message": "Server Error", "documentation_url": DOCS}, {})
            if fault is None:
                return None
            self.hit.append(f"{method} {path}")
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
            self.injected += 1
        if fault.kind == "delay":
            time.sleep(fault.delay)
            return None
        if fault.kind == "error":
            return FaultResponse(fault.status, {"message": "Server Error", "documentation_url": DOCS}, {})
        if fault.kind == "secondary":
            request_id = uuid.uuid4().hex[:8].upper() + ":" + uuid.uuid4().hex[:6].upper()
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                f"If you reach out to GitHub Support for help, please include the request ID {request_id}."
            )
            return FaultResponse(fault.status, {"message": message, "documentation_url": SECONDARY_DOCS}, headers)
        who = rate_key or "your IP address"
        reset = int(time.time()) + fault.reset_in
        return FaultResponse(
            fault.status,
            {
                "message": f"API rate limit exceeded for {who}. If you reach out to GitHub Support for help, "
                "please include the request ID.",
                "documentation_url": PRIMARY_DOCS,
            },
            {"x-ratelimit-reset": str(reset)},
            exhausted=True,
        )
