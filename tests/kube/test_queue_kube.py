"""maxConcurrentAttempts on Kubernetes: the real operator (RBAC enforced, the chart's value as
its environment) on the API emulator, workers run by the kubelet stand-in, the GitHub stand-in.
With a limit of 1, never more than one attempt Job is unfinished at a time, a retry after red
CI queues like a new task, waiting tasks show their place in `ampx ls`/`get`, and all finish."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from ampx.cli.backend import KubeBackend
from ampx.core.ids import new_task_id
from ampx.sandbox.demo import Run, _spec
from ampx.sandbox.scenarios import scenarios

from e2e.checks import assert_story, wait_all
from kube.cluster import Cluster
from kube.test_operator_e2e import recorded

pytestmark = pytest.mark.e2e


class JobWatch:
    """Counts the attempt Jobs not yet finished, as the API server holds them (every change)."""

    def __init__(self):
        self.unfinished: set[str] = set()
        self.peak = 0
        self.created = 0
        self._lock = threading.Lock()

    def __call__(self, type_, meta, obj, old):
        if meta.group != "batch" or meta.plural != "jobs":
            return
        name = obj["metadata"]["name"]
        conditions = (obj.get("status") or {}).get("conditions") or []
        done = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                   for c in conditions)
        with self._lock:
            if type_ == "ADDED":
                self.created += 1
            if type_ == "DELETED" or done:
                self.unfinished.discard(name)
            else:
                self.unfinished.add(name)
            self.peak = max(self.peak, len(self.unfinished))


@pytest.fixture
def cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.delenv("AMP_API_KEY")
    monkeypatch.setenv("AMPX_BACKEND", "kube")
    c = Cluster(world, kube_env, fake_kubelet, kube_spawn, tmp_path)
    monkeypatch.setenv("AMP_FAKE_HOME", str(c.amp_home))  # where the agents keep their threads
    c.op_env["AMPX_MAX_CONCURRENT_ATTEMPTS"] = "1"  # what tasks.maxConcurrentAttempts renders
    c.jobs = JobWatch()
    c.server.call(c.server.emulator.add_listener, c.jobs)
    c.start_operator()
    yield c
    assert "Traceback" not in c.operator.output, c.operator.output[-3000:]


def ampx(cluster, *args):
    env = cluster.server.env(AMPX_BACKEND="kube")
    return subprocess.run([sys.executable, "-m", "ampx", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_limit_of_one_never_runs_two_jobs_and_everything_finishes(cluster):
    by_key = {sc.key: sc for sc in scenarios()}
    slow = "\n@fake sleep 1\n"
    plan = [("alice", replace(by_key["green"], key="a-green", title="Add multiply A",
                              prompt=by_key["green"].prompt.replace("\n", slow, 1))),
            ("bob", by_key["red-then-green"]),
            ("alice", replace(by_key["green"], key="a-green-2", title="Add multiply B"))]
    backend = KubeBackend()
    runs = []
    for owner, sc in plan:
        tid = new_task_id()
        backend.create(tid, _spec(sc, tid), owner)
        runs.append(Run(sc, tid, time.monotonic()))

    seen_ls = seen_get = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (seen_ls and seen_get):
        ls = ampx(cluster, "ls", "--all", "-o", "wide")
        assert ls.returncode == 0, ls.stderr
        rows = [line for line in ls.stdout.splitlines() if "2nd in line" in line]
        if rows:
            seen_ls = rows[0]
            get = ampx(cluster, "get", rows[0].split()[0])
            if "Queue:       2nd in line" in get.stdout:
                seen_get = get.stdout
        time.sleep(0.2)
    assert seen_ls and seen_ls.split()[1] == "queued", "ls shows the place in line"
    assert seen_get, "get shows the place in line"

    wait_all(backend, runs, timeout=300)
    for run in runs:
        assert_story(cluster.world, run, recorded(cluster, run))
        assert run.task.status.queue_position is None
    attempts = sum(r.task.status.attempts for r in runs)
    assert attempts == 4 and cluster.jobs.created == 4, "one Job per attempt, the retry included"
    assert cluster.jobs.peak == 1, f"{cluster.jobs.peak} attempt Jobs ran at once"
