"""Webhook deliveries, as GitHub sends them to an App's webhook URL.

`emulator.webhooks.subscribe(url, secret)` makes the emulator POST a `workflow_run` event when
a run is requested and when it completes, and a `check_suite` `completed` event with it, each
with GitHub's headers: `X-GitHub-Event`, a fresh `X-GitHub-Delivery` id, `X-Hub-Signature-256`
(HMAC-SHA256 of the body with the secret) and `Content-Type: application/json`. Deliveries go
out from a background thread in order; a failed delivery is recorded, not retried (GitHub does
not retry either). `deliveries` keeps (event, delivery id, status or error) for tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from . import payloads
from ._util import utcnow
from .state import WorkflowRun


@dataclass
class Subscription:
    url: str
    secret: bytes
    events: frozenset[str] = field(default_factory=lambda: frozenset({"workflow_run", "check_suite"}))


class Webhooks:
    def __init__(self, emulator) -> None:
        self.emu = emulator
        self.subscriptions: list[Subscription] = []
        self.deliveries: list[tuple[str, str, Any]] = []
        self._queue: "queue.Queue[tuple[str, dict] | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._session.trust_env = False
        emulator.ci.on_run_created.append(lambda run: self._run_event(run, "requested"))
        emulator.ci.on_run_completed.append(lambda run: self._run_event(run, "completed"))

    def subscribe(self, url: str, secret: str | bytes, events=("workflow_run", "check_suite")) -> None:
        self.subscriptions.append(Subscription(url, secret.encode() if isinstance(secret, str) else secret,
                                               frozenset(events)))
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_loop, name="ghemu-webhooks", daemon=True)
            self._thread.start()

    def _run_event(self, run: WorkflowRun, action: str) -> None:
        if not self.subscriptions:
            return
        u = self.emu.urls
        with self.emu.store.lock:
            run_json = payloads.workflow_run(u, run, [])
            repo_json = payloads.repository(u, run.repo)
        sender = {"login": run.actor.login, "id": run.actor.id, "type": run.actor.type}
        self._queue.put(("workflow_run", {"action": action, "workflow_run": run_json,
                                          "repository": repo_json, "sender": sender}))
        if action == "completed":
            suite = {"id": run.check_suite_id, "head_sha": run.head_sha, "head_branch": run.head_branch,
                     "status": "completed", "conclusion": run.conclusion,
                     "updated_at": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")}
            self._queue.put(("check_suite", {"action": "completed", "check_suite": suite,
                                             "repository": repo_json, "sender": sender}))

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, payload = item
            body = json.dumps(payload).encode()
            for sub in list(self.subscriptions):
                if event not in sub.events:
                    continue
                delivery = str(uuid.uuid4())
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "GitHub-Hookshot/emulator",
                    "X-GitHub-Event": event,
                    "X-GitHub-Delivery": delivery,
                    "X-GitHub-Hook-ID": "1",
                    "X-Hub-Signature-256": "sha256=" + hmac.new(sub.secret, body, hashlib.sha256).hexdigest(),
                }
                try:
                    resp = self._session.post(sub.url, data=body, headers=headers, timeout=10)
                    self.deliveries.append((event, delivery, resp.status_code))
                except requests.RequestException as exc:
                    self.deliveries.append((event, delivery, type(exc).__name__))

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
