"""Publish pushes with the token in its file when it pushes, not the one it started with: on
Kubernetes the operator renews the push token in the attempt's Secret during a long attempt
(installation tokens last an hour) and the kubelet updates the mounted file."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ampx.core import events as ev
from ampx.core.decide import decide
from ampx.core.models import AmpTaskSpec, AttemptOutcome, WorkerReport
from ampx.local import paths
from ampx.local.store import LocalStore
from ampx.sandbox.world import DEMO_REPO
from ampx.worker.agent_step import AgentResultFile
from ampx.worker.attempt_spec import attempt_spec_from_task, write_attempt_spec

pytestmark = pytest.mark.e2e
NOW = "2026-11-25T10:00:00Z"


def test_publish_pushes_with_the_renewed_token(world, tmp_path):
    app = world.emulator.create_app()
    inst = world.emulator.install_app(app.app_id, DEMO_REPO)
    first = world.emulator.create_installation_token(inst, repos=[DEMO_REPO],
                                                     permissions={"contents": "write"})
    store = LocalStore(paths.db_path())
    spec = AmpTaskSpec(repo=DEMO_REPO, branch="amp/renewed", prompt="Add a line")
    task = store.create("01jrenew000000000000000000", spec, "tester", NOW)
    task = store.save_status(task, decide(task.spec, task.status, ev.Created(), NOW).status)
    attempt = write_attempt_spec(attempt_spec_from_task(task, 1, git_url=world.emulator.url),
                                 tmp_path / "attempt.json")
    token = tmp_path / "token"
    token.write_text(first)
    private, work, control = tmp_path / "private", tmp_path / "work", tmp_path / "control"
    af = ["--attempt-file", str(attempt), "--token-file", str(token), "--private", str(private),
          "--workspace", str(work)]
    r = subprocess.run([sys.executable, "-m", "ampx", "worker", "prepare", *af],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (work / "README.md").write_text("renewed\n")
    control.mkdir()
    publish = subprocess.Popen([sys.executable, "-m", "ampx", "worker", "publish", *af,
                                "--control", str(control)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    time.sleep(1.5)
    assert publish.poll() is None, "publish waits for the agent"
    # the operator renews the token; the old one expires
    second = world.emulator.create_installation_token(inst, repos=[DEMO_REPO],
                                                      permissions={"contents": "write"})
    fresh = tmp_path / "token.new"
    fresh.write_text(second)
    os.replace(fresh, token)  # as the kubelet swaps a Secret volume's files
    world.emulator.expire_token(first)
    AgentResultFile(exit_code=0, is_error=False, thread_id="T-1").write(control)
    out, _ = publish.communicate(timeout=60)
    report = WorkerReport.model_validate_json(
        [ln for ln in out.splitlines() if ln.startswith("AMPX_REPORT ")][0][len("AMPX_REPORT "):])
    assert report.outcome == AttemptOutcome.PUSHED, out
    assert world.emulator.branches(DEMO_REPO)["amp/renewed"] == report.commit
