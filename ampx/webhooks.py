"""GitHub webhook deliveries: CI news in well under a second, believed only when signed.

GitHub (the App's webhook) POSTs `workflow_run`, `check_suite` and `pull_request` events with
`X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body with the webhook secret>`. A delivery is
only a hint: it names a repository, and that repository is polled at once through the same
conditional request as the timer's (nothing in a payload is taken as a CI result, so a
delivery that got through could at worst cost one poll). Before that, `DeliveryGate` refuses,
and counts by reason:

- `too_large`: a body over `max_bytes` (read no further), `wrong_type`: not
  `application/json`, `forged`: a missing or wrong signature (constant-time compare),
- `replayed`: a `X-GitHub-Delivery` id seen within `window` seconds, `stale`: a payload whose
  run/suite/pull request was last updated more than `window` seconds ago (an old delivery
  replayed after its id was forgotten), `malformed`: not JSON, or no repository in it;
- `ignored`: a well-formed event of another kind (`ping`, `push`...), answered 202.

`WebhookListener` is the HTTP server (`POST /` or any path; `GET /healthz` returns the
counters as JSON). `on_delivery(repo_full_name)` is called for each accepted delivery, off the
request thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional

log = logging.getLogger(__name__)

EVENTS = frozenset({"workflow_run", "check_suite", "pull_request"})
MAX_BYTES = 2 << 20  # GitHub caps payloads at 25 MB; these events are tens of KB
WINDOW = 3600.0
#: Delivery ids remembered at most (a flood of fresh ids evicts the oldest first).
MAX_IDS = 100_000


class Refused(Exception):
    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass(frozen=True)
class Delivery:
    event: str
    delivery_id: str
    repo: str  # owner/name, lower case
    action: str
    head_shas: tuple[str, ...]

    @property
    def news(self) -> bool:
        """Whether it can change what a waiting task sees: a run or suite that completed, or
        anything about a pull request. A run requested or in progress is pending either way
        (a poll for it would only spend the budget a completion needs)."""
        return self.event == "pull_request" or self.action == "completed"


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def load_secret(path: Optional[str] = None, value: Optional[str] = None) -> bytes:
    """The webhook secret from a file (a mounted Secret) or a value; refuses an empty one."""
    text = Path(path).read_text() if path else (value or "")
    secret = text.strip()
    if not secret:
        raise ValueError("the webhook secret is empty (AMPX_WEBHOOK_SECRET_FILE or AMPX_WEBHOOK_SECRET)")
    from .redact import register_secret

    register_secret(secret)  # never in a log or a status
    return secret.encode()


def _updated_at(payload: dict, event: str) -> Optional[float]:
    obj = payload.get({"workflow_run": "workflow_run", "check_suite": "check_suite",
                       "pull_request": "pull_request"}[event])
    value = obj.get("updated_at") if isinstance(obj, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _head_shas(payload: dict, event: str) -> tuple[str, ...]:
    if event == "pull_request":
        head = (payload.get("pull_request") or {}).get("head") or {}
        sha = head.get("sha") if isinstance(head, dict) else None
    else:
        obj = payload.get(event) or {}
        sha = obj.get("head_sha") if isinstance(obj, dict) else None
    return (sha,) if isinstance(sha, str) and sha else ()


class DeliveryGate:
    """Checks one delivery; thread-safe; counts every verdict."""

    def __init__(self, secret: bytes, *, max_bytes: int = MAX_BYTES, window: float = WINDOW,
                 clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("empty webhook secret")
        self._secret = secret
        self.max_bytes = max_bytes
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.counts: Counter[str] = Counter()

    def count(self, verdict: str) -> None:
        with self._lock:
            self.counts[verdict] += 1

    def check_headers(self, headers, length: Optional[int]) -> None:
        """What can be refused before reading the body."""
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refused("wrong_type", 415)
        if length is None or length < 0:
            raise Refused("malformed", 411)
        if length > self.max_bytes:
            raise Refused("too_large", 413)

    def check(self, headers, body: bytes) -> Optional[Delivery]:
        """The delivery, or None for an event ampx does not need; raises Refused."""
        if len(body) > self.max_bytes:
            raise Refused("too_large", 413)
        given = headers.get("X-Hub-Signature-256") or ""
        if not hmac.compare_digest(given.encode(), signature(self._secret, body).encode()):
            raise Refused("forged", 401)
        delivery_id = (headers.get("X-GitHub-Delivery") or "").strip()
        event = (headers.get("X-GitHub-Event") or "").strip()
        if not delivery_id or not event or len(delivery_id) > 200:
            raise Refused("malformed", 400)
        now = self.clock()
        with self._lock:
            while self._seen and (now - next(iter(self._seen.values())) > self.window
                                  or len(self._seen) > MAX_IDS):
                self._seen.popitem(last=False)
            if delivery_id in self._seen:
                raise Refused("replayed", 409)
            self._seen[delivery_id] = now
        if event not in EVENTS:
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            raise Refused("malformed", 400) from None
        repo = payload.get("repository") if isinstance(payload, dict) else None
        name = repo.get("full_name") if isinstance(repo, dict) else None
        if not isinstance(name, str) or name.count("/") != 1:
            raise Refused("malformed", 400)
        updated = _updated_at(payload, event)
        if updated is not None and now - updated > self.window:
            raise Refused("stale", 409)
        return Delivery(event, delivery_id, name.lower(), str(payload.get("action") or ""),
                        _head_shas(payload, event))


class WebhookListener:
    """The HTTP side: `POST` deliveries, `GET /healthz` counters. Runs in a daemon thread."""

    def __init__(self, gate: DeliveryGate, on_delivery: Callable[[Delivery], None],
                 host: str = "0.0.0.0", port: int = 8443) -> None:
        self.gate = gate
        self.on_delivery = on_delivery
        gate_, deliver = gate, self._deliver

        class Handler(BaseHTTPRequestHandler):
            server_version = "ampx-webhooks"
            timeout = 10  # a slow sender does not hold a thread for ever

            def log_message(self, fmt, *args):  # requests are counted, not logged
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path.rstrip("/") in ("/healthz", "/metrics"):
                    with gate_._lock:
                        counts = dict(gate_.counts)
                    self._answer(200, {"deliveries": counts})
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self):  # noqa: N802
                try:
                    raw = self.headers.get("Content-Length")
                    length = int(raw) if raw is not None and raw.isdigit() else None
                    gate_.check_headers(self.headers, length)
                    body = self.rfile.read(length or 0)
                    delivery = gate_.check(self.headers, body)
                except Refused as exc:
                    gate_.count(exc.reason)
                    log.warning("webhook delivery refused: %s", exc.reason)
                    self.close_connection = True
                    self._answer(exc.status, {"error": exc.reason})
                    return
                if delivery is None:
                    gate_.count("ignored")
                    self._answer(202, {"ok": True, "ignored": True})
                    return
                gate_.count("accepted")
                self._answer(202, {"ok": True})
                deliver(delivery)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def _deliver(self, delivery: Delivery) -> None:
        try:
            self.on_delivery(delivery)
        except Exception:  # the poll loop is the safety net
            log.exception("webhook delivery %s could not be handled", delivery.delivery_id)

    def start(self) -> "WebhookListener":
        self._thread = threading.Thread(target=self._server.serve_forever, name="ampx-webhooks",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        log.info("receiving GitHub webhooks on port %s", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HeardRepositories:
    """Repositories named by accepted deliveries, until the poll loop takes them (`drain`):
    the operator's listener fills it, its CI loop polls each at once and then slowly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repos: set[str] = set()

    def add(self, delivery: Delivery) -> None:
        if not delivery.news:
            return
        with self._lock:
            self._repos.add(delivery.repo)

    def drain(self) -> set[str]:
        with self._lock:
            repos, self._repos = self._repos, set()
        return repos


#: The operator process's deliveries (see `ampx.kube.operator` startup).
HEARD = HeardRepositories()


def parse_listen(value: str) -> tuple[str, int]:
    """`:8443`, `0.0.0.0:8443` or `8443` -> (host, port); a clear error otherwise."""
    host, _, port = value.rpartition(":") if ":" in value else ("", "", value)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address {value!r}: expected [HOST]:PORT, e.g. :8443")
    return host or "0.0.0.0", int(port)


def from_env(on_delivery: Callable[[Delivery], None], listen: Optional[str] = None
             ) -> Optional[WebhookListener]:
    """A listener when `listen` (or AMPX_WEBHOOK_LISTEN) is set, with the secret from
    AMPX_WEBHOOK_SECRET_FILE or AMPX_WEBHOOK_SECRET; None when webhooks are off."""
    import os

    listen = listen or os.environ.get("AMPX_WEBHOOK_LISTEN")
    if not listen:
        return None
    host, port = parse_listen(listen)
    secret = load_secret(os.environ.get("AMPX_WEBHOOK_SECRET_FILE"),
                         os.environ.get("AMPX_WEBHOOK_SECRET"))
    return WebhookListener(DeliveryGate(secret), on_delivery, host, port)
