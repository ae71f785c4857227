"""The attempt's pod and Secret: the agent's container holds no credential but its own key."""

from __future__ import annotations

import base64
import json

import pytest

from ampx.core.models import AttemptOutcome
from ampx.kube.attempt_secret import PUSH_PERMISSIONS, build_secret, secret_name
from ampx.kube.jobs import WorkerSettings, build_job, to_task
from ampx.kube.reports import BadReport, parse_report, thread_in_log
from ampx.redact import clear_registered_secrets, register_secret

TASK = {
    "apiVersion": "ampx.dev/v1alpha1", "kind": "AmpTask",
    "metadata": {"name": "01j9zyxwvtsrqpnmkjhgfedcba", "namespace": "team-a", "uid": "u-1"},
    "spec": {"repo": "acme/api", "prompt": "fix it", "branch": "amp/fix-it-01j9zy"},
    "status": {"phase": "queued", "attempts": 1,
               "history": [{"number": 1, "prompt": "fix it"}]},
}
SETTINGS = WorkerSettings(
    image="ampx-worker:1", service_account="ampx-worker", amp_secret="ampx-amp",
    resources={"limits": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "8Gi"}},
    step_resources={"limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "8Gi"}},
    agent_plain=(("AMP_URL", "https://amp.example"),))


def _pod():
    job = build_job(to_task(TASK), 1, SETTINGS)
    return job, job["spec"]["template"]["spec"]


def _by_name(spec):
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def _volume_keys(spec, container):
    """The Secret keys a container can read (through the volumes it mounts)."""
    vols = {v["name"]: v for v in spec["volumes"]}
    keys = set()
    for m in container.get("volumeMounts", []):
        secret = vols[m["name"]].get("secret")
        if secret:
            assert secret["items"], "a Secret volume names its items: nothing else is mounted"
            keys |= {(secret["secretName"], i["key"]) for i in secret["items"]}
    return keys


def test_three_steps_prepare_first_then_agent_and_publish_apart():
    _, spec = _pod()
    assert [c["name"] for c in spec["initContainers"]] == ["prepare"]
    assert [c["name"] for c in spec["containers"]] == ["agent", "publish"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec.get("shareProcessNamespace") in (None, False)
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_only_prepare_and_publish_mount_the_token():
    job, spec = _pod()
    secret = secret_name("01j9zyxwvtsrqpnmkjhgfedcba", 1)
    c = _by_name(spec)
    assert _volume_keys(spec, c["agent"]) == {(secret, "attempt.json")}
    for step in ("prepare", "publish"):
        assert _volume_keys(spec, c[step]) == {(secret, "attempt.json"), (secret, "token")}
    # the agent's key only in the agent, by reference; no App key anywhere
    refs = {(name, e["name"]): e["valueFrom"]["secretKeyRef"]
            for name, ct in c.items() for e in ct.get("env", []) if "valueFrom" in e}
    assert refs == {("agent", "AMP_API_KEY"): {"name": "ampx-amp", "key": "api-key"}}
    assert "PRIVATE_KEY" not in json.dumps(job) and "GITHUB_TOKEN" not in json.dumps(job)
    assert "fix it" not in json.dumps(job)  # the prompt is in the Secret, not the Job


def test_private_clone_never_reaches_the_agent_and_publish_reads_the_workspace_only():
    _, spec = _pod()
    c = _by_name(spec)
    mounts = {name: {m["name"]: m.get("readOnly", False) for m in ct["volumeMounts"]}
              for name, ct in c.items()}
    assert "private" not in mounts["agent"] and "token" not in mounts["agent"]
    assert mounts["publish"]["workspace"] is True and mounts["publish"]["control"] is True
    assert mounts["agent"]["workspace"] is False and mounts["prepare"]["private"] is False
    # each container its own /tmp
    assert {n: [m for m in mounts[n] if m.startswith("tmp-")] for n in mounts} == {
        n: [f"tmp-{n}"] for n in mounts}


def test_every_container_is_restricted_and_limited():
    _, spec = _pod()
    for name, ct in _by_name(spec).items():
        sc = ct["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        want = SETTINGS.resources if name == "agent" else SETTINGS.step_resources
        assert ct["resources"] == want
    publish = _by_name(spec)["publish"]
    assert publish["terminationMessagePath"] == "/dev/termination-log"
    assert "--report-file" in publish["args"]
    assert publish["args"][publish["args"].index("--report-file") + 1] == "/dev/termination-log"


def test_the_secret_holds_the_token_and_attempt_file_and_goes_with_the_task():
    task = to_task(TASK)
    s = build_secret(task, 2, "ghs_push", '{"task": "x"}')
    assert s["metadata"]["name"] == "01j9zyxwvtsrqpnmkjhgfedcba-a2"
    assert s["metadata"]["namespace"] == "team-a"
    assert s["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert {k: base64.b64decode(v).decode() for k, v in s["data"].items()} == {
        "token": "ghs_push", "attempt.json": '{"task": "x"}'}
    assert PUSH_PERMISSIONS == {"contents": "write"}


# --- the report, read from the termination message: untrusted input ----------------------------

def test_a_report_is_parsed_and_its_text_masked():
    clear_registered_secrets()
    register_secret("sk-agent-key-123456")
    try:
        report = parse_report('AMPX_REPORT {"outcome": "pushed", "commit": "abc", "threadId": "T-1",'
                              ' "reason": "saw sk-agent-key-123456", "tokensIn": 5}')
    finally:
        clear_registered_secrets()
    assert report.outcome == AttemptOutcome.PUSHED and report.commit == "abc"
    assert report.thread_id == "T-1" and report.tokens_in == 5
    assert "sk-agent-key-123456" not in report.reason


@pytest.mark.parametrize("message, why", [
    ("", "empty"),
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"outcome": "taken_over"}', "invalid report: outcome"),
    ('{"tokensIn": "many"}', "invalid report: tokensIn"),
    ('{"reason": "' + "x" * 5000 + '"}', "larger than 4096 bytes"),
])
def test_a_bad_termination_message_is_refused(message, why):
    with pytest.raises(BadReport, match=why):
        parse_report(message)


def test_the_thread_line():
    assert thread_in_log("[ampx] start\nAMPX_THREAD T-abc-123\nmore") == "T-abc-123"
    assert thread_in_log("say AMPX_THREAD T-1 in a sentence") is None
    assert thread_in_log("AMPX_THREAD $(rm -rf /)") is None
