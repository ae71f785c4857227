"""Per-endpoint request counters, so tests and benchmarks can assert on API traffic
(e.g. "polling used conditional requests": many 304s, few 200s)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class EndpointStats:
    requests: int = 0
    ok: int = 0  # 2xx
    not_modified: int = 0  # 304
    redirects: int = 0  # other 3xx
    errors: int = 0  # 4xx and 5xx
    by_status: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "not_modified": self.not_modified,
            "redirects": self.redirects,
            "errors": self.errors,
            "by_status": dict(self.by_status),
        }


class Stats:
    """Keys are ``"METHOD /template"`` using the OpenAPI path templates, e.g.
    ``"GET /repos/{owner}/{repo}/actions/runs"``; git traffic is counted under
    ``"GIT info/refs"``, ``"GIT git-upload-pack"`` and ``"GIT git-receive-pack"``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, EndpointStats] = {}

    def record(self, key: str, status: int) -> None:
        with self._lock:
            s = self._by_key.setdefault(key, EndpointStats())
            s.requests += 1
            s.by_status[status] += 1
            if 200 <= status < 300:
                s.ok += 1
            elif status == 304:
                s.not_modified += 1
            elif 300 <= status < 400:
                s.redirects += 1
            else:
                s.errors += 1

    def __getitem__(self, key: str) -> EndpointStats:
        with self._lock:
            s = self._by_key.get(key)
            return EndpointStats(s.requests, s.ok, s.not_modified, s.redirects, s.errors, Counter(s.by_status)) if s else EndpointStats()

    def get(self, method: str, template: str) -> EndpointStats:
        return self[f"{method.upper()} {template}"]

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(s.requests for s in self._by_key.values())

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return {k: v.as_dict() for k, v in sorted(self._by_key.items())}

    def reset(self) -> None:
        with self._lock:
            self._by_key.clear()
