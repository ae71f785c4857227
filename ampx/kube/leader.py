"""Leader election between operator replicas: one `coordination.k8s.io/v1` Lease.

Only the holder runs kopf (handlers, the periodic loop, the history database); a standby
only reads the Lease. The rules are client-go's (`leaderelection`):
- a standby counts a Lease as expired when it has seen no change to it for its
  `leaseDurationSeconds`, timed on its own clock (no trust in another machine's clock);
- the holder renews every `renew_every` seconds and, if no renewal has succeeded for
  `renew_deadline` (< the duration), gives up and exits before any standby can take over;
- every write is a PUT carrying the resourceVersion read, so two candidates never both win.
Why not kopf peering: it pauses operators of lower priority, but two replicas of equal priority
both keep running (with a warning), and it is not a lock; a Lease is.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .api import KubeApi
from .errors import KubeError

log = logging.getLogger("ampx.leader")

LEASE_NAME = "ampx-operator"


@dataclass(frozen=True)
class LeaseTerms:
    duration: float = 8.0  # a standby takes over this long after the last renewal it saw
    renew_every: float = 2.0
    renew_deadline: float = 5.0  # the holder exits when it could not renew for this long
    retry: float = 1.0  # how often a standby looks


def lease_verdict(spec: dict, identity: str, unchanged_for: float, duration: float) -> str:
    """`ours`, `free` (no holder, or expired) or `held` (by another, still valid)."""
    holder = spec.get("holderIdentity")
    if not holder:
        return "free"
    if holder == identity:
        return "ours"
    if unchanged_for >= float(spec.get("leaseDurationSeconds") or duration):
        return "free"
    return "held"


def micro_time(now: Optional[dt.datetime] = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api: KubeApi, namespace: str, identity: str,
                 terms: LeaseTerms = LeaseTerms(), name: str = LEASE_NAME,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api, self.namespace, self.identity, self.terms, self.name = \
            api, namespace, identity, terms, name
        self.clock = clock
        self._lease: Optional[dict] = None  # the last version we wrote or read
        self._seen: tuple = ()
        self._seen_at = 0.0
        self._stop = threading.Event()

    # ------------------------------------------------------------------ acquiring
    def try_acquire(self) -> bool:
        """One attempt; True when this replica holds the Lease."""
        lease = self.api.get_lease(self.namespace, self.name)
        now = self.clock()
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(None)}
            return self._write(lambda: self.api.create_lease(self.namespace, body))
        spec = lease.get("spec") or {}
        seen = (spec.get("holderIdentity"), spec.get("renewTime"),
                lease.get("metadata", {}).get("resourceVersion"))
        if seen != self._seen:
            self._seen, self._seen_at = seen, now
        verdict = lease_verdict(spec, self.identity, now - self._seen_at, self.terms.duration)
        if verdict == "held":
            return False
        body = dict(lease, spec=self._spec(spec))
        return self._write(lambda: self.api.replace_lease(self.namespace, self.name, body))

    def acquire(self) -> None:
        """Block until this replica leads (the standby's loop)."""
        said = None
        while not self._stop.is_set():
            try:
                if self.try_acquire():
                    log.info("leading as %s (lease %s/%s)", self.identity, self.namespace, self.name)
                    return
                holder = self._seen[0] if self._seen else None
                if holder != said:
                    log.info("standing by: lease %s/%s held by %s", self.namespace, self.name, holder)
                    said = holder
            except KubeError as exc:
                if exc.status == 403:
                    raise
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            self._stop.wait(self.terms.retry)

    def _spec(self, old: Optional[dict]) -> dict:
        now = micro_time()
        ours = bool(old) and old.get("holderIdentity") == self.identity
        transitions = int((old or {}).get("leaseTransitions") or 0)
        return {"holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.terms.duration),
                "acquireTime": (old or {}).get("acquireTime") if ours else now,
                "renewTime": now,
                "leaseTransitions": transitions if ours or old is None else transitions + 1}

    def _write(self, call: Callable[[], dict]) -> bool:
        try:
            self._lease = call()
        except KubeError as exc:
            if exc.status == 409:  # another candidate wrote first
                return False
            raise
        return True

    # ------------------------------------------------------------------ holding
    def renew(self) -> bool:
        """Renew once (PUT on the version we hold); False when the Lease is no longer ours."""
        assert self._lease is not None
        spec = dict(self._lease.get("spec") or {}, renewTime=micro_time())
        body = dict(self._lease, spec=spec)
        try:
            self._lease = self.api.replace_lease(self.namespace, self.name, body,
                                                 timeout=self.terms.renew_every)
            return True
        except KubeError as exc:
            if exc.status != 409:
                raise
        # written by someone else since: ours only if we are still the holder
        lease = self.api.get_lease(self.namespace, self.name, timeout=self.terms.renew_every)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return False
        self._lease = lease
        return self.renew()

    def hold(self, on_lost: Callable[[str], None]) -> None:
        """Renew in a thread; a watchdog calls `on_lost(why)` when leadership is gone or was not
        proven for `renew_deadline` (a hung request cannot delay it)."""
        self._last_ok = self.clock()
        lost = threading.Event()

        def renewer() -> None:
            while not self._stop.wait(self.terms.renew_every) and not lost.is_set():
                try:
                    if not self.renew():
                        lost.set()
                        return on_lost("the lease was taken by another replica")
                    self._last_ok = self.clock()
                except KubeError as exc:
                    log.warning("lease renewal failed: %s", exc)

        def watchdog() -> None:
            while not self._stop.wait(0.25) and not lost.is_set():
                if self.clock() - self._last_ok > self.terms.renew_deadline:
                    lost.set()
                    return on_lost(f"no lease renewal for {self.terms.renew_deadline:.0f}s")

        for fn, name in ((renewer, "ampx-lease"), (watchdog, "ampx-lease-watchdog")):
            threading.Thread(target=fn, name=name, daemon=True).start()

    def release(self) -> None:
        """On a clean shutdown: hand the Lease over at once (no holder), if still ours."""
        self._stop.set()
        if self._lease is None:
            return
        spec = dict(self._lease.get("spec") or {}, holderIdentity=None, leaseDurationSeconds=1,
                    renewTime=micro_time())
        try:
            self.api.replace_lease(self.namespace, self.name, dict(self._lease, spec=spec),
                                   timeout=2.0)
        except KubeError as exc:
            log.info("lease not released (%s): a standby takes over when it expires", exc)
