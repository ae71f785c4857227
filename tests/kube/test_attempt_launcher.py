"""The operator's side of an attempt, on the API emulator with the operator's RBAC enforced and
the GitHub stand-in: the per-attempt Secret and its push token, the report read from the pod
(the test plays the kubelet, writing the pod status a kubelet would), the thread id from the
agent's log, the token renewed in a long attempt, the agent key masked."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from ampx.core.models import AttemptOutcome
from ampx.github.auth import AppAuth
from ampx.kube.api import KubeApi, KubeError, load_config
from ampx.kube.attempt_secret import MIN_LIFE_S, PUSH_PERMISSIONS, PushTokens
from ampx.kube.jobs import REPORTED, KubeLauncher, WorkerSettings, to_task
from ampx.kube.masking import AgentKeyMask
from ampx.kube.rbac import OPERATOR, grants
from ampx.redact import clear_registered_secrets, redact
from ampx.sandbox.world import DEMO_REPO
from ampx.worker.attempt_spec import parse_attempt_spec
from kubeharness.server import write_kubeconfig

AMPTASKS = "ampx.dev/v1alpha1/amptasks"
NAME = "01j9zyxwvtsrqpnmkjhgfedcba"
AGENT_KEY = "sk-agent-key-5f2e9c1d7a"


class Op:
    def __init__(self, server, world, tmp_path):
        self.server, self.world = server, world
        app = world.emulator.create_app()
        world.emulator.install_app(app.app_id, DEMO_REPO)
        server.create_secret("amp-api", {"api-key": AGENT_KEY})
        server.create_secret("gh-other", {"token": "not-for-the-operator"})
        user = "system:serviceaccount:ampx:ampx-operator"
        cfg = write_kubeconfig(tmp_path / "op.kubeconfig", server.url, token="op-token")

        def bind(emulator):
            emulator.tokens["op-token"] = user
            emulator.rbac[user] = grants(OPERATOR, "amp-api")

        server.call(bind, server.emulator)
        self.api = KubeApi(load_config(kubeconfig=str(cfg)))
        self.now = time.time()
        clock = lambda: self.now  # noqa: E731
        auth = AppAuth(app.app_id, app.private_key_pem, world.env["AMPX_GITHUB_API_URL"],
                       permissions=PUSH_PERMISSIONS, renew_before=MIN_LIFE_S, clock=clock)
        self.launcher = KubeLauncher(
            self.api, WorkerSettings(amp_secret="amp-api", git_url=world.env["AMPX_GITHUB_URL"]),
            PushTokens(auth, clock=clock), clock=clock)
        server.create({"apiVersion": "ampx.dev/v1alpha1", "kind": "AmpTask",
                       "metadata": {"name": NAME, "namespace": "default"},
                       "spec": {"repo": DEMO_REPO, "prompt": "add power", "branch": "amp/power-01j9zy"}})
        self.api.patch_task_status("default", NAME, {
            "phase": "running", "stage": "agent", "attempts": 1,
            "history": [{"number": 1, "prompt": "add power"}]})

    def task(self):
        return to_task(self.api.get_task("default", NAME))

    def secret(self):
        s = self.server.find("v1/secrets", "default", f"{NAME}-a1")
        return s and {k: base64.b64decode(v).decode() for k, v in s["data"].items()}

    def kubelet_runs_pod(self, containers: dict, job_done: str | None = None, agent_log: str = ""):
        """What the Job controller and the kubelet would write: a pod of the Job, its
        container states, the agent's log; the Job's condition once it is over."""
        pod = self.server.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"{NAME}-a1-xyz12", "namespace": "default",
            "labels": {"job-name": f"{NAME}-a1"}},
            "spec": {"containers": [{"name": n, "image": "w"} for n in ("agent", "publish")]}})
        statuses = [{"name": n, "state": s, "image": "w", "ready": False, "restartCount": 0}
                    for n, s in containers.items()]
        self.server.call(self.server.emulator.patch_object, "v1/pods", "default",
                         pod["metadata"]["name"], {"status": {"phase": "Running",
                                                              "containerStatuses": statuses}},
                         subresource="status")
        if agent_log:
            self.server.emulator.append_pod_log("default", pod["metadata"]["name"], agent_log,
                                                container="agent")
        job_status = {"startTime": "2026-12-02T10:00:00Z", "active": 1}
        if job_done:
            job_status = {"startTime": "2026-12-02T10:00:00Z", "conditions": [
                {"type": job_done, "status": "True"}]}
        self.server.call(self.server.emulator.patch_object, "batch/v1/jobs", "default",
                         f"{NAME}-a1", {"status": job_status}, subresource="status")


@pytest.fixture
def op(kube_server, world, tmp_path):
    clear_registered_secrets()
    yield Op(kube_server, world, tmp_path)
    clear_registered_secrets()


def terminated(message: str | None, code: int = 0) -> dict:
    t = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
    if message is not None:
        t["message"] = message
    return {"terminated": t}


def test_start_creates_the_secret_with_a_push_only_token_then_the_job(op):
    op.launcher.start(op.task(), 1)
    data = op.secret()
    assert set(data) == {"token", "attempt.json"}
    spec = parse_attempt_spec(data["attempt.json"].encode())
    assert (spec.task, spec.number, spec.prompt, spec.branch) == (NAME, 1, "add power",
                                                                   "amp/power-01j9zy")
    job = op.server.find("batch/v1/jobs", "default", f"{NAME}-a1")
    assert job["spec"]["template"]["spec"]["volumes"][1]["secret"]["secretName"] == f"{NAME}-a1"
    # the token: this repository, contents only (it cannot open a pull request)
    api, token = op.world.env["AMPX_GITHUB_API_URL"], data["token"]
    h = {"Authorization": f"token {token}"}
    assert requests.get(f"{api}/repos/{DEMO_REPO}", headers=h, timeout=10).status_code == 200
    pr = requests.post(f"{api}/repos/{DEMO_REPO}/pulls", headers=h, timeout=10,
                       json={"title": "x", "head": "amp/power-01j9zy", "base": "main"})
    assert pr.status_code == 403
    # starting again (a restarted operator) replaces the Secret and keeps the one Job
    op.launcher.start(op.task(), 1)
    assert op.secret()["attempt.json"] == data["attempt.json"]
    assert len(op.server.objects("batch/v1/jobs", "default")) == 1


def test_the_publish_report_is_recorded_and_the_secret_deleted(op):
    op.launcher.start(op.task(), 1)
    report = {"outcome": "pushed", "commit": "c0ffee" * 6 + "abcd", "threadId": "T-42",
              "tokensIn": 10, "tokensOut": 3, "exitCode": 0}
    op.kubelet_runs_pod({"agent": terminated(None), "publish": terminated(
        "AMPX_REPORT " + json.dumps(report))}, job_done="Complete")
    assert op.launcher.state(op.task(), 1).state == REPORTED
    recorded = op.task().status.reports["1"]
    assert recorded.outcome == AttemptOutcome.PUSHED and recorded.thread_id == "T-42"
    assert recorded.commit == report["commit"] and recorded.tokens_in == 10
    assert op.launcher.state(op.task(), 1).state == "succeeded"  # seen: the Secret goes
    assert op.secret() is None


def test_a_forged_or_broken_termination_message_is_no_report(op):
    op.launcher.start(op.task(), 1)
    op.kubelet_runs_pod({"agent": terminated(None, 1),
                         "publish": terminated('{"outcome": "pushed", ' + '"x": "' + "y" * 5000 + '"}', 1)},
                        job_done="Failed", agent_log="[agent] hello\nAMPX_THREAD T-from-log\n")
    op.launcher.state(op.task(), 1)
    recorded = op.task().status.reports["1"]
    assert recorded.outcome == AttemptOutcome.AGENT_FAILED
    assert recorded.commit is None and recorded.thread_id == "T-from-log"
    assert "publish exit 1" in recorded.reason and "larger than 4096 bytes" in recorded.reason


def test_the_thread_id_reaches_the_status_while_the_agent_works(op):
    op.launcher.start(op.task(), 1)
    op.kubelet_runs_pod({"agent": {"running": {}}, "publish": {"running": {}}},
                        agent_log="[agent] $ amp threads new\nAMPX_THREAD T-early\n")
    assert op.launcher.state(op.task(), 1).state == "running"
    assert op.task().status.reports["1"].thread_id == "T-early"
    assert op.task().status.reports["1"].outcome is None


def test_a_long_attempt_gets_a_fresh_token(op):
    op.launcher.start(op.task(), 1)
    first = op.secret()["token"]
    op.kubelet_runs_pod({"agent": {"running": {}}, "publish": {"running": {}}})
    op.launcher.state(op.task(), 1)
    assert op.secret()["token"] == first  # fresh enough
    op.now += 45 * 60
    op.launcher.state(op.task(), 1)
    assert op.secret()["token"] != first


def test_the_operator_reads_the_agent_key_to_mask_it_and_no_other_secret(op):
    AgentKeyMask(op.api, "amp-api", "api-key").ensure("default")
    b64 = base64.b64encode(AGENT_KEY.encode()).decode()
    assert AGENT_KEY not in redact(f"key={AGENT_KEY}")
    assert b64 not in redact(f"echo {b64}")
    with pytest.raises(KubeError) as err:
        op.api.agent_key("default", "gh-other", "token")
    assert err.value.status == 403
