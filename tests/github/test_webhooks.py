"""Webhook deliveries: believed only when signed, fresh and well formed; each refusal counted."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest
import requests

from ampx.webhooks import DeliveryGate, Refused, WebhookListener, parse_listen, signature

SECRET = b"s3cret-webhook"


def payload(updated: str | None = None, repo: str = "Acme/Widgets", sha: str = "a" * 40) -> bytes:
    updated = updated or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"action": "completed", "repository": {"full_name": repo},
                       "workflow_run": {"head_sha": sha, "updated_at": updated}}).encode()


def headers(body: bytes, secret: bytes = SECRET, delivery: str = "d-1", event: str = "workflow_run",
            ctype: str = "application/json") -> dict:
    return {"Content-Type": ctype, "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature(secret, body)}


def refused(gate, h, body) -> str:
    with pytest.raises(Refused) as info:
        gate.check(h, body)
    return info.value.reason


def test_a_signed_delivery_names_its_repository_and_commit() -> None:
    body = payload()
    d = DeliveryGate(SECRET).check(headers(body), body)
    assert (d.event, d.repo, d.head_shas, d.action) == ("workflow_run", "acme/widgets", ("a" * 40,), "completed")


def test_forged_deliveries_are_refused_and_the_same_body_signed_is_not() -> None:
    gate, body = DeliveryGate(SECRET), payload()
    assert refused(gate, headers(body, secret=b"guessed"), body) == "forged"
    h = headers(body)
    del h["X-Hub-Signature-256"]
    assert refused(gate, h, body) == "forged"
    tampered = body.replace(b"Acme/Widgets", b"Acme/Other")
    assert refused(gate, headers(body) | {"X-GitHub-Delivery": "d-2"}, tampered) == "forged"
    assert gate.check(headers(body, delivery="d-3"), body) is not None  # control: signed, accepted


def test_a_replayed_or_stale_delivery_is_refused() -> None:
    now = [time.time()]
    gate, body = DeliveryGate(SECRET, window=600, clock=lambda: now[0]), payload()
    assert gate.check(headers(body), body) is not None
    assert refused(gate, headers(body), body) == "replayed"
    now[0] += 601  # the id is forgotten, but the payload is older than the window
    assert refused(gate, headers(body), body) == "stale"
    fresh = payload(updated=dt.datetime.fromtimestamp(now[0], dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert gate.check(headers(fresh, delivery="d-9"), fresh) is not None, "control: fresh"


def test_malformed_bodies_and_other_events() -> None:
    gate = DeliveryGate(SECRET)
    for i, body in enumerate([b"{not json", b"[1, 2]", json.dumps({"repository": {"full_name": "x"}}).encode(),
                              json.dumps({"workflow_run": {}}).encode()]):
        assert refused(gate, headers(body, delivery=f"m{i}"), body) == "malformed"
    body = payload()
    assert refused(gate, headers(body, delivery=""), body) == "malformed"
    assert gate.check(headers(body, delivery="p", event="ping"), body) is None  # not ours: ignored


def test_only_news_wakes_a_poll() -> None:
    from ampx.webhooks import HeardRepositories

    gate, heard = DeliveryGate(SECRET), HeardRepositories()
    for i, action in enumerate(("requested", "in_progress", "completed")):
        body = payload().replace(b'"completed"', f'"{action}"'.encode())
        heard.add(gate.check(headers(body, delivery=f"n{i}"), body))
        assert heard.drain() == ({"acme/widgets"} if action == "completed" else set())


@pytest.fixture
def listener():
    got: list = []
    gate = DeliveryGate(SECRET, max_bytes=65536)
    lst = WebhookListener(gate, got.append, host="127.0.0.1", port=0).start()
    lst.got = got
    yield lst
    lst.stop()


def test_the_listener_refuses_and_counts_each_kind(listener) -> None:
    url = f"http://127.0.0.1:{listener.port}/"
    body = payload()
    assert requests.post(url, data=body, headers=headers(body)).status_code == 202
    assert requests.post(url, data=body, headers=headers(body)).status_code == 409  # replayed
    assert requests.post(url, data=body, headers=headers(body, secret=b"x", delivery="f")).status_code == 401
    assert requests.post(url, data=body, headers=headers(body, delivery="t", ctype="text/plain")).status_code == 415
    big = b"{" + b" " * 70000 + b"}"
    assert requests.post(url, data=big, headers=headers(big, delivery="b")).status_code == 413
    bad = b"{oops"
    assert requests.post(url, data=bad, headers=headers(bad, delivery="m")).status_code == 400
    counts = requests.get(url + "healthz").json()["deliveries"]
    assert counts == {"accepted": 1, "replayed": 1, "forged": 1, "wrong_type": 1, "too_large": 1, "malformed": 1}
    assert [d.repo for d in listener.got] == ["acme/widgets"]


def test_the_github_stand_in_delivers_signed_workflow_run_events(sandbox, listener) -> None:
    sandbox.emu.webhooks.subscribe(f"http://127.0.0.1:{listener.port}/hook", SECRET)
    sha = sandbox.push("amp/hook", {".github/workflows/ci.yml": sandbox.workflow("CI", ["true"])})
    sandbox.emu.ci.wait_idle()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
            d.event == "workflow_run" and d.action == "completed" for d in listener.got):
        time.sleep(0.05)
    completed = [d for d in listener.got if d.event == "workflow_run" and d.action == "completed"]
    assert completed and completed[0].repo == "acme/widgets" and completed[0].head_shas == (sha,)
    assert any(d.event == "check_suite" for d in listener.got)
    assert all(status == 202 for _, _, status in sandbox.emu.webhooks.deliveries)


def test_listen_addresses() -> None:
    assert parse_listen(":8443") == ("0.0.0.0", 8443)
    assert parse_listen("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_listen("8443") == ("0.0.0.0", 8443)
    for bad in ("", ":", "host:http", ":70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)
